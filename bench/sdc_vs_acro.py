"""Compare disclosure_control with ACRO 1.0.2 on the same microdata: per-cell verdicts and time.

ACRO 1.0.2 pins pandas <= 2.3.3, so it runs in its own virtual environment (created on first use
under ~/.cache/londonsde/acro-venv, or $LONDONSDE_ACRO_VENV) as a subprocess that reads the same
microdata from an .npz file. Both sides time only the checked call (table plus checks), best of
``--repeats``, and report each cell's verdict (pass / review / fail), read from ACRO's own
outcome frame and check statuses. Where verdicts differ, tests/unit/disclosure_control/
test_sdc_acro_differences.py explains which is right and why.

Model cases (ols/logit/probit formulas through ACRO's ``olsr``/``logitr``/``probitr``) time the fit
plus the checks on both sides. ACRO keeps no per-cell verdicts for a model, so for those the table
shows how many coefficients our implied-table and separation rules flagged, and both verdicts.

Usage: .venv/bin/python bench/sdc_vs_acro.py [--sizes 100000 1000000] [--repeats 2] [--only tables|models]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import disclosure_control as dc

ACRO_VERSION = "1.0.2"
ACRO_VENV = Path(os.environ.get("LONDONSDE_ACRO_VENV", Path.home() / ".cache" / "londonsde" / "acro-venv"))

CATEGORIES = {
    "region": [f"R{i:02d}" for i in range(12)],
    "age_band": ["0-17", "18-29", "30-39", "40-49", "50-59", "60-69", "70-79", "80+"],
    "sex": ["F", "M"],
    # skewed so that some cells are small
    "ethnicity": ["A", "B", "C", "D", "E", "F"],
    "imd": ["1", "2", "3", "4", "5"],
}
PROBS = {"ethnicity": [0.80, 0.10, 0.06, 0.03, 0.0085, 0.0015]}

# name -> (function, keyword arguments); columns are names in the shared data frame
CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("count region x sex", "crosstab", {"index": ["region"], "columns": ["sex"]}),
    ("count region,age x ethnicity", "crosstab", {"index": ["region", "age_band"], "columns": ["ethnicity"]}),
    ("count age x ethnicity +margins", "crosstab", {"index": ["age_band"], "columns": ["ethnicity"], "margins": True}),
    (
        "mean income region x ethnicity",
        "crosstab",
        {"index": ["region"], "columns": ["ethnicity"], "values": "income", "aggfunc": "mean"},
    ),
    (
        "sum income age,sex x ethnicity",
        "pivot_table",
        {"index": ["age_band", "sex"], "columns": ["ethnicity"], "values": "income", "aggfunc": "sum"},
    ),
    (
        "median los region x imd",
        "pivot_table",
        {"index": ["region"], "columns": ["imd"], "values": "los", "aggfunc": "median"},
    ),
    (
        "std los region x ethnicity",
        "pivot_table",
        {"index": ["region"], "columns": ["ethnicity"], "values": "los", "aggfunc": "std"},
    ),
    (
        "normalised region x ethnicity",
        "crosstab",
        {"index": ["region"], "columns": ["ethnicity"], "normalize": "index"},
    ),
    # models: ACRO checks residual degrees of freedom only; we also check the tables each model implies
    ("ols los ~ age + sex + imd", "ols", {"formula": "los ~ age_band + sex + imd"}),
    ("logit long_stay ~ age + sex + imd", "logit", {"formula": "long_stay ~ age_band + sex + imd"}),
    ("probit long_stay ~ region + sex", "probit", {"formula": "long_stay ~ region + sex"}),
    ("logit long_stay ~ age * ethnicity", "logit", {"formula": "long_stay ~ age_band * ethnicity"}),
]
MODELS = {"ols", "logit", "probit"}

ACRO_RUNNER = textwrap.dedent(
    """
    import json, logging, sys, time, warnings
    import numpy as np, pandas as pd
    warnings.simplefilter("ignore")
    from acro import ACRO
    logging.disable(logging.INFO)

    npz, cases_json, repeats, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    raw = np.load(npz, allow_pickle=False)
    cats = json.loads(str(raw["categories"]))
    df = pd.DataFrame({
        name: pd.Categorical.from_codes(raw[name], categories=labels) for name, labels in cats.items()
    })
    df["income"] = raw["income"]
    df["los"] = raw["los"]
    df["long_stay"] = (df["los"] > 10).astype(int)
    acro = ACRO(suppress=False)

    def key(label):
        return "|".join(map(str, label)) if isinstance(label, tuple) else str(label)

    results = {}
    for name, function, kw in json.loads(open(cases_json).read()):
        best = None
        for _ in range(repeats):
            t0 = time.perf_counter()
            if function in ("ols", "logit", "probit"):
                getattr(acro, function + "r")(kw["formula"], data=df)
            elif function == "crosstab":
                index = [df[c] for c in kw["index"]]
                columns = [df[c] for c in kw["columns"]]
                values = df[kw["values"]] if "values" in kw else None
                acro.crosstab(index, columns, values=values, aggfunc=kw.get("aggfunc"),
                              margins=kw.get("margins", False), normalize=kw.get("normalize", False))
            else:
                acro.pivot_table(df, values=kw["values"], index=kw["index"], columns=kw["columns"],
                                 aggfunc=kw["aggfunc"], margins=kw.get("margins", False))
            elapsed = time.perf_counter() - t0
            best = elapsed if best is None else min(best, elapsed)
        record = acro.results.get_index(-1)
        statuses = record.fair.get("check_status", {})
        cells = {}
        outcome = record.outcome if function not in ("ols", "logit", "probit") else pd.DataFrame()
        for i, row in enumerate(outcome.index):
            for j, col in enumerate(outcome.columns):
                text = str(outcome.iat[i, j])
                flagged = [p.strip() for p in text.split(";") if p.strip() and p.strip() != "ok"]
                verdicts = [statuses.get(f, "fail") for f in flagged]
                # a cell named by a check reads as that check's status
                verdict = "fail" if "fail" in verdicts else ("review" if "review" in verdicts else "pass")
                cells[key(row) + " / " + key(col)] = verdict
        results[name] = {"time": best, "status": record.status, "cells": cells}
    with open(out, "w") as handle:
        json.dump(results, handle)
    """
)


def ensure_acro() -> Path:
    """The ACRO venv's python, creating the venv and installing ACRO on first use."""
    python = ACRO_VENV / "bin" / "python"
    probe = [str(python), "-c", "import acro.version as v; print(v.__version__)"]
    if python.exists():
        found = subprocess.run(probe, capture_output=True, text=True, check=False).stdout.strip()
        if found == ACRO_VERSION:
            return python
    ACRO_VENV.parent.mkdir(parents=True, exist_ok=True)
    print(f"creating {ACRO_VENV} and installing acro=={ACRO_VERSION} ...", file=sys.stderr)
    subprocess.run(["python3", "-m", "venv", str(ACRO_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", f"acro=={ACRO_VERSION}"], check=True)
    return python


def make_data(n: int, seed: int = 2024) -> pd.DataFrame:
    """Synthetic patient-level microdata with small cells and a few dominant incomes."""
    rng = np.random.default_rng(seed)
    frame: dict[str, Any] = {}
    for name, labels in CATEGORIES.items():
        codes = rng.choice(len(labels), size=n, p=PROBS.get(name))
        frame[name] = pd.Categorical.from_codes(codes, categories=labels)
    income = rng.lognormal(mean=10, sigma=0.6, size=n)
    outliers = rng.random(n) < 2e-5  # a handful of very large values dominate their cells
    income[outliers] *= 2_000
    frame["income"] = income
    frame["los"] = np.round(rng.gamma(2.0, 3.0, size=n), 1)
    frame["long_stay"] = (frame["los"] > 10).astype(int)
    return pd.DataFrame(frame)


def save_npz(df: pd.DataFrame, path: Path) -> None:
    arrays = {name: df[name].cat.codes.to_numpy() for name in CATEGORIES}
    arrays["income"] = df["income"].to_numpy()
    arrays["los"] = df["los"].to_numpy()
    arrays["categories"] = np.array(json.dumps(CATEGORIES))
    np.savez(path, **arrays)


def run_ours(df: pd.DataFrame, function: str, kw: dict[str, Any]) -> dc.Output:
    if function in MODELS:
        return getattr(dc, function)(kw["formula"], df)
    if function == "crosstab":
        return dc.crosstab(
            [df[c] for c in kw["index"]],
            [df[c] for c in kw["columns"]],
            values=df[kw["values"]] if "values" in kw else None,
            aggfunc=kw.get("aggfunc"),
            margins=kw.get("margins", False),
            normalize=kw.get("normalize", False),
        )
    return dc.pivot_table(
        df,
        values=kw["values"],
        index=kw["index"],
        columns=kw["columns"],
        aggfunc=kw["aggfunc"],
        margins=kw.get("margins", False),
    )


def _key(label: Any) -> str:
    return "|".join(map(str, label)) if isinstance(label, tuple) else str(label)


def our_cells(output: dc.Output) -> dict[str, str]:
    status = output.cell_status
    return {
        _key(row) + " / " + _key(col): str(status.iat[i, j])
        for i, row in enumerate(status.index)
        for j, col in enumerate(status.columns)
    }


def best_of(repeats: int, call: Callable[[], dc.Output]) -> tuple[float, dc.Output]:
    best, result = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = call()
        best = min(best, time.perf_counter() - t0)
    assert result is not None
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--only", choices=["tables", "models"], help="run only the table or only the model cases")
    args = parser.parse_args()
    acro_python = ensure_acro()
    cases = [c for c in CASES if args.only is None or (c[1] in MODELS) == (args.only == "models")]

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        cases_path = Path(tmp) / "cases.json"
        cases_path.write_text(json.dumps(cases))
        for n in args.sizes:
            df = make_data(n)
            npz = Path(tmp) / f"data_{n}.npz"
            save_npz(df, npz)
            out = Path(tmp) / f"acro_{n}.json"
            subprocess.run(
                [str(acro_python), "-c", ACRO_RUNNER, str(npz), str(cases_path), str(args.repeats), str(out)],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            theirs = json.loads(out.read_text())
            for name, function, kw in cases:
                ours_time, output = best_of(args.repeats, lambda f=function, k=kw, d=df: run_ours(d, f, k))
                mine = our_cells(output)
                acro_cells = theirs[name]["cells"]
                shared = sorted(set(mine) & set(acro_cells))
                agree = sum(mine[k] == acro_cells[k] for k in shared)
                if function in MODELS:  # ACRO keeps no per-cell verdicts for a model: compare the verdicts
                    flagged = sum(status != "pass" for status in mine.values()) // max(output.table.shape[1], 1)
                    agreement = f"{flagged} coef flagged"
                else:
                    agreement = f"{agree}/{len(shared)}" + ("" if len(shared) == len(mine) else f" (of {len(mine)})")
                rows.append(
                    {
                        "case": name,
                        "rows": n,
                        "cells": len(mine),
                        "ours_s": ours_time,
                        "acro_s": theirs[name]["time"],
                        "speedup": theirs[name]["time"] / ours_time,
                        "agree": agreement,
                        "status": f"{output.status}/{theirs[name]['status']}",
                    }
                )

    header = f"{'case':36} {'rows':>9} {'ours s':>8} {'ACRO s':>8} {'ratio':>7}  {'agree':>16}  status ours/ACRO"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['case']:36} {r['rows']:>9} {r['ours_s']:>8.3f} {r['acro_s']:>8.3f} {r['speedup']:>6.1f}x"
            f"  {r['agree']:>16}  {r['status']}"
        )


if __name__ == "__main__":
    main()
