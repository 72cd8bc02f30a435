"""Domain events run in the decision's transaction: a subscriber that fails undoes the decision and its audit."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from gateway import audit
from gateway.charging.models import FrozenQuote, MeterEvent
from gateway.db import unit_of_work
from gateway.extracts.models import ExtractBuild
from gateway.models import AuditEvent
from gateway.outbox import OutboxMessage
from projects import dac, events
from projects.models import Application, Project
from tests.support import factories as f


def _counts(s: Session) -> dict[str, int]:
    return {model.__name__: s.scalar(select(func.count()).select_from(model)) or 0
            for model in (Project, FrozenQuote, MeterEvent, ExtractBuild, OutboxMessage, AuditEvent)}


def test_a_failing_subscriber_rolls_back_the_approval_and_its_audit(session_factory: sessionmaker[Session],
                                                                     demo_users: dict[str, int]) -> None:
    app_id = f.awaiting_decision(session_factory)
    with session_factory() as s:
        before = _counts(s)
        state_before = s.get(Application, app_id).state  # type: ignore[union-attr]
    seen: dict[str, int] = {}

    def failing(s: Session, event: events.ApplicationApproved) -> None:
        seen.update(_counts(s))  # what the decision and the subscribers before this one had written
        raise RuntimeError("mail server on fire")

    def approve() -> None:
        with unit_of_work(session_factory) as s:
            app = s.get(Application, app_id)
            assert app is not None
            dac.decide(s, f.user(s, "dacchair"), app, f.DAC, outcome="approved", conditions="", message="",
                       access_end_date=f.TODAY + dt.timedelta(days=365), today=f.TODAY)

    events.SUBSCRIBERS.subscribe(events.ApplicationApproved, failing)
    try:
        with pytest.raises(RuntimeError, match="on fire"):
            approve()
    finally:
        events.SUBSCRIBERS.unsubscribe(events.ApplicationApproved, failing)
    # Inside the transaction the project, its quote and fees, the extract build and the audit rows existed ...
    for name in ("Project", "FrozenQuote", "MeterEvent", "ExtractBuild", "OutboxMessage", "AuditEvent"):
        assert seen[name] > before[name], name
    # ... and none of it, nor the application's move, survived the failure.
    with session_factory() as s:
        assert _counts(s) == before
        assert s.get(Application, app_id).state == state_before  # type: ignore[union-attr]
        assert audit.verify(s).ok
    approve()  # without the failing subscriber the same decision goes through, side effects and all
    with session_factory() as s:
        after = _counts(s)
        assert all(after[name] > before[name] for name in before)
        assert s.get(Application, app_id).state == "approved"  # type: ignore[union-attr]
