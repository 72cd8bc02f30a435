"""Signing in as a person would, in Chromium: LDAP, local account with TOTP, and the refusals."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pyotp
import pytest
from playwright.sync_api import Page, expect
from sqlalchemy.orm import Session, sessionmaker

from gateway.app import create_app
from gateway.config import Settings
from tests.functional.conftest import screenshot
from tests.support.browser import LiveServer
from tests.support.enrolment_mail import newest_code, newest_link

pytestmark = [pytest.mark.browser, pytest.mark.ldap]


def sign_in(page: Page, server: LiveServer, username: str, password: str) -> None:
    page.goto(f"{server.url}/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def follow_emailed_link(page: Page, factory: sessionmaker[Session], username: str) -> None:
    """Open the set-up link from the person's newest email in this browser, and continue."""
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    page.goto(newest_link(factory, username))
    page.get_by_role("button", name="Continue").click()


def type_emailed_code(page: Page, factory: sessionmaker[Session], username: str) -> None:
    """Type the code from the person's newest email (production without public.base_url mails no link)."""
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    page.get_by_label("Set-up code").fill(newest_code(factory, username))
    page.get_by_role("button", name="Continue").click()


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
    expect(page.get_by_test_id("totp-secret")).to_have_count(0)  # the password alone sets up nothing
    page.get_by_role("button", name="Send me a link").click()
    expect(page.get_by_test_id("link-sent")).to_contain_text("r•••@demo.londonsde.invalid")
    follow_emailed_link(page, seeded, "researcher")
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
    page.goto(f"{live_server.url}/audit/")  # not reachable before the emailed link, nor the set-up page
    expect(page).to_have_url(f"{live_server.url}/login/verify")
    page.goto(f"{live_server.url}/login/enrol")
    expect(page).to_have_url(f"{live_server.url}/login/verify")
    follow_emailed_link(page, seeded, "auditor")
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
    expect(page.get_by_test_id("audit-table")).to_contain_text("auth.enrolment_code_used")
    screenshot(page, "audit-log")
    page.get_by_role("link", name="Verify the chain").click()
    expect(page.get_by_test_id("verify-result")).to_contain_text("The chain is intact")
    screenshot(page, "audit-verify")
    kept = page.get_by_test_id("audit-head").inner_text().strip()  # what the auditor copies to keep
    page.get_by_label("Anchors you kept").fill(f"# my copy\n{kept}")
    page.get_by_role("button", name="Check against these anchors").click()
    expect(page.get_by_test_id("verify-result")).to_contain_text("every one of the 1 anchor you kept matches")


# --- production settings: a second factor for every role, and passwords people choose themselves --------------

@pytest.fixture
def production_server(live_settings: Settings) -> Iterator[LiveServer]:
    app = create_app(live_settings.model_copy(update={"env": "production"}))
    server = LiveServer(app).start()
    yield server
    server.stop()
    app.extensions["sde_engine"].dispose()


def set_up_authenticator(page: Page) -> str:
    """On the enrolment page: read the key, confirm a code, keep the recovery codes, continue."""
    expect(page.get_by_role("heading", name="Set up your authenticator app")).to_be_visible()
    secret = page.get_by_test_id("totp-secret").inner_text().strip()
    page.get_by_label("Code").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_test_id("recovery-codes").locator("li")).to_have_count(10)
    page.get_by_role("link", name="I have saved my codes").click()
    return secret


def test_production_asks_every_role_for_a_second_factor_then_for_the_code(
        page: Page, production_server: LiveServer, seeded: sessionmaker[Session]) -> None:
    page.goto(f"{production_server.url}/login")
    expect(page.get_by_test_id("no-second-factor")).to_have_count(0)  # no "runs without" notice in production
    sign_in(page, production_server, "researcher", "demo-password")
    page.goto(f"{production_server.url}/projects/")  # nothing else is reachable before the app is set up
    expect(page).to_have_url(f"{production_server.url}/login/verify")
    expect(page.get_by_test_id("link-sent")).to_contain_text("r•••@demo.londonsde.invalid")
    screenshot(page, "sign-in-verify-email")
    type_emailed_code(page, seeded, "researcher")
    expect(page).to_have_url(f"{production_server.url}/login/enrol")
    screenshot(page, "sign-in-enrol-production")
    secret = set_up_authenticator(page)
    expect(page.get_by_role("heading", name="Welcome, Dr Amara Okafor (researcher)")).to_be_visible()
    page.get_by_role("button", name="Sign out", exact=True).click()

    sign_in(page, production_server, "researcher", "demo-password")
    expect(page.get_by_role("heading", name="Enter your security code")).to_be_visible()
    page.goto(f"{production_server.url}/login/enrolled")  # the old way round the code is gone
    page.goto(f"{production_server.url}/home")
    expect(page).to_have_url(f"{production_server.url}/login/code")
    page.get_by_label("Code").fill(pyotp.TOTP(secret).at(time.time() + 30))
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", name="Welcome, Dr Amara Okafor (researcher)")).to_be_visible()


def test_admin_made_account_chooses_its_own_password_and_relaxing_the_policy_asks_why(
        page: Page, production_server: LiveServer, seeded: sessionmaker[Session]) -> None:
    sign_in(page, production_server, "admin", "demo-password")
    type_emailed_code(page, seeded, "admin")
    set_up_authenticator(page)
    page.get_by_role("link", name="Users").first.click()
    page.get_by_role("link", name="Create a local account").click()
    page.get_by_label("Username").fill("newstarter")
    page.get_by_label("Full name").fill("Nia Starter")
    page.get_by_label("Initial password").fill("password12345")
    page.get_by_label("Researcher").check()
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("alert")).to_contain_text("too easy to guess")
    page.get_by_label("Initial password").fill("desk-given-walnut-42")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_text("Account 'newstarter' created.")).to_be_visible()

    page.get_by_role("link", name="Security policy").first.click()
    page.get_by_label("Researcher").uncheck()
    page.get_by_role("button", name="Save policy").click()
    expect(page.get_by_role("heading", name="Confirm: relax the second-factor policy")).to_be_visible()
    expect(page.get_by_test_id("relaxed-roles")).to_have_text("Researcher")
    page.get_by_role("button", name="Confirm and relax the policy").click()
    expect(page.get_by_role("alert")).to_contain_text("Give the reason")
    page.get_by_label("Why may these roles sign in without a second factor?").fill(
        "Pilot group without work phones, agreed with the SIRO until 1 March")
    screenshot(page, "admin-relax-second-factor")
    page.get_by_role("button", name="Confirm and relax the policy").click()
    expect(page.get_by_text("Security policy saved.")).to_be_visible()
    expect(page.get_by_test_id("relaxations")).to_contain_text("agreed with the SIRO")
    page.get_by_role("button", name="Sign out", exact=True).click()

    sign_in(page, production_server, "newstarter", "desk-given-walnut-42")
    expect(page.get_by_role("heading", name="Choose your own password")).to_be_visible()
    page.goto(f"{production_server.url}/projects/")
    expect(page).to_have_url(f"{production_server.url}/login/new-password")
    page.get_by_label("New password", exact=True).fill("desk-given-walnut-42")
    page.get_by_label("New password again").fill("desk-given-walnut-42")
    page.get_by_role("button", name="Save password and continue").click()
    expect(page.get_by_role("alert")).to_contain_text("different from the one you have now")
    page.get_by_label("New password", exact=True).fill("copper-meadow-violin-17")
    page.get_by_label("New password again").fill("copper-meadow-violin-17")
    screenshot(page, "first-password-change")
    page.get_by_role("button", name="Save password and continue").click()
    expect(page.get_by_role("heading", name="Welcome, Nia Starter")).to_be_visible()


def test_password_change_on_the_account_page(page: Page, live_server: LiveServer,
                                             seeded: sessionmaker[Session]) -> None:
    page.goto(f"{live_server.url}/login")
    expect(page.get_by_test_id("no-second-factor")).to_contain_text("runs without a second factor")
    sign_in(page, live_server, "researcher2", "demo-password")
    page.get_by_role("link", name="Your account").first.click()
    page.get_by_role("link", name="Change your password").click()
    page.get_by_label("Current password").fill("not-my-password")
    page.get_by_label("New password", exact=True).fill("lantern-harbour-violet-8")
    page.get_by_label("New password again").fill("lantern-harbour-violet-8")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("alert")).to_contain_text("Your current password is not right")
    page.get_by_label("Current password").fill("demo-password")
    page.get_by_label("New password", exact=True).fill("lantern-harbour-violet-8")
    page.get_by_label("New password again").fill("lantern-harbour-violet-8")
    screenshot(page, "change-password")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_text("Your password has been changed.")).to_be_visible()
    expect(page.get_by_test_id("sessions")).to_contain_text("This browser")
    page.get_by_role("button", name="Sign out", exact=True).click()
    sign_in(page, live_server, "researcher2", "demo-password")
    expect(page.get_by_role("alert")).to_contain_text("The username or password is not right.")
    sign_in(page, live_server, "researcher2", "lantern-harbour-violet-8")
    expect(page.get_by_role("heading", name="Welcome, Dr Tom Brennan (researcher)")).to_be_visible()
