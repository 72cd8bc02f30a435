"""disclosure-control.md: which notebook verdicts the gateway's automatic check repeats.

Tables, models and survival curves are run again on the extract; a pass in the notebook is a pass there (unless the
differencing check finds a conflict). ``describe``, ``hist`` and the differentially private functions are not run
again: whatever the notebook said, the gateway checks their files by heuristics, and that is never a pass.
output-checkers.md: what those heuristics look at (not the first column's numbers).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import disclosure_control as dc
from gateway.outputs import checks

DATA = pd.DataFrame({"age": np.arange(20, 80), "sex": ["F", "M"] * 30, "bmi": np.linspace(18.0, 40.0, 60)})


def _submitted(output: dc.Output) -> SimpleNamespace:
    return SimpleNamespace(sdc_record={"record": output.record().to_dict(), "sidecar_sha256_matches": True},
                           extension="csv")


@pytest.mark.parametrize("make", [
    lambda: dc.describe(DATA, ["age", "bmi"], dataset="patients", extremes=False),
    lambda: dc.hist(DATA, "age", bins=[20, 40, 60, 80], dataset="patients"),
    lambda: dc.dp_count(DATA, epsilon=1.0, dataset="patients").output(),
], ids=["describe", "hist", "dp_count"])
def test_outputs_the_gateway_does_not_recompute_never_pass_its_automatic_check(make) -> None:
    output = make()
    assert output.status == "pass"  # the notebook's pre-check passes
    with pytest.raises(checks.CannotRecompute):
        checks.recompute(output.record().to_dict(), None)
    result = checks.check_file(_submitted(output), (output.to_csv() or "").encode(), None, [])
    assert result["method"] == "heuristic"
    assert result["status"] in {"review", "fail"}



def test_the_heuristic_check_reads_the_first_column_as_labels_and_flags_small_counts_only_after_it() -> None:
    """output-checkers.md says a small count in the first column is not flagged: if that changes, say so there."""
    after = checks.check_heuristic(b"region,count\nNorth,3\nSouth,40\n", "csv")
    first = checks.check_heuristic(b"count,region\n3,North\n40,South\n", "csv")
    assert after["status"] == "fail"
    assert [c["rules"] for c in after["cells"] if c["rules"]] == [["small_count"]]
    assert first["status"] == "review"
    assert not [c for c in first["cells"] if c["rules"]]
