"""Attack: is what leaves exactly what the automatic check recomputed, and do the package's words hide what was hidden?

* The recomputed check compared the submitted CSV with the recomputed table cell by cell *as numbers*, and an empty
  cell with any blank text: so a suppressed cell could carry its count as spaces (invisible on the checker's page,
  which tags the cell "suppressed"), and any cell could carry data as leading zeros, a plus sign, an exponent,
  trailing digits beyond the tolerance, quotes or line endings, all under a "pass" and released byte for byte.
* The package's manifest counted, per rule, the cells each rule flagged, suppressed ones included, so it said
  "zeros: 1" for a table whose only zero was suppressed.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

import disclosure_control as dc
from gateway.outputs import checks, release

# x: 40 p, 0 q (a zero: suppressed); y: 30 p, 3 q (the 3 suppressed); z large
DATA = pd.DataFrame({"a": ["x"] * 40 + ["y"] * 33 + ["z"] * 70,
                     "b": ["p"] * 40 + ["p"] * 30 + ["q"] * 3 + ["p"] * 35 + ["q"] * 35,
                     "sex": ["F", "M"] * 71 + ["F"]})


@pytest.fixture
def extract(tmp_path: Path) -> Path:
    DATA.to_parquet(tmp_path / "patients.parquet")
    (tmp_path / "manifest.json").write_text(json.dumps({"tables": [{"dataset": "patients",
                                                                     "file": "patients.parquet"}]}))
    return tmp_path


def _saved() -> tuple[str, dict]:  # type: ignore[type-arg]
    out = dc.crosstab("a", "b", data=DATA, dataset="patients").suppressed()
    assert out.status == "pass"
    return out.to_csv() or "", {"record": out.record().to_dict(), "sidecar_sha256_matches": True}


def test_the_file_as_save_output_wrote_it_passes(extract: Path) -> None:
    text, sidecar = _saved()
    result = checks.check_recorded(text.encode(), sidecar, extract, [])
    assert (result["status"], result["mismatches"]) == ("pass", [])


def _edits(text: str) -> dict[str, str]:
    lines = text.split("\n")
    assert lines[1] == "x,40," and lines[2] == "y,30,", text
    return {
        "the suppressed count as spaces": text.replace("y,30,\n", "y,30,   \n"),
        "a suppressed cell written nan": text.replace("x,40,\n", "x,40,nan\n"),
        "leading zeros": text.replace("x,40,", "x,0000040,"),
        "a plus sign and a space": text.replace("x,40,", "x, +40,"),
        "an exponent": text.replace("x,40,", "x,4e1,"),
        "trailing digits within the tolerance": text.replace("x,40,", "x,40.0000000000003,"),
        "a quoted cell": text.replace("x,40,", 'x,"40",'),
        "a line ending in CR LF": text.replace("x,40,\n", "x,40,\r\n"),
        "a byte order mark": "\ufeff" + text,
        "a blank line at the end": text + "\n",
    }


@pytest.mark.parametrize("edit", list(_edits("region,p,q\nx,40,\ny,30,\nz,35,35\n")))
def test_a_file_that_is_not_byte_for_byte_the_recomputed_table_fails_as_a_mismatch(extract: Path, edit: str) -> None:
    text, sidecar = _saved()
    edited = _edits(text)[edit]
    assert edited != text
    result = checks.check_recorded(edited.encode(), sidecar, extract, [])
    assert result["status"] == "fail", f"{edit}: {result['status']} {result['notes']}"
    assert result["mismatches"]


def test_a_models_coefficients_are_compared_as_numbers_but_written_as_numbers(extract: Path) -> None:
    frame = DATA.assign(y=range(len(DATA)))
    frame.to_parquet(extract / "patients.parquet")
    out = dc.ols("y ~ C(sex)", frame, dataset="patients")
    sidecar = {"record": out.record().to_dict(), "sidecar_sha256_matches": True}
    text = out.to_csv() or ""
    assert checks.check_recorded(text.encode(), sidecar, extract, [])["mismatches"] == []
    first = text.split("\n")[1].split(",")
    padded = text.replace(",".join(first), ",".join([first[0], "  " + first[1] + "000", *first[2:]]), 1)
    assert padded != text
    assert checks.check_recorded(padded.encode(), sidecar, extract, [])["status"] == "fail"


def test_the_manifest_does_not_count_the_rules_that_hid_a_suppressed_cell(extract: Path) -> None:
    text, sidecar = _saved()
    result = checks.check_recorded(text.encode(), sidecar, extract, [])
    flagged = release.rules_flagged(SimpleNamespace(check_result=result))
    assert "zeros" not in flagged and "threshold" not in flagged, flagged


def test_a_models_last_digits_may_differ_but_the_checkers_are_told(extract: Path) -> None:
    frame = DATA.assign(y=range(len(DATA)))
    frame.to_parquet(extract / "patients.parquet")
    out = dc.ols("y ~ C(sex)", frame, dataset="patients")
    sidecar = {"record": out.record().to_dict(), "sidecar_sha256_matches": True}
    text = out.to_csv() or ""
    row = text.split("\n")[1].split(",")
    nudged = repr(float(row[1]) * (1 + 1e-8))
    changed = text.replace(",".join(row), ",".join([row[0], nudged, *row[2:]]), 1)
    result = checks.check_recorded(changed.encode(), sidecar, extract, [])
    assert result["mismatches"] == []  # within the refit's tolerance, written plainly: allowed
    assert any("last digits" in note for note in result["checker_notes"])
    assert not any("last digits" in note for note in result["notes"])  # the checkers', not the researcher's
    assert not checks.check_recorded(text.encode(), sidecar, extract, [])["checker_notes"]
