"""Outputs handed over from a real sandboxed workspace, through the real hub, to a live gateway (issue 14).

The gateway opens the workspace as it does for a researcher (so the server carries a hand-over credential);
everything a workspace does here runs in the sandbox's own kernel or through its jupyter_server extension:

* the swap loop of finding 2 (renameat2 RENAME_EXCHANGE of outputs/k.txt with a symlink to a secret, and of
  outputs/d with a symlink to another folder) runs for 30 s inside the sandbox while the hand-over is called
  again and again: every byte the gateway ever stored is the real file's;
* FIFOs, sockets and symlinks (to /dev/zero too) are refused at once (device nodes cannot be made in a sandbox);
* only a server's own token may call the hub's forwarder: a browser session is refused;
* real ACRO and disclosure_control both import in the kernel; ACRO's results.json, handed over with the table
  it wrote, shows ACRO's status, exception and comments beside the gateway's verdict, and the release's
  results.json (SACRO layout) carries them without a single cell value.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from gateway.config import Settings
from gateway.db import unit_of_work
from gateway.models import AuditEvent
from gateway.outputs import release as release_mod
from gateway.outputs import service
from gateway.outputs.models import OutputRequest
from gateway.workspaces import service as workspaces
from projects.models import Project
from tests.integration.test_outputs import act, get, review_all, work
from tests.integration.workspaces.live_gateway import gateway_beside_a_sandbox_hub
from tests.integration.workspaces.workspace_client import Workspace, browser_login
from tests.support import factories as f

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "infra" / "jupyterhub"))

from devhub import default_singleuser_prefix, missing_facilities  # noqa: E402

MISSING = missing_facilities(default_singleuser_prefix())
pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(MISSING), reason="sandbox needs: " + "; ".join(MISSING))]
SWAP_SECONDS = float(os.environ.get("LONDONSDE_SWAP_SECONDS", "30"))


@pytest.fixture
def backend() -> str:
    from tests.support.databases import backends

    return backends()[-1]


@pytest.fixture
def running(settings: Settings, demo_users: dict[str, int]) -> Iterator[dict[str, Any]]:
    with gateway_beside_a_sandbox_hub(settings) as world:
        factory, project_id = world["factory"], world["project_id"]
        login = workspaces.open_workspace(factory, world["settings"], world["uid"], project_id)
        session, response = browser_login(world["hub"].url, login.split("auth_ticket=")[1])
        assert response.status_code == 200, response.text[:300]
        with unit_of_work(factory) as s:
            actor = f.user(s, "researcher")
            request = service.create_request(s, actor, s.get(Project, project_id), "Handed over")
            group = service.save_group(s, actor, request, "Tables", "Counts by region and sex.",
                                       "Checked in the workspace with disclosure_control and ACRO.")
            ids = {"request": request.id, "group": group.id}
        yield {"hub": world["hub"], "settings": world["settings"], "factory": factory, "project_id": project_id,
               "workspace": Workspace(world["hub"].url, session, world["hub_user"], world["server_name"]), **ids}


def hand_over(ws: Workspace, name: str, request: int, group: str, kind: str = "output") -> Any:
    return ws.api("POST", "/londonsde/outputs", json={"name": name, "request": request, "group": group, "kind": kind})


SETUP = r"""
import os, socket
home = os.path.expanduser("~")
out = os.path.join(home, "outputs")
os.makedirs(os.path.join(out, "d"), exist_ok=True)
os.makedirs(os.path.join(home, "other"), exist_ok=True)
open(os.path.join(home, "secret_key"), "w").write("SECRET-OUTSIDE-OUTPUTS\n")
open(os.path.join(home, "other", "k.txt"), "w").write("OTHER FOLDER\n")
open(os.path.join(out, "k.txt"), "w").write("region n\nNorth 40\n")
open(os.path.join(out, "d", "k.txt"), "w").write("region n\nSouth 35\n")
os.symlink(os.path.join(home, "secret_key"), os.path.join(out, "swap"))
os.symlink(os.path.join(home, "other"), os.path.join(out, "dswap"))
os.mkfifo(os.path.join(out, "fifo.txt"))
os.symlink("/dev/zero", os.path.join(out, "zero.txt"))
os.symlink(os.path.join(home, "secret_key"), os.path.join(out, "link.txt"))
s = socket.socket(socket.AF_UNIX); s.bind(os.path.join(out, "sock.txt"))
try:
    os.mknod(os.path.join(out, "dev.txt"), 0o20600, os.makedev(1, 5))
    mknod = "made"
except OSError as exc:
    mknod = type(exc).__name__
SWAPPER = '''
import ctypes, sys, time
libc = ctypes.CDLL(None, use_errno=True)
a, b, end = sys.argv[1].encode(), sys.argv[2].encode(), time.monotonic() + float(sys.argv[3])
n = 0
while time.monotonic() < end:
    n += libc.renameat2(-100, a, -100, b, 2) == 0
print(n)
'''
import subprocess, sys
swappers = [subprocess.Popen([sys.executable, "-c", SWAPPER, os.path.join(out, x), os.path.join(out, y), "{seconds}"],
                             stdout=subprocess.PIPE, text=True) for x, y in (("k.txt", "swap"), ("d", "dswap"))]
print(mknod)
"""


def test_swap_loop_and_special_files_against_the_real_hand_over(running: dict[str, Any]) -> None:
    ws, factory, request_id = running["workspace"], running["factory"], running["request"]
    kernel = ws.start_kernel()
    started = ws.execute(kernel, SETUP.replace("{seconds}", str(SWAP_SECONDS)))
    assert started.error is None, started.error
    assert started.stdout.strip() == "PermissionError"  # no device node can be made inside the sandbox
    deadline = time.monotonic() + SWAP_SECONDS
    outcomes: dict[str, int] = {}
    while time.monotonic() < deadline:
        for name in ("k.txt", "d/k.txt"):
            response = hand_over(ws, name, request_id, "Tables", "supporting")
            message = response.json().get("message", "") if response.status_code != 201 else "stored"
            why = next((w for w in ("exactly this content", "symbolic link", "no file", "not a regular file")
                        if w in message), message[:60])
            outcomes[f"{response.status_code} {why}"] = outcomes.get(f"{response.status_code} {why}", 0) + 1
    done = ws.execute(kernel, "import json; print(json.dumps([int(p.communicate()[0]) for p in swappers]))")
    assert done.error is None, done.error
    assert min(done.json()) > 1000, done.json()  # the swaps really ran all along
    print(f"swap loop {SWAP_SECONDS:.0f} s: exchanges {done.json()}, hand-over answers {outcomes}")
    legit = {hashlib.sha256(b"region n\nNorth 40\n").hexdigest(), hashlib.sha256(b"region n\nSouth 35\n").hexdigest()}
    with factory() as s:
        stored = [e.details for e in s.scalars(select(AuditEvent).where(AuditEvent.action.in_(
            ["output_request.file_added", "output_request.file_updated"])))]
        request = s.get(OutputRequest, request_id)
        names = sorted(item.path for item in request.files)
    assert stored and {d["sha256"] for d in stored} <= legit, stored  # never a byte from outside outputs/
    assert names == ["d/k.txt", "k.txt"]
    assert outcomes.get("201 stored", 0) == 2, outcomes  # each name stored once; every later read was the same bytes
    assert outcomes.get("422 symbolic link", 0) > 0, outcomes  # refused mid-swap, never followed

    for name, message in [("fifo.txt", "not a regular file"), ("sock.txt", "not a regular file"),
                          ("zero.txt", "symbolic link"), ("link.txt", "symbolic link"),
                          ("../secret_key", "not a plain path")]:
        began = time.monotonic()
        response = hand_over(ws, name, request_id, "Tables")
        assert response.status_code == 422 and message in response.json()["message"], (name, response.text)
        assert time.monotonic() - began < 10, name

    # what the workspace offers: its regular files (no links, FIFOs, sockets) and the researcher's draft requests
    offered = ws.api("GET", "/londonsde/outputs").json()
    names = {f["name"] for f in offered["files"]}  # after the swaps, each pair's real member is whichever name
    assert len(names & {"k.txt", "swap"}) == 1 and len(names & {"d/k.txt", "dswap/k.txt"}) == 1, names
    assert names <= {"k.txt", "swap", "d/k.txt", "dswap/k.txt"}, names  # no link, FIFO or socket is offered
    assert offered["problem"] is None and [r["id"] for r in offered["requests"]] == [request_id]

    # the hub's forwarder takes a server's own token only, never a person's browser session
    hub = running["hub"]
    xsrf = ws.session.cookies.get("_xsrf", path="/hub/") or ""
    direct = ws.session.post(f"{hub.url}/hub/api/londonsde/handover/files", json={}, timeout=10,
                             headers={"Referer": f"{hub.url}/hub/home", "X-XSRFToken": xsrf})
    assert direct.status_code == 403, direct.text
    assert ws.session.post(f"{hub.url}/hub/api/londonsde/handover/files", json={}, timeout=10,
                           headers={"Authorization": "token not-a-token"}).status_code == 403


ACRO = r"""
import json, numpy as np, pandas as pd, disclosure_control as dc
from acro import ACRO
from outputs_helper import list_requests, submit_output
rng = np.random.default_rng(3)
df = pd.DataFrame({"region": rng.choice(["North", "South"], 200), "sex": rng.choice(["F", "M"], 200)})
df.loc[df.index[:3], "region"] = "Tiny"
session = ACRO(suppress=True)  # ACRO hides the Tiny cells itself
table = session.crosstab(df.region, df.sex)
session.add_comments("output_0", "Counts by region and sex")
session.add_exception("output_0", "Tiny is one clinic; the count is published already")
session.finalise("outputs/acro", "json")
drafts = list_requests()
sent = [submit_output("acro/output_0_0.csv", request={request}, group="Tables"),
        submit_output("acro/results.json", request={request}, group="Tables", kind="supporting")]
print(json.dumps({"pandas": pd.__version__, "dc": dc.__version__, "acro_class": ACRO.__name__,
                  "drafts": [d["id"] for d in drafts], "sent": [s["name"] for s in sent]}))
"""


def test_real_acro_results_are_shown_beside_the_gateways_verdict_and_released_publicly(
        running: dict[str, Any]) -> None:
    ws, factory, settings, request_id = running["workspace"], running["factory"], running["settings"], \
        running["request"]
    result = ws.execute(ws.start_kernel(), ACRO.replace("{request}", str(request_id)), timeout=180)
    assert result.error is None, result.error
    report = result.json()
    assert report["pandas"].startswith("2.3") and report["drafts"] == [request_id]
    assert report["sent"] == ["acro/output_0_0.csv", "acro/results.json"]
    act(factory, request_id, "researcher", service.submit, settings)
    work(factory, settings)
    table = next(item for item in get(factory, request_id).files if item.path == "acro/output_0_0.csv")
    assert table.check_status == "review"  # no record: the gateway's heuristics find no small count left
    acro = table.check_result["acro"]
    assert (acro["status"], acro["exception"], acro["comments"]) == (
        "review", "Tiny is one clinic; the count is published already", ["Counts by region and sex"])
    assert acro["checks"]["MinimumThresholdCheck"] == 2
    review_all(factory, request_id, "checker1", "approve")
    review_all(factory, request_id, "checker2", "approve")
    act(factory, request_id, "checker1", service.decide, "approve", "")
    work(factory, settings)
    package = release_mod.package_path(get(factory, request_id), settings.outputs_dir)
    with zipfile.ZipFile(package) as archive:
        results = json.loads(archive.read("results.json"))
        assert sorted(archive.namelist()) == ["manifest.json", "outputs/acro/output_0_0.csv", "results.json"]
    [entry] = results["results"].values()
    assert entry["files"][0]["name"] == "outputs/acro/output_0_0.csv"
    assert entry["exception"] == "Tiny is one clinic; the count is published already"
    assert "Counts by region and sex" in entry["comments"]
