"""A page's GET reads without a transaction on PostgreSQL (no BEGIN, no ROLLBACK: see
gateway.db.make_reading_session_factory), and still a change made while answering one commits together with its audit
event, or not at all.

Every way a GET handler can write was looked for (issue 18): ``run`` (which starts a real transaction first), the
audited downloads and refusals (gateway/web/recorded.py: their own unit of work on the writing sessions), the hub's
hand-over (its own unit of work), and API token bookkeeping (an API GET keeps its read transaction). Anything else
sent on a reading session that is not a plain query is refused before it reaches the database.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask, g
from flask.testing import FlaskClient
from sqlalchemy import event, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from gateway import audit
from gateway.audit import AuditEvent
from gateway.db import WriteWithoutTransaction
from gateway.models import User
from gateway.web.context import db, run
from tests.conftest import sign_in_session


def _in_transaction(session: Session) -> bool:
    """Whether the connection the session is using has a transaction open on the server's side."""
    raw: Any = session.connection().connection.dbapi_connection
    if hasattr(raw, "info"):  # psycopg
        from psycopg.pq import TransactionStatus

        return bool(raw.info.transaction_status != TransactionStatus.IDLE)
    return bool(raw.in_transaction)  # sqlite3


def test_a_page_read_sends_no_begin_and_no_rollback_on_postgresql(app: Flask, client: FlaskClient, backend: str,
                                                                  session_factory: sessionmaker[Session],
                                                                  demo_users: dict[str, int]) -> None:
    sign_in_session(client, session_factory, "researcher")
    seen: list[bool] = []

    def after(conn: Any, *_args: Any) -> None:
        raw = conn.connection.dbapi_connection
        seen.append(raw.info.transaction_status != 0 if hasattr(raw, "info") else raw.in_transaction)

    event.listen(app.extensions["sde_engine"], "after_cursor_execute", after)
    assert client.get("/home").status_code == 200
    assert client.get("/projects/").status_code == 200
    assert seen
    # PostgreSQL: every statement ran on its own (the server's status idle after each); SQLite keeps its transaction
    assert set(seen) == ({False} if backend == "postgresql" else {True})


def _rename(user_id: int, name: str, fail: bool, states: list[bool]) -> Any:
    def command(session: Session) -> None:
        user = session.get(User, user_id)
        assert user is not None
        user.display_name = name
        session.flush()
        audit.record(session, user, "user.renamed", "user", user_id, {"to": name})
        states.append(_in_transaction(session))
        if fail:
            raise RuntimeError("after the change and its event, before the commit")
    return command


def _committed(session_factory: sessionmaker[Session], user_id: int) -> tuple[str, int]:
    with session_factory() as s:
        name = s.scalar(select(User.display_name).where(User.id == user_id))
        events = s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "user.renamed"))
        assert name is not None and events is not None
        return name, events


def test_a_change_on_a_get_commits_with_its_audit_event_or_not_at_all(app: Flask,
                                                                      session_factory: sessionmaker[Session],
                                                                      demo_users: dict[str, int]) -> None:
    user_id = demo_users["researcher"]
    before, _ = _committed(session_factory, user_id)
    states: list[bool] = []
    with app.test_request_context("/home", method="GET"):
        g.user = db().get(User, user_id)  # read first, as a page does, on the reading session
        with pytest.raises(RuntimeError):
            run(_rename(user_id, "Renamed, then refused", fail=True, states=states))
        assert _committed(session_factory, user_id) == (before, 0)  # neither the change nor its event
        run(_rename(user_id, "Renamed on a GET", fail=False, states=states))
        assert _committed(session_factory, user_id) == ("Renamed on a GET", 1)  # both
        assert db().scalar(select(User.username).where(User.id == user_id)) == "researcher"  # reads go on after
    assert states == [True, True]  # each ran inside one server-side transaction


def test_a_change_before_any_read_on_a_get_runs_in_one_transaction(app: Flask, session_factory: sessionmaker[Session],
                                                                   demo_users: dict[str, int]) -> None:
    user_id, states = demo_users["researcher"], list[bool]()
    with app.test_request_context("/register", method="GET"):  # nothing read yet on the request's session
        run(_rename(user_id, "Renamed first thing", fail=False, states=states))
    assert _committed(session_factory, user_id) == ("Renamed first thing", 1) and states == [True]


def test_a_change_on_a_page_read_outside_run_is_refused_and_never_committed(app: Flask, backend: str,
                                                                            session_factory: sessionmaker[Session],
                                                                            demo_users: dict[str, int]) -> None:
    """PostgreSQL refuses the stray change before it reaches the server; SQLite's page read keeps its deferred
    transaction, so the change is flushed there but rolled back when the request ends. Either way nothing commits."""
    user_id = demo_users["researcher"]
    before, _ = _committed(session_factory, user_id)
    with app.test_request_context("/home", method="GET"):
        user = db().get(User, user_id)
        assert user is not None
        user.display_name = "Changed without run"
        if backend == "postgresql":
            with pytest.raises(WriteWithoutTransaction):
                db().flush()
            db().rollback()
            for statement in ("SELECT id FROM users FOR UPDATE", "SELECT pg_advisory_xact_lock(1)",
                              "UPDATE users SET display_name = 'x'"):
                with pytest.raises(WriteWithoutTransaction):
                    db().execute(text(statement))
        else:
            db().flush()
            db().execute(text("UPDATE users SET display_name = 'x'"))
    assert _committed(session_factory, user_id) == (before, 0)
