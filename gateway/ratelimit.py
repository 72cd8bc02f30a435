"""Rate limits on password sign-in (per client address and per username) and on API token use (per token).

Flask-Limiter does the counting (fixed windows; in memory per process by default, or any storage the
``limits`` library supports, e.g. ``redis://``, so several gunicorn workers share one count). A request
over a limit is refused with 429 and a Retry-After header before the view runs, so refused attempts
never reach the password check and add nothing to the audit log.
"""

from __future__ import annotations

import hashlib
from typing import Any

from flask import Flask, jsonify, render_template, request
from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address

from gateway.config import SecuritySettings

LOGIN_ENDPOINT = "auth.login"
API_BLUEPRINT = "api"


def _username() -> str:
    return "user:" + (request.form.get("username") or "").strip().lower()


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    return header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else None


def _token_key() -> str:
    # A digest, so the storage (possibly a shared Redis) never holds a usable token.
    return "token:" + hashlib.sha256((_bearer() or "").encode()).hexdigest()


def _too_many(exc: RateLimitExceeded) -> Any:
    if request.path.startswith("/api/"):
        response = jsonify({"error": "too_many_requests",
                            "detail": f"Rate limit exceeded ({exc.description}). Wait and try again; "
                                      "the Retry-After header says how many seconds."})
        response.status_code = 429
        return response
    message = ("Too many sign-in attempts. For your account's safety, wait a minute and try again."
               if request.endpoint == LOGIN_ENDPOINT else "Too many requests. Wait a minute and try again.")
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
    limiter.shared_limit(security.token_limit, scope="api-token", key_func=_token_key,
                         exempt_when=lambda: _bearer() is None)(app.blueprints[API_BLUEPRINT])
    app.register_error_handler(RateLimitExceeded, _too_many)
    return limiter
