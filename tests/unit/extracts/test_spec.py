from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from gateway.extracts.spec import SpecError, load_spec, make_spec
from gateway.extracts.synth import DEFAULT_CATALOGUE
from projects.catalogue import load_catalogue

KEY = bytes(range(32))


def _data(**overrides) -> dict:
    data = {
        "project_id": "p-001",
        "datasets": {"patients": ["date_of_birth", "sex"], "bp_readings": ["reading_date", "systolic_mmhg"]},
        "date_range": {"start": "2018-01-01", "end": "2024-12-31"},
    }
    data.update(overrides)
    return data


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue(DEFAULT_CATALOGUE)


def test_a_reasonable_spec_passes_and_defaults_are_cautious(catalogue) -> None:
    spec = make_spec(_data(), KEY)
    spec.check_against(catalogue)
    assert spec.apply_opt_out is True and spec.k == 5
    assert spec.generalisation.date_of_birth == "year"
    assert spec.generalisation.event_dates == "month"
    assert spec.generalisation.lsoa == "borough"


def test_the_key_never_leaves_the_spec() -> None:
    spec = make_spec(_data(), KEY)
    assert spec.secret == KEY
    assert "key" not in spec.parameters()
    for text in (repr(spec), str(spec), json.dumps(spec.parameters()), spec.model_dump_json()):
        assert KEY.hex() not in text and str(KEY) not in text


@pytest.mark.parametrize(
    ("datasets", "message"),
    [
        ({"patients": ["nhs_number"]}, "direct identifier"),
        ({"patients": ["national_data_opt_out"]}, "not releasable"),
        ({"patients": ["shoe_size"]}, "unknown variable"),
        ({"gp_appointments": ["date"]}, "unknown dataset"),
    ],
)
def test_requests_beyond_the_catalogue_are_refused(catalogue, datasets, message) -> None:
    with pytest.raises(SpecError, match=message):
        make_spec(_data(datasets=datasets), KEY).check_against(catalogue)


def test_unknown_boroughs_are_refused(catalogue) -> None:
    spec = make_spec(_data(cohort={"boroughs": ["Hackney", "Gotham"]}), KEY)
    with pytest.raises(SpecError, match="Gotham"):
        spec.check_against(catalogue)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"cohort": {"age_min": 60, "age_max": 18}}, "age_min"),
        ({"date_range": {"start": "2024-01-01", "end": "2018-01-01"}}, "start is after"),
        ({"project_id": "../escape"}, "project_id"),
        ({"k": 1}, "k"),
        ({"generalisation": {"date_of_birth": "exact"}}, "date_of_birth"),
        ({"generalisation": {"age_band_years": 7}}, "age_band_years"),
        ({"datasets": {"patients": ["sex", "sex"]}}, "twice"),
        ({"cohort": {"boroughs": []}}, "at least one borough"),
    ],
)
def test_malformed_specs_are_refused(overrides, message) -> None:
    with pytest.raises(SpecError, match=message):
        make_spec(_data(**overrides), KEY)


def test_short_keys_and_keys_in_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="at least 32 bytes"):
        make_spec(_data(), b"too short")
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({**_data(), "key": "00" * 32}), encoding="utf-8")
    with pytest.raises(SpecError, match="never stored"):
        load_spec(path, KEY)


def test_yaml_and_json_spec_files_load_the_same(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(
        "project_id: p-001\n"
        "datasets:\n  patients: [date_of_birth, sex]\n  bp_readings: [reading_date, systolic_mmhg]\n"
        "date_range: {start: 2018-01-01, end: 2024-12-31}\n",
        encoding="utf-8",
    )
    (tmp_path / "spec.json").write_text(json.dumps(_data()), encoding="utf-8")
    assert load_spec(tmp_path / "spec.yaml", KEY) == load_spec(tmp_path / "spec.json", KEY)
