"""Engine, session factory and the declarative base shared by every package."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import logging
import re
import select
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from sqlalchemy import DateTime, Engine, MetaData, create_engine, event, text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, ORMExecuteState, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

log = logging.getLogger(__name__)
T = TypeVar("T")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Store UTC everywhere; hand back aware datetimes on SQLite and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use gateway.db.utcnow()")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


# How far the demo's clock runs behind the real one; None (everywhere but demo seeding) means the real time.
_CLOCK_OFFSET: ContextVar[dt.timedelta | None] = ContextVar("sde_clock_offset", default=None)


def utcnow() -> dt.datetime:
    """Now, in UTC: the one clock the services read (the demo may run it behind, see ``back_dated``)."""
    offset = _CLOCK_OFFSET.get()
    now = dt.datetime.now(dt.UTC)
    return now if offset is None else now - offset


@contextmanager
def back_dated(env: str, moment: dt.datetime) -> Iterator[None]:
    """Run the block with ``utcnow()`` starting at ``moment`` and ticking on from there (this context only).

    Only for seeding the demo, so that the real services write a history with real dates. Refused in
    production, for a moment in the future, and while another back-dating is active (no hidden nesting).
    """
    if env == "production":
        raise RuntimeError("Refusing to back-date the clock: SDE_ENV is 'production'.")
    if moment.tzinfo is None:
        raise ValueError("naive datetime given; back-date to an aware UTC moment")
    offset = dt.datetime.now(dt.UTC) - moment
    if offset < dt.timedelta(0):
        raise ValueError("the clock can only be set back, never forward")
    if _CLOCK_OFFSET.get() is not None:
        raise RuntimeError("the clock is already back-dated")
    token = _CLOCK_OFFSET.set(offset)
    try:
        yield
    finally:
        _CLOCK_OFFSET.reset(token)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine; SQLite gets foreign keys on and waits for locks instead of failing."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy, not pysqlite, decide when transactions begin, so BEGIN IMMEDIATE
            # can be issued and the audit head is locked before it is read.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # Writers take the lock up front (no failed read-to-write upgrades); sessions bound with
            # the READ_MOSTLY option (safe HTTP methods, exports) begin deferred and block nobody.
            deferred = conn.get_execution_options().get(READ_MOSTLY, False)
            conn.exec_driver_sql("BEGIN" if deferred else "BEGIN IMMEDIATE")

        return engine
    engine = create_engine(url, pool_pre_ping=True, **kwargs)
    _quick_ping(engine.dialect)
    event.listen(engine, "before_cursor_execute", _refuse_writes_without_transaction)
    return engine


def _quick_ping(dialect: Dialect) -> None:
    """Check a pooled connection before use without a round trip when its socket shows it is idle and open.

    An idle connection has nothing to read: if its socket is readable, the server closed it (a restart, a crash:
    end of file) or sent something unasked, and the dialect's own ping (a query) decides. Otherwise the connection is
    handed out as is, saving one round trip per request. A connection lost without the server closing it (a cut
    network) fails on its first query as it would after a ping, and the pool then drops every older connection.
    """
    full_ping = dialect.do_ping

    def do_ping(dbapi_connection: Any) -> bool:
        try:
            readable, _, _ = select.select([dbapi_connection.fileno()], [], [], 0)
        except (OSError, ValueError, AttributeError):  # closed, or a driver without a socket: ask the server
            return bool(full_ping(dbapi_connection))
        return True if not readable else bool(full_ping(dbapi_connection))

    dialect.do_ping = do_ping  # type: ignore[method-assign]


READ_MOSTLY = "sde_read_mostly"
# Sessions that read without a transaction (PostgreSQL only, see ``make_reading_session_factory``).
AUTOCOMMIT_READS = "sde_autocommit_reads"
_AUTOCOMMIT = "AUTOCOMMIT"
# What may run on such a session before ``begin_transaction``: a query that changes nothing and locks nothing.
_READ = re.compile(r"\s*(SELECT|WITH|SHOW)\b", re.IGNORECASE)
_NOT_A_READ = re.compile(r"\b(INSERT|UPDATE|DELETE|MERGE|SHARE|pg_advisory_\w+)\b", re.IGNORECASE)  # FOR UPDATE too


class WriteWithoutTransaction(RuntimeError):
    """A change sent on a session that reads without a transaction, where it would commit statement by statement."""


@functools.lru_cache(maxsize=2048)
def _only_reads(statement: str) -> bool:
    """Whether a statement changes and locks nothing. Remembered per statement text: a page sends the same few
    statements, each built once per process, on every request."""
    return bool(_READ.match(statement)) and not _NOT_A_READ.search(statement)


def _refuse_writes_without_transaction(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
    options = conn.get_execution_options()
    if options.get(AUTOCOMMIT_READS) and options.get("isolation_level") == _AUTOCOMMIT and not _only_reads(statement):
        raise WriteWithoutTransaction("a change on a session reading without a transaction: call begin_transaction "
                                      f"(gateway.web.context.run does) first: {statement[:80]!r}")


def serialise(session: Session, name: str) -> None:
    """Hold a lock named ``name`` until the transaction ends, so a check-then-insert under that name runs one at a
    time (PostgreSQL: an advisory transaction lock; SQLite already runs one writer at a time from BEGIN IMMEDIATE).

    For a rule no constraint can hold, such as "one waiting request per package, whatever its spelling".
    """
    if session.get_bind().dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def make_session_factory(engine: Engine, read_mostly: bool = False) -> sessionmaker[Session]:
    """Sessions for every entry point (app, CLI, worker, hub tools).

    Every model module is imported first: a mapper whose foreign keys name a table in a module
    nobody imported (a CLI command that needs only `User`, say) cannot be configured.
    """
    import gateway.model_registry  # noqa: F401 (registers every table; imported late: it imports this module)

    bind = engine.execution_options(**{READ_MOSTLY: True}) if read_mostly else engine
    return sessionmaker(bind=bind, expire_on_commit=False)


def make_reading_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for requests that only read (a page's GET), which on PostgreSQL send no BEGIN and no ROLLBACK: each
    query runs on its own, as it would in a READ COMMITTED transaction (every statement sees the data committed when
    it starts), two round trips fewer per request. Nothing can be changed on them until ``begin_transaction`` starts a
    real transaction: any other statement is refused (``_refuse_writes_without_transaction``), so a change and its
    audit event still commit together or not at all. SQLite (in-process, no round trips) keeps its deferred
    transaction, as ``make_session_factory(read_mostly=True)``."""
    if engine.dialect.name != "postgresql":
        return make_session_factory(engine, read_mostly=True)
    factory = make_session_factory(engine)
    factory.configure(bind=engine.execution_options(**{READ_MOSTLY: True, AUTOCOMMIT_READS: True,
                                                        "isolation_level": _AUTOCOMMIT}))
    return factory


def begin_transaction(session: Session) -> None:
    """Before changing anything, or a read that needs a transaction (rows streamed through a server-side cursor), on
    a session that may be reading without one: end the reading (nothing to commit, no round trip) and start a real
    transaction for what follows. Objects already read stay loaded. A no-op on every other session, and once the
    real transaction has begun."""
    bind = session.get_bind()
    if bind.get_execution_options().get("isolation_level") != _AUTOCOMMIT:
        return
    if session.in_transaction():
        if session.connection().get_execution_options().get("isolation_level") != _AUTOCOMMIT:
            return  # already writing
        session.commit()
    # the server's own default, read at the engine's first connection (PostgreSQL's is READ COMMITTED)
    level = bind.dialect.default_isolation_level or "READ COMMITTED"
    session.connection(execution_options={"isolation_level": level})


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commit when the block ends, roll back everything if it raises."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


# --- work that must follow the transaction's outcome ----------------------------------------------------------

_AFTER_COMMIT = "sde_after_commit"
_AFTER_ROLLBACK = "sde_after_rollback"


def on_commit(session: Session, action: Callable[[], None]) -> None:
    """Run ``action`` after the session's transaction commits, never if it rolls back.

    For a file-system change that must follow the database (a pointer to a released extract): doing it
    before the commit could leave it moved with no record. Pair it with an outbox message if a crash between
    the commit and the action must be repaired.
    """
    session.info.setdefault(_AFTER_COMMIT, []).append(action)


def on_rollback(session: Session, action: Callable[[], None]) -> None:
    """Run ``action`` if the session's transaction rolls back (undo a file written for a row never saved)."""
    session.info.setdefault(_AFTER_ROLLBACK, []).append(action)


def _run(actions: list[Callable[[], None]]) -> None:
    for action in actions:
        try:
            action()
        except Exception:  # the transaction's outcome stands; a paired outbox message or sweep repairs it
            log.exception("an after-transaction action failed")


# How many transactions sessions of this process have committed (read, never reset): a cache of data built from the
# database can tell, without asking it, that this process may have changed something since the cache was checked.
_commits = 0


def commits_in_process() -> int:
    """A number that changes after every commit of an ORM session in this process (see ``_after_commit``)."""
    return _commits


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    global _commits
    # After the commit: a reader that saw the number before this change reads the database after it. Two threads
    # adding at once may add one between them; the number still changes, which is all a reader compares.
    _commits += 1
    session.info.pop(_AFTER_ROLLBACK, None)
    _run(session.info.pop(_AFTER_COMMIT, []))


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_AFTER_COMMIT, None)
    _run(session.info.pop(_AFTER_ROLLBACK, []))


# --- reads a page needs more than once --------------------------------------------------------------------------

_READ_MEMO = "sde_read_memo"


def remembered(session: Session, key: Hashable, read: Callable[[], T]) -> T:
    """``read()``'s answer, kept on the session until anything is written or its transaction ends.

    For a read that several parts of one page need (a project's invoices for its budget and for its statement):
    the second asks nothing of the database. Whatever the session writes through the ORM (a pending change, a
    flush, an INSERT, UPDATE or DELETE sent with ``session.execute``) forgets every answer. Not seen: a write sent
    on ``session.connection()`` directly, and what other transactions commit meanwhile; so a decision (may this
    workspace start?) reads afresh instead of through here.
    """
    memo: dict[Hashable, Any] = session.info.setdefault(_READ_MEMO, {})
    if key in memo and not (session.new or session.dirty or session.deleted):
        return memo[key]  # type: ignore[no-any-return]
    answer = read()
    memo[key] = answer
    return answer


@event.listens_for(Session, "after_flush")
@event.listens_for(Session, "after_transaction_end")
def _forget_reads(session: Session, *_: object) -> None:
    session.info.pop(_READ_MEMO, None)


@event.listens_for(Session, "do_orm_execute")
def _forget_reads_after_write(state: ORMExecuteState) -> None:
    if not state.is_select:
        state.session.info.pop(_READ_MEMO, None)
