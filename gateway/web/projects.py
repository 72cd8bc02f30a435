"""Project pages: an overview (the approved project, the person's workspace, its team, its lifecycle actions) and
sub-pages for its data and extract, its workspace sessions, and its outputs and publications; its charges are on
the charging statement page. Each page sends a few statements: it loads only what it shows."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, current_app, flash, jsonify, redirect, render_template, url_for
from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired, Length

from gateway.charging import invoices
from gateway.errors import Conflict, InvalidTransition, PermissionDenied, ValidationError
from gateway.extracts import service as extracts
from gateway.models import User
from gateway.permissions import Permission
from gateway.web.access import requires
from gateway.web.context import db, end_transaction, require_user, run, settings
from gateway.web.forms import ConfirmedReasonForm, EmptyForm, ReasonForm
from gateway.web.recorded import records_download
from gateway.workspaces import service, traffic
from gateway.workspaces.entitlement import entitlement
from gateway.workspaces.service import open_sessions
from projects import applications, lifecycle, publications
from projects.lifecycle import is_member
from projects.models import Project
from projects.workflow import ProjectState
from projects.workspace_tiers import SECURITY_TIER_LABELS

bp = Blueprint("projects", __name__, url_prefix="/projects")

ACTIONS = {"suspend": lifecycle.suspend, "reinstate": lifecycle.reinstate, "revoke": lifecycle.revoke,
           "close": lifecycle.close}


def _load(project_id: int) -> Project:
    return lifecycle.get_project(db(), require_user(), project_id)


@bp.get("/")
@requires(Permission.VIEW_PROJECTS)
def index() -> Any:
    return render_template("projects/index.html", projects=lifecycle.list_projects(db(), require_user()))


# The project's pages, in the order of its navigation: endpoint -> the label people read.
PROJECT_PAGES: dict[str, str] = {
    "projects.view": "Overview",
    "projects.data": "Data",
    "projects.sessions": "Workspace sessions",
    "projects.outputs": "Outputs and publications",
    "charging.statement": "Charges",
}


@bp.app_template_global("project_pages")
def project_pages(project: Project) -> list[tuple[str, str]]:
    """The pages of this project the person signed in may open (endpoint, label), for its navigation."""
    user = require_user()
    allowed = {"projects.sessions": traffic.can_see_traffic(user, project),
               "charging.statement": invoices.can_see_charges(user, project)}
    return [(endpoint, label) for endpoint, label in PROJECT_PAGES.items() if allowed.get(endpoint, True)]


@bp.get("/<int:project_id>")
@requires(Permission.VIEW_PROJECTS)
def view(project_id: int) -> Any:
    """The overview: what the project is, the person's workspace, its team and what may be done to it."""
    project = _load(project_id)
    user = require_user()
    decision = entitlement(db(), user, project, settings().extracts_root) if is_member(user, project) else None
    workspace_open = decision is not None and decision.ok and any(
        ws.user_id == user.id for ws in open_sessions(db(), project))
    return render_template("projects/view.html", project=project, security_tier_labels=SECURITY_TIER_LABELS,
                           workspace=decision, workspace_open=workspace_open,
                           agreement=decision.agreement if decision is not None else None,
                           actions=lifecycle.available_actions(user, project),
                           can_raise_tier=lifecycle.can_raise_security_tier(user, project),
                           reason_form=ReasonForm(), action_form=EmptyForm())


@bp.get("/<int:project_id>/data")
@requires(Permission.VIEW_PROJECTS)
def data(project_id: int) -> Any:
    """The approved data, its amendments, and the extract built from it."""
    project = _load(project_id)
    user = require_user()
    return render_template("projects/data.html", project=project,
                           extract_versions=extracts.versions(db(), project),
                           live_version=extracts.live_version(settings(), project),
                           build=extracts.latest_build(db(), project),
                           amendments=applications.amendments_of(db(), user, project),
                           can_amend=user.id == project.lead_id and project.state in {ProjectState.ACTIVE,
                                                                                       ProjectState.EXPIRED})


@bp.get("/<int:project_id>/sessions")
@requires(Permission.VIEW_PROJECTS)  # who sees them is decided per project (traffic.can_see_traffic)
def sessions(project_id: int) -> Any:
    """The project's workspace sessions and what each sent to the browser."""
    project = _load(project_id)
    if not traffic.can_see_traffic(require_user(), project):
        raise PermissionDenied("Only the project's team and those who oversee projects see its workspace sessions.")
    return render_template("projects/sessions.html", project=project,
                           traffic=traffic.sessions_of(db(), project, limit=TRAFFIC_ROWS),
                           traffic_labels=traffic.LABELS, human_bytes=traffic.human_bytes, limit=TRAFFIC_ROWS)


TRAFFIC_ROWS = 200


class PublicationForm(FlaskForm):
    doi = StringField("DOI", validators=[DataRequired("Enter the DOI"), Length(max=300)])
    title = StringField("Title", validators=[DataRequired("Enter the title"), Length(max=500)])


@bp.get("/<int:project_id>/outputs")
@requires(Permission.VIEW_PROJECTS)
def outputs(project_id: int) -> Any:
    return _outputs_page(_load(project_id), PublicationForm(formdata=None))


@bp.post("/<int:project_id>/publications")
@requires(Permission.VIEW_PROJECTS)  # who may link is decided per project: its members
def link_publication(project_id: int) -> Any:
    project = _load(project_id)
    publications.check_can_link_publication(require_user(), project)
    form = PublicationForm()
    if form.validate_on_submit():
        try:
            linked = run(publications.link_publication, require_user(), project, form.doi.data or "",
                         form.title.data or "")
        except ValidationError as exc:
            for field, messages in exc.field_errors.items():
                getattr(form, field).errors = list(messages)
        else:
            flash(f"doi:{linked.doi} is linked to {project.reference}; the public register shows it.", "success")
            return redirect(url_for("projects.outputs", project_id=project.id))
    return _outputs_page(project, form), 422


def _outputs_page(project: Project, publication_form: PublicationForm) -> Any:
    """Released outputs (for the team and output checkers) and publications, with the form that links one."""
    return render_template("projects/outputs.html", project=project,
                           publications=publications.publications_of(db(), project),
                           publication_form=publication_form,
                           can_link_publication=publications.can_link_publication(require_user(), project))


@bp.get("/<int:project_id>/revoke")
@requires(Permission.MANAGE_PROJECTS)
def confirm_revoke(project_id: int) -> Any:
    """Revoking is final (workspaces stop, the pseudonym key is destroyed): a page of its own, with a reason."""
    project = _load(project_id)
    lifecycle.check_can_change_state(require_user(), project, "revoke")
    return render_template("projects/confirm_revoke.html", project=project, form=ConfirmedReasonForm())


@bp.post("/<int:project_id>/<any(suspend, reinstate, revoke, close):action>")
@requires(Permission.VIEW_PROJECTS)  # who may do which is decided by the lifecycle rules
def change_state(project_id: int, action: str) -> Any:
    project = _load(project_id)
    lifecycle.check_can_change_state(require_user(), project, action)
    if action == "revoke":
        confirmed = ConfirmedReasonForm()
        if not confirmed.validate_on_submit():
            return render_template("projects/confirm_revoke.html", project=project, form=confirmed), 422
    form = ReasonForm()
    if not form.validate_on_submit():
        flash("Give a reason.", "error")
    else:
        try:
            run(ACTIONS[action], require_user(), project, form.reason.data or "")
        except (ValidationError, Conflict, InvalidTransition) as exc:
            flash(exc.message, "error")
        else:
            flash(f"Project {project.reference} is now {project.state}.", "success")
    return redirect(url_for("projects.view", project_id=project.id))


@bp.post("/<int:project_id>/security-tier")
@requires(Permission.MANAGE_PROJECTS)
def raise_security_tier(project_id: int) -> Any:
    """An administrator raises the project to the high security tier, with a reason (audited)."""
    project = _load(project_id)
    form = ReasonForm()
    if not form.validate_on_submit():
        flash("Give a reason for raising the security tier.", "error")
    else:
        try:
            run(lifecycle.raise_security_tier, require_user(), project, form.reason.data or "")
        except (ValidationError, Conflict) as exc:
            flash(exc.message, "error")
        else:
            flash(f"Project {project.reference} is now in the high security tier; its running workspaces were "
                  "stopped.", "success")
    return redirect(url_for("projects.view", project_id=project.id))


@bp.post("/<int:project_id>/workspace")
@requires(Permission.VIEW_PROJECTS)  # the derived entitlement decides
def open_workspace(project_id: int) -> Any:
    """Start or reuse this researcher's workspace for the project and hand the browser to it."""
    project = _load(project_id)
    if not EmptyForm().validate_on_submit():
        return redirect(url_for("projects.view", project_id=project.id))
    user_id, project_id = require_user().id, project.id
    end_transaction()
    try:
        login_url = service.open_workspace(current_app.extensions["sde_sessionmaker"], settings(), user_id, project_id)
    except (service.NotEntitled, service.WorkspaceUnavailable) as exc:
        flash(exc.message, "error")
        return redirect(url_for("projects.view", project_id=project_id))
    return redirect(login_url)


@bp.post("/<int:project_id>/extracts")
@requires(Permission.RELEASE_EXTRACTS)
def refresh_extract(project_id: int) -> Any:
    project = _load(project_id)
    if EmptyForm().validate_on_submit():
        try:
            run(extracts.refresh, require_user(), project)
        except Conflict as exc:
            flash(exc.message, "error")
        else:
            flash("A new extract version is being built.", "success")
    return redirect(url_for("projects.data", project_id=project.id))


def _version(project: Project, version: int) -> Any:
    row = next((v for v in extracts.versions(db(), project) if v.version == version), None)
    if row is None:
        abort(404)
    return row


def _release_page(project: Project, version: int, form: ConfirmedReasonForm, status: int = 200) -> Any:
    row = _version(project, version)
    proposer = db().get(User, row.release_proposed_by_id) if row.release_proposed_by_id else None
    newest = max(v.version for v in extracts.versions(db(), project))
    return render_template("projects/confirm_release.html", project=project, row=row, form=form,
                           two_person=extracts.needs_second_person(settings(), row), proposer=proposer,
                           newest=newest, threshold=settings().extracts.two_person_share), status


@bp.get("/<int:project_id>/extracts/<int:version>/release")
@requires(Permission.RELEASE_EXTRACTS)
def confirm_release(project_id: int, version: int) -> Any:
    """What releasing this version means (its risk, who proposed it), then a reason and a confirmation."""
    return _release_page(_load(project_id), version, ConfirmedReasonForm())


@bp.post("/<int:project_id>/extracts/<int:version>/release")
@requires(Permission.RELEASE_EXTRACTS)
def release_extract(project_id: int, version: int) -> Any:
    project = _load(project_id)
    form = ConfirmedReasonForm()
    if not form.validate_on_submit():
        _version(project, version)
        return _release_page(project, version, form, 422)
    try:
        outcome = run(extracts.release_held, settings(), require_user(), project, version, form.reason.data or "")
    except Conflict as exc:
        flash(exc.message, "error")
    else:
        if outcome == "proposed":
            flash(f"Release of version {version} proposed. It is high risk: a second custodian must confirm it.",
                  "success")
        else:
            flash(f"Version {version} released: it is now the project's live extract.", "success")
    return redirect(url_for("projects.data", project_id=project.id))


@bp.get("/<int:project_id>/extracts/<int:version>/manifest.json")
@requires(Permission.VIEW_PROJECTS)
@records_download("project", "project_id")
def extract_manifest(project_id: int, version: int) -> Any:
    return jsonify(_version(_load(project_id), version).manifest)


@bp.get("/<int:project_id>/extracts/<int:version>/risk-report.json")
@requires(Permission.VIEW_PROJECTS)
@records_download("project", "project_id")
def risk_report(project_id: int, version: int) -> Any:
    project = _load(project_id)
    _version(project, version)
    response = Response(extracts.risk_report(settings(), project, version), mimetype="application/json")
    response.headers["Content-Disposition"] = f'attachment; filename="{project.reference}-v{version}-risk.json"'
    return response


@bp.post("/<int:project_id>/amendments")
@requires(Permission.APPLY)
def amend(project_id: int) -> Any:
    project = _load(project_id)
    if EmptyForm().validate_on_submit():
        try:
            amendment = run(applications.start_amendment, require_user(), project)
        except (Conflict, InvalidTransition) as exc:
            flash(exc.message, "error")
        else:
            flash(f"Amendment {amendment.reference} started.", "success")
            return redirect(url_for("applications.edit", application_id=amendment.id))
    return redirect(url_for("projects.data", project_id=project.id))
