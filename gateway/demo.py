"""Demo data for the embedded set-up. Refuses to touch a real deployment."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.config import Settings
from gateway.db import back_dated, unit_of_work, utcnow
from gateway.errors import Conflict
from gateway.identity.accounts import create_local_user, find_user
from gateway.identity.passwords import hash_password
from gateway.models import AuditEvent, User
from gateway.permissions import Role

DEMO_PASSWORD = "demo-password"  # noqa: S105 - documented demo credential, refused in production


@dataclass(frozen=True)
class DemoUser:
    username: str
    display_name: str
    roles: tuple[Role, ...]


DEMO_USERS: tuple[DemoUser, ...] = (
    DemoUser("researcher", "Dr Amara Okafor (researcher)", (Role.RESEARCHER,)),
    DemoUser("researcher2", "Dr Tom Brennan (researcher)", (Role.RESEARCHER,)),
    DemoUser("accreditor", "Priya Shah (accreditation officer)", (Role.ACCREDITATION_OFFICER,)),
    DemoUser("dacchair", "Prof. Helen Marsh (DAC chair)", (Role.DAC_CHAIR, Role.DAC_MEMBER)),
    DemoUser("dac1", "Dr Kwame Mensah (DAC member)", (Role.DAC_MEMBER,)),
    DemoUser("dac2", "Dr Sofia Rossi (DAC member)", (Role.DAC_MEMBER,)),
    DemoUser("laymember", "Janet Clarke (lay member)", (Role.LAY_MEMBER,)),
    DemoUser("checker1", "Ali Hassan (output checker)", (Role.OUTPUT_CHECKER,)),
    DemoUser("checker2", "Grace Liu (output checker)", (Role.OUTPUT_CHECKER,)),
    DemoUser("finance", "Mark Evans (finance)", (Role.FINANCE,)),
    DemoUser("admin", "Sam Taylor (administrator)", (Role.ADMIN,)),
    # a second administrator: releasing a high-risk extract takes two data custodians
    DemoUser("custodian", "Olu Bankole (administrator, data custodian)", (Role.ADMIN,)),
    DemoUser("auditor", "Ruth Adebayo (auditor)", (Role.AUDITOR,)),
)


@functools.cache
def demo_password_hash() -> str:
    """The demo password is public, so one hash serves every demo account (and every test)."""
    return hash_password(DEMO_PASSWORD)


def check_may_seed(session: Session, env: str) -> None:
    if env == "production":
        raise Conflict("Refusing to seed demo data: SDE_ENV is 'production'.")
    real = session.scalars(select(User.username).where(User.is_demo.is_(False)).limit(5)).all()
    if real:
        raise Conflict("Refusing to seed demo data: this database holds real (non-demo) accounts: "
                       + ", ".join(real))


def seed(session: Session, settings: Settings, today: dt.date | None = None) -> list[str]:
    """The whole demo: accounts, organisations and accreditations, then applications and projects."""
    from projects.catalogue import catalogue_at
    from projects.demo_people import DemoCertificateStore, seed_people
    from projects.demo_projects import seed_projects

    day = today or dt.datetime.now(dt.UTC).date()
    created = seed_users(session, settings.env)
    created += seed_people(session, DemoCertificateStore(settings.instance_dir / "certificates"), day)
    created += seed_projects(session, catalogue_at(settings.catalogue_path), settings.dac, day)
    return created


def prepare_data(settings: Settings, factory: sessionmaker[Session]) -> list[str]:
    """Synthetic source data (once), then any queued extract builds, so demo workspaces open at once."""
    from gateway.extracts import service
    from gateway.extracts.synth import generate

    done = []
    if not (settings.source_dir / "catalogue.yaml").exists():
        result = generate(settings.extracts.demo_patients, settings.extracts.demo_seed, settings.source_dir)
        done.append(f"synthetic population of {result.rows['patients']} patients, {result.event_rows} event rows")
    for version in service.run_queued_builds(settings, factory):
        held = " (held: the custodian must review its risk report)" if version.status != "released" else ""
        done.append(f"extract v{version.version} of project {version.project_id}{held}")
    return done


def seed_users(session: Session, env: str) -> list[str]:
    """Create the demo accounts that are missing; returns the usernames created."""
    check_may_seed(session, env)
    created = []
    for demo in DEMO_USERS:
        if find_user(session, demo.username) is None:
            create_local_user(session, "demo-seed", username=demo.username, display_name=demo.display_name,
                              password=DEMO_PASSWORD, email=f"{demo.username}@demo.londonsde.invalid",
                              roles=[r.value for r in demo.roles], is_demo=True,
                              password_hash=demo_password_hash())
            created.append(demo.username)
    return created


# --- a demo with history ------------------------------------------------------------------------------------

HISTORY_MONTHS = 5  # the projects were approved this many calendar months before the month of seeding
FINANCE_DELAY = dt.timedelta(days=2, hours=4)  # finance issues last month's invoices on the 3rd, 10:00
PENDING_ACCREDITATION_AGE = dt.timedelta(days=3, hours=5)  # the queued accreditation was recorded this long ago
DEMO_OUTPUT_TITLE = "Blood pressure control by borough"


def history_start(today: dt.date) -> dt.datetime:
    """When the demo's story begins: the 10th of the month ``HISTORY_MONTHS`` before this one, 09:00 UTC."""
    year, month = today.year, today.month - HISTORY_MONTHS
    while month < 1:
        year, month = year - 1, month + 12
    return dt.datetime(year, month, 10, 9, tzinfo=dt.UTC)


def month_starts(start: dt.datetime, until: dt.datetime) -> list[dt.datetime]:
    """The first of each month after ``start`` up to ``until``, at 06:00 UTC (when the daily job runs)."""
    out = []
    day = (start.date().replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    while (moment := dt.datetime.combine(day, dt.time(6), tzinfo=dt.UTC)) < until:
        out.append(moment)
        day = (day + dt.timedelta(days=32)).replace(day=1)
    return out


def seed_with_history(settings: Settings, factory: sessionmaker[Session]) -> tuple[list[str], list[str]]:
    """`sde demo`: on an empty database, months of history made by the real services at back-dated times.

    The approved projects start ``HISTORY_MONTHS`` months ago; the daily jobs run on the first of each month
    since (seat-months metered, last month's invoices drafted), finance issues and is paid, and an output
    request goes through its automatic checks and two checkers to release. The clock only moves forward, so
    the audit chain stays in time order. A database already seeded gets only what is missing, at today's date.
    Returns (what was created, what was prepared).
    """
    from projects.catalogue import catalogue_at
    from projects.demo_people import DemoCertificateStore, seed_people
    from projects.demo_projects import seed_projects

    now = utcnow()
    start = history_start(now.date())
    with unit_of_work(factory) as session:
        check_may_seed(session, settings.env)
        fresh = find_user(session, "researcher") is None
        last = session.scalar(select(AuditEvent.occurred_at).order_by(AuditEvent.seq.desc()).limit(1))
    if not fresh or (last is not None and last >= start):
        with unit_of_work(factory) as session:
            created = seed(session, settings)
        return created, prepare_data(settings, factory)
    catalogue = catalogue_at(settings.catalogue_path)
    with back_dated(settings.env, start), unit_of_work(factory) as session:
        created = seed_users(session, settings.env)
        created += seed_people(session, DemoCertificateStore(settings.instance_dir / "certificates"), start.date(),
                               pending=False)
        created += seed_projects(session, catalogue, settings.dac, start.date(), approved=True,
                                 ends_from=now.date())
    with back_dated(settings.env, start + dt.timedelta(hours=3)):
        prepared = prepare_data(settings, factory)
        _daily_jobs(settings, factory)
    steps: list[tuple[dt.datetime, Callable[[], object]]] = [
        (start + dt.timedelta(days=40), lambda: prepared.append(_released_output(settings, factory))),
        (now - PENDING_ACCREDITATION_AGE, lambda: created.extend(_pending_accreditation(settings, factory)))]
    for first in month_starts(start, now):
        steps.append((first, lambda: _daily_jobs(settings, factory)))
        steps.append((first + FINANCE_DELAY, lambda: _finance_month(factory)))
    for moment, step in sorted(steps, key=lambda pair: pair[0]):
        if moment < now - dt.timedelta(minutes=5):  # a step due later today is left for the real worker
            with back_dated(settings.env, moment):
                step()
    with unit_of_work(factory) as session:
        created += seed_projects(session, catalogue, settings.dac, now.date(), approved=False)
    _daily_jobs(settings, factory)
    return created, prepared


def _pending_accreditation(settings: Settings, factory: sessionmaker[Session]) -> list[str]:
    """The accreditation in the officer's queue, recorded (by the back-dated clock) days ago."""
    from projects.demo_people import DemoCertificateStore, seed_people

    with unit_of_work(factory) as session:
        return seed_people(session, DemoCertificateStore(settings.instance_dir / "certificates"), utcnow().date())


def _daily_jobs(settings: Settings, factory: sessionmaker[Session]) -> None:
    """What the worker does each day (metering, last month's invoices, expiry reminders), then its outbox."""
    from gateway import outbox, worker

    failed = worker.run_daily_jobs(factory, utcnow().date())
    if failed:
        raise RuntimeError(f"demo history: the daily jobs {', '.join(failed)} failed (see the log)")
    outbox.process(outbox.WorkerContext(settings=settings, factory=factory))


def _finance_month(factory: sessionmaker[Session]) -> None:
    """Finance settles the invoices issued a month ago and issues the drafts the daily job made."""
    from gateway.charging import invoices

    with unit_of_work(factory) as session:
        officer = find_user(session, "finance")
        assert officer is not None
        for invoice in invoices.list_invoices(session, officer, state="issued"):
            if not invoice.is_credit_note:
                invoices.record_payment(session, officer, invoice, f"BACS {invoice.number}")
        for invoice in reversed(invoices.list_invoices(session, officer, state="draft")):
            invoices.issue(session, officer, invoice, utcnow().date())


def _released_output(settings: Settings, factory: sessionmaker[Session]) -> str:
    """researcher2's table from the hypertension extract: made as the notebook makes it, handed over through the
    one intake primitive, checked automatically, approved by two checkers, then released (package and receipt).

    The bytes go to ``service.add_file_bytes``, the call the workspace hand-over endpoint makes once the hub has
    forwarded them; no workspace runs during seeding, so the demo computes the table itself.
    """
    from gateway import outbox
    from gateway.outputs import service
    from gateway.outputs.models import OutputRequest
    from projects.models import Project

    with unit_of_work(factory) as session:
        project = session.scalars(select(Project).where(Project.title.like("Blood pressure%"))).one()
        author = find_user(session, "researcher2")
        assert author is not None
        extract = service.extract_dir(settings, project)
        if extract is None:  # its extract was held for the custodian (a small or unusual source population)
            return f"no output released: the extract of {project.reference} is not live"
        table, sidecar = _demo_table(extract)
        request = service.create_request(session, author, project, DEMO_OUTPUT_TITLE)
        group = service.save_group(session, author, request, "Patients by borough and sex",
                                   "Number of patients in the extract by London borough and sex.",
                                   "Counts under the threshold suppressed, with secondary suppression.")
        service.add_file_bytes(session, author, request, settings, "by_borough.csv", table, sidecar, group.id,
                               "output")
        service.submit(session, author, request, settings)
        request_id = request.id
    context = outbox.WorkerContext(settings=settings, factory=factory)
    outbox.process(context)  # the automatic checks
    for checker in ("checker1", "checker2"):
        with unit_of_work(factory) as session:
            request = session.get(OutputRequest, request_id)
            reviewer = find_user(session, checker)
            assert request is not None and reviewer is not None
            for item in request.files:
                service.vote(session, reviewer, request, item, "approve")
            service.submit_review(session, reviewer, request)
    with unit_of_work(factory) as session:
        request = session.get(OutputRequest, request_id)
        reviewer = find_user(session, "checker1")
        assert request is not None and reviewer is not None
        service.decide(session, reviewer, request, "approve", "")
    outbox.process(context)  # the release
    with factory() as session:
        request = session.get(OutputRequest, request_id)
        assert request is not None
        if request.state != "released":
            raise RuntimeError(f"demo history: output request {request_id} is {request.state}, not released")
    return f"output request {request_id} released"


def _demo_table(extract: Path) -> tuple[bytes, bytes]:
    """The CSV and its disclosure-control record, as the notebook's ``save_output`` writes them."""
    import hashlib
    import json
    import tempfile

    import pandas as pd

    import disclosure_control as dc

    manifest = json.loads((extract / "manifest.json").read_text())
    table = next(t for t in manifest["tables"] if t["dataset"] == "patients")
    output = dc.crosstab("borough", "sex", data=pd.read_parquet(extract / table["file"]),
                         dataset="patients").suppressed()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "by_borough.csv"
        output.to_csv(path)
        data = path.read_bytes()
    record = output.record()
    sidecar = {"name": "by_borough", "file": "by_borough.csv", "sha256": hashlib.sha256(data).hexdigest(),
               "status": str(output.status), "record": record if isinstance(record, dict) else record.to_dict()}
    return data, json.dumps(sidecar, indent=2, sort_keys=True, default=str).encode()
