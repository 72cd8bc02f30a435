"""Boundary dates posted to every date field of every form and API operation: never a 5xx, never stored.

The fields are discovered, not listed by hand: every form field (in every page module's forms) whose label is
about a date, and every property or query parameter of the OpenAPI document with ``format: date``. A page
takes a date in Day, Month and Year boxes (the NHS date input): each value is split into its boxes (ISO-like
text at its dashes, other text into every box), and the boxes get their own attacks too. Each must
have a target below, which says who sends it and where; a new date field fails the coverage test until it gets
one. Each value goes to its field on its own; after every request, nothing out of its window may be stored
anywhere (the invariant a 500 would otherwise hide: a year-9999 value saved today breaks a page tomorrow).
"""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_wtf import FlaskForm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway import demo
from gateway.app import create_app
from gateway.config import ExtractSettings, SecuritySettings, Settings
from gateway.db import unit_of_work
from gateway.identity import tokens
from gateway.trust.models import Incident
from projects import agreements, applications, dates
from projects.demo_people import minimal_png
from projects.models import Accreditation, Application, Decision, Project
from tests.conftest import sign_in_session
from tests.support import databases
from tests.support import factories as f
from tests.support.date_boxes import boxes

TODAY = dt.date.today()
MAX_TERM = dates.latest_access_end(TODAY, 60)

BOUNDARY = ["0001-01-01", "9999-12-31", "9999-12-30", "1000-06-15", "1899-12-31", "1900-01-01", "2100-12-31",
            "2101-01-01", "3000-01-01", "2024-02-29", "2023-02-29", "2100-02-29", "2000-02-29", "2026-13-01",
            "2026-00-10", "2026-01-32", "", " ", "garbage", "31/12/2026", "2026-1-1", "99999-12-31",
            "-2026-01-01", "+2026-01-01", "\uff12\uff10\uff12\uff16-01-01", "2026-01-01T00:00:00", "20260101",
            (TODAY + dt.timedelta(days=1)).isoformat(), MAX_TERM.isoformat(),
            (MAX_TERM + dt.timedelta(days=1)).isoformat(), dates.latest_accreditation_expiry(TODAY).isoformat(),
            (dates.latest_accreditation_expiry(TODAY) + dt.timedelta(days=1)).isoformat()]
JSON_ODDITIES: list[Any] = [20260101, 1.5, True, None, [], {}, "2026-01-01 "]
# What people (and attackers) type into the separate boxes: (day, month, year)
BOX_ATTACKS: list[tuple[str, str, str]] = [
    ("31", "2", "2027"), ("29", "2", "2100"), ("0", "0", "0"), ("\uff11\uff12", "3", "2026"),
    ("1", "\uff13", "\uff12\uff10\uff12\uff16"), ("1", "3", "99"), ("-1", "-3", "-2026"), ("1", "3", "-001"),
    ("", "3", "2026"), ("14", "", "2026"), ("14", "3", ""), ("9" * 40, "9" * 40, "9" * 40), ("1", "1", "9999"),
    ("1", "1", "0001"), (" 14 ", " 3 ", " 2026 "), ("1e3", "0x1", "2_026"),
    ("\u0661", "\u0663", "\u0662\u0660\u0662\u0666"), ("14", "3", "2026\x0b"), ("31", "12", "2100"), ("1", "1", "2101"),
    ("32", "13", "10000")]
DATE_LABEL = re.compile(r"\bdate\b|YYYY-MM-DD", re.IGNORECASE)
LIMITED = settings(max_examples=6, deadline=None, database=None, derandomize=True,
                   suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


# --- discovery ---------------------------------------------------------------------------------------------------

def _subclasses(cls: type) -> Iterator[type]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def page_date_fields(app: Flask) -> set[tuple[str, str]]:
    """(form class, field) for every form field about a date, in every page module's forms."""
    found = set()
    with app.test_request_context():
        for cls in _subclasses(FlaskForm):
            if not cls.__module__.startswith("gateway."):
                continue
            for field in cls(meta={"csrf": False}):
                if "Date" in type(field).__name__ or DATE_LABEL.search(str(field.label.text)):
                    found.add((cls.__name__, field.name))
    return found


def _resolve(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return components[ref.rsplit("/", 1)[-1]] if ref else schema


def _is_date(schema: dict[str, Any]) -> bool:
    return schema.get("format") == "date" or any(_is_date(s) for s in schema.get("anyOf", []))


def api_date_fields(app: Flask) -> set[tuple[str, str]]:
    """("METHOD /path", field) for every body property and query parameter of format date."""
    with app.test_request_context():
        document = app.test_client().get("/api/v1/openapi.json").json
    components = document["components"]["schemas"]
    found = set()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            for parameter in operation.get("parameters", []):
                if _is_date(parameter["schema"]):
                    found.add((where, parameter["name"]))
            for content in operation.get("requestBody", {}).get("content", {}).values():
                schema = _resolve(content["schema"], components)
                for name, prop in schema.get("properties", {}).items():
                    if _is_date(_resolve(prop, components)):
                        found.add((where, name))
    return found


# --- the world ---------------------------------------------------------------------------------------------------

class World:
    def __init__(self, app: Flask) -> None:
        self.app = app
        self.factory: sessionmaker[Session] = app.extensions["sde_sessionmaker"]
        self.objects: dict[str, int] = {}
        self._bearer: dict[str, str] = {}
        self._clients: dict[str, FlaskClient] = {}

    def build(self) -> None:
        with unit_of_work(self.factory) as s:
            demo.seed_users(s, "test")
            agreements.ensure_default(s, "test")
            f.accredit(s, "researcher")
        self.objects["draft"] = f.draft(self.factory)
        project = f.approved_project(self.factory, title="Dates project")
        with unit_of_work(self.factory) as s:
            found = s.get(Project, project)
            assert found is not None
            self.objects["amendment"] = applications.start_amendment(s, f.user(s, "researcher"), found).id
        self.fresh_quorate()

    def fresh_quorate(self) -> int:
        app_id = f.draft(self.factory, title="Awaiting a decision")
        f.submit(self.factory, app_id)
        f.review_round(self.factory, app_id, {"dac1": "approve", "dac2": "approve", "laymember": "approve"})
        self.objects["quorate"] = app_id
        return app_id

    def quorate(self) -> int:
        """An application under review with its quorum; a fresh one once the last was decided."""
        with self.factory() as s:
            application = s.get(Application, self.objects["quorate"])
            assert application is not None
            if application.state == "under_review":
                return application.id
        return self.fresh_quorate()

    def client(self, username: str) -> FlaskClient:
        if username not in self._clients:
            client = self.app.test_client()
            sign_in_session(client, self.factory, username)
            self._clients[username] = client
        return self._clients[username]

    def bearer(self, username: str) -> dict[str, str]:
        if username not in self._bearer:
            with unit_of_work(self.factory) as s:
                owner = f.user(s, username)
                self._bearer[username] = tokens.create_token(s, owner, owner, "dates", days=1)[1]
        return {"Authorization": f"Bearer {self._bearer[username]}"}

    def stored_out_of_range(self) -> list[str]:
        """Every stored date outside its window: must stay empty whatever was posted."""
        low, high, expiry = dates.EARLIEST, dates.LATEST, dates.latest_accreditation_expiry(TODAY)
        checks = [
            select(Application.id).where((Application.date_from < low) | (Application.date_from > high)
                                         | (Application.date_to < low) | (Application.date_to > high)
                                         | (Application.requested_end_date < low)
                                         | (Application.requested_end_date > MAX_TERM)),
            select(Decision.id).where(Decision.access_end_date > MAX_TERM),
            select(Project.id).where(Project.end_date > MAX_TERM),
            select(Accreditation.id).where((Accreditation.expiry_date > expiry) | (Accreditation.training_date < low)),
            select(Incident.id).where((Incident.occurred_on < dt.date(2000, 1, 1)) | (Incident.occurred_on > TODAY)),
        ]
        with self.factory() as s:
            return [f"{query.columns_clause_froms[0].name} {row}" for query in checks for row in s.scalars(query)]


PNG = minimal_png()


def _accreditation_fields(field: str, value: Any) -> dict[str, Any]:
    data = {"scheme": "ONS Accredited Researcher (Digital Economy Act)", "level": "full", "number": "ONS-1",
            "training_date": (TODAY - dt.timedelta(days=30)).isoformat(),
            "expiry_date": (TODAY + dt.timedelta(days=700)).isoformat()}
    data[field] = value
    data["certificate"] = (io.BytesIO(PNG), "certificate.png", "image/png")
    return data


def _incident_fields(field: str, value: Any) -> dict[str, Any]:
    return {"title": "Laptop lost", "what_happened": "A laptop was left on a train.",
            "action_taken": "It was encrypted; the account was disabled.", field: value}


@dataclass(frozen=True)
class Target:
    """How to send one date field: who, how, and with which other fields."""

    actor: str
    send: Callable[[World, str, Any], int]  # returns the status


def _page(method: str, url: Callable[[World], str], extra: Callable[[str, Any], dict[str, Any]] | None = None,
          query: bool = False, actor: str = "researcher") -> Target:
    def send(world: World, field: str, value: Any) -> int:
        client = world.client(actor)
        data = extra(field, value) if extra else {field: value}
        data = {**{k: v for k, v in data.items() if k != field}, **boxes(field, value)}  # a page's boxes
        if query:
            response = client.get(url(world), query_string=data)
        else:
            response = client.open(url(world), method=method, data=data)
        response.close()
        return response.status_code
    return Target(actor, send)


def _api(method: str, url: Callable[[World], str], extra: Callable[[str, Any], dict[str, Any]] | None = None,
         kind: str = "json", actor: str = "researcher") -> Target:
    def send(world: World, field: str, value: Any) -> int:
        client, headers = world.client(actor), world.bearer(actor)
        data = extra(field, value) if extra else {field: value}
        if kind == "query":
            response = client.get(url(world), headers=headers, query_string=data)
        elif kind == "multipart":
            response = client.open(url(world), method=method, headers=headers, data=data)
        else:
            response = client.open(url(world), method=method, headers=headers, json=data)
        response.close()
        return response.status_code
    return Target(actor, send)


def _decision(field: str, value: Any) -> dict[str, Any]:
    return {"outcome": "approved", field: value}


PAGE_TARGETS: dict[tuple[str, str], list[Target]] = {
    ("AuditFilterForm", name): [_page("GET", lambda w: "/audit/", query=True, actor="auditor"),
                                _page("GET", lambda w: "/audit/events.csv", query=True, actor="auditor")]
    for name in ("since", "until")
} | {
    ("ApplicationForm", name): [_page("POST", lambda w: f"/applications/{w.objects['draft']}/edit")]
    for name in ("date_from", "date_to")
} | {
    ("ApplicationForm", "requested_end_date"): [
        _page("POST", lambda w: f"/applications/{w.objects['amendment']}/edit")],
    ("DecisionForm", "access_end_date"): [_page("POST", lambda w: f"/applications/{w.quorate()}/decision",
                                                extra=_decision, actor="dacchair")],
} | {
    ("AccreditationForm", name): [_page("POST", lambda w: "/accreditation/new", extra=_accreditation_fields)]
    for name in ("training_date", "expiry_date")
} | {
    ("IncidentForm", "occurred_on"): [_page("POST", lambda w: "/admin/incidents", extra=_incident_fields,
                                            actor="admin")],
    ("InvoiceRunForm", "month"): [_page("POST", lambda w: "/charging/invoices/run", actor="finance")],
}

API_TARGETS: dict[tuple[str, str], list[Target]] = {
    ("PATCH /applications/{application_id}", name): [
        _api("PATCH", lambda w: f"/api/v1/applications/{w.objects['draft']}")] for name in ("date_from", "date_to")
} | {
    ("PATCH /applications/{application_id}", "requested_end_date"): [
        _api("PATCH", lambda w: f"/api/v1/applications/{w.objects['amendment']}")],
    ("POST /applications/{application_id}/decision", "access_end_date"): [
        _api("POST", lambda w: f"/api/v1/applications/{w.quorate()}/decision", extra=_decision, actor="dacchair")],
} | {
    ("GET /audit/events", name): [_api("GET", lambda w: "/api/v1/audit/events", kind="query", actor="auditor")]
    for name in ("since", "until")
} | {
    ("POST /accreditations", name): [_api("POST", lambda w: "/api/v1/accreditations", extra=_accreditation_fields,
                                          kind="multipart")] for name in ("training_date", "expiry_date")
}


@pytest.fixture(scope="module", params=databases.backends())
def world(request: pytest.FixtureRequest, sqlite_template: databases.SqliteTemplate,
          postgres_db: databases.PostgresDatabase | None, tmp_path_factory: pytest.TempPathFactory,
          synthetic_source: Path) -> Iterator[World]:
    directory = tmp_path_factory.mktemp(f"dates-{request.param}")
    if request.param == "postgresql":
        assert postgres_db is not None
        url = postgres_db.reset()
    else:
        url = sqlite_template.fresh(directory)
    app = create_app(Settings(env="test", instance_dir=directory / "instance", database_url=url,
                              secret_key="test-secret-key", security=SecuritySettings(token_limit="100000/minute"),
                              extracts=ExtractSettings(source_dir=synthetic_source)))
    app.config["WTF_CSRF_ENABLED"] = False  # the date is what is under test, not the form's token
    built = World(app)
    built.build()
    yield built
    app.extensions["sde_engine"].dispose()


def test_every_date_field_has_a_target(world: World) -> None:
    assert page_date_fields(world.app) == set(PAGE_TARGETS), "a page date field needs its row in PAGE_TARGETS"
    assert api_date_fields(world.app) == set(API_TARGETS), "an API date field needs its row in API_TARGETS"


def _check(world: World, field: str, targets: list[Target], value: Any) -> None:
    for target in targets:
        status = target.send(world, field, value)
        assert status < 500, f"{field}={value!r}: {status}"
        assert world.stored_out_of_range() == [], f"{field}={value!r} stored out of range"


@pytest.mark.parametrize("key", sorted(PAGE_TARGETS), ids=lambda k: f"{k[0]}.{k[1]}")
def test_boundary_dates_on_every_page_form(world: World, key: tuple[str, str]) -> None:
    for value in BOUNDARY + BOX_ATTACKS:
        _check(world, key[1], PAGE_TARGETS[key], value)


@pytest.mark.parametrize("key", sorted(API_TARGETS), ids=lambda k: f"{k[0]}.{k[1]}")
def test_boundary_dates_and_odd_json_on_every_api_operation(world: World, key: tuple[str, str]) -> None:
    json_body = not key[0].startswith("GET") and key[0] != "POST /accreditations"
    for value in BOUNDARY + (JSON_ODDITIES if json_body else []):
        _check(world, key[1], API_TARGETS[key], value)


ANY_DATE = st.dates(min_value=dt.date(1, 1, 1), max_value=dt.date(9999, 12, 31)).map(dt.date.isoformat)
DATE_TEXT = st.one_of(ANY_DATE, st.text(max_size=12),
                      st.from_regex(r"\A[0-9+\-]{1,6}-[0-9]{1,3}-[0-9]{1,3}\Z"))


BOX_TEXT = st.one_of(st.integers(-50, 10_050).map(str), st.text(max_size=6))
THREE_BOXES = st.tuples(BOX_TEXT, BOX_TEXT, BOX_TEXT)


@pytest.mark.parametrize("key", sorted(PAGE_TARGETS) + sorted(API_TARGETS), ids=lambda k: f"{k[0]}.{k[1]}")
def test_random_dates_and_date_like_text_everywhere(world: World, key: tuple[str, str]) -> None:
    targets = PAGE_TARGETS.get(key) or API_TARGETS[key]

    @LIMITED
    @given(st.one_of(DATE_TEXT, THREE_BOXES) if key in PAGE_TARGETS else DATE_TEXT)
    def run(value: str | tuple[str, str, str]) -> None:
        _check(world, key[1], targets, value)

    run()
