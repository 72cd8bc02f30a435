"""The same analysis in Python and in R (the londonsde R package, run by real Rscript with the R kernel's own
environment from the installed kernel spec) gives the same tables, verdicts and saved records, and the gateway
recomputes the R-made records with the Python-made verdict."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import disclosure_control
from gateway.outputs.checks import recompute

SINGLEUSER = Path(os.environ.get("LONDONSDE_SINGLEUSER_PREFIX", "/opt/londonsde/singleuser"))
pytestmark = pytest.mark.slow

R_SCRIPT = r"""
library(londonsde)
args <- commandArgs(trailingOnly = TRUE)
df <- load_extract("patients", data_dir = args[1])
outs <- list(
  by_region = sdc_crosstab(df, "region", "sex")$suppressed(),
  by_region_north = sdc_crosstab(df, c("region", "imd_decile"), "sex", filters = list(region = "North",
                                 age = list(between = c(30, 70)))),
  bmi_pivot = sdc_pivot_table(df, "bmi", "region", "sex", aggfunc = c("mean", "count")),
  ages = sdc_describe(df, c("age", "bmi")),
  age_hist = sdc_hist(df, "age", bins = c(0, 30, 60, 90)),
  died_logit = sdc_glm(died ~ age + C(sex), df, model = "logit"),
  bmi_ols = sdc_glm("bmi ~ age", df),
  km = sdc_survival(df, "time", "died", group = "sex")$suppressed(),
  by_smoker = sdc_crosstab(df, "smoker", "sex", values = "bmi", aggfunc = "median")
)
seen <- list()
for (name in names(outs)) {
  out <- outs[[name]]
  save_output(out, name, outputs_dir = args[2], allow_fail = TRUE)
  exact <- lapply(out$table, function(x) if (is.double(x)) ifelse(is.na(x), NA, sprintf("%.17g", x)) else x)
  seen[[name]] <- list(status = out$status, summary = out$summary, kind = out$kind, table = exact)
}
seen$rows <- nrow(df)
seen$missing_ethnicity <- sum(is.na(df$ethnicity))
seen$missing_bmi <- sum(is.na(df$bmi))
seen$classes <- lapply(df, function(x) class(x)[1])
seen$last_admitted <- format(df$admitted[nrow(df)], "%Y-%m-%d %H:%M", tz = "UTC")
jsonlite::write_json(seen, file.path(args[2], "seen.json"), na = "null", auto_unbox = TRUE)
"""


def cohort() -> pd.DataFrame:
    n = 240
    i = np.arange(n)
    frame = pd.DataFrame({
        "region": np.where(i % 4 == 3, "South", "North"),
        "sex": np.where(i % 3 == 0, "F", "M"),
        "imd_decile": (i % 5 + 1).astype(np.int64),
        "age": (20 + (i * 7) % 60).astype(np.int64),
        "bmi": np.where(i % 11 == 0, np.nan, 18.5 + (i * 13 % 97) / 7),
        "time": (1 + (i * 5) % 24).astype(np.int64),
        "died": ((i * 7) % 5 == 1).astype(np.int64),
        "ethnicity": [None if k % 13 == 0 else ("A", "B", "C")[k % 3] for k in range(n)],
        "smoker": i % 4 == 1,
        "admitted": pd.Timestamp("2024-01-01") + pd.to_timedelta(i * 37, unit="h"),
    })
    return frame


PY_SCRIPT = """
import json, sys
import numpy as np
import pandas as pd
import disclosure_control as dc
from outputs_helper import save_output

extract, out_dir = sys.argv[1], sys.argv[2]
df = pd.read_parquet(extract + "/patients.parquet")
data = {"data": df, "dataset": "patients"}
outs = {
    "by_region": dc.crosstab("region", "sex", **data).suppressed(),
    "by_region_north": dc.crosstab(["region", "imd_decile"], "sex", **data,
                                   filters={"region": "North", "age": {"between": [30, 70]}}),
    "bmi_pivot": dc.pivot_table(df, "bmi", "region", "sex", aggfunc=["mean", "count"], dataset="patients"),
    "ages": dc.describe(df, ["age", "bmi"], dataset="patients"),
    "age_hist": dc.hist(df, "age", bins=[0, 30, 60, 90], dataset="patients"),
    "died_logit": dc.logit("died ~ age + C(sex)", df, dataset="patients"),
    "bmi_ols": dc.ols("bmi ~ age", df, dataset="patients"),
    "km": dc.survival(df, "time", "died", group="sex", dataset="patients").suppressed(),
    "by_smoker": dc.crosstab("smoker", "sex", values="bmi", aggfunc="median", **data),
}
seen = {}
for name, out in outs.items():
    save_output(out, name, outputs_dir=out_dir, allow_fail=True)
    seen[name] = {"kind": out.kind, "status": str(out.status), "summary": out.summary,
                  "values": [[None if np.isnan(v) else v for v in row] for row in out.table.to_numpy(dtype=float)],
                  "labels": [str(v) for v in out.table.index.get_level_values(0)]}
open(out_dir + "/seen.json", "w").write(json.dumps(seen))
"""


def made(sidecar: Path) -> dict[str, Any]:
    """A saved record less what differs between any two saves: when it was made and its id."""
    saved = json.loads(sidecar.read_text())
    assert saved["record"].pop("created_at") and saved["record"].pop("uid")
    return saved


def r_environment() -> dict[str, str]:
    """The environment the installed R kernel spec gives its kernel (so this checks the spec too)."""
    spec = json.loads((SINGLEUSER / "share" / "jupyter" / "kernels" / "ir" / "kernel.json").read_text())
    assert spec["language"] == "R" and spec["argv"][0].endswith("/R")
    return {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8", **spec["env"]}


def test_r_and_python_give_the_same_tables_verdicts_and_records(tmp_path: Path) -> None:
    extract, py_dir, r_dir = tmp_path / "data", tmp_path / "py", tmp_path / "r"
    extract.mkdir()
    df = cohort()
    df.to_parquet(extract / "patients.parquet", index=False)
    (extract / "manifest.json").write_text(json.dumps(
        {"tables": [{"dataset": "patients", "file": "patients.parquet", "rows": len(df)}]}))
    (tmp_path / "analysis.R").write_text(R_SCRIPT)
    run = subprocess.run(["Rscript", str(tmp_path / "analysis.R"), str(extract), str(r_dir)], env=r_environment(),
                         capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    seen: dict[str, Any] = json.loads((r_dir / "seen.json").read_text())
    # load_extract kept every row and every missing value as NA (not the text "NA", not a number).
    assert (seen["rows"], seen["missing_ethnicity"], seen["missing_bmi"]) == (240, 19, 22)
    assert seen["classes"] == {"region": "character", "sex": "character", "imd_decile": "integer", "age": "integer",
                               "bmi": "numeric", "time": "integer", "died": "integer", "ethnicity": "character",
                               "smoker": "logical", "admitted": "POSIXct"}
    assert seen["last_admitted"] == str(df["admitted"].iloc[-1])[:16]

    # The same analysis in Python, run by the workspace env's Python (what the Python kernel runs).
    py = subprocess.run([str(SINGLEUSER / "bin" / "python"), "-c", PY_SCRIPT, str(extract), str(py_dir)],
                        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"},
                        capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False)
    assert py.returncode == 0, py.stderr[-3000:]
    expected: dict[str, Any] = json.loads((py_dir / "seen.json").read_text())
    assert {e["status"] for e in expected.values()} == {"pass", "fail", "review"}  # every verdict is covered
    for name, out in expected.items():
        r_seen = seen[name]
        assert (r_seen["kind"], r_seen["status"], r_seen["summary"]) == (out["kind"], out["status"], out["summary"])
        # The R data frame holds the same numbers (suppressed cells NA) and the same row labels.
        values = np.array(out["values"], dtype=float)
        r_table = r_seen["table"]
        r_values = np.array([[np.nan if v is None else float(v) for v in r_table[c]]
                             for c in list(r_table)[-values.shape[1]:]], dtype=float).T
        np.testing.assert_array_equal(r_values, values, err_msg=name)
        assert [str(v) for v in r_table[next(iter(r_table))]] == out["labels"], name
        # The saved table and its record are byte for byte those the Python helper saves.
        assert (r_dir / f"{name}.csv").read_bytes() == (py_dir / f"{name}.csv").read_bytes(), name
        assert made(r_dir / f"{name}.sdc.json") == made(py_dir / f"{name}.sdc.json"), name

    # The gateway runs each R-made record again on the extract and reaches the notebook's verdict.
    for name in ("by_region", "by_region_north", "bmi_pivot", "died_logit", "km"):
        sidecar = json.loads((r_dir / f"{name}.sdc.json").read_text())
        again = recompute(sidecar["record"], extract)
        assert (str(again.status), again.query["dataset"]) == (sidecar["status"], "patients"), name
        # Records made in the workspace name the library release the gateway runs, so a verdict can be traced.
        assert sidecar["record"]["library"]["version"] == disclosure_control.__version__ != "0+unknown", name
