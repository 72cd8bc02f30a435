"""Safe outputs in Chromium: a notebook's crosstab fails its automatic check, passes after suppression, two
checkers approve it independently and the researcher downloads a package whose manifest hashes match.

The notebook and the workspace are simulated: the test process runs the workspace's own
``outputs_helper.save_output`` with the ``disclosure_control`` library, and hands the file over with the
workspace extension's own reader (tests/support/handover.py); the worker is one pass of the real outbox
delivery. The real hand-over from JupyterLab is driven in tests/functional/test_workspace_browser.py.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy.orm import Session, sessionmaker

from gateway.config import Settings
from tests.functional.conftest import screenshot
from tests.functional.test_accreditation_browser import sign_out
from tests.functional.test_application_browser import as_user
from tests.integration.test_outputs import load_extract, notebook_crosstab, outputs_of, ready_project, work
from tests.support.browser import LiveServer
from tests.support.handover import hand_over

pytestmark = [pytest.mark.browser, pytest.mark.ldap]


def review(page: Page, server: LiveServer, username: str, request_url: str, choice: str) -> None:
    as_user(page, server, username)
    page.get_by_role("link", name="Output checking").first.click()
    expect(page.get_by_test_id("output-queue")).to_contain_text("Admissions by region")
    page.goto(request_url)
    expect(page.get_by_test_id("votes")).to_have_count(0)  # blinded: nobody else's votes are shown
    page.get_by_test_id("vote-by_region.csv").get_by_label(choice).check()
    page.get_by_role("button", name="Save vote on by_region.csv").click()
    expect(page.get_by_text("Vote saved.")).to_be_visible()
    page.get_by_role("button", name="Submit my review").click()
    expect(page.get_by_text("Review submitted.")).to_be_visible()


def decide(page: Page, outcome: str, comment: str = "") -> None:
    page.get_by_test_id("decision").get_by_label(outcome).check()
    page.get_by_label("Public comment").fill(comment)
    page.get_by_role("button", name="Record the decision").click()
    expect(page.get_by_text("Decision recorded.")).to_be_visible()


def test_notebook_output_fails_then_passes_and_is_released_after_two_checkers(
        page: Page, live_server: LiveServer, seeded: sessionmaker[Session],
        live_settings: Settings, tmp_path: Path) -> None:
    factory, settings = seeded, live_settings
    project_id = ready_project(factory, settings)
    folder = outputs_of(settings, factory, "researcher", project_id)
    data = load_extract(settings, factory, project_id)
    notebook_crosstab(data, folder, "by_region", suppress=False)  # the notebook: a crosstab with a cell of 3

    # the researcher builds and submits the request
    as_user(page, live_server, "researcher")
    page.get_by_role("link", name="Outputs", exact=True).first.click()
    page.get_by_role("link", name=re.compile("New output request")).click()
    page.get_by_label("Title").fill("Admissions by region")
    page.get_by_role("button", name="Start the request").click()
    form = page.get_by_test_id("add-group")
    form.get_by_label("Group name").fill("Region by sex")
    form.get_by_label("Context").fill("Patients by region and sex, whole extract, 2019-2024.")
    form.get_by_label("Disclosure controls").fill("Checked with disclosure_control before saving.")
    page.get_by_role("button", name="Add group").click()
    expect(page.get_by_test_id("handover-help")).to_contain_text("submit_output(")
    request_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
    hand_over(factory, settings, request_id, folder, "by_region.csv", group_of(factory, request_id), "output")
    page.reload()  # the workspace handed the file over (the gateway never reads the folder)
    expect(page.get_by_test_id("file-by_region.csv")).to_be_visible()
    page.get_by_role("button", name="Submit the request").click()
    expect(page.get_by_test_id("state")).to_have_text("Submitted")
    request_url = page.url
    work(factory, settings)  # the worker runs the automatic checks
    page.reload()
    expect(page.get_by_test_id("file-by_region.csv").get_by_test_id("verdict").first).to_have_text("Fail")
    screenshot(page, "outputs-request-submitted")
    sign_out(page)

    # both checkers see the failing cell beside the table, request changes; one returns it
    as_user(page, live_server, "checker1")
    page.get_by_role("link", name="Output checking").first.click()
    expect(page.get_by_test_id("output-queue")).to_contain_text("Admissions by region")
    expect(page.get_by_test_id("output-queue")).to_contain_text("0 of 2")
    screenshot(page, "outputs-checker-queue")
    page.goto(request_url)
    small = page.get_by_test_id("preview-by_region.csv").locator("td[data-verdict='fail']")
    expect(small).to_have_count(1)
    expect(small).to_contain_text("3")
    screenshot(page, "outputs-checker-failing-cell")
    sign_out(page)
    review(page, live_server, "checker1", request_url, "Request changes")
    sign_out(page)
    review(page, live_server, "checker2", request_url, "Request changes")
    decide(page, "Return to the researcher", "The South/M cell is 3: suppress it.")
    sign_out(page)

    # the notebook suppresses the cell and saves again; the researcher updates the file and resubmits
    notebook_crosstab(data, folder, "by_region", suppress=True)
    as_user(page, live_server, "researcher")
    page.goto(request_url)
    expect(page.get_by_test_id("comments")).to_contain_text("suppress it")
    hand_over(factory, settings, request_id, folder, "by_region.csv")  # sent again: version 2
    page.reload()
    expect(page.get_by_test_id("file-by_region.csv")).to_contain_text("version 2")
    page.get_by_role("button", name="Resubmit the request").click()
    expect(page.get_by_test_id("state")).to_have_text("Submitted")
    work(factory, settings)
    page.reload()
    expect(page.get_by_test_id("file-by_region.csv").get_by_test_id("verdict").first).to_have_text("Pass")
    sign_out(page)

    # two independent approvals, then a decision; the worker releases
    review(page, live_server, "checker1", request_url, "Approve")
    expect(page.get_by_test_id("own-review")).to_be_visible()
    sign_out(page)
    review(page, live_server, "checker2", request_url, "Approve")
    expect(page.get_by_test_id("votes")).to_contain_text("Ali Hassan")  # unblinded once both are in
    screenshot(page, "outputs-checker-decision")
    decide(page, "Approve and release")
    sign_out(page)
    work(factory, settings)

    # the researcher downloads the package; its manifest hashes match its files
    as_user(page, live_server, "researcher")
    page.goto(request_url)
    expect(page.get_by_test_id("state")).to_have_text("Released")
    sha = page.get_by_test_id("package-sha256").inner_text().strip()
    with page.expect_download() as info:
        page.get_by_test_id("download-package").click()
    package = tmp_path / "package.zip"
    info.value.save_as(package)
    assert hashlib.sha256(package.read_bytes()).hexdigest() == sha
    with zipfile.ZipFile(package) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        assert [f["path"] for f in manifest["files"]] == ["outputs/by_region.csv"]
        for entry in manifest["files"]:
            assert hashlib.sha256(archive.read(entry["path"])).hexdigest() == entry["sha256"]
            assert entry["verdict"]["automatic"] == "pass"
        assert archive.read("outputs/by_region.csv") == (folder / "by_region.csv").read_bytes()
    assert sorted(r["checker"] for r in manifest["reviews"]) == ["checker1", "checker2"]
    page.goto(f"{live_server.url}/projects/{project_id}")
    page.get_by_role("navigation", name="Pages of this project").get_by_role("link", name="Outputs and publications") \
        .click()
    expect(page.get_by_test_id("released-outputs")).to_contain_text("Admissions by region")
    screenshot(page, "outputs-released-on-project")


def group_of(factory: sessionmaker[Session], request_id: int) -> int:
    from gateway.outputs.models import OutputRequest

    with factory() as s:
        request = s.get(OutputRequest, request_id)
        assert request is not None
        return request.groups[0].id
