"""Structured cohort criteria on an application and its project: boroughs, an age range and conditions.

They are stored as four columns on both tables (two JSON lists, two integers) so a draft can hold any part of
them, an amendment can copy and change them, and the extract built for the project selects only the patients
who match (data minimisation). Every criterion is optional; an empty one selects everyone.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from projects.catalogue import Catalogue, Role
from projects.extract_terms import Cohort

COHORT_FIELDS = ("cohort_boroughs", "cohort_age_min", "cohort_age_max", "cohort_conditions")
MAX_AGE = 130  # the same bound as the extract specification's Cohort
_SHOWN = 40  # characters of an unknown value repeated in a message: enough to recognise it, never a whole essay
_WHOLE = re.compile(r"^[+-]?\d+$")


class HasCohort(Protocol):
    cohort_boroughs: list[str]
    cohort_age_min: int | None
    cohort_age_max: int | None
    cohort_conditions: list[str]


def borough_choices(catalogue: Catalogue) -> list[str]:
    """The boroughs an applicant may choose: the listed values of the population's borough variable."""
    borough = catalogue.population.by_role(Role.BOROUGH)
    return list(borough.values or []) if borough is not None else []


def condition_choices(catalogue: Catalogue) -> list[str]:
    """The conditions an applicant may choose: the listed values of every condition variable, in catalogue order."""
    found: list[str] = []
    for _, variable in catalogue.variables():
        if variable.role is Role.CONDITION:
            found.extend(v for v in variable.values or [] if v not in found)
    return found


def _shown(value: object) -> str:
    text = str(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "…"


def _picked(field: str, value: Any, allowed: list[str], noun: str, errors: dict[str, list[str]]) -> list[str]:
    """A list of catalogue values, de-duplicated and in catalogue order (so re-ordering is not a change)."""
    if value is None or value == "":
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(v, str) for v in items):
        errors[field] = [f"Choose {noun}s from the list."]
        return []
    if not allowed:
        if items:
            errors[field] = [f"The data catalogue lists no {noun}s to choose from: leave this empty."]
        return []
    unknown = [v for v in dict.fromkeys(items) if v not in allowed]
    if unknown:
        names = ", ".join(f"'{_shown(v)}'" for v in unknown[:5]) + (" and others" if len(unknown) > 5 else "")
        errors[field] = [f"Choose {noun}s from the list: {names} {'is' if len(unknown) == 1 else 'are'} not "
                         f"a {noun} in the data catalogue."]
        return []
    chosen = set(items)
    return [v for v in allowed if v in chosen]


def _age(field: str, value: Any, label: str, errors: dict[str, list[str]]) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        errors[field] = [f"Enter the {label} age as a whole number of years, like 18."]
        return None
    if isinstance(value, str):
        text = value.strip()
        if not _WHOLE.match(text):
            errors[field] = [f"Enter the {label} age as a whole number of years, like 18."]
            return None
        # a very long number is out of range either way (and int() refuses thousands of digits)
        value = int(text) if len(text) <= 6 else (-1 if text.startswith("-") else MAX_AGE + 1)
    if value < 0:
        errors[field] = [f"The {label} age must be 0 or more."]
        return None
    if value > MAX_AGE:
        errors[field] = [f"The {label} age must be {MAX_AGE} or less."]
        return None
    return value


def clean(changes: dict[str, Any], current: HasCohort, catalogue: Catalogue,
          errors: dict[str, list[str]]) -> dict[str, Any]:
    """Check the cohort fields among ``changes`` (as typed in a form or sent to the API); the clean values.

    The age order is checked on the result of the change, so changing only one end of the range against the
    stored other end is caught too. Problems are added to ``errors`` by field, in the NHS style.
    """
    out: dict[str, Any] = {}
    if "cohort_boroughs" in changes:
        out["cohort_boroughs"] = _picked("cohort_boroughs", changes["cohort_boroughs"], borough_choices(catalogue),
                                         "borough", errors)
    if "cohort_conditions" in changes:
        out["cohort_conditions"] = _picked("cohort_conditions", changes["cohort_conditions"],
                                           condition_choices(catalogue), "condition", errors)
    for field, label in (("cohort_age_min", "minimum"), ("cohort_age_max", "maximum")):
        if field in changes:
            out[field] = _age(field, changes[field], label, errors)
    if "cohort_age_min" in errors or "cohort_age_max" in errors:
        return out
    low = out.get("cohort_age_min", current.cohort_age_min)
    high = out.get("cohort_age_max", current.cohort_age_max)
    if low is not None and high is not None and low > high:
        if "cohort_age_max" in changes:
            errors["cohort_age_max"] = ["The maximum age must be the same as or more than the minimum age."]
        else:
            errors["cohort_age_min"] = ["The minimum age must be the same as or less than the maximum age."]
    return out


def stale(record: HasCohort, catalogue: Catalogue) -> dict[str, list[str]]:
    """Saved choices the catalogue no longer offers (it may change between saving and submitting)."""
    problems: dict[str, list[str]] = {}
    for field, chosen, allowed, noun in (
            ("cohort_boroughs", record.cohort_boroughs, borough_choices(catalogue), "borough"),
            ("cohort_conditions", record.cohort_conditions, condition_choices(catalogue), "condition")):
        for value in chosen or []:
            if value not in allowed:
                problems.setdefault(field, []).append(f"{value} is no longer a {noun} in the data catalogue: "
                                                      "untick it.")
    return problems


def copied(source: HasCohort) -> dict[str, Any]:
    """The criteria as keyword arguments for another record (new lists, so the two never share one)."""
    return {"cohort_boroughs": list(source.cohort_boroughs or []), "cohort_age_min": source.cohort_age_min,
            "cohort_age_max": source.cohort_age_max, "cohort_conditions": list(source.cohort_conditions or [])}


def to_spec(record: HasCohort) -> Cohort:
    """The extract specification's cohort: an empty borough list means every borough."""
    return Cohort(boroughs=list(record.cohort_boroughs) or None, age_min=record.cohort_age_min,
                  age_max=record.cohort_age_max, conditions=list(record.cohort_conditions or []))


def is_everyone(record: HasCohort) -> bool:
    return not (record.cohort_boroughs or record.cohort_conditions) and \
        record.cohort_age_min is None and record.cohort_age_max is None
