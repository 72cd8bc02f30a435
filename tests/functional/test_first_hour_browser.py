"""An operator's first hour, as docs/operators.md tells it: every step a subprocess of the venv's `sde` on a fresh
PostgreSQL database in production mode, then the first administrator signs in in Chromium, sets up a second
factor and their own password, adds an organisation and an accreditation officer."""

from __future__ import annotations

import os
import pty
import re
import secrets
import select
import signal
import subprocess
from pathlib import Path

import pyotp
import pytest
from playwright.sync_api import Page, expect

from tests.functional.conftest import screenshot
from tests.support import databases
from tests.support.sandbox import HOST, REPO, Sandbox, free_port, sandbox, wait_http

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(databases.postgres_server_url() is None,
                                 reason="needs PostgreSQL (SDE_TEST_DATABASE_URL): production refuses SQLite")]

SDE = str(Path(os.environ.get("VIRTUAL_ENV") or REPO / ".venv") / "bin" / "sde")
INITIAL = "bright-harbour-42-initial"  # typed by the operator at the prompt, replaced at first sign-in
OWN = "quiet-lantern-orchard-97"


def sde(box: Sandbox, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`sde ARGS` as the docs show it: the venv's console script, in its own session (no terminal: a password
    prompt reads standard input)."""
    return subprocess.run([SDE, *args], env=box.env, cwd=box.workdir, input=stdin, capture_output=True, text=True,
                          timeout=300, start_new_session=True)


def sde_at_a_terminal(box: Sandbox, *args: str, answers: list[str]) -> tuple[int, str]:
    """`sde ARGS` on a pseudo-terminal, typing each answer after a prompt; returns the exit code and the screen."""
    master, terminal = pty.openpty()
    child = subprocess.Popen([SDE, *args], env=box.env, cwd=box.workdir, stdin=terminal, stdout=terminal,
                             stderr=terminal, start_new_session=True)
    os.close(terminal)
    screen = b""
    pending = list(answers)
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 120)
            if not ready:
                raise AssertionError(f"no prompt or end within 120 s: {screen!r}")
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the command ended and closed the terminal
                break
            if not chunk:
                break
            screen += chunk
            # click writes "Initial password:", getpass turns echo off, then writes the last " ": answer after it
            if pending and screen.endswith(b": "):
                os.write(master, pending.pop(0).encode() + b"\n")
    finally:
        os.close(master)
    return child.wait(timeout=60), screen.decode(errors="replace")


def test_first_hour_from_an_empty_database_to_an_accreditation_officer(page: Page) -> None:
    if not Path(SDE).exists():
        pytest.fail(f"{SDE} is missing: run `make setup`")
    server_url = databases.postgres_server_url()
    assert server_url is not None
    with sandbox("sde_first_hour", server_url) as box:
        box.env.update(SDE_ENV="production", SDE_SECRET_KEY=secrets.token_urlsafe(48))
        config = box.workdir / "sde.yaml"
        config.write_text("security:\n  https: true\n")
        config.chmod(0o600)
        box.env["SDE_CONFIG"] = str(config)

        before = sde(box, "check")
        assert before.returncode == 1 and "ERROR   database-schema: the database has no tables yet" in before.stdout
        init = sde(box, "init")
        assert init.returncode == 0 and "Database ready" in init.stdout, init.stderr
        code, screen = sde_at_a_terminal(box, "user", "create", "alice", "--name", "Alice Admin", "--role", "admin",
                                         answers=[INITIAL, INITIAL])  # typed at the prompt, twice
        assert code == 0, screen
        assert "Initial password:" in screen and "Repeat for confirmation:" in screen
        assert "Created alice with roles: admin" in screen and INITIAL not in screen  # not echoed
        scripted = sde(box, "user", "create", "bob", "--name", "Bob Scripted", "--password-stdin",
                       stdin=f"{secrets.token_urlsafe(16)}\n")
        assert scripted.returncode == 0, scripted.stderr

        check = sde(box, "check")
        assert check.returncode == 0, check.stdout
        assert "0 errors" in check.stdout and "WARNING no-recent-backup" in check.stdout
        backed_up = sde(box, "backup", str(box.workdir / "first-backup.tar.gz"))
        assert backed_up.returncode == 0, backed_up.stderr
        assert "no-recent-backup" not in sde(box, "check").stdout

        port = free_port()
        server = box.start([SDE, "serve", "--host", HOST, "--port", str(port), "--workers", "2"], "gateway.log")
        base = f"http://{HOST}:{port}"
        wait_http(f"{base}/api/v1/openapi.json", server)
        assert re.search(rf"Listening at: {re.escape(base)} \(\d+\)", box.log())

        # Alice signs in: a second factor first (production), then her own password. Her account has no email
        # address for the set-up link, so the operator issues a one-time set-up code on the server.
        page.goto(f"{base}/login")
        page.get_by_label("Username").fill("alice")
        page.get_by_label("Password").fill(INITIAL)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_test_id("no-email")).to_contain_text("Contact the service desk")
        issued = sde(box, "user", "enrolment-code", "alice")
        assert issued.returncode == 0, issued.stderr
        setup = re.search(r"Set-up code for alice: ([2-9A-Z-]{19})", issued.stdout)
        assert setup, issued.stdout
        page.get_by_label("Set-up code").fill(setup.group(1))
        page.get_by_role("button", name="Continue").click()
        expect(page.get_by_role("heading", name="Set up your authenticator app")).to_be_visible()
        secret = page.get_by_test_id("totp-secret").inner_text().strip()
        page.get_by_label("Code").fill(pyotp.TOTP(secret).now())
        page.get_by_role("button", name="Confirm").click()
        page.get_by_role("link", name="I have saved my codes").click()
        expect(page.get_by_role("heading", name="Choose your own password")).to_be_visible()
        page.get_by_label("New password", exact=True).fill(OWN)
        page.get_by_label("New password again").fill(OWN)
        page.get_by_role("button", name="Save password and continue").click()
        expect(page.get_by_role("heading", name="Welcome, Alice Admin")).to_be_visible()

        # The first organisation.
        page.goto(f"{base}/admin/organisations/new")
        page.get_by_label("Name").fill("University College London")
        page.get_by_label("University or research institute").check()
        page.get_by_role("button", name="Add organisation").click()
        expect(page.get_by_text("Organisation 'University College London' added.")).to_be_visible()

        # The accreditation officer, who will verify researchers.
        page.goto(f"{base}/admin/users/new")
        page.get_by_label("Username").fill("olu")
        page.get_by_label("Full name").fill("Olu Accreditor")
        page.get_by_label("Email address").fill("olu@example.org")
        page.get_by_label("Initial password").fill("amber-meadow-31-start")
        page.get_by_label("Accreditation officer").check()
        page.get_by_role("button", name="Create account").click()
        expect(page.get_by_text("Account 'olu' created.")).to_be_visible()
        screenshot(page, "first-hour-accreditation-officer")
        page.get_by_role("button", name="Sign out", exact=True).click()

        verified = sde(box, "audit", "verify")
        assert verified.returncode == 0 and "audit chain intact" in verified.stdout
        os.killpg(server.pid, signal.SIGINT)  # Ctrl+C
        server.wait(timeout=30)
        log = box.log()
        assert "SIGKILL" not in log and "Traceback" not in log
        assert "POST /admin/users/new" in log  # the access log shows what was done
