"""Records: what was computed, with which rules, by which version; ACRO results.json round trips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

import disclosure_control as dc
from disclosure_control.acro_format import ACRO_LAYOUT_VERSION, read_acro_results, write_acro_results
from disclosure_control.config import SDCConfig
from disclosure_control.record import Record


def data() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    n = 300
    return pd.DataFrame(
        {
            "region": rng.choice(["n", "s", "e"], n, p=[0.5, 0.47, 0.03]),
            "sex": rng.choice(["F", "M"], n),
            "income": rng.lognormal(8, 1, n),
        }
    )


def test_record_says_what_was_computed_and_the_verdict_per_cell() -> None:
    config = SDCConfig(threshold=12)
    out = dc.pivot_table(
        data(),
        "income",
        "region",
        "sex",
        aggfunc="mean",
        dataset="cohort_v3",
        filters={"sex": ["F", "M"]},
        config=config,
    )
    record = out.record()
    assert record.query["dataset"] == "cohort_v3"
    assert record.query["index"] == ["region"] and record.query["columns"] == ["sex"]
    assert record.query["values"] == "income" and record.query["aggfunc"] == ["mean"]
    assert record.rules["threshold"] == 12
    assert record.library["name"] == "londonsde.disclosure_control" and record.library["version"] == dc.__version__
    assert record.status == out.status == "fail"
    cell = next(c for c in record.cells if c.row == ["e"] and c.column == ["F"])
    assert cell.status == "fail" and "threshold" in cell.rules and cell.count == out.counts.loc["e", "F"]
    assert len(record.cells) == out.table.size


def test_record_json_round_trip() -> None:
    record = dc.crosstab(data().region, data().sex, margins=True).record()
    again = Record.from_json(record.to_json())
    assert again == record
    json.loads(record.to_json())  # plain JSON, no numpy types


def test_acro_results_round_trip(tmp_path: Path) -> None:
    df = data()
    outputs = [
        dc.crosstab(df.region, df.sex),
        dc.pivot_table(df, "income", "sex", aggfunc="mean"),
        dc.ols("income ~ C(sex)", df),
    ]
    path = write_acro_results(outputs, tmp_path / "outputs")
    document = json.loads(path.read_text())
    assert document["version"] == ACRO_LAYOUT_VERSION
    assert set(document["results"]) == {"output_0", "output_1", "output_2"}
    first = document["results"]["output_0"]
    assert first["status"] == "fail" and first["type"] == "table"
    assert first["outcome"]["F"]["e"] == "MinimumThresholdCheck; "
    assert first["files"][0]["sdc"]["summary"]["MinimumThresholdCheck"] == 2
    assert first["files"][0]["sdc"]["cells"]["MinimumThresholdCheck"] == [[0, 0], [0, 1]]
    assert (tmp_path / "outputs" / "output_0_0.csv").exists()
    assert document["results"]["output_2"]["type"] == "regression"
    assert json.loads((tmp_path / "outputs" / "config.json").read_text())["safe_threshold"] == 10
    back = read_acro_results(tmp_path / "outputs")
    assert [r.to_dict() for r in back] == [
        o.record().to_dict() | {"uid": r.uid, "created_at": r.created_at} for o, r in zip(outputs, back, strict=True)
    ]


def test_reads_a_results_file_written_by_acro(tmp_path: Path) -> None:
    """A minimal results.json in ACRO 1.0.2's own layout (no londonsde record inside)."""
    folder = tmp_path / "acro_out"
    folder.mkdir()
    document = {
        "version": "1.0.2",
        "tool": {"@type": "SoftwareApplication", "name": "ACRO", "version": "1.0.2"},
        "results": {
            "output_0": {
                "uid": "output_0",
                "status": "fail",
                "type": "table",
                "properties": {"method": "crosstab", "mitigation": "none"},
                "files": [
                    {
                        "name": "output_0_0.csv",
                        "sdc": {"summary": {"MinimumThresholdCheck": 1}, "cells": {"MinimumThresholdCheck": [[1, 0]]}},
                    }
                ],
                "outcome": {"F": {"n": "ok", "s": "MinimumThresholdCheck; "}, "M": {"n": "ok", "s": "ok"}},
                "command": "acro.crosstab(df.region, df.sex)",
                "summary": "fail",
                "timestamp": "2025-01-01T00:00:00",
                "comments": [],
                "exception": "",
                "fair": {},
            }
        },
    }
    (folder / "results.json").write_text(json.dumps(document))
    (folder / "config.json").write_text(json.dumps({"safe_threshold": 10, "safe_nk_k": 0.9, "suppress": False}))
    [record] = read_acro_results(folder)
    assert record.status == "fail" and record.kind == "crosstab"
    flagged = {(tuple(c.row), tuple(c.column)): c.rules for c in record.cells}
    assert flagged[(("s",), ("F",))] == ["threshold"]
    assert flagged[(("n",), ("M",))] == []
    assert record.rules["threshold"] == 10 and record.library["version"] == "1.0.2"


def test_dp_records_carry_epsilon_and_export(tmp_path: Path) -> None:
    result = dc.dp_count(data(), epsilon=0.5)
    record = result.record()
    assert record.epsilon == 0.5 and record.status == "pass"
    path = write_acro_results([record], tmp_path / "dp")
    entry = json.loads(path.read_text())["results"]["output_0"]
    assert entry["properties"]["epsilon"] == 0.5
