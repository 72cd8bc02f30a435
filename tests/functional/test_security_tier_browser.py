"""The security tier as a researcher meets it in Chromium (issue 13).

Two projects of one researcher, one standard and one high (chosen by the DAC chair at approval). In each, the
researcher opens the workspace from the project page, runs a cell that prints a row, selects the output and presses
Ctrl+C; the clipboard is read back from another tab (a gateway page, clipboard-read granted):
- standard: the row is on the clipboard, a long paste goes into a cell, and the Launcher offers a Terminal;
- high: the clipboard still holds what was there before (nothing of the output), JupyterLab says why, the
  asynchronous clipboard API refuses to write (what JupyterLab's own copy commands use), text copied inside a
  frame in an output stays put too (a frame the page cannot reach takes no pointer), a paste over the limit
  does not reach the cell while a short one does, and the Launcher has no Terminal.

Real components throughout: JupyterHub with the sandboxing spawner, a real single-user server built with the
JupyterLab extension, the live gateway and Chromium.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy.orm import Session, sessionmaker

from gateway import demo
from gateway.app import create_app
from gateway.config import Settings
from gateway.db import unit_of_work
from gateway.extracts import service as extracts
from gateway.workspaces.entitlement import current_extract
from gateway.workspaces.service import hub_username
from projects.models import Project
from tests.functional.conftest import screenshot
from tests.functional.test_sign_in_browser import sign_in
from tests.support import factories as f
from tests.support.browser import LiveServer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "infra" / "jupyterhub"))
from devhub import DevHub, default_singleuser_prefix, missing_facilities

MISSING = missing_facilities(default_singleuser_prefix())
pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(bool(MISSING), reason="workspaces need: " + "; ".join(MISSING))]

ROW = "SECRET-ROW-4242"
SENTINEL = "clipboard-before-the-copy"
BIG = "p" * 2500 + "BIG-PASTE-END"
SMALL = "small-paste-ok"
COPY_REFUSED = "Copying out of this workspace is turned off"
PASTE_REFUSED = "Paste refused"


def projects_with_extracts(settings: Settings, factory: sessionmaker[Session]) -> dict[str, int]:
    with unit_of_work(factory) as s:
        demo.seed_users(s, "test")
        f.accredit(s, "researcher")
    ids = {"standard": f.approved_project(factory, title="Standard tier study"),
           "high": f.approved_project(factory, title="High tier study", security_tier="high")}
    extracts.run_queued_builds(settings, factory)
    for project_id in ids.values():
        with factory() as s:
            held = current_extract(settings.extracts_root, s.get(Project, project_id)) is None
        if held:
            f.release_extract(settings, factory, project_id, 1)
    return ids


def clipboard(other: Page) -> str:
    other.bring_to_front()
    return str(other.evaluate("navigator.clipboard.readText()"))


def set_clipboard(other: Page, text: str) -> None:
    other.bring_to_front()
    assert other.evaluate("t => navigator.clipboard.writeText(t).then(() => 'ok')", text) == "ok"


def open_jupyterlab(page: Page, gateway: LiveServer, hub: DevHub, project_id: int, hub_user: str,
                    server_name: str) -> None:
    page.bring_to_front()
    page.goto(f"{gateway.url}/projects/{project_id}")
    page.get_by_role("button", name="Open workspace").click()
    page.wait_for_url(f"{hub.url}/user/{hub_user}/{server_name}/**", timeout=90_000)
    expect(page.locator("#jp-main-dock-panel")).to_be_visible(timeout=60_000)
    # JupyterLab lands on welcome.ipynb; a reset layout shows the Launcher, which this test is about
    page.goto(page.url.split("/lab")[0] + "/lab?reset")
    expect(page.locator("#jp-main-dock-panel")).to_be_visible(timeout=60_000)


def run_a_cell(page: Page) -> None:
    page.get_by_text("Python 3 (ipykernel)").first.click()  # a new notebook from the launcher
    expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible(timeout=90_000)
    page.locator(".jp-Notebook .jp-Cell .cm-content").first.click()
    page.keyboard.type('print("SECRET-" + "ROW-4242")')  # the source never holds the printed row
    page.keyboard.press("Shift+Enter")
    expect(page.locator(".jp-OutputArea-output").first).to_have_text(ROW, timeout=90_000)


def run_code(page: Page, code: str) -> None:
    """Type code into the notebook's last cell and run it."""
    page.bring_to_front()
    page.locator(".jp-Notebook .jp-Cell .cm-content").last.click()
    page.keyboard.type(code)
    page.keyboard.press("Shift+Enter")


def copy_the_output(page: Page) -> None:
    page.bring_to_front()
    page.locator(".jp-OutputArea-output pre").first.click(click_count=3)  # select the output's text
    assert ROW in page.evaluate("String(window.getSelection())")
    page.keyboard.press("Control+C")


def paste_into_new_cell(page: Page, other: Page, text: str) -> str:
    set_clipboard(other, text)
    page.bring_to_front()
    editor = page.locator(".jp-Notebook .jp-Cell .cm-content").last
    editor.click()
    page.keyboard.press("Control+V")
    page.wait_for_timeout(500)
    return str(editor.inner_text())


def terminal_cards(page: Page) -> int:
    """Terminal cards in the Launcher JupyterLab opens with."""
    launcher = page.locator(".jp-Launcher-body").first
    expect(launcher.get_by_text("Python 3 (ipykernel)").first).to_be_visible(timeout=30_000)
    return launcher.locator(".jp-LauncherCard-label").filter(has_text=re.compile(r"^\s*Terminal\s*$")).count()


def test_high_tier_blocks_copy_out_and_large_pastes_and_standard_does_not(
        page: Page, gateway: LiveServer, hub: DevHub, workspace_settings: Settings) -> None:
    factory = create_app(workspace_settings).extensions["sde_sessionmaker"]
    ids = projects_with_extracts(workspace_settings, factory)
    with factory() as s:
        names = {tier: s.get(Project, pid).reference.lower() for tier, pid in ids.items()}
        hub_user = hub_username(f.user(s, "researcher"))
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    sign_in(page, gateway, "researcher", "demo-password")
    other = page.context.new_page()  # a gateway tab: where the clipboard is set and read back
    other.goto(f"{gateway.url}/register")

    # --- standard: copying and pasting work as in any JupyterLab, and there are terminals
    page.goto(f"{gateway.url}/projects/{ids['standard']}")
    expect(page.get_by_test_id("security-tier")).to_have_text("Standard")
    open_jupyterlab(page, gateway, hub, ids["standard"], hub_user, names["standard"])
    expect(page.locator("body")).to_have_attribute("data-londonsde-security-tier", "standard")
    assert terminal_cards(page) == 1
    run_a_cell(page)
    set_clipboard(other, SENTINEL)
    copy_the_output(page)
    assert ROW in clipboard(other)
    assert BIG in paste_into_new_cell(page, other, BIG)

    # --- high: nothing leaves through the clipboard, only small pastes come in, no terminals
    page.goto(f"{gateway.url}/projects/{ids['high']}")
    expect(page.get_by_test_id("security-tier")).to_have_text("High: no copy out, no terminals")
    expect(page.get_by_test_id("security-tier-note")).to_contain_text("no terminals")
    open_jupyterlab(page, gateway, hub, ids["high"], hub_user, names["high"])
    expect(page.locator("body")).to_have_attribute("data-londonsde-security-tier", "high", timeout=30_000)
    assert terminal_cards(page) == 0
    screenshot(page, "workspace-high-tier-launcher")
    run_a_cell(page)
    set_clipboard(other, SENTINEL)
    copy_the_output(page)
    expect(page.get_by_text(COPY_REFUSED).first).to_be_visible(timeout=10_000)
    page.wait_for_timeout(1000)  # the notice slides in
    screenshot(page, "workspace-high-tier-copy-refused")
    held = clipboard(other)
    assert ROW not in held and held in (SENTINEL, "")
    # cut, and the asynchronous clipboard API that JupyterLab's copy commands use, are refused too
    page.bring_to_front()
    refused = page.evaluate("t => navigator.clipboard.writeText(t).then(() => 'written', e => e.name)", ROW)
    assert refused == "NotAllowedError"
    assert ROW not in clipboard(other)
    # a frame in an output is no way round: text selected inside it and copied stays in the workspace
    run_code(page, "from IPython.display import HTML; "
                   "HTML('<iframe id=\"leak\" srcdoc=\"<p id=x>SECRET-' + 'FRAME-77</p>\"></iframe>')")
    frame = page.frame_locator("iframe#leak")
    expect(frame.locator("#x")).to_have_text("SECRET-FRAME-77", timeout=30_000)
    set_clipboard(other, SENTINEL)
    page.bring_to_front()
    frame.locator("#x").click(click_count=3)
    page.keyboard.press("Control+C")
    assert "SECRET-FRAME-77" not in clipboard(other)
    # a frame the page cannot reach into (sandboxed: another origin) cannot be clicked or tabbed into
    run_code(page, "HTML('<iframe id=\"opaque\" sandbox srcdoc=\"<p>SECRET-' + 'OPAQUE-78</p>\"></iframe>')")
    opaque = page.locator("iframe#opaque")
    expect(opaque).to_have_css("pointer-events", "none", timeout=30_000)
    expect(opaque).to_have_attribute("tabindex", "-1")
    # a paste over the limit never reaches the cell; a short one does
    assert "BIG-PASTE-END" not in paste_into_new_cell(page, other, BIG)
    expect(page.get_by_text(PASTE_REFUSED).first).to_be_visible(timeout=10_000)
    assert SMALL in paste_into_new_cell(page, other, SMALL)
