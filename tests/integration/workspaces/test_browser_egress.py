"""Browser egress through a real sandboxed workspace server (issue 13, finding 1; singleuser/londonsde_egress.py).

The gateway opens the workspace as it does for a researcher, through the real hub and the sandbox spawner; the
researcher's browser is the ``requests`` session signed in with the gateway's ticket. Everything the attacker does
inside the workspace runs in the sandbox's own kernel.

* finding 1: ``shutil.copy("/data/patients.parquet", "p.parquet")`` then the contents API with ``format=base64``
  returned the whole extract. Now refused, and so are the same bytes renamed ``.txt``, a text copy of a /data file,
  a 3 MB text file, a file swapped in while it is being read, and the other doors (files, view, nbconvert, a kernel
  spec or lab extension folder written in the home). A notebook and a small text file are still served.
* uploads (PUT base64, chunked, text to a new name) are refused; new notebooks and text files, saves and renames
  work.
* the server counts what it sends to the browser (HTTP and the kernel's websocket) and reports it: the gateway's
  session row holds at least what the browser received, and the threshold event is recorded once.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.app import create_app
from gateway.config import Settings, WorkspaceSettings
from gateway.models import AuditEvent
from gateway.workspaces import service as workspaces
from gateway.workspaces import traffic
from gateway.workspaces.entitlement import workspace_id
from gateway.workspaces.models import WorkspaceSession
from projects.models import Project
from tests.integration.test_outputs import ready_project
from tests.integration.workspaces.workspace_client import Workspace, browser_login
from tests.support import factories as f
from tests.support.browser import LiveServer, free_port

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "infra" / "jupyterhub"))

from devhub import DevHub, default_singleuser_prefix, missing_facilities  # noqa: E402

MISSING = missing_facilities(default_singleuser_prefix())
pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(MISSING), reason="sandbox needs: " + "; ".join(MISSING))]
ALERT_BYTES = 1_500_000
REPORT_SECONDS = 2


@pytest.fixture
def backend() -> str:
    from tests.support.databases import backends

    return backends()[-1]


@pytest.fixture
def running(settings: Settings, demo_users: dict[str, int]) -> Iterator[dict[str, Any]]:
    port = free_port()
    with DevHub(spawner="sandbox", extra_env={"LONDONSDE_HUB_GATEWAY_URL": f"http://127.0.0.1:{port}",
                                              "LONDONSDE_HUB_TRAFFIC_REPORT_SECONDS": str(REPORT_SECONDS)}) as hub:
        live = settings.model_copy(update={"workspaces": WorkspaceSettings(
            hub_url=hub.url, hub_state_dir=hub.state_dir, extracts_root=hub.extracts_root,
            homes_root=hub.homes_root, traffic_alert_bytes=ALERT_BYTES)})
        app = create_app(live)
        server = LiveServer(app, port=port).start()
        factory: sessionmaker[Session] = app.extensions["sde_sessionmaker"]
        project_id = ready_project(factory, live)
        for path in (hub.extracts_root, *hub.extracts_root.rglob("*")):
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        with factory() as s:
            researcher = f.user(s, "researcher")
            uid, server_name = researcher.id, workspace_id(s.get(Project, project_id))
            hub_user = workspaces.hub_username(researcher)
        login = workspaces.open_workspace(factory, live, uid, project_id)
        session, response = browser_login(hub.url, login.split("auth_ticket=")[1])
        assert response.status_code == 200, response.text[:300]
        try:
            yield {"hub": hub, "factory": factory, "project_id": project_id,
                   "workspace": Workspace(hub.url, session, hub_user, server_name)}
        finally:
            server.stop()
            app.extensions["sde_engine"].dispose()


ATTACK = r"""
import json, os, shutil
shutil.copy("/data/patients.parquet", "p.parquet")
shutil.copy("/data/patients.parquet", "p.txt")
shutil.copy("/data/manifest.json", "notes.txt")
open("big.txt", "w").write("x" * (3 * 1024 * 1024))
open("hello.txt", "w").write("hello from the workspace\n")
nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": "# Analysis"}], "metadata": {},
      "nbformat": 4, "nbformat_minor": 5}
open("analysis.ipynb", "w").write(json.dumps(nb))
for folder in (".local/share/jupyter/kernels/evil", ".local/share/jupyter/kernels/ir",
               ".local/share/jupyter/labextensions/evil/static"):
    os.makedirs(folder, exist_ok=True)
    shutil.copy("/data/patients.parquet", os.path.join(folder, "p.parquet"))
    shutil.copy("/data/patients.parquet", os.path.join(folder, "logo-64x64.png"))
open(".local/share/jupyter/kernels/evil/kernel.json", "w").write(json.dumps(
    {"argv": ["python3", "-m", "ipykernel", "-f", "{connection_file}"], "display_name": "evil", "language": "python"}))
open(".local/share/jupyter/kernels/ir/kernel.json", "w").write(json.dumps(  # the admitted R kernel's name
    {"argv": ["python3", "-m", "ipykernel", "-f", "{connection_file}"], "display_name": "R", "language": "R"}))
print(json.dumps({"size": os.path.getsize("p.parquet")}))
"""


def test_finding_1_bulk_download_through_the_contents_api_is_refused(running: dict[str, Any]) -> None:
    ws: Workspace = running["workspace"]
    kernel = ws.start_kernel()
    made = ws.execute(kernel, ATTACK)
    assert made.error is None, made.error
    parquet_size = made.json()["size"]
    assert parquet_size > 1000  # the test extract (a real Parquet file)

    def get(path: str) -> Any:
        return ws.api("GET", path)

    refused = {
        "/api/contents/p.parquet?content=1&format=base64&type=file": "binary and base64",  # finding 1 exactly
        "/api/contents/p.parquet": "copy of a file in /data",
        "/api/contents/p.parquet?type=file&format=text": "copy of a file in /data",
        "/api/contents/p.txt?content=1&format=base64&type=file": "binary and base64",
        "/api/contents/p.txt": "copy of a file in /data",
        "/api/contents/notes.txt": "copy of a file in /data",
        "/api/contents/notes.txt?type=file&format=text": "copy of a file in /data",
        "/api/contents/big.txt": "files larger than 2,097,152 bytes",
        "/api/contents/hello.txt?format=base64": "binary and base64",
        "/files/p.parquet": "Downloads are disabled",
        "/files/p.parquet?download=1": "Downloads are disabled",
        "/view/p.parquet": "Downloads are disabled",
        "/nbconvert/html/analysis.ipynb?download=true": "Downloads are disabled",
    }
    for path, why in refused.items():
        response = get(path)
        assert response.status_code == 403 and why in response.text, (path, response.status_code,
                                                                       response.text[:300])
        assert b"PAR1" not in response.content
    # the folders of kernel specs and lab extensions in the home are not served at all
    for path in ("/kernelspecs/evil/p.parquet", "/kernelspecs/evil/logo-64x64.png", "/kernelspecs/ir/p.parquet",
                 "/lab/extensions/evil/static/p.parquet", "/lab/api/themes/evil/static/p.parquet"):
        response = get(path)
        assert response.status_code in (403, 404) and b"PAR1" not in response.content, (path, response.status_code)
    # the two admitted kernels are the environment's: a spec named like the R kernel in the home changes nothing
    specs = get("/api/kernelspecs").json()["kernelspecs"]
    assert set(specs) == {"python3", "ir"}
    assert specs["ir"]["spec"]["argv"][0] == "/usr/lib/R/bin/R"
    logo = get("/kernelspecs/ir/logo-64x64.png")
    assert logo.status_code == 200 and logo.content.startswith(b"\x89PNG")

    served = get("/api/contents/hello.txt")
    assert served.status_code == 200 and served.json()["content"] == "hello from the workspace\n"
    notebook = get("/api/contents/analysis.ipynb")
    assert notebook.status_code == 200 and notebook.json()["type"] == "notebook"
    assert notebook.json()["content"]["cells"][0]["source"] == "# Analysis"
    listing = get("/api/contents/")
    assert listing.status_code == 200
    assert {"p.parquet", "hello.txt", "analysis.ipynb"} <= {item["name"] for item in listing.json()["content"]}
    meta = get("/api/contents/p.parquet?content=0")
    assert meta.status_code == 200 and meta.json()["size"] == parquet_size and meta.json()["content"] is None
    assert get("/api/contents/p.parquet/checkpoints").status_code == 200  # a list of ids, no content


SWAP = r"""
import ctypes, subprocess, sys
SWAPPER = '''
import ctypes, sys, time
libc = ctypes.CDLL(None, use_errno=True)
end = time.monotonic() + float(sys.argv[1])
n = 0
while time.monotonic() < end:
    n += libc.renameat2(-100, b"hello.txt", -100, b"notes.txt", 2) == 0
print(n)
'''
swapper = subprocess.Popen([sys.executable, "-c", SWAPPER, "{seconds}"], stdout=subprocess.PIPE, text=True)
"""


def test_a_file_swapped_in_while_it_is_read_is_still_refused(running: dict[str, Any]) -> None:
    ws: Workspace = running["workspace"]
    kernel = ws.start_kernel()
    assert ws.execute(kernel, ATTACK).error is None
    manifest = ws.execute(kernel, "print(open('/data/manifest.json').read()[:40])").stdout.strip()
    assert ws.execute(kernel, SWAP.replace("{seconds}", "8")).error is None
    answers: dict[int, int] = {}
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        for name in ("hello.txt", "notes.txt"):
            response = ws.api("GET", f"/api/contents/{name}")
            answers[response.status_code] = answers.get(response.status_code, 0) + 1
            if response.status_code == 200:
                assert manifest not in response.text and response.json()["content"] == "hello from the workspace\n"
    done = ws.execute(kernel, "print(swapper.communicate()[0].strip())")
    assert int(done.stdout.strip()) > 1000, done.stdout
    assert answers.get(403, 0) > 0 and answers.get(200, 0) > 0, answers
    print(f"swap: {done.stdout.strip()} exchanges, answers {answers}")


def test_uploads_are_refused_and_notebooks_and_text_files_still_save(running: dict[str, Any]) -> None:
    ws: Workspace = running["workspace"]
    linkage = base64.b64encode(b"nhs_number,pseudo\n9434765919,abc\n").decode()
    refused = {
        "linkage.csv": {"type": "file", "format": "base64", "content": linkage},  # JupyterLab's upload / drop
        "linkage.txt": {"type": "file", "format": "text", "content": "nhs_number\n9434765919\n"},  # text, new name
        "big.bin": {"type": "file", "format": "base64", "content": linkage, "chunk": 1},  # chunked upload
        "upload.ipynb": {"type": "file", "format": "base64", "content": base64.b64encode(b"{}").decode()},
        "cells.ipynb": {"type": "notebook", "format": "text", "content": "{}"},
    }
    settings = ws.api("GET", "/lab/api/settings/@jupyterlab/filebrowser-extension:browser")
    assert settings.status_code == 200, settings.text[:300]  # the operator's override: no upload button
    assert settings.json()["schema"]["properties"]["allowFileUploads"]["default"] is False
    for name, body in refused.items():
        response = ws.api("PUT", f"/api/contents/{name}", json={"name": name, "path": name, **body})
        assert response.status_code == 403 and "Uploads" in response.text, (name, response.status_code,
                                                                            response.text[:200])
    # a new notebook, saved with content; renamed
    created = ws.api("POST", "/api/contents/", json={"type": "notebook"})
    assert created.status_code == 201, created.text
    path = created.json()["path"]
    notebook = {"cells": [{"cell_type": "code", "source": "print(1)", "metadata": {}, "outputs": [],
                           "execution_count": None}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    saved = ws.api("PUT", f"/api/contents/{path}", json={"type": "notebook", "format": "json", "content": notebook})
    assert saved.status_code == 200, saved.text
    renamed = ws.api("PATCH", f"/api/contents/{path}", json={"path": "mine.ipynb"})
    assert renamed.status_code == 200, renamed.text
    # a new text file, saved from the editor
    text = ws.api("POST", "/api/contents/", json={"type": "file", "ext": ".txt"})
    assert text.status_code == 201, text.text
    edited = ws.api("PUT", f"/api/contents/{text.json()['path']}",
                    json={"type": "file", "format": "text", "content": "my notes\n"})
    assert edited.status_code == 200, edited.text
    checked = ws.execute(ws.start_kernel(), "import os, json; print(json.dumps({'files': sorted(os.listdir('.')), "
                         "'nb': json.load(open('mine.ipynb'))['cells'][0]['source'], "
                         f"'text': open('{text.json()['path']}').read()}}))")
    assert checked.error is None, checked.error
    report = checked.json()
    assert not {"linkage.csv", "linkage.txt", "big.bin", "upload.ipynb", "cells.ipynb"} & set(report["files"])
    assert "".join(report["nb"]) == "print(1)" and report["text"] == "my notes\n"  # nbformat may split lines


def test_bytes_to_the_browser_reach_the_gateway_and_raise_the_alert_once(running: dict[str, Any]) -> None:
    ws: Workspace = running["workspace"]
    factory = running["factory"]
    kernel = ws.start_kernel()
    made = ws.execute(kernel, "import os; assert os.environ['LONDONSDE_TRAFFIC_REPORT_SECONDS'] == '2'\n"
                              "open('page.txt', 'w').write('y' * 1_000_000)\n"
                              "import json, londonsde_handover as h\n"
                              "try:\n    h._hub_call('traffic', {'bytes': -10**9})\n    out = 'accepted'\n"
                              "except h.Refused as exc:\n    out = str(exc)\n"
                              "print(json.dumps(out))")
    assert made.error is None, made.error
    assert "bytes" in made.json() and made.json() != "accepted"  # the kernel cannot take traffic away
    received = 0
    for _ in range(2):
        response = ws.api("GET", "/api/contents/page.txt")
        assert response.status_code == 200
        received += len(response.content)
    shown = ws.execute(kernel, "print('z' * 300_000)")  # kernel output shown in the page: counted too
    assert len(shown.stdout) >= 300_000
    received += len(shown.stdout)
    assert received > ALERT_BYTES

    def row() -> WorkspaceSession:
        with factory() as s:
            return s.scalars(select(WorkspaceSession).where(WorkspaceSession.stopped_at.is_(None))).one()

    deadline = time.monotonic() + 30
    while row().bytes_to_browser < received and time.monotonic() < deadline:
        time.sleep(0.5)
    counted = row()
    assert counted.bytes_to_browser >= received, (counted.bytes_to_browser, received)
    assert counted.traffic_alert_at is not None
    ws.api("GET", "/api/contents/page.txt")
    time.sleep(REPORT_SECONDS * 2 + 1)
    with factory() as s:
        events = [e.details for e in s.scalars(select(AuditEvent).where(
            AuditEvent.action == traffic.THRESHOLD_EVENT))]
    assert len(events) == 1 and events[0]["workspace_session"] == counted.id, events
    assert events[0]["threshold"] == ALERT_BYTES and events[0]["bytes_to_browser"] >= ALERT_BYTES
    assert row().bytes_to_browser > counted.bytes_to_browser  # still counting after the alert
    print(f"browser received {received} bytes of content; the gateway counted {row().bytes_to_browser} "
          "(headers, pages, websocket frames included)")


def test_the_server_classifies_every_handler() -> None:
    """Every route the workspace server registers (its own environment and settings) is of a classified kind.

    Lists the handlers from a server initialised from the single-user environment exactly as the sandbox runs it
    (same Python, same etc/jupyter settings, same extensions); docs/workspaces.md describes each kind.
    """
    prefix = default_singleuser_prefix()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "LONDONSDE_", "PYTHON"))}
    result = subprocess.run([str(prefix / "bin" / "python"), "-c", LIST_HANDLERS], capture_output=True, text=True,
                            env={**env, "LONDONSDE_DATA_ROOT": "/nonexistent"}, timeout=120, cwd="/tmp")
    assert result.returncode == 0, result.stderr[-2000:]
    listed = json.loads(result.stdout.strip().splitlines()[-1])
    unclassified = {p: h for p, h in listed if not any(h.startswith(kind) for kind in CLASSIFIED)}
    assert unclassified == {}, unclassified
    first: dict[str, str] = {}
    for pattern, handler in listed:
        first.setdefault(pattern, handler)
    contents = r"/api/contents(?P<path>(?:(?:/[^/]+)+|/?))$"
    assert first[contents] == "londonsde_egress.PolicedContentsHandler"
    checkpoints = r"/api/contents(?P<path>(?:(?:/[^/]+)+|/?))/checkpoints$"
    assert first[checkpoints] == "jupyter_server.services.contents.handlers.CheckpointsHandler"
    assert order_of(listed, checkpoints) < order_of(listed, contents)  # not swallowed by the contents path
    for refused in (r"/files/(.*)$", r"/nbconvert/(.*)$", r"/view/(.*)$"):
        assert first[refused] == "londonsde_lockdown.RefuseHandler", refused
    print(f"{len(listed)} routes, {len(first)} distinct patterns, all classified")


def order_of(listed: list[list[str]], pattern: str) -> int:
    return next(i for i, (p, _h) in enumerate(listed) if p == pattern)


LIST_HANDLERS = """
import json
from jupyter_server.serverapp import ServerApp
app = ServerApp()
app.initialize(["--ServerApp.root_dir=/tmp", "--ServerApp.open_browser=False", "--ServerApp.port=0",
                "--ServerApp.log_level=CRITICAL"])
out = []
for rule in app.web_app.default_router.rules:
    for sub in getattr(rule.target, "rules", []):
        target = sub.target
        name = target.__module__ + "." + target.__name__ if isinstance(target, type) else repr(target)
        out.append([sub.matcher.regex.pattern, name])
print(json.dumps(out))
"""

# Each handler the server registers, by module path, with what it is (docs/workspaces.md, "What can reach your
# browser"): refused; policed; the kernel's or terminal's own channel (shown on screen, counted); or serving only
# the read-only environment, metadata or the researcher's own JSON settings.
CLASSIFIED = (
    "londonsde_lockdown.RefuseHandler",  # /files/, /view/, /nbconvert/: refused
    "londonsde_egress.PolicedContentsHandler",  # contents API: policed
    "londonsde_handover.OutputsHandler",  # outputs hand-over: to the gateway, checked there
    "jupyter_server.services.contents.handlers",  # checkpoints, trust, redirect; the replaced ContentsHandler
    "jupyter_server.services.kernels",  # the kernel's own channel (screen), counted
    "jupyter_server.kernelspecs.handlers",  # kernel spec files, only from the read-only environment
    "jupyter_server.services.kernelspecs",
    "jupyter_server.services.sessions", "jupyter_server.services.api", "jupyter_server.services.config",
    "jupyter_server.services.events", "jupyter_server.services.security", "jupyter_server.services.shutdown",
    "jupyter_server.services.nbconvert",  # the list of exporters only
    "jupyter_server.nbconvert.handlers",  # shadowed by the refusal of /nbconvert/
    "jupyter_server.view.handlers",  # shadowed by the refusal of /view/
    "jupyter_server.base.handlers",  # static files of the environment, redirects, 404, metrics, the refused /files/
    "jupyter_server.auth",  # login/logout (the hub's)
    "jupyter_server_terminals",  # the terminal's own channel (screen), counted
    "jupyterlab_server", "jupyterlab.handlers",  # the JupyterLab page, settings, workspaces, themes, listings
    "jupyterhub.singleuser",
)
