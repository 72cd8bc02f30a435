"""A researcher opens the workspace, starts an R notebook from JupyterLab's launcher, makes a checked table with the
londonsde R package in the sandboxed R kernel and hands it over to an output request; the gateway's check runs the
recorded query again on the extract and agrees with it.

Real components throughout: JupyterHub with the sandboxing spawner, the R kernel (IRkernel) in the sandbox, the
live gateway, the worker pass, and Chromium.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from gateway.app import create_app
from gateway.config import Settings
from gateway.db import unit_of_work
from gateway.outputs import service as output_service
from gateway.outputs.models import OutputFile
from gateway.worker import run_once
from gateway.workspaces.service import hub_username
from projects.models import Project
from tests.functional.conftest import screenshot
from tests.functional.test_sign_in_browser import sign_in
from tests.functional.test_workspace_browser import approved_project_with_extract
from tests.support import factories as f
from tests.support.browser import LiveServer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "infra" / "jupyterhub"))
from devhub import DevHub, default_singleuser_prefix, missing_facilities
from sandbox_spawner import CGROUP_CONTROLLERS, CGROUP_ROOT

MISSING = missing_facilities(default_singleuser_prefix())
pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(bool(MISSING), reason="workspaces need: " + "; ".join(MISSING))]


def test_r_notebook_in_the_sandbox_saves_and_hands_over_a_checked_table(
        page: Page, gateway: LiveServer, hub: DevHub, workspace_settings: Settings) -> None:
    factory = create_app(workspace_settings).extensions["sde_sessionmaker"]
    project_id = approved_project_with_extract(workspace_settings, factory)
    with unit_of_work(factory) as s:
        researcher, project = f.user(s, "researcher"), s.get(Project, project_id)
        server_name, hub_user = project.reference.lower(), hub_username(researcher)
        request = output_service.create_request(s, researcher, project, "Deprivation by sex, from R")
        output_service.save_group(s, researcher, request, "Deprivation", "Patients by IMD decile and sex.",
                                  "Made in R with the londonsde package; small cells suppressed.")
        request_id = request.id

    sign_in(page, gateway, "researcher", "demo-password")
    page.goto(f"{gateway.url}/projects/{project_id}")
    page.get_by_role("button", name="Open workspace").click()
    page.wait_for_url(f"{hub.url}/user/{hub_user}/{server_name}/**", timeout=90_000)
    # JupyterLab lands on welcome.ipynb; a reset layout shows the Launcher
    page.goto(page.url.split("/lab")[0] + "/lab?reset")
    # the launcher offers exactly the two admitted kernels
    launcher = page.locator(".jp-Launcher-section").first
    expect(launcher.locator(".jp-LauncherCard")).to_have_count(2, timeout=60_000)
    launcher.locator(".jp-LauncherCard", has_text="R").filter(has_not_text="Python").click()
    expect(page.get_by_text("R | Idle")).to_be_visible(timeout=90_000)
    cell = page.locator(".jp-Notebook .jp-Cell .cm-content").first
    cell.click()
    page.keyboard.type(
        "library(londonsde); df <- load_extract('patients'); "
        "out <- sdc_crosstab(df, 'imd_decile', 'sex')$suppressed(); "
        "cat(out$status, nrow(out$table), class(df), '\\n'); "
        "save_output(out, 'deprivation_from_r'); "
        f"submit_output('deprivation_from_r.csv', request = {request_id}, group = 'Deprivation')")
    page.keyboard.press("Shift+Enter")
    output = page.locator(".jp-OutputArea").first
    expect(output).to_contain_text(f"is in request {request_id}", timeout=120_000)
    expect(output).to_contain_text("data.frame")
    screenshot(page, "outputs-handover-r")
    # the R kernel runs inside the workspace's own memory, CPU and process limits (its cgroups), as Python does
    for controller in CGROUP_CONTROLLERS:
        [cgroup] = (CGROUP_ROOT / controller / f"londonsde-{hub.bridge}").glob(f"{hub_user}--*")
        commands = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in
                    (cgroup / "cgroup.procs").read_text().split() if Path(f"/proc/{pid}").exists()]
        assert any(b"IRkernel::main()" in command for command in commands), (controller, commands)

    page.goto(f"{gateway.url}/outputs/{request_id}")
    expect(page.get_by_test_id("file-deprivation_from_r.csv")).to_be_visible()
    page.get_by_role("button", name="Submit the request").click()
    expect(page.get_by_test_id("state")).to_have_text("Submitted")
    run_once(workspace_settings, factory)
    with factory() as s:
        item = s.scalars(select(OutputFile).where(OutputFile.request_id == request_id)).one()
        assert item.path.endswith("deprivation_from_r.csv")
        assert item.check_status in {"pass", "review"}, item.check_result
        result = item.check_result
        assert result["method"] == "recomputed" and result["mismatches"] == []
        assert result["record"]["query"]["dataset"] == "patients"
        assert any(c["status"] == "suppressed" for c in result["record"]["cells"])
