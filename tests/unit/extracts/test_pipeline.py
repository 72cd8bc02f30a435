from __future__ import annotations

import json
import os
import re
import tempfile
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.extracts import storage
from gateway.extracts.pipeline import PSEUDONYM_COLUMN, RISK_REPORT, ReleaseStatus, build_extract
from gateway.extracts.pseudonym import date_shift, pseudonym, pseudonymise
from gateway.extracts.reference import BOROUGH_NAMES
from gateway.extracts.spec import make_spec
from projects.catalogue import Sensitivity, load_catalogue

KEY_A = b"A" * 32
KEY_B = b"B" * 32
END = date(2024, 12, 31)
TEN_DIGITS = re.compile(r"\d{10}")
ALL_VARIABLES = {
    "patients": [
        "date_of_birth",
        "sex",
        "ethnicity",
        "area_code",
        "lsoa_code",
        "borough",
        "imd_decile",
        "gp_practice",
        "long_term_conditions",
    ],
    "conditions": ["condition", "snomed_code", "diagnosis_date"],
    "bp_readings": ["reading_date", "systolic_mmhg", "diastolic_mmhg"],
    "prescriptions": ["issue_date", "drug", "drug_class", "bnf_chapter", "quantity"],
    "immunisations": ["vaccine", "dose", "vaccination_date"],
    "cancer_referrals": ["referral_date", "suspected_site", "diagnosis_date", "treatment_date", "treatment_type"],
}
WIDE_OPEN = {"start": "2000-01-01", "end": "2024-12-31"}


def _spec(key: bytes = KEY_A, **overrides):
    data = {"project_id": "proj", "datasets": ALL_VARIABLES, "date_range": WIDE_OPEN}
    data.update(overrides)
    return make_spec(data, key)


def _read(root: Path, project: str, version: int) -> dict[str, pd.DataFrame]:
    vdir = storage.version_dir(root, project, version)
    return {p.stem: pq.read_table(p).to_pandas() for p in vdir.glob("*.parquet")}


def _age(dob: date, on: date) -> int:
    return on.year - dob.year - ((on.month, on.day) < (dob.month, dob.day))


def _expected_cohort(patients: pd.DataFrame, conditions: pd.DataFrame, spec) -> tuple[set[str], int]:
    """Brute force: NHS numbers released and opt-outs removed."""
    cohort = spec.cohort
    end = spec.date_range.end
    matching = set()
    with_condition = set(
        conditions.loc[
            (conditions["condition"].isin(cohort.conditions) | conditions["snomed_code"].isin(cohort.conditions))
            & (conditions["diagnosis_date"] <= end),
            "nhs_number",
        ]
    )
    for row in patients.itertuples():
        age = _age(row.date_of_birth, end)
        if cohort.boroughs is not None and row.borough not in cohort.boroughs:
            continue
        if cohort.age_min is not None and age < cohort.age_min:
            continue
        if cohort.age_max is not None and age > cohort.age_max:
            continue
        if cohort.conditions and row.nhs_number not in with_condition:
            continue
        matching.add(row.nhs_number)
    opted = set(patients.loc[patients["national_data_opt_out"], "nhs_number"]) & matching
    if spec.apply_opt_out:
        return matching - opted, len(opted)
    return matching, 0


# ---------------------------------------------------------------------------------------------
# property tests over many specs

spec_strategy = st.fixed_dictionaries(
    {
        "datasets": st.dictionaries(
            st.sampled_from(sorted(ALL_VARIABLES)), st.just(None), min_size=1, max_size=6
        ).flatmap(
            lambda chosen: st.fixed_dictionaries(
                {name: st.lists(st.sampled_from(ALL_VARIABLES[name]), unique=True) for name in chosen}
            )
        ),
        "cohort": st.fixed_dictionaries(
            {
                "boroughs": st.one_of(
                    st.none(), st.lists(st.sampled_from(BOROUGH_NAMES), min_size=1, max_size=8, unique=True)
                ),
                "age_min": st.one_of(st.none(), st.integers(0, 70)),
                "conditions": st.lists(
                    st.sampled_from(["asthma", "hypertension", "copd", "44054006"]), max_size=2, unique=True
                ),
            }
        ),
        "apply_opt_out": st.booleans(),
        "generalisation": st.fixed_dictionaries(
            {
                "date_of_birth": st.sampled_from(["year", "month", "age_band"]),
                "event_dates": st.sampled_from(["month", "shift"]),
                "lsoa": st.sampled_from(["keep", "borough"]),
                "area_code": st.sampled_from(["keep", "postcode_area"]),
                "imd_decile": st.sampled_from(["keep", "quintile"]),
            }
        ),
        "k": st.integers(2, 10),
    }
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec_strategy)
def test_extracts_never_contain_direct_identifiers_or_opted_out_patients(small_source, small_tables, choices):
    spec = _spec(**choices)
    patients = small_tables["patients"]
    nhs_numbers = set(patients["nhs_number"])
    released, removed = _expected_cohort(patients, small_tables["conditions"], spec)
    opted_out = set(patients.loc[patients["national_data_opt_out"], "nhs_number"])
    forbidden_pseudonyms = set(pseudonymise(KEY_A, sorted(opted_out))) if spec.apply_opt_out else set()
    catalogue = load_catalogue(small_source / "catalogue.yaml")
    direct_names = {v.name for _, v in catalogue.variables() if v.sensitivity is Sensitivity.DIRECT_IDENTIFIER}

    with tempfile.TemporaryDirectory() as root:
        manifest = build_extract(spec, small_source, root, batch_size=300)
        vdir = storage.version_dir(root, "proj", manifest.version)
        assert manifest.cohort.opt_outs_removed == removed
        assert manifest.cohort.patients_released == len(released)
        expected_pseudonyms = set(pseudonymise(KEY_A, sorted(released)))
        for path in sorted(vdir.glob("*.parquet")):
            table = pq.read_table(path)
            assert not direct_names & set(table.column_names), path.name
            assert table.column_names[0] == PSEUDONYM_COLUMN
            assert set(table.column(PSEUDONYM_COLUMN).to_pylist()) <= expected_pseudonyms
            assert not forbidden_pseudonyms & set(table.column(PSEUDONYM_COLUMN).to_pylist())
            for name in table.column_names:  # every value of every column, as text
                for value in table.column(name).cast(pa.string()).to_pylist():
                    if value is not None:
                        assert value not in nhs_numbers
                        assert not nhs_numbers & set(TEN_DIGITS.findall(value)), (path.name, name)
            metadata = str(pq.read_metadata(path).metadata)
            assert not nhs_numbers & set(TEN_DIGITS.findall(metadata))
        for name in (storage.MANIFEST, RISK_REPORT):
            text = (vdir / name).read_text(encoding="utf-8")
            assert not nhs_numbers & set(TEN_DIGITS.findall(text))
            assert KEY_A.hex() not in text and KEY_A.decode() not in text
        # data minimisation: exactly the approved datasets, nothing else
        assert {p.stem for p in vdir.glob("*.parquet")} == set(spec.datasets)


def test_opt_outs_appear_only_when_the_opt_out_does_not_apply(small_source, small_tables) -> None:
    patients = small_tables["patients"]
    opted_out = set(pseudonymise(KEY_A, patients.loc[patients["national_data_opt_out"], "nhs_number"]))
    assert opted_out, "the small population should include some opt-outs"
    with tempfile.TemporaryDirectory() as root:
        applied = build_extract(_spec(datasets={"patients": ["sex"]}), small_source, root)
        released = set(_read(Path(root), "proj", applied.version)["patients"][PSEUDONYM_COLUMN])
        assert applied.cohort.opt_outs_removed == len(opted_out)
        assert not released & opted_out
        waived = build_extract(_spec(datasets={"patients": ["sex"]}, apply_opt_out=False), small_source, root)
        released = set(_read(Path(root), "proj", waived.version)["patients"][PSEUDONYM_COLUMN])
        assert waived.cohort.opt_outs_removed == 0
        assert opted_out <= released


def test_a_patient_whose_opt_out_is_not_known_is_removed_as_an_opt_out(small_source, small_tables, tmp_path) -> None:
    """Fail safe: an empty opt-out flag (a source that does not know) is treated as an opt-out, never as consent."""
    import shutil

    source = tmp_path / "source"
    shutil.copytree(small_source, source)
    patients = pq.read_table(source / "patients.parquet")
    flags = patients.column("national_data_opt_out").to_pylist()
    unknown = [i for i, flag in enumerate(flags) if flag is False][:20]
    for i in unknown:
        flags[i] = None
    column = patients.schema.get_field_index("national_data_opt_out")
    pq.write_table(patients.set_column(column, patients.schema.field(column), pa.array(flags, pa.bool_())),
                   source / "patients.parquet")
    numbers = patients.column("nhs_number").to_pylist()
    opted_out = {numbers[i] for i, flag in enumerate(flags) if flag is True}
    not_known = set(pseudonymise(KEY_A, pd.Series([numbers[i] for i in unknown])))
    with tempfile.TemporaryDirectory() as root:
        built = build_extract(_spec(datasets={"patients": ["sex"]}), source, root)
        released = set(_read(Path(root), "proj", built.version)["patients"][PSEUDONYM_COLUMN])
        assert not released & not_known
        assert built.cohort.opt_outs_removed == len(opted_out) + len(unknown)


def test_a_patient_listed_twice_is_removed_if_any_row_says_opted_out(small_source, tmp_path) -> None:
    """A population table listing a patient twice, once opted out and once not (or not known), must not release them:
    the opt-out belongs to the patient, not to one of their rows."""
    import shutil

    source = tmp_path / "source"
    shutil.copytree(small_source, source)
    patients = pq.read_table(source / "patients.parquet")
    flags = patients.column("national_data_opt_out").to_pylist()
    numbers = patients.column("nhs_number").to_pylist()
    consenting = [i for i, flag in enumerate(flags) if flag is False][:10]
    duplicate = patients.take(pa.array(consenting))
    column = duplicate.schema.get_field_index("national_data_opt_out")
    opted = [True] * 5 + [None] * 5  # a second row saying opted out, or not known
    duplicate = duplicate.set_column(column, duplicate.schema.field(column), pa.array(opted, pa.bool_()))
    pq.write_table(pa.concat_tables([patients, duplicate]), source / "patients.parquet")
    withdrawn = set(pseudonymise(KEY_A, pd.Series([numbers[i] for i in consenting])))
    with tempfile.TemporaryDirectory() as root:
        built = build_extract(_spec(datasets={"patients": ["sex"]}), source, root)
        released = set(_read(Path(root), "proj", built.version)["patients"][PSEUDONYM_COLUMN])
        assert not released & withdrawn
        assert built.cohort.patients_released == len(released)


@pytest.mark.parametrize("values, arrow_type", [
    (["Y", "N"], pa.string()), ([1, 0], pa.int64()), (["true", "false"], pa.large_string())])
def test_an_opt_out_column_that_is_not_true_or_false_fails_the_build_with_a_plain_reason(
        small_source, tmp_path, values, arrow_type) -> None:
    """A source whose opt-out flags arrive as text or numbers is not guessed at: the build stops, names the column
    and the type it found, and writes no extract."""
    import shutil

    from gateway.extracts.pipeline import SourceError

    source = tmp_path / "source"
    shutil.copytree(small_source, source)
    patients = pq.read_table(source / "patients.parquet")
    column = patients.schema.get_field_index("national_data_opt_out")
    flags = [values[0] if flag else values[1] for flag in patients.column(column).to_pylist()]
    field = pa.field("national_data_opt_out", arrow_type)
    pq.write_table(patients.set_column(column, field, pa.array(flags, arrow_type)), source / "patients.parquet")
    root = tmp_path / "extracts"
    with pytest.raises(SourceError, match=r"national_data_opt_out.*true or false"):
        build_extract(_spec(datasets={"patients": ["sex"]}), source, root)
    assert not list(root.rglob("*.parquet"))


def test_the_manifest_records_the_moment_the_caller_gives(small_source) -> None:
    """The gateway passes its own clock (which the demo runs behind to build a history); alone, the real time."""
    moment = datetime(2026, 6, 1, 9, 30, tzinfo=UTC)
    with tempfile.TemporaryDirectory() as root:
        given_moment = build_extract(_spec(datasets={"patients": ["sex"]}), small_source, root, created_at=moment)
        on_disk = storage.read_manifest(root, "proj", given_moment.version)
        before = datetime.now(UTC).replace(microsecond=0)
        unset = build_extract(_spec(datasets={"patients": ["sex"]}), small_source, root)
    assert given_moment.created_at == on_disk["created_at"] == "2026-06-01T09:30:00+00:00"
    assert datetime.fromisoformat(unset.created_at) >= before


def test_pseudonyms_are_stable_across_refreshes_and_unlinkable_across_projects(small_source) -> None:
    with tempfile.TemporaryDirectory() as root:
        v1 = build_extract(_spec(datasets={"patients": ["sex"]}), small_source, root)
        v2 = build_extract(_spec(datasets={"patients": ["sex"]}), small_source, root)
        other = build_extract(_spec(KEY_B, project_id="other", datasets={"patients": ["sex"]}), small_source, root)
        first = _read(Path(root), "proj", v1.version)["patients"]
        second = _read(Path(root), "proj", v2.version)["patients"]
        third = _read(Path(root), "other", other.version)["patients"]
    assert (v1.version, v2.version) == (1, 2)
    assert first[PSEUDONYM_COLUMN].tolist() == second[PSEUDONYM_COLUMN].tolist()
    assert set(first[PSEUDONYM_COLUMN]).isdisjoint(third[PSEUDONYM_COLUMN])
    assert v1.key_fingerprint == v2.key_fingerprint != other.key_fingerprint


# ---------------------------------------------------------------------------------------------
# generalisation


def _by_pseudonym(source: pd.DataFrame, key: bytes) -> pd.DataFrame:
    return source.assign(**{PSEUDONYM_COLUMN: pseudonymise(key, source["nhs_number"])})


def test_shifted_dates_keep_each_patients_order_and_intervals(small_source, small_tables, tmp_path) -> None:
    spec = _spec(
        datasets={"cancer_referrals": ["referral_date", "diagnosis_date", "treatment_date"]},
        generalisation={"event_dates": "shift"},
        apply_opt_out=False,
    )
    build_extract(spec, small_source, tmp_path)
    released = _read(tmp_path, "proj", 1)["cancer_referrals"]
    source = _by_pseudonym(small_tables["cancer_referrals"], KEY_A)
    assert len(released) == len(source) > 0
    for column in ("referral_date", "diagnosis_date", "treatment_date"):
        assert released[column].isna().tolist() == source[column].isna().tolist()
    shifts = {pseudonym(KEY_A, n): date_shift(KEY_A, n) for n in source["nhs_number"]}
    for got, want in zip(released.itertuples(), source.itertuples(), strict=True):
        assert got.pseudo_id == want.pseudo_id
        delta = (got.referral_date - want.referral_date).days
        assert delta == shifts[got.pseudo_id] != 0
        if pd.notna(want.diagnosis_date):
            assert (got.diagnosis_date - got.referral_date) == (want.diagnosis_date - want.referral_date)


def test_month_generalisation_and_date_range(small_source, small_tables, tmp_path) -> None:
    spec = _spec(
        datasets={"bp_readings": ["reading_date", "systolic_mmhg"]},
        date_range={"start": "2019-03-15", "end": "2021-06-30"},
        apply_opt_out=False,
    )
    build_extract(spec, small_source, tmp_path)
    released = _read(tmp_path, "proj", 1)["bp_readings"]
    source = small_tables["bp_readings"]
    in_range = source[(source["reading_date"] >= date(2019, 3, 15)) & (source["reading_date"] <= date(2021, 6, 30))]
    assert len(released) == len(in_range) > 0
    assert all(d.day == 1 for d in released["reading_date"])
    expected = Counter(
        zip(
            pseudonymise(KEY_A, in_range["nhs_number"]),
            (d.replace(day=1) for d in in_range["reading_date"]),
            in_range["systolic_mmhg"],
            strict=True,
        )
    )
    assert (
        Counter(zip(released[PSEUDONYM_COLUMN], released["reading_date"], released["systolic_mmhg"], strict=True))
        == expected
    )


def test_quasi_identifier_generalisations(small_source, small_tables, tmp_path) -> None:
    spec = _spec(
        datasets={"patients": ["date_of_birth", "lsoa_code", "area_code", "imd_decile"]},
        generalisation={
            "date_of_birth": "age_band",
            "age_band_years": 10,
            "lsoa": "borough",
            "area_code": "postcode_area",
            "imd_decile": "quintile",
        },
        apply_opt_out=False,
    )
    manifest = build_extract(spec, small_source, tmp_path)
    released = _read(tmp_path, "proj", 1)["patients"].set_index(PSEUDONYM_COLUMN)
    assert list(released.columns) == ["age_band", "postcode_area", "borough", "imd_quintile"]
    source = _by_pseudonym(small_tables["patients"], KEY_A).set_index(PSEUDONYM_COLUMN).loc[released.index]
    for got, want in zip(released.itertuples(), source.itertuples(), strict=True):
        age = _age(want.date_of_birth, END)
        low = min(age // 10 * 10, 90)
        assert got.age_band == ("90+" if low >= 90 else f"{low}-{low + 9}")
        assert got.borough == want.borough
        assert want.area_code.startswith(got.postcode_area) and got.postcode_area.isalpha()
        assert got.imd_quintile == (want.imd_decile + 1) // 2
    assert [c.treatment for c in manifest.table("patients").columns][1].startswith("10-year age band")


def test_year_of_birth_and_kept_lsoa(small_source, small_tables, tmp_path) -> None:
    spec = _spec(
        datasets={"patients": ["date_of_birth", "lsoa_code"]}, generalisation={"lsoa": "keep"}, apply_opt_out=False
    )
    build_extract(spec, small_source, tmp_path)
    released = _read(tmp_path, "proj", 1)["patients"]
    source = small_tables["patients"]
    assert list(released.columns) == [PSEUDONYM_COLUMN, "year_of_birth", "lsoa_code"]
    assert released["year_of_birth"].tolist() == [d.year for d in source["date_of_birth"]]
    assert released["lsoa_code"].tolist() == source["lsoa_code"].tolist()


# ---------------------------------------------------------------------------------------------
# risk, versions and publication


def test_risk_report_matches_a_brute_force_count_of_the_released_table(small_source, tmp_path) -> None:
    spec = _spec(
        datasets={"patients": ["date_of_birth", "sex", "lsoa_code", "long_term_conditions"]},
        generalisation={"date_of_birth": "age_band"},
        k=5,
    )
    manifest = build_extract(spec, small_source, tmp_path)
    released = _read(tmp_path, "proj", 1)["patients"]
    qis = ["age_band", "sex", "borough"]  # long_term_conditions is derived, not a quasi-identifier
    assert manifest.risk["quasi_identifiers"] == qis
    sizes = Counter(map(tuple, released[qis].to_numpy().tolist()))
    below = sum(n for n in sizes.values() if n < 5)
    assert manifest.risk["records"] == len(released)
    assert manifest.risk["equivalence_classes"] == len(sizes)
    assert manifest.risk["records_below_k"] == below
    assert manifest.risk["flagged"] == (below > 0)
    full = json.loads((storage.version_dir(tmp_path, "proj", 1) / RISK_REPORT).read_text())
    assert full["smallest_class"] == min(sizes.values())


def test_flagged_extracts_are_held_and_released_ones_go_live(small_source, tmp_path) -> None:
    safe = _spec(datasets={"patients": ["sex"], "bp_readings": ["systolic_mmhg"]})
    risky = _spec(
        datasets={"patients": ["date_of_birth", "ethnicity", "gp_practice"]}, generalisation={"date_of_birth": "month"}
    )
    first = build_extract(safe, small_source, tmp_path)
    assert first.status is ReleaseStatus.RELEASED and not first.risk["flagged"]
    assert storage.current_version(tmp_path, "proj") == 1
    held = build_extract(risky, small_source, tmp_path)
    assert held.status is ReleaseStatus.HELD and held.risk["flagged"]
    assert held.risk["main_drivers"][0] in {"month_of_birth", "gp_practice"}
    assert storage.list_versions(tmp_path, "proj") == [1, 2]
    assert storage.current_version(tmp_path, "proj") == 1  # still the safe one
    assert storage.read_manifest(tmp_path, "proj")["version"] == 1
    storage.set_current(tmp_path, "proj", 2)  # the custodian releases it
    assert storage.current_version(tmp_path, "proj") == 2


def test_published_versions_are_read_only_and_match_their_manifest(small_source, tmp_path) -> None:
    manifest = build_extract(_spec(), small_source, tmp_path)
    vdir = storage.version_dir(tmp_path, "proj", manifest.version)
    assert storage.verify_version(tmp_path, "proj", manifest.version) == []
    assert oct(vdir.stat().st_mode & 0o777) == oct(0o555)
    for path in vdir.iterdir():
        assert oct(path.stat().st_mode & 0o777) == oct(0o444), path.name
    on_disk = json.loads((vdir / storage.MANIFEST).read_text())
    assert on_disk == json.loads(manifest.model_dump_json())
    for table in manifest.tables:
        assert pq.read_metadata(vdir / table.file).num_rows == table.rows
        assert pq.read_metadata(vdir / table.file).num_columns == table.column_count
        assert storage.sha256_file(vdir / table.file) == table.sha256 == manifest.files[table.file]
        schema = pq.read_schema(vdir / table.file)  # what a researcher's reader sees
        assert [(f.name, str(f.type)) for f in schema] == [(c.name, c.type) for c in table.columns]
        assert not any(pa.types.is_dictionary(f.type) for f in schema)
    assert manifest.rows == sum(t.rows for t in manifest.tables)
    assert "key" not in manifest.parameters


def test_a_tampered_version_fails_verification(small_source, tmp_path) -> None:
    build_extract(_spec(datasets={"patients": ["sex"]}), small_source, tmp_path)
    target = storage.version_dir(tmp_path, "proj", 1) / "patients.parquet"
    os.chmod(target.parent, 0o700)
    os.chmod(target, 0o600)
    with open(target, "r+b") as fh:
        fh.seek(10)
        fh.write(b"\x00\x01\x02")
    problems = storage.verify_version(tmp_path, "proj", 1)
    assert any("SHA-256" in p for p in problems)


def test_leftovers_of_killed_builds_are_cleaned_and_never_visible(small_source, tmp_path) -> None:
    build_extract(_spec(datasets={"patients": ["sex"]}), small_source, tmp_path)
    leftover = tmp_path / "proj" / f"{storage.STAGING_PREFIX}v2-99999-dead"
    leftover.mkdir()
    (leftover / "patients.parquet").write_bytes(b"half a file")
    storage.make_read_only(leftover)
    assert storage.list_versions(tmp_path, "proj") == [1]
    manifest = build_extract(_spec(datasets={"patients": ["sex"]}), small_source, tmp_path)
    assert manifest.version == 2 and manifest.leftovers_removed == [leftover.name]
    assert not leftover.exists()


def test_a_failed_build_leaves_nothing_behind(small_source, tmp_path) -> None:
    build_extract(_spec(datasets={"patients": ["sex"]}), small_source, tmp_path)

    def explode(done: int, total: int) -> None:
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        build_extract(_spec(), small_source, tmp_path, progress=explode)
    assert sorted(p.name for p in (tmp_path / "proj").iterdir()) == [".lock", "current", "v1"]
    assert storage.current_version(tmp_path, "proj") == 1


def test_a_second_concurrent_build_is_refused(small_source, tmp_path) -> None:
    with storage.project_lock(tmp_path, "proj"), pytest.raises(storage.BuildInProgress):
        build_extract(_spec(), small_source, tmp_path)


def test_progress_counts_every_source_row_once(small_source, small_tables, tmp_path) -> None:
    seen: list[tuple[int, int]] = []
    build_extract(
        _spec(datasets={"patients": ["sex"], "prescriptions": ["drug"]}),
        small_source,
        tmp_path,
        progress=lambda done, total: seen.append((done, total)),
        batch_size=1000,
    )
    total = len(small_tables["patients"]) + len(small_tables["prescriptions"])
    assert {t for _, t in seen} == {total}
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert seen[-1] == (total, total) and len(seen) > 3


@given(st.lists(st.integers(0, 6), max_size=60))
def test_factorize_reconstructs_any_sequence(values: list[int]) -> None:
    import numpy as np

    from gateway.extracts.pipeline import _factorize

    distinct, codes = _factorize(np.array(values, dtype=np.int64))
    assert distinct.tolist() == sorted(set(values))
    assert distinct[codes].tolist() == values
