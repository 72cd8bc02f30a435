"""Application pages: drafting, team, variables, submission, and the DAC's review and decision."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from wtforms.fields.choices import SelectChoice

from gateway.errors import Conflict, InvalidTransition, NotFound, ValidationError
from gateway.extracts import preview
from gateway.identity.accounts import find_user, get_user
from gateway.permissions import Permission, has_permission
from gateway.web.access import requires
from gateway.web.context import catalogue, db, require_user, run, settings, today
from gateway.web.forms import (
    ApplicationForm,
    AssignForm,
    ConflictForm,
    DecisionForm,
    EmptyForm,
    MemberForm,
    NewApplicationForm,
    ReviewForm,
    SubmitForm,
    round_seen,
)
from gateway.web.forms_errors import apply_errors
from gateway.web.labels import label
from projects import agreements, applications, cohort, dac
from projects.applications import EDITABLE_FIELDS, VariableChoice
from projects.catalogue import needs_justification, requestable
from projects.models import Application
from projects.workflow import APPLICATION_OWNERS

bp = Blueprint("applications", __name__, url_prefix="/applications")
log = logging.getLogger(__name__)


def _load(application_id: int) -> Application:
    return applications.get_application(db(), require_user(), application_id)


def _to(application: Application) -> Any:
    return redirect(url_for("applications.view", application_id=application.id))


def _attempt(application: Application, success: str, command: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a DAC command; a refusal that is about the state or the input is shown on the application page.

    A refusal about who you are (PermissionDenied) still answers 403.
    """
    try:
        run(command, *args, **kwargs)
    except (ValidationError, Conflict, InvalidTransition) as exc:
        for message in [m for ms in exc.field_errors.values() for m in ms] or [exc.message]:
            flash(message, "error")
    else:
        flash(success, "success")
    return _to(application)


@bp.get("/")
@requires(Permission.VIEW_PROJECTS)
def index() -> Any:
    user = require_user()
    rows = applications.list_applications(db(), user, with_reviews=False)
    mine = [a for a in rows if applications.is_team_member(user, a)]
    others = [a for a in rows if not applications.is_team_member(user, a)]
    return render_template("applications/index.html", mine=mine, others=others, owners=APPLICATION_OWNERS,
                           can_apply=has_permission(user, Permission.APPLY))


@bp.route("/new", methods=["GET", "POST"])
@requires(Permission.APPLY)
def new() -> Any:
    form = NewApplicationForm()
    extra: list[str] = []
    if form.validate_on_submit():
        try:
            application = run(applications.create_draft, require_user(), form.title.data or "")
        except (ValidationError, Conflict) as exc:
            extra = apply_errors(form, exc) if isinstance(exc, ValidationError) else [exc.message]
        else:
            flash(f"Draft {application.reference} started. Fill in each section; you can save as you go.", "success")
            return redirect(url_for("applications.edit", application_id=application.id))
    return render_template("applications/new.html", form=form, extra=extra), 422 if form.errors or extra else 200


PREVIEW_STATES = {"draft", "submitted", "under_review", "changes_requested"}


def risk_for(user: Any, application: Application) -> tuple[Any, bool]:
    """The risk preview this person may see now, and whether with exact figures (the committee and
    administrators) or rounded ones (the applying team). (None, False) when none is shown."""
    team = applications.is_team_member(user, application)
    committee = not team and not dac.is_recused(user, application) and (
        has_permission(user, Permission.REVIEW_APPLICATIONS) or has_permission(user, Permission.MANAGE_PROJECTS))
    if application.state not in PREVIEW_STATES or not (team or (committee and application.state != "draft")):
        return None, False
    extract_settings = settings().extracts
    try:
        result = preview.preview(application, settings().source_dir, catalogue(), extract_settings.k,
                                 extract_settings.two_person_share, today())
    except Exception:  # a preview is advice: the page must still open
        log.exception("risk preview failed for application %s", application.id)
        result = preview.Unavailable("The risk preview could not be computed; the error has been logged.")
    return result, committee


@bp.get("/<int:application_id>")
@requires(Permission.VIEW_PROJECTS)
def view(application_id: int) -> Any:
    return _view_page(applications.application_page(db(), require_user(), application_id))


def _view_page(application: Application, decision_form: DecisionForm | None = None) -> Any:
    """The application page; a decision that was refused shows again as the chair typed it."""
    user = require_user()
    session = db()
    can_edit = applications.can_edit_application(user, application)
    problems = (applications.submission_problems(session, application, catalogue(), settings().dac, today())
                if can_edit else {})
    # the committee's part of the page (reviewers, votes, quorum) is worked out only for the committee, who see it
    committee = has_permission(user, Permission.REVIEW_APPLICATIONS)
    assignment = dac.assignment_of(user, application) if committee else None
    is_chair = has_permission(user, Permission.CHAIR_DAC)
    # the committee to choose from, where the chair's assignment form shows
    reviewer_choices = dac.reviewers_available(session, application) \
        if is_chair and application.state in dac.ASSIGNABLE_STATES else []
    risk, exact = risk_for(user, application)
    # the forms of what this person can act on: the team's draft, their own assignment, the chair's
    return render_template(
        "applications/view.html", application=application, user=user, problems=problems,
        can_edit=can_edit, owners=APPLICATION_OWNERS,
        assignment=assignment, recused=committee and dac.is_recused(user, application),
        auto_conflict=dac.automatic_conflict(user, application) if committee else None,
        reviews=dac.visible_reviews(user, application) if committee else [],
        quorum=dac.quorum(application, settings().dac) if committee else None,
        count_visible=committee and dac.count_visible(user, application), risk=risk, exact=exact,
        rounded_count=preview.rounded_count, rounded_share=preview.rounded_share, targets=preview.TARGETS,
        describe_generalisation=preview.describe,
        reviewer_choices=reviewer_choices, member_form=MemberForm() if can_edit else None,
        assign_form=AssignForm() if is_chair else None,
        conflict_form=ConflictForm() if assignment else None, review_form=ReviewForm() if assignment else None,
        decision_form=decision_form or (DecisionForm() if is_chair else None), catalogue=catalogue(),
        is_chair=is_chair,
        voted=bool(assignment and any(r.round == application.round for r in assignment.reviews)))


@bp.route("/<int:application_id>/edit", methods=["GET", "POST"])
@requires(Permission.APPLY)
def edit(application_id: int) -> Any:
    user = require_user()
    application = _load(application_id)
    applications.check_can_edit_application(user, application)
    form = ApplicationForm(obj=None if request.method == "POST" else _form_data(application))
    form.cohort_boroughs.choices = [SelectChoice(b, b) for b in cohort.borough_choices(catalogue())]
    form.cohort_conditions.choices = [SelectChoice(c, label(c)) for c in cohort.condition_choices(catalogue())]
    extra: list[str] = []
    if form.validate_on_submit():
        changes = {name: getattr(form, name).data for name in EDITABLE_FIELDS if hasattr(form, name)}
        if application.kind == "new":
            changes.pop("amendment_summary", None)
            changes.pop("requested_end_date", None)
        try:
            run(applications.update_draft, user, application, changes, catalogue())
        except ValidationError as exc:
            extra = apply_errors(form, exc)
        else:
            flash("Saved.", "success")
            return _to(application)
    return render_template("applications/edit.html", form=form, application=application, extra=extra), \
        422 if form.errors or extra else 200


def _form_data(application: Application) -> SimpleNamespace:
    """The application's values as the edit form shows them (yes/no; dates as they are, in their three boxes)."""
    data: dict[str, Any] = {}
    for name in EDITABLE_FIELDS:
        value = getattr(application, name)
        if isinstance(value, bool):
            value = "yes" if value else "no"
        data[name] = value
    return SimpleNamespace(**data)


@bp.route("/<int:application_id>/variables", methods=["GET", "POST"])
@requires(Permission.APPLY)
def variables(application_id: int) -> Any:
    user = require_user()
    application = _load(application_id)
    applications.check_can_edit_application(user, application)
    form = EmptyForm()
    chosen = {f"{v.dataset}.{v.variable}": v.justification for v in application.variables}
    extra: list[str] = []
    if form.validate_on_submit():
        picked = request.form.getlist("var")
        choices = [VariableChoice(*key.split(".", 1), request.form.get(f"just-{key}", "")) for key in picked
                   if "." in key]
        chosen = {f"{c.dataset}.{c.variable}": c.justification for c in choices}
        try:
            run(applications.set_variables, user, application, catalogue(), choices)
        except ValidationError as exc:
            extra = [m for ms in exc.field_errors.values() for m in ms] or [exc.message]
        else:
            flash("Variables saved.", "success")
            return _to(application)
    return render_template("applications/variables.html", application=application, catalogue=catalogue(),
                           chosen=chosen, form=form, extra=extra, requestable=requestable,
                           needs_justification=needs_justification), 422 if extra else 200


@bp.post("/<int:application_id>/risk/apply")
@requires(Permission.APPLY)
def apply_suggestion(application_id: int) -> Any:
    """One click: the risk preview's suggestion (a generalisation, perhaps fewer variables) becomes the draft's."""
    application = _load(application_id)
    if not EmptyForm().validate_on_submit():
        return _to(application)
    generalisation: dict[str, Any] = {name: request.form[name] for name in GENERALISATION_FIELDS
                                      if request.form.get(name)}
    if str(generalisation.get("age_band_years", "")).isdigit():  # a form sends text; the setting is a number
        generalisation["age_band_years"] = int(generalisation["age_band_years"])
    return _attempt(application, "The suggestion is applied to your draft: the risk preview shows the result.",
                    applications.apply_generalisation, require_user(), application, generalisation,
                    request.form.getlist("drop"))


GENERALISATION_FIELDS = ("date_of_birth", "age_band_years", "event_dates", "lsoa", "area_code", "imd_decile")


@bp.post("/<int:application_id>/members")
@requires(Permission.APPLY)
def add_member(application_id: int) -> Any:
    user = require_user()
    application = _load(application_id)
    form = MemberForm()
    if form.validate_on_submit():
        member = find_user(db(), form.username.data or "")
        if member is None:
            raise NotFound(f"There is no account called '{form.username.data}'.")
        return _attempt(application, f"{member.display_name} added to the team.", applications.add_member, user,
                        application, member, form.project_role.data or "analyst")
    return _to(application)


@bp.post("/<int:application_id>/members/<int:user_id>/remove")
@requires(Permission.APPLY)
def remove_member(application_id: int, user_id: int) -> Any:
    application = _load(application_id)
    if EmptyForm().validate_on_submit():
        return _attempt(application, "Removed from the team.", applications.remove_member, require_user(),
                        application, user_id)
    return _to(application)


@bp.route("/<int:application_id>/submit", methods=["GET", "POST"])
@requires(Permission.APPLY)
def submit(application_id: int) -> Any:
    user = require_user()
    application = _load(application_id)
    applications.check_can_edit_application(user, application)
    agreement = agreements.current(db())
    form = SubmitForm()
    extra: list[str] = []
    if form.validate_on_submit():
        version = form.agreement_version.data if form.accept.data else None
        try:
            run(applications.submit, user, application, catalogue(), settings().dac, version, today())
        except ValidationError as exc:
            extra = [f"{m}" for ms in exc.field_errors.values() for m in ms]
        else:
            flash(f"Application {application.reference} submitted to the data access committee.", "success")
            return _to(application)
    problems = applications.submission_problems(db(), application, catalogue(), settings().dac, today())
    return render_template("applications/submit.html", application=application, agreement=agreement, form=form,
                           problems=problems, extra=extra), 422 if extra else 200


@bp.post("/<int:application_id>/withdraw")
@requires(Permission.APPLY)
def withdraw(application_id: int) -> Any:
    application = _load(application_id)
    if EmptyForm().validate_on_submit():
        return _attempt(application, "Application withdrawn.", applications.withdraw, require_user(), application)
    return _to(application)


@bp.post("/<int:application_id>/reviewers")
@requires(Permission.CHAIR_DAC)
def assign(application_id: int) -> Any:
    application = _load(application_id)
    form = AssignForm()
    if form.validate_on_submit():
        reviewers = [get_user(db(), uid) for uid in form.reviewers.data or []]
        return _attempt(application, "Reviewers assigned.", dac.assign_reviewers, require_user(), application,
                        reviewers)
    return _to(application)


@bp.post("/<int:application_id>/conflict")
@requires(Permission.REVIEW_APPLICATIONS)
def conflict(application_id: int) -> Any:
    application = _load(application_id)
    form = ConflictForm()
    if form.validate_on_submit():
        return _attempt(application, "Your declaration is recorded.", dac.declare_conflict, require_user(),
                        application, form.conflict.data == "yes", form.conflict_reason.data or "")
    flash("Choose whether you have a conflict of interest.", "error")
    return _to(application)


@bp.post("/<int:application_id>/review")
@requires(Permission.REVIEW_APPLICATIONS)
def review(application_id: int) -> Any:
    application = _load(application_id)
    form = ReviewForm()
    if form.validate_on_submit():
        return _attempt(application, "Your vote is recorded.", dac.submit_review, require_user(), application,
                        form.vote.data or "", form.comment_private.data or "", form.comment_applicant.data or "",
                        round_seen())
    flash("Choose a vote.", "error")
    return _to(application)


@bp.post("/<int:application_id>/decision")
@requires(Permission.CHAIR_DAC)
def decide(application_id: int) -> Any:
    application = _load(application_id)
    form = DecisionForm()
    new = application.kind == "new"
    if not new:  # an amendment ends on its requested date: no end-date boxes are shown, and none are read
        del form.access_end_date
    if form.validate_on_submit():
        outcome = form.outcome.data or ""
        # An amendment's form has no tier: None keeps the project's (the service refuses a different one).
        tier = (form.security_tier.data or None) if new else None
        try:
            run(dac.decide, require_user(), application, settings().dac, outcome=outcome,
                conditions=form.conditions.data or "", message=form.message.data or "",
                access_end_date=form.access_end_date.data if new else None, today=today(), security_tier=tier,
                round_seen=round_seen())
        except ValidationError as exc:  # shown on the form, with what was typed
            for message in apply_errors(form, exc):
                flash(message, "error")
            return _view_page(application, form), 422
        except (Conflict, InvalidTransition) as exc:  # no quorum yet, decided meanwhile: what was typed stays
            flash(exc.message, "error")
            return _view_page(application, form), 409
        flash(f"Decision recorded: {label(outcome).lower()}.", "success")
        return _to(application)
    if not (new and form.access_end_date.errors):  # the date's boxes carry their own messages
        flash("Choose the security tier." if form.security_tier.errors else "Choose a decision.", "error")
    return _view_page(application, form), 422  # shown again as typed, the wrong parts marked

