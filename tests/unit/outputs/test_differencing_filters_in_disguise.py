"""Attack on the differencing check: nested populations whose filters are written so that they do not look nested.

The check decided nesting from the filters' text: a table of everyone released with a filter that excludes nobody
(``age >= 0``) was not "around" a table of everyone outside IMD decile 10, because the second filter says nothing
about age; and ``imd_decile in [1..9]`` was not around ``imd_decile between 1 and 8``, because an ``in`` list was
never compared with a range. Either way the pair passed, and North/F 34 - 30 (or 37 - 34) gave a small group.
The gateway has the data: it now records, for the checkers only, the population each table was computed on with
the conditions that exclude nobody dropped and ranges over few values written as those values.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import disclosure_control as dc
from disclosure_control import Record
from gateway.outputs import checks


def cohort() -> pd.DataFrame:
    """North/F: 30 in deciles 1-8, 4 in decile 9, 3 in decile 10; every other cell large, spread over deciles."""
    cells = [("North", "F", 30, list(range(1, 9))), ("North", "F", 4, [9]), ("North", "F", 3, [10]),
             ("North", "M", 60, list(range(1, 11))), ("South", "F", 50, list(range(1, 11))),
             ("South", "M", 70, list(range(1, 11)))]
    rows = [(region, sex, deciles[i % len(deciles)], 20 + i % 60) for region, sex, n, deciles in cells
            for i in range(n)]
    frame = pd.DataFrame(rows, columns=["region", "sex", "imd_decile", "age"])
    frame["imd_decile"] = frame["imd_decile"].astype(np.int64)
    return frame


@pytest.fixture
def extract(tmp_path: Path) -> Path:
    cohort().to_parquet(tmp_path / "patients.parquet")
    (tmp_path / "manifest.json").write_text(json.dumps({"tables": [{"dataset": "patients",
                                                                     "file": "patients.parquet"}]}))
    return tmp_path


def checked(extract: Path, filters: dict[str, Any], earlier: list[Record]) -> dict[str, Any]:
    out = dc.crosstab("region", "sex", data=cohort(), dataset="patients", filters=filters).suppressed()
    sidecar = {"record": out.record().to_dict(), "sidecar_sha256_matches": True}
    return checks.check_recorded((out.to_csv() or "").encode(), sidecar, extract, earlier)


CASES = {
    "a filter that excludes nobody": ({"age": {"min": 0}}, {"imd_decile": {"between": [1, 9]}}),
    "a list around a range": ({"imd_decile": {"in": list(range(1, 10))}}, {"imd_decile": {"between": [1, 8]}}),
    "a range around a list": ({"imd_decile": {"between": [1, 9]}}, {"imd_decile": [1, 2, 3, 4, 5, 6, 7, 8]}),
    "plainly nested": ({}, {"imd_decile": {"between": [1, 9]}}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_nested_populations_are_found_however_their_filters_are_written(extract: Path, case: str) -> None:
    outer, inner = CASES[case]
    first = checked(extract, outer, [])
    assert first["status"] == "pass"
    for second in (checked(extract, inner, [Record.from_dict(first["record"])]),):
        assert second["status"] == "fail", f"{case}: {second['differencing']}"
        assert any("differencing" in c["rules"] for c in second["cells"])
    # and the other way round: the wider table checked after the narrower one
    narrow = checked(extract, inner, [])
    wide = checked(extract, outer, [Record.from_dict(narrow["record"])])
    assert wide["status"] == "fail", case


def test_the_population_the_checkers_compare_never_leaves(extract: Path) -> None:
    result = checked(extract, {"age": {"between": [20, 50]}, "imd_decile": {"min": 1}}, [])
    record = Record.from_dict(result["record"])
    assert record.population is not None  # the checker's form
    assert "population" not in record.public().to_dict()
