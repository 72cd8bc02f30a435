"""Form classes (Flask-WTF: CSRF on every form)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, IntegerField, PasswordField, SelectMultipleField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, NumberRange, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from gateway.permissions import ROLE_LABELS


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


class EmptyForm(FlaskForm):
    """For buttons that change state: carries the CSRF token only."""


class SecurityPolicyForm(FlaskForm):
    totp_required = MultiCheckboxField("Roles that must use a second factor", choices=role_choices())


class TokenForm(FlaskForm):
    name = StringField("Token name", validators=[DataRequired("Give the token a name"), Length(max=100)])
    days = IntegerField("Expires after (days)", default=90,
                        validators=[DataRequired("Enter a number of days"),
                                    NumberRange(1, 366, "Choose between 1 and 366 days")])


class AuditFilterForm(FlaskForm):
    class Meta:
        csrf = False  # a GET search form changes nothing

    actor = StringField("Actor (username)", validators=[Optional(), Length(max=100)])
    action = StringField("Action starts with", validators=[Optional(), Length(max=100)])
    object_type = StringField("Object type", validators=[Optional(), Length(max=50)])
    object_id = StringField("Object id", validators=[Optional(), Length(max=100)])
    since = StringField("From date (YYYY-MM-DD)", validators=[Optional(), Length(max=10)])
    until = StringField("To date (YYYY-MM-DD), inclusive", validators=[Optional(), Length(max=10)])


class ConfirmForm(FlaskForm):
    confirm = BooleanField("I have saved my recovery codes")
