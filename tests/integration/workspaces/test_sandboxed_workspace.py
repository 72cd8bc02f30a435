"""A real hub + proxy with the sandbox spawner; servers spawned through the REST API as the
gateway does; probes run in real kernels inside the sandbox.

Network probes target only listeners this test starts, on loopback or on the test's own bridge.
"""

from __future__ import annotations

import io
import json
import os
import socket
import sqlite3
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests

from gateway.outputs.checks import recompute
from gateway.workspaces.hub import HubClient
from gateway.workspaces.spec import TIERS, WorkspaceSpec
from gateway.workspaces.tickets import mint_ticket
from tests.integration.workspaces.workspace_client import Workspace, browser_login

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "infra" / "jupyterhub"))

from devhub import DevHub, missing_facilities  # noqa: E402
from sandbox_spawner import CGROUP_ROOT, NETNS_DIR  # noqa: E402

SINGLEUSER = Path(os.environ.get("LONDONSDE_SINGLEUSER_PREFIX", "/opt/londonsde/singleuser"))
MISSING = missing_facilities(SINGLEUSER)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(MISSING), reason="sandbox needs: " + "; ".join(MISSING)),
]

ADMISSIONS = "age_band,sex,los_days\n" + "".join(
    f"{age},{sex},{(i * 7) % 15}\n"
    for i, (age, sex) in enumerate((a, s) for a in ("20-39", "40-59", "60+") for s in ("F", "M") for _ in range(40))
)
MANIFEST = {  # the shape gateway.extracts writes (fields the notebooks read)
    "format_version": 1,
    "project_id": "p1",
    "version": 1,
    "created_at": "2026-01-01T00:00:00+00:00",
    "cohort": {"patients_matching": 250, "opt_outs_removed": 10, "patients_released": 240},
    "tables": [
        {
            "dataset": "admissions",
            "file": "admissions.csv",
            "rows": 240,
            "column_count": 3,
            "columns": [
                {
                    "name": "age_band",
                    "type": "string",
                    "source": "age",
                    "sensitivity": "quasi",
                    "treatment": "band",
                },
                {
                    "name": "sex",
                    "type": "string",
                    "source": "sex",
                    "sensitivity": "quasi",
                    "treatment": "keep",
                },
                {
                    "name": "los_days",
                    "type": "int64",
                    "source": "los",
                    "sensitivity": "none",
                    "treatment": "keep",
                },
            ],
        }
    ],
}


class Listener:
    """A TCP listener this test owns, so probes never touch anything else."""

    def __init__(self, host: str) -> None:
        self.sock = socket.socket()
        self.sock.bind((host, 0))
        self.sock.listen(8)
        self.host, self.port = host, int(self.sock.getsockname()[1])
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.close()

    def reachable_from_host(self) -> bool:
        with socket.create_connection((self.host, self.port), timeout=2):
            return True

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def hub() -> Iterator[DevHub]:
    with DevHub(spawner="sandbox", cull_idle_seconds=3600) as running:
        yield running


@pytest.fixture(scope="module")
def gateway(hub: DevHub) -> HubClient:
    return HubClient(hub.url, hub.gateway_token)


@pytest.fixture(scope="module")
def extracts(hub: DevHub) -> dict[str, Path]:
    return {
        "p1": hub.make_extract(
            "p1",
            {
                "manifest.json": json.dumps(MANIFEST),
                "admissions.csv": ADMISSIONS,
            },
        ),
        "p2": hub.make_extract("p2", {"manifest.json": "{}", "secret.csv": "x\n1\n"}),
    }


@pytest.fixture(scope="module")
def servers(hub: DevHub, gateway: HubClient, extracts: dict[str, Path]) -> dict[str, str]:
    """alice works on p1, bob on p2; both started by the gateway. Returns their sandbox IPs."""
    for user, project in (("alice", "p1"), ("bob", "p2")):
        gateway.ensure_user(user)
        gateway.start_server(user, WorkspaceSpec(project, str(extracts[project]), TIERS["small"]))
    for user, project in (("alice", "p1"), ("bob", "p2")):
        gateway.wait_until_ready(user, project, timeout=60)
    routes = hub.proxy_routes()
    return {
        user: routes[f"/user/{user}/{project}"]["target"].split("//")[1].split(":")[0]
        for user, project in (("alice", "p1"), ("bob", "p2"))
    }


@pytest.fixture(scope="module")
def alice(hub: DevHub, servers: dict[str, str]) -> Workspace:
    session, response = browser_login(hub.url, mint_ticket(hub.ticket_secret, "alice", "p1"))
    assert response.status_code == 200, response.text[:300]
    return Workspace(hub.url, session, "alice", "p1")


@pytest.fixture(scope="module")
def alice_kernel(alice: Workspace) -> str:
    return alice.start_kernel()


PROBE = r"""
import json, os, socket, concurrent.futures as cf

def can_connect(host, port):
    try:
        with socket.create_connection((host, port), timeout=1.5):
            return True
    except OSError:
        return False

def try_write(path):
    try:
        with open(path, "w") as fh:
            fh.write("x")
        return "written"
    except OSError as exc:
        return type(exc).__name__

targets = json.loads({targets!r})
with cf.ThreadPoolExecutor(len(targets)) as pool:
    reach = dict(zip(targets, pool.map(lambda k: can_connect(*targets[k]), targets)))

report = {{
    "uid": os.getuid(),
    "data_files": sorted(os.listdir("/data")),
    "manifest_project": json.load(open("/data/manifest.json"))["project_id"],
    "write_data": try_write("/data/evil.csv"),
    "write_outputs": try_write(os.path.expanduser("~/outputs/probe.txt")),
    "home": os.path.expanduser("~"),
    "homes_visible": sorted(os.listdir("/home")),
    "exists": {{p: os.path.exists(p) for p in {paths!r}}},
    "reach": reach,
    "pid1": open("/proc/1/cmdline").read().split("\0")[0],
}}
print(json.dumps(report))
"""


def test_sandbox_isolation_seen_from_a_kernel(
    hub: DevHub, servers: dict[str, str], extracts: dict[str, Path], alice: Workspace, alice_kernel: str
) -> None:
    on_bridge = Listener(hub.bridge_ip)
    on_loopback = Listener("127.0.0.1")
    try:
        # The same targets are reachable from the host, so a refusal inside means isolation.
        assert on_bridge.reachable_from_host() and on_loopback.reachable_from_host()
        with socket.create_connection((servers["bob"], 8888), timeout=2):
            pass
        targets = {
            "hub_api": [hub.bridge_ip, hub.hub_port],
            "host_port_on_bridge": [hub.bridge_ip, on_bridge.port],
            "host_loopback_listener": ["127.0.0.1", on_loopback.port],
            "proxy_public_port": ["127.0.0.1", hub.public_port],
            "other_sandbox": [servers["bob"], 8888],
        }
        paths = [
            str(extracts["p2"]),
            str(hub.extracts_root),
            str(hub.homes_root / "p2" / "bob"),
            str(hub.homes_root),
            "/home/bob",
            str(hub.state_dir),
            "/root",
            "/etc/shadow",
        ]
        result = alice.execute(alice_kernel, PROBE.format(targets=json.dumps(targets), paths=paths))
    finally:
        on_bridge.close()
        on_loopback.close()
    assert result.error is None, result.error
    report = result.json()

    assert report["manifest_project"] == "p1"
    assert report["data_files"] == ["admissions.csv", "manifest.json"]
    assert report["write_data"] in ("OSError", "PermissionError")  # read-only bind
    assert not (extracts["p1"] / "evil.csv").exists()
    assert report["write_outputs"] == "written"
    assert (hub.homes_root / "p1" / "alice" / "outputs" / "probe.txt").read_text() == "x"
    assert report["home"] == "/home/alice"
    assert report["homes_visible"] == ["alice"]
    assert report["exists"] == {path: False for path in paths}
    assert report["reach"] == {
        "hub_api": True,
        "host_port_on_bridge": False,
        "host_loopback_listener": False,
        "proxy_public_port": False,
        "other_sandbox": False,
    }
    assert hub.uid_base <= report["uid"] < hub.uid_base + hub.uid_count
    assert report["pid1"].endswith("bwrap")  # own pid namespace: the host's init is not visible


ALICE_TEAM = r"""
import json, os
os.umask(0o077)  # a tool with a strict umask: the team must still be able to write what it makes
team = os.path.expanduser("~/team")
with open(f"{team}/from_alice.txt", "w") as fh:
    fh.write("alice\n")
os.makedirs(f"{team}/shared/deeper")
with open(f"{team}/shared/deeper/table.csv", "w") as fh:
    fh.write("a,b\n")
os.symlink("/data", f"{team}/to_data")
os.symlink(OTHER_TEAM, f"{team}/to_other_team")
os.symlink("/home/bob/team", f"{team}/to_bob_team")
print(json.dumps(sorted(os.listdir(team))))
"""

CAROL_TEAM = r"""
import json, os
team = os.path.expanduser("~/team")
def attempt(action):
    try:
        return action()
    except OSError as exc:
        return type(exc).__name__
with open(f"{team}/from_alice.txt", "a") as fh:
    fh.write("carol\n")
with open(f"{team}/shared/deeper/from_carol.csv", "w") as fh:
    fh.write("c\n")
print(json.dumps({
    "read": open(f"{team}/from_alice.txt").read(),
    "through_data_link": sorted(os.listdir(f"{team}/to_data")),
    "through_other_team_link": attempt(lambda: os.listdir(f"{team}/to_other_team")),
    "through_bob_link": attempt(lambda: os.listdir(f"{team}/to_bob_team")),
    "replace_mount_point": attempt(lambda: os.rename(team, os.path.expanduser("~/elsewhere"))),
}))
"""


def test_team_folder_is_shared_by_the_projects_members_only(
    hub: DevHub, gateway: HubClient, extracts: dict[str, Path], servers: dict[str, str], alice: Workspace
) -> None:
    """alice and carol are on p1 (two sandboxes), bob on p2. What one member makes in ~/team the other can read and
    change; bob's ~/team is p2's and shows none of it; links planted there lead nowhere outside the sandbox; a
    stopped member's server (the gateway stops it when she leaves the team) no longer reaches it."""
    gateway.ensure_user("carol")
    gateway.start_server("carol", WorkspaceSpec("p1", str(extracts["p1"]), TIERS["small"]))
    gateway.wait_until_ready("carol", "p1", timeout=60)
    carol_session, landed = browser_login(hub.url, mint_ticket(hub.ticket_secret, "carol", "p1"))
    assert landed.status_code == 200
    carol = Workspace(hub.url, carol_session, "carol", "p1")
    bob_session, _ = browser_login(hub.url, mint_ticket(hub.ticket_secret, "bob", "p2"))
    bob = Workspace(hub.url, bob_session, "bob", "p2")
    other_team = str(hub.homes_root / "p2" / ".team")

    planted = alice.execute(alice.start_kernel(), ALICE_TEAM.replace("OTHER_TEAM", repr(other_team)))
    assert planted.error is None, planted.error
    assert planted.json() == ["from_alice.txt", "shared", "to_bob_team", "to_data", "to_other_team"]
    seen = carol.execute(carol.start_kernel(), CAROL_TEAM)
    assert seen.error is None, seen.error
    report = seen.json()
    assert report["read"] == "alice\ncarol\n"
    assert report["through_data_link"] == ["admissions.csv", "manifest.json"]  # carol's own /data: p1's extract
    assert report["through_other_team_link"] == "FileNotFoundError"
    assert report["through_bob_link"] == "FileNotFoundError"
    assert report["replace_mount_point"] in ("OSError", "PermissionError")
    listing = "import os, json; print(json.dumps(os.listdir(os.path.expanduser('~/team'))))"
    bobs = bob.execute(bob.start_kernel(), listing)
    assert bobs.error is None and bobs.json() == []

    # On the host: one image per project, owned by root and the project's own group, setgid; the files a member
    # made are the group's to write whatever her umask; the two projects have different groups.
    sys.path.insert(0, str(REPO / "infra" / "jupyterhub"))
    from sandbox_spawner import UidMap

    ids = UidMap(hub.state_dir / "uids.json", hub.uid_base, hub.uid_count)
    team1, team2 = hub.homes_root / "p1" / ".team", hub.homes_root / "p2" / ".team"
    assert os.path.ismount(team1) and os.path.ismount(team2)
    info = team1.stat()
    assert (info.st_uid, info.st_gid, info.st_mode & 0o7777) == (0, ids.gid_for_project("p1"), 0o2770)
    assert team2.stat().st_gid == ids.gid_for_project("p2") != info.st_gid
    assert ids.gid_for_project("p1") not in {ids.uid_for(name) for name in ("alice", "bob", "carol")}
    made = team1 / "shared" / "deeper" / "table.csv"
    assert made.stat().st_uid == ids.uid_for("alice") and made.stat().st_gid == info.st_gid
    assert made.stat().st_mode & 0o070 == 0o060 and made.stat().st_mode & 0o007 == 0
    assert (team1 / "to_other_team").is_symlink() and team2.stat().st_mode & 0o7777 == 0o2770

    # carol leaves the team: the gateway stops her server; her old browser session reaches nothing any more.
    gateway.stop_server("carol", "p1")
    assert gateway.server_status("carol", "p1") is None
    assert carol.api("GET", "/api/contents/team").status_code != 200
    assert (team1 / "from_alice.txt").read_text() == "alice\ncarol\n"  # the team's work stays


def test_new_home_is_seeded_from_template(hub: DevHub, servers: dict[str, str]) -> None:
    template = REPO / "notebooks_template"
    home = hub.homes_root / "p1" / "alice"
    expected = {p.name for p in template.iterdir() if p.name != "__pycache__"} | {"outputs"}
    assert expected <= {p.name for p in home.iterdir()}
    assert home.stat().st_mode & 0o777 == 0o700


def _code_cells(notebook: Path) -> str:
    cells = json.loads(notebook.read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


def test_template_notebooks_run_and_save_a_checked_output(hub: DevHub, alice: Workspace, tmp_path: Path) -> None:
    kernel = alice.start_kernel()
    welcome = alice.execute(kernel, _code_cells(REPO / "notebooks_template" / "welcome.ipynb"))
    assert welcome.error is None, welcome.error
    assert "Project: p1" in welcome.stdout
    example = alice.execute(kernel, _code_cells(REPO / "notebooks_template" / "example_analysis.ipynb"))
    assert example.error is None, example.error
    # What the gateway will read: the table and its disclosure-control record, in outputs/.
    outputs = hub.homes_root / "p1" / "alice" / "outputs"
    sidecar = json.loads((outputs / "sex_by_age_band.sdc.json").read_text())
    assert sidecar["status"] in ("pass", "review")
    assert sidecar["record"]["kind"] == "crosstab"
    assert "save_output(" in sidecar["source"]  # the cell that made it, for the output checkers
    assert (outputs / "sex_by_age_band.csv").exists()
    # ...and the gateway can run the recorded query again on the extract (as the gateway writes it: parquet),
    # with the same verdict.
    pd.read_csv(io.StringIO(ADMISSIONS)).to_parquet(tmp_path / "admissions.parquet")
    [table] = MANIFEST["tables"]
    as_written = {**MANIFEST, "tables": [{**table, "file": "admissions.parquet"}]}
    (tmp_path / "manifest.json").write_text(json.dumps(as_written))
    again = recompute(sidecar["record"], tmp_path)
    assert again.status == sidecar["status"] and again.query["dataset"] == "admissions"


def test_r_template_notebook_runs_in_the_sandbox_and_saves_its_checked_table(hub: DevHub, alice: Workspace) -> None:
    """The R kernel starts in the sandbox and the R example saves its table with the record the gateway recomputes
    from. (That R and Python give identical tables and records is tests/integration/workspaces/
    test_r_disclosure_control.py; the Python example now picks its own table, so the two examples differ.)"""
    outputs = hub.homes_root / "p1" / "alice" / "outputs"
    for saved in outputs.glob("age_band_by_sex.*"):
        saved.unlink()
    example = alice.execute(alice.start_kernel("ir"), _code_cells(REPO / "notebooks_template" /
                                                                 "example_analysis_r.ipynb"), timeout=180)
    assert example.error is None, example.error
    assert "admissions 240 3" in example.stdout, example.stdout  # load_extract read the extract's first table
    assert (outputs / "age_band_by_sex.csv").read_bytes()
    sidecar = json.loads((outputs / "age_band_by_sex.sdc.json").read_bytes())
    assert sidecar["record"]["query"]["dataset"] == "admissions", sidecar["record"]
    # the R cell that made it, for the output checkers (the kernel ran the notebook's code cells as one cell)
    assert "save_output(checked, paste0(row_var" in sidecar["source"], sidecar.get("source")


def test_downloads_and_export_are_refused(alice: Workspace) -> None:
    assert alice.api("GET", "/api/contents/outputs").status_code == 200
    assert alice.api("GET", "/files/outputs/probe.txt").status_code == 403
    assert alice.api("GET", "/files/outputs/probe.txt?download=1").status_code == 403
    assert alice.api("GET", "/nbconvert/html/welcome.ipynb?download=true").status_code == 403


def test_researcher_cannot_start_or_stop_servers(hub: DevHub, alice: Workspace) -> None:
    xsrf = alice.session.cookies.get("_xsrf", path="/hub/") or ""
    headers = {"X-XSRFToken": xsrf}
    start = alice.session.post(f"{hub.url}/hub/api/users/alice/servers/p9", headers=headers, json={}, timeout=10)
    assert start.status_code == 403
    stop = alice.session.delete(f"{hub.url}/hub/api/users/alice/servers/p1", headers=headers, timeout=10)
    assert stop.status_code == 403
    assert alice.session.get(f"{hub.url}/hub/spawn/alice/p9", timeout=10).status_code == 403
    # ...while what the gateway started is still usable by her.
    assert alice.api("GET", "/api/status").status_code == 200


def test_ticket_is_single_use_and_checked(hub: DevHub, servers: dict[str, str]) -> None:
    ticket = mint_ticket(hub.ticket_secret, "bob", "p2")
    _, first = browser_login(hub.url, ticket)
    assert first.status_code == 200 and first.url.endswith("/user/bob/p2/lab/tree/welcome.ipynb")
    _, replay = browser_login(hub.url, ticket)
    assert replay.status_code == 403
    assert ticket not in hub.log_path.read_text()  # masked in the hub's request log
    forged = mint_ticket(b"x" * 64, "bob", "p2")
    assert browser_login(hub.url, forged)[1].status_code == 403
    expired = mint_ticket(hub.ticket_secret, "bob", "p2", ttl_seconds=1, now=1_000_000)
    assert browser_login(hub.url, expired)[1].status_code == 403
    assert requests.get(f"{hub.url}/hub/login", timeout=10).status_code == 403
    assert (
        requests.post(f"{hub.url}/hub/login", data={"username": "bob", "password": "x"}, timeout=10).status_code == 403
    )


def _cgroup_stat(hub: DevHub, user: str, project: str, name: str) -> dict[str, int]:
    path = CGROUP_ROOT / "memory" / f"londonsde-{hub.bridge}" / f"{user}--{project}" / name
    return {k: int(v) for k, v in (line.split() for line in path.read_text().splitlines())}


def test_memory_past_the_limit_kills_the_kernel_not_the_server(
    hub: DevHub, gateway: HubClient, alice: Workspace
) -> None:
    kernel = alice.start_kernel()
    limit = TIERS["small"].memory_bytes
    result = alice.execute(kernel, f"blob = b'\\x01' * {limit + 512 * 1024 * 1024}\nprint('survived')", timeout=90)
    seen = [(m.get("msg_type"), m.get("content", {}).get("execution_state")) for m in result.messages]
    assert result.kernel_died, (result.error, result.stdout, seen)
    assert "survived" not in result.stdout
    oom = _cgroup_stat(hub, "alice", "p1", "memory.oom_control")
    assert oom.get("oom_kill", 0) >= 1, oom
    status = gateway.server_status("alice", "p1")
    assert status is not None and status.ready
    assert alice.api("GET", "/api/status").status_code == 200


def test_stop_removes_namespace_and_cgroups(hub: DevHub, gateway: HubClient, servers: dict[str, str]) -> None:
    namespaces_before = {p.name for p in NETNS_DIR.iterdir() if p.name.startswith(hub.bridge)}
    assert len(namespaces_before) == 2
    gateway.stop_server("bob", "p2")
    assert gateway.server_status("bob", "p2") is None
    namespaces_after = {p.name for p in NETNS_DIR.iterdir() if p.name.startswith(hub.bridge)}
    assert len(namespaces_after) == 1
    for controller in ("memory", "cpu", "pids"):
        assert not (CGROUP_ROOT / controller / f"londonsde-{hub.bridge}" / "bob--p2").exists()
    # bob's home (his work) outlives the server.
    assert (hub.homes_root / "p2" / "bob" / "outputs").is_dir()


def test_hub_restart_cleans_up_a_sandbox_that_died_meanwhile(
    hub: DevHub, gateway: HubClient, servers: dict[str, str]
) -> None:
    state = _spawner_state(hub, "alice", "p1")
    netns = state["sandbox"]["netns"]
    assert (NETNS_DIR / netns).exists()
    hub.crash()
    os.kill(state["pid"], 9)  # the workspace dies while the hub is down
    hub.start()
    assert not (NETNS_DIR / netns).exists()
    assert not (CGROUP_ROOT / "memory" / state["sandbox"]["cgroup"]).exists()
    assert HubClient(hub.url, hub.gateway_token).server_status("alice", "p1") is None


def _spawner_state(hub: DevHub, user: str, server: str) -> dict[str, Any]:
    """The spawner state the hub persisted (what a restarted hub will read)."""
    query = (
        "select spawners.state from spawners join users on users.id = spawners.user_id "
        "where users.name = ? and spawners.name = ?"
    )
    with sqlite3.connect(hub.state_dir / "jupyterhub.sqlite") as db:
        (raw,) = db.execute(query, (user, server)).fetchone()
    return dict(json.loads(raw))

