"""The public front door in Chromium, signed out: what the service is, the opt-out, live figures, public pages."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy.orm import Session, sessionmaker

from gateway.db import unit_of_work
from tests.functional.conftest import screenshot
from tests.support import factories as f
from tests.support.browser import LiveServer

pytestmark = [pytest.mark.browser]


def test_a_member_of_the_public_walks_the_front_door(page: Page, live_server: LiveServer,
                                                     seeded: sessionmaker[Session]) -> None:
    with unit_of_work(seeded) as s:
        f.accredit(s, "researcher")
    f.approved_project(seeded, title="Air quality and asthma admissions")
    page.goto(f"{live_server.url}/")
    expect(page.get_by_role("heading", name="The London Secure Data Environment")).to_be_visible()
    expect(page.get_by_test_id("five-safes")).to_contain_text("Safe outputs")
    expect(page.get_by_test_id("opt-out-promise")).to_contain_text(
        "opted-out patients are removed from every extract")
    expect(page.get_by_test_id("figure-projects")).to_have_text("1")
    screenshot(page, "front-door")

    page.get_by_role("link", name="The register of approved projects").click()
    entry = page.get_by_test_id("register-entry").filter(has_text="Air quality and asthma admissions")
    expect(entry).to_contain_text("Legal Basis (Article 6)")
    expect(entry).to_contain_text("Agreed Quote")
    page.go_back()
    page.get_by_role("link", name="The data catalogue").click()
    expect(page.get_by_role("heading", name="Data catalogue")).to_be_visible()
    page.goto(f"{live_server.url}/incidents")
    expect(page.get_by_text("No incidents have been recorded.")).to_be_visible()
    page.goto(f"{live_server.url}/involvement")
    expect(page.get_by_role("heading", name="Lay members on the data access committee")).to_be_visible()
