"""The data catalogue: datasets and their variables with each variable's sensitivity class.

Public (no sign-in): it is metadata only - names, descriptions, types and sensitivity, never a value."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, render_template

from gateway.web.access import public
from gateway.web.context import catalogue

bp = Blueprint("catalogue", __name__, url_prefix="/catalogue")


@bp.get("/")
@public
def index() -> Any:
    return render_template("catalogue/index.html", catalogue=catalogue())


@bp.get("/<name>")
@public
def dataset(name: str) -> Any:
    found = next((d for d in catalogue().datasets if d.name == name), None)
    if found is None:
        abort(404)
    return render_template("catalogue/dataset.html", dataset=found)
