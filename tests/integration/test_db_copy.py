"""`sde db copy`: a gateway that has been used (every table holds rows) moved from SQLite to PostgreSQL and back.

The source is filled by the real services: demo seeding, extract builds, an output request released and one
returned, invoices issued, paid, credited and voided, tokens, a second factor, an amendment. The copy must
keep every row of every table exactly (values compared, not only counts), keep the audit chain verifiable,
leave the target usable (ids continue, the app signs people in), and never leave a partial copy behind.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyotp
import pytest
from alembic.script import ScriptDirectory
from click.testing import CliRunner, Result
from flask.testing import FlaskClient
from sqlalchemy import JSON, Connection, create_engine, func, select, text
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from gateway import audit, db_copy
from gateway.app import create_app
from gateway.charging import budget, invoices, metering
from gateway.charging.models import Invoice
from gateway.cli import main
from gateway.config import ExtractSettings, SecuritySettings, Settings
from gateway.db import make_engine, make_session_factory, unit_of_work, utcnow
from gateway.identity import accounts, enrolment, signin, tokens
from gateway.identity.sessions import SignInState, open_session
from gateway.migrate import alembic_config, head_revision, upgrade
from gateway.model_registry import metadata
from gateway.models import AuditEvent, User
from gateway.outputs import service as outputs
from gateway.outputs.models import OutputRequest
from gateway.trust import incidents
from gateway.workspaces import packages
from gateway.workspaces.models import WorkspaceSession
from projects import applications, publications
from projects.models import Project, ProjectFormerMember
from tests.conftest import sign_in_session
from tests.integration.test_outputs import (
    act,
    load_extract,
    new_request,
    notebook_crosstab,
    outputs_of,
    ready_project,
    released_request,
    review_all,
    sample_request,
    work,
)
from tests.support import databases
from tests.support import factories as f


def sde(url: str, instance: Path, *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env={"SDE_DATABASE_URL": url, "SDE_INSTANCE_DIR": str(instance)})


@contextmanager
def session_on(url: str) -> Iterator[Session]:
    """One committed transaction on the database at ``url``, as the services use it."""
    engine = make_engine(url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            yield session
    finally:
        engine.dispose()


def settings_for(url: str, instance: Path, source: Path) -> Settings:
    return Settings(env="test", instance_dir=instance, database_url=url, secret_key="test-secret-key",
                    extracts=ExtractSettings(source_dir=source))


# --- a database that has seen everything ---------------------------------------------------------------------

def seed_everything(settings: Settings) -> dict[str, int]:
    """Drive the real services until every table holds rows; returns ids the tests look at again."""
    from gateway import demo

    engine = make_engine(settings.resolved_database_url)
    factory = make_session_factory(engine)
    with unit_of_work(factory) as s:
        demo.seed(s, settings)
    demo.prepare_data(settings, factory)  # extract builds: versions with manifests and risk figures
    ids = {"outputs_project": ready_project(factory, settings)}
    project_id = ids["outputs_project"]
    ids["released_request"] = released_request(factory, settings, project_id, "by_region")
    ids["returned_request"] = _returned_request(factory, settings, project_id)
    ids["draft_request"], _ = sample_request(factory, settings, project_id)  # unchecked: JSON columns SQL NULL
    ids |= _charging(factory)
    with unit_of_work(factory) as s:
        admin, researcher = f.user(s, "admin"), f.user(s, "researcher")
        f.organisation(s, "Université de Londres \u2013 Ωmega ✓", "academic")
        tokens.create_token(s, "test", researcher, "notebook", 30, None, False)
        revoked, _ = tokens.create_token(s, researcher, researcher, "old laptop", 7, ["view_projects"], True)
        tokens.revoke_token(s, researcher, revoked)
        web_session, _key = open_session(s, admin, SignInState.SIGNED_IN, SecuritySettings())
        setup_code, _ = enrolment.issue_operator_code(s, "cli:test", admin, SecuritySettings())  # enrolment_codes
        assert signin.verify_enrolment_code(s, SecuritySettings(), web_session, setup_code).ok
        secret = signin.enrolment_secret(s, SecuritySettings(), web_session)
        assert signin.confirm_enrolment(s, SecuritySettings(), web_session, pyotp.TOTP(secret).now())
        accounts.set_totp_required(s, admin, {"admin"})
        started = utcnow() - dt.timedelta(hours=2)
        s.add_all([WorkspaceSession(project_id=project_id, user_id=researcher.id, server_name="p", tier="small",
                                    started_at=started, stopped_at=started + dt.timedelta(minutes=47),
                                    stop_reason="user"),
                   WorkspaceSession(project_id=project_id, user_id=researcher.id, server_name="p", tier="small",
                                    started_at=started + dt.timedelta(hours=1))])
        project = s.get(Project, project_id)
        assert project is not None
        publications.link_publication(s, researcher, project, "10.1000/copy.1", "Findings \u2013 \u2713")
        packages.request_package(s, researcher, "python", "lifelines", "0.30.0", "Survival curves \u2013 Kaplan-Meier.")
        incidents.record_incident(s, admin, utcnow().date() - dt.timedelta(days=3), "Laptop lost \u2013 encrypted",
                                  "A laptop was left on a train.", "The account was disabled the same day.",
                                  utcnow().date())
        # someone who left the team (an approved amendment writes this; the copy only needs the row)
        s.add(ProjectFormerMember(project_id=project_id, user_id=f.user(s, "researcher2").id, joined_at=started,
                                  left_at=utcnow(), reason="removed from the project team \u2013 by amendment"))
        amendment = applications.start_amendment(s, researcher, project)  # names its project: the FK cycle
        applications.update_draft(s, researcher, amendment, {"amendment_summary": "Add deprivation deciles."})
        ids["amendment"] = amendment.id
    engine.dispose()
    return ids


def _returned_request(factory: sessionmaker[Session], settings: Settings, project_id: int) -> int:
    folder = outputs_of(settings, factory, "researcher", project_id)
    notebook_crosstab(load_extract(settings, factory, project_id), folder, "small_cells", suppress=False)
    (folder / "notes.txt").write_text("How the table was made.\n")
    request_id = new_request(factory, settings, project_id, ["small_cells.csv", "notes.txt"],
                             kinds={"notes.txt": "supporting"})
    act(factory, request_id, "researcher", outputs.submit, settings)
    work(factory, settings)
    with unit_of_work(factory) as s:  # an exception on the failing table, refused by one checker
        request = s.get(OutputRequest, request_id)
        assert request is not None
        outputs.request_exception(s, f.user(s, "researcher"), request, request.files[0],
                                  "The cell of 3 is published by ONS \u2013 nothing new.", settings)
        outputs.decide_exception(s, f.user(s, "checker1"), request, request.files[0], "refuse",
                                 "Not the same population \u2013 suppress it.", settings)
    review_all(factory, request_id, "checker1", "changes_requested")
    review_all(factory, request_id, "checker2", "changes_requested")
    act(factory, request_id, "checker1", outputs.decide, "return", "Suppress the cell of 3 \u2013 then resubmit.")
    return request_id


def _charging(factory: sessionmaker[Session]) -> dict[str, int]:
    """Invoices in every state: paid with a credit note, voided and replaced, and a draft."""
    now = utcnow()
    month = metering.period_of(now)
    next_month = (now.date().replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    with unit_of_work(factory) as s:
        drafted = invoices.run_month(s, f.user(s, "finance"), month, next_month).created
        assert len(drafted) >= 3
        paid, voided = drafted[0], drafted[1]
        finance = f.user(s, "finance")
        invoices.add_line(s, finance, paid, "Extra linkage work \u2013 £ and ✓", 2, 5000)
        invoices.issue(s, finance, paid, now.date())
        note = invoices.credit_note(s, finance, paid, 10000, "Linkage was not needed", now.date())
        invoices.record_payment(s, finance, paid, "BACS 4471")
        invoices.void(s, finance, voided, "Wrong organisation on the draft")
        budget.set_budget(s, finance, s.get(Project, paid.project_id), 10_000_000, "PO 1")  # type: ignore[arg-type]
        ids = {"paid_invoice": paid.id, "credit_note": note.id, "voided_invoice": voided.id}
    with unit_of_work(factory) as s:  # the voided month is invoiced again: two invoices, one of them void
        replacement = invoices.run_month(s, f.user(s, "finance"), month, next_month).created
        assert [i.project_id for i in replacement] == [s.get(Invoice, ids["voided_invoice"]).project_id]  # type: ignore[union-attr]
        ids["replacement_invoice"] = replacement[0].id
    return ids


@pytest.fixture(scope="module")
def seeded_sqlite(tmp_path_factory: pytest.TempPathFactory,
                  synthetic_source: Path) -> tuple[Settings, dict[str, int]]:
    """One SQLite gateway filled once for the module; the copies only read it."""
    folder = tmp_path_factory.mktemp("db-copy-source")
    url = f"sqlite:///{folder / 'gateway.sqlite3'}"
    upgrade(url)
    settings = settings_for(url, folder / "instance", synthetic_source)
    return settings, seed_everything(settings)


@pytest.fixture
def pg_target(tmp_path: Path) -> Iterator[str]:
    """A new, empty PostgreSQL database (no tables: the copy creates them)."""
    if databases.postgres_server_url() is None:
        pytest.skip("needs PostgreSQL: set SDE_TEST_DATABASE_URL (`make test` does)")
    with databases.scratch_database("postgresql", tmp_path) as url:
        yield url


# --- comparing databases -----------------------------------------------------------------------------------------

def contents(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in key order, as the model types give them (JSON SQL NULL marked)."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return {t.name: db_copy.rows_of(conn, t) for t in metadata.sorted_tables}
    finally:
        engine.dispose()


def has_data(url: str) -> dict[str, int]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return db_copy.data_in(conn)
    finally:
        engine.dispose()


def json_kinds(rows: dict[str, list[tuple[Any, ...]]], name: str) -> set[str]:
    """What the JSON columns of a table hold, as read by rows_of: SQL NULL, JSON null or a value."""
    table = metadata.tables[name]
    columns = [c.name for c in table.columns]
    json_columns = [c.name for c in table.columns if isinstance(c.type, JSON)]
    kinds = set()
    for row in rows[name]:
        for i, column in enumerate(json_columns):
            value, sql_null = row[columns.index(column)], row[len(columns) + i]
            kinds.add("SQL NULL" if sql_null else "JSON null" if value is None else "a value")
    return kinds


def assert_copied(source: dict[str, list[tuple[Any, ...]]], target: dict[str, list[tuple[Any, ...]]]) -> None:
    """The target holds the source row for row, plus the one audit event that records the copy."""
    assert set(target) == set(source)
    for name, rows in source.items():
        if name == "audit_events":
            assert target[name][:-1] == rows, name
            assert target[name][-1][4] == "database.copied" and target[name][-1][0] == len(rows) + 1
        elif name == "audit_head":
            assert target[name][0][1] == rows[0][1] + 1
        else:
            assert target[name] == rows, name


# --- the tests -------------------------------------------------------------------------------------------------

def test_sqlite_to_postgresql_keeps_every_row_and_the_chain_and_the_target_works(
        seeded_sqlite: tuple[Settings, dict[str, int]], pg_target: str, synthetic_source: Path) -> None:
    settings, ids = seeded_sqlite
    source = contents(settings.resolved_database_url)
    empty = sorted(name for name, rows in source.items() if not rows)
    assert empty == [], f"the seeding should fill every table; empty: {empty}"
    assert json_kinds(source, "output_files") == {"SQL NULL", "JSON null", "a value"}

    copied = sde(settings.resolved_database_url, settings.instance_dir, "db", "copy", "--to", pg_target)
    assert copied.exit_code == 0, copied.output
    events = len(source["audit_events"])
    assert f"audit chain intact: {events} events" in copied.output
    assert f"audit event #{events + 1} (database.copied)" in copied.output
    for name in ("audit_events", "invoice_lines", "output_votes", "users"):
        line = next(line for line in copied.output.splitlines() if line.strip().startswith(name + " "))
        assert line.split()[-1] == f"{len(source[name]):,}"
    assert "need no copying" in copied.output and "SDE_DATABASE_URL=postgresql+psycopg://" in copied.output

    assert_copied(source, contents(pg_target))
    verified = sde(pg_target, settings.instance_dir, "audit", "verify")
    assert verified.exit_code == 0 and f"audit chain intact: {events + 1} events verified" in verified.output
    assert contents(settings.resolved_database_url) == source  # the source was only read

    with session_on(pg_target) as s:
        created = accounts.create_local_user(s, "test", username="after_copy", display_name="After Copy",
                                             password="a-long-pass-99", roles=["researcher"])
        assert created.id == max(row[0] for row in source["users"]) + 1
        assert audit.verify(s).ok and audit.verify(s).checked == events + 2  # the copy's event and this one
    _assert_sequences_continue(pg_target)

    _assert_the_app_serves_the_copy(settings_for(pg_target, settings.instance_dir, synthetic_source), ids)

    before = contents(pg_target)
    again = sde(settings.resolved_database_url, settings.instance_dir, "db", "copy", "--to", pg_target)
    assert again.exit_code == 1
    assert "already holds data: audit_events" in again.output and "nothing was changed" in again.output
    assert contents(pg_target) == before


def _assert_sequences_continue(url: str) -> None:
    """Every serial id continues after the copied rows, so no insert collides with a copied one."""
    engine = create_engine(url, poolclass=NullPool)
    checked = 0
    with engine.begin() as conn:
        for table in metadata.sorted_tables:
            if len(table.primary_key.columns) != 1:
                continue
            column = next(iter(table.primary_key.columns))
            sequence = conn.execute(text("SELECT pg_get_serial_sequence(:t, :c)"),
                                    {"t": table.name, "c": column.name}).scalar()
            if sequence is None:
                continue
            top = conn.execute(select(func.max(column))).scalar() or 0
            assert conn.execute(text("SELECT nextval(CAST(:s AS regclass))"), {"s": sequence}).scalar() > top, \
                table.name
            checked += 1
    engine.dispose()
    assert checked >= 25


def _assert_the_app_serves_the_copy(settings: Settings, ids: dict[str, int]) -> None:
    app = create_app(settings)
    try:
        client: FlaskClient = app.test_client()
        factory = app.extensions["sde_sessionmaker"]
        sign_in_session(client, factory, "researcher")
        page = client.get(f"/projects/{ids['outputs_project']}")
        assert page.status_code == 200 and "Outputs project" in page.get_data(as_text=True)
        sign_in_session(client, factory, "finance")
        page = client.get(f"/charging/invoices/{ids['paid_invoice']}")
        assert page.status_code == 200 and "BACS 4471" in page.get_data(as_text=True)
        sign_in_session(client, factory, "auditor")
        page = client.get("/audit/?action=database.copied")
        assert page.status_code == 200 and "database.copied" in page.get_data(as_text=True)
    finally:
        app.extensions["sde_engine"].dispose()


def test_a_copy_that_fails_part_way_leaves_the_target_without_data(
        seeded_sqlite: tuple[Settings, dict[str, int]], pg_target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    settings, _ids = seeded_sqlite
    insert_rows = db_copy._insert_rows
    seen: list[str] = []

    def refused_late(conn: Connection, table: Any, rows: list[dict[str, Any]]) -> None:
        seen.append(table.name)
        if table.name == "output_votes":  # among the last tables: nearly everything is written by now
            rows = [{**rows[0], "file_id": 10**9}, *rows[1:]]  # the database refuses this row (foreign key)
        insert_rows(conn, table, rows)

    monkeypatch.setattr(db_copy, "_insert_rows", refused_late)
    failed = sde(settings.resolved_database_url, settings.instance_dir, "db", "copy", "--to", pg_target)
    assert failed.exit_code == 1, failed.output
    assert "the copy failed and the target was rolled back, so it holds no data" in failed.output
    assert {"users", "audit_events", "invoices", "invoice_lines", "quote_lines"} <= set(seen)
    assert has_data(pg_target) == {}

    def interrupted(conn: Connection, table: Any, rows: list[dict[str, Any]]) -> None:
        insert_rows(conn, table, rows)
        if table.name == "reviews":
            raise KeyboardInterrupt  # the operator presses Ctrl-C mid-copy

    monkeypatch.setattr(db_copy, "_insert_rows", interrupted)
    stopped = sde(settings.resolved_database_url, settings.instance_dir, "db", "copy", "--to", pg_target)
    assert stopped.exit_code != 0
    assert has_data(pg_target) == {}

    monkeypatch.setattr(db_copy, "_insert_rows", insert_rows)
    retried = sde(settings.resolved_database_url, settings.instance_dir, "db", "copy", "--to", pg_target)
    assert retried.exit_code == 0, retried.output
    assert_copied(contents(settings.resolved_database_url), contents(pg_target))


def test_postgresql_to_sqlite(tmp_path: Path, synthetic_source: Path) -> None:
    if databases.postgres_server_url() is None:
        pytest.skip("needs PostgreSQL: set SDE_TEST_DATABASE_URL (`make test` does)")
    with databases.scratch_database("postgresql", tmp_path) as source_url:
        upgrade(source_url)
        settings = settings_for(source_url, tmp_path / "instance", synthetic_source)
        seed_everything(settings)
        target = tmp_path / "copies" / "test-copy.sqlite3"  # the folder does not exist yet either
        copied = sde(source_url, settings.instance_dir, "db", "copy", "--to", f"sqlite:///{target}")
        assert copied.exit_code == 0, copied.output
        assert "id sequences" not in copied.output  # SQLite continues from the largest id by itself
        source = contents(source_url)
        assert all(source.values())
    copy_url = f"sqlite:///{target}"
    assert_copied(source, contents(copy_url))
    verified = sde(copy_url, settings.instance_dir, "audit", "verify")
    assert verified.exit_code == 0, verified.output
    with session_on(copy_url) as s:
        accounts.create_local_user(s, "test", username="after_copy", display_name="After Copy",
                                   password="a-long-pass-99", roles=["auditor"])
        assert s.scalar(select(func.max(User.id))) == max(row[0] for row in source["users"]) + 1
        assert s.scalar(select(func.max(AuditEvent.seq))) == len(source["audit_events"]) + 2


def test_refusals_change_nothing(tmp_path: Path, sqlite_template: databases.SqliteTemplate) -> None:
    instance = tmp_path / "instance"
    source_url = sqlite_template.fresh(tmp_path)
    with session_on(source_url) as s:
        accounts.create_local_user(s, "test", username="someone", display_name="Someone",
                                   password="a-long-pass-99", roles=["admin"])

    itself = sde(source_url, instance, "db", "copy", "--to", source_url)
    assert itself.exit_code == 1 and "the target is the configured database itself" in itself.output
    memory = sde(source_url, instance, "db", "copy", "--to", "sqlite://")
    assert memory.exit_code == 1 and "in-memory" in memory.output
    other = sde(source_url, instance, "db", "copy", "--to", "mysql://user@host/db")
    assert other.exit_code == 1 and "unsupported database backend 'mysql'" in other.output

    # a target that already holds data: every row stays as it was
    busy_url = sqlite_template.fresh(tmp_path)
    with session_on(busy_url) as s:
        accounts.create_local_user(s, "test", username="resident", display_name="Resident",
                                   password="a-long-pass-99", roles=["auditor"])
    before = contents(busy_url)
    busy = sde(source_url, instance, "db", "copy", "--to", busy_url)
    assert busy.exit_code == 1
    assert "already holds data: audit_events (1 row), users (1 row), user_roles (1 row)" in busy.output
    assert contents(busy_url) == before

    # a source that is not at the newest schema: upgrade it first
    old_url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    scripts = ScriptDirectory.from_config(alembic_config(old_url))
    previous = scripts.get_revision(head_revision(old_url)).down_revision
    assert isinstance(previous, str)
    upgrade(old_url, previous)
    fresh = tmp_path / "not-yet" / "never-made.sqlite3"
    behind = sde(old_url, instance, "db", "copy", "--to", f"sqlite:///{fresh}")
    assert behind.exit_code == 1, behind.output
    assert f"schema revision {previous}" in behind.output and "sde init" in behind.output
    assert not fresh.exists()

    # a source whose audit chain is broken would carry the damage into the copy
    engine = create_engine(source_url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_head SET seq = seq + 1"))
    engine.dispose()
    broken = sde(source_url, instance, "db", "copy", "--to", f"sqlite:///{fresh}")
    assert broken.exit_code == 1 and "audit chain does not verify" in broken.output
    assert not fresh.parent.exists()
