"""Benchmark: the DAC's risk preview against a plain pyarrow read of the patients table it assesses.

On the demo population (20,000 patients, generated once into a temporary folder unless --source is given)
it times, for three applications shaped like the demo's:

* baseline: pyarrow reading the patients table's columns the preview needs, nothing else;
* preview:  gateway.extracts.preview.compute (cohort selection, every coarser generalisation, the
  suggestions), as the page runs it when an application changes;
* cached:   the page's later views of the same application version (the in-process cache).

It prints one table: fastest of --repeat runs in seconds, and the ratio of the preview to the baseline.

    .venv/bin/python bench/risk_preview.py
    .venv/bin/python bench/risk_preview.py --source /path/to/source --repeat 3
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pyarrow.parquet as pq

from gateway.extracts import preview
from gateway.extracts.synth import generate
from projects.catalogue import catalogue_at

APPLICATIONS = {
    "asthma (demo): 3 details, children with asthma": (
        [("patients", "sex"), ("patients", "imd_decile"), ("patients", "borough"), ("conditions", "condition")],
        {"cohort_age_min": 5, "cohort_age_max": 16, "cohort_conditions": ["asthma"]}),
    "hypertension (demo): 2 details, adults": (
        [("patients", "sex"), ("patients", "borough"), ("bp_readings", "systolic_mmhg")],
        {"cohort_age_min": 30, "cohort_conditions": ["hypertension"]}),
    "everyone, 7 identifying details": (
        [("patients", v) for v in ("date_of_birth", "sex", "ethnicity", "borough", "imd_decile", "area_code",
                                   "lsoa_code")], {}),
}


def application(variables: list[tuple[str, str]], cohort: dict[str, object]) -> SimpleNamespace:
    fields: dict[str, object] = {"cohort_boroughs": [], "cohort_age_min": None, "cohort_age_max": None,
                                 "cohort_conditions": [], **cohort}
    return SimpleNamespace(variables=[SimpleNamespace(dataset=d, variable=v) for d, v in variables],
                           date_from=dt.date(2019, 1, 1), date_to=dt.date(2025, 12, 31), opt_out_applies=True,
                           generalisation=None, **fields)


def fastest(fn: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, help="a source folder made by `sde synth` (default: a new one)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    source = args.source
    if source is None:
        source = Path(tempfile.mkdtemp(prefix="sde-bench-preview-"))
        generate(20_000, 20261121, source)
    catalogue = catalogue_at(source / "catalogue.yaml")
    today = dt.date.today()
    print(f"{'application':48} {'baseline s':>10} {'preview s':>10} {'ratio':>7} {'cached s':>9}")
    for name, (variables, cohort) in APPLICATIONS.items():
        app = application(variables, cohort)
        spec = preview.application_spec(app, 5, today)
        columns = ["nhs_number", "date_of_birth", "national_data_opt_out",
                   *[v for d, v in variables if d == "patients"]]
        baseline = fastest(lambda c=columns: pq.read_table(source / "patients.parquet", columns=c), args.repeat)
        compute = fastest(lambda s=spec: preview.compute(s, source, catalogue, 0.05), args.repeat)
        preview.preview(app, source, catalogue, 5, 0.05, today)  # fill the cache
        cached = fastest(lambda a=app: preview.preview(a, source, catalogue, 5, 0.05, today), args.repeat)
        print(f"{name:48} {baseline:10.3f} {compute:10.3f} {compute / baseline:7.1f} {cached:9.4f}")


if __name__ == "__main__":
    main()
