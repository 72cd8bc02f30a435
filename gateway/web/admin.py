"""Administration: accounts, roles, locks, second factors, and the per-role security policy."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, url_for

from gateway.errors import ValidationError
from gateway.identity import accounts
from gateway.permissions import ROLE_LABELS, Permission, Role, can_change_roles, check_can_change_roles
from gateway.web.access import requires
from gateway.web.context import db, require_user, run, settings
from gateway.web.forms import CreateUserForm, EmptyForm, RolesForm, SecurityPolicyConfirmForm, SecurityPolicyForm

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.get("/users")
@requires(Permission.MANAGE_USERS)
def users() -> Any:
    return render_template("admin/users.html", users=accounts.list_users(db(), require_user()))


@bp.route("/users/new", methods=["GET", "POST"])
@requires(Permission.MANAGE_USERS)
def create_user() -> Any:
    form = CreateUserForm()
    if form.validate_on_submit():
        try:
            user = run(accounts.create_local_user, require_user(), username=form.username.data or "",
                       display_name=form.display_name.data or "", password=form.password.data or "",
                       email=form.email.data or None, roles=form.roles.data or [])
        except ValidationError as exc:
            for field, messages in exc.field_errors.items():
                getattr(form, field).errors = list(messages)
        else:
            flash(f"Account '{user.username}' created.", "success")
            return redirect(url_for("admin.user", user_id=user.id))
    return render_template("admin/create_user.html", form=form), 422 if form.errors else 200


@bp.get("/users/<int:user_id>")
@requires(Permission.MANAGE_USERS)
def user(user_id: int) -> Any:
    target = accounts.get_user(db(), user_id)
    form = RolesForm(data={"roles": sorted(target.roles)})
    return render_template("admin/user.html", target=target, roles_form=form, action_form=EmptyForm(),
                           can_edit_roles=can_change_roles(require_user(), target) and target.source == "local")


@bp.post("/users/<int:user_id>/roles")
@requires(Permission.MANAGE_USERS)
def set_roles(user_id: int) -> Any:
    """Two steps: the roles chosen on the account page, then a confirmation page showing what is added and
    removed, where the administrator gives the reason. Only the second step changes anything."""
    target = accounts.get_user(db(), user_id)
    check_can_change_roles(require_user(), target)
    form = RolesForm()
    if not form.validate_on_submit():
        return redirect(url_for("admin.user", user_id=user_id))
    wanted, current = set(form.roles.data or []), set(target.roles)
    if wanted == current:
        flash("The roles are unchanged.", "success")
        return redirect(url_for("admin.user", user_id=user_id))
    status = 200
    if form.confirm.data or form.reason.data:  # the second step
        if not (form.reason.data or "").strip():
            form.reason.errors = ["Say why these roles are changing."]
        if not form.confirm.data:
            form.confirm.errors = ["Tick to confirm that you have checked the change."]
        if not form.reason.errors and not form.confirm.errors:
            run(accounts.set_roles, require_user(), target, sorted(wanted), form.reason.data or "")
            flash("Roles saved.", "success")
            return redirect(url_for("admin.user", user_id=user_id))
        status = 422
    labels = {r.value: label for r, label in ROLE_LABELS.items()}
    return render_template("admin/confirm_roles.html", target=target, form=form, roles=sorted(wanted),
                           added=[labels.get(r, r) for r in sorted(wanted - current)],
                           removed=[labels.get(r, r) for r in sorted(current - wanted)]), status


def _user_action(user_id: int, action: Any, message: str, *args: Any) -> Any:
    target = accounts.get_user(db(), user_id)
    if EmptyForm().validate_on_submit():
        run(action, require_user(), target, *args)
        flash(message, "success")
    return redirect(url_for("admin.user", user_id=user_id))


@bp.post("/users/<int:user_id>/unlock")
@requires(Permission.MANAGE_USERS)
def unlock(user_id: int) -> Any:
    return _user_action(user_id, accounts.unlock, "Account unlocked.")


@bp.post("/users/<int:user_id>/reset-second-factor")
@requires(Permission.MANAGE_USERS)
def reset_second_factor(user_id: int) -> Any:
    return _user_action(user_id, accounts.reset_second_factor, "Second factor reset.")


@bp.post("/users/<int:user_id>/deactivate")
@requires(Permission.MANAGE_USERS)
def deactivate(user_id: int) -> Any:
    return _user_action(user_id, accounts.set_active, "Account deactivated.", False)


@bp.post("/users/<int:user_id>/activate")
@requires(Permission.MANAGE_USERS)
def activate(user_id: int) -> Any:
    return _user_action(user_id, accounts.set_active, "Account activated.", True)


def _policy_page(form: SecurityPolicyForm) -> str:
    default = settings().second_factor_by_default
    return render_template("admin/security.html", form=form, default=default,
                           relaxations=accounts.relaxations(db(), default))


def _confirm_page(form: SecurityPolicyConfirmForm, relaxed: list[str]) -> str:
    return render_template("admin/security_confirm.html", form=form,
                           relaxed=[ROLE_LABELS[Role(r)] for r in relaxed])


@bp.route("/security", methods=["GET", "POST"])
@requires(Permission.MANAGE_SECURITY_POLICY)
def security_policy() -> Any:
    """Tightening is saved at once; relaxing any role goes through a confirmation page that asks why."""
    default = settings().second_factor_by_default
    policies = accounts.role_policies(db(), default)
    form = SecurityPolicyForm(data={"totp_required": [r for r, req in policies.items() if req]})
    if form.validate_on_submit():
        chosen = set(form.totp_required.data or [])
        relaxed = accounts.relaxed_by(db(), chosen, default)
        if relaxed:
            confirm = SecurityPolicyConfirmForm(formdata=None, data={"totp_required": sorted(chosen)})
            return _confirm_page(confirm, relaxed)
        run(accounts.set_totp_required, require_user(), chosen, default)
        flash("Security policy saved.", "success")
        return redirect(url_for("admin.security_policy"))
    return _policy_page(form), 422 if form.errors else 200


@bp.post("/security/confirm")
@requires(Permission.MANAGE_SECURITY_POLICY)
def confirm_security_policy() -> Any:
    default = settings().second_factor_by_default
    form = SecurityPolicyConfirmForm()
    chosen = set(form.totp_required.data or [])
    if form.validate_on_submit():
        try:
            run(accounts.set_totp_required, require_user(), chosen, default, form.reason.data or "")
        except ValidationError as exc:
            for field, messages in exc.field_errors.items():
                getattr(form, field).errors = list(messages)
        else:
            flash("Security policy saved.", "success")
            return redirect(url_for("admin.security_policy"))
    relaxed = accounts.relaxed_by(db(), {r for r in chosen if r in {x.value for x in Role}}, default)
    return _confirm_page(form, relaxed), 422
