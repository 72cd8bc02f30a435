"""The auditor's view of the log: filters, CSV export and chain verification."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, render_template, request, stream_with_context

from gateway import audit, csv_safe
from gateway.permissions import Permission
from gateway.web import objects
from gateway.web.access import requires
from gateway.web.context import db, require_user, settings
from gateway.web.forms import AnchorsForm, AuditFilterForm
from gateway.web.recorded import records_download
from gateway.workspaces import traffic

bp = Blueprint("audit", __name__, url_prefix="/audit")

CSV_COLUMNS = ["seq", "occurred_at", "actor", "action", "object_type", "object_id", "details", "prev_hash",
               "hash"]


def _midnight(day: dt.date | None) -> dt.datetime | None:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC) if day else None


def filters_from(form: AuditFilterForm) -> audit.AuditFilter:
    """The filter the form's fields describe (the dates' typing is checked by the form itself)."""
    since, until = _midnight(form.since.data), _midnight(form.until.data)
    return audit.AuditFilter(
        actor=(form.actor.data or "").strip().lower() or None,
        action=(form.action.data or "").strip() or None,
        object_type=(form.object_type.data or "").strip() or None,
        object_id=(form.object_id.data or "").strip() or None,
        since=since,
        until=until + dt.timedelta(days=1) if until else None,
    )


@bp.get("/")
@requires(Permission.VIEW_AUDIT_LOG)
def events() -> Any:
    form = AuditFilterForm(request.args)
    form.validate()
    filters = filters_from(form)
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    rows = [] if form.errors else audit.search(db(), filters, limit=101, offset=(page - 1) * 100)
    has_next = len(rows) > 100
    query = {k: v for k, v in request.args.items() if k != "page" and v}
    links = objects.links_for(db(), require_user(), ((e.object_type, e.object_id) for e in rows[:100]))
    return render_template("audit/events.html", form=form, events=rows[:100], page=page, has_next=has_next,
                           query=query, links=links, detail_lines=objects.detail_lines), 422 if form.errors else 200


@bp.get("/events.csv")
@requires(Permission.VIEW_AUDIT_LOG)
@records_download("audit_log")
def export_csv() -> Any:
    form = AuditFilterForm(request.args)
    if not form.validate():
        return render_template("error.html", status=422,
                               message="The filters are not valid: " + " ".join(
                                   m for ms in form.errors.values() for m in ms)), 422
    filters = filters_from(form)
    session = db()

    def generate() -> Iterator[str]:
        rows = ([event.seq, event.occurred_at.isoformat(), event.actor_label, event.action, event.object_type,
                 event.object_id or "", json.dumps(event.details, sort_keys=True), event.prev_hash, event.hash]
                for event in audit.iter_all(session, filters))
        yield from csv_safe.stream_rows(CSV_COLUMNS, rows)

    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return Response(stream_with_context(generate()), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="audit-{stamp}.csv"'})


WINDOWS = {1: "the last hour", 24: "the last day", 168: "the last 7 days", 720: "the last 30 days"}


@bp.get("/refusals")
@requires(Permission.VIEW_AUDIT_LOG)
def refusals() -> Any:
    """Repeated refused requests per person: a simple signal of somebody trying ids that are not theirs."""
    hours = request.args.get("hours", 24, type=int)
    hours = hours if hours in WINDOWS else 24
    minimum = min(max(request.args.get("minimum", 5, type=int) or 5, 1), 1000)
    since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours)
    rows = audit.refusals_by_actor(db(), since, minimum)
    return render_template("audit/refusals.html", rows=rows, hours=hours, minimum=minimum, windows=WINDOWS,
                           since=since)


@bp.get("/workspace-sessions")
@requires(Permission.VIEW_AUDIT_LOG)
def workspace_sessions() -> Any:
    """Every project's workspace sessions, newest first, with the bytes each server sent to the browser."""
    return render_template("audit/workspace_sessions.html", rows=traffic.sessions_of(db(), limit=500),
                           labels=traffic.LABELS, human_bytes=traffic.human_bytes,
                           threshold=traffic.human_bytes(settings().workspaces.traffic_alert_bytes))


def _head() -> audit.Anchor | None:
    """The head to keep as an anchor; None when its row is missing (which verification reports)."""
    try:
        return audit.current_head(db())
    except LookupError:
        return None


@bp.get("/verify")
@requires(Permission.VIEW_AUDIT_LOG)
def verify() -> Any:
    result = audit.verify(db())
    return render_template("audit/verify.html", result=result, anchors=0, head=_head(),
                           form=AnchorsForm())


@bp.post("/verify")
@requires(Permission.VIEW_AUDIT_LOG)
def verify_anchors() -> Any:
    """The chain checked against anchors the auditor kept outside the database (as `sde audit verify --anchors`):
    a log rewritten with its hashes recomputed and its head moved no longer holds an anchored event's hash."""
    form = AnchorsForm()
    kept: list[audit.Anchor] = []
    if form.validate_on_submit():
        try:
            kept = audit.parse_anchors(form.anchors.data or "")
        except ValueError as exc:
            form.anchors.errors = [f"Anchors you kept, {exc}."]
    if form.errors or not kept:
        return render_template("audit/verify.html", result=None, anchors=0, head=_head(),
                               form=form), 422
    result = audit.verify(db(), anchors=kept)
    return render_template("audit/verify.html", result=result, anchors=len(kept), head=_head(),
                           form=form)
