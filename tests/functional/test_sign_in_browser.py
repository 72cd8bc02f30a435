"""Signing in as a person would, in Chromium: LDAP, local account with TOTP, and the refusals."""

from __future__ import annotations

import time

import pyotp
import pytest
from playwright.sync_api import Page, expect
from sqlalchemy.orm import Session, sessionmaker

from tests.functional.conftest import screenshot
from tests.support.browser import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.ldap]


def sign_in(page: Page, server: LiveServer, username: str, password: str) -> None:
    page.goto(f"{server.url}/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_ldap_user_signs_in_and_sees_pages_for_their_roles(page: Page, live_server: LiveServer) -> None:
    sign_in(page, live_server, "bob", "bob-ldap-password")
    expect(page.get_by_test_id("signed-in-as")).to_have_text("Bob Directory")
    expect(page.get_by_role("heading", name="Welcome, Bob Directory")).to_be_visible()
    page.get_by_role("link", name="Your account").first.click()
    expect(page.get_by_text("Organisation directory (LDAP)")).to_be_visible()
    expect(page.get_by_text("Data access committee member, Researcher")).to_be_visible()
    page.get_by_role("button", name="Sign out", exact=True).click()
    expect(page.get_by_text("You have signed out.")).to_be_visible()
    page.goto(f"{live_server.url}/home")
    expect(page).to_have_url(f"{live_server.url}/login?next=/home?")


def test_ldap_wrong_password_is_refused(page: Page, live_server: LiveServer) -> None:
    sign_in(page, live_server, "alice", "not-her-password")
    expect(page.get_by_role("alert")).to_contain_text("The username or password is not right.")
    expect(page).to_have_url(f"{live_server.url}/login")


def test_local_account_enrols_totp_then_signs_in_with_it_and_is_refused_when_wrong(
        page: Page, live_server: LiveServer, seeded: sessionmaker[Session]) -> None:
    # enrol from the account page
    sign_in(page, live_server, "researcher", "demo-password")
    page.get_by_role("link", name="Your account").first.click()
    page.get_by_role("link", name="set up an authenticator app").click()
    secret = page.get_by_test_id("totp-secret").inner_text().strip()
    screenshot(page, "totp-enrolment")
    page.get_by_label("Code").fill("000000")
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("alert")).to_contain_text("That code is not right")
    page.get_by_label("Code").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_test_id("recovery-codes").locator("li")).to_have_count(10)
    page.get_by_role("link", name="I have saved my codes").click()
    expect(page.get_by_test_id("totp-status")).to_have_text("Authenticator app set up")
    page.get_by_role("button", name="Sign out", exact=True).click()

    # password, then a wrong code, then the right one
    sign_in(page, live_server, "researcher", "demo-password")
    expect(page.get_by_role("heading", name="Enter your security code")).to_be_visible()
    page.get_by_label("Code").fill("123456")
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("alert")).to_contain_text("That code is not right")
    page.get_by_label("Code").fill(pyotp.TOTP(secret).at(time.time() + 30))
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", name="Welcome, Dr Amara Okafor (researcher)")).to_be_visible()
    screenshot(page, "home-researcher")


def test_lockout_after_repeated_failures_refuses_the_right_password(
        page: Page, live_server: LiveServer, seeded: sessionmaker[Session]) -> None:
    for _ in range(3):
        sign_in(page, live_server, "researcher2", "wrong-password")
    expect(page.get_by_role("alert")).to_contain_text("locked")
    sign_in(page, live_server, "researcher2", "demo-password")
    expect(page.get_by_role("alert")).to_contain_text("This account is locked")
    expect(page).to_have_url(f"{live_server.url}/login")
    screenshot(page, "sign-in-locked")


def test_admin_makes_totp_mandatory_and_the_role_must_enrol(
        page: Page, live_server: LiveServer, seeded: sessionmaker[Session]) -> None:
    sign_in(page, live_server, "admin", "demo-password")
    page.get_by_role("link", name="Users").first.click()
    page.get_by_role("link", name="researcher2", exact=True).click()
    expect(page.get_by_test_id("user-status")).to_have_text("Active")
    expect(page.get_by_role("button", name="Save roles")).to_be_visible()
    screenshot(page, "admin-user-account")
    page.get_by_role("link", name="Security policy").first.click()
    page.get_by_label("Auditor").check()
    page.get_by_role("button", name="Save policy").click()
    expect(page.get_by_text("Security policy saved.")).to_be_visible()
    screenshot(page, "admin-security-policy")
    page.get_by_role("button", name="Sign out", exact=True).click()

    sign_in(page, live_server, "auditor", "demo-password")
    expect(page.get_by_role("heading", name="Set up your authenticator app")).to_be_visible()
    page.goto(f"{live_server.url}/audit/")  # not reachable before enrolment
    expect(page).to_have_url(f"{live_server.url}/login/enrol")
    secret = page.get_by_test_id("totp-secret").inner_text().strip()
    page.get_by_label("Code").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Confirm").click()
    page.get_by_role("link", name="I have saved my codes").click()
    expect(page.get_by_role("heading", name="Welcome, Ruth Adebayo (auditor)")).to_be_visible()
    page.get_by_role("link", name="Audit log").first.click()
    expect(page.get_by_test_id("audit-table")).to_contain_text("security.totp_policy_changed")
    expect(page.get_by_test_id("audit-table")).to_contain_text("auth.totp_enrolled")
    screenshot(page, "audit-log")
    page.get_by_role("link", name="Verify the chain").click()
    expect(page.get_by_test_id("verify-result")).to_contain_text("The chain is intact")
    screenshot(page, "audit-verify")
