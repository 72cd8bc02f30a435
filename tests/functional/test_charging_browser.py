"""Charging in Chromium: the quote on a draft, finance's monthly run and PDF, and charges on the register."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from gateway import demo
from gateway.app import create_app
from gateway.charging.invoices import previous_month
from gateway.config import Settings
from gateway.db import unit_of_work, utcnow
from projects import agreements
from projects.models import Project
from tests.functional.conftest import fill_date, screenshot
from tests.functional.test_accreditation_browser import sign_out
from tests.functional.test_application_browser import as_user
from tests.support import factories as f
from tests.support.browser import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.ldap]


@pytest.fixture
def world(live_settings: Settings) -> sessionmaker[Session]:
    factory = create_app(live_settings).extensions["sde_sessionmaker"]
    with unit_of_work(factory) as s:
        demo.seed_users(s, "test")
        agreements.ensure_default(s, "test")
        f.accredit(s, "researcher")
    return factory


def test_quote_on_a_draft_then_finance_invoices_and_the_register_shows_charges(
        page: Page, live_server: LiveServer, world: sessionmaker[Session]) -> None:
    project_id = f.approved_project(world, title="Hypertension control in south London")
    f.draft(world, title="Childhood immunisation uptake")
    month = previous_month(utcnow().date())
    with unit_of_work(world) as s:  # the approval fees were metered this month; bill them as last month's
        s.execute(text("UPDATE meter_events SET period = :m"), {"m": month})
        reference = s.get(Project, project_id).reference  # type: ignore[union-attr]

    # the researcher sees the itemised quote on the draft
    as_user(page, live_server, "researcher")
    page.goto(f"{live_server.url}/applications/")
    page.get_by_role("row", name=re.compile("Childhood immunisation uptake")).get_by_role("link").click()
    quote = page.get_by_test_id("quote")
    expect(quote).to_contain_text("New data access application")
    expect(quote).to_contain_text("Data provision: conditions, patients")
    expect(quote).to_contain_text("Workspace seats: 1 person x 12 months")
    # 1,431 + 2 x 488 + 434 + 12 x 472 = 8,505.00 net; 20% VAT 1,701.00
    expect(page.get_by_test_id("quote-total")).to_have_text("£10,206.00")
    screenshot(page, "charging-quote-on-draft")
    sign_out(page)

    # finance runs last month's invoices, issues the project's invoice and downloads the PDF
    as_user(page, live_server, "finance")
    page.get_by_role("link", name="Finance").first.click()
    fill_date(page, "Month to invoice", dt.date.fromisoformat(f"{month}-01"), parts=("month", "year"))
    page.get_by_role("button", name="Run invoices").click()
    expect(page.get_by_text(f"{month}: 1 invoice drafted")).to_be_visible()
    expect(page.get_by_test_id("invoices")).to_contain_text(reference)
    page.get_by_test_id("invoices").get_by_role("link").first.click()
    expect(page.get_by_test_id("invoice-lines")).to_contain_text("New data access application")
    expect(page.get_by_test_id("invoice-total")).to_have_text("£3,409.20")  # 2,841.00 net + VAT
    page.get_by_role("button", name="Issue invoice").click()
    expect(page.get_by_test_id("invoice-state")).to_have_text("Issued")
    screenshot(page, "charging-invoice-issued")
    with page.expect_download() as download_info:
        page.get_by_test_id("download-pdf").click()
    pdf = open(download_info.value.path(), "rb").read()  # noqa: SIM115
    assert pdf.startswith(b"%PDF")
    assert reference.encode() in pdf
    page.get_by_role("link", name="Finance").first.click()
    expect(page.get_by_test_id("chart-by-type").locator("svg rect").first).to_be_visible()
    screenshot(page, "charging-finance-dashboard")

    # finance caps the project's budget: what is already charged counts, so the cap is near its warning level
    page.get_by_role("link", name="Budgets").click()
    card = page.get_by_test_id(f"budget-{reference}")
    card.get_by_label("Cap in pounds, including VAT").fill("4000")
    card.get_by_label("Reason").fill("Agreed with the funder for year one.")
    card.get_by_role("button", name="Set budget").click()
    expect(page.get_by_text(f"Budget for {reference} set to £4,000.00.")).to_be_visible()
    expect(card).to_contain_text("£3,409.20 of £4,000.00 used")
    expect(card).to_contain_text("Warning")
    screenshot(page, "charging-budgets")
    sign_out(page)

    # anyone sees what the project has been charged on the public register
    page.goto(f"{live_server.url}/register")
    entry = page.get_by_test_id("register-entry").filter(has_text=reference)
    expect(entry).to_contain_text("£3,409.20")
    screenshot(page, "charging-register-charges")
