"""The background worker: delivers the outbox and runs the daily jobs, each in its own transaction.

Run it beside the web server (`sde worker`); `sde worker --once` does one pass, for cron or tests.
A job that fails is logged and retried on the next pass; it never blocks the others.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from gateway import outbox, wiring
from gateway.config import Settings
from gateway.db import unit_of_work

log = logging.getLogger(__name__)


def run_daily_jobs(factory: sessionmaker[Session], today: dt.date) -> list[str]:
    """Run every scheduled job for ``today``; returns the names of those that failed."""
    wiring.wire()
    failed = []
    for job in wiring.DAILY_JOBS:
        try:
            with unit_of_work(factory) as session:
                job(session, today)
        except Exception:
            log.exception("scheduled job %s failed", job.__name__)
            failed.append(job.__name__)
    return failed


def sweep_certificates(settings: Settings, factory: sessionmaker[Session]) -> list[str]:
    """Hourly: delete certificate files left without a record by a crash between the upload and its commit."""
    from sqlalchemy import select

    from projects.certificates import CertificateStore
    from projects.models import Accreditation

    try:
        with factory() as session:
            referenced = set(session.scalars(select(Accreditation.certificate_file)
                                             .where(Accreditation.certificate_file.is_not(None))))
        removed = CertificateStore(settings.certificates_dir).sweep_orphans(referenced, dt.timedelta(hours=1))
    except Exception:
        log.exception("certificate sweep failed")
        return []
    if removed:
        log.warning("removed %d certificate files that no accreditation refers to", len(removed))
    return removed


def sweep_sessions(factory: sessionmaker[Session]) -> int:
    """Hourly: forget browser sessions that ended or expired over 30 days ago (the audit log keeps the sign-ins)."""
    from gateway.identity.sessions import purge_old_sessions

    try:
        with unit_of_work(factory) as session:
            return purge_old_sessions(session)
    except Exception:
        log.exception("session sweep failed")
        return 0


def sweep_workspaces(settings: Settings, factory: sessionmaker[Session], today: dt.date) -> None:
    """Every pass: stop workspaces whose entitlement ended, close those the hub no longer runs."""
    from gateway.workspaces import service

    try:
        with unit_of_work(factory) as session:
            service.sweep(session, today)
    except Exception:
        log.exception("workspace sweep failed")
    service.reconcile(factory, settings)


def sync_directory(settings: Settings, factory: sessionmaker[Session]) -> None:
    """Every pass: directory accounts take the roles their groups give them now; one whose entry is gone is
    deactivated (gateway.identity.accounts.sync_directory_accounts). Nothing changes while the directory is down."""
    if settings.ldap is None:
        return
    from gateway.identity.accounts import sync_directory_accounts
    from gateway.identity.ldap_directory import DirectoryImplausible, DirectoryUnavailable, LdapDirectory

    try:
        with unit_of_work(factory) as session:
            counts = sync_directory_accounts(session, LdapDirectory(settings.ldap))
    except DirectoryImplausible as exc:
        log.error("directory accounts not synced this pass: %s", exc)
        return
    except DirectoryUnavailable as exc:
        log.warning("directory not readable, directory accounts not synced this pass: %s", exc)
        return
    except Exception:
        log.exception("directory sync failed")
        return
    if counts["deactivated"]:
        log.warning("deactivated %d directory accounts whose entries are gone", counts["deactivated"])


def run_once(settings: Settings, factory: sessionmaker[Session], today: dt.date | None = None) -> tuple[int, list[str]]:
    wiring.wire()
    day = today or dt.datetime.now(dt.UTC).date()
    failed = run_daily_jobs(factory, day)
    sweep_certificates(settings, factory)
    sweep_sessions(factory)
    sync_directory(settings, factory)
    sweep_workspaces(settings, factory, day)
    delivered = outbox.process(outbox.WorkerContext(settings=settings, factory=factory))
    return delivered, failed


def daily_jobs_due(now: float, last_run: float | None, today: dt.date, last_day: dt.date | None) -> bool:
    """At start, hourly, and on the first pass of a new (UTC) day: a project whose end date was yesterday expires,
    and its workspaces stop, within a pass of midnight, not up to an hour later."""
    return last_run is None or now - last_run > 3600 or today != last_day


def run_forever(settings: Settings, factory: sessionmaker[Session], interval: float = 30.0) -> None:
    """Deliver the outbox every ``interval`` seconds; the daily jobs (idempotent) as ``daily_jobs_due`` says."""
    wiring.wire()
    last_jobs: float | None = None
    last_day: dt.date | None = None
    while True:
        try:
            now = time.monotonic()
            today = dt.datetime.now(dt.UTC).date()
            if daily_jobs_due(now, last_jobs, today, last_day):
                run_daily_jobs(factory, today)
                sweep_certificates(settings, factory)
                sweep_sessions(factory)
                last_jobs, last_day = now, today
            sync_directory(settings, factory)  # before the workspaces: a person gone from it is stopped this pass
            sweep_workspaces(settings, factory, today)
            outbox.process(outbox.WorkerContext(settings=settings, factory=factory))
        except (OperationalError, InterfaceError) as exc:
            # The database went away (a restart, a failover, the network): keep running and try again next pass.
            # A message cut off mid-delivery keeps its claim and is retried when that lease runs out.
            log.error("database unavailable (%s); trying again in %.0f s", type(exc).__name__, interval)
        time.sleep(interval)
