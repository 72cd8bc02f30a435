"""Public trust pages: the incidents log (recording it is an administrator's), and public involvement."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_wtf import FlaskForm
from wtforms import StringField, TextAreaField
from wtforms.validators import Length, Optional

from gateway.errors import ValidationError
from gateway.identity import accounts
from gateway.permissions import Permission, Role
from gateway.trust import incidents
from gateway.web.access import public, requires
from gateway.web.context import db, require_user, run, settings, today
from gateway.web.date_input import NhsDateField, keep_typing_problems, only_date_problems

bp = Blueprint("trust", __name__)


class IncidentForm(FlaskForm):
    occurred_on = NhsDateField("Date it happened", subject="The date it happened")
    title = StringField("Title", validators=[Optional(), Length(max=200)])
    what_happened = TextAreaField("What happened", validators=[Optional(), Length(max=5000)])
    action_taken = TextAreaField("What was done about it", validators=[Optional(), Length(max=5000)])


@bp.get("/incidents")
@public
def incidents_page() -> Any:
    return render_template("trust/incidents.html", incidents=incidents.published(db()))


@bp.route("/admin/incidents", methods=["GET", "POST"])
@requires(Permission.RECORD_INCIDENTS)
def record_incident() -> Any:
    form = IncidentForm()
    # the service refuses a missing date, so a date typed wrongly still shows the form's other problems with it
    if form.validate_on_submit() or (form.is_submitted() and only_date_problems(form)):
        try:
            incident = run(incidents.record_incident, require_user(), form.occurred_on.data, form.title.data or "",
                           form.what_happened.data or "", form.action_taken.data or "", today())
        except ValidationError as exc:
            for field, messages in exc.field_errors.items():
                getattr(form, field).errors = list(messages)
            keep_typing_problems(form)
        else:
            flash(f"Incident '{incident.title}' is recorded and published.", "success")
            return redirect(url_for("trust.incidents_page"))
    status = 422 if form.errors else 200
    return render_template("trust/record_incident.html", form=form, incidents=incidents.published(db())), status


@bp.get("/involvement")
@public
def involvement() -> Any:
    return render_template("trust/involvement.html", settings=settings(),
                           lay_members=len(accounts.users_with_roles(db(), [Role.LAY_MEMBER.value])))
