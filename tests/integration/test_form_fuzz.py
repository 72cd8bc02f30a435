"""Random text, unicode and huge values posted into the important forms: never a 5xx, and a refusal writes nothing."""

from __future__ import annotations

import io
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from gateway.db import unit_of_work
from gateway.models import AuditEvent, User
from projects.models import Accreditation, Application
from tests.conftest import sign_in_session
from tests.support import factories
from tests.support.date_boxes import PARTS

FUZZ = settings(max_examples=25, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])

# Text of every kind: empty, whitespace, control characters, astral-plane unicode, and very long values.
TEXT = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=300),
    st.sampled_from(["", " ", "\x00", "\t\n", "0", "-1", "9" * 40, "2026-02-30", "NaN", "<script>", "' OR 1=1 --",
                     "\u202eevil", "\U0001f600" * 50]),
    st.integers(min_value=1_000, max_value=200_000).map(lambda n: "x" * n),
)
# A form field is missing, a single value or a repeated value.
FIELD = st.one_of(st.none(), TEXT, st.lists(TEXT, min_size=2, max_size=3))


def _boxes(*names: str) -> tuple[str, ...]:
    """The Day, Month and Year boxes a page posts for each date field."""
    return tuple(f"{name}-{part}" for name in names for part in PARTS)


def _form(draw: st.DrawFn, names: tuple[str, ...]) -> dict[str, Any]:
    values = {name: draw(FIELD) for name in names}
    return {name: value for name, value in values.items() if value is not None}


def _count(session_factory: sessionmaker[Session], model: Any) -> int:
    s = session_factory()
    try:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)
    finally:
        s.close()


def _fuzz_app(app: Flask) -> FlaskClient:
    app.config["WTF_CSRF_ENABLED"] = False
    return app.test_client()


def test_sign_in_never_fails_with_a_server_error(app: Flask, session_factory: sessionmaker[Session],
                                                 demo_users: dict[str, int]) -> None:
    client = _fuzz_app(app)
    users = _count(session_factory, User)

    @FUZZ
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        form = data.draw(st.builds(dict, username=FIELD, password=FIELD))
        response = client.post("/login", data={k: v for k, v in form.items() if v is not None})
        assert response.status_code in {401, 422, 429}, response.status_code  # never signed in, never a 5xx
        with client.session_transaction() as sess:
            assert sess.get("uid") is None

    run()
    assert _count(session_factory, User) == users


def test_create_user_refusals_write_nothing(app: Flask, session_factory: sessionmaker[Session],
                                            demo_users: dict[str, int]) -> None:
    client = _fuzz_app(app)
    sign_in_session(client, session_factory, "admin")
    role = st.sampled_from(["researcher", "admin", "auditor", "god", "", "\x00"])

    @FUZZ
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        form = _form(data.draw, ("username", "display_name", "email", "password"))
        form["roles"] = data.draw(st.lists(st.one_of(role, TEXT), max_size=3))
        users, events = _count(session_factory, User), _count(session_factory, AuditEvent)
        response = client.post("/admin/users/new", data=form)
        assert response.status_code < 500, response.status_code
        if response.status_code != 302:
            assert response.status_code == 422, response.status_code
            assert (_count(session_factory, User), _count(session_factory, AuditEvent)) == (users, events)

    run()


def test_application_edit_refusals_write_nothing(app: Flask, session_factory: sessionmaker[Session],
                                                 demo_users: dict[str, int]) -> None:
    with unit_of_work(session_factory) as s:
        factories.accredit(s, "researcher")
    application_id = factories.draft(session_factory, complete=False)
    client = _fuzz_app(app)
    sign_in_session(client, session_factory, "researcher")
    fields = ("title", "lay_summary", "technical_summary", "public_benefit", "funder", "commercial_involvement",
              "commercial_details", "cohort_description", "date_from", "date_to", "legal_basis_article6",
              "legal_basis_article9", "common_law_basis", "ethics_reference", "opt_out_applies", "opt_out_reason",
              "workspace_size", "intended_outputs", "cohort_boroughs", "cohort_age_min", "cohort_age_max",
              "cohort_conditions")

    def snapshot() -> tuple[int, dict[str, Any]]:
        events = _count(session_factory, AuditEvent)
        s = session_factory()
        try:
            row = s.get(Application, application_id)
            assert row is not None
            return events, {name: getattr(row, name) for name in fields}
        finally:
            s.close()

    @FUZZ
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        before = snapshot()
        posted = tuple(name for name in fields if name not in {"date_from", "date_to"})
        response = client.post(f"/applications/{application_id}/edit",
                               data=_form(data.draw, posted + _boxes("date_from", "date_to")))
        assert response.status_code in {302, 422}, response.status_code
        if response.status_code == 422:
            assert snapshot() == before

    run()


def test_accreditation_record_refusals_write_nothing(app: Flask, session_factory: sessionmaker[Session],
                                                     demo_users: dict[str, int]) -> None:
    client = _fuzz_app(app)
    sign_in_session(client, session_factory, "researcher")
    fields = ("scheme", "other_scheme", "level", "supervisor", "number", *_boxes("training_date", "expiry_date"))
    certificate = st.one_of(st.none(), st.binary(max_size=200), st.just(b"%PDF-1.4\n%%EOF\n"),
                            st.just(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64))

    @FUZZ
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        form: dict[str, Any] = _form(data.draw, fields)
        content = data.draw(certificate)
        if content is not None:
            form["certificate"] = (io.BytesIO(content), data.draw(st.sampled_from(["c.pdf", "c.png", "", "ü.exe"])))
        records, events = _count(session_factory, Accreditation), _count(session_factory, AuditEvent)
        response = client.post("/accreditation/new", data=form, content_type="multipart/form-data")
        assert response.status_code in {302, 422}, response.status_code
        if response.status_code == 422:
            assert (_count(session_factory, Accreditation), _count(session_factory, AuditEvent)) == (records, events)

    run()


def test_package_request_and_decision_refusals_write_nothing(app: Flask, session_factory: sessionmaker[Session],
                                                             demo_users: dict[str, int]) -> None:
    from gateway.workspaces import packages
    from gateway.workspaces.models import PackageRequest
    from tests.support import factories as f

    researcher, admin = _fuzz_app(app), app.test_client()
    sign_in_session(researcher, session_factory, "researcher")
    sign_in_session(admin, session_factory, "admin")
    with session_factory() as s, s.begin():
        waiting = packages.request_package(s, f.user(s, "researcher"), "python", "fuzz-target", "", "why").id
    ecosystem = st.sampled_from(["python", "r", "perl", "", "\x00"])

    @FUZZ
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        form = _form(data.draw, ("name", "version", "reason"))
        form["ecosystem"] = data.draw(st.one_of(ecosystem, TEXT))
        before = (_count(session_factory, PackageRequest), _count(session_factory, AuditEvent))
        response = researcher.post("/packages", data=form)
        assert response.status_code < 500, response.status_code
        if response.status_code != 302:
            assert response.status_code == 422, response.status_code
            assert (_count(session_factory, PackageRequest), _count(session_factory, AuditEvent)) == before
        decision = {f"r{waiting}-reason": data.draw(FIELD) or "",
                    f"r{waiting}-decision": data.draw(st.one_of(st.sampled_from(["refuse", "maybe"]), TEXT))}
        events = _count(session_factory, AuditEvent)
        response = admin.post(f"/admin/packages/{waiting}/decide", data=decision)
        assert response.status_code < 500, response.status_code
        if response.status_code != 302:
            assert response.status_code == 422 and _count(session_factory, AuditEvent) == events

    run()
