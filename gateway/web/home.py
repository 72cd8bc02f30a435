"""The signed-in home page: what this person can do, by role."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, redirect, render_template, url_for

from gateway.permissions import Permission
from gateway.web.access import public, requires
from gateway.web.context import current_user

bp = Blueprint("home", __name__)


@bp.get("/")
@public
def root() -> Any:
    return redirect(url_for("home.index") if current_user() else url_for("auth.login"))


@bp.get("/home")
@requires(Permission.USE_ACCOUNT)
def index() -> Any:
    return render_template("home.html")
