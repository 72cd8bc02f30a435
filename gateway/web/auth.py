"""Sign-in pages: password, second factor, enrolment when a role requires it, sign-out."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from gateway import audit
from gateway.identity import signin, totp
from gateway.identity.signin import Next, Outcome
from gateway.models import User
from gateway.web.access import mid_sign_in, public
from gateway.web.context import current_user, run, settings
from gateway.web.forms import CodeForm, LoginForm

bp = Blueprint("auth", __name__)


def safe_next(target: str | None) -> str:
    """Only same-site paths, so the sign-in page cannot be used to bounce people elsewhere."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("home.index")


def _start_session(outcome: Outcome) -> Response:
    user = outcome.user
    assert user is not None
    next_url = session.get("next")
    session.clear()
    session.permanent = True
    session["uid"] = user.id
    session["sv"] = user.session_version
    if outcome.next is Next.DONE:
        session["stage"] = "full"
        flash(f"Signed in as {user.display_name}.", "success")
        return redirect(safe_next(next_url))
    session["next"] = next_url
    session["stage"] = "totp" if outcome.next is Next.SECOND_FACTOR else "enrol"
    return redirect(url_for("auth.second_factor" if outcome.next is Next.SECOND_FACTOR else "auth.enrol"))


@bp.route("/login", methods=["GET", "POST"])
@public
def login() -> Any:
    if current_user() is not None:
        return redirect(url_for("home.index"))
    form = LoginForm()
    if request.method == "GET" and request.args.get("next"):
        session["next"] = request.args["next"]
    if form.validate_on_submit():
        outcome = run(signin.sign_in_with_password, settings().security,
                      current_app.extensions["sde_directory"], form.username.data or "", form.password.data or "")
        if outcome.next is not Next.FAILED:
            return _start_session(outcome)
        form.password.errors = [outcome.message or signin.GENERIC_FAILURE]
        return render_template("auth/login.html", form=form), 401
    status = 422 if form.errors else 200
    return render_template("auth/login.html", form=form), status


@bp.route("/login/code", methods=["GET", "POST"])
@mid_sign_in
def second_factor() -> Any:
    user: User = g.pending_user
    if session.get("stage") != "totp":
        return redirect(url_for("auth.enrol"))
    form = CodeForm()
    if form.validate_on_submit():
        outcome = run(signin.verify_second_factor, settings().security, user, form.code.data or "")
        if outcome.next is Next.DONE:
            return _start_session(outcome)
        if outcome.user is not None and outcome.user.locked_until is not None:
            session.clear()
            flash(outcome.message or "Locked.", "error")
            return redirect(url_for("auth.login"))
        form.code.errors = [outcome.message or "That code is not right."]
        return render_template("auth/code.html", form=form), 401
    return render_template("auth/code.html", form=form), 422 if form.errors else 200


def enrolment_page(user: User, template_next: str) -> Any:
    """Shared by the sign-in enrolment step and the account page: show QR, confirm a code."""
    secret = session.get("totp_pending_secret")
    if not secret:
        secret = signin.start_enrolment(user)
        session["totp_pending_secret"] = secret
    form = CodeForm()
    if form.validate_on_submit():
        codes = run(signin.confirm_enrolment, settings().security, user, secret, form.code.data or "")
        if codes is not None:
            session.pop("totp_pending_secret", None)
            session["sv"] = user.session_version  # enrolment ends other sessions, not this one
            return render_template("auth/recovery_codes.html", codes=codes, next_url=template_next, user=user)
        form.code.errors = ["That code is not right. Check the time on your phone and enter the newest code."]
    uri = totp.provisioning_uri(secret, user.username, settings().security.totp_issuer)
    status = 422 if form.errors else 200
    return render_template("auth/enrol.html", form=form, qr_svg=totp.qr_svg(uri), secret=secret), status


@bp.route("/login/enrol", methods=["GET", "POST"])
@mid_sign_in
def enrol() -> Any:
    user: User = g.pending_user
    if session.get("stage") != "enrol":
        return redirect(url_for("auth.second_factor"))
    return enrolment_page(user, url_for("auth.enrolled"))


@bp.get("/login/enrolled")
@mid_sign_in
def enrolled() -> Any:
    """After the recovery codes were shown: the code that confirmed enrolment completes sign-in."""
    user: User = g.pending_user
    if not user.totp_enabled:
        return redirect(url_for("auth.enrol"))
    return _start_session(run(signin.complete, user, method="password+totp_enrolment"))


@bp.post("/logout")
@public
def logout() -> Any:
    user = current_user()
    if user is not None:
        run(audit.record, user, "auth.signed_out", "user", user.id)
    session.clear()
    flash("You have signed out.", "success")
    return redirect(url_for("auth.login"))
