"""Package requests: a researcher asks, an administrator approves or refuses with a reason; every step audited;
bad input is refused with a message and changes nothing; a decision is made once, by someone else."""

from __future__ import annotations

import threading
import time

import pytest
from flask import Flask
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from gateway import audit
from gateway.db import unit_of_work
from gateway.errors import Conflict, DomainError, InvalidTransition, PermissionDenied, ValidationError
from gateway.identity import accounts, tokens
from gateway.models import AuditEvent, AuditHead
from gateway.workspaces import packages
from gateway.workspaces.models import PackageRequest
from tests.conftest import sign_in_session
from tests.support import factories as f
from tests.support.databases import postgres_only


def _ask(factory: sessionmaker[Session], name: str = "lifelines", by: str = "researcher") -> int:
    with unit_of_work(factory) as s:
        return packages.request_package(s, f.user(s, by), "python", name, "0.30.0", "Survival curves.").id


def test_ask_decide_once_and_audit(session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    first, second = _ask(session_factory), _ask(session_factory, "scikit-survival")
    with unit_of_work(session_factory) as s:
        researcher, admin = f.user(s, "researcher"), f.user(s, "admin")
        # bad input: clear messages, nothing stored
        for args, field in ((("python", "numpy", "", "need it"), "name"),  # already in the workspace
                            (("python", "NumPy", "", "need it"), "name"),  # ...whatever its spelling
                            (("r", "r-cran-survival", "", "need it"), "name"),
                            (("perl", "x", "", "need it"), "ecosystem"),
                            (("python", "../../etc", "", "need it"), "name"),
                            (("python", "ok-name", "1.0; rm -rf", "need it"), "version"),
                            (("python", "ok-name", "", "   "), "reason")):
            with pytest.raises(ValidationError) as refused:
                packages.request_package(s, researcher, *args)
            assert field in refused.value.field_errors, args
        with pytest.raises(Conflict):  # the same package, still waiting (pip's spelling rules)
            packages.request_package(s, researcher, "python", "Lifelines", "", "again")
        with pytest.raises(PermissionDenied):  # administrators decide, researchers ask
            packages.request_package(s, admin, "python", "other", "", "x")
        with pytest.raises(PermissionDenied):
            packages.decide(s, researcher, s.get(PackageRequest, first), True, "")
        with pytest.raises(ValidationError):  # a refusal needs its reason
            packages.decide(s, admin, s.get(PackageRequest, first), False, "  ")
        assert s.get(PackageRequest, first).state == "requested"
        packages.decide(s, admin, s.get(PackageRequest, first), True, "")
        packages.decide(s, admin, s.get(PackageRequest, second), False, "Reaches the internet for its data.")
        with pytest.raises(InvalidTransition):
            packages.decide(s, admin, s.get(PackageRequest, first), False, "changed my mind")
    with session_factory() as s:
        rows = {r.name: r for r in s.scalars(select(PackageRequest))}
        assert rows["lifelines"].state == "approved" and rows["lifelines"].decided_by.username == "admin"
        assert rows["scikit-survival"].decision_reason == "Reaches the internet for its data."
        actions = [e.action for e in s.scalars(select(AuditEvent).where(AuditEvent.object_type == "package_request")
                                               .order_by(AuditEvent.seq))]
        assert actions == ["package.requested", "package.requested", "package.approved", "package.refused"]
        assert audit.verify(s).ok


def test_nobody_decides_their_own_request(session_factory: sessionmaker[Session],
                                          demo_users: dict[str, int]) -> None:
    with unit_of_work(session_factory) as s:
        accounts.create_local_user(s, "test", username="both", display_name="Both Roles",
                                   password="a-long-password-3", roles=["researcher", "admin"])
    own = _ask(session_factory, by="both")
    with unit_of_work(session_factory) as s, pytest.raises(PermissionDenied):
        packages.decide(s, f.user(s, "both"), s.get(PackageRequest, own), True, "")


def test_the_database_refuses_a_refusal_without_reason(session_factory: sessionmaker[Session],
                                                       demo_users: dict[str, int]) -> None:
    request_id = _ask(session_factory)
    with session_factory() as s:
        row = s.get(PackageRequest, request_id)
        row.state, row.decided_by_id = "refused", f.user(s, "admin").id
        row.decided_at = row.requested_at
        with pytest.raises(IntegrityError):
            s.flush()


def test_web_form_keeps_input_and_api_answers_json(app: Flask, session_factory: sessionmaker[Session],
                                                   demo_users: dict[str, int]) -> None:
    app.config["WTF_CSRF_ENABLED"] = False
    client = app.test_client()
    sign_in_session(client, session_factory, "researcher")
    page = client.post("/packages", data={"ecosystem": "python", "name": "lifelines", "version": "", "reason": ""})
    assert page.status_code == 422
    html = page.get_data(as_text=True)
    assert "Say what you need the package for." in html and 'value="lifelines"' in html
    made = client.post("/packages", data={"ecosystem": "r", "name": "r-cran-lme4", "version": "",
                                          "reason": "Mixed models."})
    assert made.status_code == 302
    assert "Waiting for a decision" in client.get("/packages").get_data(as_text=True)
    listed = client.get("/catalogue/software").get_data(as_text=True)
    assert "pandas" in listed and "2.3.3" in listed and "r-cran-survival" in listed
    with unit_of_work(session_factory) as s:
        _, secret = tokens.create_token(s, "test", f.user(s, "admin"), "t")
        request_id = s.scalars(select(PackageRequest.id)).one()
    headers = {"Authorization": f"Bearer {secret}"}
    refused = client.post(f"/api/v1/package-requests/{request_id}/refuse", json={"reason": ""}, headers=headers)
    assert refused.status_code == 422 and refused.json["error"] == "validation_error"
    done = client.post(f"/api/v1/package-requests/{request_id}/refuse", json={"reason": "Use lme4 in Python."},
                       headers=headers)
    assert done.status_code == 200 and done.json["state"] == "refused"
    again = client.post(f"/api/v1/package-requests/{request_id}/approve", json={}, headers=headers)
    assert again.status_code == 409
    assert client.get("/api/v1/software").json["r"][0]["name"] == "r-base-core"


@postgres_only
def test_two_administrators_deciding_at_once_make_one_decision(session_factory: sessionmaker[Session],
                                                               demo_users: dict[str, int]) -> None:
    with unit_of_work(session_factory) as s:
        accounts.create_local_user(s, "test", username="admin2", display_name="Second Admin",
                                   password="a-long-password-4", roles=["admin"])
    request_id = _ask(session_factory)
    barrier, outcomes = threading.Barrier(2), []

    def decide(who: str, approve: bool) -> None:
        try:
            with unit_of_work(session_factory) as s:
                row = s.get(PackageRequest, request_id)
                barrier.wait()
                packages.decide(s, f.user(s, who), row, approve, "reason")
            outcomes.append("decided")
        except DomainError as exc:
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=decide, args=args) for args in (("admin", True), ("admin2", False))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["InvalidTransition", "decided"]
    with session_factory() as s:
        decisions = s.scalars(select(AuditEvent).where(AuditEvent.action.in_(["package.approved",
                                                                               "package.refused"]))).all()
        assert len(decisions) == 1


@postgres_only
def test_two_people_asking_for_the_same_package_at_once_make_one_request(
        session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    """Both ask while a third transaction holds the audit head, so both reach their check before either can
    commit; without the lock around check-and-insert both would be stored."""
    outcomes: list[str] = []

    def ask(who: str, spelling: str) -> None:
        try:
            _ask(session_factory, spelling, by=who)
            outcomes.append("asked")
        except DomainError as exc:
            outcomes.append(type(exc).__name__)

    holder = session_factory()
    try:
        holder.execute(select(AuditHead).where(AuditHead.id == 1).with_for_update())
        threads = [threading.Thread(target=ask, args=args)
                   for args in (("researcher", "scikit_survival"), ("researcher2", "Scikit-Survival"))]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while _waiting_on_locks(session_factory) < 2:  # both are in: one at the audit head, one at its check
            assert time.monotonic() < deadline and all(t.is_alive() for t in threads), outcomes
            time.sleep(0.05)
    finally:
        holder.rollback()
        holder.close()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["Conflict", "asked"]
    with session_factory() as s:
        assert s.scalar(select(func.count()).select_from(PackageRequest)) == 1


def _waiting_on_locks(factory: sessionmaker[Session]) -> int:
    with factory() as s:  # its own transaction: pg_stat_activity is read once per transaction
        return int(s.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                 "AND wait_event_type = 'Lock'")) or 0)
