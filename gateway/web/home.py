"""The front door (signed out) and the signed-in home page."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, redirect, render_template, url_for

from gateway.db import utcnow
from gateway.home import waiting_for
from gateway.permissions import Permission
from gateway.trust import incidents
from gateway.trust.figures import figures
from gateway.web.access import public, requires
from gateway.web.context import current_user, db, require_user

bp = Blueprint("home", __name__)


@bp.get("/")
@public
def root() -> Any:
    """Signed in: your home. Signed out: what the London SDE is, the Five Safes, the opt-out, live figures."""
    if current_user() is not None:
        return redirect(url_for("home.index"))
    return render_template("trust/front_door.html", figures=figures(db()), incidents=incidents.published(db())[:3])


@bp.get("/home")
@requires(Permission.USE_ACCOUNT)
def index() -> Any:
    """Your home: what is waiting for you, most urgent first, then the places you can go."""
    return render_template("home.html", waiting=waiting_for(db(), require_user(), utcnow().date()))
