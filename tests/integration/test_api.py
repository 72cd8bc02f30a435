"""The JSON API: bearer tokens, error shapes and status codes, and a complete OpenAPI document."""

from __future__ import annotations

import datetime as dt

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from gateway.db import unit_of_work, utcnow
from gateway.identity import accounts, tokens
from gateway.models import ApiToken


@pytest.fixture
def token_for(session_factory: sessionmaker[Session], demo_users: dict[str, int]):
    def make(username: str, days: int | None = 30) -> str:
        with unit_of_work(session_factory) as s:
            owner = accounts.find_user(s, username)
            assert owner is not None
            _, plain = tokens.create_token(s, "test", owner, "api test", days)
        return plain
    return make


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_me_returns_user_roles_and_permissions(client: FlaskClient, token_for) -> None:
    body = client.get("/api/v1/me", headers=auth(token_for("auditor"))).json
    assert body["username"] == "auditor"
    assert body["roles"] == ["auditor"]
    assert "view_audit_log" in body["permissions"]


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer nonsense", "Basic abc", "Bearer sde_" + "x" * 43])
def test_missing_or_bad_token_is_401_json(client: FlaskClient, header: str | None) -> None:
    response = client.get("/api/v1/me", headers={"Authorization": header} if header else {})
    assert response.status_code == 401
    assert response.json["error"] == "unauthenticated"
    assert "Bearer" in response.headers["WWW-Authenticate"]


def test_revoked_and_expired_tokens_are_refused(client: FlaskClient, token_for,
                                                session_factory: sessionmaker[Session]) -> None:
    plain = token_for("researcher")
    assert client.get("/api/v1/me", headers=auth(plain)).status_code == 200
    token_id = client.get("/api/v1/tokens", headers=auth(plain)).json[0]["id"]
    assert client.delete(f"/api/v1/tokens/{token_id}", headers=auth(plain)).status_code == 204
    assert client.get("/api/v1/me", headers=auth(plain)).status_code == 401

    expiring = token_for("researcher")
    with unit_of_work(session_factory) as s:
        for token in s.query(ApiToken).filter(ApiToken.revoked_at.is_(None)):
            token.expires_at = utcnow() - dt.timedelta(seconds=1)
    assert client.get("/api/v1/me", headers=auth(expiring)).status_code == 401


def test_someone_elses_token_cannot_be_revoked(client: FlaskClient, token_for) -> None:
    mine, theirs = token_for("researcher"), token_for("researcher2")
    their_id = client.get("/api/v1/tokens", headers=auth(theirs)).json[0]["id"]
    response = client.delete(f"/api/v1/tokens/{their_id}", headers=auth(mine))
    assert response.status_code == 404  # someone else's token answers like a missing one
    assert client.get("/api/v1/me", headers=auth(theirs)).status_code == 200


def test_validation_errors_are_422_with_fields_and_nothing_is_written(client: FlaskClient, token_for) -> None:
    admin = auth(token_for("admin"))
    before = len(client.get("/api/v1/users", headers=admin).json)
    bad = client.post("/api/v1/users", headers=admin, json={"username": "ok-name", "display_name": "X",
                                                             "password": "short", "roles": ["researcher"]})
    assert bad.status_code == 422
    assert bad.json["error"] == "validation_error"
    assert "password" in bad.json["detail"]["fields"]
    extra = client.post("/api/v1/users", headers=admin, json={"username": "ok", "display_name": "X",
                                                               "password": "a-long-password", "admin": True})
    assert extra.status_code == 422
    not_json = client.post("/api/v1/users", headers=admin, data="username=x")
    assert not_json.status_code == 422
    unknown_role = client.post("/api/v1/users", headers=admin, json={
        "username": "newperson", "display_name": "X", "password": "a-long-password", "roles": ["god"]})
    assert unknown_role.status_code == 403
    assert len(client.get("/api/v1/users", headers=admin).json) == before


def test_unknown_object_is_404_and_unknown_route_is_json_404(client: FlaskClient, token_for) -> None:
    admin = auth(token_for("admin"))
    missing = client.get("/api/v1/users/999999", headers=admin)
    assert missing.status_code == 404 and missing.json["error"] == "not_found"
    nowhere = client.get("/api/v1/no-such-thing", headers=admin)
    assert nowhere.status_code == 404 and nowhere.json["error"] == "not_found"


def test_admin_cannot_change_own_roles_via_api(client: FlaskClient, token_for, demo_users: dict[str, int]) -> None:
    admin = auth(token_for("admin"))
    response = client.put(f"/api/v1/users/{demo_users['admin']}/roles", headers=admin,
                          json={"roles": ["auditor"], "reason": "Moving to oversight."})
    assert response.status_code == 403
    assert client.get("/api/v1/me", headers=admin).json["roles"] == ["admin"]


def test_audit_events_are_filtered_and_bad_filters_rejected(client: FlaskClient, token_for) -> None:
    auditor = auth(token_for("auditor"))
    created = client.get("/api/v1/audit/events?action=user.created&limit=5", headers=auditor)
    assert created.status_code == 200
    assert {e["action"] for e in created.json} == {"user.created"} and len(created.json) == 5
    assert client.get("/api/v1/audit/events?limit=0", headers=auditor).status_code == 422
    assert client.get("/api/v1/audit/events?since=yesterday", headers=auditor).status_code == 422
    assert client.get("/api/v1/audit/events?since=2026-02-02&until=2026-01-01",
                      headers=auditor).status_code == 422
    verify = client.get("/api/v1/audit/verify", headers=auditor).json
    assert verify["ok"] is True and verify["checked"] > 12


def test_openapi_document_lists_every_api_route(app: Flask, client: FlaskClient) -> None:
    doc = client.get("/api/v1/openapi.json").json
    assert doc["openapi"].startswith("3.")
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    registered = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("api.") and rule.endpoint != "api.openapi":
            path = rule.rule.removeprefix("/api/v1")
            for arg in rule.arguments:
                path = path.replace(f"<int:{arg}>", f"{{{arg}}}").replace(f"<{arg}>", f"{{{arg}}}")
            registered |= {(path, m) for m in rule.methods or () if m not in {"HEAD", "OPTIONS"}}
    assert documented == registered
    me = doc["paths"]["/me"]["get"]
    assert me["responses"]["200"]["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/MeOut"
    assert "401" in me["responses"] and "403" in me["responses"]
    assert "MeOut" in doc["components"]["schemas"] and "ErrorBody" in doc["components"]["schemas"]
