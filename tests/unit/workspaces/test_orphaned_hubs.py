"""A test run killed with SIGKILL leaves its throw-away hub's claim in the host registry (its ports among them); the
next run sweeps it, so a hub that draws one of those ports from the system's free ports still starts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "infra" / "jupyterhub"))
from devhub import OWNER_FILE, ROOT_PREFIX, DevHub, sweep_orphaned_hubs
from hub_settings import HostConflict, claim_host_resources, load_settings


def _dead_process() -> tuple[int, str]:
    """The pid and start time of a process that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    started = (Path("/proc") / str(child.pid) / "stat").read_text().rsplit(")", 1)[1].split()[19]
    child.kill()
    child.wait()
    return child.pid, started


def _hub_folder(tmp: Path, registry: Path, name: str, owner_pid: int, owner_started: str | None,
                port: int) -> Path:
    """A throw-away hub's folder and its claim, as DevHub and the hub's start leave them."""
    root = tmp / f"{ROOT_PREFIX}{name}"
    state = root / "state"
    state.mkdir(parents=True)
    settings = load_settings({"LONDONSDE_HUB_STATE_DIR": str(state), "LONDONSDE_HUB_HOST_REGISTRY": str(registry),
                              "LONDONSDE_HUB_PUBLIC_PORT": str(port), "LONDONSDE_HUB_BRIDGE": f"sdet{name}",
                              "LONDONSDE_HUB_SUBNET": f"10.213.{port % 250 + 1}.0/26",
                              "LONDONSDE_HUB_HUB_PORT": str(port + 100),
                              "LONDONSDE_HUB_PROXY_API_PORT": str(port + 200),
                              "LONDONSDE_HUB_UID_BASE": str(100_000 + port * 1000), "LONDONSDE_HUB_UID_COUNT": "1000"})
    claim_host_resources(settings)
    (root / OWNER_FILE).write_text(json.dumps({
        "owner_pid": owner_pid, "owner_started": owner_started, "bridge": f"sdet{name}",
        "homes_root": str(root / "homes"), "state_dir": str(state), "registry": str(registry)}))
    return root


def _claiming(registry: Path, port: int) -> list[str]:
    return [state for state, claim in json.loads(registry.read_text()).items() if port in claim["ports"]]


def test_a_dead_runs_hub_is_swept_and_its_port_can_be_claimed_again(tmp_path: Path) -> None:
    registry = tmp_path / "instances.json"
    pid, started = _dead_process()
    dead = _hub_folder(tmp_path, registry, "dead01", pid, started, 61001)
    newcomer = load_settings({"LONDONSDE_HUB_STATE_DIR": str(tmp_path / "new"),
                              "LONDONSDE_HUB_HOST_REGISTRY": str(registry), "LONDONSDE_HUB_PUBLIC_PORT": "61001"})
    (tmp_path / "new").mkdir()
    with pytest.raises(HostConflict, match="61001"):  # what a killed run did to the next one
        claim_host_resources(newcomer)

    assert sweep_orphaned_hubs(tmp_path) == [dead]
    assert not dead.exists() and _claiming(registry, 61001) == []
    claim_host_resources(newcomer)


def test_a_hub_whose_owner_runs_is_left_alone(tmp_path: Path) -> None:
    """Another test process's hub (its owner alive: this process) is never touched; nor is a folder that does not
    say whose it is."""
    import os

    registry = tmp_path / "instances.json"
    started = (Path("/proc") / str(os.getpid()) / "stat").read_text().rsplit(")", 1)[1].split()[19]
    live = _hub_folder(tmp_path, registry, "live01", os.getpid(), started, 61002)
    unknown = tmp_path / f"{ROOT_PREFIX}unknown"
    unknown.mkdir()
    reused_pid = _hub_folder(tmp_path, registry, "reus01", os.getpid(), "1", 61003)  # this pid, another start

    assert sweep_orphaned_hubs(tmp_path) == [reused_pid]
    assert live.exists() and unknown.exists()
    assert _claiming(registry, 61002) == [str((live / "state").resolve())]


def test_a_hub_records_its_owner_for_the_sweep(tmp_path: Path) -> None:
    (tmp_path / f"{ROOT_PREFIX}rec").mkdir()
    hub = DevHub(spawner="local", root=tmp_path / f"{ROOT_PREFIX}rec")
    owner = json.loads((hub.root / OWNER_FILE).read_text())
    assert owner["bridge"] == hub.bridge and owner["state_dir"] == str(hub.state_dir)
    assert owner["registry"] == str(hub.registry)


def test_a_folder_made_by_another_account_is_not_swept(tmp_path: Path) -> None:
    """The sweep runs as root over the shared temporary folder, where any account may make a folder of that name: one
    made by another account, whose owner file names a live process of root's as its hub (and the registry, bridge
    and homes of a real hub), must not have root kill that process, tear down that bridge and homes, or forget that
    hub's claim. Only folders (and owner files) of the account sweeping are trusted."""
    import os

    registry = tmp_path / "instances.json"
    pid, started = _dead_process()
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        victim_started = (Path("/proc") / str(victim.pid) / "stat").read_text().rsplit(")", 1)[1].split()[19]
        planted = _hub_folder(tmp_path, registry, "evil01", pid, started, 61004)
        owner = json.loads((planted / OWNER_FILE).read_text())
        owner.update(hub_pid=victim.pid, hub_started=victim_started)
        (planted / OWNER_FILE).write_text(json.dumps(owner))
        stranger = 65534  # nobody
        for path in (planted, planted / OWNER_FILE):
            os.chown(path, stranger, stranger)

        assert sweep_orphaned_hubs(tmp_path) == []
        assert victim.poll() is None, "root killed a process named by another account's file"
        assert planted.exists() and _claiming(registry, 61004) == [str((planted / "state").resolve())]
    finally:
        victim.kill()
        victim.wait()
