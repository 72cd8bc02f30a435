"""The application factory."""

from __future__ import annotations

import datetime as dt
import functools
import logging
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Flask,
    Response,
    abort,
    current_app,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError, CSRFProtect
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy.exc import InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from gateway import wiring
from gateway.config import Settings, load_settings
from gateway.db import make_engine, make_reading_session_factory, make_session_factory
from gateway.errors import DomainError
from gateway.identity import tokens
from gateway.identity.ldap_directory import LdapDirectory
from gateway.identity.sessions import STEP_STATES, SignInState, live_session
from gateway.models import User
from gateway.permissions import ROLE_LABELS, Permission, has_permission, permissions_of, role_permissions_of
from gateway.ratelimit import init_rate_limits
from gateway.web.access import access_of
from gateway.web.auth import STEP_ENDPOINTS
from gateway.web.context import close_db, current_user, db
from gateway.web.recorded import record_refusal

log = logging.getLogger(__name__)
csrf = CSRFProtect()

API_PREFIX = "/api/"


def create_app(settings: Settings | None = None, **overrides: Any) -> Flask:
    settings = settings or load_settings(overrides or None)
    wiring.wire()  # domain events to the layers that act on them, before anything can emit one
    app = Flask(__name__, instance_path=str(settings.instance_dir), instance_relative_config=False)
    app.config.update(
        SECRET_KEY=settings.resolved_secret_key(),
        SESSION_COOKIE_NAME="sde_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.security.https,
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=settings.security.session_hours),
        # The cookie is signed and sent again only when its content changes, not on every response: the sign-in
        # it names ends at a fixed time on the server (gateway/identity/sessions.py), so a re-sent cookie would
        # extend nothing and only cost a signature per request.
        SESSION_REFRESH_EACH_REQUEST=False,
        MAX_CONTENT_LENGTH=25 * 1024 * 1024,
        WTF_CSRF_SSL_STRICT=settings.security.https,
        TESTING=settings.env == "test",
    )
    app.session_interface = SessionCookies()
    engine = make_engine(settings.resolved_database_url)
    app.extensions["sde_settings"] = settings
    app.extensions["sde_security_headers"] = security_headers_for(settings)
    app.extensions["sde_engine"] = engine
    app.extensions["sde_sessionmaker"] = make_session_factory(engine)
    app.extensions["sde_read_sessionmaker"] = make_session_factory(engine, read_mostly=True)
    app.extensions["sde_page_sessionmaker"] = make_reading_session_factory(engine)
    app.extensions["sde_directory"] = LdapDirectory(settings.ldap) if settings.ldap else None
    csrf.init_app(app)
    app.jinja_env.add_extension("jinja2.ext.do")
    from gateway.web.register import KeptPageShortcut

    app.wsgi_app = KeptPageShortcut(app.wsgi_app, app)  # type: ignore[method-assign]
    if settings.security.trusted_proxies:
        hops = settings.security.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]

    from gateway.api import load_operations
    from gateway.api.base import bp as api_bp
    from gateway.web import blueprints, labels

    load_operations()
    for blueprint in blueprints():
        app.register_blueprint(blueprint)
    from gateway.web.handover import bp as handover_bp

    csrf.exempt(handover_bp)  # the hub's secret header, never cookies
    csrf.exempt(api_bp)  # bearer tokens only, no cookies: not exposed to cross-site requests
    app.register_blueprint(api_bp)

    init_rate_limits(app, settings.security)  # its check runs before _identify_and_enforce: no DB work when refused
    app.before_request(_refuse_nul_characters)
    app.before_request(_identify_and_enforce)
    app.after_request(_security_headers)
    app.after_request(record_refusal)  # a refused request for an object is in the audit log
    app.teardown_appcontext(close_db)
    _register_error_handlers(app)
    app.context_processor(_template_globals)
    app.extensions["sde_layout_urls"] = {}
    app.add_template_global(layout_url)
    labels.register(app)
    return app


class SessionCookies(SecureCookieSessionInterface):
    """Flask's signed-cookie session, with its signing serializer made once per process for the app's keys instead
    of on every request (Flask builds a new one each time). The cookie, its signature and its checks are unchanged."""

    def __init__(self) -> None:
        self._made: tuple[tuple[Any, ...], URLSafeTimedSerializer | None] | None = None

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        keys = (app.secret_key, *(app.config["SECRET_KEY_FALLBACKS"] or ()))
        made = self._made  # one read: another thread may replace it meanwhile (an atomic assignment)
        if made is None or made[0] != keys:
            made = self._made = (keys, super().get_signing_serializer(app))
        return made[1]


def _is_api() -> bool:
    return request.path.startswith(API_PREFIX)


FORM_MIMETYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})  # what Werkzeug parses


def _refuse_nul_characters() -> Any:
    """A NUL character in a form field or query parameter could never be stored (PostgreSQL refuses it in text):
    refuse the page request up front. The API refuses it per declared field, with its 422 (gateway/api/registry.py)."""
    if _is_api():
        return None
    # Only a query string with "%00" can decode to a NUL, and only a form body is parsed into request.form: a page
    # request with neither (most of them) is not parsed here at all.
    query = request.query_string
    sources = ([request.args] if b"%00" in query or b"\x00" in query else []) + (
        [request.form] if request.mimetype in FORM_MIMETYPES else [])
    if any("\x00" in key or "\x00" in value for source in sources for key, value in source.items(multi=True)):
        message = "The form contained a character that cannot be used (NUL). Go back, remove it and try again."
        return render_template("error.html", status=422, message=message), 422
    return None


def _session_user() -> tuple[User | None, str | None]:
    """The person and sign-in state behind the cookie's key, from the server-side session (one query)."""
    key = session.get("sid")
    if key is None:
        return None, None
    ws = live_session(db(), key)
    if ws is None:  # signed out, ended elsewhere, expired, or never ours: forget the cookie
        session.clear()
        return None, None
    g.web_session = ws
    return ws.user, ws.state


def _bearer_user() -> User | None:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return None
    user = tokens.user_for_token(db(), header.removeprefix("Bearer ").strip())
    if db().dirty:
        db().commit()
    return user


def _identify_and_enforce() -> Response | None:
    """The one place where every request is identified and its route's access rule applied."""
    endpoint = request.endpoint
    if endpoint is None:
        return None  # no such route: Flask answers 404
    if _is_api():
        g.user = _bearer_user()
        g.stage = "full" if g.user else None
        if request.headers.get("Authorization") and g.user is None:
            return _api_error(401, "unauthenticated", "The token is missing, malformed, expired or revoked.")
    else:
        user, stage = _session_user()
        g.user = user if stage == SignInState.SIGNED_IN else None
        g.pending_user = user if stage in STEP_STATES else None
        g.stage = stage
    if endpoint == "static":
        return None
    access = access_of(current_app.view_functions.get(endpoint))
    if access is None:
        log.error("route %s has no access declaration; refusing", endpoint)
        abort(403)
    if access.kind == "public":
        return None
    if access.kind == "hub":  # the workspace hub's calls (gateway/outputs/handover.py): its secret, never a person
        from gateway.outputs.handover import HUB_SECRET_HEADER, hub_secret_ok

        if g.user is not None or not hub_secret_ok(current_app.extensions["sde_settings"],
                                                   request.headers.get(HUB_SECRET_HEADER)):
            return _api_error(401, "unauthenticated", "Only the workspace hub may call this.")
        return None
    if access.kind == "mid_sign_in":
        if g.get("pending_user") is None:
            return redirect(url_for("auth.login"))
        if g.stage != access.step:  # a step's page serves only its own state
            return redirect(url_for(STEP_ENDPOINTS[g.stage]))
        return None
    if g.user is None:
        if _is_api():
            return _api_error(401, "unauthenticated", "Send 'Authorization: Bearer <token>'.")
        if g.get("pending_user") is not None:
            return redirect(url_for(STEP_ENDPOINTS[g.stage]))
        return redirect(url_for("auth.login", next=request.full_path if request.method == "GET" else None))
    assert access.permission is not None
    if g.user.token_read_only and request.method not in {"GET", "HEAD", "OPTIONS"}:
        return _api_error(403, "read_only_token", "This token is read-only: it can read but not change anything.")
    if not has_permission(g.user, access.permission):
        if g.user.token_scopes is not None and access.permission in role_permissions_of(g.user):
            return _api_error(403, "insufficient_scope",
                              f"This token does not have the '{access.permission.value}' scope.")
        abort(403)
    return None


# The NHS fonts (Frutiger) are licensed for NHS services and are not in the nhsuk-frontend package: its stylesheet
# loads them from the NHS's asset host. Only fonts may come from there; everything else stays on this origin.
NHS_FONTS_ORIGIN = "https://assets.nhs.uk"


@functools.lru_cache(maxsize=8)
def content_security_policy(hub_url: str) -> str:
    """No inline script or style anywhere; forms may post here, or hand over (redirect) to the workspace hub."""
    parts = urlsplit(hub_url)
    hub_origin = f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""
    return ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"font-src 'self' {NHS_FONTS_ORIGIN}; "
            f"connect-src 'self'; frame-ancestors 'none'; form-action 'self' {hub_origin}".rstrip()
            + "; base-uri 'none'; object-src 'none'")


def security_headers_for(settings: Settings) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The policy and the fixed headers every answer carries: worked out once per app, from its settings."""
    fixed = [("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"), ("Referrer-Policy", "same-origin"),
             ("Permissions-Policy", "camera=(), microphone=(), geolocation=()")]
    if settings.security.https:
        fixed.append(("Strict-Transport-Security", "max-age=31536000; includeSubDomains"))
    return content_security_policy(settings.workspaces.hub_url), tuple(fixed)


def _security_headers(response: Response) -> Response:
    policy, fixed = current_app.extensions["sde_security_headers"]
    headers = response.headers
    headers.setdefault("Content-Security-Policy", policy)  # a view may set a stricter policy of its own
    for name, value in fixed:
        headers[name] = value
    if g.get("user") is not None or g.get("pending_user") is not None:
        headers["Cache-Control"] = "no-store"
    return response


def _api_error(status: int, error: str, detail: Any) -> Response:
    response = jsonify({"error": error, "detail": detail})
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="londonsde"'
    return response


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def domain_error(exc: DomainError) -> Any:
        if _is_api():
            detail: Any = exc.message if not exc.field_errors else {"message": exc.message,
                                                                      "fields": exc.field_errors}
            return _api_error(exc.status_code, exc.error, detail)
        return render_template("error.html", status=exc.status_code, message=exc.message), exc.status_code

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError) -> Any:
        message = "Your form expired or was sent from another site. Go back, reload the page and try again."
        return render_template("error.html", status=400, message=message), 400

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        status = exc.code or 500
        allow = {k: v for k, v in exc.get_headers() if k == "Allow"}  # a 405 names the methods that are allowed
        if _is_api():
            detail = "You do not have permission to do this." if status == 403 else exc.description
            response = _api_error(status, (exc.name or "error").lower().replace(" ", "_"), detail)
            response.headers.update(allow)
            return response
        return render_template("error.html", status=status, message=None), status, allow

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    def database_down(exc: OperationalError | InterfaceError) -> Any:
        # Never the exception's text: it can hold the server's address or the failed SQL.
        log.error("database unavailable: %s", exc.__class__.__name__)
        retry = {"Retry-After": "30"}
        if _is_api():
            response = _api_error(503, "service_unavailable", "The database is unavailable; try again shortly.")
            response.headers.update(retry)
            return response
        message = "The service cannot reach its database at the moment. Wait a minute, then reload the page."
        return render_template("error.html", status=503, message=message), 503, retry

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Any:
        log.exception("unhandled error")
        if _is_api():
            return _api_error(500, "internal_error", "Something went wrong on our side; it has been logged.")
        return render_template("error.html", status=500, message=None), 500


NAV: list[tuple[str, str, Permission]] = [
    ("Home", "home.index", Permission.USE_ACCOUNT),
    ("Applications", "applications.index", Permission.VIEW_PROJECTS),
    ("Projects", "projects.index", Permission.VIEW_PROJECTS),
    ("Data catalogue", "catalogue.index", Permission.USE_ACCOUNT),
    ("Outputs", "outputs.index", Permission.REQUEST_OUTPUTS),
    ("Packages", "packages.index", Permission.REQUEST_PACKAGES),
    ("Output checking", "outputs.queue", Permission.REVIEW_OUTPUTS),
    ("Users", "admin.users", Permission.MANAGE_USERS),
    ("Organisations", "organisations.index", Permission.MANAGE_ORGANISATIONS),
    ("Accreditation", "accreditation.index", Permission.RECORD_ACCREDITATION),
    ("Accreditation queue", "accreditation.queue", Permission.VERIFY_ACCREDITATION),
    ("Security policy", "admin.security_policy", Permission.MANAGE_SECURITY_POLICY),
    ("Audit log", "audit.events", Permission.VIEW_AUDIT_LOG),
    ("Finance", "charging.dashboard", Permission.MANAGE_CHARGES),
    ("Incidents", "trust.record_incident", Permission.RECORD_INCIDENTS),
    ("Package requests", "packages.queue", Permission.MANAGE_PACKAGES),
    ("Your account", "account.index", Permission.USE_ACCOUNT),
]


# What someone signed out sees in the menu: the public front door's pages.
PUBLIC_NAV: list[tuple[str, str]] = [
    ("About", "home.root"), ("Register of projects", "register.page"), ("Data catalogue", "catalogue.index"),
    ("Tariff", "charging.tariff"), ("Incidents", "trust.incidents_page"), ("Get involved", "trust.involvement"),
    ("Sign in", "auth.login"),
]


def layout_url(endpoint: str, filename: str | None = None) -> str:
    """``url_for`` for the layout's fixed links (stylesheets, scripts, the menu): the same for every request under one
    script root, so each is built once per process and script root instead of on every page."""
    urls: dict[tuple[str, str, str | None], str] = current_app.extensions["sde_layout_urls"]
    key = (request.script_root, endpoint, filename)
    url = urls.get(key)
    if url is None:
        if len(urls) > 1000:  # the script root comes with the request: never let it grow the table without end
            urls.clear()
        url = urls[key] = url_for(endpoint, filename=filename) if filename is not None else url_for(endpoint)
    return url


# per process, read-only: the same for everyone
ROLE_LABELS_BY_VALUE = MappingProxyType({r.value: label for r, label in ROLE_LABELS.items()})


def _template_globals() -> dict[str, Any]:
    """What every page may use, worked out once per render: the person's permissions are read once, not per link."""
    user = current_user()
    granted = permissions_of(user)
    nav = [(label, endpoint) for label, endpoint, perm in NAV if perm in granted] if user is not None else PUBLIC_NAV
    return {
        "current_user": user,
        "nav_items": nav,
        "can": lambda permission: Permission(permission) in granted,
        "role_labels": ROLE_LABELS_BY_VALUE,
    }
