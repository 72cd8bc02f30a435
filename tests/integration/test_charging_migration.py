"""Migration 0004 upgrades a database that already holds projects, and charging then works on them."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.engine import make_url

from gateway.charging import invoices, metering
from gateway.db import make_engine, make_session_factory, unit_of_work
from gateway.migrate import alembic_config, upgrade
from projects.models import Project
from tests.support import databases
from tests.support import factories as f


@pytest.fixture
def scratch_url(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'populated.sqlite3'}"
        return
    server = databases.postgres_server_url()
    assert server is not None
    name = f"sde_mig_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(server).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_0004_upgrades_a_populated_database(scratch_url: str) -> None:
    from gateway import demo

    upgrade(scratch_url)
    engine = make_engine(scratch_url)
    factory = make_session_factory(engine)
    with unit_of_work(factory) as s:
        demo.seed_users(s, "test")
        f.accredit(s, "researcher")
    project_id = f.approved_project(factory)
    engine.dispose()
    # back to 0003 (as a database from before charging), with its projects, then forward again
    command.downgrade(alembic_config(scratch_url), "0003")
    assert "invoices" not in inspect(create_engine(scratch_url)).get_table_names()
    upgrade(scratch_url)
    engine = make_engine(scratch_url)
    factory = make_session_factory(engine)
    assert {"tariff_versions", "quotes", "quote_lines", "meter_events", "invoices", "invoice_lines",
            "project_budgets"} <= set(inspect(engine).get_table_names())
    with unit_of_work(factory) as s:  # a project approved before charging is priced on the tariff in force
        project = s.scalars(select(Project).where(Project.id == project_id)).one()
        metering.record_meter_event(s, project, "seat_month", 1, "seat:migrated", f.user(s, "researcher"))
        month = metering.period_of(f.TODAY)
        next_month = (f.TODAY.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
        result = invoices.run_month(s, "test", month, next_month)
        assert [(line.code, line.quantity) for line in result.created[0].lines] == [("workspace_seats", 1)]
    engine.dispose()
