"""The public register of approved projects, as a page, CSV and JSON. No sign-in needed."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Flask, Response, current_app, jsonify, render_template, request, session

from gateway import csv_safe
from gateway.db import commits_in_process
from gateway.trust import register as register_rows
from gateway.web.access import public
from gateway.web.context import catalogue, current_user, db, settings
from gateway.web.recorded import records_download

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

bp = Blueprint("register", __name__)


def _cache() -> register_rows.RowsCache:
    """This app's rows, rebuilt only after a change of state (see gateway.trust.register.RowsCache)."""
    return current_app.extensions.setdefault("sde_register_rows", register_rows.RowsCache())


@dataclass(frozen=True)
class _Kept:
    key: Hashable  # what the rows were built from (gateway.trust.register.RowsCache)
    script_root: str
    html: str
    body: bytes  # the page as sent (UTF-8), for KeptPageShortcut
    checked_at: float  # when the key was last read from the database (the clock's reading just before)
    commits: int  # this process's commit count just before that read (gateway.db.commits_in_process)


class PublicPage:
    """The register page everyone not signed in gets, kept per app and served without a database session while fresh.

    Fresh means: checked against the database (the audit head, see gateway.trust.register.version) less than
    ``recheck_seconds`` ago, and no session of this process has committed since. So a change made in this process
    shows on the next request, and one made by another process (a gunicorn worker, the background worker, an
    ``sde`` command) within ``recheck_seconds``. A check that finds the same key keeps the page and only restarts
    the clock; a new key renders it again.
    """

    def __init__(self, recheck_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.recheck_seconds = recheck_seconds
        self.clock = clock
        self._kept: _Kept | None = None

    def _fresh(self, script_root: str) -> _Kept | None:
        kept = self._kept  # one read: another thread may replace it meanwhile (an atomic assignment)
        if kept is None or kept.script_root != script_root or kept.commits != commits_in_process():
            return None
        if self.clock() - kept.checked_at >= self.recheck_seconds:
            return None
        return kept

    def fresh(self, script_root: str) -> str | None:
        kept = self._fresh(script_root)
        return kept.html if kept is not None else None

    def fresh_body(self, script_root: str) -> bytes | None:
        kept = self._fresh(script_root)
        return kept.body if kept is not None else None

    def checked(self) -> tuple[float, int]:
        """Read before the database is asked: the moment and commit count the answer is at least as new as."""
        return self.clock(), commits_in_process()

    def keep(self, key: Hashable, script_root: str, since: tuple[float, int], render: Callable[[], str]) -> str:
        kept = self._kept
        html = kept.html if kept is not None and (kept.key, kept.script_root) == (key, script_root) else render()
        self._kept = _Kept(key, script_root, html, html.encode(), *since)
        return html


def _public_page() -> PublicPage:
    page: PublicPage | None = current_app.extensions.get("sde_register_page")
    if page is None:
        seconds = settings().public.register_recheck_seconds
        page = current_app.extensions.setdefault("sde_register_page", PublicPage(seconds))
    return page


class KeptPageShortcut:
    """WSGI middleware: a plain ``GET /register`` with no session cookie and no query string is answered from the
    fresh kept page before Flask builds a request, with the headers the view's answer carries (the policy and fixed
    headers of gateway/app.py, ``Vary: Cookie``). Nothing personal can be in it: without the session cookie there is
    no person and no message waiting. No rate limit, access rule or CSRF check applies to the page (it is public and
    only read); anything else, or a page not fresh, goes through Flask and the view as usual.
    """

    def __init__(self, wsgi_app: WSGIApplication, app: Flask) -> None:
        self.wsgi_app, self.app = wsgi_app, app
        self.cookie = f"{app.config['SESSION_COOKIE_NAME']}="

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if (environ.get("PATH_INFO") == "/register" and environ.get("REQUEST_METHOD") == "GET"
                and not environ.get("QUERY_STRING") and self.cookie not in environ.get("HTTP_COOKIE", "")):
            page: PublicPage | None = self.app.extensions.get("sde_register_page")
            body = page.fresh_body((environ.get("SCRIPT_NAME") or "").rstrip("/")) if page is not None else None
            if body is not None:
                policy, fixed = self.app.extensions["sde_security_headers"]
                start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                                          ("Content-Length", str(len(body))), ("Vary", "Cookie"),
                                          ("Content-Security-Policy", policy), *fixed])
                return [body]
        return self.wsgi_app(environ, start_response)


@bp.get("/register")
@public
def page() -> Any:
    # Everyone not signed in and with no message waiting gets the same page: rendered once per version of the rows.
    anonymous = current_user() is None and "_flashes" not in session
    kept = _public_page()
    if anonymous and (html := kept.fresh(request.script_root)) is not None:
        return html  # no database session at all
    since = kept.checked()
    key, rows = _cache().snapshot(db(), catalogue())
    if key is None or not anonymous:
        return _render(rows)
    return kept.keep(key, request.script_root, since, lambda: _render(rows))


def _render(rows: Any) -> str:
    return render_template("register/index.html", rows=rows, columns=register_rows.COLUMNS,
                           links=register_rows.page_links(db()), linked=LINKED)


LINKED = {"Released Outputs", "Publications", "Organisation ID", "Agreed Quote"}


@bp.get("/register.csv")
@public
@records_download("register")
def as_csv() -> Response:
    text = csv_safe.dicts_to_text(register_rows.COLUMNS, _cache().snapshot(db(), catalogue())[1])
    return Response(text, mimetype="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="londonsde-data-use-register.csv"'})


@bp.get("/register.json")
@public
@records_download("register")
def as_json() -> Response:
    """The register as HDR UK Data Use Schema 1.0.0 records (docs/public-register.md)."""
    from gateway.trust import data_use_register
    from gateway.web.receipts import public_base_url

    return jsonify(data_use_register.records(db(), catalogue(), public_base_url()))


@bp.get("/register/hdruk-gateway.json")
@public
@records_download("register")
def as_gateway_upload() -> Response:
    """The register in the HDR UK Gateway's data-use upload fields, for loading into it (docs/public-register.md)."""
    from gateway.web.receipts import public_base_url

    return jsonify(register_rows.hdruk_entries(db(), catalogue(), public_base_url()))
