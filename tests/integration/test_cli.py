"""The `sde` command line against a real database."""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import create_engine, inspect

from gateway.cli import main


def run(url: str, *args: str, env: dict[str, str] | None = None, input: str | None = None):
    """Invoke `sde` against this database, with an instance folder of the test's own (keys, source data)."""
    instance = Path(tempfile.mkdtemp(prefix="sde-cli-"))
    return CliRunner().invoke(main, list(args), input=input, env={
        "SDE_DATABASE_URL": url, "SDE_INSTANCE_DIR": str(instance), **(env or {})})


def test_init_creates_every_table_and_is_idempotent(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    assert run(url, "init").exit_code == 0
    assert run(url, "init").exit_code == 0
    tables = set(inspect(create_engine(url)).get_table_names())
    assert {"users", "user_roles", "audit_events", "audit_head", "api_tokens", "alembic_version"} <= tables


def test_demo_seed_only_is_idempotent_and_refuses_production(database_url: str) -> None:
    first = run(database_url, "demo", "--seed-only")
    assert first.exit_code == 0, first.output
    assert "researcher, researcher2" in first.output and "LSDE-" in first.output
    again = run(database_url, "demo", "--seed-only")
    assert again.exit_code == 0 and "none (already there)" in again.output
    production = run(database_url, "demo", "--seed-only", env={"SDE_ENV": "production", "SDE_SECRET_KEY": "k"})
    assert production.exit_code != 0 and "production" in production.output


def test_demo_refuses_a_database_with_real_users(database_url: str) -> None:
    created = run(database_url, "user", "create", "realperson", "--name", "Real Person", "--role", "researcher",
                  "--password", "a-long-real-password")
    assert created.exit_code == 0, created.output
    refused = run(database_url, "demo", "--seed-only")
    assert refused.exit_code != 0
    assert "real (non-demo) accounts: realperson" in refused.output


def test_user_create_reports_problems_clearly(database_url: str) -> None:
    bad = run(database_url, "user", "create", "Bad Name!", "--name", "", "--password", "short")
    assert bad.exit_code != 0
    assert "username" in bad.output and "password" in bad.output
    unknown_role = run(database_url, "user", "create", "someone", "--name", "S", "--role", "wizard",
                       "--password", "a-long-real-password")
    assert unknown_role.exit_code != 0 and "unknown role" in unknown_role.output


def test_user_set_password_sets_a_temporary_one_for_someone_who_cannot_sign_in(database_url: str) -> None:
    """The server's way back in for the only administrator: the same rules and record as the account page's."""
    from gateway.db import make_engine, make_session_factory
    from gateway.identity.accounts import find_user
    from gateway.identity.passwords import verify_password
    from gateway.models import AuditEvent

    assert run(database_url, "user", "create", "onlyadmin", "--name", "Only Admin", "--role", "admin",
               "--password", "a-long-real-password").exit_code == 0
    weak = run(database_url, "user", "set-password", "onlyadmin", "--password-stdin", input="short\n")
    assert weak.exit_code != 0 and "12 characters" in weak.output
    chosen = "copper-lantern-meadow-72\n"
    nobody = run(database_url, "user", "set-password", "nobody", "--password-stdin", input=chosen)
    assert nobody.exit_code != 0 and "no account is called 'nobody'" in nobody.output
    done = run(database_url, "user", "set-password", "onlyadmin", "--password-stdin", input=chosen)
    assert done.exit_code == 0 and "sessions ended: 0" in done.output, done.output
    engine = make_engine(database_url)
    with make_session_factory(engine)() as s:
        person = find_user(s, "onlyadmin")
        assert person is not None and person.must_change_password and person.password_hash is not None
        assert verify_password(person.password_hash, "copper-lantern-meadow-72")
        [event] = s.query(AuditEvent).filter(AuditEvent.action == "user.password_reset").all()
        assert event.actor_label.startswith("cli") and event.object_id == str(person.id)
    engine.dispose()


def test_the_audit_log_names_the_account_that_ran_a_command_not_the_name_in_its_environment(
        database_url: str, tmp_path: Path, monkeypatch) -> None:
    """USER and LOGNAME are the caller's to set: a command run with another person's name in them is still recorded
    as the account it ran as; where the kernel keeps no login, a sudo caller is added beside it, never instead of
    it."""
    import os
    import pwd

    from gateway.identity import operator

    monkeypatch.setattr(operator, "LOGINUID", tmp_path / "no-login-recorded")

    from sqlalchemy import select

    from gateway.db import make_engine, make_session_factory
    from gateway.models import AuditEvent

    account = pwd.getpwuid(os.getuid()).pw_name
    forged = {"USER": "alice", "LOGNAME": "alice", "USERNAME": "alice", "LNAME": "alice"}
    assert run(database_url, "user", "create", "first", "--name", "First Admin", "--role", "admin",
               "--password", "a-long-real-password", env={**forged, "SUDO_USER": ""}).exit_code == 0
    assert run(database_url, "user", "create", "second", "--name", "Second Admin", "--role", "admin",
               "--password", "a-long-real-password", env={**forged, "SUDO_USER": "bob"}).exit_code == 0
    engine = make_engine(database_url)
    with make_session_factory(engine)() as s:
        labels = list(s.scalars(select(AuditEvent.actor_label).where(AuditEvent.action == "user.created")
                                .order_by(AuditEvent.seq)))
    engine.dispose()
    assert labels == [f"cli:{account}", f"cli:{account} (sudo from bob)"]


def _actor_labels(database_url: str) -> list[str]:
    from sqlalchemy import select

    from gateway.db import make_engine, make_session_factory
    from gateway.models import AuditEvent

    engine = make_engine(database_url)
    with make_session_factory(engine)() as s:
        labels = list(s.scalars(select(AuditEvent.actor_label).where(AuditEvent.action == "user.created")
                                .order_by(AuditEvent.seq)))
    engine.dispose()
    return labels


def test_the_audit_log_names_the_login_kept_by_the_kernel_not_a_sudo_user_anyone_can_set(
        database_url: str, tmp_path: Path, monkeypatch) -> None:
    """An operator in a shell as the service account (``sudo -iu sde``) can set SUDO_USER to a colleague's name;
    the login the kernel keeps for the session (pam_loginuid) survives sudo and su and only root can change it, so
    where there is one it names the person, and SUDO_USER is not believed (found in review: it was)."""
    import os
    import pwd

    from gateway.identity import operator

    account, other = pwd.getpwuid(os.getuid()).pw_name, pwd.getpwuid(65534).pw_name
    loginuid = tmp_path / "loginuid"
    monkeypatch.setattr(operator, "LOGINUID", loginuid)
    loginuid.write_text("65534")
    assert run(database_url, "user", "create", "first", "--name", "First Admin", "--role", "admin",
               "--password", "a-long-real-password", env={"SUDO_USER": "carol"}).exit_code == 0
    loginuid.write_text(str(os.getuid()))
    assert run(database_url, "user", "create", "second", "--name", "Second Admin", "--role", "admin",
               "--password", "a-long-real-password", env={"SUDO_USER": "carol"}).exit_code == 0
    assert _actor_labels(database_url) == [f"cli:{account} (logged in as {other})", f"cli:{account}"]


def test_a_long_account_name_still_fits_the_audit_log(database_url: str, monkeypatch) -> None:
    """Account names from a directory (SSSD's ``name@domain``) can be long: the command must not fail, on
    PostgreSQL, for an actor label over the column's 100 characters (found in review: it did)."""
    import pwd

    from gateway.identity import operator

    long_name = "firstname.lastname-with-a-long-suffix@research.example-university.ac.uk"
    monkeypatch.setattr(operator, "LOGINUID", Path("/nonexistent/loginuid"))  # SUDO_USER is used: the longest label
    monkeypatch.setattr(operator.pwd, "getpwuid",
                        lambda uid: pwd.struct_passwd((long_name, "x", uid, uid, "", "/", "")))
    result = run(database_url, "user", "create", "first", "--name", "First Admin", "--role", "admin",
                 "--password", "a-long-real-password", env={"SUDO_USER": "s" * 40})
    assert result.exit_code == 0, result.output
    [label] = _actor_labels(database_url)
    assert len(label) <= 100 and label.startswith("cli:firstname.lastname"), label


def test_token_create_prints_a_working_token(database_url: str, app, client) -> None:
    run(database_url, "demo", "--seed-only")
    result = run(database_url, "token", "create", "auditor", "--name", "script")
    assert result.exit_code == 0, result.output
    token = result.output.strip()
    response = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200 and response.json["username"] == "auditor"
    assert run(database_url, "token", "create", "nobody").exit_code != 0


def test_audit_verify_reports_intact_chain(database_url: str) -> None:
    run(database_url, "demo", "--seed-only")
    result = run(database_url, "audit", "verify")
    assert result.exit_code == 0 and "audit chain intact" in result.output
    assert int(result.output.split(": ")[1].split()[0]) > 50  # the demo's users, people and applications


def test_audit_verify_on_an_empty_database_says_what_to_do(tmp_path) -> None:
    result = run(f"sqlite:///{tmp_path / 'empty.sqlite3'}", "audit", "verify")
    assert result.exit_code == 1
    assert "run `sde init` first" in result.output and "Traceback" not in result.output


def test_serve_refuses_a_port_something_already_listens_on(database_url: str) -> None:
    """The workers bind with SO_REUSEPORT, which would let them share a port with a server left running."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run(database_url, "serve", "--port", str(port))
    assert result.exit_code == 1, result.output
    assert f"cannot listen on 127.0.0.1:{port}" in result.output


def test_first_user_on_a_fresh_database_as_a_subprocess(tmp_path) -> None:
    """The README's production path in a fresh process: `sde init`, then `sde user create` with the password
    typed at the prompt. In-process CliRunner tests had every model imported already and missed a crash here."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "SDE_DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.sqlite3'}",
           "SDE_INSTANCE_DIR": str(tmp_path / "instance"), "SDE_ENV": "development"}
    sde = [sys.executable, "-m", "gateway.cli"]
    init = subprocess.run([*sde, "init"], env=env, capture_output=True, text=True, timeout=120)
    assert init.returncode == 0, init.stderr
    created = subprocess.run([*sde, "user", "create", "alice", "--name", "Alice Smith", "--role", "researcher"],
                             env=env, input="a-long-real-password\na-long-real-password\n",
                             capture_output=True, text=True, timeout=120)
    assert created.returncode == 0, created.stderr
    assert "Created alice with roles: researcher" in created.stdout


def test_serve_says_plainly_when_the_database_cannot_be_reached() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = run(f"postgresql+psycopg://sde:secret-pw@127.0.0.1:{port}/sde", "serve")
    assert result.exit_code == 1
    assert f"cannot reach the database postgresql+psycopg://***@127.0.0.1:{port}/sde" in result.output
    assert "Traceback" not in result.output and "secret-pw" not in result.output
