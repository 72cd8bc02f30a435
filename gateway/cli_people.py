"""``sde accreditation ...``: safe-people commands (registered on the main ``sde`` group in gateway.cli)."""

from __future__ import annotations

import datetime as dt

import click

from gateway.config import load_settings
from gateway.db import make_engine, make_session_factory, unit_of_work


@click.group("accreditation")
def accreditation() -> None:
    """Accreditation housekeeping."""


@accreditation.command("remind")
@click.option("--today", "on", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Act as if today were this date (YYYY-MM-DD); defaults to today (UTC).")
def remind(on: dt.datetime | None) -> None:
    """Queue emails for verified accreditations 30 and 7 days before they expire (safe to run repeatedly)."""
    from projects.accreditation import queue_expiry_reminders
    from projects.accreditation_rules import today

    settings = load_settings()
    engine = make_engine(settings.resolved_database_url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            day = on.date() if on else today()
            sent = queue_expiry_reminders(session, day)
    finally:
        engine.dispose()
    click.echo(f"Expiry reminders queued for {day.isoformat()}: {sent}")
