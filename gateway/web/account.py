"""A person's own account: roles, second factor, API tokens."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, session, url_for

from gateway.errors import ValidationError
from gateway.identity import accounts, tokens
from gateway.permissions import Permission
from gateway.web.access import requires
from gateway.web.auth import enrolment_page
from gateway.web.context import db, require_user, run
from gateway.web.forms import EmptyForm, TokenForm

bp = Blueprint("account", __name__, url_prefix="/account")


@bp.get("/")
@requires(Permission.USE_ACCOUNT)
def index() -> Any:
    user = require_user()
    return render_template("account/index.html", user=user, tokens=tokens.list_tokens(db(), user),
                           token_form=TokenForm(), revoke_form=EmptyForm(), new_token=None)


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
    form = TokenForm()
    new_token = None
    status = 200
    if form.validate_on_submit():
        try:
            _token, new_token = run(tokens.create_token, user, user, form.name.data or "", form.days.data)
        except ValidationError as exc:
            for field, messages in exc.field_errors.items():
                getattr(form, field).errors = list(messages)
            status = 422
    else:
        status = 422
    return render_template("account/index.html", user=user, tokens=tokens.list_tokens(db(), user),
                           token_form=form, revoke_form=EmptyForm(), new_token=new_token), status


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
