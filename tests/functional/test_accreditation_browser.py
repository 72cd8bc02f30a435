"""Accreditation as people do it, in Chromium: a researcher uploads a certificate, an officer verifies it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy.orm import Session, sessionmaker

from projects.accreditation import long_date
from projects.accreditation_rules import today
from projects.demo_people import demo_certificate_pdf
from tests.functional.conftest import fill_date, screenshot
from tests.functional.test_sign_in_browser import sign_in
from tests.support.browser import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.ldap]


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out", exact=True).click()
    expect(page.get_by_text("You have signed out.")).to_be_visible()


def test_researcher_records_officer_verifies_researcher_is_valid(
        page: Page, live_server: LiveServer, seeded: sessionmaker[Session], tmp_path: Path) -> None:
    expiry = today() + dt.timedelta(days=3 * 365)
    certificate = tmp_path / "ons-certificate.pdf"
    certificate.write_bytes(demo_certificate_pdf("Dr Amara Okafor", "ONS Accredited Researcher", "AR-2024-0042",
                                                 expiry))

    sign_in(page, live_server, "researcher", "demo-password")
    page.get_by_role("link", name="Accreditation", exact=True).first.click()
    expect(page.get_by_test_id("accreditation-summary")).to_contain_text("Not accredited")
    page.get_by_role("link", name="Record an accreditation").click()

    # a wrong file and a date without its month first: a PDF is refused when it claims to be a PNG, the date's
    # message names it and marks only the month box, and the typed details stay
    trained = today() - dt.timedelta(days=14)
    page.get_by_label("ONS Accredited Researcher (Digital Economy Act)").check()
    page.get_by_label("Full", exact=True).check()
    page.get_by_label("Accreditation or certificate number").fill("AR-2024-0042")
    fill_date(page, "Date of training", trained, parts=("day", "year"))
    fill_date(page, "Expiry date", expiry)
    disguised = tmp_path / "certificate.png"
    disguised.write_bytes(certificate.read_bytes())
    page.get_by_label("Certificate", exact=True).set_input_files(str(disguised))
    page.get_by_role("button", name="Record accreditation").click()
    expect(page.get_by_role("alert")).to_contain_text("its contents are a PDF")
    expect(page.get_by_role("alert")).to_contain_text("Date of training must include a month.")
    expect(page.get_by_label("Accreditation or certificate number")).to_have_value("AR-2024-0042")
    training = page.get_by_role("group", name="Date of training")
    expect(training.locator(".nhsuk-error-message")).to_have_text("Error: Date of training must include a month.")
    expect(training.locator(".nhsuk-input--error")).to_have_count(1)
    expect(training.get_by_label("Day", exact=True)).to_have_value(str(trained.day))
    expect(page.get_by_role("group", name="Expiry date").get_by_label("Year")).to_have_value(str(expiry.year))
    page.get_by_role("link", name="Date of training must include a month.").click()  # the summary's link
    expect(training.get_by_label("Month", exact=True)).to_be_focused()
    training.get_by_label("Month", exact=True).fill(str(trained.month))

    page.get_by_label("Certificate", exact=True).set_input_files(str(certificate))
    screenshot(page, "accreditation-record")
    page.get_by_role("button", name="Record accreditation").click()
    expect(page.get_by_test_id("accreditation-status")).to_have_text("Waiting for verification")
    expect(page.get_by_test_id("certificate-link")).to_contain_text("ons-certificate.pdf")
    sign_out(page)

    sign_in(page, live_server, "accreditor", "demo-password")
    page.get_by_role("link", name="Accreditation queue").first.click()
    expect(page.get_by_test_id("accreditation-queue")).to_contain_text("ONS Accredited Researcher")
    page.get_by_role("link", name="Dr Amara Okafor (researcher)").click()
    expect(page.get_by_test_id("accreditation-number")).to_have_text("AR-2024-0042")
    with page.expect_download() as download:
        page.get_by_test_id("certificate-link").click()
    assert Path(download.value.path()).read_bytes() == certificate.read_bytes()
    screenshot(page, "accreditation-verify")
    page.get_by_role("button", name="Verify accreditation").click()
    expect(page.get_by_test_id("flash")).to_contain_text("Accreditation verified")
    expect(page.get_by_test_id("accreditation-status")).to_have_text(f"Valid until {long_date(expiry)}")
    sign_out(page)

    sign_in(page, live_server, "researcher", "demo-password")
    page.get_by_role("link", name="Accreditation", exact=True).first.click()
    expect(page.get_by_test_id("accreditation-summary")).to_contain_text("You are accredited")
    expect(page.get_by_test_id("my-accreditations")).to_contain_text(f"Valid until {long_date(expiry)}")
    screenshot(page, "accreditation-valid")
