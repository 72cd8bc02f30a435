"""The worker: outbox delivery with retries, daily jobs (expiry), and generated docs kept current."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway import outbox
from gateway.cli import main
from gateway.config import Settings
from gateway.db import unit_of_work
from gateway.outbox import OutboxMessage
from gateway.worker import run_once
from projects.models import Project
from tests.support import factories as f


def test_emails_are_delivered_once_and_failures_retried(settings: Settings,
                                                        session_factory: sessionmaker[Session]) -> None:
    with unit_of_work(session_factory) as s:
        outbox.send_email(s, "a@example.nhs.uk", "Hello", "Body", dedupe_key="k1")
        outbox.send_email(s, "a@example.nhs.uk", "Hello again", "Body", dedupe_key="k1")  # ignored: same key
        outbox.enqueue(s, "no-such-kind", {})
    delivered, failed = run_once(settings, session_factory)
    assert delivered == 2 and failed == []
    mails = list((Path(settings.instance_dir) / "mail").glob("*.eml"))
    assert len(mails) == 1 and b"Subject: Hello" in mails[0].read_bytes()
    with session_factory() as s:
        rows = {m.kind: m for m in s.scalars(select(OutboxMessage))}
        assert rows["email"].done_at is not None
        broken = rows["no-such-kind"]
        assert broken.done_at is None and broken.attempts == 1 and "no handler" in (broken.last_error or "")
        assert broken.available_at > rows["email"].created_at  # backed off, not retried at once
    assert run_once(settings, session_factory)[0] == 0  # nothing due: delivered mail is not sent twice


def test_daily_job_expires_projects_past_their_end_date(settings: Settings, session_factory: sessionmaker[Session],
                                                        demo_users: dict[str, int]) -> None:
    with unit_of_work(session_factory) as s:
        f.accredit(s, "researcher")
    project_id = f.approved_project(session_factory)
    run_once(settings, session_factory, today=f.TODAY)
    with session_factory() as s:
        assert s.get(Project, project_id).state == "active"  # type: ignore[union-attr]
    run_once(settings, session_factory, today=f.TODAY + dt.timedelta(days=366))
    with session_factory() as s:
        assert s.get(Project, project_id).state == "expired"  # type: ignore[union-attr]
    mails = list((Path(settings.instance_dir) / "mail").glob("*.eml"))
    assert any(b"is now expired" in m.read_bytes() for m in mails)


def test_workflow_docs_match_the_transition_tables() -> None:
    result = CliRunner().invoke(main, ["docs", "diagrams", "--check"])
    assert result.exit_code == 0, result.output


def test_daily_jobs_run_at_start_hourly_and_at_the_first_pass_of_a_new_day() -> None:
    """A project whose end date was yesterday expires (and its workspaces stop) within a pass of midnight: the jobs
    ran only hourly, so a project stayed open up to an hour past its end (workspaces.md says within a minute)."""
    from gateway.worker import daily_jobs_due

    monday, tuesday = dt.date(2026, 12, 7), dt.date(2026, 12, 8)
    assert daily_jobs_due(100.0, None, monday, None)  # at start
    assert not daily_jobs_due(100.0 + 1800, 100.0, monday, monday)
    assert daily_jobs_due(100.0 + 3601, 100.0, monday, monday)  # hourly
    assert daily_jobs_due(100.0 + 60, 100.0, tuesday, monday)  # just past midnight
