"""A person's own account: roles, second factor, API tokens."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, session, url_for
from wtforms.fields.choices import SelectChoice

from gateway.errors import ValidationError
from gateway.identity import accounts, tokens
from gateway.models import User
from gateway.permissions import PERMISSION_LABELS, Permission
from gateway.web.access import requires
from gateway.web.auth import enrolment_page
from gateway.web.context import db, require_user, run
from gateway.web.forms import EmptyForm, TokenForm

bp = Blueprint("account", __name__, url_prefix="/account")


def _token_form(user: User) -> TokenForm:
    form = TokenForm()
    grantable = tokens.grantable_scopes(user)
    form.scopes.choices = [SelectChoice(p.value, PERMISSION_LABELS[p]) for p in grantable]
    if not form.is_submitted():
        form.scopes.data = [p.value for p in grantable]  # all ticked: untick what the script does not need
    return form


@bp.get("/")
@requires(Permission.USE_ACCOUNT)
def index() -> Any:
    user = require_user()
    return render_template("account/index.html", user=user, tokens=tokens.list_tokens(db(), user),
                           token_form=_token_form(user), revoke_form=EmptyForm(), new_token=None,
                           scope_labels=PERMISSION_LABELS)


@bp.route("/second-factor", methods=["GET", "POST"])
@requires(Permission.USE_ACCOUNT)
def second_factor() -> Any:
    user = require_user()
    if user.totp_enabled:
        flash("Your authenticator app is already set up. Ask an administrator to reset it if you lost it.",
              "info")
        return redirect(url_for("account.index"))
    return enrolment_page(user, url_for("account.index"))


@bp.post("/tokens")
@requires(Permission.USE_ACCOUNT)
def create_token() -> Any:
    user = require_user()
    form = _token_form(user)
    new_token = None
    status = 200
    if form.validate_on_submit():
        try:
            _token, new_token = run(tokens.create_token, user, user, form.name.data or "", form.days.data,
                                    list(form.scopes.data or []), bool(form.read_only.data))
        except ValidationError as exc:
            for field, messages in exc.field_errors.items():
                getattr(form, field).errors = list(messages)
            status = 422
    else:
        status = 422
    return render_template("account/index.html", user=user, tokens=tokens.list_tokens(db(), user),
                           token_form=form, revoke_form=EmptyForm(), new_token=new_token,
                           scope_labels=PERMISSION_LABELS), status


@bp.post("/tokens/<int:token_id>/revoke")
@requires(Permission.USE_ACCOUNT)
def revoke_token(token_id: int) -> Any:
    user = require_user()
    if not EmptyForm().validate_on_submit():
        return redirect(url_for("account.index"))
    token = tokens.get_token(db(), user, token_id)
    run(tokens.revoke_token, user, token)
    flash(f"Token '{token.name}' revoked.", "success")
    return redirect(url_for("account.index"))


@bp.post("/sign-out-everywhere")
@requires(Permission.USE_ACCOUNT)
def sign_out_everywhere() -> Any:
    user = require_user()
    if EmptyForm().validate_on_submit():
        run(accounts.sign_out_everywhere, user)
        session.clear()
        flash("You have been signed out on every device.", "success")
    return redirect(url_for("auth.login"))
