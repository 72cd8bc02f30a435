"""Migration 0004 upgrades a database that already holds projects, and charging then works on them."""

from __future__ import annotations

import datetime as dt

from alembic import command
from sqlalchemy import create_engine, inspect, select

from gateway.charging import invoices, metering
from gateway.db import make_engine, make_session_factory, unit_of_work
from gateway.migrate import alembic_config, upgrade
from projects.models import Project
from tests.support import factories as f


def test_0004_upgrades_a_populated_database(scratch_url: str) -> None:
    engine, factory = f.migrated_with_people(scratch_url)
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
