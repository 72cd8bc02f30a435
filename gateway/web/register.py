"""The public register of approved projects, as a page, CSV and JSON. No sign-in needed."""

from __future__ import annotations

import csv
import io
from typing import Any

from flask import Blueprint, Response, jsonify, render_template

from gateway.web.access import public
from gateway.web.context import catalogue, db
from projects import register as register_rows

bp = Blueprint("register", __name__)


@bp.get("/register")
@public
def page() -> Any:
    return render_template("register/index.html", rows=register_rows.rows(db(), catalogue()),
                           columns=register_rows.COLUMNS)


@bp.get("/register.csv")
@public
def as_csv() -> Response:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=register_rows.COLUMNS)
    writer.writeheader()
    writer.writerows(register_rows.rows(db(), catalogue()))
    return Response(buffer.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="londonsde-data-use-register.csv"'})


@bp.get("/register.json")
@public
def as_json() -> Response:
    return jsonify(register_rows.rows(db(), catalogue()))
