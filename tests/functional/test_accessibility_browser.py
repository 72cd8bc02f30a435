"""Accessibility as a test: axe-core (WCAG 2.1 A and AA) on the public pages and every role's home and main list,
at desktop (1200 px) and phone (390 px) width; no page wider than a phone, no content security policy errors.

One browser, one context per role and width; every page is checked and every finding reported before failing.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.config import Settings
from projects.models import Application
from tests.functional.conftest import screenshot
from tests.support.accessibility import (
    FAILING_IMPACTS,
    AxeOnEveryPage,
    check_accessibility,
    describe,
    run_axe,
    without_upstream_radios,
)
from tests.support.browser import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.ldap]

WIDTHS = {"desktop": 1200, "phone": 390}

PUBLIC_PAGES = ["/", "/register", "/catalogue/", "/involvement", "/incidents", "/charging/tariff", "/login",
                "/catalogue/software"]

# each demo role: its home and the main list it works from
ROLE_PAGES: dict[str, list[str]] = {
    # "first:PATTERN" is the first link on the page before it whose path matches: a detail page from the list
    "researcher": ["/home", "/applications/", r"first:/applications/\d+$", "/projects/", r"first:/projects/\d+$",
                   r"first:/projects/\d+/data$", r"first:/projects/\d+/sessions$", r"first:/projects/\d+/outputs$",
                   r"first:/charging/projects/\d+/statement$", "/outputs/", "/packages"],
    # the application form pages (new, edit, variables) of a researcher with a draft
    "researcher2": ["/applications/new", "/applications/{draft}", "/applications/{draft}/edit",
                    "/applications/{draft}/variables", "/accreditation/new"],
    "dac1": ["/home", "/applications/"],
    "laymember": ["/home", "/account/second-factor"],  # the set-up's first step: check your email
    "dacchair": ["/home", "/applications/", "/projects/"],
    "checker1": ["/home", "/outputs/queue"],
    "accreditor": ["/home", "/accreditation/queue"],
    "finance": ["/home", "/charging/", "/charging/invoices"],
    "admin": ["/home", "/admin/users", "/admin/organisations/", "/admin/packages", "/admin/incidents"],
    "auditor": ["/home", "/audit/"],
}


@pytest.fixture
def live_settings(live_settings: Settings) -> Settings:
    """Ten accounts sign in from one address within a minute here: more than the default per-address limit."""
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

    def visit(self, url: str, path: str, width: int, picture: str | None = None) -> None:
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
        if picture:
            screenshot(self.page, picture)
        # the frontend library's own finding on radios that reveal more questions is left out, as on every page
        # a browser test loads (tests/support/accessibility.py says why)
        serious = [v for v in map(without_upstream_radios, run_axe(self.page))
                   if v["nodes"] and v.get("impact") in FAILING_IMPACTS]
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
    with demo_data() as s:
        draft = s.scalars(select(Application.id).where(Application.state == "draft")).first()
    for username, paths in ROLE_PAGES.items():
        paths = [p.format(draft=draft) for p in paths]
        context = _context(browser, WIDTHS["desktop"])
        page = context.new_page()
        sign_in(page, live_server.url, username)
        for name, width in WIDTHS.items():
            page.set_viewport_size({"width": width, "height": 900})
            checker = PageProblems(page, f"{username} ({name})")
            for path in paths:
                # each role's home at desktop width is the picture in that role's guide in docs/
                picture = f"role-home-{username}" if path == "/home" and name == "desktop" else None
                checker.visit(live_server.url, path, width, picture)
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


def test_every_browser_test_page_is_checked_once_per_address_and_fails_at_the_end(browser: Browser) -> None:
    """The hook the shared `page` fixture attaches: axe runs on each page load, the test fails at teardown."""
    context = _context(browser, WIDTHS["desktop"])
    axe = AxeOnEveryPage(context)
    bad = ('<!DOCTYPE html><html lang="en"><head><title>t</title></head><body><main>'
           '<form><input id="unlabelled" type="text"></form></main></body></html>')
    good = bad.replace('<input id="unlabelled"', '<label for="named">Name</label><input id="named"')
    context.route("http://gateway.test/**", lambda route: route.fulfill(
        status=200, content_type="text/html", body=bad if "bad" in route.request.url else good))
    page = context.new_page()
    page.goto("http://gateway.test/good")
    axe.finish(page)  # nothing found
    page.goto("http://gateway.test/bad")
    page.evaluate("() => window.__sdeAxeDone")  # a test that moves on at once may cut a check short
    page.goto("http://gateway.test/good")
    page.goto("http://gateway.test/hub/bad")  # JupyterHub's pages are not ours to check
    with pytest.raises(AssertionError) as failure:
        axe.finish(page)
    assert "/bad:" in str(failure.value) and "label (critical)" in str(failure.value)
    assert "/hub/bad" not in str(failure.value)
    assert axe.checked == {"/good", "/bad"}
    context.close()
