"""Suppression (primary and secondary) and rounding."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

import disclosure_control as dc
from disclosure_control import suppression


def test_secondary_suppression_protects_a_lone_small_cell() -> None:
    df = pd.DataFrame(
        {"a": ["x"] * 3 + ["x"] * 40 + ["y"] * 30 + ["y"] * 25, "b": ["p"] * 3 + ["q"] * 40 + ["p"] * 30 + ["q"] * 25}
    )
    out = dc.crosstab(df.a, df.b, margins=True)
    assert out.cell_status.loc["x", "p"] == "fail"
    hidden = out.suppressed()
    table = hidden.table
    assert np.isnan(table.loc["x", "p"])
    # with the totals shown, x/p = total - x/q; so another cell in its row and column is hidden
    assert suppression.recoverable(hidden.hidden.to_numpy(), True, True) == []
    assert hidden.mitigation == {"method": "suppression", "primary": 1, "secondary": 3}
    assert hidden.status == "pass"
    assert (hidden.cell_status == "suppressed").to_numpy().sum() == 4
    assert out.table.loc["x", "p"] == 3  # the original is untouched


def test_suppression_without_margins_hides_only_failing_cells() -> None:
    df = pd.DataFrame({"a": ["x"] * 3 + ["y"] * 30, "b": ["p"] * 3 + ["p"] * 30})
    out = dc.crosstab(df.a, df.b).suppressed()
    assert out.mitigation["secondary"] == 0
    assert np.isnan(out.table.loc["x", "p"]) and out.table.loc["y", "p"] == 30


@settings(max_examples=80, deadline=None)
@given(cells=st.lists(st.lists(st.integers(0, 30), min_size=2, max_size=5), min_size=2, max_size=5))
def test_secondary_suppression_leaves_no_line_with_a_single_hidden_cell(cells: list[list[int]]) -> None:
    width = min(len(r) for r in cells)
    inner = np.array([r[:width] for r in cells], dtype=float)
    table = np.zeros((inner.shape[0] + 1, width + 1))
    table[:-1, :-1] = inner
    table[-1, :-1] = inner.sum(axis=0)
    table[:-1, -1] = inner.sum(axis=1)
    table[-1, -1] = inner.sum()
    primary = (table > 0) & (table < 10)
    hidden = suppression.secondary(primary, table, True, True)
    assert (hidden | ~primary).all()  # every primary cell stays hidden
    assert suppression.recoverable(hidden, True, True) == []


def test_rounding_counts_and_status() -> None:
    df = pd.DataFrame({"a": ["x"] * 3 + ["y"] * 37, "b": ["p"] * 40})
    out = dc.crosstab(df.a, df.b)
    rounded = out.rounded(5)
    assert rounded.table["p"].tolist() == [5.0, 35.0]
    assert rounded.status == "review"  # rounding blurs the 3 but a checker decides
    assert rounded.record().mitigation == {"method": "rounding", "base": 5}
    big = pd.DataFrame({"a": ["x"] * 23 + ["y"] * 37, "b": ["p"] * 60})
    assert dc.crosstab(big.a, big.b).rounded(10).table["p"].tolist() == [20.0, 40.0]


def test_rounding_a_normalised_table_rounds_the_counts_behind_it() -> None:
    df = pd.DataFrame({"a": ["x"] * 13 + ["x"] * 12 + ["y"] * 50, "b": ["p"] * 13 + ["q"] * 12 + ["p"] * 50})
    out = dc.crosstab(df.a, df.b, normalize="index").rounded(5)
    assert out.table.loc["x", "p"] == 15 / 25  # 13 -> 15, 12 -> 10, row total 25 -> 25
    assert out.table.loc["x", "q"] == 10 / 25


def test_models_cannot_be_suppressed() -> None:
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.random(50), "y": rng.random(50)})
    out = dc.ols("y ~ x", df)
    try:
        out.suppressed()
    except ValueError as err:
        assert "model" in str(err)
    else:
        raise AssertionError("a model output was suppressed")


def test_the_summary_describes_a_mitigation_in_a_sentence_not_a_mapping() -> None:
    """Finding 5: the summary read "mitigation applied: {'method': 'suppression', ...}"."""
    from disclosure_control.output import describe_mitigation

    assert describe_mitigation({"method": "suppression", "primary": 1, "secondary": 2}) == (
        "1 cell suppressed because a rule flagged it, and 2 more so that it cannot be worked out from the totals.")
    assert describe_mitigation({"method": "suppression", "primary": 3, "secondary": 0}) == (
        "3 cells suppressed because a rule flagged them.")
    assert describe_mitigation({"method": "rounding", "base": 5}) == "every shown value rounded to a multiple of 5."
    frame = pd.DataFrame({"region": ["North"] * 12 + ["South"] * 3, "sex": ["F"] * 15})
    summary = dc.crosstab("region", "sex", data=frame).suppressed().summary
    assert "{" not in summary and "mitigation applied: " in summary
