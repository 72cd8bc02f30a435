"""The checker workflow in Chromium (issue 14): a researcher submits two tables, one of which fails its automatic
check, and asks for an exception on it; a checker returns the request early; the researcher resubmits; both
checkers approve and accept the exception with their reasons; the researcher downloads the package, and the test
opens the zip and finds no suppressed value in it.

The notebook and the workspace are simulated as in test_outputs_browser.py: the test process runs the
workspace's own ``outputs_helper.save_output`` and hands each file over with the workspace extension's own
safe reader (tests/support/handover.py) into the gateway's one intake primitive; no JupyterHub runs here (the
real JupyterLab hand-over is driven in tests/functional/test_workspace_browser.py). The worker is one pass of the
real outbox delivery.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import zipfile
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy.orm import Session, sessionmaker

from gateway.config import Settings
from gateway.outputs.models import OutputRequest
from tests.functional.conftest import screenshot
from tests.functional.test_accreditation_browser import sign_out
from tests.functional.test_application_browser import as_user
from tests.integration.test_outputs import load_extract, notebook_crosstab, outputs_of, ready_project, work
from tests.support.browser import LiveServer
from tests.support.handover import hand_over
from tests.support.package_scan import scan_package

pytestmark = [pytest.mark.browser, pytest.mark.ldap]

JUSTIFICATION = ("The small cell is the published national count for this group (ONS table 3), so releasing it "
                 "discloses nothing new.")


def review_with_exception(page: Page, server: LiveServer, username: str, request_url: str, reason: str, *,
                          files: tuple[str, ...] = ("by_region.csv", "small.csv"), failing: str = "small.csv",
                          justification: str = JUSTIFICATION) -> None:
    """A checker approves every file and accepts the exception asked on the failing one, then submits the review."""
    as_user(page, server, username)
    page.goto(request_url)
    expect(page.get_by_test_id(f"exception-{failing}").get_by_test_id("exception-justification")) \
        .to_have_text(justification)
    for name in files:
        page.get_by_test_id(f"vote-{name}").get_by_label("Approve").check()
        page.get_by_role("button", name=f"Save vote on {name}").click()
        expect(page.get_by_text("Vote saved.")).to_be_visible()
    answer = page.get_by_test_id(f"answer-exception-{failing}")
    answer.get_by_label("Accept the exception").check()
    answer.get_by_label("Your reason").fill(reason)
    page.get_by_role("button", name=f"Save my answer on {failing}").click()
    expect(page.get_by_text("Your answer to the exception is saved.")).to_be_visible()
    page.get_by_role("button", name="Submit my review").click()
    expect(page.get_by_text("Review submitted.")).to_be_visible()


def test_exception_early_return_resubmission_and_two_reasoned_approvals(
        page: Page, live_server: LiveServer, seeded: sessionmaker[Session], live_settings: Settings,
        tmp_path: Path) -> None:
    factory, settings = seeded, live_settings
    project_id = ready_project(factory, settings)
    folder = outputs_of(settings, factory, "researcher", project_id)
    data = load_extract(settings, factory, project_id)
    notebook_crosstab(data, folder, "by_region", suppress=True)  # South/M (3) suppressed: passes
    notebook_crosstab(data, folder, "small", suppress=False)  # the same 3 left in: fails

    # the researcher builds the request, hands the two tables over and submits
    as_user(page, live_server, "researcher")
    page.goto(f"{live_server.url}/outputs/projects/{project_id}/new")
    page.get_by_label("Title").fill("Admissions by region")
    page.get_by_role("button", name="Start the request").click()
    form = page.get_by_test_id("add-group")
    form.get_by_label("Group name").fill("Region by sex")
    form.get_by_label("Context").fill("Patients by region and sex, whole extract, 2019-2024.")
    form.get_by_label("Disclosure controls").fill("by_region suppressed; small.csv needs an exception.")
    page.get_by_role("button", name="Add group").click()
    request_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
    request_url = page.url
    with factory() as s:
        request = s.get(OutputRequest, request_id)
        assert request is not None
        group_id = request.groups[0].id
    for name in ("by_region.csv", "small.csv"):
        hand_over(factory, settings, request_id, folder, name, group_id, "output")
    page.reload()
    page.get_by_role("button", name="Submit the request").click()
    expect(page.get_by_test_id("state")).to_have_text("Submitted")
    work(factory, settings)  # the automatic checks
    page.reload()
    small = page.get_by_test_id("file-small.csv")
    expect(small.get_by_test_id("verdict").first).to_have_text("Fail")
    expect(page.get_by_test_id("file-by_region.csv").get_by_test_id("verdict").first).to_have_text("Pass")
    expect(small.get_by_test_id("no-exception")).to_be_visible()
    small.get_by_label("Justification for an exception on small.csv").fill(JUSTIFICATION)
    page.get_by_role("button", name="Ask for an exception on small.csv").click()
    expect(page.get_by_text("Exception requested.")).to_be_visible()
    screenshot(page, "outputs-exception-requested")
    sign_out(page)

    # a checker sees the suppressed cell as "suppressed", the code behind the table, and returns early
    as_user(page, live_server, "checker1")
    page.goto(request_url)
    suppressed = page.get_by_test_id("preview-by_region.csv").locator("td[data-verdict='suppressed']")
    expect(suppressed).to_have_count(1)
    expect(suppressed.get_by_test_id("verdict")).to_have_text("Suppressed")
    expect(page.get_by_test_id("preview-by_region.csv").locator("td[data-verdict='pass'] [data-testid=verdict]")) \
        .to_have_count(0)
    page.get_by_test_id("code-small.csv").locator("summary").click()
    expect(page.get_by_test_id("code-small.csv").get_by_test_id("recorded-query")).to_contain_text('"region"')
    page.get_by_label("Add a comment").fill("Between us: the ONS table does list this group.")
    page.get_by_label("Who sees it").select_option("private")
    page.get_by_role("button", name="Add comment").click()
    page.get_by_test_id("return-early").get_by_label("What the researcher should change").fill(
        "Please name the ONS table in the group's context before we review.")
    page.get_by_role("button", name="Return to the researcher now").click()
    expect(page.get_by_test_id("state")).to_have_text("Returned")
    screenshot(page, "outputs-returned-early")
    sign_out(page)

    # the researcher reads the public comment (never the private one), updates the context and resubmits
    as_user(page, live_server, "researcher")
    page.goto(request_url)
    expect(page.get_by_test_id("comments")).to_contain_text("name the ONS table")
    expect(page.get_by_test_id("comments")).not_to_contain_text("Between us")
    context = page.get_by_test_id("group-Region by sex").get_by_label("Context")
    context.fill("Patients by region and sex, whole extract, 2019-2024; small.csv matches ONS table 3.")
    page.get_by_role("button", name="Save group").click()
    page.get_by_role("button", name="Resubmit the request").click()
    expect(page.get_by_test_id("state")).to_have_text("Submitted")
    work(factory, settings)
    sign_out(page)

    # both checkers approve both tables and accept the exception with their reasons; then the decision
    review_with_exception(page, live_server, "checker1", request_url, "The ONS table lists this exact count.")
    sign_out(page)
    review_with_exception(page, live_server, "checker2", request_url, "Confirmed against ONS table 3.")
    expect(page.get_by_test_id("exception-decisions")).to_contain_text("Confirmed against ONS table 3.")
    page.get_by_test_id("decision").get_by_label("Approve and release").check()
    page.get_by_role("button", name="Record the decision").click()
    expect(page.get_by_text("Decision recorded.")).to_be_visible()
    sign_out(page)
    work(factory, settings)  # the release

    # the researcher downloads the package: the exception and both reasons are in it, no suppressed value is
    as_user(page, live_server, "researcher")
    page.goto(request_url)
    expect(page.get_by_test_id("state")).to_have_text("Released")
    expect(page.get_by_test_id("exception-decisions")).to_contain_text("The ONS table lists this exact count.")
    sha = page.get_by_test_id("package-sha256").inner_text().strip()
    with page.expect_download() as info:
        page.get_by_test_id("download-package").click()
    package = tmp_path / "package.zip"
    info.value.save_as(package)
    assert hashlib.sha256(package.read_bytes()).hexdigest() == sha
    with zipfile.ZipFile(package) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        by_region = list(csv.reader(io.StringIO(archive.read("outputs/by_region.csv").decode())))
        everything = {name: archive.read(name).decode() for name in archive.namelist()}
    assert by_region == [["region", "F", "M"], ["North", "40", "35"], ["South", "30", ""]]  # the 3 is gone
    entries = {e["path"]: e for e in manifest["files"]}
    assert entries["outputs/by_region.csv"]["exceptions"] == []
    [granted] = entries["outputs/small.csv"]["exceptions"]
    assert granted["justification"] == JUSTIFICATION
    assert sorted(d["reason"] for d in granted["decisions"]) == ["Confirmed against ONS table 3.",
                                                                  "The ONS table lists this exact count."]
    assert "Between us" not in "".join(everything.values())  # a private comment never leaves
    assert not re.search(r'"(count|value)"\s*:', everything["manifest.json"] + everything["results.json"])
    with factory() as s:
        request = s.get(OutputRequest, request_id)
        assert request is not None
        assert scan_package(package, request) == []  # no suppressed cell's count or value anywhere in the zip
