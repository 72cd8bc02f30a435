"""A person's own account: roles, password, second factor, API tokens, sessions."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, g, redirect, render_template, session, url_for
from wtforms.fields.choices import SelectChoice

from gateway.errors import ValidationError
from gateway.identity import accounts, enrolment, signin, tokens
from gateway.identity.sessions import METHOD_LABELS, open_sessions
from gateway.models import User, WebSession
from gateway.permissions import PERMISSION_LABELS, Permission
from gateway.web.access import requires
from gateway.web.auth import WRONG_ENROLMENT_CODE, enrolment_form, flash_sent, link_base, verify_page
from gateway.web.context import db, require_user, run, settings
from gateway.web.forms import ChangePasswordForm, CodeForm, EmptyForm, EnrolmentCodeForm, TokenForm

bp = Blueprint("account", __name__, url_prefix="/account")


def _token_form(user: User) -> TokenForm:
    form = TokenForm()
    grantable = tokens.grantable_scopes(user)
    form.scopes.choices = [SelectChoice(p.value, PERMISSION_LABELS[p]) for p in grantable]
    if not form.is_submitted():
        form.scopes.data = [p.value for p in grantable]  # all ticked: untick what the script does not need
    return form


def _this_session() -> WebSession:
    ws: WebSession | None = g.get("web_session")
    if ws is None:  # account pages are for browser sessions; a token has no session to act on
        raise RuntimeError("no browser session")
    return ws


def _page(user: User, token_form: TokenForm | None = None, new_token: str | None = None) -> str:
    return render_template("account/index.html", user=user, tokens=tokens.list_tokens(db(), user),
                           token_form=token_form or _token_form(user), revoke_form=EmptyForm(), new_token=new_token,
                           scope_labels=PERMISSION_LABELS, sessions=open_sessions(db(), user),
                           this_session=g.get("web_session"), method_labels=METHOD_LABELS)


@bp.get("/")
@requires(Permission.USE_ACCOUNT)
def index() -> Any:
    return _page(require_user())


@bp.route("/second-factor", methods=["GET", "POST"])
@requires(Permission.USE_ACCOUNT)
def second_factor() -> Any:
    user = require_user()
    if user.totp_enabled:
        flash("Your authenticator app is already set up. Ask an administrator to reset it if you lost it.",
              "info")
        return redirect(url_for("account.index"))
    ws = _this_session()
    if not enrolment.verified(ws, settings().security):  # first the link sent to the account's email
        return _verify_page(ws, EnrolmentCodeForm())
    form = CodeForm()
    if form.validate_on_submit():
        codes = run(signin.confirm_enrolment, settings().security, ws, form.code.data or "")
        if codes is not None:
            return render_template("auth/recovery_codes.html", codes=codes, next_url=url_for("account.index"),
                                   user=user)
        form.code.errors = [WRONG_ENROLMENT_CODE]
    return enrolment_form(ws, form)


def _verify_page(ws: WebSession, form: EnrolmentCodeForm) -> tuple[str, int]:
    return verify_page(ws, form, url_for("account.verify_link"), url_for("account.send_link"))


@bp.post("/second-factor/verify")
@requires(Permission.USE_ACCOUNT)
def verify_link() -> Any:
    """The emailed code, shown in this session: then the authenticator can be set up here."""
    user = require_user()
    if user.totp_enabled:
        return redirect(url_for("account.second_factor"))
    ws = _this_session()
    form = EnrolmentCodeForm()
    if not form.validate_on_submit():
        return _verify_page(ws, form)
    outcome = run(signin.verify_enrolment_code, settings().security, ws, form.code.data or "")
    if outcome.ok:
        return redirect(url_for("account.second_factor"))
    if outcome.locked:  # that wrong code was the last allowed: every session ended
        session.clear()
        flash(outcome.message or "This account is locked.", "error")
        return redirect(url_for("auth.login"))
    form.code.errors = [outcome.message or signin.ENROLMENT_CODE_REFUSED]
    page, _ = _verify_page(ws, form)
    return page, 401


@bp.post("/second-factor/send")
@requires(Permission.USE_ACCOUNT)
def send_link() -> Any:
    user = require_user()
    if not user.totp_enabled and EmptyForm().validate_on_submit():
        flash_sent(run(signin.request_enrolment_link, settings().security, _this_session(),
                       link_base("account.second_factor")))
    return redirect(url_for("account.second_factor"))


@bp.route("/password", methods=["GET", "POST"])
@requires(Permission.USE_ACCOUNT)
def change_password() -> Any:
    user = require_user()
    if user.source != "local":
        flash("Your password belongs to your organisation's directory: change it there.", "info")
        return redirect(url_for("account.index"))
    form = ChangePasswordForm()
    if form.validate_on_submit():
        errors = run(signin.change_password, settings().security, _this_session(), form.current_password.data or "",
                     form.password.data or "", form.password_again.data or "")
        if not errors:
            flash("Your password has been changed. You have been signed out everywhere else.", "success")
            return redirect(url_for("account.index"))
        if signin.is_locked(user):  # that wrong password was the last allowed: every session ended
            session.clear()
            flash(errors["current_password"][0], "error")
            return redirect(url_for("auth.login"))
        for field, messages in errors.items():
            getattr(form, field).errors = list(messages)
    return render_template("account/password.html", form=form), 422 if form.errors else 200


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
    return _page(user, form, new_token), status


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
