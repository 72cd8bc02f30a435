"""The background worker: delivers the outbox and runs the daily jobs, each in its own transaction.

Run it beside the web server (`sde worker`); `sde worker --once` does one pass, for cron or tests.
A job that fails is logged and retried on the next pass; it never blocks the others.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

from sqlalchemy.orm import Session, sessionmaker

import gateway.extracts.service
import gateway.outputs.checks  # registers the automatic output checks
import gateway.outputs.release  # registers the release of approved outputs
import gateway.workspaces.service  # noqa: F401 - registers the outbox handler that stops servers
from gateway import outbox
from gateway.config import Settings
from gateway.db import unit_of_work

log = logging.getLogger(__name__)


def run_daily_jobs(factory: sessionmaker[Session], today: dt.date) -> list[str]:
    """Run every scheduled job for ``today``; returns the names of those that failed."""
    from projects.scheduled import JOBS

    failed = []
    for job in JOBS:
        try:
            with unit_of_work(factory) as session:
                job(session, today)
        except Exception:
            log.exception("scheduled job %s failed", job.__name__)
            failed.append(job.__name__)
    return failed


def sweep_workspaces(settings: Settings, factory: sessionmaker[Session], today: dt.date) -> None:
    """Every pass: stop workspaces whose entitlement ended, close those the hub no longer runs."""
    from gateway.workspaces import service

    try:
        with unit_of_work(factory) as session:
            service.sweep(session, today)
    except Exception:
        log.exception("workspace sweep failed")
    service.reconcile(factory, settings)


def run_once(settings: Settings, factory: sessionmaker[Session], today: dt.date | None = None) -> tuple[int, list[str]]:
    day = today or dt.datetime.now(dt.UTC).date()
    failed = run_daily_jobs(factory, day)
    sweep_workspaces(settings, factory, day)
    delivered = outbox.process(outbox.WorkerContext(settings=settings, factory=factory))
    return delivered, failed


def run_forever(settings: Settings, factory: sessionmaker[Session], interval: float = 30.0) -> None:
    """Deliver the outbox every ``interval`` seconds; the daily jobs run at start and then hourly (idempotent)."""
    last_jobs = 0.0
    while True:
        now = time.monotonic()
        today = dt.datetime.now(dt.UTC).date()
        if now - last_jobs > 3600:
            run_daily_jobs(factory, today)
            last_jobs = now
        sweep_workspaces(settings, factory, today)
        outbox.process(outbox.WorkerContext(settings=settings, factory=factory))
        time.sleep(interval)
