"""Emails that follow a decision are queued by subscribers in the decision's transaction: no decision, no email."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.db import unit_of_work, utcnow
from gateway.outbox import OutboxMessage
from projects import accreditation, dac, events, lifecycle
from projects.models import Accreditation, Application, Project
from tests.support import factories as f


def _subjects(s: Session) -> list[str]:
    return [m.payload["subject"] for m in s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "email"))]


def test_a_decision_that_rolls_back_sends_no_email(session_factory: sessionmaker[Session],
                                                   demo_users: dict[str, int]) -> None:
    app_id = f.awaiting_decision(session_factory)
    with session_factory() as s:
        reference = s.get(Application, app_id).reference  # type: ignore[union-attr]
    subject = f"Decision on {reference}"
    queued_inside: list[list[str]] = []

    def failing(s: Session, event: events.ApplicationDecided) -> None:
        queued_inside.append(_subjects(s))  # the notification subscriber ran before this one
        raise RuntimeError("a later subscriber failed")

    events.SUBSCRIBERS.subscribe(events.ApplicationDecided, failing)
    try:
        with pytest.raises(RuntimeError, match="later subscriber"), unit_of_work(session_factory) as s:
            app = s.get(Application, app_id)
            assert app is not None
            dac.decide(s, f.user(s, "dacchair"), app, f.DAC, outcome="approved", conditions="", message="",
                       access_end_date=f.TODAY + dt.timedelta(days=365), today=f.TODAY)
    finally:
        events.SUBSCRIBERS.unsubscribe(events.ApplicationDecided, failing)
    assert subject in queued_inside[0]
    with session_factory() as s:
        assert subject not in _subjects(s)
        assert s.get(Application, app_id).state == "under_review"  # type: ignore[union-attr]
    # The same decision, when it commits, sends the applicant its email once.
    with unit_of_work(session_factory) as s:
        app = s.get(Application, app_id)
        assert app is not None
        dac.decide(s, f.user(s, "dacchair"), app, f.DAC, outcome="approved", conditions="", message="",
                   access_end_date=f.TODAY + dt.timedelta(days=365), today=f.TODAY)
    with session_factory() as s:
        mail = [m.payload for m in s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "email"))
                if m.payload["subject"] == subject]
        assert [m["to"] for m in mail] == [f.user(s, "researcher").email]


def test_a_verification_that_rolls_back_sends_no_email(session_factory: sessionmaker[Session],
                                                       demo_users: dict[str, int]) -> None:
    with unit_of_work(session_factory) as s:
        holder = f.user(s, "researcher")
        record = Accreditation(user_id=holder.id, scheme="ONS Accredited Researcher (Digital Economy Act)",
                               level="full", number="ONS-4242", training_date=f.TODAY - dt.timedelta(days=30),
                               expiry_date=utcnow().date() + dt.timedelta(days=365), status="pending")
        s.add(record)
        s.flush()
        record_id = record.id

    def failing(s: Session, event: events.AccreditationVerified) -> None:
        assert "Your accreditation has been verified" in _subjects(s)
        raise RuntimeError("a later subscriber failed")

    events.SUBSCRIBERS.subscribe(events.AccreditationVerified, failing)
    try:
        with pytest.raises(RuntimeError, match="later subscriber"), unit_of_work(session_factory) as s:
            pending = s.get(Accreditation, record_id)
            assert pending is not None
            accreditation.verify_accreditation(s, f.user(s, "accreditor"), pending)
    finally:
        events.SUBSCRIBERS.unsubscribe(events.AccreditationVerified, failing)
    with session_factory() as s:
        assert "Your accreditation has been verified" not in _subjects(s)
        assert s.get(Accreditation, record_id).status == "pending"  # type: ignore[union-attr]


def test_closing_queues_the_key_destruction_then_the_members_emails(session_factory: sessionmaker[Session],
                                                                    demo_users: dict[str, int]) -> None:
    with unit_of_work(session_factory) as s:
        f.accredit(s, "researcher")
    project_id = f.approved_project(session_factory)
    with unit_of_work(session_factory) as s:
        project = s.get(Project, project_id)
        assert project is not None
        lifecycle.suspend(s, f.user(s, "admin"), project, "Audit pending")
        lifecycle.reinstate(s, f.user(s, "admin"), project, "Audit passed")
        lifecycle.close(s, f.user(s, "researcher"), project, "Study finished")
        reference = project.reference
        members = sorted(m.user.email for m in project.members)
    with session_factory() as s:
        rows = list(s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
    kinds = [(m.kind, m.dedupe_key) for m in rows if m.kind == "extract.destroy_key"]
    assert kinds == [("extract.destroy_key", f"destroy-key:{project_id}")]  # closing only, not the suspension
    key_at = next(i for i, m in enumerate(rows) if m.kind == "extract.destroy_key")
    closed = [(i, m.payload["to"]) for i, m in enumerate(rows)
              if m.kind == "email" and m.payload["subject"] == f"Project {reference} is now closed"]
    assert sorted(to for _, to in closed) == members
    assert all(i > key_at for i, _ in closed)
