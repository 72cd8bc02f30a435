"""Fault script: SIGKILL the worker mid extract build and `sde invoices run` mid run, then check recovery.

Uses a throwaway PostgreSQL database and instance folder (like bench/load.py), `sde init` and
`sde demo --seed-only` on a small population, then replaces the source with a larger synthetic population
(--patients) so one build takes seconds.

1. Extract build: queue a build for an active demo project, start `sde worker`, wait until the build reports
   progress, kill -9 the worker's process group. Check that no new version is visible (no database row, no
   v<N> folder, `current` unchanged). The killed attempt holds the outbox row's 5-minute claim lease; the
   script expires it (UPDATE outbox SET available_at = now()) instead of waiting, unless --wait-lease.
   Restart the worker and check that the build completes exactly once (one new version row, one
   extract.built audit event, one new folder, no staging leftovers).
2. Invoice run: add --events metered readings per active project in the previous month, start
   `sde invoices run --month <previous month>`, kill -9 it once its transaction has written (PostgreSQL
   shows a transaction id for its backend), check nothing was committed, rerun, and rerun again: one live
   invoice per project and month, the second rerun drafts none.
3. `sde audit verify` on the result.

Stopping the database mid-request is not run here (the PostgreSQL server is shared); see
docs/operators.md, "Load and fault scripts".

    .venv/bin/python bench/faults.py [--patients 200000] [--events 20000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from load import ADMIN_URL, SDE, Sandbox, sandbox  # noqa: E402


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def extract_scenario(box: Sandbox, factory: Any, settings: Any, wait_lease: bool) -> list[tuple[str, str]]:
    from sqlalchemy import func, select, update

    from gateway.db import unit_of_work
    from gateway.extracts import service, storage
    from gateway.extracts.models import ExtractBuild, ExtractVersion
    from gateway.models import AuditEvent
    from gateway.outbox import OutboxMessage
    from gateway.workspaces.entitlement import workspace_id
    from projects.models import Project

    with unit_of_work(factory) as session:
        project = session.scalars(select(Project).where(Project.state == "active").order_by(Project.id)).first()
        assert project is not None, "the demo has no active project"
        build_id = service.request_build(session, project, "fault script", "bench").id
        project_id, folder, reference = project.id, workspace_id(project), project.reference

    def db_versions() -> list[int]:
        with factory() as session:
            return list(session.scalars(select(ExtractVersion.version).where(ExtractVersion.project_id == project_id)
                                        .order_by(ExtractVersion.version)))

    def build() -> ExtractBuild:
        with factory() as session:
            row = session.get(ExtractBuild, build_id)
            assert row is not None
            session.expunge(row)
            return row

    root = settings.extracts_root
    before_db, before_dirs, before_current = db_versions(), storage.list_versions(root, folder), \
        storage.current_version(root, folder)
    worker = box.start([*SDE, "worker", "--interval", "1"], "worker.log")
    running = wait_for("the build to report progress", lambda: (b := build()).state == "running" and b.rows_done > 0,
                       timeout=300)
    assert running
    progress = build()
    box.kill(worker, signal.SIGKILL)
    killed_at = f"{progress.rows_done}/{progress.rows_total} rows"
    pdir = storage.project_dir(root, folder)
    leftovers = sorted(p.name for p in pdir.iterdir() if p.name.startswith(storage.STAGING_PREFIX))
    after_kill = (db_versions() == before_db and storage.list_versions(root, folder) == before_dirs
                  and storage.current_version(root, folder) == before_current)
    rows = [("extract: killed mid-build", f"worker SIGKILLed at {killed_at} of project {reference}, build state "
             f"'{build().state}'"),
            ("extract: partial version visible?", "no (DB versions, v<N> folders and 'current' unchanged; "
             f"{len(leftovers)} staging folder(s) hidden)" if after_kill else "YES: a new version appeared")]
    if not wait_lease:
        with unit_of_work(factory) as session:
            session.execute(update(OutboxMessage).where(OutboxMessage.dedupe_key == f"extract-build:{build_id}")
                            .values(available_at=dt.datetime.now(dt.UTC)))
    started = time.monotonic()
    worker = box.start([*SDE, "worker", "--interval", "1"], "worker.log")
    wait_for("the build to finish", lambda: build().state in ("done", "failed"), timeout=900 if wait_lease else 300,
             every=0.5)
    box.kill(worker)
    done = build()
    new_db = [v for v in db_versions() if v not in before_db]
    new_dirs = [v for v in storage.list_versions(root, folder) if v not in before_dirs]
    with factory() as session:
        built_events = session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "extract.built", AuditEvent.object_id == str(project_id))) or 0
        built_before = len(before_db)
    leftovers = sorted(p.name for p in pdir.iterdir() if p.name.startswith(storage.STAGING_PREFIX))
    once = done.state == "done" and len(new_db) == 1 and new_dirs == new_db and built_events == built_before + 1
    rows.append(("extract: after restart", f"build {done.state} in {time.monotonic() - started:.1f} s "
                 f"(incl. worker start), new versions in DB {new_db}, folders {new_dirs}, extract.built events "
                 f"+{built_events - built_before}, staging leftovers {len(leftovers)} -> "
                 + ("completed once" if once and not leftovers else "NOT as expected")))
    return rows


def invoice_scenario(box: Sandbox, factory: Any, events: int) -> list[tuple[str, str]]:
    import psycopg
    from sqlalchemy import func, insert, select

    from gateway.charging.invoices import previous_month
    from gateway.charging.models import Invoice, MeterEvent
    from gateway.db import unit_of_work
    from projects.models import Project

    today = dt.datetime.now(dt.UTC).date()
    month = previous_month(today)
    moment = dt.datetime.strptime(f"{month}-15 12:00", "%Y-%m-%d %H:%M").replace(tzinfo=dt.UTC)
    with unit_of_work(factory) as session:
        projects = list(session.scalars(select(Project.id).where(Project.state == "active")))
        session.execute(insert(MeterEvent), [
            {"event_key": f"bench-fault:{p}:{i}", "project_id": p, "kind": "compute", "quantity": 1,
             "unit": "minute", "period": month, "occurred_at": moment, "description": "fault script"}
            for p in projects for i in range(events)])

    def live_invoices() -> list[tuple[int, int]]:
        with factory() as session:
            return [(int(p), int(n)) for p, n in session.execute(
                select(Invoice.project_id, func.count()).where(Invoice.period == month, Invoice.kind == "invoice",
                                                               Invoice.state != "void").group_by(Invoice.project_id))]

    def invoiced_events() -> int:
        with factory() as session:
            return int(session.scalar(select(func.count()).select_from(MeterEvent)
                                      .where(MeterEvent.invoice_id.is_not(None))) or 0)

    def writing() -> bool:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND backend_xid IS NOT NULL",
                               (box.name,)).fetchone()
        return bool(row and row[0])

    before_invoices, before_events = live_invoices(), invoiced_events()
    started = time.monotonic()
    run = box.start([*SDE, "invoices", "run", "--month", month], "invoices.log")
    wait_for("the invoice run to start writing", lambda: writing() or run.poll() is not None, timeout=120, every=0.01)
    was_running = run.poll() is None
    time.sleep(0.2)
    was_running = was_running and run.poll() is None
    box.kill(run, signal.SIGKILL)
    after_kill = live_invoices() == before_invoices and invoiced_events() == before_events
    rows = [("invoices: killed mid-run", f"{len(projects)} projects x {events} readings for {month}; SIGKILL "
             f"{time.monotonic() - started:.1f} s after start, "
             + ("while its transaction was open" if was_running else "but it had already exited")),
            ("invoices: after the kill", "nothing committed (no invoice, no reading marked invoiced)" if after_kill
             else f"committed before the kill: {live_invoices()}")]
    first = box.run("invoices", "run", "--month", month)
    second = box.run("invoices", "run", "--month", month)
    counts = live_invoices()
    duplicates = [p for p, n in counts if n > 1]
    rows.append(("invoices: rerun", first.stdout.splitlines()[0] if first.stdout else first.stderr.strip()))
    rows.append(("invoices: rerun again", second.stdout.splitlines()[0] if second.stdout else second.stderr.strip()))
    rows.append(("invoices: duplicates?", f"none ({len(counts)} projects, one live invoice each for {month})"
                 if not duplicates else f"YES for projects {duplicates}"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=200_000, help="population for the killed build")
    parser.add_argument("--events", type=int, default=20_000, help="metered readings per active project")
    parser.add_argument("--wait-lease", action="store_true", help="wait out the outbox lease instead of expiring it")
    args = parser.parse_args()
    with sandbox("sde_faults", {"extracts": {"demo_patients": 1000}}) as box:
        print(f"database {box.name}, instance {box.workdir}", file=sys.stderr)
        box.run("init")
        box.run("demo", "--seed-only")
        os.environ.update(box.env)
        from gateway.config import load_settings
        from gateway.db import make_engine, make_session_factory

        settings = load_settings()
        shutil.rmtree(settings.source_dir)
        t0 = time.monotonic()
        box.run("synth", "--patients", str(args.patients), "--out", str(settings.source_dir))
        print(f"synthetic population of {args.patients} made in {time.monotonic() - t0:.0f} s", file=sys.stderr)
        engine = make_engine(settings.resolved_database_url)
        factory = make_session_factory(engine)
        try:
            rows = extract_scenario(box, factory, settings, args.wait_lease)
            rows += invoice_scenario(box, factory, args.events)
            verify = box.run("audit", "verify", check=False)
            rows.append(("audit verify", f"exit {verify.returncode}: {verify.stdout.strip() or verify.stderr.strip()}"))
        finally:
            engine.dispose()
    width = max(len(r[0]) for r in rows)
    print(f"\n{'scenario':<{width}}  outcome")
    for scenario, outcome in rows:
        print(f"{scenario:<{width}}  {outcome}")


if __name__ == "__main__":
    main()
