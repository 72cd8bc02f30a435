"""Rate limits on password sign-in (per client address and per username), on each later sign-in step and on
password changes (per account, and per address), and on API token use (per token).

Flask-Limiter does the counting (fixed windows; in memory per process by default, or any storage the
``limits`` library supports, e.g. ``redis://``, so several gunicorn workers share one count). A request
over a limit is refused with 429 and a Retry-After header before the view runs, so refused attempts
never reach the password check and add nothing to the audit log.
"""

from __future__ import annotations

import hashlib
from typing import Any

from flask import Flask, jsonify, render_template, request, session
from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address

from gateway.config import SecuritySettings

LOGIN_ENDPOINT = "auth.login"
# The steps after the password, and the account page's password change: limited per account, so starting the
# sign-in again (a new cookie) buys no more guesses at a code.
ACCOUNT_LIMITED_ENDPOINTS = ("auth.second_factor", "auth.verify", "auth.send_link", "auth.enrol", "auth.new_password",
                             "account.change_password", "account.verify_link", "account.send_link")
SIGN_IN_ENDPOINTS = (LOGIN_ENDPOINT, *ACCOUNT_LIMITED_ENDPOINTS[:5])
API_BLUEPRINT = "api"
# Every view given a limit below; with the API blueprint, the only requests the limiter needs to look at.
LIMITED_ENDPOINTS = frozenset({LOGIN_ENDPOINT, *ACCOUNT_LIMITED_ENDPOINTS})


def _username() -> str:
    return "user:" + (request.form.get("username") or "").strip().lower()


def _account() -> str:
    # The signed cookie's user id (written by the server when the password was accepted); the server-side
    # session, checked after this, decides whether the request is allowed at all.
    return f"account:{session.get('uid', 'none')}"


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    return header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else None


def _token_key() -> str:
    # A digest, so the storage (possibly a shared Redis) never holds a usable token.
    return "token:" + hashlib.sha256((_bearer() or "").encode()).hexdigest()


def no_limit_here() -> bool:
    """True for a request no limit applies to (most pages): the limiter skips its lookups. A limit set on another
    view must add it to LIMITED_ENDPOINTS (tests/integration/test_rate_limits.py compares the two)."""
    return request.endpoint not in LIMITED_ENDPOINTS and request.blueprint != API_BLUEPRINT


def _too_many(exc: RateLimitExceeded) -> Any:
    if request.path.startswith("/api/"):
        response = jsonify({"error": "too_many_requests",
                            "detail": f"Rate limit exceeded ({exc.description}). Wait and try again; "
                                      "the Retry-After header says how many seconds."})
        response.status_code = 429
        return response
    message = ("Too many sign-in attempts. For your account's safety, wait a minute and try again."
               if request.endpoint in SIGN_IN_ENDPOINTS else "Too many requests. Wait a minute and try again.")
    return render_template("error.html", status=429, message=message), 429


def init_rate_limits(app: Flask, security: SecuritySettings) -> Limiter:
    """Attach a limiter to ``app`` (call after the blueprints are registered, before other request hooks)."""
    limiter = Limiter(key_func=get_remote_address, app=app, storage_uri=security.rate_limit_storage_uri,
                      headers_enabled=True, key_prefix="sde")
    login = app.view_functions[LOGIN_ENDPOINT]
    login = limiter.limit(security.sign_in_limit_per_ip, key_func=get_remote_address, methods=["POST"],
                          scope="sign-in-ip")(login)
    login = limiter.limit(security.sign_in_limit_per_username, key_func=_username, methods=["POST"],
                          scope="sign-in-user")(login)
    app.view_functions[LOGIN_ENDPOINT] = login
    for endpoint in ACCOUNT_LIMITED_ENDPOINTS:
        view = app.view_functions[endpoint]
        view = limiter.limit(security.second_factor_limit, key_func=_account, methods=["POST"],
                             scope=f"{endpoint}-account")(view)
        view = limiter.limit(security.sign_in_limit_per_ip, key_func=get_remote_address, methods=["POST"],
                             scope=f"{endpoint}-ip")(view)
        app.view_functions[endpoint] = view
    limiter.shared_limit(security.token_limit, scope="api-token", key_func=_token_key,
                         exempt_when=lambda: _bearer() is None)(app.blueprints[API_BLUEPRINT])
    limiter.request_filter(no_limit_here)  # Flask-Limiter's own way to leave a request out

    app.register_error_handler(RateLimitExceeded, _too_many)
    return limiter
