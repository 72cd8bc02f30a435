"""Accreditation pages: researchers record theirs, accreditation officers verify or reject them."""

from __future__ import annotations

import io
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, send_file, url_for
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from werkzeug.datastructures import FileStorage
from wtforms import RadioField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length

from gateway.errors import ValidationError
from gateway.models import User
from gateway.permissions import Permission, can_decide_accreditation
from gateway.web.access import requires
from gateway.web.context import db, require_user, run, settings
from gateway.web.date_input import NhsDateField, keep_typing_problems, only_date_problems
from gateway.web.forms import EmptyForm
from gateway.web.recorded import records_download
from projects import accreditation as service
from projects.accreditation_rules import valid_accreditation
from projects.certificates import MAX_CERTIFICATE_BYTES, CertificateStore, Upload
from projects.models import Accreditation, Organisation

bp = Blueprint("accreditation", __name__, url_prefix="/accreditation")

class AccreditationForm(FlaskForm):
    scheme = RadioField("Accreditation scheme", validate_choice=False,
                        choices=[*(SelectChoice(s, s) for s in service.SCHEMES), SelectChoice(service.OTHER_SCHEME)])
    other_scheme = StringField("Name of the scheme", validators=[Length(max=200)])
    level = RadioField("Level", validate_choice=False,
                       choices=[SelectChoice(value, label) for value, label in service.LEVELS.items()])
    supervisor = StringField("Your supervisor's username", validators=[Length(max=64)])
    number = StringField("Accreditation or certificate number", validators=[Length(max=100)])
    training_date = NhsDateField("Date of training", hint="As on your certificate. For example, 15 3 2024")
    expiry_date = NhsDateField("Expiry date", hint="As on your certificate. It must be after the training date and "
                                                  "not in the past. For example, 15 3 2029")
    certificate = FileField("Certificate")


class RejectForm(FlaskForm):
    reason = TextAreaField("Reason for rejecting", validators=[Length(max=2000)])


def certificate_store() -> CertificateStore:
    """Certificates live outside the web root, in the instance folder."""
    return CertificateStore(settings().certificates_dir)


def upload_from(storage: FileStorage | None) -> Upload | None:
    """Read at most one byte more than the limit, so an oversize file is detected without reading it all."""
    if storage is None or not storage.filename:
        return None
    return Upload(filename=storage.filename, data=storage.stream.read(MAX_CERTIFICATE_BYTES + 1),
                  content_type=storage.mimetype)


def _organisation_of(user: User) -> Organisation | None:
    return db().get(Organisation, user.organisation_id) if user.organisation_id else None


@bp.get("/")
@requires(Permission.RECORD_ACCREDITATION)
def index() -> Any:
    user = require_user()
    return render_template("accreditation/index.html", records=service.list_mine(db(), user),
                           current=valid_accreditation(db(), user), organisation=_organisation_of(user),
                           status_text=service.status_text)


@bp.route("/new", methods=["GET", "POST"])
@requires(Permission.RECORD_ACCREDITATION)
def record() -> Any:
    user = require_user()
    form = AccreditationForm()
    file_was_chosen = False
    # A date typed wrongly is no reason to hide the form's other problems: the service still checks them (and
    # refuses the missing date), then the typing problem is what the date shows.
    if form.validate_on_submit() or (form.is_submitted() and only_date_problems(form)):
        upload = upload_from(form.certificate.data)
        file_was_chosen = upload is not None
        data = service.AccreditationInput(
            scheme=form.scheme.data or "", other_scheme=form.other_scheme.data or "", level=form.level.data or "",
            number=form.number.data or "", training_date=form.training_date.data,
            expiry_date=form.expiry_date.data,
            supervisor_username=form.supervisor.data or "")
        try:
            created = run(service.record_accreditation, user, certificate_store(), data, upload)
        except ValidationError as exc:
            for field, messages in exc.field_errors.items():
                getattr(form, field).errors = list(messages)
            keep_typing_problems(form)
        else:
            flash("Accreditation recorded. An accreditation officer will check it.", "success")
            return redirect(url_for("accreditation.detail", accreditation_id=created.id))
    reselect = file_was_chosen and not form.certificate.errors
    return render_template("accreditation/record.html", form=form, reselect=reselect,
                           supervisors=service.eligible_supervisors(db(), user),
                           organisation=_organisation_of(user)), 422 if form.errors else 200


@bp.get("/queue")
@requires(Permission.VERIFY_ACCREDITATION)
def queue() -> Any:
    status = request.args.get("status", "pending")
    chosen = None if status == "all" else status
    if chosen is not None and chosen not in service.STATUSES:
        chosen, status = "pending", "pending"
    records = service.list_for_officer(db(), require_user(), chosen)
    return render_template("accreditation/queue.html", records=records, status=status,
                           status_text=service.status_text)


def _detail_page(accreditation: Accreditation, reject_form: RejectForm) -> Any:
    user = require_user()
    return render_template("accreditation/detail.html", record=accreditation, reject_form=reject_form,
                           verify_form=EmptyForm(), status_text=service.status_text(accreditation),
                           can_decide=can_decide_accreditation(user, accreditation)
                           and accreditation.status == "pending",
                           is_valid=valid_accreditation(db(), accreditation.user) is not None,
                           organisation=_organisation_of(accreditation.user), long_date=service.long_date,
                           record_decider=_decider(accreditation))


def _decider(accreditation: Accreditation) -> str | None:
    officer = db().get(User, accreditation.decided_by_id) if accreditation.decided_by_id else None
    return officer.display_name if officer else None


@bp.get("/<int:accreditation_id>")
@requires(Permission.USE_ACCOUNT)  # the owner or an accreditation officer: decided per record
def detail(accreditation_id: int) -> Any:
    return _detail_page(service.get_accreditation(db(), require_user(), accreditation_id), RejectForm())


@bp.get("/<int:accreditation_id>/certificate")
@records_download("accreditation", "accreditation_id")
@requires(Permission.USE_ACCOUNT)  # the owner or an accreditation officer: decided per record
def certificate(accreditation_id: int) -> Any:
    user = require_user()
    accreditation = service.get_accreditation(db(), user, accreditation_id)
    data, content_type, name = service.read_certificate(db(), user, certificate_store(), accreditation)
    response = send_file(io.BytesIO(data), mimetype=content_type, as_attachment=True, download_name=name)
    response.headers["Content-Security-Policy"] = "sandbox; default-src 'none'"
    return response


@bp.post("/<int:accreditation_id>/verify")
@requires(Permission.VERIFY_ACCREDITATION)
def verify(accreditation_id: int) -> Any:
    user = require_user()
    accreditation = service.get_accreditation(db(), user, accreditation_id)
    if EmptyForm().validate_on_submit():
        run(service.verify_accreditation, user, accreditation)
        flash(f"Accreditation verified: {accreditation.user.display_name} is "
              f"{service.status_text(accreditation).lower()}.", "success")
    return redirect(url_for("accreditation.detail", accreditation_id=accreditation_id))


@bp.post("/<int:accreditation_id>/reject")
@requires(Permission.VERIFY_ACCREDITATION)
def reject(accreditation_id: int) -> Any:
    user = require_user()
    accreditation = service.get_accreditation(db(), user, accreditation_id)
    form = RejectForm()
    if form.validate_on_submit():
        try:
            run(service.reject_accreditation, user, accreditation, form.reason.data or "")
        except ValidationError as exc:
            form.reason.errors = list(exc.field_errors.get("reason", [exc.message]))
        else:
            flash("Accreditation rejected. The researcher has been told why.", "success")
            return redirect(url_for("accreditation.queue"))
    return _detail_page(accreditation, form), 422
