from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from gateway.extracts import reference
from gateway.extracts.nhs import is_valid_nhs_number
from gateway.extracts.synth import DATA_CUT, HISTORY_START, generate

CUT = date.fromisoformat(DATA_CUT)


def _digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    """Large enough for prevalence gradients to show clearly, still well under a second."""
    out = tmp_path_factory.mktemp("population")
    generate(12_000, 2024, out)
    tables = {p.stem: pq.read_table(p).to_pandas() for p in out.glob("*.parquet")}
    patients = tables["patients"]
    dob = pd.to_datetime(patients["date_of_birth"])
    patients["age"] = (pd.Timestamp(CUT) - dob).dt.days / 365.25
    return tables


def test_same_seed_gives_byte_identical_output(tmp_path: Path) -> None:
    first = generate(700, 5, tmp_path / "a", chunk_patients=300)
    generate(700, 5, tmp_path / "b", chunk_patients=300)
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    assert first.rows["patients"] == 700 and first.event_rows > 700
    generate(700, 6, tmp_path / "c", chunk_patients=300)
    different = _digests(tmp_path / "c")
    assert all(
        different[name] != digest for name, digest in _digests(tmp_path / "a").items() if name.endswith(".parquet")
    )


def test_nhs_numbers_are_valid_unique_and_in_the_test_range(small_tables) -> None:
    numbers = small_tables["patients"]["nhs_number"]
    assert numbers.is_unique
    assert all(is_valid_nhs_number(n) and n.startswith("999") for n in numbers)


def test_events_only_refer_to_known_patients_and_sit_in_their_window(small_tables) -> None:
    patients = small_tables["patients"].set_index("nhs_number")
    index_dates = {
        "conditions": "diagnosis_date",
        "bp_readings": "reading_date",
        "prescriptions": "issue_date",
        "immunisations": "vaccination_date",
        "cancer_referrals": "referral_date",
    }
    for table, column in index_dates.items():
        events = small_tables[table]
        assert events["nhs_number"].isin(patients.index).all(), table
        dob = patients.loc[events["nhs_number"], "date_of_birth"].to_numpy()
        assert (events[column].to_numpy() >= dob).all(), table
        assert (events[column] <= CUT).all(), table
    for table in ("bp_readings", "prescriptions", "cancer_referrals"):
        assert (small_tables[table][index_dates[table]] >= date.fromisoformat(HISTORY_START)).all()


def test_cancer_pathway_dates_are_in_order(population) -> None:
    referrals = population["cancer_referrals"]
    diagnosed = referrals.dropna(subset=["diagnosis_date"])
    assert len(diagnosed) > 0
    assert (diagnosed["diagnosis_date"] >= diagnosed["referral_date"]).all()
    treated = diagnosed.dropna(subset=["treatment_date"])
    assert (treated["treatment_date"] >= treated["diagnosis_date"]).all()
    assert referrals.loc[referrals["treatment_date"].notna(), "treatment_type"].notna().all()
    # every diagnosed cancer is also a condition row with the same date
    cancers = population["conditions"].query("condition == 'cancer'")
    assert sorted(cancers["diagnosis_date"]) == sorted(diagnosed["diagnosis_date"])


def _prevalence(patients: pd.DataFrame, conditions: pd.DataFrame, condition: str) -> pd.Series:
    having = set(conditions.loc[conditions["condition"] == condition, "nhs_number"])
    return patients["nhs_number"].isin(having)


def test_hypertension_prevalence_rises_with_age(population) -> None:
    patients = population["patients"]
    has = _prevalence(patients, population["conditions"], "hypertension")
    bands = pd.cut(patients["age"], [18, 40, 60, 75, 120], right=False)
    by_band = has.groupby(bands, observed=True).mean()
    assert list(by_band) == sorted(by_band), by_band
    assert by_band.iloc[-1] > 4 * by_band.iloc[0]


def test_deprivation_and_ethnicity_shape_prevalence(population) -> None:
    patients = population["patients"]
    adults = patients["age"] >= 40
    diabetes = _prevalence(patients, population["conditions"], "diabetes")
    south_asian = patients["ethnicity"].isin(reference.SOUTH_ASIAN)
    white_british = patients["ethnicity"] == reference.WHITE_BRITISH
    assert diabetes[adults & south_asian].mean() > 1.5 * diabetes[adults & white_british].mean()
    copd = _prevalence(patients, population["conditions"], "copd")
    deprived, affluent = patients["imd_decile"] <= 3, patients["imd_decile"] >= 8
    assert copd[adults & deprived].mean() > copd[adults & affluent].mean()


def test_hypertensive_patients_have_more_and_higher_readings(population) -> None:
    patients = population["patients"]
    older = patients[(patients["age"] >= 50) & (patients["age"] < 70)]
    htn = _prevalence(older, population["conditions"], "hypertension")
    readings = population["bp_readings"]
    per_patient = readings.groupby("nhs_number").size().reindex(older["nhs_number"], fill_value=0)
    assert per_patient[htn.to_numpy()].mean() > 2 * per_patient[~htn.to_numpy()].mean()
    mean_sys = readings.groupby("nhs_number")["systolic_mmhg"].mean()
    assert (
        mean_sys.reindex(older.loc[htn, "nhs_number"]).mean()
        > mean_sys.reindex(older.loc[~htn, "nhs_number"]).mean() + 5
    )


def test_prescriptions_follow_diagnoses(population) -> None:
    conditions, rx = population["conditions"], population["prescriptions"]
    inhaled = set(rx.loc[rx["drug_class"].str.contains("inhaler"), "nhs_number"])
    respiratory = set(conditions.loc[conditions["condition"].isin(["asthma", "copd"]), "nhs_number"])
    assert inhaled and inhaled <= respiratory
    antihypertensive = set(rx.loc[rx["bnf_chapter"] == 2, "nhs_number"])
    assert antihypertensive <= set(conditions.loc[conditions["condition"] == "hypertension", "nhs_number"])


def test_population_shape(population) -> None:
    patients = population["patients"]
    assert set(patients["borough"]) == set(reference.BOROUGH_NAMES)
    assert 0.02 <= patients["national_data_opt_out"].mean() <= 0.08
    assert 0.45 <= (patients["sex"] == "F").mean() <= 0.56
    # Tower Hamlets has by far the largest Bangladeshi community
    bangladeshi = patients["ethnicity"] == "Asian: Bangladeshi"
    share = bangladeshi.groupby(patients["borough"]).mean()
    assert share.idxmax() == "Tower Hamlets"
    # an LSOA lies in one borough and has one deprivation decile
    assert (patients.groupby("lsoa_code")[["borough", "imd_decile"]].nunique() == 1).all().all()


def test_childhood_vaccination_coverage_falls_with_deprivation(population) -> None:
    patients = population["patients"]
    children = patients[(patients["age"] >= 6) & (patients["age"] < 18)]
    imm = population["immunisations"]
    mmr2 = set(imm.loc[(imm["vaccine"] == "MMR") & (imm["dose"] == 2), "nhs_number"])
    covered = children["nhs_number"].isin(mmr2)
    most, least = children["imd_decile"] <= 3, children["imd_decile"] >= 8
    assert 0.5 < covered.mean() < 0.95
    assert covered[most].mean() < covered[least].mean()
