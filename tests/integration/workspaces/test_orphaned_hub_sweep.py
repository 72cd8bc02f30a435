"""A test run killed with SIGKILL (its clean-up never runs) leaves a real hub behind: the hub and proxy processes,
the bridge and firewall table, and the claim of its ports in the host registry, which made a later hub that drew one
of those ports refuse to start. The next hub sweeps all of it first."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "infra" / "jupyterhub"))

from devhub import OWNER_FILE, missing_facilities, sweep_orphaned_hubs  # noqa: E402
from hub_settings import HubSettings  # noqa: E402
from sandbox_spawner import nft_table_name  # noqa: E402

SINGLEUSER = Path(os.environ.get("LONDONSDE_SINGLEUSER_PREFIX", "/opt/londonsde/singleuser"))
MISSING = missing_facilities(SINGLEUSER)
pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(MISSING), reason="sandbox needs: " + "; ".join(MISSING))]

# A test process that starts a hub, says where it is, and waits to be killed.
OWNER = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from devhub import DevHub
hub = DevHub(spawner="sandbox").start()
print(json.dumps({"root": str(hub.root), "state": str(hub.state_dir.resolve()), "bridge": hub.bridge,
                  "hub_pid": hub.proc.pid}), flush=True)
time.sleep(600)
"""


def _running(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _host_has(*argv: str) -> bool:
    return subprocess.run(argv, capture_output=True).returncode == 0


def test_a_hub_left_by_a_killed_test_run_is_swept_by_the_next(tmp_path: Path) -> None:
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(REPO / "infra" / "jupyterhub")],
                             stdout=subprocess.PIPE, cwd=tmp_path)
    assert owner.stdout is not None
    left = json.loads(owner.stdout.readline())
    owner.send_signal(signal.SIGKILL)  # as a CI run stopped with kill -9: no clean-up runs
    owner.wait()
    registry = HubSettings().host_registry
    root = Path(left["root"])
    recorded = json.loads((root / OWNER_FILE).read_text())
    assert recorded["hub_pid"] == left["hub_pid"] and _running(left["hub_pid"]) and _running(recorded["proxy_pid"])
    assert left["state"] in json.loads(registry.read_text())
    assert _host_has("ip", "link", "show", left["bridge"])

    assert root in sweep_orphaned_hubs()

    assert not root.exists() and not _running(left["hub_pid"]) and not _running(recorded["proxy_pid"])
    assert left["state"] not in json.loads(registry.read_text())
    assert not _host_has("ip", "link", "show", left["bridge"])
    assert not _host_has("nft", "list", "table", "inet", nft_table_name(left["bridge"]))


def test_a_hub_refused_a_resource_another_instance_holds_draws_again(tmp_path: Path) -> None:
    """Two test hubs side by side drew the same /26 (one chance in 1,020 per pair): the second hub exited with
    HostConflict and its test failed. It now draws its ports, bridge, subnet and uids again."""
    from devhub import DevHub

    registry, other = tmp_path / "instances.json", tmp_path / "other-instance"
    other.mkdir()
    hub = DevHub(spawner="local", extra_env={"LONDONSDE_HUB_HOST_REGISTRY": str(registry)})
    taken = hub.subnet
    registry.write_text(json.dumps({str(other.resolve()): {"uids": [1, 2], "bridge": "sdeother", "subnet": taken,
                                                           "ports": [1]}}))
    with hub:
        assert hub.subnet != taken
        assert "HostConflict" in hub.log_path.read_text()  # the first draw was refused
        assert str(hub.state_dir.resolve()) in json.loads(registry.read_text())
