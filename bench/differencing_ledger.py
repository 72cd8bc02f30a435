"""Benchmark: the differencing check against the service-wide ledger, and the checker statistics.

The ledger makes the differencing check compare a new table with every table released from the same population
in any project, not only the project's own releases. The cost grows with the number of released tables compared,
so this measures the check of one region x sex x age-band table (with IMD filters) against N released tables of
the same shape (N = the project's own 10 as the baseline, then 100 and 1,000 from other projects), and, separately,
the checker statistics computed over many reviewed file versions and rounds (the page computes them on request).

    .venv/bin/python bench/differencing_ledger.py
    .venv/bin/python bench/differencing_ledger.py --released 10 100 1000 --versions 20000 --repeat 3
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import time

import numpy as np
import pandas as pd

import disclosure_control as dc
from gateway.outputs.statistics import APPROVED, NOT_APPROVED, FileVersion, Round, Vote, compute


def population(rows: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "region": rng.choice([f"region {i}" for i in range(12)], rows),
        "sex": rng.choice(["F", "M"], rows),
        "age_band": rng.choice([f"{a}-{a + 9}" for a in range(0, 90, 10)], rows),
        "imd_decile": rng.integers(1, 11, rows),
    })


def released_tables(data: pd.DataFrame, n: int) -> list[dc.Record]:
    """N released tables of the same dataset, over varied IMD ranges (the shapes a ledger fills with)."""
    records = []
    for i in range(n):
        low, high = 1 + i % 5, 6 + i % 5
        out = dc.crosstab(["region", "age_band"], "sex", data=data, dataset="patients",
                          filters={"imd_decile": {"between": [low, high]}}).suppressed()
        records.append(out.record())
    return records


def fastest(repeat: int, job: object) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        job()  # type: ignore[operator]
        best = min(best, time.perf_counter() - started)
    return best


def facts(versions: int, seed: int = 2) -> tuple[list[FileVersion], list[Round]]:
    rng = random.Random(seed)
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    out, rounds = [], []
    for i in range(versions):
        votes = [Vote(rng.randint(1, 8), rng.choice(["approve", "changes_requested"])) for _ in range(2)]
        out.append(FileVersion(i // 3, f"f{i}.csv", 1, rng.choice(["pass", "review", "fail"]),
                               frozenset(rng.sample(["threshold", "differencing", "p_percent", "dof"], 1)),
                               rng.choice([APPROVED, NOT_APPROVED, None]), votes))
        if i % 3 == 0:
            at = start + dt.timedelta(hours=i)
            rounds.append(Round(i // 3, 1, at, ((votes[0].checker_id, at + dt.timedelta(hours=rng.random() * 48)),
                                                (votes[1].checker_id, at + dt.timedelta(hours=rng.random() * 96))),
                                at + dt.timedelta(hours=100)))
    return out, rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--released", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--versions", type=int, nargs="+", default=[1000, 20000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    data = population(20_000)
    new = dc.crosstab(["region", "age_band"], "sex", data=data, dataset="patients",
                      filters={"imd_decile": {"between": [1, 9]}}).suppressed().record()
    tables = released_tables(data, max(args.released))
    baseline_n = args.released[0]
    baseline = fastest(args.repeat, lambda: dc.check_differencing(new, tables[:baseline_n]))
    print(f"differencing check of one {len(new.cells)}-cell table (baseline: {baseline_n} released tables, "
          "the project's own)")
    print(f"{'released tables compared':>24} | {'check (s)':>9} | {'baseline (s)':>12} | {'ratio':>6} | flags")
    for n in args.released:
        seconds = fastest(args.repeat, lambda n=n: dc.check_differencing(new, tables[:n]))
        flags = len(dc.check_differencing(new, tables[:n]).flags)
        print(f"{n:>24,} | {seconds:>9.3f} | {baseline:>12.3f} | {seconds / baseline:>6.1f} | {flags}")
    print()
    print(f"{'reviewed file versions':>24} | {'statistics (s)':>14}")
    for n in args.versions:
        versions, rounds = facts(n)
        seconds = fastest(args.repeat, lambda versions=versions, rounds=rounds: compute(versions, rounds))
        print(f"{n:>24,} | {seconds:>14.3f}")


if __name__ == "__main__":
    main()
