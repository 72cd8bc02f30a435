"""Attack on rounding as a mitigation: ``out.rounded(base)`` sent any failing table to review, whatever the base.

``rounded(1)`` changes nothing (the 3 stays a 3), yet the verdict fell from fail to review, and a file that is only
"review" needs no exception to be approved (outputs.md: a failing file needs one). At the gateway the recorded base
was used as recorded, so a sidecar saying ``{"method": "rounding", "base": 1}`` did the same there. Only rounding to
at least the configured ``round_base`` blurs a small cell enough to hand it to a person.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import disclosure_control as dc
from gateway.outputs import checks

DATA = pd.DataFrame({"a": ["x"] * 3 + ["y"] * 37, "b": ["p"] * 40})


@pytest.mark.parametrize("base", [1, 2, 3, 4])
def test_rounding_to_less_than_the_round_base_is_no_mitigation(base: int) -> None:
    out = dc.crosstab("a", "b", data=DATA).rounded(base)
    assert out.status == "fail", f"rounded({base}) shows {out.to_csv()!r} and says {out.status}"


@pytest.mark.parametrize("base", [5, 10])
def test_rounding_to_the_round_base_or_more_goes_to_review(base: int) -> None:
    assert dc.crosstab("a", "b", data=DATA).rounded(base).status == "review"


def test_the_gateway_does_not_take_a_recorded_base_of_one_for_a_mitigation(tmp_path: Path) -> None:
    DATA.to_parquet(tmp_path / "patients.parquet")
    (tmp_path / "manifest.json").write_text(json.dumps({"tables": [{"dataset": "patients",
                                                                     "file": "patients.parquet"}]}))
    out = dc.crosstab("a", "b", data=DATA, dataset="patients").rounded(1)
    sidecar = {"record": out.record().to_dict(), "sidecar_sha256_matches": True}
    result = checks.check_recorded((out.to_csv() or "").encode(), sidecar, tmp_path, [])
    assert result["mismatches"] == []
    assert result["status"] == "fail"
