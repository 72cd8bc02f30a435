"""Every `sde` command the README and docs/operators.md document, run the way they show it: the venv's `sde` as a
subprocess, on fresh PostgreSQL databases. A command added to the docs without a run here fails the last test."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import click
import psycopg
import pytest

from gateway.cli import main
from tests.support import databases
from tests.support.sandbox import REPO, Sandbox, free_port, libpq_url, sandbox

pytestmark = [pytest.mark.skipif(databases.postgres_server_url() is None,
                                 reason="needs PostgreSQL (SDE_TEST_DATABASE_URL): the documented production path"),
              # the last test checks what the others ran in this process: one xdist worker runs them all, in order
              pytest.mark.xdist_group("documented_commands")]

SDE = str(Path(os.environ.get("VIRTUAL_ENV") or REPO / ".venv") / "bin" / "sde")
DOCUMENTS = (REPO / "README.md", REPO / "docs" / "operators.md")
# Documented commands run as a subprocess by another test, named here so the coverage test can check it.
ELSEWHERE = {
    "serve": "tests/integration/test_serve_production.py and tests/functional/test_first_hour_browser.py",
    "receipt verify": "tests/integration/test_receipts.py and tests/integration/test_demo_data.py",
    "user enrolment-code": "tests/functional/test_first_hour_browser.py (a subprocess, as the first administrator "
                           "has no email address) and tests/integration/test_enrolment_link.py",
}
RAN: set[str] = set()


def command_path(words: list[str]) -> str:
    """The sub-command a documented line names: 'token create alice --days 3' -> 'token create'."""
    group: click.Command = main
    path = []
    for word in words:
        if not isinstance(group, click.Group) or word not in group.commands:
            break
        group = group.commands[word]
        path.append(word)
    return " ".join(path)


def documented_commands() -> set[str]:
    found = set()
    for document in DOCUMENTS:
        for match in re.finditer(r"(?:^|[\s`/])sde ((?:[a-z][a-z-]* ?)+)", document.read_text()):
            path = command_path(match.group(1).split())
            if path:
                found.add(path)
    return found


def sde(box: Sandbox, *args: str, stdin: str | None = None, expect: int = 0) -> str:
    result = subprocess.run([SDE, *args], env=box.env, cwd=box.workdir, input=stdin, capture_output=True,
                            text=True, timeout=600, start_new_session=True)
    assert result.returncode == expect, f"sde {' '.join(args)}: {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    RAN.add(command_path(list(args)))
    return result.stdout


def sql(box: Sandbox, query: str) -> list[tuple]:
    with psycopg.connect(libpq_url(box.database_url)) as conn:
        return list(conn.execute(query))  # type: ignore[arg-type]


@pytest.fixture
def server_url() -> str:
    url = databases.postgres_server_url()
    assert url is not None
    if not Path(SDE).exists():
        pytest.fail(f"{SDE} is missing: run `make setup`")
    return url


@pytest.fixture
def box(server_url: str) -> Iterator[Sandbox]:
    with sandbox("sde_docs", server_url) as created:
        yield created


def test_the_operators_commands_on_a_fresh_database(box: Sandbox, server_url: str, tmp_path: Path) -> None:
    assert "Database ready" in sde(box, "init")
    assert "Database ready" in sde(box, "init")  # again after an upgrade: nothing to do
    assert "0 errors" in sde(box, "check")
    typed = "tall-cedar-river-88\n" * 2  # at the prompt, twice
    assert "Created alice with roles: admin" in sde(box, "user", "create", "alice", "--name", "Alice Admin",
                                                    "--role", "admin", stdin=typed)
    assert "Created bob" in sde(box, "user", "create", "bob", "--name", "Bob B", "--role", "researcher",
                                "--password-stdin", stdin="green-kettle-spoon-61\n")
    sde(box, "user", "create", "carol", "--name", "Carol C", "--password", "x", "--password-stdin", stdin="y\n",
        expect=1)  # both: refused
    # bob forgot his: a temporary one, typed at the prompt twice; he must replace it when he next signs in
    temporary = "amber-willow-socket-35\n" * 2
    assert "Temporary password set for bob" in sde(box, "user", "set-password", "bob", stdin=temporary)
    reset = "SELECT actor_label LIKE 'cli:%' FROM audit_events WHERE action = 'user.password_reset'"
    assert sql(box, reset) == [(True,)]

    token = sde(box, "token", "create", "alice", "--days", "7", "--scope", "manage_users", "--read-only").strip()
    assert token.startswith("sde_")
    listed = sde(box, "token", "list", "alice")
    token_id = listed.split("\t", 1)[0]
    assert "read only; manage_users" in listed
    assert f"Revoked token {token_id}" in sde(box, "token", "revoke", token_id, "--by", "alice")

    assert "Expiry reminders queued" in sde(box, "accreditation", "remind")
    assert "Delivered" in sde(box, "worker", "--once")
    assert "Version" in sde(box, "tariff", "show")
    sde(box, "invoices", "run", "--month", "2026-01")
    sde(box, "docs", "diagrams", "--check")
    assert "Wrote 150 patients" in sde(box, "synth", "--patients", "150", "--seed", "3", "--out", str(tmp_path / "s"))
    assert "no project" in subprocess.run([SDE, "extract", "build", "P-2000-0001"], env=box.env, capture_output=True,
                                          text=True, timeout=300).stderr

    backup = tmp_path / "site.tar.gz"
    assert "Backed up" in sde(box, "backup", str(backup))
    assert "audit chain intact" in sde(box, "audit", "verify")
    anchors = tmp_path / "audit-anchors"
    anchors.write_text(sde(box, "audit", "head"))
    assert re.fullmatch(r"\d+ [0-9a-f]{64}\n", anchors.read_text())
    assert "against 1 anchors" in sde(box, "audit", "verify", "--anchors", str(anchors))
    assert sql(box, "SELECT count(*) FROM audit_events WHERE action = 'instance.backed_up'") == [(1,)]

    with sandbox("sde_docs_restore", server_url) as elsewhere:  # the backup restored into another, empty database
        restored = sde(elsewhere, "restore", str(backup))
        assert "Restored" in restored and "audit chain intact" in restored
        assert sql(elsewhere, "SELECT username FROM users ORDER BY username") == [("alice",), ("bob",)]

    with sandbox("sde_docs_copy", server_url) as target:  # `sde db copy` into an empty database
        copied = sde(box, "db", "copy", "--to", target.database_url)
        assert "Verified on the target" in copied
        assert sql(target, "SELECT username FROM users ORDER BY username") == [("alice",), ("bob",)]


def test_the_demo_and_an_extract_build(box: Sandbox) -> None:
    assert "Demo data created" in sde(box, "demo", "--seed-only")
    reference = sql(box, "SELECT reference FROM projects ORDER BY reference LIMIT 1")[0][0]
    built = sde(box, "extract", "build", reference)
    assert re.search(r"Version \d+: \d+ rows", built), built


@pytest.mark.skipif(os.geteuid() != 0, reason="the hub starts as root")
def test_sde_hub_runs_from_the_gateway_settings_and_sde_check_sees_it(box: Sandbox) -> None:
    """`sde hub` with the plain local spawner on ports, bridge, subnet and uids of its own; `sde check` then finds
    the hub and its token accepted."""
    hub_port, proxy_port, api_port = free_port(), free_port(), free_port()
    suffix = secrets.token_hex(3)
    config = {"workspaces": {
        "hub_url": f"http://127.0.0.1:{hub_port}", "proxy_api_port": proxy_port, "hub_api_port": api_port,
        "spawner": "local", "bridge": f"sdd{suffix}", "subnet": f"10.{200 + int(suffix[:2], 16) % 50}."
        f"{int(suffix[2:4], 16)}.0/29", "uid_base": 3_000_000 + int(suffix, 16) % 1000 * 100, "uid_count": 100}}
    (box.workdir / "sde.json").write_text(json.dumps(config))
    box.env["SDE_CONFIG"] = str(box.workdir / "sde.json")
    sde(box, "init")
    hub = box.start([SDE, "hub"], "hub.log")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert hub.poll() is None, box.log("hub.log")[-3000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{hub_port}/hub/api/", timeout=2):
                break
        except OSError:
            time.sleep(0.5)
    else:
        raise AssertionError("the hub did not answer: " + box.log("hub.log")[-3000:])
    RAN.add("hub")
    checked = sde(box, "check")
    assert "hub-" not in checked, checked
    os.killpg(hub.pid, signal.SIGTERM)
    hub.wait(timeout=60)


def test_every_documented_command_was_run() -> None:
    """Runs last in this file: each command the README and docs/operators.md show ran above (or in ELSEWHERE)."""
    documented = documented_commands()
    assert {"init", "user create", "serve", "check", "backup", "restore", "db copy"} <= documented
    not_run = sorted(documented - RAN - set(ELSEWHERE))
    assert not not_run, f"documented but never run as a subprocess: {not_run}"
