"""In Chromium: the committee's risk preview before voting, and a held extract released by two custodians,
each with a confirmation and a reason."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy.orm import Session, sessionmaker

from gateway.config import Settings
from gateway.db import unit_of_work
from gateway.extracts import service as extracts
from projects import dac
from projects.applications import VariableChoice
from projects.models import Application
from tests.functional.conftest import screenshot
from tests.functional.test_accreditation_browser import sign_out
from tests.functional.test_application_browser import as_user
from tests.support import factories as f
from tests.support.browser import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.ldap]

IDENTIFYING = [VariableChoice("patients", "date_of_birth", "age is the exposure"),
               VariableChoice("patients", "sex", "differs by sex"),
               VariableChoice("patients", "imd_decile", "deprivation"),
               VariableChoice("patients", "area_code", "local variation"),
               VariableChoice("conditions", "condition")]


def test_the_committee_reads_the_risk_preview_and_the_applicant_applies_a_suggestion(
        page: Page, live_server: LiveServer, seeded: sessionmaker[Session]) -> None:
    with unit_of_work(seeded) as s:
        f.accredit(s, "researcher")
    app_id = f.draft(seeded, title="Respiratory admissions by age and area", variables=IDENTIFYING)
    f.submit(seeded, app_id)
    with unit_of_work(seeded) as s:
        application = s.get(Application, app_id)
        assert application is not None
        dac.assign_reviewers(s, f.user(s, "dacchair"), application, [f.user(s, "dac1")])

    as_user(page, live_server, "dac1")
    page.goto(f"{live_server.url}/applications/{app_id}")
    card = page.get_by_test_id("risk-preview")
    expect(card).to_contain_text("Re-identification risk of the requested data")
    expect(card.get_by_test_id("risk-verdict")).to_contain_text("High risk")
    expect(card).to_contain_text("Unique records")  # the committee's figures are exact
    expect(card.get_by_test_id("risk-suggestion").first).to_be_visible()
    expect(card.get_by_role("button", name="Apply this to my draft")).to_have_count(0)  # not theirs to apply
    screenshot(page, "dac-risk-preview")
    sign_out(page)

    # the chair asks for changes; the applicant applies the first suggestion with one click
    with unit_of_work(seeded) as s:
        application = s.get(Application, app_id)
        assert application is not None
        dac.declare_conflict(s, f.user(s, "dac1"), application, False, "")
        dac.submit_review(s, f.user(s, "dac1"), application, "changes_requested", "", "Coarsen the details.")
    f.review_round(seeded, app_id, {"dac2": "changes_requested", "laymember": "changes_requested"})
    with unit_of_work(seeded) as s:
        application = s.get(Application, app_id)
        assert application is not None
        dac.decide(s, f.user(s, "dacchair"), application, f.DAC, outcome="changes_requested", conditions="",
                   message="Apply the risk preview's suggestion.", access_end_date=None, today=f.TODAY)
    as_user(page, live_server, "researcher")
    page.goto(f"{live_server.url}/applications/{app_id}")
    card = page.get_by_test_id("risk-preview")
    expect(card).to_contain_text("Figures are rounded")
    suggestion = card.get_by_test_id("risk-suggestion").first
    changes = suggestion.locator("strong").inner_text()
    screenshot(page, "applicant-risk-preview")
    suggestion.get_by_role("button", name="Apply this to my draft").click()
    expect(page.get_by_role("alert").or_(page.locator(".nhsuk-inset-text")).first).to_be_visible()
    expect(page.get_by_text("The suggestion is applied to your draft")).to_be_visible()
    first_change = changes.split(";")[0].strip().lower().removeprefix("leave out ")
    expect(page.get_by_test_id("risk-preview")).to_contain_text(re.compile(re.escape(first_change), re.I))


def test_a_held_high_risk_extract_is_released_by_two_custodians_with_reasons(
        page: Page, live_server: LiveServer, live_settings: Settings, seeded: sessionmaker[Session]) -> None:
    with unit_of_work(seeded) as s:
        f.accredit(s, "researcher")
    # age, sex, deprivation and area for a few hundred people: most are in small groups (held, high risk)
    project_id = f.approved_project(seeded, title="Held extract", variables=IDENTIFYING)
    extracts.run_queued_builds(live_settings, seeded)

    as_user(page, live_server, "admin")
    page.goto(f"{live_server.url}/projects/{project_id}")
    page.get_by_role("navigation", name="Pages of this project").get_by_role("link", name="Data").click()
    page.get_by_role("link", name="Review and release v1").click()
    expect(page.get_by_test_id("release-risk")).to_contain_text(re.compile(r"[0-9.]+% \(\d+ of \d+\)"))
    expect(page.get_by_test_id("two-person")).to_contain_text("two custodians must agree")
    page.get_by_role("button", name="Propose releasing version 1").click()  # no reason, no tick
    expect(page.get_by_role("alert")).to_contain_text("Give a reason")
    expect(page.get_by_role("alert")).to_contain_text("Tick to confirm")
    page.get_by_label("Reason (recorded in the audit log)").fill("Small groups are sex by borough; the team is "
                                                                 "accredited and outputs are checked.")
    page.get_by_label("I have read the risk report of version 1 and accept its risk").check()
    screenshot(page, "custodian-release-confirmation")
    page.get_by_role("button", name="Propose releasing version 1").click()
    expect(page.get_by_text("a second custodian must confirm it")).to_be_visible()
    expect(page.get_by_test_id("release-proposed")).to_be_visible()
    page.get_by_role("link", name="Review and release v1").click()
    expect(page.get_by_test_id("two-person")).to_contain_text("A different custodian must confirm it")
    expect(page.get_by_test_id("release-form")).to_have_count(0)
    sign_out(page)

    as_user(page, live_server, "custodian")
    page.goto(f"{live_server.url}/projects/{project_id}/extracts/1/release")
    expect(page.get_by_test_id("two-person")).to_contain_text("Sam Taylor (administrator) proposed")
    page.get_by_label("Reason (recorded in the audit log)").fill("Agreed with the proposal.")
    page.get_by_label("I have read the risk report of version 1 and accept its risk").check()
    page.get_by_role("button", name="Confirm the release of version 1").click()
    expect(page.get_by_text("Version 1 released")).to_be_visible()
    expect(page.get_by_test_id("extract-versions")).to_contain_text("Live")
    sign_out(page)

    as_user(page, live_server, "auditor")
    page.goto(f"{live_server.url}/audit/?action=extract.release")
    expect(page.get_by_test_id("audit-table")).to_contain_text("extract.released")
    expect(page.get_by_test_id("audit-table")).to_contain_text("Agreed with the proposal.")
    expect(page.get_by_test_id("audit-table")).to_contain_text("extract.release_proposed")
    screenshot(page, "audit-two-person-release")
