"""Per-request state: the database session, the signed-in user, and running a command."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from flask import current_app, g, request
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from gateway.config import Settings
from gateway.db import begin_transaction
from gateway.models import User
from projects.catalogue import Catalogue

T = TypeVar("T")
log = logging.getLogger(__name__)


def settings() -> Settings:
    return current_app.extensions["sde_settings"]


def catalogue() -> Catalogue:
    from projects.catalogue import catalogue_at

    return catalogue_at(settings().catalogue_path)


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def db() -> Session:
    """The request's session, opened on first use and closed when the request ends. A page's GET reads without a
    transaction on PostgreSQL (gateway.db.make_reading_session_factory); ``run`` starts one for any change. An API
    GET keeps its read transaction (its token's bookkeeping is written on the same session)."""
    if "db_session" not in g:
        kind = "sde_sessionmaker"
        if request.method in SAFE_METHODS:
            kind = "sde_read_sessionmaker" if request.path.startswith("/api/") else "sde_page_sessionmaker"
        factory: sessionmaker[Session] = current_app.extensions[kind]
        g.db_session = factory()
    return g.db_session


def current_user() -> User | None:
    return g.get("user")


def require_user() -> User:
    user = current_user()
    if user is None:  # the access hook guarantees a user on protected views
        raise RuntimeError("no signed-in user on a protected view")
    return user


def run(command: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run one service call as one transaction: its change and its audit event commit together."""
    session = db()
    begin_transaction(session)  # a GET's session reads without a transaction until now
    try:
        result = command(session, *args, **kwargs)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return result


def end_transaction() -> None:
    """Finish the request's read before slow work (a hub call) that runs its own short transactions."""
    if "db_session" in g:
        g.db_session.rollback()


def close_db(_exc: BaseException | None = None) -> None:
    session: Session | None = g.pop("db_session", None)
    if session is None:
        return
    try:
        session.rollback()
    except (OperationalError, InterfaceError) as exc:
        # The database went away after the view ran (a restart, a failover): the transaction died with the
        # connection, which is invalidated and left out of the pool. The answer already made must still reach
        # the person, not turn into a server error.
        log.warning("database connection lost at the end of a request: %s", type(exc).__name__)
    session.close()
