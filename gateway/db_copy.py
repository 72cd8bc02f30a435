"""Copy a gateway's database into another, empty one (SQLite to PostgreSQL, or back), then prove the copy.

Rows are read with SQLAlchemy Core ``select(table)`` and written with ``insert(table)``, so every value goes
through the model types (UTCDateTime, JSON, Boolean, Date) exactly as the gateway itself reads and writes it.
All writes happen in one target transaction: a failure anywhere leaves the target with no data. Before that
transaction commits, row counts and the audit chain are checked on the target; the audit log is copied event
by event, so a chain that verifies with the source's head hash proves no event was altered on the way.

The database's own guards stay on (no trigger is disabled, no superuser setting is used):

- the append-only tables (audit events, tariff versions, frozen quotes) accept INSERT, which is all a copy does;
- ``audit_head``, created by the first migration, is set to the source's head with an UPDATE, as every
  ``audit.record`` does;
- an invoice's lines may only be added while it is a draft, so each invoice is written as a draft, its lines
  added, then it is moved to its final state: the same path the charging service took.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from alembic.runtime.migration import MigrationContext
from sqlalchemy import (
    JSON,
    Column,
    ColumnElement,
    Connection,
    Engine,
    Row,
    Table,
    and_,
    bindparam,
    func,
    insert,
    inspect,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session

from gateway import audit
from gateway.backup import EMPTY_DB_TABLES, BackupError, _backend, _sqlite_path
from gateway.db import READ_MOSTLY, make_engine
from gateway.migrate import head_revision, upgrade
from gateway.model_registry import metadata

BATCH = 1000  # rows per read and per INSERT: memory stays bounded whatever the size of a table
AUDIT_HEAD = "audit_head"
# Copied together with invoices (see _copy_invoices); nothing may refer to it, which plan() checks.
INVOICE_LINES = "invoice_lines"
# An invoice as it was while its lines were added: a draft, not yet paid or voided (issued_* may stay set:
# the check constraints allow that for a draft).
DRAFT_SHAPE: dict[str, Any] = {"state": "draft", "paid_at": None, "paid_by_id": None, "voided_at": None,
                               "voided_by_id": None, "void_reason": None}

Part = Literal["all", "unlinked", "linked"]


class CopyError(Exception):
    """The copy was refused or failed; the target holds no copied data."""


@dataclass(frozen=True)
class Step:
    """Some rows of one table: all of them, or (for a table whose foreign keys form a cycle) those whose
    cycle-breaking columns are all NULL ("unlinked", copied first) or not ("linked", copied later)."""

    table: Table
    part: Part = "all"
    split: tuple[Column[Any], ...] = ()

    @property
    def where(self) -> ColumnElement[bool] | None:
        if self.part == "unlinked":
            return and_(*(c.is_(None) for c in self.split))
        if self.part == "linked":
            return or_(*(c.is_not(None) for c in self.split))
        return None

    def describe(self) -> str:
        if self.part == "all":
            return self.table.name
        columns = ", ".join(c.name for c in self.split)
        return f"{self.table.name} ({columns} {'empty' if self.part == 'unlinked' else 'set'})"


@dataclass
class CopyResult:
    source: str
    target: str
    revision: str | None
    rows: dict[str, int]
    events: int
    head_seq: int
    head_hash: str
    copied_event_seq: int
    sequences_reset: int
    target_was_migrated: bool


# --- the order of the copy ----------------------------------------------------------------------------------------

def plan(tables: Sequence[Table] | None = None) -> list[Step]:
    """Every table in an order that satisfies every foreign key, row by row.

    A foreign key to the same table is satisfied by copying rows in primary-key order (a row names an earlier
    one). Tables whose foreign keys form a cycle (a project names its application; an amendment names its
    project) are split on the cycle's nullable columns: the rows where they are NULL go first, the rest after
    the tables they name. Refuses a cycle that no nullable column breaks.
    """
    ordered = [t for t in (tables if tables is not None else metadata.sorted_tables)
               if t.name not in (AUDIT_HEAD, INVOICE_LINES)]
    names = {t.name for t in ordered}
    rank = {t.name: i for i, t in enumerate(ordered)}
    for t in ordered:
        if any(fk.column.table.name == INVOICE_LINES for fk in t.foreign_keys):
            raise CopyError(f"{t.name} refers to {INVOICE_LINES}, which is copied with invoices: "
                            "teach gateway/db_copy.py the new order")

    parents = {t.name: {fk.column.table.name for fk in t.foreign_keys
                        if fk.column.table.name != t.name and fk.column.table.name in names} for t in ordered}
    reach: dict[str, set[str]] = {}
    for name in names:
        seen, todo = set(), list(parents[name])
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                todo.extend(parents[current])
        reach[name] = seen

    def in_cycle(a: str, b: str) -> bool:
        return a != b and b in reach[a] and a in reach[b]

    split = {t.name: [fkc for fkc in t.foreign_key_constraints
                      if in_cycle(t.name, fkc.referred_table.name) and all(c.nullable for c in fkc.columns)]
             for t in ordered}
    nodes: dict[str, list[Step]] = {}
    for t in ordered:
        columns = tuple(c for fkc in split[t.name] for c in fkc.columns)
        nodes[t.name] = ([Step(t, "unlinked", columns), Step(t, "linked", columns)] if columns else [Step(t)])

    needs: dict[Step, set[Step]] = {step: set() for steps in nodes.values() for step in steps}
    for t in ordered:
        for fkc in t.foreign_key_constraints:
            parent = fkc.referred_table.name
            if parent == t.name or parent not in names:
                continue
            mine = [nodes[t.name][-1]] if fkc in split[t.name] else nodes[t.name]
            # A table on the same cycle as a split parent can only name the parent's unlinked rows: the linked
            # ones name it in turn. (If the data says otherwise the foreign key refuses the row, loudly.)
            theirs = nodes[parent][:1] if split[parent] and in_cycle(t.name, parent) else nodes[parent]
            for step in mine:
                needs[step].update(theirs)
        if len(nodes[t.name]) == 2:
            needs[nodes[t.name][1]].add(nodes[t.name][0])

    result: list[Step] = []
    done: set[Step] = set()
    pending = sorted(needs, key=lambda s: (rank[s.table.name], s.part != "unlinked"))
    while pending:
        ready = next((s for s in pending if needs[s] <= done), None)
        if ready is None:
            raise CopyError("the foreign keys of " + ", ".join(sorted({s.table.name for s in pending}))
                            + " form a cycle that no nullable column breaks")
        result.append(ready)
        done.add(ready)
        pending.remove(ready)
    return result


# --- reading and writing -----------------------------------------------------------------------------------------

def _json_columns(table: Table) -> list[Column[Any]]:
    return [c for c in table.columns if isinstance(c.type, JSON)]


def _read(conn: Connection, table: Table, where: ColumnElement[bool] | None = None) -> Iterator[list[dict[str, Any]]]:
    """Batches of rows as insert parameters, in primary-key order.

    A JSON column can hold SQL NULL or JSON ``null``; both read back as None, so each is marked here and
    written back as what it was.
    """
    json_columns = _json_columns(table)
    query = select(table, *(c.is_(None) for c in json_columns)).order_by(*table.primary_key.columns)
    if where is not None:
        query = query.where(where)
    keys = [c.key for c in table.columns]
    width = len(keys)
    for batch in conn.execution_options(yield_per=BATCH).execute(query).partitions():
        rows = []
        for row in batch:
            values = dict(zip(keys, row[:width], strict=True))
            for i, column in enumerate(json_columns):
                value = values.pop(column.key)
                values[f"{column.key}__json"] = None if row[width + i] else (JSON.NULL if value is None else value)
            rows.append(values)
        yield rows


def _insert_statement(table: Table) -> Any:
    # none_as_null: a Python None written here is SQL NULL; JSON.NULL is JSON null (see _read).
    return insert(table).values({c.key: bindparam(f"{c.key}__json", type_=JSON(none_as_null=True))
                                 for c in _json_columns(table)})


def _insert_rows(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(_insert_statement(table), rows)


def _copy_step(src: Connection, dst: Connection, step: Step) -> int:
    copied = 0
    for rows in _read(src, step.table, step.where):
        _insert_rows(dst, step.table, rows)
        copied += len(rows)
    return copied


def _copy_invoices(src: Connection, dst: Connection, invoices: Table, lines: Table) -> tuple[int, int]:
    """Invoices with their lines, replaying their life: written as drafts, lines added, then moved to their state.

    Only one invoice per project and month may be live (not void) at a time, so a batch ends before an invoice
    whose month already has one in the batch: a voided invoice reaches its final state before the invoice that
    replaced it (always a later one) is written.
    """
    counts = [0, 0]
    batch: list[dict[str, Any]] = []
    months: set[tuple[Any, Any]] = set()

    def flush() -> None:
        if not batch:
            return
        _insert_rows(dst, invoices, [{**row, **DRAFT_SHAPE} for row in batch])
        ids = [row["id"] for row in batch]
        for rows in _read(src, lines, lines.c.invoice_id.in_(ids)):
            _insert_rows(dst, lines, rows)
            counts[1] += len(rows)
        final = [{"b_id": row["id"], **{f"b_{k}": row[k] for k in DRAFT_SHAPE}}
                 for row in batch if any(row[k] != v for k, v in DRAFT_SHAPE.items())]
        if final:
            dst.execute(update(invoices).where(invoices.c.id == bindparam("b_id"))
                        .values({k: bindparam(f"b_{k}") for k in DRAFT_SHAPE}), final)
        counts[0] += len(batch)
        batch.clear()
        months.clear()

    for rows in _read(src, invoices):
        for row in rows:
            month = (row["project_id"], row["period"]) if row["kind"] == "invoice" else None
            if len(batch) >= BATCH or (month is not None and month in months):
                flush()
            batch.append(row)
            if month is not None:
                months.add(month)
    flush()
    return counts[0], counts[1]


def _reset_sequences(dst: Connection, tables: Sequence[Table]) -> int:
    """PostgreSQL: move every serial sequence past the copied ids, so the next row does not collide."""
    reset = 0
    quote = dst.dialect.identifier_preparer.quote
    for table in tables:
        if len(table.primary_key.columns) != 1:
            continue
        column = next(iter(table.primary_key.columns))
        sequence = dst.execute(text("SELECT pg_get_serial_sequence(:t, :c)"),
                               {"t": quote(table.name), "c": column.name}).scalar()
        if sequence is None:
            continue
        top = dst.execute(select(func.max(column))).scalar()
        dst.execute(text("SELECT setval(CAST(:s AS regclass), :v, :called)"),
                    {"s": sequence, "v": top if top is not None else 1, "called": top is not None})
        reset += 1
    return reset


# --- checks before the copy -------------------------------------------------------------------------------------

def _display(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _same_database(a: str, b: str) -> bool:
    ua, ub = make_url(a), make_url(b)
    if ua.get_backend_name() != ub.get_backend_name():
        return False
    if ua.get_backend_name() == "sqlite":
        return Path(ua.database or "").resolve() == Path(ub.database or "").resolve()
    return ((ua.host or "localhost"), ua.port or 5432, ua.database) == ((ub.host or "localhost"), ub.port or 5432,
                                                                        ub.database)


def _engine(url: str, role: str) -> Engine:
    try:
        _backend(url)
        if make_url(url).get_backend_name() == "sqlite" and make_url(url).database in (None, "", ":memory:"):
            raise CopyError(f"the {role} database cannot be an in-memory SQLite database; name a file")
        return make_engine(url)
    except BackupError as exc:
        raise CopyError(f"the {role} database: {exc}") from exc
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise CopyError(f"the {role} database URL cannot be used ({exc}); for PostgreSQL write "
                        "postgresql+psycopg://USER:PASSWORD@HOST:5432/DATABASE") from exc


def data_in(conn: Connection) -> dict[str, int]:
    """Tables that hold rows (beyond what a fresh migration writes), with their counts; for ``audit_head``,
    the event it has moved to."""
    quote = conn.dialect.identifier_preparer.quote
    found = {}
    for name in inspect(conn).get_table_names():
        if name in EMPTY_DB_TABLES:
            continue
        if conn.execute(text(f"SELECT 1 FROM {quote(name)} LIMIT 1")).first():  # noqa: S608 - names from the catalogue
            found[name] = conn.execute(text(f"SELECT count(*) FROM {quote(name)}")).scalar_one()  # noqa: S608
    if AUDIT_HEAD in inspect(conn).get_table_names():
        heads = conn.execute(text(f"SELECT seq FROM {AUDIT_HEAD}")).scalars().all()  # noqa: S608 - a constant
        if heads not in ([], [0]):  # a fresh log's head is at event 0
            found[AUDIT_HEAD] = max(heads)
    return found


def _prepare_target(url: str, engine: Engine, head: str | None) -> bool:
    """Refuse a target with data; migrate an empty one to the newest schema. True if it was migrated here."""
    if engine.dialect.name == "sqlite":
        _sqlite_path(url).parent.mkdir(parents=True, exist_ok=True)
    try:
        with engine.execution_options(**{READ_MOSTLY: True}).connect() as conn:  # SQLite: no write lock yet
            found = data_in(conn)
            revision = MigrationContext.configure(conn).get_current_revision()
            tables = set(inspect(conn).get_table_names())
    except DBAPIError as exc:
        raise CopyError(f"cannot open the target database {_display(url)}: {exc.orig}; create it empty first "
                        "(for PostgreSQL: createdb --owner USER NAME)") from exc
    if found:
        names = sorted((n for n in found if n != AUDIT_HEAD), key=lambda n: (n not in ("users", "audit_events"), n))
        listed = ", ".join(f"{name} ({found[name]:,} row{'' if found[name] == 1 else 's'})" for name in names[:6])
        listed += f" and {len(names) - 6} more tables" if len(names) > 6 else ""
        listed = listed or f"an audit log head at event {found[AUDIT_HEAD]}"
        raise CopyError(f"the target database {_display(url)} already holds data: {listed}. "
                        "`sde db copy` only fills an empty database; nothing was changed")
    if revision == head and AUDIT_HEAD in tables:
        return False
    try:
        upgrade(url)
    except Exception as exc:  # an unknown revision (a newer release) or a failed DDL statement
        raise CopyError(f"could not create the tables in the target database ({exc}); nothing was copied") from exc
    return True


def _check_source(src: Connection, url: str, head: str | None) -> tuple[str | None, audit.VerifyResult]:
    revision = MigrationContext.configure(src).get_current_revision()
    if revision is None:
        raise CopyError(f"the source database {_display(url)} has no gateway tables: is database_url right?")
    if revision != head:
        raise CopyError(f"the source database is at schema revision {revision}, this release expects {head}: "
                        "take a backup (`sde backup`) and run `sde init` first")
    with Session(bind=src) as session:
        result = audit.verify(session)
    if not result.ok:
        raise CopyError(f"the source's audit chain does not verify ({result.describe()}); "
                        "a copy would carry the damage: restore from a backup first")
    return revision, result


# --- the copy ------------------------------------------------------------------------------------------------------

def copy_database(source_url: str, target_url: str, actor: audit.Actor = "cli") -> CopyResult:
    """Copy every table of ``source_url`` into the empty ``target_url``, verify it, and record the copy there."""
    if _same_database(source_url, target_url):
        raise CopyError("the target is the configured database itself; name a different, empty database")
    head = head_revision(source_url)
    steps = plan()
    source_engine = _engine(source_url, "source")
    target_engine = _engine(target_url, "target")
    try:
        src_bind = source_engine.execution_options(**{READ_MOSTLY: True}) if source_engine.dialect.name == "sqlite" \
            else source_engine.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        try:
            src_conn = src_bind.connect()
        except DBAPIError as exc:
            raise CopyError(f"cannot open the source database {_display(source_url)}: {exc.orig}") from exc
        with src_conn as src, src.begin():  # one snapshot of the source for the whole copy
            revision, source_chain = _check_source(src, source_url, head)
            migrated = _prepare_target(target_url, target_engine, head)
            tables = [t for t in metadata.sorted_tables if t.name != AUDIT_HEAD]
            expected = {t.name: src.execute(select(func.count()).select_from(t)).scalar_one() for t in tables}
            head_row = src.execute(select(metadata.tables[AUDIT_HEAD])).one()
            try:
                with target_engine.begin() as dst:
                    copied = _copy_all(src, dst, steps)
                    heads = metadata.tables[AUDIT_HEAD]
                    dst.execute(update(heads).where(heads.c.id == head_row.id)
                                .values(seq=head_row.seq, hash=head_row.hash))
                    sequences = _reset_sequences(dst, metadata.sorted_tables) if dst.dialect.name == "postgresql" else 0
                    _verify_target(dst, expected, copied, source_chain, head_row)
                    with Session(bind=dst) as session:
                        event = audit.record(session, actor, "database.copied", "database", None, {
                            "from": _display(source_url), "to": _display(target_url),
                            "from_backend": source_engine.dialect.name, "to_backend": dst.dialect.name,
                            "revision": revision, "rows": sum(expected.values()),
                            "source_head_seq": head_row.seq, "source_head_hash": head_row.hash,
                        })
                        event_seq = event.seq
            except SQLAlchemyError as exc:
                detail = getattr(exc, "orig", None) or exc
                raise CopyError(f"the copy failed and the target was rolled back, so it holds no data: {detail}") \
                    from exc
        return CopyResult(source=_display(source_url), target=_display(target_url), revision=revision,
                          rows=expected, events=source_chain.checked, head_seq=head_row.seq,
                          head_hash=head_row.hash, copied_event_seq=event_seq, sequences_reset=sequences,
                          target_was_migrated=migrated)
    finally:
        source_engine.dispose()
        target_engine.dispose()


def _copy_all(src: Connection, dst: Connection, steps: list[Step]) -> Counter[str]:
    copied: Counter[str] = Counter()
    for step in steps:
        name = step.table.name
        if name == "invoices":
            invoice_count, line_count = _copy_invoices(src, dst, step.table, metadata.tables[INVOICE_LINES])
            copied[name] += invoice_count
            copied[INVOICE_LINES] += line_count
        else:
            copied[name] += _copy_step(src, dst, step)
    return copied


def _verify_target(dst: Connection, expected: dict[str, int], copied: Counter[str],
                   source_chain: audit.VerifyResult, head_row: Row[Any]) -> None:
    """Inside the copy's transaction: any difference raises, and the whole copy is rolled back."""
    problems = []
    for name, count in expected.items():
        stored = dst.execute(select(func.count()).select_from(metadata.tables[name])).scalar_one()
        if not count == copied[name] == stored:
            problems.append(f"{name}: source {count}, copied {copied[name]}, target {stored}")
    if problems:
        raise CopyError("row counts differ after the copy, so it was rolled back: " + "; ".join(problems))
    with Session(bind=dst) as session:
        chain = audit.verify(session)
    if not chain.ok or chain.checked != source_chain.checked:
        raise CopyError(f"the copied audit chain does not verify ({chain.describe()}), so the copy was rolled back")
    target_head = dst.execute(select(metadata.tables[AUDIT_HEAD])).one()
    if (target_head.seq, target_head.hash) != (head_row.seq, head_row.hash):
        raise CopyError("the copied audit head differs from the source's, so the copy was rolled back")


def rows_of(conn: Connection, table: Table) -> list[tuple[Any, ...]]:
    """Every row in primary-key order, JSON columns with a marker for SQL NULL: what a faithful copy must keep."""
    json_columns = _json_columns(table)
    query = select(table, *(c.is_(None) for c in json_columns)).order_by(*table.primary_key.columns)
    return [tuple(row) for row in conn.execute(query)]
