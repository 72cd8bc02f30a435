"""Sign-in pages: password, then the code (or the emailed set-up link, then enrolment), then a forced new password
when due; sign-out.

Each step's page is declared with the one sign-in state it serves (``@sign_in_step``); the access hook sends
any other state to its own page, and the service behind each page checks the state again. The cookie holds
only the key of the server-side session, replaced at every step.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, session, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response

from gateway.errors import ValidationError
from gateway.identity import enrolment, signin, totp
from gateway.identity.sessions import S, SignInState
from gateway.models import EnrolmentCode, WebSession
from gateway.web.access import public, sign_in_step
from gateway.web.context import current_user, db, run, settings
from gateway.web.forms import CodeForm, EmptyForm, EnrolmentCodeForm, LoginForm, NewPasswordForm

bp = Blueprint("auth", __name__)

# The page of each half-way state (the access hook sends a person there from anywhere else).
STEP_ENDPOINTS: dict[str, str] = {S.CODE.value: "auth.second_factor", S.VERIFY.value: "auth.verify",
                                  S.ENROL.value: "auth.enrol", S.NEW_PASSWORD.value: "auth.new_password"}

_MAX_NEXT = 2000
# Characters kept as they are when a path or query is re-encoded; everything else is percent-encoded.
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"


def safe_next(target: str | None) -> str | None:
    """``target`` as a path on this site, or None.

    Accepts only an absolute path: no scheme or host, no backslash (browsers read it as a slash), no control
    character (browsers drop tabs and newlines, which turned ``/<TAB>/evil.example`` into ``//evil.example``;
    a newline in a header was a 500). What is accepted is re-encoded to plain ASCII (spaces and other
    characters percent-encoded), so the Location header says exactly what was checked.
    """
    if not target or len(target) > _MAX_NEXT or not target.startswith("/"):
        return None
    if any(c == "\\" or ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f for c in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/") or parts.path.startswith("//"):
        return None
    path = quote(parts.path, safe=_PATH_SAFE)
    result = path + (f"?{quote(parts.query, safe=_QUERY_SAFE)}" if parts.query else "")
    if not result.startswith("/") or result.startswith("//") or not result.isascii():
        return None
    return result


def _next_or_home(target: str | None) -> str:
    return safe_next(target) or url_for("home.index")


def _web_session() -> WebSession:
    ws: WebSession | None = g.get("web_session")
    if ws is None:  # the access hook guarantees one on a sign-in step's page
        raise RuntimeError("no sign-in session on a sign-in step")
    return ws


def _store(outcome: signin.Outcome) -> str:
    """Put the session's new key in the cookie; return the page to go to next."""
    assert outcome.state is not None and outcome.key is not None and outcome.user is not None
    next_url = session.get("next")
    session.clear()  # nothing from before this step survives (the CSRF token included)
    session.permanent = True
    session["sid"] = outcome.key
    session["uid"] = outcome.user.id  # a rate-limit key only: the server-side session says who this is
    if outcome.state is S.SIGNED_IN:
        flash(f"Signed in as {outcome.user.display_name}.", "success")
        return _next_or_home(next_url)
    session["next"] = next_url
    return url_for(STEP_ENDPOINTS[outcome.state.value])


@bp.route("/login", methods=["GET", "POST"])
@public
def login() -> Any:
    if current_user() is not None:
        return redirect(_next_or_home(request.args.get("next")))
    form = LoginForm()
    if request.method == "GET" and request.args.get("next"):
        session["next"] = request.args["next"][:_MAX_NEXT]
    if form.validate_on_submit():
        outcome = run(signin.sign_in_with_password, settings().security,
                      current_app.extensions["sde_directory"], form.username.data or "", form.password.data or "",
                      totp_by_default=settings().second_factor_by_default, replaces=g.get("web_session"),
                      enrolment_link=link_base("auth.verify"))
        if outcome.ok:
            return redirect(_store(outcome))
        form.password.errors = [outcome.message or signin.GENERIC_FAILURE]
        return _login_page(form), 401
    return _login_page(form), 422 if form.errors else 200


def _login_page(form: LoginForm) -> str:
    return render_template("auth/login.html", form=form,
                           without_second_factor=not settings().second_factor_by_default,
                           demo=settings().env != "production")


def _refused_locked(outcome: signin.Outcome) -> Response:
    session.clear()
    flash(outcome.message or "This account is locked.", "error")
    return redirect(url_for("auth.login"))


@bp.route("/login/code", methods=["GET", "POST"])
@sign_in_step(SignInState.CODE.value)
def second_factor() -> Any:
    ws = _web_session()
    form = CodeForm()
    if form.validate_on_submit():
        outcome = run(signin.verify_second_factor, settings().security, ws, form.code.data or "")
        if outcome.ok:
            return redirect(_store(outcome))
        if outcome.locked:
            return _refused_locked(outcome)
        form.code.errors = [outcome.message or signin.WRONG_CODE]
        return render_template("auth/code.html", form=form), 401
    return render_template("auth/code.html", form=form), 422 if form.errors else 200


def link_base(endpoint: str) -> str | None:
    """The address an emailed set-up link opens: on the service's configured address (``public.base_url``). Outside
    production, without one, the address this request came to; in production never that (a forged Host header
    would send the person's code to another site): the email then carries only the code to type."""
    configured = settings().public.base_url
    if configured:
        return configured.rstrip("/") + url_for(endpoint)
    if settings().env != "production":
        return url_for(endpoint, _external=True)
    return None


def verify_page(ws: WebSession, form: EnrolmentCodeForm, action: str, send_action: str) -> tuple[str, int]:
    """The page asking for the emailed link or code before an authenticator is set up (sign-in and account page)."""
    if not form.is_submitted() and request.args.get("code"):
        form.code.data = request.args["code"][:64]  # from the link: the person confirms it with the button
    newest = db().scalar(select(EnrolmentCode).where(EnrolmentCode.web_session_id == ws.id)
                         .order_by(EnrolmentCode.id.desc()).limit(1))
    held = enrolment.email_on_hold(ws.user)
    email = None if held else ws.user.email
    status = 422 if form.errors else 200
    return render_template("auth/verify.html", form=form, action=action, send_action=send_action,
                           masked=enrolment.mask_email(email) if email else None,
                           sent=newest is not None, expires_at=newest.expires_at if newest else None,
                           no_email_message=enrolment.EMAIL_CHANGED if held else enrolment.NO_EMAIL,
                           during_sign_in=ws.state != SignInState.SIGNED_IN,
                           minutes=settings().security.enrolment_link_minutes), status


def flash_sent(sent: enrolment.Sent) -> None:
    if sent.ok:
        flash(f"We have sent a new link to {sent.to}. Older links no longer work.", "success")
    elif sent.refused == "too_many":
        flash("Too many links have been sent to this account in the last hour. Use the newest one you have, or wait "
              "and send another later.", "error")
    elif sent.refused == "email_changed":
        flash(enrolment.EMAIL_CHANGED, "error")
    else:
        flash(enrolment.NO_EMAIL, "error")


@bp.route("/login/verify", methods=["GET", "POST"])
@sign_in_step(SignInState.VERIFY.value)
def verify() -> Any:
    ws = _web_session()
    form = EnrolmentCodeForm()
    if form.validate_on_submit():
        outcome = run(signin.verify_enrolment_code, settings().security, ws, form.code.data or "")
        if outcome.ok:
            return redirect(_store(outcome))
        if outcome.locked:
            return _refused_locked(outcome)
        form.code.errors = [outcome.message or signin.ENROLMENT_CODE_REFUSED]
        page, _ = verify_page(ws, form, url_for("auth.verify"), url_for("auth.send_link"))
        return page, 401
    return verify_page(ws, form, url_for("auth.verify"), url_for("auth.send_link"))


@bp.post("/login/verify/send")
@sign_in_step(SignInState.VERIFY.value)
def send_link() -> Any:
    ws = _web_session()
    if EmptyForm().validate_on_submit():
        flash_sent(run(signin.request_enrolment_link, settings().security, ws, link_base("auth.verify")))
    return redirect(url_for("auth.verify"))


def enrolment_form(ws: WebSession, form: CodeForm) -> tuple[str, int]:
    """The QR code and key of the secret this session is setting up (shared with the account page)."""
    secret = ws.pending_totp_secret or run(signin.enrolment_secret, settings().security, ws)
    uri = totp.provisioning_uri(secret, ws.user.username, settings().security.totp_issuer)
    status = 422 if form.errors else 200
    return render_template("auth/enrol.html", form=form, qr_svg=totp.qr_svg(uri), secret=secret,
                           during_sign_in=ws.state != SignInState.SIGNED_IN), status


WRONG_ENROLMENT_CODE = "That code is not right. Check the time on your phone and enter the newest code."


@bp.route("/login/enrol", methods=["GET", "POST"])
@sign_in_step(SignInState.ENROL.value)
def enrol() -> Any:
    ws = _web_session()
    form = CodeForm()
    if form.validate_on_submit():
        outcome, codes = run(signin.finish_enrolment, settings().security, ws, form.code.data or "")
        if outcome.ok and codes is not None:
            next_url = _store(outcome)
            return render_template("auth/recovery_codes.html", codes=codes, next_url=next_url, user=outcome.user)
        form.code.errors = [outcome.message or WRONG_ENROLMENT_CODE]
    return enrolment_form(ws, form)


@bp.route("/login/new-password", methods=["GET", "POST"])
@sign_in_step(SignInState.NEW_PASSWORD.value)
def new_password() -> Any:
    ws = _web_session()
    form = NewPasswordForm()
    if form.validate_on_submit():
        try:
            outcome = run(signin.set_first_password, settings().security, ws, form.password.data or "",
                          form.password_again.data or "")
        except ValidationError as exc:
            for field, messages in exc.field_errors.items():
                getattr(form, field).errors = list(messages)
        else:
            return redirect(_store(outcome))
    return render_template("auth/new_password.html", form=form), 422 if form.errors else 200


@bp.post("/logout")
@public
def logout() -> Any:
    ws: WebSession | None = g.get("web_session")
    if ws is not None:
        run(signin.sign_out, ws)
    session.clear()
    flash("You have signed out.", "success")
    return redirect(url_for("auth.login"))
