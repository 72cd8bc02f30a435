"""Fault script: SIGKILL the worker mid extract build and mid release, `sde invoices run` mid run, and stop
PostgreSQL under the running gateway; then check recovery.

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
3. Release: an output request with --release-mb of output files is approved by two checkers; `sde worker`
   builds the release package; it is SIGKILLed while the package's temporary file is being written and
   verified. Check that the request is still approved and no package is under its final name (or, if the
   kill came after the atomic rename, that it is complete); restart the worker (lease expired as in 1): one
   release, one package whose SHA-256 the request records, one audit event, no temporary files left.
4. `sde audit verify` on the result.
5. Database stop: on a private PostgreSQL server (initdb in a temporary folder, its own port; never the shared
   one), `sde serve` (2 workers) and `sde worker` run while client threads request a signed-in page, an API
   read and an API write (token creation) without pause. PostgreSQL is stopped (`pg_ctl stop -m immediate`)
   for --outage seconds and started again, --cycles times. Reports the answers before, during and after the
   outages, how long after PostgreSQL is back the first page and API call succeed (no gateway restart), whether
   any answer leaked internals or the gateway logged a traceback, whether every acknowledged write is present
   and every refused one absent, whether the worker survived, and `sde audit verify`.

    .venv/bin/python bench/faults.py [--patients 200000] [--events 20000] [--release-mb 60] [--outage 5]
                                     [--cycles 3] [--scenarios extract,invoice,release,database]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from load import ADMIN_URL, SDE, Sandbox, sandbox  # noqa: E402

from tests.support import sandbox as sandboxes  # noqa: E402


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


def release_scenario(box: Sandbox, factory: Any, settings: Any, megabytes: int,
                     wait_lease: bool) -> list[tuple[str, str]]:
    from sqlalchemy import func, select, update

    from gateway.db import unit_of_work
    from gateway.errors import DomainError
    from gateway.identity.accounts import find_user
    from gateway.models import AuditEvent, User
    from gateway.outbox import OutboxMessage
    from gateway.outputs import release, service
    from gateway.outputs.models import OutputRequest
    from gateway.outputs.workflow import OutputState
    from gateway.workspaces.entitlement import workspace_id
    from gateway.workspaces.service import hub_username
    from gateway.workspaces.spec import workspace_home
    from projects.models import Project

    def user(session: Any, name: str) -> User:
        found = find_user(session, name)
        assert found is not None, name
        return found

    count = max(1, megabytes // 20)
    names = [f"fault-release-{n}.txt" for n in range(count)]
    request_id = None
    with factory() as session:
        candidates = list(session.scalars(select(Project.id).where(Project.state == "active").order_by(Project.id)))
    for project_id in candidates:  # the first active project the researcher may take outputs from
        with factory() as session:
            project = session.get(Project, project_id)
            assert project is not None
            folder = workspace_home(settings.homes_root, hub_username(user(session, "researcher")),
                                    workspace_id(project)) / "outputs"
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:  # random hex: text that deflates to about half, so building the zip takes a while
            (folder / name).write_text(os.urandom(megabytes * 2**20 // count // 2).hex())
        try:
            with unit_of_work(factory) as session:
                researcher, project = user(session, "researcher"), session.get(Project, project_id)
                request = service.create_request(session, researcher, project, "Fault script release")
                group = service.save_group(session, researcher, request, "Random text", "Made by bench/faults.py.",
                                           "None needed: no data about people.")
                for name in names:  # as the workspace hands them over (the gateway never reads the folder)
                    service.add_file_bytes(session, researcher, request, settings, name, (folder / name).read_bytes(),
                                           None, group.id, "output")
                service.submit(session, researcher, request, settings)
                request_id = request.id
            break
        except DomainError as exc:
            print(f"project {project_id} takes no output request: {exc.message}", file=sys.stderr)
    assert request_id is not None, "no active project accepts an output request from the researcher"

    def current() -> OutputRequest:
        with factory() as session:
            row = session.get(OutputRequest, request_id)
            assert row is not None
            session.expunge(row)
            return row

    def checked() -> bool:
        with factory() as session:
            row = session.get(OutputRequest, request_id)
            assert row is not None
            return all(f.check_status != "pending" for f in row.files)

    folder = release.releases_dir(settings.outputs_dir)

    def temporary() -> list[Path]:
        return sorted(folder.glob(".tmp-*")) if folder.exists() else []

    def published() -> list[Path]:
        return sorted(p for p in folder.iterdir() if not p.name.startswith(".")) if folder.exists() else []

    worker = box.start([*SDE, "worker", "--interval", "1"], "worker.log")
    wait_for("the automatic checks", checked, timeout=300, every=0.2)
    for checker in ("checker1", "checker2"):
        with unit_of_work(factory) as session:
            request = session.get(OutputRequest, request_id)
            reviewer = user(session, checker)
            for item in request.files:
                service.vote(session, reviewer, request, item, "approve")
            service.submit_review(session, reviewer, request)
    with unit_of_work(factory) as session:
        service.decide(session, user(session, "checker1"), session.get(OutputRequest, request_id), "approve", "")
    started = time.monotonic()
    seen = wait_for("the release package to be written", lambda: temporary() or current().state == "released",
                    timeout=300, every=0.002)
    box.kill(worker, signal.SIGKILL)
    caught = isinstance(seen, list)
    at = f"{time.monotonic() - started:.2f} s after the approval, while {seen[0].name} was on disk" if caught \
        else "too late: the release had finished (raise --release-mb)"
    state, final = current().state, published()
    complete = all(not release.verify_package(p) for p in final)
    rows = [("release: killed mid-release", f"worker SIGKILLed {at}; {count} file(s), {megabytes} MB"),
            ("release: partial release visible?",
             f"no (request '{state}', {len(final)} package(s) under a final name"
             + (", complete" if final and complete else "") + f", {len(temporary())} temporary file(s) hidden)"
             if state == OutputState.APPROVED and complete else f"YES: request '{state}', packages {final}")]
    if not wait_lease:
        with unit_of_work(factory) as session:
            session.execute(update(OutboxMessage).where(OutboxMessage.dedupe_key == f"outputs.release:{request_id}")
                            .values(available_at=dt.datetime.now(dt.UTC)))
    started = time.monotonic()
    worker = box.start([*SDE, "worker", "--interval", "1"], "worker.log")
    wait_for("the release", lambda: current().state == OutputState.RELEASED, timeout=900 if wait_lease else 300,
             every=0.5)
    box.kill(worker)
    done = current()
    packages = published()
    with factory() as session:
        events = session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "output_request.released", AuditEvent.object_id == str(request_id))) or 0
        emails = session.scalar(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.dedupe_key == f"output-released:{request_id}")) or 0
    matches = len(packages) == 1 and packages[0].name == done.package_name \
        and release.sha256_of(packages[0]) == done.package_sha256 and not release.verify_package(packages[0])
    once = matches and events == 1 and emails == 1 and not temporary()
    rows.append(("release: after restart",
                 f"released in {time.monotonic() - started:.1f} s (incl. worker start); {len(packages)} package(s), "
                 f"SHA-256 {'matches' if matches else 'DOES NOT match'} the request; released events {events}, "
                 f"emails {emails}, temporary files {len(temporary())} -> "
                 + ("released once" if once else "NOT as expected")))
    return rows


LEAKS = ("Traceback", "OperationalError", "psycopg", "sqlalchemy", "postgresql://", "pg_hba")


@dataclass
class Answer:
    kind: str  # page, read (API GET) or write (API POST creating a token)
    started: float
    ended: float
    status: int  # 0: no HTTP answer at all
    leaked: bool
    name: str = ""  # the token a write asked for


@dataclass
class Window:
    stopping: float  # `pg_ctl stop -m immediate` called
    stopped: float  # ... and returned: PostgreSQL is gone
    starting: float  # `pg_ctl start` called
    back: float  # ... and returned: PostgreSQL accepts connections


def database_scenario(outage: float, cycles: int) -> list[tuple[str, str]]:
    import psycopg
    import requests

    # The clients share one token; its rate limit is lifted so that every answer is about the database.
    config = {"extracts": {"demo_patients": 500}, "security": {"token_limit": "1000000/minute"}}
    with sandboxes.private_postgres() as pg, sandboxes.sandbox("sde_faults_db", pg.url, config) as box:
        box.run("init")
        box.run("demo", "--seed-only")
        token = box.run("token", "create", "researcher", "--name", "fault script").stdout.strip()
        server, base = box.serve(workers=2)
        worker = box.start([*SDE, "worker", "--interval", "1"], "worker.log")
        browser = requests.Session()
        csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', browser.get(f"{base}/login", timeout=10).text)
        assert csrf is not None
        browser.post(f"{base}/login", data={"csrf_token": csrf.group(1), "username": "researcher",
                                            "password": sandboxes.DEMO_PASSWORD}, timeout=10)
        headers = {"Authorization": f"Bearer {token}"}
        answers: list[Answer] = []
        stop = threading.Event()

        def client(kind: str, number: int) -> None:
            http = requests.Session()
            http.cookies.update(browser.cookies)
            turn = 0
            while not stop.is_set():
                turn += 1
                name = f"fault-{number}-{turn}" if kind == "write" else ""
                began = time.monotonic()
                try:
                    if kind == "page":
                        got = http.get(f"{base}/projects/", allow_redirects=False, timeout=60)
                    elif kind == "read":
                        got = http.get(f"{base}/api/v1/me", headers=headers, timeout=60)
                    else:
                        got = http.post(f"{base}/api/v1/tokens", headers=headers, json={"name": name}, timeout=60)
                    status, leaked = got.status_code, any(x in got.text for x in (*LEAKS, str(pg.port)))
                except requests.RequestException:
                    status, leaked = 0, False
                answers.append(Answer(kind, began, time.monotonic(), status, leaked, name))

        threads = [threading.Thread(target=client, args=(kind, n))
                   for n, kind in enumerate(("page", "page", "read", "read", "write"))]
        workers_before = gunicorn_workers(server.pid)
        for thread in threads:
            thread.start()
        windows: list[Window] = []
        for _ in range(cycles):
            time.sleep(3)
            stopping = time.monotonic()
            pg.stop("immediate")
            stopped = time.monotonic()
            time.sleep(outage)
            starting = time.monotonic()
            pg.start()
            windows.append(Window(stopping, stopped, starting, time.monotonic()))
        time.sleep(5)
        stop.set()
        for thread in threads:
            thread.join(timeout=90)
        worker_alive = worker.poll() is None
        restarted = server.poll() is not None or gunicorn_workers(server.pid) != workers_before

        def tally(rows: list[Answer]) -> str:
            counts = Counter(a.status for a in rows)
            return ", ".join(f"{n} x {status or 'no answer'}" for status, n in sorted(counts.items())) or "none"

        first = windows[0]
        before = [a for a in answers if a.ended < first.stopping]
        in_flight = [a for a in answers for w in windows if a.started < w.stopping <= a.ended]
        down = [a for a in answers for w in windows if w.stopped <= a.started and a.ended < w.starting]
        first_ok: dict[str, float | None] = {}  # the slowest recovery over the cycles
        after_recovery: list[Answer] = []
        for kind in ("page", "read", "write"):
            waits = []
            for n, w in enumerate(windows):
                until = windows[n + 1].stopping if n + 1 < len(windows) else float("inf")
                after = [a for a in answers if a.kind == kind and w.back <= a.started and a.ended < until]
                ok = [a for a in after if a.status in (200, 201)]
                waits.append(min(a.ended for a in ok) - w.back if ok else None)
                if ok:
                    recovered = min(a.started for a in ok)
                    after_recovery += [a for a in after if a.started >= recovered]
            first_ok[kind] = None if None in waits else max(w for w in waits if w is not None)
        fast = sorted(a.ended - a.started for a in down if a.status == 503)
        acknowledged = {a.name for a in answers if a.kind == "write" and a.status == 201}
        refused = {a.name for a in answers if a.kind == "write" and a.status != 201}
        with psycopg.connect(sandboxes.libpq_url(box.database_url)) as conn:
            stored = {row[0] for row in conn.execute("SELECT name FROM api_tokens WHERE name LIKE 'fault-%'")}
        verify = box.run("audit", "verify", check=False)
        leaks = sum(a.leaked for a in answers)
        log = box.log()
        errors = [line for line in log.splitlines() if re.match(r"^\w+(\.\w+)*(Error|Exception)\b", line)]
        if "Traceback" in log:
            print(log[log.index("Traceback") - 200:][:6000], file=sys.stderr)
        rows = [
            ("database: load", "2 clients on a signed-in page (/projects/), 2 on GET /api/v1/me, 1 creating "
             f"tokens with POST /api/v1/tokens; gunicorn 2 workers; `sde worker` running; {cycles} stop(s)"),
            ("database: before the stop", tally(before)),
            ("database: in flight at the stop", tally(in_flight)),
            (f"database: while down ({sum(w.starting - w.stopped for w in windows):.1f} s in all)",
             tally(down) + (f"; 503 answered in p50 {fast[len(fast) // 2] * 1000:.0f} ms, "
                            f"max {fast[-1] * 1000:.0f} ms" if fast else "")),
            ("database: first success after start", ", ".join(
                f"{kind} {'never' if t is None else f'{t * 1000:.0f} ms'}" for kind, t in first_ok.items())
             + " after `pg_ctl start` returned (slowest of the cycles)"),
            ("database: after recovery", tally(after_recovery)),
            ("database: internals leaked?", f"{leaks} answer(s) showed a traceback, driver or address"
             if leaks else "no (no traceback, driver name, URL or port in any answer)"),
            ("database: writes", f"{len(acknowledged)} acknowledged, all stored: {acknowledged <= stored}; "
             f"{len(refused)} refused, stored anyway: {len(refused & stored)} -> "
             + ("nothing lost, nothing half-written" if acknowledged <= stored and not refused & stored
                else "NOT as expected")),
            ("database: server-side errors", f"{log.count('Traceback')} traceback(s) in the gateway log"
             + (f", last: {errors[-1][:160]}" if errors else "")),
            ("database: gateway restarted?", "yes" if restarted else "no (same gunicorn master and workers)"),
            ("database: worker", "still running" if worker_alive else
             f"EXITED with {worker.returncode}: {box.log('worker.log').strip().splitlines()[-1:]}"),
            ("database: audit verify", f"exit {verify.returncode}: {verify.stdout.strip() or verify.stderr.strip()}"),
        ]
    return rows


def gunicorn_workers(master: int) -> set[int]:
    return sandboxes.child_pids(master)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=200_000, help="population for the killed build")
    parser.add_argument("--events", type=int, default=20_000, help="metered readings per active project")
    parser.add_argument("--release-mb", type=int, default=60, help="size of the output files of the killed release")
    parser.add_argument("--outage", type=float, default=5.0, help="seconds PostgreSQL stays stopped")
    parser.add_argument("--cycles", type=int, default=3, help="times PostgreSQL is stopped and started")
    parser.add_argument("--scenarios", default="extract,invoice,release,database",
                        help="comma-separated: extract, invoice, release, database")
    parser.add_argument("--wait-lease", action="store_true", help="wait out the outbox lease instead of expiring it")
    args = parser.parse_args()
    chosen = set(args.scenarios.split(","))
    rows: list[tuple[str, str]] = []
    if chosen & {"extract", "invoice", "release"}:
        config = {"extracts": {"demo_patients": 1000},
                  "outputs": {"max_file_bytes": max(5, args.release_mb) * 2**20}}
        with sandbox("sde_faults", config) as box:
            print(f"database {box.name}, instance {box.workdir}", file=sys.stderr)
            box.run("init")
            box.run("demo", "--seed-only")
            os.environ.update(box.env)
            from gateway.config import load_settings
            from gateway.db import make_engine, make_session_factory

            settings = load_settings()
            if "extract" in chosen:
                shutil.rmtree(settings.source_dir)
                t0 = time.monotonic()
                box.run("synth", "--patients", str(args.patients), "--out", str(settings.source_dir))
                print(f"synthetic population of {args.patients} made in {time.monotonic() - t0:.0f} s",
                      file=sys.stderr)
            engine = make_engine(settings.resolved_database_url)
            factory = make_session_factory(engine)
            try:
                if "extract" in chosen:
                    rows += extract_scenario(box, factory, settings, args.wait_lease)
                if "invoice" in chosen:
                    rows += invoice_scenario(box, factory, args.events)
                if "release" in chosen:
                    rows += release_scenario(box, factory, settings, args.release_mb, args.wait_lease)
                verify = box.run("audit", "verify", check=False)
                rows.append(("audit verify", f"exit {verify.returncode}: "
                             f"{verify.stdout.strip() or verify.stderr.strip()}"))
            finally:
                engine.dispose()
    if "database" in chosen:
        rows += database_scenario(args.outage, args.cycles)
    width = max(len(r[0]) for r in rows)
    print(f"\n{'scenario':<{width}}  outcome")
    for scenario, outcome in rows:
        print(f"{scenario:<{width}}  {outcome}")


if __name__ == "__main__":
    main()
