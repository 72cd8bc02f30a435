"""The cohort criteria rules, without a database: what an applicant may choose and what each refusal says."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from gateway.config import Settings
from gateway.extracts.spec import SpecError, make_spec
from projects import cohort
from projects.catalogue import Catalogue, load_catalogue, parse_catalogue

CATALOGUE = load_catalogue(Settings().catalogue_path)


@dataclass
class Stored:
    """What an application or project holds before the change."""

    cohort_boroughs: list[str] = field(default_factory=list)
    cohort_age_min: int | None = None
    cohort_age_max: int | None = None
    cohort_conditions: list[str] = field(default_factory=list)


def clean(changes: dict[str, Any], current: Stored | None = None,
          catalogue: Catalogue = CATALOGUE) -> tuple[dict[str, Any], dict[str, list[str]]]:
    errors: dict[str, list[str]] = {}
    return cohort.clean(changes, current or Stored(), catalogue, errors), errors


def test_the_choices_are_the_catalogues_borough_and_condition_values() -> None:
    boroughs = cohort.borough_choices(CATALOGUE)
    assert len(boroughs) == 33 and {"Hackney", "City of London", "Westminster"} <= set(boroughs)
    assert cohort.condition_choices(CATALOGUE) == ["asthma", "hypertension", "diabetes", "copd", "cancer"]


def test_valid_criteria_are_kept_in_catalogue_order_without_repeats() -> None:
    values, errors = clean({"cohort_boroughs": ["Newham", "Hackney", "Newham"], "cohort_age_min": "18",
                            "cohort_age_max": 64, "cohort_conditions": ["copd", "asthma"]})
    assert errors == {}
    assert values == {"cohort_boroughs": ["Hackney", "Newham"], "cohort_age_min": 18, "cohort_age_max": 64,
                      "cohort_conditions": ["asthma", "copd"]}


@pytest.mark.parametrize(("no_list", "no_age"), [(None, None), ("", ""), ([], "  ")])
def test_empty_means_everyone(no_list: Any, no_age: Any) -> None:
    values, errors = clean({"cohort_boroughs": no_list, "cohort_age_min": no_age, "cohort_age_max": no_age,
                            "cohort_conditions": no_list})
    assert errors == {}
    assert values == {"cohort_boroughs": [], "cohort_age_min": None, "cohort_age_max": None, "cohort_conditions": []}
    assert cohort.is_everyone(Stored(**values))


def test_an_unknown_borough_is_named_in_the_message() -> None:
    values, errors = clean({"cohort_boroughs": ["Hackney", "Atlantis"]})
    assert errors == {"cohort_boroughs": ["Choose boroughs from the list: 'Atlantis' is not a borough in the data "
                                          "catalogue."]}
    assert values["cohort_boroughs"] == []


def test_an_unknown_condition_is_named_and_a_huge_value_is_cut_short() -> None:
    _, errors = clean({"cohort_conditions": ["gout", "x" * 5000]})
    (message,) = errors["cohort_conditions"]
    assert message.startswith("Choose conditions from the list: 'gout', 'xxxx")
    assert message.endswith("are not a condition in the data catalogue.") and len(message) < 200


def test_a_list_of_something_other_than_text_is_refused() -> None:
    _, errors = clean({"cohort_boroughs": [1, 2], "cohort_conditions": {"asthma": True}})
    assert errors == {"cohort_boroughs": ["Choose boroughs from the list."],
                      "cohort_conditions": ["Choose conditions from the list."]}


@pytest.mark.parametrize(("typed", "message"), [
    ("-1", "The minimum age must be 0 or more."),
    (-5, "The minimum age must be 0 or more."),
    ("131", "The minimum age must be 130 or less."),
    ("9" * 5000, "The minimum age must be 130 or less."),
    ("-" + "9" * 5000, "The minimum age must be 0 or more."),
    ("eighteen", "Enter the minimum age as a whole number of years, like 18."),
    ("18.5", "Enter the minimum age as a whole number of years, like 18."),
    (18.0, "Enter the minimum age as a whole number of years, like 18."),
    (True, "Enter the minimum age as a whole number of years, like 18."),
])
def test_bad_ages_get_a_clear_message(typed: Any, message: str) -> None:
    _, errors = clean({"cohort_age_min": typed})
    assert errors == {"cohort_age_min": [message]}


def test_zero_and_130_are_allowed() -> None:
    values, errors = clean({"cohort_age_min": "0", "cohort_age_max": " 130 "})
    assert errors == {} and (values["cohort_age_min"], values["cohort_age_max"]) == (0, 130)


def test_the_minimum_above_the_maximum_is_refused_on_the_field_that_changed() -> None:
    _, both = clean({"cohort_age_min": "65", "cohort_age_max": "18"})
    assert both == {"cohort_age_max": ["The maximum age must be the same as or more than the minimum age."]}
    # only one end sent (as an API patch may): checked against the stored other end
    _, low_only = clean({"cohort_age_min": 70}, Stored(cohort_age_max=40))
    assert low_only == {"cohort_age_min": ["The minimum age must be the same as or less than the maximum age."]}
    _, high_only = clean({"cohort_age_max": 10}, Stored(cohort_age_min=40))
    assert set(high_only) == {"cohort_age_max"}
    values, fine = clean({"cohort_age_max": 40}, Stored(cohort_age_min=40))
    assert fine == {} and values == {"cohort_age_max": 40}


def test_a_catalogue_without_listed_boroughs_offers_none_and_refuses_any() -> None:
    data = CATALOGUE.model_dump(mode="json", exclude_defaults=True)
    for variable in data["datasets"][0]["variables"]:
        if variable["name"] == "borough":
            variable.pop("values")
    bare = parse_catalogue(data)
    assert cohort.borough_choices(bare) == []
    _, errors = clean({"cohort_boroughs": ["Hackney"]}, catalogue=bare)
    assert errors == {"cohort_boroughs": ["The data catalogue lists no boroughs to choose from: leave this empty."]}


def test_saved_choices_the_catalogue_has_dropped_are_reported() -> None:
    stored = Stored(cohort_boroughs=["Hackney", "Old Borough"], cohort_conditions=["asthma", "scurvy"])
    assert cohort.stale(stored, CATALOGUE) == {
        "cohort_boroughs": ["Old Borough is no longer a borough in the data catalogue: untick it."],
        "cohort_conditions": ["scurvy is no longer a condition in the data catalogue: untick it."]}
    assert cohort.stale(Stored(cohort_boroughs=["Hackney"]), CATALOGUE) == {}


def test_the_extract_cohort_matches_the_criteria_and_passes_the_catalogue_check() -> None:
    stored = Stored(cohort_boroughs=["Hackney", "Newham"], cohort_age_min=5, cohort_age_max=16,
                    cohort_conditions=["asthma"])
    spec_cohort = cohort.to_spec(stored)
    assert (spec_cohort.boroughs, spec_cohort.age_min, spec_cohort.age_max, spec_cohort.conditions) == (
        ["Hackney", "Newham"], 5, 16, ["asthma"])
    assert cohort.to_spec(Stored()).boroughs is None  # no borough ticked: every borough, not none
    spec = make_spec({"project_id": "p", "datasets": {"patients": ["sex"]}, "cohort": spec_cohort.model_dump(),
                      "date_range": {"start": "2019-01-01", "end": "2024-12-31"}}, b"k" * 32)
    spec.check_against(CATALOGUE)
    with pytest.raises(SpecError, match="unknown boroughs"):
        make_spec({"project_id": "p", "datasets": {"patients": ["sex"]}, "cohort": {"boroughs": ["Atlantis"]},
                   "date_range": {"start": "2019-01-01", "end": "2024-12-31"}}, b"k" * 32).check_against(CATALOGUE)


def test_copied_criteria_do_not_share_lists() -> None:
    source = Stored(cohort_boroughs=["Hackney"], cohort_conditions=["asthma"])
    values = cohort.copied(source)
    values["cohort_boroughs"].append("Newham")
    assert source.cohort_boroughs == ["Hackney"]
