"""Rate limits: password sign-in per address and per username, API use per token; 429 with Retry-After."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from gateway.app import create_app
from gateway.config import SecuritySettings, Settings
from gateway.db import unit_of_work
from gateway.identity.tokens import create_token
from gateway.models import AuditEvent, User
from tests.integration.test_pages import csrf_from


def audit_count(factory: sessionmaker[Session]) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(AuditEvent)) or 0


def attempt(client: FlaskClient, username: str, ip: str = "10.0.0.1") -> tuple[int, dict[str, str]]:
    token = csrf_from(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"csrf_token": token, "username": username, "password": "wrong"},
                           environ_base={"REMOTE_ADDR": ip})
    return response.status_code, dict(response.headers) | {"body": response.get_data(as_text=True)}


@pytest.fixture
def limited_app(settings: Settings):
    limited = settings.model_copy(update={"security": SecuritySettings(
        max_failed_logins=50, sign_in_limit_per_ip="4/minute", sign_in_limit_per_username="3/minute",
        token_limit="5/minute")})
    application = create_app(limited)
    yield application
    application.extensions["sde_engine"].dispose()


def test_sign_in_over_the_per_username_limit_gets_429_and_is_not_audited(limited_app, demo_users) -> None:
    client = limited_app.test_client()
    factory = limited_app.extensions["sde_sessionmaker"]
    for _ in range(3):
        assert attempt(client, "researcher")[0] == 401
    audited = audit_count(factory)
    status, headers = attempt(client, "researcher", ip="10.0.0.2")  # another address: the username limit holds
    assert status == 429
    assert int(headers["Retry-After"]) > 0
    assert "Too many sign-in attempts" in headers["body"]
    assert attempt(client, "Researcher ", ip="10.0.0.3")[0] == 429  # same account, however it is typed
    assert audit_count(factory) == audited  # refused attempts never reach the password check
    assert attempt(client, "auditor", ip="10.0.0.2")[0] == 401  # other accounts are unaffected


def test_sign_in_over_the_per_address_limit_gets_429(limited_app, demo_users) -> None:
    client = limited_app.test_client()
    factory = limited_app.extensions["sde_sessionmaker"]
    for name in ("researcher", "auditor", "custodian", "nobody"):
        assert attempt(client, name)[0] == 401
    audited = audit_count(factory)
    status, headers = attempt(client, "researcher2")
    assert status == 429 and "Retry-After" in headers
    assert audit_count(factory) == audited
    assert attempt(client, "researcher2", ip="10.0.0.9")[0] == 401
    assert client.get("/login").status_code == 200  # only attempts (POST) count


def test_a_token_over_its_limit_gets_429_json(limited_app, demo_users) -> None:
    factory = limited_app.extensions["sde_sessionmaker"]
    with unit_of_work(factory) as s:
        owner = s.scalars(select(User).where(User.username == "auditor")).one()
        _, first = create_token(s, "test", owner, "one")
        _, second = create_token(s, "test", owner, "two")
    client = limited_app.test_client()
    for _ in range(5):
        assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {first}"}).status_code == 200
    refused = client.get("/api/v1/me", headers={"Authorization": f"Bearer {first}"})
    assert refused.status_code == 429
    assert refused.json["error"] == "too_many_requests" and "Rate limit exceeded" in refused.json["detail"]
    assert int(refused.headers["Retry-After"]) > 0
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {second}"}).status_code == 200


def test_malformed_limits_are_refused_in_settings() -> None:
    with pytest.raises(ValueError, match="sign_in_limit_per_ip"):
        SecuritySettings(sign_in_limit_per_ip="lots")


@pytest.mark.parametrize("proxies", [0, 1])
def test_forwarded_addresses_count_only_behind_a_trusted_proxy(settings: Settings, demo_users, proxies: int) -> None:
    """Behind one trusted proxy each user's own address is limited; with none, a forged header changes nothing."""
    configured = settings.model_copy(update={"security": SecuritySettings(
        max_failed_logins=50, sign_in_limit_per_ip="2/minute", sign_in_limit_per_username="50/minute",
        trusted_proxies=proxies)})
    application = create_app(configured)
    client = application.test_client()

    def from_client(address: str) -> int:
        token = csrf_from(client.get("/login").get_data(as_text=True))
        return client.post("/login", data={"csrf_token": token, "username": "researcher", "password": "wrong"},
                           environ_base={"REMOTE_ADDR": "192.0.2.1"},  # the proxy
                           headers={"X-Forwarded-For": address}).status_code

    assert [from_client("10.1.1.1"), from_client("10.1.1.1")] == [401, 401]
    assert from_client("10.1.1.2") == (401 if proxies else 429)
    application.extensions["sde_engine"].dispose()


def test_the_limiter_skips_only_requests_no_limit_applies_to(limited_app) -> None:
    """The request filter (gateway.ratelimit.no_limit_here) lets most pages skip the limiter's lookups; it must name
    every view that carries a limit, or a limit added later would silently never be checked."""
    from flask_limiter.util import get_qualified_name

    from gateway.ratelimit import LIMITED_ENDPOINTS, no_limit_here

    limiter = next(iter(limited_app.extensions["limiter"]))
    with_limits = set(limiter.limit_manager._decorated_limits)  # qualified names of the views given a limit
    assert with_limits, "the limiter's record of decorated views moved: read it from where it lives now"
    limited = {endpoint for endpoint, view in limited_app.view_functions.items()
               if get_qualified_name(view) in with_limits}
    assert limited == LIMITED_ENDPOINTS
    for path, method, skipped in [("/register", "GET", True), ("/home", "GET", True), ("/login", "POST", False),
                                  ("/account/password", "POST", False), ("/api/v1/register", "GET", False)]:
        with limited_app.test_request_context(path, method=method):
            assert no_limit_here() is skipped, path
