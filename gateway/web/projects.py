"""Project pages: the approved project, its team and data, and its lifecycle actions."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, flash, jsonify, redirect, render_template, url_for

from gateway.errors import Conflict, InvalidTransition, ValidationError
from gateway.extracts import service as extracts
from gateway.permissions import Permission
from gateway.web.access import requires
from gateway.web.context import db, end_transaction, require_user, run, settings
from gateway.web.forms import EmptyForm, ReasonForm
from gateway.web.recorded import records_download
from gateway.workspaces import service
from gateway.workspaces.entitlement import entitlement
from gateway.workspaces.service import open_sessions
from projects import agreements, applications, lifecycle
from projects.lifecycle import is_member
from projects.models import Project
from projects.workflow import PROJECT_OWNERS, ProjectState

bp = Blueprint("projects", __name__, url_prefix="/projects")

ACTIONS = {"suspend": lifecycle.suspend, "reinstate": lifecycle.reinstate, "revoke": lifecycle.revoke,
           "close": lifecycle.close}


def _load(project_id: int) -> Project:
    return lifecycle.get_project(db(), require_user(), project_id)


@bp.get("/")
@requires(Permission.VIEW_PROJECTS)
def index() -> Any:
    return render_template("projects/index.html", projects=lifecycle.list_projects(db(), require_user()))


@bp.get("/<int:project_id>")
@requires(Permission.VIEW_PROJECTS)
def view(project_id: int) -> Any:
    user = require_user()
    project = _load(project_id)
    amendments = applications.amendments_of(db(), user, project)
    decision = entitlement(db(), user, project, settings().extracts_root) if is_member(user, project) else None
    sessions = [ws for ws in open_sessions(db(), project) if ws.user_id == user.id]
    return render_template("projects/view.html", project=project, owners=PROJECT_OWNERS, workspace=decision,
                           extract_versions=extracts.versions(db(), project),
                           live_version=extracts.live_version(settings(), project),
                           build=extracts.latest_build(db(), project),
                           workspace_open=bool(sessions), agreement=agreements.current(db()),
                           actions=lifecycle.available_actions(user, project),
                           amendments=amendments, reason_form=ReasonForm(), action_form=EmptyForm(),
                           can_amend=user.id == project.lead_id and project.state in {ProjectState.ACTIVE,
                                                                                       ProjectState.EXPIRED})


@bp.post("/<int:project_id>/<any(suspend, reinstate, revoke, close):action>")
@requires(Permission.VIEW_PROJECTS)  # who may do which is decided by the lifecycle rules
def change_state(project_id: int, action: str) -> Any:
    project = _load(project_id)
    lifecycle.check_can_change_state(require_user(), project, action)
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
    return redirect(url_for("projects.view", project_id=project.id))


@bp.post("/<int:project_id>/extracts/<int:version>/release")
@requires(Permission.RELEASE_EXTRACTS)
def release_extract(project_id: int, version: int) -> Any:
    project = _load(project_id)
    if EmptyForm().validate_on_submit():
        try:
            run(extracts.release_held, settings(), require_user(), project, version)
        except Conflict as exc:
            flash(exc.message, "error")
        else:
            flash(f"Version {version} released: it is now the project's live extract.", "success")
    return redirect(url_for("projects.view", project_id=project.id))


@bp.get("/<int:project_id>/extracts/<int:version>/manifest.json")
@requires(Permission.VIEW_PROJECTS)
@records_download("project", "project_id")
def extract_manifest(project_id: int, version: int) -> Any:
    project = _load(project_id)
    row = next((v for v in extracts.versions(db(), project) if v.version == version), None)
    if row is None:
        abort(404)
    return jsonify(row.manifest)


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
    return redirect(url_for("projects.view", project_id=project.id))
