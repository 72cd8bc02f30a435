"""The data access agreement: anyone signed in can read it; administrators publish new versions."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, url_for

from gateway.errors import ValidationError
from gateway.permissions import Permission
from gateway.web.access import requires
from gateway.web.context import db, require_user, run
from gateway.web.forms import AcceptAgreementForm, AgreementForm
from gateway.web.forms_errors import apply_errors
from projects import agreements

bp = Blueprint("agreements", __name__, url_prefix="/agreement")


@bp.get("/")
@requires(Permission.USE_ACCOUNT)
def current() -> Any:
    from gateway.workspaces.entitlement import has_accepted_current_agreement

    return render_template("agreements/current.html", agreement=agreements.current(db()),
                           accepted=has_accepted_current_agreement(db(), require_user()),
                           form=AcceptAgreementForm())


@bp.post("/accept")
@requires(Permission.USE_ACCOUNT)
def accept() -> Any:
    form = AcceptAgreementForm()
    if form.validate_on_submit() and form.accept.data:
        try:
            run(agreements.accept, require_user(), form.version.data or 0)
        except ValidationError as exc:
            flash(" ".join(m for ms in exc.field_errors.values() for m in ms), "error")
        else:
            flash("Thank you: you have accepted the data access agreement.", "success")
    else:
        flash("Tick the box to accept the agreement.", "error")
    return redirect(url_for("agreements.current"))


@bp.route("/publish", methods=["GET", "POST"])
@requires(Permission.MANAGE_AGREEMENTS)
def publish() -> Any:
    latest = agreements.current(db())
    form = AgreementForm(data={"text": latest.text if latest else agreements.DEFAULT_TEXT})
    extra: list[str] = []
    if form.validate_on_submit():
        try:
            agreement = run(agreements.publish, require_user(), form.text.data or "")
        except ValidationError as exc:
            extra = apply_errors(form, exc)
        else:
            flash(f"Version {agreement.version} published. New submissions must accept it, and every running workspace "
                  "has been stopped: each researcher must accept it before they can open one again.", "success")
            return redirect(url_for("agreements.current"))
    return render_template("agreements/publish.html", form=form, extra=extra), 422 if form.errors or extra else 200
