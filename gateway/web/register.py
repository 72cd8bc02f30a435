"""The public register of approved projects, as a page, CSV and JSON. No sign-in needed."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, render_template, request, session

from gateway import csv_safe
from gateway.trust import register as register_rows
from gateway.web.access import public
from gateway.web.context import catalogue, current_user, db
from gateway.web.recorded import records_download

bp = Blueprint("register", __name__)


def _cache() -> register_rows.RowsCache:
    """This app's rows, rebuilt only after a change of state (see gateway.trust.register.RowsCache)."""
    return current_app.extensions.setdefault("sde_register_rows", register_rows.RowsCache())


@bp.get("/register")
@public
def page() -> Any:
    key, rows = _cache().snapshot(db(), catalogue())
    if key is None or current_user() is not None or "_flashes" in session:
        return _render(rows)
    # Everyone not signed in and with no message waiting gets the same page: render it once per version of the rows.
    pages: dict[Any, str] = current_app.extensions.setdefault("sde_register_page", {})
    page_key = (key, request.script_root)
    html = pages.get(page_key)
    if html is None:
        html = _render(rows)
        pages.clear()  # only the current version is worth keeping
        pages[page_key] = html
    return html


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
