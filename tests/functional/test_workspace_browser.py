"""A researcher opens a workspace from the project page and lands in JupyterLab with the extract at /data;
when the project is suspended the server is stopped and the button refuses.

Real components throughout: JupyterHub with configurable-http-proxy and the sandboxing spawner, a real
single-user server and kernel, the live gateway, the worker pass, and Chromium.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy.orm import Session, sessionmaker

from gateway import demo
from gateway.app import create_app
from gateway.config import Settings, WorkspaceSettings
from gateway.db import unit_of_work
from gateway.extracts import service as extracts
from gateway.outputs import service as output_service
from gateway.outputs.models import OutputFile
from gateway.worker import run_once
from gateway.workspaces.entitlement import current_extract
from gateway.workspaces.hub import HubClient
from gateway.workspaces.tickets import mint_ticket
from projects import lifecycle
from projects.models import Project
from tests.functional.conftest import screenshot
from tests.functional.test_sign_in_browser import sign_in
from tests.integration.workspaces.workspace_client import Workspace, browser_login
from tests.support import factories as f
from tests.support.browser import LiveServer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "infra" / "jupyterhub"))
from devhub import DevHub, default_singleuser_prefix, missing_facilities

MISSING = missing_facilities(default_singleuser_prefix())
pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(bool(MISSING), reason="workspaces need: " + "; ".join(MISSING))]


@pytest.fixture
def hub() -> Iterator[DevHub]:
    with DevHub(spawner="sandbox") as running:
        yield running


@pytest.fixture
def workspace_settings(live_settings: Settings, hub: DevHub) -> Settings:
    return live_settings.model_copy(update={"workspaces": WorkspaceSettings(
        hub_url=hub.url, hub_state_dir=hub.state_dir, extracts_root=hub.extracts_root, homes_root=hub.homes_root)})


@pytest.fixture
def gateway(workspace_settings: Settings) -> Iterator[LiveServer]:
    app = create_app(workspace_settings)
    server = LiveServer(app).start()
    yield server
    server.stop()
    app.extensions["sde_engine"].dispose()


def approved_project_with_extract(settings: Settings, factory: sessionmaker[Session]) -> int:
    with unit_of_work(factory) as s:
        demo.seed_users(s, "test")
        f.accredit(s, "researcher")
    project_id = f.approved_project(factory)
    extracts.run_queued_builds(settings, factory)
    with factory() as s:
        held = current_extract(settings.extracts_root, s.get(Project, project_id)) is None
    if held:  # on this small population
        f.release_extract(settings, factory, project_id, 1)
    return project_id


def test_open_workspace_lands_in_jupyterlab_with_the_extract_then_suspension_stops_it(
        page: Page, gateway: LiveServer, hub: DevHub, workspace_settings: Settings) -> None:
    factory = create_app(workspace_settings).extensions["sde_sessionmaker"]
    project_id = approved_project_with_extract(workspace_settings, factory)
    with factory() as s:
        server_name = s.get(Project, project_id).reference.lower()

    sign_in(page, gateway, "researcher", "demo-password")
    page.goto(f"{gateway.url}/projects/{project_id}")
    expect(page.get_by_test_id("workspace-card")).to_contain_text("read-only")
    screenshot(page, "workspace-open")
    page.get_by_role("button", name="Open workspace").click()
    page.wait_for_url(f"{hub.url}/user/researcher/{server_name}/**", timeout=90_000)
    expect(page.locator("#jp-main-dock-panel")).to_be_visible(timeout=60_000)  # JupyterLab's main area
    expect(page.locator(".jp-DirListing-content").get_by_text("welcome.ipynb")).to_be_visible(timeout=30_000)
    screenshot(page, "workspace-jupyterlab")

    # /data holds the project's extract, read-only: asked from inside a real kernel of this server
    def probe() -> dict[str, object]:
        session, _ = browser_login(hub.url, mint_ticket(hub.ticket_secret, "researcher", server_name))
        workspace = Workspace(hub.url, session, "researcher", server_name)
        return workspace.execute(workspace.start_kernel(), (
            "import json, os\n"
            "manifest = json.load(open('/data/manifest.json'))\n"
            "try:\n    open('/data/new.txt', 'w'); writable = True\nexcept OSError:\n    writable = False\n"
            "print(json.dumps({'project': manifest['project_id'], 'files': sorted(os.listdir('/data')),"
            " 'writable': writable}))")).json()

    def notebook(suppress: bool) -> dict[str, object]:
        """What the researcher's notebook does, run in this server's real kernel: a checked crosstab, saved."""
        session, _ = browser_login(hub.url, mint_ticket(hub.ticket_secret, "researcher", server_name))
        workspace = Workspace(hub.url, session, "researcher", server_name)
        return workspace.execute(workspace.start_kernel(), (
            "import json, pandas as pd, disclosure_control as dc\n"
            "from outputs_helper import save_output\n"
            "data = pd.read_parquet('/data/patients.parquet')\n"
            "out = dc.crosstab('imd_decile', 'sex', data=data, dataset='patients')\n"
            f"out = out.suppressed() if {suppress} else out\n"
            "path = save_output(out, 'deprivation_by_sex', allow_fail=True)\n"
            "print(json.dumps({'status': str(out.status), 'path': str(path)}))")).json()

    with ThreadPoolExecutor(1) as pool:  # the kernel client runs its own event loop; Playwright's owns this thread
        found = pool.submit(probe).result(timeout=120)
        saved = pool.submit(notebook, False).result(timeout=120)
    assert found["project"] == server_name and found["writable"] is False
    assert any(name.endswith(".parquet") for name in found["files"])

    # the gateway finds the notebook's output in the workspace and its automatic check recomputes it from the
    # same extract: unsuppressed small cells fail, and nothing is flagged as edited by hand
    assert saved["status"] == "fail"
    with unit_of_work(factory) as s:
        researcher, project = f.user(s, "researcher"), s.get(Project, project_id)
        names = [w.path for w in output_service.workspace_files(workspace_settings, researcher, project)]
        assert "deprivation_by_sex.csv" in names
        request = output_service.create_request(s, researcher, project, "Deprivation by sex")
        group = output_service.save_group(s, researcher, request, "Deprivation", "Patients by IMD decile and sex.",
                                          "Checked with disclosure_control in the workspace.")
        item = output_service.add_file(s, researcher, request, workspace_settings, "deprivation_by_sex.csv",
                                       group.id, "output")
        output_service.submit(s, researcher, request)
        item_id = item.id
    run_once(workspace_settings, factory)
    with factory() as s:
        checked = s.get(OutputFile, item_id)
        assert checked.check_status == "fail"
        result = checked.check_result
        assert result["method"] == "recomputed" and result["mismatches"] == []
        assert any(cell["status"] == "fail" and "threshold" in cell["rules"] for cell in result["cells"])

    # the administrator suspends the project: the session ends and the worker stops the server
    with unit_of_work(factory) as s:
        lifecycle.suspend(s, f.user(s, "admin"), s.get(Project, project_id), "Investigation")
    run_once(workspace_settings, factory)
    client = HubClient(hub.url, hub.gateway_token)
    assert client.server_status("researcher", server_name) is None

    page.goto(f"{gateway.url}/projects/{project_id}")
    expect(page.get_by_test_id("workspace-reasons")).to_contain_text("The project is suspended.")
    expect(page.get_by_role("button", name="Open workspace")).to_have_count(0)
    screenshot(page, "workspace-refused")
    # and a forged form post is refused too
    response = page.request.post(f"{gateway.url}/projects/{project_id}/workspace",
                                 form={"csrf_token": page.locator("input[name=csrf_token]").first.input_value()},
                                 max_redirects=0)
    assert response.status == 302
    page.goto(f"{gateway.url}/projects/{project_id}")
    assert client.server_status("researcher", server_name) is None
