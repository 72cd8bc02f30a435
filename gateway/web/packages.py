"""Software in the workspace: the public list, a researcher's package requests, the administrators' decisions."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_wtf import FlaskForm
from wtforms import StringField, TextAreaField
from wtforms.validators import Length, Optional

from gateway.errors import Conflict, InvalidTransition, ValidationError
from gateway.permissions import Permission, can_decide_package_request
from gateway.web.access import public, requires
from gateway.web.context import db, require_user, run
from gateway.workspaces import packages

bp = Blueprint("packages", __name__)


class PackageRequestForm(FlaskForm):
    ecosystem = StringField("Language", validators=[Optional(), Length(max=10)])
    name = StringField("Package name", validators=[Optional(), Length(max=100)])
    version = StringField("Version (optional)", validators=[Optional(), Length(max=50)])
    reason = TextAreaField("What you need it for", validators=[Optional(), Length(max=packages.MAX_REASON)])


class DecisionForm(FlaskForm):
    decision = StringField("Decision", validators=[Optional(), Length(max=10)])
    reason = TextAreaField("Reason (required to refuse; the researcher sees it)",
                           validators=[Optional(), Length(max=packages.MAX_REASON)])


def _labels() -> dict[str, Any]:
    return {"ecosystems": packages.ECOSYSTEM_LABELS, "states": packages.STATE_LABELS}


@bp.get("/catalogue/software")
@public
def software() -> Any:
    return render_template("packages/software.html", software=packages.approved_software(), **_labels())


@bp.route("/packages", methods=["GET", "POST"])
@requires(Permission.REQUEST_PACKAGES)
def index() -> Any:
    form = PackageRequestForm()
    problems: list[str] = []
    if form.validate_on_submit():
        try:
            made = run(packages.request_package, require_user(), form.ecosystem.data or "", form.name.data or "",
                       form.version.data or "", form.reason.data or "")
        except ValidationError as exc:
            for field, messages in exc.field_errors.items():
                getattr(form, field).errors = list(messages)
        except Conflict as exc:
            problems.append(exc.message)
        else:
            flash(f"Your request for {made.name} is with the administrators.", "success")
            return redirect(url_for("packages.index"))
    status = 422 if form.errors or problems else 200
    return render_template("packages/index.html", form=form, problems=problems,
                           requests=packages.my_requests(db(), require_user()), **_labels()), status


def _decision_form(request_id: int) -> DecisionForm:
    """One form per row, its fields prefixed with the row, so ids on the page are unique."""
    return DecisionForm(prefix=f"r{request_id}")


def _queue_page(failed: DecisionForm | None, failed_id: int | None, problems: list[str]) -> Any:
    user = require_user()
    rows = packages.queue(db(), user)
    return render_template("packages/queue.html", rows=rows, failed=failed, failed_id=failed_id, problems=problems,
                           can_decide={r.id: can_decide_package_request(user, r) for r in rows},
                           form_for=_decision_form, blank=DecisionForm(prefix="blank"), **_labels())


@bp.get("/admin/packages")
@requires(Permission.MANAGE_PACKAGES)
def queue() -> Any:
    return _queue_page(None, None, [])


@bp.post("/admin/packages/<int:package_request_id>/decide")
@requires(Permission.MANAGE_PACKAGES)
def decide(package_request_id: int) -> Any:
    user = require_user()
    found = packages.get_request(db(), user, package_request_id)
    form = _decision_form(package_request_id)
    problems: list[str] = []
    if form.validate_on_submit():
        if form.decision.data not in ("approve", "refuse"):
            form.decision.errors = ["Choose approve or refuse."]
        else:
            try:
                run(packages.decide, user, found, form.decision.data == "approve", form.reason.data or "")
            except ValidationError as exc:
                for field, messages in exc.field_errors.items():
                    getattr(form, field).errors = list(messages)
            except InvalidTransition as exc:
                problems.append(exc.message)
            else:
                flash(f"{found.name}: {packages.STATE_LABELS[found.state].lower()}.", "success")
                return redirect(url_for("packages.queue"))
    return _queue_page(form, package_request_id, problems), 422
