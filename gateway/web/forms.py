"""Form classes (Flask-WTF: CSRF on every form)."""

from __future__ import annotations

from flask import request
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    EmailField,
    IntegerField,
    PasswordField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, NumberRange, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from gateway.permissions import ROLE_LABELS
from gateway.web.date_input import NhsDateField
from projects.workspace_tiers import DEFAULT_SECURITY_TIER, SECURITY_TIER_LABELS, TIERS


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


def role_choices() -> list[SelectChoice]:
    return [SelectChoice(role.value, label) for role, label in ROLE_LABELS.items()]


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired("Enter your username"), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired("Enter your password"), Length(max=1024)])


class CodeForm(FlaskForm):
    code = StringField("Code", validators=[DataRequired("Enter the code"), Length(max=32)])


class EnrolmentCodeForm(FlaskForm):
    """The one-time set-up code from the email (or from the service desk), before an authenticator is set up."""

    code = StringField("Set-up code", validators=[DataRequired("Enter the set-up code from the email"),
                                                  Length(max=64)])


class NewPasswordForm(FlaskForm):
    password = PasswordField("New password", validators=[DataRequired("Enter a new password"), Length(max=1024)])
    password_again = PasswordField("New password again",
                                   validators=[DataRequired("Enter the new password again"), Length(max=1024)])


class ChangePasswordForm(NewPasswordForm):
    current_password = PasswordField("Current password",
                                     validators=[DataRequired("Enter your current password"), Length(max=1024)])


class CreateUserForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired("Enter a username"), Length(max=64)])
    display_name = StringField("Full name", validators=[DataRequired("Enter the person's full name"),
                                                        Length(max=200)])
    email = EmailField("Email address", validators=[Optional(), Length(max=254)])
    password = PasswordField("Initial password", validators=[DataRequired("Enter an initial password"),
                                                              Length(max=1024)])
    roles = MultiCheckboxField("Roles", choices=role_choices())


class RolesForm(FlaskForm):
    roles = MultiCheckboxField("Roles", choices=role_choices())
    # the second step (the confirmation page) adds why, and that the change was looked at
    reason = TextAreaField("Why are these roles changing?", validators=[Optional(), Length(max=2000)])
    confirm = BooleanField("I have checked the roles added and removed above")


class EmptyForm(FlaskForm):
    """For buttons that change state: carries the CSRF token only."""


class SecurityPolicyForm(FlaskForm):
    totp_required = MultiCheckboxField("Roles that must use a second factor", choices=role_choices())


class SecurityPolicyConfirmForm(SecurityPolicyForm):
    """The second page of relaxing the policy: the same choice again, and why."""

    reason = TextAreaField("Why may these roles sign in without a second factor?",
                           validators=[DataRequired("Give the reason for relaxing the policy"), Length(max=500)])


class TokenForm(FlaskForm):
    name = StringField("Token name", validators=[DataRequired("Give the token a name"), Length(max=100)])
    days = IntegerField("Expires after (days)", default=90,
                        validators=[DataRequired("Enter a number of days"),
                                    NumberRange(1, 366, "Choose between 1 and 366 days")])
    # The choices are the scopes this person may grant (set by the view from their roles).
    scopes = MultiCheckboxField("What the token may do", choices=[])
    read_only = BooleanField("Read only: the token can look but not change anything")


class AuditFilterForm(FlaskForm):
    class Meta:
        csrf = False  # a GET search form changes nothing

    actor = StringField("Actor (username)", validators=[Optional(), Length(max=100)])
    action = StringField("Action starts with", validators=[Optional(), Length(max=100)])
    object_type = StringField("Object type", validators=[Optional(), Length(max=50)])
    object_id = StringField("Object id", validators=[Optional(), Length(max=100)])
    since = NhsDateField("From date", subject="The from date")
    until = NhsDateField("To date (inclusive)", subject="The to date")


class AnchorsForm(FlaskForm):
    """Anchors an auditor kept (``SEQ HASH`` lines, as the verify page and ``sde audit head`` show the head), checked
    against the log. Changes nothing; the CSRF token still comes with it, as with every POST."""

    anchors = TextAreaField("Anchors you kept", validators=[DataRequired("Paste at least one anchor you kept."),
                                                             Length(max=10_000_000)])


class ConfirmForm(FlaskForm):
    confirm = BooleanField("I have saved my recovery codes")


def _choices(pairs: dict[str, str], *, blank: str | None = None, show_key: bool = True) -> list[SelectChoice]:
    options = [SelectChoice("", blank)] if blank else []
    return options + [SelectChoice(key, f"{key}: {label}" if show_key else label) for key, label in pairs.items()]


YES_NO = {"yes": "Yes", "no": "No"}


# Sizes as the workspaces define them; the labels say what each gives.
WORKSPACE_TIERS = {name: f"{name.capitalize()}: {tier.description}" for name, tier in TIERS.items()}


class NewApplicationForm(FlaskForm):
    title = StringField("Project title", validators=[DataRequired("Enter a title"), Length(max=300)])


class ApplicationForm(FlaskForm):
    """Every section of an application; a draft saves whatever is filled in."""

    from projects.applications import ARTICLE6, ARTICLE9, COMMON_LAW

    title = StringField("Project title", validators=[Optional(), Length(max=300)])
    lay_summary = TextAreaField("Lay summary", validators=[Optional(), Length(max=5000)])
    technical_summary = TextAreaField("Technical summary", validators=[Optional(), Length(max=20000)])
    public_benefit = TextAreaField("Public benefit", validators=[Optional(), Length(max=5000)])
    funder = StringField("Funder", validators=[Optional(), Length(max=300)])
    commercial_involvement = RadioField("Is there commercial involvement?", choices=_choices(YES_NO, show_key=False),
                                        validators=[Optional()])
    commercial_details = TextAreaField("Commercial involvement details", validators=[Optional(), Length(max=5000)])
    cohort_description = TextAreaField("Cohort", validators=[Optional(), Length(max=5000)])
    date_from = NhsDateField("Data from", subject="The start of the data period",
                             hint="The first day of the data you need. For example, 1 1 2019")
    date_to = NhsDateField("Data to", subject="The end of the data period",
                           hint="The last day of the data you need. For example, 31 12 2024")
    # The cohort criteria: choices come from the catalogue (set by the view); the service checks every value,
    # and the ages are text so whatever was typed comes back with its message.
    cohort_boroughs = MultiCheckboxField("Boroughs", choices=[], validate_choice=False)
    cohort_age_min = StringField("Minimum age", validators=[Optional()])
    cohort_age_max = StringField("Maximum age", validators=[Optional()])
    cohort_conditions = MultiCheckboxField("Conditions", choices=[], validate_choice=False)
    legal_basis_article6 = SelectField("UK GDPR Article 6 lawful basis",
                                       choices=_choices(ARTICLE6, blank="Choose"),
                                       validators=[Optional()])
    legal_basis_article9 = SelectField("UK GDPR Article 9 condition",
                                       choices=_choices(ARTICLE9, blank="Choose"),
                                       validators=[Optional()])
    common_law_basis = SelectField("Common law duty of confidentiality",
                                   choices=_choices(COMMON_LAW, blank="Choose"), validators=[Optional()])
    ethics_reference = StringField("Ethics approval reference", validators=[Optional(), Length(max=100)])
    opt_out_applies = RadioField("Does the national data opt-out apply?", choices=_choices(YES_NO, show_key=False),
                                 validators=[Optional()])
    opt_out_reason = TextAreaField("Why the national data opt-out does or does not apply",
                                   validators=[Optional(), Length(max=5000)])
    workspace_size = RadioField("Workspace size", choices=_choices(WORKSPACE_TIERS, show_key=False),
                                validators=[Optional()])
    intended_outputs = TextAreaField("Intended outputs", validators=[Optional(), Length(max=5000)])
    amendment_summary = TextAreaField("What the amendment changes and why", validators=[Optional(), Length(max=5000)])
    requested_end_date = NhsDateField("New access end date, if extending", subject="The new access end date",
                                      hint="Leave empty to keep the project's end date. For example, 31 3 2028")
    del ARTICLE6, ARTICLE9, COMMON_LAW


class MemberForm(FlaskForm):
    username = StringField("Username of the researcher", validators=[DataRequired("Enter a username"),
                                                                     Length(max=64)])
    project_role = StringField("Role in the project", default="analyst", validators=[Length(max=100)])


class SubmitForm(FlaskForm):
    accept = BooleanField("I have read and accept the data access agreement")
    agreement_version = IntegerField(validators=[Optional()])


class AssignForm(FlaskForm):
    reviewers = SelectMultipleField("Reviewers", coerce=int, validate_choice=False)


class ConflictForm(FlaskForm):
    conflict = RadioField("Do you have a conflict of interest with this application?",
                          choices=_choices({"no": "No", "yes": "Yes"}, show_key=False),
                          validators=[DataRequired("Choose yes or no")])
    conflict_reason = TextAreaField("Describe the conflict", validators=[Optional(), Length(max=2000)])


class ReviewForm(FlaskForm):
    vote = RadioField("Your vote", choices=_choices({"approve": "Approve",
                                                     "approve_with_conditions": "Approve with conditions",
                                                     "changes_requested": "Request changes", "reject": "Reject"},
                                                    show_key=False),
                      validators=[DataRequired("Choose a vote")])
    comment_applicant = TextAreaField("Comments for the applicant", validators=[Optional(), Length(max=5000)])
    comment_private = TextAreaField("Private comments (DAC only)", validators=[Optional(), Length(max=5000)])


class DecisionForm(FlaskForm):
    outcome = RadioField("Decision", choices=_choices({"approved": "Approve", "changes_requested": "Request changes",
                                                       "rejected": "Reject"}, show_key=False),
                         validators=[DataRequired("Choose a decision")])
    conditions = TextAreaField("Conditions of approval", validators=[Optional(), Length(max=5000)])
    message = TextAreaField("Message to the applicant", validators=[Optional(), Length(max=5000)])
    access_end_date = NhsDateField("Access ends on", subject="The access end date",
                                   hint="For example, 31 3 2028")
    # Shown for new applications only (an amendment keeps the project's tier); the labels are the one mapping.
    security_tier = RadioField("Security tier of the project's workspaces",
                               choices=_choices(SECURITY_TIER_LABELS, show_key=False), default=DEFAULT_SECURITY_TIER,
                               validators=[Optional()])


class ReasonForm(FlaskForm):
    reason = TextAreaField("Reason", validators=[DataRequired("Give a reason"), Length(max=2000)])


class ConfirmedReasonForm(FlaskForm):
    """A high-impact action's second step: a reason for the record, and a tick that the consequences were read."""

    reason = TextAreaField("Reason (recorded in the audit log)",
                           validators=[DataRequired("Give a reason"), Length(max=2000)])
    confirm = BooleanField("I have read what this does", validators=[DataRequired("Tick to confirm")])


class AgreementForm(FlaskForm):
    text = TextAreaField("Agreement text", validators=[DataRequired("Enter the agreement text"),
                                                       Length(max=20000)])


class InvoiceRunForm(FlaskForm):
    month = NhsDateField("Month to invoice", subject="The month to invoice", parts=("month", "year"),
                         hint="For example, 11 2026")


class AcceptAgreementForm(FlaskForm):
    accept = BooleanField("I have read and accept the data access agreement")
    version = IntegerField(validators=[DataRequired()])


def round_seen() -> int:
    """The round the posted form was rendered for (its hidden ``round`` field). A form without one (a page older than
    the field) gives 0, which the services refuse as out of date: a page that does not say which round it showed
    decides nothing."""
    return request.form.get("round", 0, type=int)
