"""Administration of organisations and of who belongs to which."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_wtf import FlaskForm
from wtforms import RadioField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length

from gateway.errors import ValidationError
from gateway.identity import accounts
from gateway.models import User
from gateway.permissions import Permission
from gateway.web.access import requires
from gateway.web.context import db, require_user, run
from gateway.web.forms import EmptyForm
from projects import organisations as service
from projects.models import Organisation

bp = Blueprint("organisations", __name__, url_prefix="/admin/organisations")


class OrganisationForm(FlaskForm):
    name = StringField("Name", validators=[Length(max=200)])
    org_type = RadioField("Type", validate_choice=False,
                          choices=[SelectChoice(value, label) for value, label in service.ORG_TYPES.items()])
    identifier = StringField("ROR identifier (optional)", validators=[Length(max=200)])


class MemberForm(FlaskForm):
    user_id = SelectField("Person", validate_choice=False, coerce=str)


@bp.get("/")
@requires(Permission.MANAGE_ORGANISATIONS)
def index() -> Any:
    return render_template("organisations/index.html", organisations=service.list_organisations(db(), require_user()),
                           counts=service.member_counts(db()), types=service.ORG_TYPES)


@bp.route("/new", methods=["GET", "POST"])
@requires(Permission.MANAGE_ORGANISATIONS)
def create() -> Any:
    form = OrganisationForm()
    if form.validate_on_submit():
        try:
            organisation = run(service.create_organisation, require_user(), form.name.data or "",
                               form.org_type.data or "", form.identifier.data or None)
        except ValidationError as exc:
            for field, messages in exc.field_errors.items():
                getattr(form, field).errors = list(messages)
        else:
            flash(f"Organisation '{organisation.name}' added.", "success")
            return redirect(url_for("organisations.detail", organisation_id=organisation.id))
    return render_template("organisations/create.html", form=form), 422 if form.errors else 200


def _detail_page(organisation: Organisation, form: MemberForm) -> Any:
    people = service.members(db(), organisation)
    form.user_id.choices = [SelectChoice(str(u.id), f"{u.display_name} ({u.username})")
                            for u in accounts.list_users(db(), require_user()) if u.organisation_id != organisation.id]
    return render_template("organisations/detail.html", organisation=organisation, members=people, form=form,
                           remove_form=EmptyForm(), types=service.ORG_TYPES)


@bp.get("/<int:organisation_id>")
@requires(Permission.MANAGE_ORGANISATIONS)
def detail(organisation_id: int) -> Any:
    return _detail_page(service.get_organisation(db(), organisation_id), MemberForm())


@bp.post("/<int:organisation_id>/members")
@requires(Permission.MANAGE_ORGANISATIONS)
def add_member(organisation_id: int) -> Any:
    organisation = service.get_organisation(db(), organisation_id)
    form = MemberForm()
    if form.validate_on_submit():
        person = db().get(User, int(form.user_id.data)) if (form.user_id.data or "").isdigit() else None
        if person is None:
            form.user_id.errors = ["Choose the person to add."]
        else:
            run(service.assign_user, require_user(), person, organisation)
            flash(f"{person.display_name} is now at {organisation.name}.", "success")
            return redirect(url_for("organisations.detail", organisation_id=organisation_id))
    return _detail_page(organisation, form), 422


@bp.post("/<int:organisation_id>/members/<int:user_id>/remove")
@requires(Permission.MANAGE_ORGANISATIONS)
def remove_member(organisation_id: int, user_id: int) -> Any:
    organisation = service.get_organisation(db(), organisation_id)
    person = accounts.get_user(db(), user_id)
    if EmptyForm().validate_on_submit():
        run(service.remove_member, require_user(), organisation, person)
        flash(f"{person.display_name} is no longer recorded at {organisation.name}.", "success")
    return redirect(url_for("organisations.detail", organisation_id=organisation_id))
