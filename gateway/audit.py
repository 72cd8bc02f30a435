"""The tamper-evident audit log.

Every service that changes state calls :func:`record` inside the same transaction as the change.
Each event stores the SHA-256 of its own canonical form, which includes the previous event's hash,
so editing, deleting or reordering any stored event breaks the chain and :func:`verify` names it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, bindparam, func, insert, select, true, update
from sqlalchemy.orm import Session

from gateway.db import begin_transaction, utcnow
from gateway.models import AuditEvent, AuditHead, User

GENESIS_HASH = "0" * 64
SYSTEM = "system"



@dataclass(frozen=True)
class Person:
    """Somebody already known by id and username (the request's signed-in person), recorded without reading their
    row again."""

    id: int
    username: str


Actor = User | Person | str | None


def canonical(seq: int, occurred_at: dt.datetime, actor_id: int | None, actor_label: str, action: str,
              object_type: str, object_id: str | None, details: dict[str, Any], prev_hash: str) -> bytes:
    """The exact bytes that are hashed; any change to a field changes them."""
    body = {
        "seq": seq,
        "occurred_at": occurred_at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
        "actor_id": actor_id,
        "actor_label": actor_label,
        "action": action,
        "object_type": object_type,
        "object_id": object_id,
        "details": details,
        "prev_hash": prev_hash,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def event_hash(event: AuditEvent) -> str:
    return hashlib.sha256(
        canonical(event.seq, event.occurred_at, event.actor_id, event.actor_label, event.action,
                  event.object_type, event.object_id, event.details or {}, event.prev_hash)
    ).hexdigest()


def ensure_head(session: Session) -> None:
    """Create the head row of an empty log (migrations do this; tests that create tables call it)."""
    if session.get(AuditHead, 1) is None:
        session.add(AuditHead(id=1, seq=0, hash=GENESIS_HASH))
        session.flush()


def _normalise_details(details: dict[str, Any] | None) -> dict[str, Any]:
    # Round-trip through JSON so what is hashed is exactly what the database will hand back.
    return json.loads(json.dumps(details or {}, default=str, sort_keys=True))


_EVENTS, _HEAD = AuditEvent.__table__, AuditHead.__table__
# Built once per process (every change in the gateway appends an event). The event's values are named e_<column>,
# typed as their columns (UTC times, JSON), so no execution parameter can be taken for a column of the head.
_EVENT_VALUES = {c.name: bindparam(f"e_{c.name}", type_=c.type) for c in _EVENTS.columns}
_RESERVE = (update(_HEAD).where(_HEAD.c.id == 1).values(seq=_HEAD.c.seq + 1)
            .returning(_HEAD.c.seq, _HEAD.c.hash))
_APPEND = insert(_EVENTS).values(_EVENT_VALUES)
_MOVE_HEAD = update(_HEAD).where(_HEAD.c.id == 1).values(hash=bindparam("e_hash", type_=_HEAD.c.hash.type))
# PostgreSQL: the event and the head's new hash in one statement, one round trip fewer for every change
_appended = insert(_EVENTS).values(_EVENT_VALUES).returning(_EVENTS.c.hash).cte("appended")
_APPEND_AND_MOVE_HEAD = (update(_HEAD).where(_HEAD.c.id == 1)
                         .values(hash=select(_appended.c.hash).scalar_subquery()).add_cte(_appended))


def record(session: Session, actor: Actor, action: str, object_type: str,
           object_id: str | int | None = None, details: dict[str, Any] | None = None) -> AuditEvent:
    """Append one event in the caller's transaction, and return it (not added to the session: it is written here).

    The head row is updated first, which takes the row lock (PostgreSQL) or the write lock
    (SQLite), so concurrent writers queue here instead of forking the chain. The head's hash is written here
    too, not by a database trigger: code running against a database a migration behind would otherwise chain
    events to a stale hash, and a trigger would also follow a tail rewritten by hand. The caller's pending
    changes are flushed first, as any query would, so they are in the same transaction before the event.
    """
    session.flush()
    seq, prev_hash = session.execute(_RESERVE).one()
    if isinstance(actor, User | Person):
        actor_id, actor_label = actor.id, actor.username
    else:
        actor_id, actor_label = None, actor or SYSTEM
    event = AuditEvent(
        seq=seq,
        occurred_at=utcnow(),
        actor_id=actor_id,
        actor_label=actor_label,
        action=action,
        object_type=object_type,
        object_id=None if object_id is None else str(object_id),
        details=_normalise_details(details),
        prev_hash=prev_hash,
    )
    event.hash = event_hash(event)
    values = {f"e_{name}": getattr(event, name) for name in _EVENT_VALUES}
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_APPEND_AND_MOVE_HEAD, values)
    else:
        session.execute(_APPEND, values)
        session.execute(_MOVE_HEAD, values)
    return event


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    bad_seq: int | None = None
    reason: str | None = None

    def describe(self) -> str:
        if self.ok:
            return f"audit chain intact: {self.checked} events verified"
        return f"audit chain BROKEN at event {self.bad_seq}: {self.reason}"


@dataclass(frozen=True)
class Anchor:
    """The head as it once was (``sde audit head``), kept outside the database. The chain alone cannot show a log
    rewritten by someone who gets past the append-only triggers, recomputes every later hash and moves the head to
    match; an anchor can, because the rewritten log no longer holds that event with that hash."""

    seq: int
    hash: str

    def __str__(self) -> str:
        return f"{self.seq} {self.hash}"

    @classmethod
    def parse(cls, text: str) -> Anchor:
        """``SEQ HASH`` as ``sde audit head`` prints it (or ``SEQ:HASH``); ValueError naming what is wrong."""
        parts = text.replace(":", " ").split()
        if len(parts) != 2 or not parts[0].isdecimal() or not re.fullmatch(r"[0-9a-f]{64}", parts[1]):
            raise ValueError(f"not an anchor (event number, then its 64-character hash): {text.strip()[:80]!r}")
        return cls(int(parts[0]), parts[1])


MAX_ANCHORS = 100_000  # a kept file grows by one line per scheduled `sde audit head`: years of them


def parse_anchors(text: str) -> list[Anchor]:
    """A kept list of anchors, one ``SEQ HASH`` per line as ``sde audit head`` prints them; ``#`` starts a comment
    and blank lines are skipped. ValueError naming the first bad line, or saying the list holds none (a scheduled
    check against an emptied file must not pass as if it had checked them)."""
    anchors: list[Anchor] = []
    for number, line in enumerate(text.splitlines(), start=1):
        kept = line.split("#", 1)[0]
        if not kept.strip():
            continue
        try:
            anchors.append(Anchor.parse(kept))
        except ValueError as exc:
            raise ValueError(f"line {number}: {exc}") from None
        if len(anchors) > MAX_ANCHORS:
            raise ValueError(f"more than {MAX_ANCHORS:,} anchors: keep the most recent ones")
    if not anchors:
        raise ValueError("no anchors given (`sde audit head` prints one per line, as `SEQ HASH`)")
    return anchors


def current_head(session: Session) -> Anchor:
    """The last event's number and hash, to keep outside the database as an anchor."""
    head = session.get(AuditHead, 1)
    if head is None:
        raise LookupError("the audit head row is missing")
    return Anchor(head.seq, head.hash)


def verify(session: Session, batch: int = 1000, anchors: Iterable[Anchor] = ()) -> VerifyResult:
    """Walk the whole chain; report the first event that is altered, missing or out of place, or that differs from
    an anchor kept outside the database."""
    kept: dict[int, set[str]] = {}
    for anchor in anchors:
        kept.setdefault(anchor.seq, set()).add(anchor.hash)
    if kept.get(0, {GENESIS_HASH}) != {GENESIS_HASH}:  # the empty log's head: no event is there to compare with
        return VerifyResult(False, 0, 0, "an anchor kept outside the database names event 0 with a hash other than "
                                         "the empty log's (the anchor is wrong)")
    expected_seq = 1
    prev_hash = GENESIS_HASH
    checked = 0
    begin_transaction(session)  # the rows stream through a server-side cursor: one transaction, not a page's reads
    # The head comes with every event, from the same statement and so the same snapshot: read afterwards, it could
    # count events the gateway recorded while a long log was being read (READ COMMITTED) and raise a false alarm.
    rows = session.execute(select(AuditHead.seq, AuditHead.hash, AuditEvent).select_from(AuditHead)
                           .outerjoin(AuditEvent, true()).where(AuditHead.id == 1)
                           .order_by(AuditEvent.seq).execution_options(yield_per=batch))
    head: tuple[int, str] | None = None
    for head_seq, head_hash, event in rows:
        head = (head_seq, head_hash)
        if event is None:  # an empty log
            break
        if event.seq != expected_seq:
            return VerifyResult(False, checked, expected_seq,
                                f"event {expected_seq} is missing (next stored event is {event.seq})")
        if event.prev_hash != prev_hash:
            return VerifyResult(False, checked, event.seq,
                                "previous-hash link does not match the event before it (removed or reordered)")
        if event_hash(event) != event.hash:
            return VerifyResult(False, checked, event.seq, "stored fields do not match the event's hash (altered)")
        if event.seq in kept and kept[event.seq] != {event.hash}:
            return VerifyResult(False, checked, event.seq,
                                "the event's hash differs from the anchor kept outside the database (the log was "
                                "rewritten at or before this event and its hashes recomputed)")
        prev_hash = event.hash
        expected_seq += 1
        checked += 1
    if head is None:
        return VerifyResult(False, checked, None, "the audit head row is missing")
    head_seq, head_hash = head
    if head_seq != checked or head_hash != prev_hash:
        # only record() moves the head: an event inserted or removed by hand leaves it behind or ahead
        how = ("events removed from the end" if head_seq > checked else
               "events added outside the gateway" if head_seq < checked else "the last event replaced")
        first_wrong = checked + 1 if head_seq > checked else head_seq + 1 if head_seq < checked else checked
        return VerifyResult(False, checked, first_wrong,
                            f"the log ends at event {checked} but the head records event {head_seq} "
                            f"({how}, or the head altered)")
    beyond = [seq for seq in kept if seq > checked]
    if beyond:
        return VerifyResult(False, checked, min(beyond),
                            f"an anchor kept outside the database names event {min(beyond)}, but the log ends at "
                            f"event {checked} (events removed from the end and the head moved back)")
    return VerifyResult(True, checked)


@dataclass(frozen=True)
class AuditFilter:
    actor: str | None = None
    action: str | None = None
    object_type: str | None = None
    object_id: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    def apply(self, query: Select[tuple[AuditEvent]]) -> Select[tuple[AuditEvent]]:
        if self.actor:
            query = query.where(AuditEvent.actor_label == self.actor)
        if self.action:
            query = query.where(AuditEvent.action.startswith(self.action, autoescape=True))
        if self.object_type:
            query = query.where(AuditEvent.object_type == self.object_type)
        if self.object_id:
            query = query.where(AuditEvent.object_id == self.object_id)
        if self.since:
            query = query.where(AuditEvent.occurred_at >= self.since)
        if self.until:
            query = query.where(AuditEvent.occurred_at < self.until)
        return query


def search(session: Session, filters: AuditFilter, *, limit: int | None = 200,
           offset: int = 0) -> list[AuditEvent]:
    query = filters.apply(select(AuditEvent)).order_by(AuditEvent.seq.desc()).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def iter_all(session: Session, filters: AuditFilter) -> Iterator[AuditEvent]:
    query = filters.apply(select(AuditEvent)).order_by(AuditEvent.seq)
    begin_transaction(session)  # the rows stream through a server-side cursor: one transaction, not a page's reads
    yield from session.scalars(query.execution_options(yield_per=500))


# --- signals --------------------------------------------------------------------------------------------------

REFUSED = "access.refused"


@dataclass(frozen=True)
class RefusalCount:
    """One person's refused requests for objects in a window: many, over many ids, is what probing looks like."""

    actor: str
    refusals: int
    objects: int  # distinct objects asked for
    first: dt.datetime
    last: dt.datetime


def refusals_by_actor(session: Session, since: dt.datetime, minimum: int = 1) -> list[RefusalCount]:
    """People with at least ``minimum`` refused requests since ``since``, most first."""
    target = AuditEvent.object_type + ":" + func.coalesce(AuditEvent.object_id, "")
    count = func.count(AuditEvent.seq)
    query = (select(AuditEvent.actor_label, count, func.count(func.distinct(target)),
                    func.min(AuditEvent.occurred_at), func.max(AuditEvent.occurred_at))
             .where(AuditEvent.action == REFUSED, AuditEvent.occurred_at >= since)
             .group_by(AuditEvent.actor_label).having(count >= minimum)
             .order_by(count.desc(), AuditEvent.actor_label))
    return [RefusalCount(actor, int(n), int(objects), _aware(first), _aware(last))
            for actor, n, objects, first, last in session.execute(query)]


def _aware(moment: dt.datetime) -> dt.datetime:
    """min()/max() come back without the column type's conversion on SQLite."""
    if isinstance(moment, str):
        moment = dt.datetime.fromisoformat(moment)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
