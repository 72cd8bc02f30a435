"""From accreditation to the public register, in Chromium, as each person would do it."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy.orm import Session, sessionmaker

from projects.accreditation_rules import today
from projects.demo_people import demo_certificate_pdf
from tests.functional.conftest import fill_date, screenshot
from tests.functional.test_accreditation_browser import sign_out
from tests.functional.test_sign_in_browser import sign_in
from tests.support.browser import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.ldap]


def as_user(page: Page, server: LiveServer, username: str) -> None:
    sign_in(page, server, username, "demo-password")
    expect(page.get_by_test_id("signed-in-as")).to_be_visible()


def open_application(page: Page, server: LiveServer, title: str) -> None:
    page.goto(f"{server.url}/applications/")
    page.get_by_role("row", name=re.compile(title)).get_by_role("link").click()


def test_accreditation_to_application_to_dac_decision_to_register(
        page: Page, live_server: LiveServer, seeded: sessionmaker[Session], tmp_path: Path) -> None:
    title = "Asthma attacks and deprivation in London children"
    expiry = today() + dt.timedelta(days=700)
    certificate = tmp_path / "certificate.pdf"
    certificate.write_bytes(demo_certificate_pdf("Dr Amara Okafor", "ONS Accredited Researcher", "AR-1", expiry))

    # 1. the researcher records an accreditation; the officer verifies it
    as_user(page, live_server, "researcher")
    page.goto(f"{live_server.url}/applications/new")
    page.get_by_label("Project title").fill(title)
    page.get_by_role("button", name="Start").click()
    expect(page.get_by_role("alert")).to_contain_text("does not hold a valid accreditation")
    # the menu links there; followed by its address, as a click can land while the header's script rearranges the
    # menu on a loaded machine (seen once in CI: the click went nowhere)
    menu_link = page.get_by_role("link", name="Accreditation", exact=True).first
    expect(menu_link).to_have_attribute("href", re.compile(r"/accreditation/?$"))
    page.goto(f"{live_server.url}/accreditation/")
    page.get_by_role("link", name="Record an accreditation").click()
    page.get_by_label("ONS Accredited Researcher (Digital Economy Act)").check()
    page.get_by_label("Full", exact=True).check()
    page.get_by_label("Accreditation or certificate number").fill("AR-1")
    fill_date(page, "Date of training", today() - dt.timedelta(days=10))
    fill_date(page, "Expiry date", expiry)
    page.get_by_label("Certificate", exact=True).set_input_files(str(certificate))
    page.get_by_role("button", name="Record accreditation").click()
    expect(page.get_by_test_id("accreditation-status")).to_have_text("Waiting for verification")
    sign_out(page)
    as_user(page, live_server, "accreditor")
    page.get_by_role("link", name="Accreditation queue").first.click()
    page.get_by_role("link", name="Dr Amara Okafor (researcher)").click()
    page.get_by_role("button", name="Verify accreditation").click()
    expect(page.get_by_test_id("accreditation-status")).to_contain_text("Valid until")
    sign_out(page)

    # 2. the researcher drafts, sees every problem, completes and submits
    as_user(page, live_server, "researcher")
    page.goto(f"{live_server.url}/applications/new")
    page.get_by_label("Project title").fill(title)
    page.get_by_role("button", name="Start").click()
    page.get_by_label("Lay summary").fill("How often London children with asthma have serious attacks, and "
                                          "whether attacks are more common in poorer areas.")
    page.get_by_role("button", name="Save draft").click()
    expect(page.get_by_test_id("flash")).to_contain_text("Saved.")
    page.get_by_role("link", name="Check and submit").click()
    problems = page.get_by_test_id("submit-problems")
    for text in ("Enter a technical summary.", "Explain the public benefit.",
                 "Choose a lawful basis under UK GDPR Article 6.", "Choose the datasets and the exact variables"):
        expect(problems).to_contain_text(text)
    screenshot(page, "application-problems")
    page.get_by_role("link", name="Edit the application").click()
    page.get_by_label("Technical summary").fill("Cohort study of asthma exacerbations by IMD decile; Poisson models.")
    page.get_by_label("Public benefit").fill("Target asthma reviews where attacks are most frequent.")
    page.locator("#commercial_involvement-1").check()
    page.get_by_label("Cohort").fill("Children aged 5-16 with asthma registered with a London GP.")
    fill_date(page, "Data from", dt.date(2019, 1, 1))
    fill_date(page, "Data to", dt.date(2024, 12, 31))
    page.get_by_label("UK GDPR Article 6 lawful basis").select_option("6(1)(e)")
    page.get_by_label("UK GDPR Article 9 condition").select_option("9(2)(j)")
    page.get_by_label("Common law duty of confidentiality").select_option("s251")
    page.get_by_label("Ethics approval reference").fill("REC 24/LO/0001")
    page.locator("#opt_out_applies-0").check()
    page.get_by_label("Why the national data opt-out does or does not apply").fill("Research without consent.")
    page.locator("#workspace_size-0").check()
    page.get_by_label("Intended outputs").fill("Rates by borough and deprivation decile.")
    page.get_by_label("Minimum age").fill("5")  # the cohort, precisely: only these patients are extracted
    page.get_by_label("Maximum age").fill("16")
    page.get_by_label("Asthma", exact=True).check()
    page.get_by_role("button", name="Save draft").click()
    expect(page.get_by_test_id("cohort-age")).to_have_text("5 to 16, on the last day of the date range")
    expect(page.get_by_test_id("cohort-conditions")).to_have_text("At least one of: Asthma")
    page.get_by_role("link", name="Choose variables").click()
    page.locator('input[value="patients.imd_decile"]').check()
    page.locator('input[value="conditions.condition"]').check()
    page.get_by_role("button", name="Save variables").click()
    page.get_by_role("link", name="Check and submit").click()
    expect(page.get_by_test_id("submit-problems")).to_contain_text("Justify why you need patients.imd_decile")
    page.get_by_role("link", name="Choose variables").click()
    page.locator('input[name="just-patients.imd_decile"]').fill("Deprivation is the exposure of interest.")
    page.get_by_role("button", name="Save variables").click()
    expect(page.get_by_test_id("variables")).to_contain_text("imd_decile")
    page.get_by_role("link", name="Check and submit").click()
    page.get_by_role("button", name="Submit to the data access committee").click()
    expect(page.get_by_role("alert")).to_contain_text("Read and accept the data access agreement")
    page.get_by_label("I have read and accept the data access agreement").check()
    page.get_by_role("button", name="Submit to the data access committee").click()
    expect(page.get_by_test_id("state")).to_have_text("Submitted")
    sign_out(page)

    # 3. the chair assigns three reviewers including the lay member
    as_user(page, live_server, "dacchair")
    open_application(page, live_server, title)
    for name in ("Dr Kwame Mensah", "Dr Sofia Rossi", "Janet Clarke"):
        page.get_by_label(re.compile(f"^{name}")).check()
    page.get_by_role("button", name="Assign reviewers and start the review").click()
    expect(page.get_by_test_id("state")).to_have_text("Under review")
    sign_out(page)

    # 4. one reviewer declares a conflict and is recused
    as_user(page, live_server, "dac2")
    open_application(page, live_server, title)
    page.locator("#conflict-1").check()
    page.get_by_label("Describe the conflict").fill("I co-supervise the applicant's student.")
    page.get_by_role("button", name="Save declaration").click()
    expect(page.get_by_test_id("recused")).to_contain_text("You are recused")
    expect(page.get_by_test_id("review-form")).to_have_count(0)
    screenshot(page, "dac-recused")
    sign_out(page)

    # 5. blinded votes: before the chair decides, a reviewer sees only their own vote, not how many are in
    for username, vote in (("dac1", "#vote-0"), ("laymember", "#vote-1")):
        as_user(page, live_server, username)
        open_application(page, live_server, title)
        expect(page.get_by_test_id("conflict-form")).to_be_visible()
        expect(page.get_by_test_id("quorum")).to_contain_text("3 votes needed, including 1 from a lay member")
        expect(page.get_by_test_id("quorum")).not_to_contain_text(" of 3")
        if username == "laymember":
            screenshot(page, "dac-lay-member-declare")
        page.locator("#conflict-0").check()
        page.get_by_role("button", name="Save declaration").click()
        expect(page.get_by_test_id("reviews")).to_have_count(0)  # nothing visible before voting
        page.locator(vote).check()
        page.get_by_label("Comments for the applicant").fill("Clear and well justified.")
        if username == "laymember":
            expect(page.get_by_text("Other reviewers' votes, and how many there are, stay hidden until the chair "
                                    "decides.")).to_be_visible()
            screenshot(page, "dac-lay-member-vote")
        page.get_by_role("button", name="Submit vote").click()
        expect(page.get_by_test_id("reviews")).to_be_visible()
        if username == "laymember":
            expect(page.get_by_test_id("reviews")).not_to_contain_text("Dr Kwame Mensah")  # still blinded
            expect(page.get_by_test_id("quorum")).not_to_contain_text(" of 3")
            screenshot(page, "dac-lay-member-after-vote")
        sign_out(page)

    # 6. two votes are not a quorum; the chair adds themself, votes, and approves with conditions
    as_user(page, live_server, "dacchair")
    open_application(page, live_server, title)
    expect(page.get_by_test_id("quorum")).to_contain_text("2 of 3 votes needed")
    page.locator("#outcome-0").check()
    fill_date(page, "Access ends on", today() + dt.timedelta(days=365))
    page.get_by_role("button", name="Record decision").click()
    expect(page.get_by_role("alert")).to_contain_text("No quorum yet")
    page.get_by_label(re.compile("^Prof. Helen Marsh")).check()
    page.get_by_role("button", name="Assign reviewers").click()
    page.locator("#conflict-0").check()
    page.get_by_role("button", name="Save declaration").click()
    page.locator("#vote-0").check()
    page.get_by_role("button", name="Submit vote").click()
    expect(page.get_by_test_id("quorum")).to_contain_text("Quorum met")
    page.locator("#outcome-0").check()
    page.get_by_label("Conditions of approval").fill("Publish results openly within 12 months.")
    fill_date(page, "Access ends on", today() + dt.timedelta(days=365))
    screenshot(page, "dac-decision")
    page.get_by_role("button", name="Record decision").click()
    expect(page.get_by_test_id("state")).to_have_text("Approved")
    expect(page.get_by_test_id("decision")).to_contain_text("Publish results openly")
    sign_out(page)

    # 7. the project is on the public register, for anyone
    page.goto(f"{live_server.url}/register")
    entry = page.get_by_test_id("register-entry")
    expect(entry).to_have_count(1)
    expect(entry).to_contain_text(title)
    expect(entry).to_contain_text("Article 6(1)(e)")
    screenshot(page, "public-register")
