"""Two gateways with two hubs on one host, each opening a workspace; Ctrl+C leaves nothing behind (finding 6).

Each instance is a real `sde demo` (gunicorn, worker and the sandboxing hub as its children) in its own instance
folder, with every hub setting from its gateway settings. A researcher opens a workspace in each through the
gateway's own service and runs code in it; then each demo gets SIGINT, as from Ctrl+C in its terminal, and the
host is searched for anything left: processes, sandboxes' cgroups and namespaces, nftables table, bridge, mounts.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from gateway.config import Settings
from gateway.db import make_engine, make_session_factory, unit_of_work
from gateway.extracts import service as extracts
from gateway.workspaces.entitlement import current_extract, workspace_id
from gateway.workspaces.service import hub_username, open_workspace
from projects.models import Project
from projects.workflow import ProjectState
from tests.integration.workspaces.workspace_client import Workspace, browser_login
from tests.support import factories as f
from tests.support.sandbox import free_port

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "infra" / "jupyterhub"))

from devhub import missing_facilities  # noqa: E402
from sandbox_spawner import CGROUP_ROOT, NETNS_DIR, nft_table_name  # noqa: E402

SINGLEUSER = Path(os.environ.get("LONDONSDE_SINGLEUSER_PREFIX", "/opt/londonsde/singleuser"))
MISSING = missing_facilities(SINGLEUSER)
pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(MISSING), reason="sandbox needs: " + "; ".join(MISSING))]


@dataclass
class Instance:
    folder: Path
    config: dict[str, object]
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def settings(self) -> Settings:
        return Settings.model_validate({**self.config, "instance_dir": self.folder / "instance"})

    @property
    def workspaces(self) -> dict[str, object]:
        return dict(self.config["workspaces"])  # type: ignore[arg-type]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SDE_", "LONDONSDE_HUB_"))}
        env.update({"SDE_INSTANCE_DIR": str(self.folder / "instance"), "SDE_CONFIG": str(self.folder / "config.json"),
                    "SDE_ENV": "development", "PYTHONPATH": str(REPO)})
        return env

    def log(self) -> str:
        path = self.folder / "demo.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def new_instance() -> Instance:
    folder = Path(tempfile.mkdtemp(prefix="sde-two-"))
    hub_port = free_port()
    config = {
        "extracts": {"demo_patients": 600},
        "workspaces": {
            "hub_url": f"http://127.0.0.1:{hub_port}", "proxy_api_port": free_port(), "hub_api_port": free_port(),
            "bridge": f"sdet{secrets.token_hex(3)}",
            "subnet": f"10.213.{secrets.randbelow(255) + 1}.{64 * secrets.randbelow(4)}/26",
            "uid_base": 100_000 + 1000 * secrets.randbelow(100_000), "uid_count": 1000,
            "runtime_root": str(Path("/run/londonsde") / f"test-{folder.name}"),
            "singleuser_prefix": str(SINGLEUSER), "cull_idle_seconds": 3600,
        },
    }
    (folder / "config.json").write_text(json.dumps(config))
    return Instance(folder, config, free_port())


def start_demo(instance: Instance) -> None:
    log = (instance.folder / "demo.log").open("ab")
    instance.process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "demo", "--port", str(instance.port)], env=instance.env(), cwd=REPO,
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # its own session, as in a terminal
    deadline = time.monotonic() + 300
    hub_api = f"{instance.workspaces['hub_url']}/hub/api/"
    while time.monotonic() < deadline:
        assert instance.process.poll() is None, instance.log()
        with contextlib.suppress(requests.RequestException):
            if (requests.get(f"http://127.0.0.1:{instance.port}/api/v1/openapi.json", timeout=2).ok
                    and requests.get(hub_api, timeout=2).ok):
                return
        time.sleep(0.5)
    raise AssertionError("demo did not come up:\n" + instance.log())


def interrupt(instance: Instance) -> int:
    """Ctrl+C: SIGINT to the demo's foreground process group (the demo; its children have sessions of their own)."""
    assert instance.process is not None
    os.killpg(instance.process.pid, signal.SIGINT)
    return instance.process.wait(timeout=120)


@pytest.fixture(scope="module")
def instances() -> Iterator[list[Instance]]:
    both = [new_instance(), new_instance()]
    try:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(start_demo, both))
        yield both
    finally:
        for instance in both:
            if instance.process is not None and instance.process.poll() is None:
                with contextlib.suppress(Exception):
                    interrupt(instance)
            with contextlib.suppress(Exception):
                from sandbox_spawner import cleanup_instance

                cleanup_instance(str(instance.workspaces["bridge"]), instance.settings.homes_root)
            subprocess.run(["rm", "-rf", str(instance.workspaces["runtime_root"])], check=False)
            if not os.environ.get("LONDONSDE_KEEP_HUB_DIR"):
                subprocess.run(["rm", "-rf", str(instance.folder)], check=False)


def open_in(instance: Instance) -> dict[str, object]:
    """researcher2 opens the workspace of an active project of this instance, and runs code in it."""
    settings = instance.settings
    factory = make_session_factory(make_engine(settings.resolved_database_url))
    with unit_of_work(factory) as s:
        project = next(p for p in s.scalars(select(Project).where(Project.state == ProjectState.ACTIVE))
                       if any(m.user.username == "researcher2" for m in p.members))
        if current_extract(settings.extracts_root, project) is None:  # held on this small population
            reason = "Small synthetic population in a test instance."
            if extracts.release_held(s, settings, f.user(s, "admin"), project, 1, reason) == "proposed":
                assert extracts.release_held(s, settings, f.user(s, "custodian"), project, 1, reason) == "released"
        researcher, project_id, server = f.user(s, "researcher2"), project.id, workspace_id(project)
        hub_user, user_id = hub_username(researcher), researcher.id
    url = open_workspace(factory, settings, user_id, project_id)
    session, landing = browser_login(str(instance.workspaces["hub_url"]), url.split("auth_ticket=")[1])
    assert landing.status_code == 200 and f"/user/{hub_user}/{server}/" in landing.url, landing.url
    workspace = Workspace(str(instance.workspaces["hub_url"]), session, hub_user, server)
    result = workspace.execute(workspace.start_kernel(), (
        "import json, os\n"
        "print(json.dumps({'uid': os.getuid(), 'project': json.load(open('/data/manifest.json'))['project_id'],"
        " 'home': os.path.expanduser('~')}))"))
    assert result.error is None, result.error
    return {**result.json(), "server": server, "hub_user": hub_user}


def test_two_instances_each_open_a_workspace_then_ctrl_c_leaves_nothing(instances: list[Instance]) -> None:
    with ThreadPoolExecutor(2) as pool:
        seen = list(pool.map(open_in, instances))
    for instance, report in zip(instances, seen, strict=True):
        base = int(instance.workspaces["uid_base"])  # type: ignore[arg-type]
        assert base <= int(report["uid"]) < base + 1000  # type: ignore[arg-type]
        assert report["project"] == report["server"] and report["home"] == f"/home/{report['hub_user']}"
    a, b = instances
    assert a.workspaces["bridge"] != b.workspaces["bridge"]

    for instance in instances:
        assert interrupt(instance) in (0, -signal.SIGINT, 1), instance.log()
    time.sleep(1)
    for instance in instances:
        state = str(instance.settings.hub_state_dir)
        bridge = str(instance.workspaces["bridge"])
        base = int(instance.workspaces["uid_base"])  # type: ignore[arg-type]
        assert left_processes(state, base) == [], instance.log()
        assert not any((CGROUP_ROOT / c / f"londonsde-{bridge}").exists() for c in ("memory", "cpu", "pids"))
        assert not any(p.name.startswith(f"{bridge}-") for p in NETNS_DIR.iterdir()) if NETNS_DIR.exists() else True
        tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout
        assert nft_table_name(bridge) not in tables
        assert subprocess.run(["ip", "link", "show", "dev", bridge], capture_output=True).returncode != 0
        mounts = Path("/proc/self/mounts").read_text()
        assert str(instance.settings.homes_root) not in mounts


def left_processes(state_dir: str, uid_base: int) -> list[str]:
    """Processes of this instance still alive: by the hub's state folder in their environment, or a workspace uid."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes()
            uid = (proc / "status").read_text().split("Uid:")[1].split()[0]
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
        if f"LONDONSDE_HUB_STATE_DIR={state_dir}".encode() in environ or uid_base <= int(uid) < uid_base + 1000:
            found.append(f"{proc.name}: {cmdline[:120]}")
    return found
