"""Find an object by its reference (application, project, output request, invoice) and go to its page."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, redirect, render_template, request

from gateway.permissions import Permission
from gateway.web import objects
from gateway.web.access import requires
from gateway.web.context import db, require_user
from gateway.web.recorded import record_refused_search

bp = Blueprint("search", __name__)


@bp.get("/search")
@requires(Permission.USE_ACCOUNT)
def find() -> Any:
    """Goes to the object when this person may open it; a hidden object answers exactly like a missing one,
    and both are recorded as refused, as a refused object URL is."""
    query = (request.args.get("q") or "").strip()[:100]
    if not query:
        return render_template("search.html", query="", missing=False)
    link = objects.find_reference(db(), require_user(), query)
    if link is not None:
        return redirect(link.url)
    record_refused_search(query)
    return render_template("search.html", query=query, missing=True), 404
