"""The audit log is append-only and any tampering is detected and named by `sde audit verify`."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import Connection, Engine, create_engine, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from gateway import audit
from gateway.cli import main
from gateway.db import make_engine, make_session_factory, unit_of_work
from gateway.models import AuditEvent, AuditHead
from tests.conftest import sign_in_session
from tests.integration.test_pages import csrf_from
from tests.support.databases import postgres_only


def append(factory: sessionmaker[Session], n: int) -> None:
    for i in range(n):
        with unit_of_work(factory) as s:
            audit.record(s, "tester", "test.event", "thing", i, {"i": i, "note": "ünïcode ✓"})


@pytest.fixture
def factory(database_url: str) -> sessionmaker[Session]:
    return make_session_factory(make_engine(database_url))


def verify_cli(database_url: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["audit", "verify"], env={"SDE_DATABASE_URL": database_url})
    return result.exit_code, result.output


def tamper(database_url: str, *statements: str) -> None:
    """Edit rows by hand, as someone with database access might, bypassing the append-only triggers."""
    engine: Engine = create_engine(database_url)
    with engine.begin() as conn:
        _past_the_triggers(conn)
        for statement in statements:
            conn.execute(text(statement))
    engine.dispose()


def _past_the_triggers(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SET LOCAL session_replication_role = replica"))
    else:
        conn.execute(text("DROP TRIGGER IF EXISTS audit_events_no_update"))
        conn.execute(text("DROP TRIGGER IF EXISTS audit_events_no_delete"))


def rewrite_from(database_url: str, seq: int, details: dict[str, object]) -> None:
    """The strongest rewrite a database administrator can make: past the append-only triggers, event ``seq`` gets
    new details, it and every later event their hashes recomputed, and the head moved to match."""
    engine: Engine = create_engine(database_url)
    with engine.begin() as conn:
        _past_the_triggers(conn)
        with Session(bind=conn) as s:
            prev: str | None = None
            for event in s.scalars(select(AuditEvent).where(AuditEvent.seq >= seq).order_by(AuditEvent.seq)):
                if event.seq == seq:
                    event.details = details
                else:
                    event.prev_hash = prev
                event.hash = prev = audit.event_hash(event)
                s.flush()
            s.execute(update(AuditHead).where(AuditHead.id == 1).values(hash=prev))
    engine.dispose()


def head_cli(database_url: str) -> str:
    result = CliRunner().invoke(main, ["audit", "head"], env={"SDE_DATABASE_URL": database_url})
    assert result.exit_code == 0, result.output
    return result.output.strip()


def verify_with_anchors(database_url: str, anchors: Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["audit", "verify", "--anchors", str(anchors)],
                                env={"SDE_DATABASE_URL": database_url})
    return result.exit_code, result.output


def test_intact_chain_verifies(factory: sessionmaker[Session], database_url: str) -> None:
    append(factory, 5)
    code, output = verify_cli(database_url)
    assert code == 0, output
    assert "5 events verified" in output


def test_each_event_links_to_the_previous_hash(factory: sessionmaker[Session]) -> None:
    append(factory, 3)
    with factory() as s:
        events = list(s.scalars(select(AuditEvent).order_by(AuditEvent.seq)))
    assert [e.seq for e in events] == [1, 2, 3]
    assert events[0].prev_hash == audit.GENESIS_HASH
    assert events[1].prev_hash == events[0].hash and events[2].prev_hash == events[1].hash
    assert all(audit.event_hash(e) == e.hash for e in events)


TAMPERING: dict[str, tuple[list[str], int]] = {
    "details edited": (["UPDATE audit_events SET details = '{\"i\": 99}' WHERE seq = 3"], 3),
    "actor edited": (["UPDATE audit_events SET actor_label = 'someone-else' WHERE seq = 2"], 2),
    "action edited": (["UPDATE audit_events SET action = 'test.innocent' WHERE seq = 4"], 4),
    "middle event removed": (["DELETE FROM audit_events WHERE seq = 3"], 3),
    "first event removed": (["DELETE FROM audit_events WHERE seq = 1"], 1),
    "last event removed": (["DELETE FROM audit_events WHERE seq = 5"], 5),
    "two events swapped": ([
        "UPDATE audit_events SET seq = 100 WHERE seq = 2",
        "UPDATE audit_events SET seq = 2 WHERE seq = 3",
        "UPDATE audit_events SET seq = 3 WHERE seq = 100",
    ], 2),
    "stored hash replaced": ([
        "UPDATE audit_events SET hash = '" + "a" * 64 + "' WHERE seq = 2",
    ], 2),
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_tampering_is_detected_and_names_the_event(case: str, factory: sessionmaker[Session],
                                                   database_url: str) -> None:
    append(factory, 5)
    statements, bad_seq = TAMPERING[case]
    tamper(database_url, *statements)
    code, output = verify_cli(database_url)
    assert code == 1, output
    assert f"BROKEN at event {bad_seq}" in output


def test_database_refuses_update_and_delete_of_events(factory: sessionmaker[Session], database_url: str) -> None:
    append(factory, 2)
    engine = create_engine(database_url)
    for statement in ("UPDATE audit_events SET action = 'x' WHERE seq = 1", "DELETE FROM audit_events"):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    engine.dispose()
    assert verify_cli(database_url)[0] == 0


def test_an_event_inserted_without_reserving_its_number_is_reported(factory: sessionmaker[Session],
                                                                     database_url: str) -> None:
    """Someone with database access appends a well-formed event by hand: the head does not follow it, so
    `sde audit verify` names the mismatch instead of passing a chain that grew behind the gateway's back (and no
    database trigger moves the head for them)."""
    append(factory, 2)
    with unit_of_work(factory) as s:
        last = s.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc())).first()
        assert last is not None
        forged = AuditEvent(seq=3, occurred_at=last.occurred_at, actor_id=None, actor_label="intruder",
                            action="test.forged", object_type="thing", object_id="3", details={},
                            prev_hash=last.hash)
        forged.hash = audit.event_hash(forged)
        s.add(forged)
    with factory() as s:
        head = s.get(AuditHead, 1)
        assert head is not None and head.seq == 2 and head.hash == last.hash
    code, output = verify_cli(database_url)
    assert code == 1 and "head records event 2 (events added outside the gateway" in output, output
    assert "BROKEN at event 3:" in output, output  # the first event added, not the last genuine one


def test_a_tail_rewritten_by_hand_is_reported(factory: sessionmaker[Session], database_url: str) -> None:
    """Past the append-only guard, the last two events are replaced by a well-linked forged pair: the head still
    names the real last event, so verify reports it. (A trigger moving the head on each insert, tried and dropped in
    review, let this verify.)"""
    append(factory, 5)
    tamper(database_url, "DELETE FROM audit_events WHERE seq >= 4")
    with unit_of_work(factory) as s:
        prev = s.scalars(select(AuditEvent).where(AuditEvent.seq == 3)).one()
        for seq in (4, 5):
            forged = AuditEvent(seq=seq, occurred_at=prev.occurred_at, actor_id=None, actor_label="nobody",
                                action="test.innocent", object_type="thing", object_id=str(seq), details={},
                                prev_hash=prev.hash)
            forged.hash = audit.event_hash(forged)
            s.add(forged)
            s.flush()
            prev = forged
    code, output = verify_cli(database_url)
    assert code == 1 and "the last event replaced" in output, output


def test_event_rolls_back_with_the_change_it_records(factory: sessionmaker[Session]) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), unit_of_work(factory) as s:
        audit.record(s, "tester", "test.rolled_back", "thing", 1)
        raise Boom
    with factory() as s:
        assert s.scalars(select(AuditEvent)).all() == []
        assert audit.verify(s).ok


def test_concurrent_writers_never_fork_the_chain(factory: sessionmaker[Session], database_url: str) -> None:
    errors: list[BaseException] = []

    def worker(offset: int) -> None:
        try:
            for i in range(15):
                with unit_of_work(factory) as s:
                    audit.record(s, f"worker{offset}", "test.concurrent", "thing", offset * 100 + i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with factory() as s:
        result = audit.verify(s)
    assert result.ok and result.checked == 60


def test_filters_select_by_actor_action_object_and_date(factory: sessionmaker[Session]) -> None:
    append(factory, 3)
    with unit_of_work(factory) as s:
        audit.record(s, "someone", "user.created", "user", 7)
    with factory() as s:
        assert [e.object_id for e in audit.search(s, audit.AuditFilter(actor="someone"))] == ["7"]
        assert len(audit.search(s, audit.AuditFilter(action="test."))) == 3
        assert len(audit.search(s, audit.AuditFilter(object_type="thing", object_id="1"))) == 1
        newest = audit.search(s, audit.AuditFilter(), limit=1)[0]
        after = audit.AuditFilter(since=newest.occurred_at)
        assert [e.seq for e in audit.search(s, after)] == [newest.seq]




def test_details_round_trip_exactly(factory: sessionmaker[Session]) -> None:
    details = {"nested": {"b": [1, 2, {"c": None}], "a": "x"}, "float": 0.1, "when": "2026-11-21"}
    with unit_of_work(factory) as s:
        audit.record(s, "tester", "test.details", "thing", None, details)
    with factory() as s:
        stored = s.scalars(select(AuditEvent)).one()
        assert json.loads(json.dumps(stored.details, sort_keys=True)) == json.loads(json.dumps(details, sort_keys=True))
        assert audit.verify(s).ok


def test_a_log_rewritten_with_its_hashes_and_head_is_caught_by_an_anchor_kept_outside(
        factory: sessionmaker[Session], database_url: str, tmp_path: Path) -> None:
    """Someone past the append-only triggers rewrites event 2, recomputes every later hash and moves the head: the
    chain alone cannot tell (what auditors.md says), but the head printed earlier by `sde audit head` and kept
    outside the database no longer matches, and verify names the first anchored event that changed."""
    append(factory, 3)
    anchors = tmp_path / "anchors"
    anchors.write_text(f"# kept on another host\n{head_cli(database_url)}\n")
    append(factory, 2)
    with anchors.open("a") as out:
        out.write(head_cli(database_url) + "  # after five\n")
    assert verify_with_anchors(database_url, anchors)[0] == 0

    rewrite_from(database_url, 2, {"i": 1, "note": "nothing happened"})
    assert verify_cli(database_url)[0] == 0  # the limit an anchor is for
    code, output = verify_with_anchors(database_url, anchors)
    assert code == 1 and "BROKEN at event 3:" in output and "anchor kept outside the database" in output, output


def test_events_cut_from_the_end_with_the_head_moved_back_are_caught_by_an_anchor(
        factory: sessionmaker[Session], database_url: str, tmp_path: Path) -> None:
    append(factory, 5)
    anchors = tmp_path / "anchors"
    anchors.write_text(head_cli(database_url) + "\n")
    tamper(database_url, "DELETE FROM audit_events WHERE seq > 3",
           "UPDATE audit_head SET seq = 3, hash = (SELECT hash FROM audit_events WHERE seq = 3) WHERE id = 1")
    assert verify_cli(database_url)[0] == 0
    code, output = verify_with_anchors(database_url, anchors)
    assert code == 1 and "BROKEN at event 5:" in output and "log ends at event 3" in output, output


def test_a_malformed_anchor_is_refused_naming_its_line(factory: sessionmaker[Session], database_url: str,
                                                         tmp_path: Path) -> None:
    append(factory, 1)
    anchors = tmp_path / "anchors"
    anchors.write_text(head_cli(database_url) + "\n1 not-a-hash\n")
    code, output = verify_with_anchors(database_url, anchors)
    assert code == 1 and "line 2" in output and "not an anchor" in output, output
    anchors.write_text("# emptied by somebody\n\n")
    code, output = verify_with_anchors(database_url, anchors)
    assert code == 1 and "no anchors given" in output, output


@postgres_only
def test_events_appended_while_verify_reads_the_log_are_no_false_alarm(
        factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway keeps recording while a scheduled verify walks a long log: the head it compares with must be the
    head of the log it read, not one moved since (a false "events removed from the end": found in review)."""
    append(factory, 3)
    hashed = audit.event_hash
    appended: list[bool] = []

    def hash_and_append_once(event: AuditEvent) -> str:
        if not appended:
            appended.append(True)
            append(factory, 1)  # committed by the gateway while verify is part way through
        return hashed(event)

    monkeypatch.setattr(audit, "event_hash", hash_and_append_once)
    with factory() as s:
        result = audit.verify(s, batch=1)
    assert appended and result.ok, result.describe()


def test_an_empty_log_verifies_and_a_missing_head_is_reported(factory: sessionmaker[Session],
                                                               database_url: str) -> None:
    with factory() as s:
        assert audit.verify(s) == audit.VerifyResult(True, 0)
    append(factory, 2)
    tamper(database_url, "DELETE FROM audit_head")
    with factory() as s:
        result = audit.verify(s)
    assert not result.ok and result.reason == "the audit head row is missing", result.describe()


def test_an_anchor_at_event_0_must_be_the_empty_log(factory: sessionmaker[Session], database_url: str,
                                                     tmp_path: Path) -> None:
    """`sde audit head` on an empty log prints event 0 and the genesis hash; an anchor at 0 with any other hash
    matches no log, and was passed without being checked (found in review)."""
    anchors = tmp_path / "anchors"
    anchors.write_text(head_cli(database_url) + "\n")
    append(factory, 2)
    assert verify_with_anchors(database_url, anchors)[0] == 0
    anchors.write_text(f"0 {'ab' * 32}\n")
    code, output = verify_with_anchors(database_url, anchors)
    assert code == 1 and "BROKEN at event 0:" in output, output


@pytest.mark.parametrize("username", ["system", "ldap", "System"])
def test_no_account_can_take_a_name_the_log_uses_for_the_gateway_itself(factory: sessionmaker[Session],
                                                                        username: str) -> None:
    """Attack: an account named "system" (or "ldap"), made by an administrator or arriving from the directory, has
    every act it does shown in the log (and found by the auditors' actor filter) under the name the gateway's own
    events carry, so a person's release or decision reads as the gateway's. Those names are refused as usernames."""
    from gateway.errors import ValidationError
    from gateway.identity import accounts, signin
    from gateway.identity.ldap_directory import DirectoryUser

    with unit_of_work(factory) as session, pytest.raises(ValidationError) as refused:
        accounts.create_local_user(session, "cli:test", username=username, display_name="Some One",
                                   password="violet-harbour-lantern-8")
    assert refused.value.field_errors["username"] == [accounts.RESERVED_MESSAGE]

    class Directory:
        def authenticate(self, name: str, password: str) -> DirectoryUser:
            return DirectoryUser(dn=f"uid={name},ou=people", username=name.lower(), display_name="Some One",
                                 email=None, groups=frozenset())

        def roles_for(self, found: DirectoryUser) -> set[str]:
            return set()

    from gateway.config import SecuritySettings

    with unit_of_work(factory) as session:
        outcome = signin.sign_in_with_password(session, SecuritySettings(), Directory(),  # type: ignore[arg-type]
                                               username, "whatever-they-typed")
        assert outcome.state is None
        assert accounts.find_user(session, username.lower()) is None


def _verify_page(client: FlaskClient, anchors: str) -> tuple[int, str]:
    page = client.get("/audit/verify").get_data(as_text=True)
    response = client.post("/audit/verify", data={"csrf_token": csrf_from(page), "anchors": anchors})
    return response.status_code, response.get_data(as_text=True)


def test_an_auditor_keeps_the_head_from_the_page_and_the_page_catches_a_rewrite_with_it(
        client: FlaskClient, session_factory: sessionmaker[Session], demo_users: dict[str, int],
        database_url: str) -> None:
    """An auditor without server access keeps their own anchors: the page shows the head to copy, and checks the
    log against the kept lines; a log rewritten past the triggers, its hashes and head recomputed, passes the plain
    check and fails the check against the kept anchor, naming the event."""
    sign_in_session(client, session_factory, "auditor")
    page = client.get("/audit/verify").get_data(as_text=True)
    kept = re.search(r'data-testid="audit-head">([^<]+)<', page)
    assert kept, page
    with session_factory() as s:
        assert kept.group(1) == str(audit.current_head(s))
    status, html = _verify_page(client, f"# kept on my laptop\n{kept.group(1)}\n")
    assert status == 200 and "every one of the 1 anchor you kept matches" in html, html

    rewrite_from(database_url, 2, {"note": "nothing happened"})
    assert "The chain is intact" in client.get("/audit/verify").get_data(as_text=True)  # the limit anchors are for
    status, html = _verify_page(client, kept.group(1))
    assert status == 200 and "The audit chain is broken" in html and "anchor kept outside the database" in html


def test_anchors_the_page_cannot_read_are_refused_naming_the_line_and_kept_in_the_box(
        client: FlaskClient, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    sign_in_session(client, session_factory, "auditor")
    with session_factory() as s:
        head = str(audit.current_head(s))
    status, html = _verify_page(client, f"{head}\n12 not-a-hash")
    assert status == 422 and "line 2: not an anchor" in html and "not-a-hash</textarea>" in html, html
    assert 'data-testid="verify-result"' not in html  # no verdict on anchors it could not read
    status, html = _verify_page(client, "# only a comment\n\n")
    assert status == 422 and "no anchors given" in html
    status, html = _verify_page(client, "")
    assert status == 422 and "Paste at least one anchor you kept." in html


def test_checking_anchors_takes_the_form_token_and_the_auditor_role(
        client: FlaskClient, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    with session_factory() as s:
        head = str(audit.current_head(s))
    sign_in_session(client, session_factory, "auditor")
    assert client.post("/audit/verify", data={"anchors": head}).status_code == 400  # no CSRF token
    sign_in_session(client, session_factory, "admin")
    page = client.get("/home").get_data(as_text=True)
    assert client.post("/audit/verify", data={"csrf_token": csrf_from(page), "anchors": head}).status_code == 403
