"""Output request pages: the researcher builds and submits a request; checkers review, decide and release."""

from __future__ import annotations

import datetime as dt
import io
import json
from typing import Any, NamedTuple

from flask import Blueprint, flash, redirect, render_template, request, send_file, url_for
from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired, Length

from gateway.db import utcnow
from gateway.errors import Conflict, InvalidTransition, NotFound, ValidationError
from gateway.models import User
from gateway.outputs import checks, files, release, service
from gateway.outputs.models import OutputRequest
from gateway.outputs.workflow import (
    EARLY_RETURN_STATES,
    EDITABLE_STATES,
    EXCEPTION_DECISION_LABELS,
    OUTPUT_OWNERS,
    REVIEWABLE_STATES,
    OutputState,
)
from gateway.permissions import Permission, has_permission
from gateway.web.access import requires
from gateway.web.context import current_user, db, require_user, run, settings
from gateway.web.forms import EmptyForm, round_seen
from gateway.web.forms_errors import apply_errors
from gateway.web.recorded import records_download
from projects import lifecycle
from projects.lifecycle import is_member
from projects.models import Project

bp = Blueprint("outputs", __name__, url_prefix="/outputs")

PREVIEW_ROWS = 200


class NewRequestForm(FlaskForm):
    title = StringField("Title", validators=[DataRequired("Give the request a title."), Length(max=200)])


@bp.app_context_processor
def _released_outputs() -> dict[str, Any]:
    """For the project page's include: the released output requests of a project the viewer may see."""
    def released_outputs(project: Project) -> list[OutputRequest]:
        user = current_user()
        if user is None or not (is_member(user, project) or has_permission(user, Permission.REVIEW_OUTPUTS)):
            return []
        return service.released_for_project(db(), project)
    return {"released_outputs": released_outputs}


def _load(request_id: int) -> OutputRequest:
    return service.get_request(db(), require_user(), request_id)


def _to(item: OutputRequest) -> Any:
    return redirect(url_for("outputs.view", request_id=item.id))


def _attempt(item: OutputRequest, success: str, command: Any, *args: Any) -> Any:
    """Run one command; a refusal about the state or the input is shown on the request page (403 stays 403)."""
    if not EmptyForm().validate_on_submit():
        flash("Your form expired; reload the page and try again.", "error")
        return _to(item)
    try:
        run(command, *args)
    except (ValidationError, Conflict, InvalidTransition) as exc:
        for message in [m for ms in exc.field_errors.values() for m in ms] or [exc.message]:
            flash(message, "error")
    else:
        flash(success, "success")
    return _to(item)


def _age(moment: dt.datetime | None) -> str:
    if moment is None:
        return ""
    hours = int((utcnow() - moment).total_seconds() // 3600)
    return f"{hours // 24} days" if hours >= 48 else f"{hours} hours"


@bp.get("/")
@requires(Permission.VIEW_PROJECTS)
def index() -> Any:
    user = require_user()
    projects = [p for p in lifecycle.list_projects(db(), user) if is_member(user, p)]
    return render_template("outputs/index.html", requests=service.requests_of(db(), user, projects),
                           projects=projects, owners=OUTPUT_OWNERS,
                           can_request=has_permission(user, Permission.REQUEST_OUTPUTS),
                           is_checker=has_permission(user, Permission.REVIEW_OUTPUTS))


@bp.get("/queue")
@requires(Permission.REVIEW_OUTPUTS)
def queue() -> Any:
    rows = service.queue(db(), require_user())
    return render_template("outputs/queue.html", rows=rows, age=_age, owners=OUTPUT_OWNERS)


@bp.route("/projects/<int:project_id>/new", methods=["GET", "POST"])
@requires(Permission.REQUEST_OUTPUTS)
def new(project_id: int) -> Any:
    user = require_user()
    project = lifecycle.get_project(db(), user, project_id)
    form = NewRequestForm()
    extra: list[str] = []
    if form.validate_on_submit():
        try:
            created = run(service.create_request, user, project, form.title.data or "")
        except ValidationError as exc:
            extra = apply_errors(form, exc)
        except Conflict as exc:
            extra = [exc.message]
        else:
            flash("Request started. Add a group, then send the files from your workspace.", "success")
            return _to(created)
    return render_template("outputs/new.html", form=form, project=project, extra=extra), \
        422 if form.errors or extra else 200


@bp.get("/<int:request_id>")
@requires(Permission.VIEW_PROJECTS)
def view(request_id: int) -> Any:
    user = require_user()
    item = service.request_page(db(), user, request_id)
    author = item.author_id == user.id
    checker = service.can_review(user, item)
    editable = author and item.state in EDITABLE_STATES
    previews = {f.id: _csv_preview(f) for f in item.files if checker and f.extension == "csv"}
    # votes, reviews and the decision's problems only where the page shows them: to a checker who may review it
    return render_template(
        "outputs/view.html", item=item, user=user, owners=OUTPUT_OWNERS, author=author, checker=checker,
        conflict=service.review_conflict(user, item) if has_permission(user, Permission.REVIEW_OUTPUTS) else None,
        editable=editable, problems=service.submission_problems(item) if editable else [],
        previews=previews, votes={f.id: service.visible_votes(user, item, f) for f in item.files},
        my_votes={f.id: next((v.vote for v in service.current_votes(f) if v.reviewer_id == user.id), None)
                  for f in item.files} if checker else {},
        reviews=service.round_reviews(item) if service.unblinded(user, item) and checker else [],
        own_review=service.own_review(user, item) if checker else None,
        comments=service.visible_comments(user, item),
        reviewing=item.state in REVIEWABLE_STATES,
        approval_problems=service.approval_problems(item) if checker and item.state == OutputState.REVIEWED else [],
        limits=settings().outputs, is_released=item.state == OutputState.RELEASED,
        is_member=is_member(user, item.project),
        exception_for=lambda f: service.current_exception(item, f),
        exception_decisions=lambda e: service.visible_exception_decisions(user, item, e),
        can_ask_exception=author and item.state in service.EXCEPTION_STATES,
        can_answer_exception=checker and item.state in {*REVIEWABLE_STATES, OutputState.REVIEWED},
        can_return_early=checker and item.state in EARLY_RETURN_STATES,
        # checkers only: the page is read outside the workspace, and a sidecar's text is the researcher's own,
        # checked for pseudonyms only, so showing it to its author would let any text out unreviewed
        code={f.id: made_by(f) for f in item.files if checker},
        decision_label=EXCEPTION_DECISION_LABELS)


def made_by(item: Any) -> dict[str, str] | None:
    """The code that produced a table: the recorded query and, when saved from a notebook, the cell's source."""
    sidecar = item.sdc_record or {}
    record = sidecar.get("record") if isinstance(sidecar.get("record"), dict) else {}
    query = record.get("query") if isinstance(record, dict) else None
    source = sidecar.get("source")
    if not query and not isinstance(source, str):
        return None
    return {"query": json.dumps(query, indent=2, sort_keys=True, default=str) if query else "",
            "call": str(record.get("kind") or ""), "source": source if isinstance(source, str) else ""}


class PreviewCell(NamedTuple):
    """One cell of the checker's table: its text and, when the automatic check judged it, the verdict it shows."""

    text: str
    judged: bool
    shown: str  # the verdict shown: "suppressed" for a suppressed cell that passed, else the check's status
    rules: list[str]
    recomputed: bool  # the check recomputed the cell and found another value (expected)
    expected: Any


def _cell(text: str, verdict: dict[str, Any] | None) -> PreviewCell:
    if not verdict:
        return PreviewCell(text, False, "", [], False, None)
    status = verdict.get("status", "")
    shown = "suppressed" if verdict.get("suppressed") and status == "pass" else status
    return PreviewCell(text, True, shown, verdict.get("rules", []), "expected" in verdict, verdict.get("expected"))


def _csv_preview(item: Any) -> dict[str, Any]:
    """The submitted CSV as rows of cells for the checker's table, verdicts in CSV coordinates (worked out here once,
    not looked up in the template cell by cell)."""
    try:
        data = files.read_stored(settings().outputs_dir, item.stored_name, item.sha256)
    except OSError:
        return {"rows": [], "error": "The stored copy does not match its hash."}
    grid = checks.csv_grid(data)
    verdicts = {(c["row"], c["col"]): c for c in (item.check_result or {}).get("cells", [])}
    rows = [[_cell(text, verdicts.get((r, c))) for c, text in enumerate(row)]
            for r, row in enumerate(grid[:PREVIEW_ROWS])]
    return {"rows": rows, "truncated": len(grid) > PREVIEW_ROWS, "error": None}


@bp.post("/<int:request_id>/groups")
@requires(Permission.REQUEST_OUTPUTS)
def save_group(request_id: int) -> Any:
    item = _load(request_id)
    group_id = request.form.get("group_id", type=int)
    return _attempt(item, "Group saved.", service.save_group, require_user(), item, request.form.get("name", ""),
                    request.form.get("context", ""), request.form.get("controls", ""), group_id)


@bp.post("/<int:request_id>/files/<int:file_id>/remove")
@requires(Permission.REQUEST_OUTPUTS)
def remove_file(request_id: int, file_id: int) -> Any:
    item = _load(request_id)
    return _attempt(item, "File removed from the request.", service.remove_file, require_user(), item,
                    service.get_file(item, file_id))


@bp.post("/<int:request_id>/submit")
@requires(Permission.REQUEST_OUTPUTS)
def submit(request_id: int) -> Any:
    item = _load(request_id)
    return _attempt(item, "Submitted. The automatic checks run first, then two output checkers review it.",
                    service.submit, require_user(), item, settings())


@bp.post("/<int:request_id>/withdraw")
@requires(Permission.REQUEST_OUTPUTS)
def withdraw(request_id: int) -> Any:
    item = _load(request_id)
    return _attempt(item, "Request withdrawn.", service.withdraw, require_user(), item)


@bp.post("/<int:request_id>/files/<int:file_id>/vote")
@requires(Permission.REVIEW_OUTPUTS)
def vote(request_id: int, file_id: int) -> Any:
    item = _load(request_id)
    service.check_can_review(require_user(), item)
    return _attempt(item, "Vote saved.", service.vote, require_user(), item, service.get_file(item, file_id),
                    request.form.get("vote", ""), round_seen())


@bp.post("/<int:request_id>/comments")
@requires(Permission.VIEW_PROJECTS)  # checkers and the project's members; decided per request
def comment(request_id: int) -> Any:
    item = _load(request_id)
    file_id = request.form.get("file_id", type=int)
    target = service.get_file(item, file_id) if file_id else None
    return _attempt(item, "Comment added.", service.add_comment, require_user(), item, request.form.get("text", ""),
                    request.form.get("visibility", "public"), target, round_seen())


@bp.post("/<int:request_id>/review")
@requires(Permission.REVIEW_OUTPUTS)
def submit_review(request_id: int) -> Any:
    item = _load(request_id)
    service.check_can_review(require_user(), item)
    return _attempt(item, "Review submitted.", service.submit_review, require_user(), item, round_seen())


@bp.post("/<int:request_id>/decide")
@requires(Permission.REVIEW_OUTPUTS)
def decide(request_id: int) -> Any:
    item = _load(request_id)
    service.check_can_review(require_user(), item)
    return _attempt(item, "Decision recorded.", service.decide, require_user(), item, request.form.get("outcome", ""),
                    request.form.get("comment", ""), round_seen())


@bp.post("/<int:request_id>/files/<int:file_id>/exception")
@requires(Permission.REQUEST_OUTPUTS)
def request_exception(request_id: int, file_id: int) -> Any:
    item = _load(request_id)
    return _attempt(item, "Exception requested. Both checkers must accept it before the file can be released.",
                    service.request_exception, require_user(), item, service.get_file(item, file_id),
                    request.form.get("justification", ""), settings())


@bp.post("/<int:request_id>/files/<int:file_id>/exception/decision")
@requires(Permission.REVIEW_OUTPUTS)
def decide_exception(request_id: int, file_id: int) -> Any:
    item = _load(request_id)
    service.check_can_review(require_user(), item)
    return _attempt(item, "Your answer to the exception is saved.", service.decide_exception, require_user(), item,
                    service.get_file(item, file_id), request.form.get("decision", ""),
                    request.form.get("reason", ""), settings(), round_seen(),
                    request.form.get("justification_sha256", ""))


@bp.post("/<int:request_id>/return-early")
@requires(Permission.REVIEW_OUTPUTS)
def return_early(request_id: int) -> Any:
    item = _load(request_id)
    service.check_can_review(require_user(), item)
    return _attempt(item, "Returned to the researcher.", service.return_early, require_user(), item,
                    request.form.get("comment", ""), round_seen())


@bp.post("/<int:request_id>/groups/<int:group_id>/vote")
@requires(Permission.REVIEW_OUTPUTS)
def vote_group(request_id: int, group_id: int) -> Any:
    item = _load(request_id)
    service.check_can_review(require_user(), item)
    return _attempt(item, "Vote saved on every output file in the group.", service.vote_group, require_user(), item,
                    service.get_group(item, group_id), request.form.get("vote", ""), request.form.get("comment", ""),
                    round_seen())


@bp.post("/<int:request_id>/comments/<int:comment_id>/publish")
@requires(Permission.REVIEW_OUTPUTS)
def publish_comment(request_id: int, comment_id: int) -> Any:
    user = require_user()
    item = _load(request_id)
    service.check_can_review(user, item)
    return _attempt(item, "The comment is now public.", service.publish_comment, user, item,
                    service.get_comment(user, item, comment_id))


@bp.get("/<int:request_id>/files/<int:file_id>/preview")
@records_download("output_request", "request_id")
@requires(Permission.REVIEW_OUTPUTS)
def preview(request_id: int, file_id: int) -> Any:
    """The submitted bytes, for checkers only, sandboxed and with their real type (images via <img>)."""
    user = require_user()
    item = _load(request_id)
    service.check_can_review(user, item)
    target = service.get_file(item, file_id)
    data = files.read_stored(settings().outputs_dir, target.stored_name, target.sha256)
    inline = target.extension in {"png", "svg"}
    response = send_file(io.BytesIO(data), mimetype=files.CONTENT_TYPES.get(target.extension, "text/plain"),
                         as_attachment=not inline, download_name=target.name)
    response.headers["Content-Security-Policy"] = "sandbox; default-src 'none'; style-src 'unsafe-inline'"
    return response


def package_response(item: OutputRequest, user: User) -> Any:
    if not (is_member(user, item.project) or service.can_review(user, item)):
        raise NotFound("No such output request.")
    if item.state != OutputState.RELEASED:
        raise Conflict("Only a released request has a package to download.")
    path = release.package_path(item, settings().outputs_dir)
    response = send_file(path, mimetype="application/zip", as_attachment=True, download_name=path.name)
    response.headers["Content-Security-Policy"] = "sandbox; default-src 'none'"
    response.headers["Digest"] = f"sha-256={item.package_sha256}"
    return response


@bp.get("/<int:request_id>/package")
@requires(Permission.VIEW_PROJECTS)  # the project's members (and checkers), once released
@records_download("output_request", "request_id")
def package(request_id: int) -> Any:
    user = require_user()
    return package_response(_load(request_id), user)
