"""Accessibility as a test: axe-core (WCAG 2.1 A and AA) on the public pages and every role's home and main list,
at desktop (1200 px) and phone (390 px) width; no page wider than a phone, no content security policy errors.

One browser, one context per role and width; every page is checked and every finding reported before failing.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page
from sqlalchemy.orm import Session, sessionmaker

from gateway.config import Settings
from tests.support.accessibility import FAILING_IMPACTS, check_accessibility, describe, run_axe
from tests.support.browser import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.ldap]

WIDTHS = {"desktop": 1200, "phone": 390}

PUBLIC_PAGES = ["/", "/register", "/catalogue/", "/involvement", "/incidents", "/charging/tariff", "/login",
                "/catalogue/software"]

# each demo role: its home and the main list it works from
ROLE_PAGES: dict[str, list[str]] = {
    # "first:PATTERN" is the first link on the page before it whose path matches: a detail page from the list
    "researcher": ["/home", "/applications/", r"first:/applications/\d+$", "/projects/", r"first:/projects/\d+$",
                   "/outputs/", "/packages"],
    "dac1": ["/home", "/applications/"],
    "dacchair": ["/home", "/applications/", "/projects/"],
    "checker1": ["/home", "/outputs/queue"],
    "accreditor": ["/home", "/accreditation/queue"],
    "finance": ["/home", "/charging/", "/charging/invoices"],
    "admin": ["/home", "/admin/users", "/admin/organisations/", "/admin/packages"],
    "auditor": ["/home", "/audit/"],
}


@pytest.fixture
def live_settings(live_settings: Settings) -> Settings:
    """Eight accounts sign in from one address within a minute here: more than the default per-address limit."""
    return live_settings.model_copy(update={"security": live_settings.security.model_copy(
        update={"sign_in_limit_per_ip": "60/minute"})})


@pytest.fixture
def demo_data(live_settings: Settings) -> sessionmaker[Session]:
    """The whole demo (accounts, organisations, applications, projects), so lists and tables have rows."""
    from gateway import demo
    from gateway.app import create_app
    from gateway.db import unit_of_work

    app = create_app(live_settings)
    factory = app.extensions["sde_sessionmaker"]
    with unit_of_work(factory) as s:
        demo.seed(s, live_settings)
    app.extensions["sde_engine"].dispose()
    return factory


class PageProblems:
    """Collects what is wrong on each page visited with one context, so a run reports everything at once."""

    def __init__(self, page: Page, label: str) -> None:
        self.page, self.label = page, label
        self.csp_errors: list[str] = []
        self.found: list[str] = []
        page.on("console", self._console)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            self.csp_errors.append(message.text)

    def visit(self, url: str, path: str, width: int) -> None:
        if path.startswith("first:"):
            found = self.page.evaluate(
                "pattern => [...document.querySelectorAll('main a[href]')].map(a => a.pathname)"
                ".find(p => new RegExp(pattern).test(p))", path.removeprefix("first:"))
            if not found:
                self.found.append(f"{self.label}: no link matching {path} on {self.page.url}")
                return
            path = found
        self.csp_errors.clear()
        response = self.page.goto(url + path)
        self.page.wait_for_load_state("load")
        where = f"{self.label} {path} at {width}px"
        if response is None or response.status != 200:
            self.found.append(f"{where}: HTTP {response.status if response else 'no response'}")
            return
        serious = [v for v in run_axe(self.page) if v.get("impact") in FAILING_IMPACTS]
        if serious:
            self.found.append(f"{where}: axe\n{describe(serious)}")
        scroll_width = self.page.evaluate("() => document.documentElement.scrollWidth")
        if scroll_width > width:
            self.found.append(f"{where}: page is {scroll_width}px wide, wider than the {width}px viewport")
        if self.csp_errors:
            self.found.append(f"{where}: content security policy errors: {self.csp_errors}")


def _context(browser: Browser, width: int) -> Any:
    return browser.new_context(viewport={"width": width, "height": 900})


def sign_in(page: Page, url: str, username: str) -> None:
    page.goto(f"{url}/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("demo-password")
    page.get_by_role("button", name="Sign in").click()
    try:
        page.wait_for_url(lambda u: not u.startswith(f"{url}/login"), timeout=10_000)
    except Exception:
        raise AssertionError(page.locator("main").inner_text()) from None
    assert page.url == f"{url}/home", f"{username} signed in but landed on {page.url}"


def test_public_pages_are_accessible_at_desktop_and_phone_width(
        browser: Browser, live_server: LiveServer, demo_data: sessionmaker[Session]) -> None:
    problems: list[str] = []
    for name, width in WIDTHS.items():
        context = _context(browser, width)
        checker = PageProblems(context.new_page(), f"signed out ({name})")
        for path in PUBLIC_PAGES:
            checker.visit(live_server.url, path, width)
        problems += checker.found
        context.close()
    assert not problems, "\n".join(problems)


def test_each_role_home_and_lists_are_accessible_at_desktop_and_phone_width(
        browser: Browser, live_server: LiveServer, demo_data: sessionmaker[Session]) -> None:
    problems: list[str] = []
    for username, paths in ROLE_PAGES.items():
        context = _context(browser, WIDTHS["desktop"])
        page = context.new_page()
        sign_in(page, live_server.url, username)
        for name, width in WIDTHS.items():
            page.set_viewport_size({"width": width, "height": 900})
            checker = PageProblems(page, f"{username} ({name})")
            for path in paths:
                checker.visit(live_server.url, path, width)
            problems += checker.found
        context.close()
    assert not problems, "\n".join(problems)


def test_the_check_fails_on_a_serious_violation_and_names_the_rule_and_element(browser: Browser) -> None:
    context = _context(browser, WIDTHS["phone"])
    page = context.new_page()
    page.set_content('<!DOCTYPE html><html lang="en"><head><title>t</title></head><body><main>'
                     '<form><input id="unlabelled" type="text"></form></main></body></html>')
    with pytest.raises(AssertionError) as failure:
        check_accessibility(page, "an unlabelled input")
    assert "label (critical)" in str(failure.value) and "#unlabelled" in str(failure.value)
    page.set_content('<!DOCTYPE html><html lang="en"><head><title>t</title></head><body><main>'
                     '<form><label for="named">Name</label><input id="named" type="text"></form></main></body></html>')
    check_accessibility(page, "a labelled input")
    context.close()
