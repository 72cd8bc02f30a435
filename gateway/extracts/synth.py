"""Deterministic synthetic London population: the embedded default source data.

The generator gives the gateway something realistic to extract from without touching real
patient data. Everything is drawn from seeded NumPy generators in fixed-size chunks of
patients, so the same seed always yields byte-identical Parquet files and memory stays
bounded however many patients are requested.

The shape matters more than the numbers: prevalence rises with age and deprivation, diabetes
is commoner in South Asian and Black patients, hypertensive patients are measured and
prescribed for more often, vaccination coverage falls with deprivation.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gateway.extracts import reference as ref
from gateway.extracts.nhs import check_digits

GENERATOR_VERSION = 1
DATA_CUT = "2024-12-31"
HISTORY_START = "2015-01-01"
CHUNK_PATIENTS = 50_000
DEFAULT_CATALOGUE = Path(__file__).with_name("default_catalogue.yaml")
PARQUET_COMPRESSION = "zstd"

_CUT = int(np.datetime64(DATA_CUT, "D").astype(np.int64))
_HIST = int(np.datetime64(HISTORY_START, "D").astype(np.int64))
_YEAR = 365.25

# Synthetic NHS numbers live in the 999 test range: "999" + six free digits + check digit.
_NHS_PREFIX = 999_000_000
_NHS_SPACE = 1_000_000
_NHS_STRIDE = 612_817  # coprime with 10**6, so i -> stride*i + offset visits every body once

CONDITIONS = ("asthma", "hypertension", "diabetes", "copd", "cancer")

# SNOMED CT concept ids used for the synthetic diagnoses (illustrative).
_SNOMED = {
    "asthma": "195967001",
    "hypertension": "38341003",
    "diabetes_type_2": "44054006",
    "diabetes_type_1": "46635009",
    "copd": "13645005",
}

CANCER_SITES = (
    "breast",
    "lower gastrointestinal",
    "lung",
    "skin",
    "urological",
    "upper gastrointestinal",
    "gynaecological",
    "haematological",
)
_SITE_P_FEMALE = np.array([0.36, 0.18, 0.07, 0.15, 0.06, 0.07, 0.09, 0.02])
_SITE_P_MALE = np.array([0.01, 0.26, 0.11, 0.17, 0.25, 0.11, 0.0, 0.03])
_SITE_LOGIT = np.array([0.0, 0.0, 0.9, -0.3, 0.2, 0.3, 0.0, 0.3])
# Site -> SNOMED code of the diagnosis (urological: prostate for men, bladder for women).
_SITE_SNOMED_FEMALE = (
    "254837009",
    "363406005",
    "363358000",
    "372244006",
    "399326009",
    "363349007",
    "363443007",
    "93143009",
)
_SITE_SNOMED_MALE = (
    "254837009",
    "363406005",
    "363358000",
    "372244006",
    "399068003",
    "363349007",
    "363443007",
    "93143009",
)
TREATMENTS = ("surgery", "chemotherapy", "radiotherapy", "hormone therapy", "active monitoring")
_TREATMENT_P = np.array(
    [
        [0.70, 0.10, 0.05, 0.15, 0.00],  # breast
        [0.60, 0.25, 0.15, 0.00, 0.00],  # lower GI
        [0.25, 0.40, 0.35, 0.00, 0.00],  # lung
        [0.90, 0.05, 0.05, 0.00, 0.00],  # skin
        [0.20, 0.00, 0.30, 0.35, 0.15],  # urological
        [0.45, 0.40, 0.15, 0.00, 0.00],  # upper GI
        [0.60, 0.25, 0.15, 0.00, 0.00],  # gynaecological
        [0.00, 0.85, 0.00, 0.00, 0.15],  # haematological
    ]
)


@dataclass(frozen=True)
class _Drug:
    name: str
    drug_class: str
    bnf_chapter: int
    quantity: int
    interval_days: int


DRUGS = (
    _Drug("Salbutamol 100micrograms/dose inhaler", "SABA inhaler", 3, 1, 60),
    _Drug("Beclometasone 100micrograms/dose inhaler", "ICS inhaler", 3, 1, 30),
    _Drug("Tiotropium 18microgram inhalation powder capsules", "LAMA inhaler", 3, 30, 30),
    _Drug("Amlodipine 5mg tablets", "Calcium channel blocker", 2, 28, 28),
    _Drug("Ramipril 5mg capsules", "ACE inhibitor", 2, 28, 28),
    _Drug("Lisinopril 10mg tablets", "ACE inhibitor", 2, 28, 28),
    _Drug("Indapamide 2.5mg tablets", "Thiazide-like diuretic", 2, 28, 28),
    _Drug("Metformin 500mg tablets", "Biguanide", 6, 56, 28),
    _Drug("Amoxicillin 500mg capsules", "Penicillin antibiotic", 5, 15, 0),
)
_SABA, _ICS, _LAMA, _AMLODIPINE, _RAMIPRIL, _LISINOPRIL, _INDAPAMIDE, _METFORMIN, _AMOXICILLIN = range(9)

# Routine childhood schedule (simplified): vaccine, dose, due age in days, base logit of uptake.
SCHEDULE = (
    ("DTaP/IPV/Hib/HepB", 1, 56, 3.3),
    ("DTaP/IPV/Hib/HepB", 2, 84, 3.1),
    ("DTaP/IPV/Hib/HepB", 3, 112, 2.9),
    ("Rotavirus", 1, 56, 3.0),
    ("Rotavirus", 2, 84, 2.7),
    ("MenB", 1, 56, 3.1),
    ("MenB", 2, 112, 2.8),
    ("MenB", 3, 365, 2.4),
    ("PCV", 1, 84, 3.0),
    ("PCV", 2, 365, 2.4),
    ("Hib/MenC", 1, 365, 2.4),
    ("MMR", 1, 365, 2.3),
    ("MMR", 2, 1217, 1.6),
    ("DTaP/IPV pre-school booster", 1, 1217, 1.6),
)
VACCINES = tuple(sorted({s[0] for s in SCHEDULE}))

TABLES = ("patients", "conditions", "bp_readings", "prescriptions", "immunisations", "cancer_referrals")
EVENT_TABLES = TABLES[1:]

SCHEMAS: dict[str, pa.Schema] = {
    "patients": pa.schema(
        [
            ("nhs_number", pa.string()),
            ("date_of_birth", pa.date32()),
            ("sex", pa.string()),
            ("ethnicity", pa.string()),
            ("area_code", pa.string()),
            ("lsoa_code", pa.string()),
            ("borough", pa.string()),
            ("imd_decile", pa.int8()),
            ("gp_practice", pa.string()),
            ("long_term_conditions", pa.int8()),
            ("national_data_opt_out", pa.bool_()),
        ]
    ),
    "conditions": pa.schema(
        [
            ("nhs_number", pa.string()),
            ("condition", pa.string()),
            ("snomed_code", pa.string()),
            ("diagnosis_date", pa.date32()),
        ]
    ),
    "bp_readings": pa.schema(
        [
            ("nhs_number", pa.string()),
            ("reading_date", pa.date32()),
            ("systolic_mmhg", pa.int16()),
            ("diastolic_mmhg", pa.int16()),
        ]
    ),
    "prescriptions": pa.schema(
        [
            ("nhs_number", pa.string()),
            ("issue_date", pa.date32()),
            ("drug", pa.string()),
            ("drug_class", pa.string()),
            ("bnf_chapter", pa.int8()),
            ("quantity", pa.int16()),
        ]
    ),
    "immunisations": pa.schema(
        [
            ("nhs_number", pa.string()),
            ("vaccine", pa.string()),
            ("dose", pa.int8()),
            ("vaccination_date", pa.date32()),
        ]
    ),
    "cancer_referrals": pa.schema(
        [
            ("nhs_number", pa.string()),
            ("referral_date", pa.date32()),
            ("suspected_site", pa.string()),
            ("diagnosis_date", pa.date32()),
            ("treatment_date", pa.date32()),
            ("treatment_type", pa.string()),
        ]
    ),
}


@dataclass(frozen=True)
class SynthResult:
    out_dir: Path
    patients: int
    seed: int
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def event_rows(self) -> int:
        return sum(n for t, n in self.rows.items() if t != "patients")


ProgressCallback = Callable[[int, int], None]


def max_patients() -> int:
    """How many distinct synthetic NHS numbers the 999 test range allows."""
    return len(_nhs_numbers(_NHS_SPACE, 0, limit=False))


def generate(
    patients: int,
    seed: int,
    out_dir: Path | str,
    *,
    chunk_patients: int = CHUNK_PATIENTS,
    progress: ProgressCallback | None = None,
) -> SynthResult:
    """Write the synthetic population (Parquet tables, catalogue.yaml, synthesis.json) to ``out_dir``.

    Same ``patients``, ``seed`` and ``chunk_patients`` give byte-identical files.
    """
    if patients < 1:
        raise ValueError("patients must be at least 1")
    if chunk_patients < 1:
        raise ValueError("chunk_patients must be at least 1")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    nhs = _nhs_numbers(patients, seed)
    geo = _geography(np.random.default_rng([seed, 0]))
    rows = dict.fromkeys(TABLES, 0)
    writers = {t: pq.ParquetWriter(out / f"{t}.parquet", SCHEMAS[t], compression=PARQUET_COMPRESSION) for t in TABLES}
    try:
        for chunk, start in enumerate(range(0, patients, chunk_patients)):
            stop = min(start + chunk_patients, patients)
            rng = np.random.default_rng([seed, 1, chunk])
            for name, table in _chunk_tables(rng, geo, nhs[start:stop]).items():
                writers[name].write_table(table)
                rows[name] += table.num_rows
            if progress is not None:
                progress(stop, patients)
    finally:
        for w in writers.values():
            w.close()
    shutil.copyfile(DEFAULT_CATALOGUE, out / "catalogue.yaml")
    meta = {
        "generator": "londonsde synthetic London population",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "patients": patients,
        "chunk_patients": chunk_patients,
        "data_cut": DATA_CUT,
        "history_start": HISTORY_START,
        "rows": rows,
    }
    (out / "synthesis.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return SynthResult(out_dir=out, patients=patients, seed=seed, rows=rows)


# --------------------------------------------------------------------------------------------
# identifiers and geography


def _nhs_numbers(n: int, seed: int, *, limit: bool = True) -> np.ndarray:
    """The first ``n`` valid NHS numbers of a seed-dependent walk through the 999 test range."""
    offset = int(np.random.default_rng([seed, 2]).integers(_NHS_SPACE))
    count = min(_NHS_SPACE, int(n * 1.12) + 64)
    valid = np.empty(0, dtype=np.int64)
    while True:
        i = np.arange(count, dtype=np.int64)
        body = _NHS_PREFIX + (_NHS_STRIDE * i + offset) % _NHS_SPACE
        digits = (body[:, None] // 10 ** np.arange(8, -1, -1, dtype=np.int64)) % 10
        check = check_digits(digits)
        valid = (body * 10 + check)[check >= 0]
        if len(valid) >= n or count == _NHS_SPACE:
            break
        count = min(_NHS_SPACE, count * 2)
    if limit and len(valid) < n:
        raise ValueError(f"the synthetic NHS number range holds {len(valid)} patients, asked for {n}")
    return valid[:n]


@dataclass(frozen=True)
class _Geography:
    lsoa_code: np.ndarray
    lsoa_borough: np.ndarray
    lsoa_imd: np.ndarray
    lsoa_district: np.ndarray  # index into districts
    districts: np.ndarray
    borough_lsoa_start: np.ndarray
    borough_lsoa_count: np.ndarray
    practice_code: np.ndarray
    borough_practice_start: np.ndarray
    practice_cum_weight: list[np.ndarray]  # per borough, cumulative list-size shares
    borough_weight: np.ndarray
    ethnicity_weight: np.ndarray  # borough x ethnicity


def _geography(rng: np.random.Generator) -> _Geography:
    """LSOAs with fixed deprivation and postcode district, and GP practices, per borough."""
    lsoa_borough, lsoa_imd, lsoa_district, districts = [], [], [], []
    starts, counts, practices, practice_starts, cum_weights = [], [], [], [], []
    next_practice: dict[str, int] = {}
    for b, borough in enumerate(ref.BOROUGHS):
        n_lsoa = max(5, round(borough.population_k * 1000 / 1700))
        starts.append(len(lsoa_borough))
        counts.append(n_lsoa)
        lsoa_borough.extend([b] * n_lsoa)
        imd = np.clip(np.rint(rng.normal(borough.mean_imd_decile, 1.8, n_lsoa)), 1, 10)
        lsoa_imd.extend(imd.astype(np.int8).tolist())
        first_district = len(districts)
        districts.extend(borough.districts)
        lsoa_district.extend((first_district + rng.integers(0, len(borough.districts), n_lsoa)).tolist())
        n_practices = max(1, round(borough.population_k / 9))
        practice_starts.append(len(practices))
        number = next_practice.get(borough.practice_prefix, 1)
        practices.extend(f"{borough.practice_prefix}{number + j:03d}" for j in range(n_practices))
        next_practice[borough.practice_prefix] = number + n_practices
        weights = rng.lognormal(0.0, 0.6, n_practices)
        cum_weights.append(np.cumsum(weights) / weights.sum())
    lsoa_code = np.array([f"E01{i + 1:06d}" for i in range(len(lsoa_borough))])
    pop = np.array([b.population_k for b in ref.BOROUGHS], dtype=float)
    base = np.array([share for _, share in ref.ETHNICITIES])
    eth = np.tile(base, (len(ref.BOROUGHS), 1))
    for b, borough in enumerate(ref.BOROUGHS):
        for category, factor in ref.ETHNICITY_TILTS.get(borough.name, {}).items():
            eth[b, ref.ETHNICITY_NAMES.index(category)] *= factor
    return _Geography(
        lsoa_code=lsoa_code,
        lsoa_borough=np.array(lsoa_borough),
        lsoa_imd=np.array(lsoa_imd, dtype=np.int8),
        lsoa_district=np.array(lsoa_district),
        districts=np.array(districts),
        borough_lsoa_start=np.array(starts),
        borough_lsoa_count=np.array(counts),
        practice_code=np.array(practices),
        borough_practice_start=np.array(practice_starts),
        practice_cum_weight=cum_weights,
        borough_weight=pop / pop.sum(),
        ethnicity_weight=eth,
    )


# --------------------------------------------------------------------------------------------
# one chunk of patients and their events


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _categorical(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """One draw per row of an (n, k) weight matrix."""
    cum = np.cumsum(weights, axis=1)
    u = rng.random(len(weights)) * cum[:, -1]
    return np.minimum((cum < u[:, None]).sum(axis=1), weights.shape[1] - 1)


def _uniform_days(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """A uniformly random day in [lo, hi] per row (hi >= lo)."""
    return lo + np.floor(rng.random(len(lo)) * (hi - lo + 1)).astype(np.int64)


def _onset_days(rng: np.random.Generator, dob: np.ndarray, age: np.ndarray, min_age: float, span: float):
    """A diagnosis date between max(min_age, age - span) and today's age."""
    lo = np.minimum(np.maximum(min_age, age - span), age)
    onset = lo + rng.random(len(age)) * (age - lo)
    return np.minimum(dob + np.floor(onset * _YEAR).astype(np.int64), _CUT)


@dataclass
class _Patients:
    nhs: np.ndarray
    dob: np.ndarray  # days since 1970-01-01
    age: np.ndarray  # years at the data cut (fractional)
    female: np.ndarray
    ethnicity: np.ndarray
    borough: np.ndarray
    lsoa: np.ndarray
    imd: np.ndarray
    dep: np.ndarray  # 0 least .. 1 most deprived
    practice: np.ndarray
    opt_out: np.ndarray
    south_asian: np.ndarray
    black: np.ndarray

    def __len__(self) -> int:
        return len(self.nhs)


def _patients(rng: np.random.Generator, geo: _Geography, nhs: np.ndarray) -> _Patients:
    n = len(nhs)
    borough = rng.choice(len(ref.BOROUGHS), size=n, p=geo.borough_weight)
    lsoa = geo.borough_lsoa_start[borough] + np.floor(rng.random(n) * geo.borough_lsoa_count[borough]).astype(np.int64)
    imd = geo.lsoa_imd[lsoa]
    dep = (10 - imd.astype(float)) / 9
    band_p = np.array(ref.AGE_BAND_SHARES) / sum(ref.AGE_BAND_SHARES)
    band = rng.choice(len(band_p), size=n, p=band_p)
    width = np.where(band == len(band_p) - 1, 12.0, 5.0)
    age = band * 5.0 + rng.random(n) * width
    dob = _CUT - np.floor(age * _YEAR).astype(np.int64)
    age = (_CUT - dob) / _YEAR
    female = rng.random(n) < np.where(age >= 80, 0.58, 0.51)
    eth_w = geo.ethnicity_weight[borough].copy()
    white_british = ref.ETHNICITY_NAMES.index(ref.WHITE_BRITISH)
    eth_w[:, white_british] *= np.where(age >= 65, 1.8, np.where(age < 18, 0.8, 1.0))
    ethnicity = _categorical(rng, eth_w)
    practice = np.empty(n, dtype=np.int64)
    u = rng.random(n)
    for b in range(len(ref.BOROUGHS)):
        here = borough == b
        if here.any():
            practice[here] = geo.borough_practice_start[b] + np.searchsorted(
                geo.practice_cum_weight[b], u[here], side="right"
            ).clip(max=len(geo.practice_cum_weight[b]) - 1)
    # National data opt-out: a few percent, a little higher in less deprived areas and mid-life.
    opt_p = 0.030 + 0.025 * (1 - dep) + 0.01 * ((age > 30) & (age < 70))
    opt_out = rng.random(n) < opt_p
    names = np.array(ref.ETHNICITY_NAMES)[ethnicity]
    return _Patients(
        nhs=nhs,
        dob=dob,
        age=age,
        female=female,
        ethnicity=ethnicity,
        borough=borough,
        lsoa=lsoa,
        imd=imd,
        dep=dep,
        practice=practice,
        opt_out=opt_out,
        south_asian=np.isin(names, list(ref.SOUTH_ASIAN)),
        black=np.isin(names, list(ref.BLACK)),
    )


@dataclass
class _Diagnoses:
    """Per patient: diagnosis day of each chronic condition, -1 when absent."""

    asthma: np.ndarray
    hypertension: np.ndarray
    diabetes: np.ndarray
    diabetes_type_1: np.ndarray
    copd: np.ndarray


def _diagnoses(rng: np.random.Generator, p: _Patients) -> _Diagnoses:
    n, age, dep = len(p), p.age, p.dep
    none = np.full(n, -1, dtype=np.int64)

    def draw(logit: np.ndarray, eligible: np.ndarray, min_age: float, span: float) -> np.ndarray:
        has = eligible & (rng.random(n) < _sigmoid(logit))
        onset = _onset_days(rng, p.dob, age, min_age, span)
        return np.where(has, onset, none)

    asthma = draw(-3.0 + 0.7 * dep + 0.35 * (age < 18), age >= 1, 1, 40)
    hypertension = draw(-7.2 + 0.085 * age + 0.5 * dep + 0.5 * p.black, age >= 18, 18, 25)
    diabetes = draw(-7.6 + 0.065 * age + 0.8 * dep + 1.0 * p.south_asian + 0.5 * p.black, age >= 18, 25, 20)
    type_1 = draw(np.full(n, -5.5), age >= 1, 1, 30)
    diabetes = np.where(type_1 >= 0, type_1, diabetes)
    copd = draw(-9.6 + 0.085 * age + 1.1 * dep - 0.5 * p.south_asian, age >= 35, 40, 15)
    return _Diagnoses(asthma, hypertension, diabetes, type_1 >= 0, copd)


def _adult_window(p: _Patients) -> tuple[np.ndarray, np.ndarray]:
    """Start day and length in years of each patient's adult history inside the event window."""
    start = np.maximum(_HIST, p.dob + int(18 * _YEAR))
    years = np.clip((_CUT - start) / _YEAR, 0, None)
    return start, years


def _bp_readings(rng: np.random.Generator, p: _Patients, dx: _Diagnoses) -> dict[str, np.ndarray]:
    start, years = _adult_window(p)
    htn, diab, copd = dx.hypertension >= 0, dx.diabetes >= 0, dx.copd >= 0
    rate = 0.15 + 0.012 * np.clip(p.age - 18, 0, None) + 0.9 * htn + 0.6 * diab + 0.2 * copd
    counts = rng.poisson(rate * years)
    who = np.repeat(np.arange(len(p)), counts)
    day = _uniform_days(rng, start[who], np.full(len(who), _CUT))
    age_then = (day - p.dob[who]) / _YEAR
    personal = rng.normal(0, 8, len(p))[who]
    systolic = 100 + 0.5 * age_then + 14 * htn[who] + personal + rng.normal(0, 9, len(who))
    systolic = np.clip(np.rint(systolic), 80, 230)
    diastolic = np.clip(np.rint(25 + 0.38 * systolic + rng.normal(0, 6, len(who))), 40, systolic - 15)
    return {"who": who, "day": day, "systolic": systolic, "diastolic": diastolic}


def _prescriptions(rng: np.random.Generator, p: _Patients, dx: _Diagnoses) -> dict[str, np.ndarray]:
    n = len(p)
    who_parts, drug_parts, start_parts, keep_parts = [], [], [], []

    def regimen(mask: np.ndarray, drug: np.ndarray | int, diag: np.ndarray, keep: float) -> None:
        idx = np.flatnonzero(mask)
        drugs = np.broadcast_to(np.asarray(drug), (n,))[idx]
        who_parts.append(idx)
        drug_parts.append(drugs)
        start_parts.append(np.maximum(diag[idx], _HIST))
        keep_parts.append(np.full(len(idx), keep))

    asthma, copd = dx.asthma >= 0, dx.copd >= 0
    htn, diab = dx.hypertension >= 0, dx.diabetes >= 0
    regimen(asthma, _SABA, dx.asthma, 0.6)
    regimen(asthma & (rng.random(n) < 0.6), _ICS, dx.asthma, 0.8)
    regimen(copd, _SABA, dx.copd, 0.7)
    regimen(copd, _LAMA, dx.copd, 0.85)
    # NICE: calcium channel blocker first for Black patients and those 55+, otherwise an ACE inhibitor.
    ace = np.where(rng.random(n) < 0.6, _RAMIPRIL, _LISINOPRIL)
    first = np.where(p.black | (p.age >= 55), _AMLODIPINE, ace)
    regimen(htn, first, dx.hypertension, 0.85)
    second = np.where(first == _AMLODIPINE, ace, _AMLODIPINE)
    second = np.where(rng.random(n) < 0.4, _INDAPAMIDE, second)
    regimen(htn & (rng.random(n) < 0.35), second, dx.hypertension + 365, 0.85)
    regimen(diab & ~dx.diabetes_type_1, _METFORMIN, dx.diabetes, 0.8)

    who = np.concatenate(who_parts)
    drug = np.concatenate(drug_parts).astype(np.int64)
    interval = np.array([d.interval_days for d in DRUGS])[drug]
    start = np.concatenate(start_parts) + np.floor(rng.random(len(who)) * interval).astype(np.int64)
    keep = np.concatenate(keep_parts)
    issues = np.clip((_CUT - start) // interval + 1, 0, None)
    row_regimen = np.repeat(np.arange(len(who)), issues)
    k = np.arange(len(row_regimen)) - np.repeat(np.cumsum(issues) - issues, issues)
    day = start[row_regimen] + k * interval[row_regimen] + rng.integers(-3, 4, len(row_regimen))
    kept = (rng.random(len(row_regimen)) < keep[row_regimen]) & (day <= _CUT) & (day >= _HIST)
    repeat_who, repeat_drug, repeat_day = who[row_regimen][kept], drug[row_regimen][kept], day[kept]

    # Acute antibiotics for anyone, commoner in young children and older people.
    start_any = np.maximum(_HIST, p.dob)
    years_any = np.clip((_CUT - start_any) / _YEAR, 0, None)
    rate = 0.2 + 0.25 * (p.age < 10) + 0.15 * (p.age >= 65)
    counts = rng.poisson(rate * years_any)
    acute_who = np.repeat(np.arange(n), counts)
    acute_day = _uniform_days(rng, start_any[acute_who], np.full(len(acute_who), _CUT))
    return {
        "who": np.concatenate([repeat_who, acute_who]),
        "drug": np.concatenate([repeat_drug, np.full(len(acute_who), _AMOXICILLIN)]),
        "day": np.concatenate([repeat_day, acute_day]),
    }


def _immunisations(rng: np.random.Generator, p: _Patients) -> dict[str, np.ndarray]:
    children = np.flatnonzero(p.age < 18)
    m, s = len(children), len(SCHEDULE)
    propensity = rng.normal(0, 1, m)[:, None]
    base = np.array([x[3] for x in SCHEDULE])[None, :]
    dep = p.dep[children][:, None]
    given = rng.random((m, s)) < _sigmoid(base - 1.2 * dep + 1.0 * propensity)
    due = np.array([x[2] for x in SCHEDULE])[None, :]
    lag = np.floor(rng.exponential(1.0, (m, s)) * (10 + 25 * dep)).astype(np.int64)
    day = p.dob[children][:, None] + due + lag
    ok = given & (day <= _CUT)
    rows, entry = np.nonzero(ok)
    return {"who": children[rows], "entry": entry, "day": day[rows, entry]}


def _cancer_referrals(rng: np.random.Generator, p: _Patients) -> dict[str, np.ndarray]:
    start, years = _adult_window(p)
    rate = 0.004 + 0.0009 * np.clip(p.age - 40, 0, None)
    counts = rng.poisson(rate * years)
    who = np.repeat(np.arange(len(p)), counts)
    r = len(who)
    day = _uniform_days(rng, start[who], np.full(r, _CUT))
    female = p.female[who]
    site_p = np.where(female[:, None], _SITE_P_FEMALE, _SITE_P_MALE)
    site = _categorical(rng, site_p)
    age_then = (day - p.dob[who]) / _YEAR
    cancer = rng.random(r) < _sigmoid(-3.0 + 0.035 * (age_then - 60) + _SITE_LOGIT[site])
    diagnosis = day + 7 + np.floor(rng.gamma(2.0, 10.0, r)).astype(np.int64)
    diagnosed = cancer & (diagnosis <= _CUT)
    treated = diagnosed & (rng.random(r) < 0.9)
    treatment = diagnosis + 10 + np.floor(rng.gamma(2.0, 8.0 + 10.0 * p.dep[who], r)).astype(np.int64)
    treated &= treatment <= _CUT
    treatment_type = _categorical(rng, _TREATMENT_P[site])
    code = np.where(female, np.array(_SITE_SNOMED_FEMALE)[site], np.array(_SITE_SNOMED_MALE)[site])
    return {
        "who": who,
        "day": day,
        "site": site,
        "diagnosed": diagnosed,
        "diagnosis": diagnosis,
        "treated": treated,
        "treatment": treatment,
        "treatment_type": treatment_type,
        "code": code,
    }


def _strings(index: np.ndarray, labels: np.ndarray | list[str] | tuple[str, ...]) -> pa.Array:
    dictionary = pa.array(np.asarray(labels).tolist(), type=pa.string())
    return pa.DictionaryArray.from_arrays(pa.array(index, type=pa.int32()), dictionary).dictionary_decode()


def _dates(days: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    return pa.array(days.astype("datetime64[D]"), type=pa.date32(), mask=mask)


def _sorted(who: np.ndarray, day: np.ndarray) -> np.ndarray:
    return np.lexsort((day, who))


def _chunk_tables(rng: np.random.Generator, geo: _Geography, nhs: np.ndarray) -> dict[str, pa.Table]:
    p = _patients(rng, geo, nhs)
    dx = _diagnoses(rng, p)
    bp = _bp_readings(rng, p, dx)
    rx = _prescriptions(rng, p, dx)
    imm = _immunisations(rng, p)
    ca = _cancer_referrals(rng, p)
    nhs_str = pa.array(nhs, type=pa.int64()).cast(pa.string())

    # Conditions: chronic diagnoses plus cancers diagnosed after an urgent referral.
    cond_who, cond_kind, cond_code, cond_day = [], [], [], []
    chronic = (
        ("asthma", dx.asthma, _SNOMED["asthma"]),
        ("hypertension", dx.hypertension, _SNOMED["hypertension"]),
        (
            "diabetes",
            dx.diabetes,
            np.where(dx.diabetes_type_1, _SNOMED["diabetes_type_1"], _SNOMED["diabetes_type_2"]),
        ),
        ("copd", dx.copd, _SNOMED["copd"]),
    )
    for name, days, code in chronic:
        idx = np.flatnonzero(days >= 0)
        cond_who.append(idx)
        cond_kind.append(np.full(len(idx), CONDITIONS.index(name)))
        cond_code.append(np.broadcast_to(np.asarray(code), (len(p),))[idx])
        cond_day.append(days[idx])
    dxc = np.flatnonzero(ca["diagnosed"])
    cond_who.append(ca["who"][dxc])
    cond_kind.append(np.full(len(dxc), CONDITIONS.index("cancer")))
    cond_code.append(ca["code"][dxc])
    cond_day.append(ca["diagnosis"][dxc])
    c_who, c_kind = np.concatenate(cond_who), np.concatenate(cond_kind)
    c_code, c_day = np.concatenate(cond_code).astype(str), np.concatenate(cond_day)
    order = _sorted(c_who, c_day)
    c_who, c_kind, c_code, c_day = c_who[order], c_kind[order], c_code[order], c_day[order]

    counted = np.zeros((len(p), len(CONDITIONS)), dtype=bool)
    counted[c_who, c_kind] = True
    long_term = counted.sum(axis=1)

    patients = pa.table(
        {
            "nhs_number": nhs_str,
            "date_of_birth": _dates(p.dob),
            "sex": _strings(np.where(p.female, 0, 1), ["F", "M"]),
            "ethnicity": _strings(p.ethnicity, ref.ETHNICITY_NAMES),
            "area_code": _strings(geo.lsoa_district[p.lsoa], geo.districts),
            "lsoa_code": _strings(p.lsoa, geo.lsoa_code),
            "borough": _strings(p.borough, ref.BOROUGH_NAMES),
            "imd_decile": pa.array(p.imd, type=pa.int8()),
            "gp_practice": _strings(p.practice, geo.practice_code),
            "long_term_conditions": pa.array(long_term, type=pa.int8()),
            "national_data_opt_out": pa.array(p.opt_out, type=pa.bool_()),
        },
        schema=SCHEMAS["patients"],
    )
    codes, code_index = np.unique(c_code, return_inverse=True)
    conditions = pa.table(
        {
            "nhs_number": nhs_str.take(pa.array(c_who)),
            "condition": _strings(c_kind, CONDITIONS),
            "snomed_code": _strings(code_index, codes),
            "diagnosis_date": _dates(c_day),
        },
        schema=SCHEMAS["conditions"],
    )
    order = _sorted(bp["who"], bp["day"])
    bp_table = pa.table(
        {
            "nhs_number": nhs_str.take(pa.array(bp["who"][order])),
            "reading_date": _dates(bp["day"][order]),
            "systolic_mmhg": pa.array(bp["systolic"][order], type=pa.int16()),
            "diastolic_mmhg": pa.array(bp["diastolic"][order], type=pa.int16()),
        },
        schema=SCHEMAS["bp_readings"],
    )
    order = _sorted(rx["who"], rx["day"])
    drug = rx["drug"][order]
    rx_table = pa.table(
        {
            "nhs_number": nhs_str.take(pa.array(rx["who"][order])),
            "issue_date": _dates(rx["day"][order]),
            "drug": _strings(drug, [d.name for d in DRUGS]),
            "drug_class": _strings(drug, [d.drug_class for d in DRUGS]),
            "bnf_chapter": pa.array(np.array([d.bnf_chapter for d in DRUGS])[drug], type=pa.int8()),
            "quantity": pa.array(np.array([d.quantity for d in DRUGS])[drug], type=pa.int16()),
        },
        schema=SCHEMAS["prescriptions"],
    )
    order = _sorted(imm["who"], imm["day"])
    entry = imm["entry"][order]
    imm_table = pa.table(
        {
            "nhs_number": nhs_str.take(pa.array(imm["who"][order])),
            "vaccine": _strings(np.array([VACCINES.index(s[0]) for s in SCHEDULE])[entry], VACCINES),
            "dose": pa.array(np.array([s[1] for s in SCHEDULE])[entry], type=pa.int8()),
            "vaccination_date": _dates(imm["day"][order]),
        },
        schema=SCHEMAS["immunisations"],
    )
    order = _sorted(ca["who"], ca["day"])
    ca_sorted = {k: v[order] for k, v in ca.items()}
    ca_table = pa.table(
        {
            "nhs_number": nhs_str.take(pa.array(ca_sorted["who"])),
            "referral_date": _dates(ca_sorted["day"]),
            "suspected_site": _strings(ca_sorted["site"], CANCER_SITES),
            "diagnosis_date": _dates(ca_sorted["diagnosis"], mask=~ca_sorted["diagnosed"]),
            "treatment_date": _dates(ca_sorted["treatment"], mask=~ca_sorted["treated"]),
            "treatment_type": pa.DictionaryArray.from_arrays(
                pa.array(ca_sorted["treatment_type"], type=pa.int32(), mask=~ca_sorted["treated"]),
                pa.array(list(TREATMENTS)),
            ).dictionary_decode(),
        },
        schema=SCHEMAS["cancer_referrals"],
    )
    return {
        "patients": patients,
        "conditions": conditions,
        "bp_readings": bp_table,
        "prescriptions": rx_table,
        "immunisations": imm_table,
        "cancer_referrals": ca_table,
    }
