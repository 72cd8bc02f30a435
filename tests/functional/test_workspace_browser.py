"""A researcher opens a workspace from the project page and lands in JupyterLab with the extract at /data, saves a
checked table and a failing one in a notebook there and hands them over to an output request (the gateway never
reads the folder); the researcher asks for an exception on the failing table, a checker returns the request early,
the researcher resubmits, both checkers approve and accept the exception with their reasons, the researcher
downloads the package and no suppressed value is in it; when the project is suspended the server is stopped and
the button refuses.

Real components throughout: JupyterHub with configurable-http-proxy and the sandboxing spawner, a real
single-user server and kernel, the live gateway, the worker pass, and Chromium.
"""

from __future__ import annotations

import json
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway import demo
from gateway.app import create_app
from gateway.config import Settings
from gateway.db import unit_of_work
from gateway.extracts import service as extracts
from gateway.outputs import service as output_service
from gateway.outputs.models import OutputFile, OutputRequest
from gateway.worker import run_once
from gateway.workspaces.entitlement import current_extract
from gateway.workspaces.hub import HubClient
from gateway.workspaces.service import hub_username
from gateway.workspaces.tickets import mint_ticket
from projects import lifecycle
from projects.models import Project
from tests.functional.conftest import screenshot
from tests.functional.test_accreditation_browser import sign_out
from tests.functional.test_application_browser import as_user
from tests.functional.test_output_checking_browser import JUSTIFICATION, review_with_exception
from tests.functional.test_sign_in_browser import sign_in
from tests.integration.workspaces.workspace_client import Workspace, browser_login
from tests.support import factories as f
from tests.support.browser import LiveServer
from tests.support.package_scan import scan_package

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "infra" / "jupyterhub"))
from devhub import DevHub, default_singleuser_prefix, missing_facilities

MISSING = missing_facilities(default_singleuser_prefix())
pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(bool(MISSING), reason="workspaces need: " + "; ".join(MISSING))]


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
        page: Page, gateway: LiveServer, hub: DevHub, workspace_settings: Settings, tmp_path: Path) -> None:
    factory = create_app(workspace_settings).extensions["sde_sessionmaker"]
    project_id = approved_project_with_extract(workspace_settings, factory)
    with factory() as s:
        server_name = s.get(Project, project_id).reference.lower()
        hub_user = hub_username(f.user(s, "researcher"))

    sign_in(page, gateway, "researcher", "demo-password")
    page.goto(f"{gateway.url}/projects/{project_id}")
    expect(page.get_by_test_id("workspace-card")).to_contain_text("read-only")
    screenshot(page, "workspace-open")
    page.get_by_role("button", name="Open workspace").click()
    page.wait_for_url(f"{hub.url}/user/{hub_user}/{server_name}/**", timeout=90_000)
    expect(page.locator("#jp-main-dock-panel")).to_be_visible(timeout=60_000)  # JupyterLab's main area
    expect(page.locator(".jp-DirListing-content").get_by_text("welcome.ipynb")).to_be_visible(timeout=30_000)
    # the first open lands in the welcome notebook (the hub's default_url), beside the home's files
    assert page.url.endswith("/lab/tree/welcome.ipynb"), page.url
    expect(page.get_by_role("heading", name="Welcome to your project workspace")).to_be_visible(timeout=30_000)
    screenshot(page, "workspace-jupyterlab")

    # /data holds the project's extract, read-only: asked from inside a real kernel of this server
    def probe() -> dict[str, object]:
        session, _ = browser_login(hub.url, mint_ticket(hub.ticket_secret, hub_user, server_name))
        workspace = Workspace(hub.url, session, hub_user, server_name)
        return workspace.execute(workspace.start_kernel(), (
            "import json, os\n"
            "manifest = json.load(open('/data/manifest.json'))\n"
            "try:\n    open('/data/new.txt', 'w'); writable = True\nexcept OSError:\n    writable = False\n"
            "print(json.dumps({'project': manifest['project_id'], 'files': sorted(os.listdir('/data')),"
            " 'writable': writable}))")).json()

    with ThreadPoolExecutor(1) as pool:  # the kernel client runs its own event loop; Playwright's owns this thread
        found = pool.submit(probe).result(timeout=120)
    assert found["project"] == server_name and found["writable"] is False
    assert any(name.endswith(".parquet") for name in found["files"])

    # the researcher starts a request on the gateway, then in JupyterLab saves a checked table and hands it over
    with unit_of_work(factory) as s:
        researcher, project = f.user(s, "researcher"), s.get(Project, project_id)
        request = output_service.create_request(s, researcher, project, "Deprivation by sex")
        output_service.save_group(s, researcher, request, "Deprivation", "Patients by IMD decile and sex.",
                                  "Checked with disclosure_control in the workspace; small cells suppressed.")
        request_id = request.id
    page.goto(page.url.split("/lab")[0] + "/lab?reset")  # JupyterLab's default layout: the launcher, no notebook
    page.locator(".jp-Launcher").get_by_text("Python 3 (ipykernel)").first.click()  # a new notebook
    expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible(timeout=90_000)
    cell = page.locator(".jp-Notebook .jp-Cell .cm-content").first
    cell.click()
    page.keyboard.type(
        "import pandas as pd, disclosure_control as dc; from outputs_helper import save_output, submit_output; "
        "data = pd.read_parquet('/data/patients.parquet'); "
        "out = dc.crosstab('imd_decile', 'sex', data=data, dataset='patients').suppressed(); "
        "save_output(out, 'deprivation_by_sex'); "
        f"submit_output('deprivation_by_sex.csv', request={request_id}, group='Deprivation'); "
        # the same table without suppression fails its check: it goes in too, for an exception to be asked
        "raw = dc.crosstab('imd_decile', 'sex', data=data, dataset='patients'); "
        "save_output(raw, 'deprivation_raw', allow_fail=True); "
        f"submit_output('deprivation_raw.csv', request={request_id}, group='Deprivation')")
    expect(cell).to_contain_text("submit_output(")
    page.keyboard.press("Shift+Enter")
    expect(page.locator(".jp-OutputArea-output").first).to_contain_text(f"is in request {request_id}",
                                                                          timeout=120_000)
    expect(page.locator(".jp-OutputArea").first).to_contain_text("deprivation_raw.csv: version 1",
                                                                  timeout=120_000)
    screenshot(page, "outputs-handover-jupyterlab")
    # JupyterLab's own save of the open notebook (renamed on first save) passes the workspace's egress policy,
    # which refuses uploads; the upload button is off (the operator's override)
    expect(page.get_by_role("button", name="Upload Files")).to_have_attribute("aria-disabled", "true")
    page.keyboard.press("Control+s")
    dialog = page.locator(".jp-Dialog")
    dialog.locator("input").first.fill("deprivation.ipynb")
    dialog.get_by_role("button", name="Rename and Save").click()
    expect(page.locator(".jp-DirListing-content").get_by_text("deprivation.ipynb")).to_be_visible(timeout=30_000)

    def saved_notebooks() -> list[str]:
        session, _ = browser_login(hub.url, mint_ticket(hub.ticket_secret, hub_user, server_name))
        workspace = Workspace(hub.url, session, hub_user, server_name)
        return workspace.execute(workspace.start_kernel(), (
            "import json, time\n"
            "time.sleep(1)\n"
            "print(json.dumps([''.join(c['source']) for c in json.load(open('deprivation.ipynb'))['cells']]))"
        )).json()

    with ThreadPoolExecutor(1) as pool:
        sources = pool.submit(saved_notebooks).result(timeout=120)
    assert any("submit_output(" in source for source in sources), sources

    # the files are in the request on the gateway; the checks recompute them from the same extract
    request_url = f"{gateway.url}/outputs/{request_id}"
    page.goto(request_url)
    expect(page.get_by_test_id("file-deprivation_by_sex.csv")).to_be_visible()
    with factory() as s:
        items = {i.path.rsplit("/", 1)[-1]: i for i in
                 s.scalars(select(OutputFile).where(OutputFile.request_id == request_id))}
        assert sorted(items) == ["deprivation_by_sex.csv", "deprivation_raw.csv"]
        item_id, raw_id = items["deprivation_by_sex.csv"].id, items["deprivation_raw.csv"].id
        assert all(hub.homes_root.as_posix() not in json.dumps(i.sdc_record or {}) for i in items.values())
    page.get_by_role("button", name="Submit the request").click()
    expect(page.get_by_test_id("state")).to_have_text("Submitted")
    run_once(workspace_settings, factory)
    with factory() as s:
        checked = s.get(OutputFile, item_id)
        assert checked.check_status in {"pass", "review"}, checked.check_result
        result = checked.check_result
        assert result["method"] == "recomputed" and result["mismatches"] == []
        suppressed = [c for c in result["record"]["cells"] if c["status"] == "suppressed"]
        assert suppressed, "the extract has small cells: suppression must have hidden some"
        assert s.get(OutputFile, raw_id).check_status == "fail"

    # the researcher asks for an exception on the failing table, with a justification
    page.reload()
    raw = page.get_by_test_id("file-deprivation_raw.csv")
    raw.get_by_label("Justification for an exception on deprivation_raw.csv").fill(JUSTIFICATION)
    page.get_by_role("button", name="Ask for an exception on deprivation_raw.csv").click()
    expect(page.get_by_text("Exception requested.")).to_be_visible()
    sign_out(page)

    # a checker returns the request early; the researcher reads why and resubmits
    as_user(page, gateway, "checker1")
    page.goto(request_url)
    page.get_by_test_id("return-early").get_by_label("What the researcher should change").fill(
        "Please say in the group's context which published table the small counts come from.")
    page.get_by_role("button", name="Return to the researcher now").click()
    expect(page.get_by_test_id("state")).to_have_text("Returned")
    sign_out(page)
    as_user(page, gateway, "researcher")
    page.goto(request_url)
    expect(page.get_by_test_id("comments")).to_contain_text("which published table")
    page.get_by_role("button", name="Resubmit the request").click()
    expect(page.get_by_test_id("state")).to_have_text("Submitted")
    run_once(workspace_settings, factory)
    sign_out(page)

    # both checkers approve both tables and accept the exception with their reasons; one records the decision
    both = ("deprivation_by_sex.csv", "deprivation_raw.csv")
    review_with_exception(page, gateway, "checker1", request_url, "The counts match the published table.",
                          files=both, failing="deprivation_raw.csv")
    sign_out(page)
    review_with_exception(page, gateway, "checker2", request_url, "Checked against the published table too.",
                          files=both, failing="deprivation_raw.csv")
    page.get_by_test_id("decision").get_by_label("Approve and release").check()
    page.get_by_role("button", name="Record the decision").click()
    expect(page.get_by_text("Decision recorded.")).to_be_visible()
    sign_out(page)
    run_once(workspace_settings, factory)  # the release

    # the researcher downloads the package: no suppressed value anywhere in it
    as_user(page, gateway, "researcher")
    page.goto(request_url)
    expect(page.get_by_test_id("state")).to_have_text("Released")
    with page.expect_download() as info:
        page.get_by_test_id("download-package").click()
    package = tmp_path / "package.zip"
    info.value.save_as(package)
    with factory() as s:
        problems = scan_package(package, s.get(OutputRequest, request_id))
    assert problems == []
    with zipfile.ZipFile(package) as archive:
        released = archive.read("outputs/deprivation_by_sex.csv").decode()
        assert ".0," not in released and not released.rstrip().endswith(".0")  # whole counts as integers
        assert sorted(archive.namelist()) == ["manifest.json", "outputs/deprivation_by_sex.csv",
                                              "outputs/deprivation_raw.csv", "results.json"]
        manifest = json.loads(archive.read("manifest.json"))
    [granted] = {e["path"]: e for e in manifest["files"]}["outputs/deprivation_raw.csv"]["exceptions"]
    assert granted["justification"] == JUSTIFICATION and len(granted["decisions"]) == 2

    # the administrator suspends the project: the session ends and the worker stops the server
    with unit_of_work(factory) as s:
        lifecycle.suspend(s, f.user(s, "admin"), s.get(Project, project_id), "Investigation")
    run_once(workspace_settings, factory)
    client = HubClient(hub.url, hub.gateway_token)
    assert client.server_status(hub_user, server_name) is None

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
    assert client.server_status(hub_user, server_name) is None
