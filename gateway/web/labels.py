"""The one mapping from the code's internal values to the words people read, and the page formats of dates
and numbers. Templates reach it through the filters registered in :func:`register` (``label``, ``day``,
``moment``, ``number``); a value with no entry is shown with its underscores as spaces, never raw.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from decimal import Decimal
from enum import StrEnum
from typing import Any

from flask import Flask

from gateway.extracts.pipeline import ReleaseStatus
from gateway.extracts.synth import CONDITIONS
from gateway.outputs import service as output_service
from gateway.outputs.workflow import OutputState
from gateway.permissions import ROLE_LABELS
from projects import dac
from projects.catalogue import Role as VariableRole
from projects.catalogue import Sensitivity
from projects.extract_terms import AreaCodeTreatment, DateOfBirthTreatment, EventDateTreatment, ImdTreatment
from projects.workflow import AppState, ProjectState

STATES: dict[str, str] = {
    AppState.DRAFT: "Draft", AppState.SUBMITTED: "Submitted", AppState.UNDER_REVIEW: "Under review",
    AppState.CHANGES_REQUESTED: "Changes requested", AppState.APPROVED: "Approved", AppState.REJECTED: "Rejected",
    AppState.WITHDRAWN: "Withdrawn",
    ProjectState.ACTIVE: "Active", ProjectState.SUSPENDED: "Suspended", ProjectState.CLOSED: "Closed",
    ProjectState.EXPIRED: "Expired", ProjectState.REVOKED: "Revoked",
    OutputState.PENDING: "Pending", OutputState.PARTIALLY_REVIEWED: "Partially reviewed",
    OutputState.REVIEWED: "Reviewed", OutputState.RETURNED: "Returned",
    OutputState.RELEASED: "Released",
}

VOTES: dict[str, str] = {
    "approve": "Approve", "approve_with_conditions": "Approve with conditions",
    "changes_requested": "Request changes", "reject": "Reject", "accept": "Accept", "refuse": "Refuse",
    "return": "Return",
}

CATALOGUE: dict[str, str] = {
    Sensitivity.DIRECT_IDENTIFIER: "Direct identifier", Sensitivity.QUASI_IDENTIFIER: "Quasi-identifier",
    Sensitivity.CLINICAL: "Clinical", Sensitivity.DERIVED: "Derived",
    VariableRole.DATE_OF_BIRTH: "Date of birth", VariableRole.OPT_OUT: "National data opt-out",
    VariableRole.BOROUGH: "Borough", VariableRole.LSOA: "Lower layer super output area",
    VariableRole.AREA_CODE: "Postcode area code", VariableRole.IMD_DECILE: "Deprivation decile",
    VariableRole.CONDITION: "Condition",
    DateOfBirthTreatment.YEAR: "Year", DateOfBirthTreatment.MONTH: "Month", DateOfBirthTreatment.AGE_BAND: "Age band",
    EventDateTreatment.SHIFT: "Shifted per patient", AreaCodeTreatment.KEEP: "Kept",
    AreaCodeTreatment.POSTCODE_AREA: "Postcode area", ImdTreatment.QUINTILE: "Quintile",
    ReleaseStatus.RELEASED: "Released", ReleaseStatus.HELD: "Held for the data custodian",
}

# The automatic check's verdict on an output file or a cell (disclosure_control's statuses).
VERDICTS: dict[str, str] = {"pass": "Pass", "review": "Review", "fail": "Fail", "suppressed": "Suppressed"}

CONDITION_LABELS: dict[str, str] = {
    "asthma": "Asthma", "hypertension": "Hypertension", "diabetes": "Diabetes",
    "copd": "COPD (chronic obstructive pulmonary disease)", "cancer": "Cancer",
}

# Short codes that are not English words: a page showing one raw has skipped this mapping.
CODES: frozenset[str] = frozenset({"copd"})

LABELS: dict[str, str] = {
    **VOTES,
    **{str(role): words for role, words in ROLE_LABELS.items()},
    **{str(k): v for k, v in STATES.items()},  # after the votes: "Changes requested" reads right for both
    **{str(k): v for k, v in CATALOGUE.items()},
    **CONDITION_LABELS,
    **VERDICTS,
}

ENUMS: tuple[type[StrEnum], ...] = (AppState, ProjectState, OutputState, Sensitivity, VariableRole, ReleaseStatus,
                                   DateOfBirthTreatment, EventDateTreatment, ImdTreatment, AreaCodeTreatment)


def internal_values() -> set[str]:
    """Every value the code stores and a page might show: the enums, roles, votes, decisions and conditions."""
    values = {str(member) for enum in ENUMS for member in enum}
    values |= {str(role) for role in ROLE_LABELS}
    values |= set(dac.VOTES) | set(output_service.VOTES) | set(output_service.EXCEPTION_DECISIONS)
    values |= set(CONDITIONS)
    return values


def label(value: Any) -> str:
    """The words for an internal value; unknown values get spaces for underscores and a capital."""
    if value is None or value == "":
        return ""
    text = str(value)
    if text in LABELS:
        return LABELS[text]
    spaced = text.replace("_", " ")
    return spaced[:1].upper() + spaced[1:]


def labels(values: Iterable[Any]) -> str:
    return ", ".join(label(v) for v in values)


def day(value: dt.date | dt.datetime | str | None) -> str:
    """A date as "4 August 2031", the one way dates are shown."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            value = dt.date.fromisoformat(value[:10])
        except ValueError:
            return value
    return f"{value.day} {value.strftime('%B %Y')}"


def moment(value: dt.datetime | None, seconds: bool = False) -> str:
    """A time as "4 August 2031 14:05" (UTC, as stored)."""
    if value is None:
        return ""
    return f"{day(value)} {value.strftime('%H:%M:%S' if seconds else '%H:%M')}"


def number(value: int | float | Decimal | str | None, places: int = 2) -> str:
    """A number as people read it: a whole one without decimals ("12", "1,234", never "12.0"), a fraction with at
    most ``places`` decimals."""
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, str):
        try:
            value = Decimal(value)
        except ArithmeticError:
            return value
    rounded = round(float(value), places)
    if rounded == int(rounded):
        return f"{int(rounded):,}"
    return f"{rounded:,.{places}f}"


def action_label(action: str) -> str:
    """An audit action in words: "output_request.approved" reads "Output request approved"."""
    words = " ".join(part.replace("_", " ") for part in action.split("."))
    return words[:1].upper() + words[1:]


def dataset_title(name: str) -> str:
    """A catalogue dataset's title ("Blood pressure readings"), not its file name."""
    from gateway.web.context import catalogue

    try:
        return catalogue().dataset(name).title
    except (KeyError, ValueError):
        return label(name)


def register(app: Flask) -> None:
    app.add_template_filter(dataset_title, "dataset_title")
    app.add_template_filter(action_label, "action_label")
    app.add_template_filter(label, "label")
    app.add_template_filter(labels, "labels")
    app.add_template_filter(day, "day")
    app.add_template_filter(moment, "moment")
    app.add_template_filter(number, "number")
