"""`sde serve` as a subprocess, the way an operator starts it: it refuses an unsafe production configuration,
starts once it is fixed (or with an audited override), names the address it listens on and stops cleanly."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator

import psycopg
import pytest

from tests.support import databases
from tests.support.sandbox import HOST, SDE, Sandbox, free_port, libpq_url, sandbox, wait_http

pytestmark = pytest.mark.skipif(databases.postgres_server_url() is None,
                                reason="needs PostgreSQL (SDE_TEST_DATABASE_URL): production refuses SQLite")


@pytest.fixture
def box() -> Iterator[Sandbox]:
    server = databases.postgres_server_url()
    assert server is not None
    with sandbox("sde_serve", server) as created:
        created.env.update(SDE_ENV="production", SDE_SECRET_KEY=secrets.token_urlsafe(48))
        created.run("init")
        yield created


def start(box: Sandbox, *extra: str, log: str = "gateway.log") -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    child = box.start([*SDE, "serve", "--host", HOST, "--port", str(port), "--workers", "2", *extra], log)
    return child, f"http://{HOST}:{port}"


def audit_actions(box: Sandbox) -> list[tuple[str, dict]]:
    with psycopg.connect(libpq_url(box.database_url)) as conn:
        return [(row[0], row[1]) for row in conn.execute("SELECT action, details FROM audit_events ORDER BY seq")]


def test_serve_refuses_an_unsafe_production_configuration_then_starts_once_it_is_fixed(box: Sandbox) -> None:
    box.env["SDE_SECRET_KEY"] = "changeme"
    refused, _ = start(box, log="refused.log")
    assert refused.wait(timeout=60) == 1
    log = box.log("refused.log")
    assert "ERROR   secret-key-weak" in log and "ERROR   https-off" in log
    assert "refusing to serve in production while `sde check` reports errors" in log
    assert "Listening at" not in log and "Booting worker" not in log

    check = box.run("check", check=False)  # `sde check` says the same, with the fixes, and fails
    assert check.returncode == 1
    assert "secret-key-weak" in check.stdout and "Fix: set SDE_SECRET_KEY" in check.stdout

    box.env["SDE_SECRET_KEY"] = secrets.token_urlsafe(48)
    (box.workdir / "config.yaml").write_text("security:\n  https: true\n")
    box.env["SDE_CONFIG"] = str(box.workdir / "config.yaml")
    check = box.run("check", check=False)
    assert check.returncode == 0, check.stdout
    assert "0 errors" in check.stdout and "WARNING no-recent-backup" in check.stdout

    server, base = start(box)
    wait_http(f"{base}/api/v1/openapi.json", server)
    with urllib.request.urlopen(f"{base}/login", timeout=10) as page:  # noqa: S310 - loopback
        assert page.status == 200
    assert "sde check: 0 errors" in box.log()
    assert not [a for a, _ in audit_actions(box) if a == "serve.check_errors_overridden"]


def test_the_override_starts_an_unsafe_production_server_and_is_audited(box: Sandbox) -> None:
    blank, _ = start(box, "--override-check-errors", "   ", log="blank.log")
    assert blank.wait(timeout=60) == 1  # a reason made of spaces is no reason

    server, base = start(box, "--override-check-errors", "TLS certificate renewal, proxy back at 18:00")
    wait_http(f"{base}/api/v1/openapi.json", server)
    assert "Serving despite 1 errors: TLS certificate renewal" in box.log()
    overridden = [d for a, d in audit_actions(box) if a == "serve.check_errors_overridden"]
    assert overridden == [{"reason": "TLS certificate renewal, proxy back at 18:00", "errors": ["https-off"],
                           "host": HOST, "port": int(base.rsplit(":", 1)[1])}]


def test_serve_names_its_address_and_ctrl_c_stops_it_at_once_without_sigkill(box: Sandbox) -> None:
    """Ctrl+C while a request waits on a database lock: before, that worker outlived the graceful timeout and
    gunicorn logged "Worker (pid:...) was sent SIGKILL! Perhaps out of memory?"."""
    (box.workdir / "config.yaml").write_text("security:\n  https: true\n")
    box.env["SDE_CONFIG"] = str(box.workdir / "config.yaml")
    server, base = start(box)
    wait_http(f"{base}/api/v1/openapi.json", server)
    assert re.search(rf"Listening at: {re.escape(base)} \(\d+\)", box.log()), box.log()

    answers: list[str] = []

    def ask() -> None:
        request = urllib.request.Request(f"{base}/api/v1/me",  # noqa: S310 - loopback
                                         headers={"Authorization": "Bearer sde_nothing"})
        try:
            urllib.request.urlopen(request, timeout=60)  # noqa: S310 - loopback
        except Exception as exc:
            answers.append(type(exc).__name__)

    with psycopg.connect(libpq_url(box.database_url)) as blocker:
        blocker.execute("LOCK TABLE api_tokens IN ACCESS EXCLUSIVE MODE")  # the token lookup now waits
        callers = [threading.Thread(target=ask, daemon=True) for _ in range(3)]
        for caller in callers:
            caller.start()
        time.sleep(1.5)
        started = time.monotonic()
        os.killpg(server.pid, signal.SIGINT)  # what Ctrl+C in the terminal does: the whole process group
        server.wait(timeout=30)
        took = time.monotonic() - started
        blocker.rollback()
    log = box.log()
    assert "SIGKILL" not in log and "Perhaps out of memory" not in log, log[-3000:]
    assert "Traceback" not in log
    assert took < 8, f"Ctrl+C took {took:.1f} s"
    assert "Shutting down: Master" in log
