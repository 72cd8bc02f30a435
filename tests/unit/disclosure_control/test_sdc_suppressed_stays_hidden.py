"""Attack on the claim that a suppressed cell's count never leaves (outputs.md, disclosure-control.md).

Found by an insider trying to get a suppressed count out of a table that passes:

* a proportion table (``normalize=``) without margins was suppressed cell by cell only, although each of its rows
  (``index``), columns (``columns``) or the whole table (``all``) sums to 1: one hidden cell in such a line is 1 minus
  the others, and a proportion written to 16 digits is an exact fraction (35/38), so the hidden count came back.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

import disclosure_control as dc
from disclosure_control import suppression

# region x: 35 p and 3 q (the 3 must stay hidden); y and z large
DATA = pd.DataFrame({"a": ["x"] * 38 + ["y"] * 90 + ["z"] * 50,
                     "b": ["p"] * 35 + ["q"] * 3 + ["p"] * 50 + ["q"] * 40 + ["p"] * 30 + ["q"] * 20})


def _grid(output: dc.Output) -> list[list[str]]:
    import csv
    import io
    return list(csv.reader(io.StringIO(output.to_csv() or "")))


def test_a_row_proportion_does_not_give_back_the_suppressed_count_of_its_row() -> None:
    out = dc.crosstab("a", "b", data=DATA, normalize="index").suppressed()
    assert out.status == "pass"
    row = next(r for r in _grid(out) if r[0] == "x")
    visible = [Fraction(v).limit_denominator(100_000) for v in row[1:] if v]
    # what an attacker does with one visible proportion: 35/38 -> the row has 38 people, 35 of them p, so q is 3
    recovered = [f.denominator - f.numerator for f in visible if len(visible) == 1]
    assert 3 not in recovered, f"the suppressed count 3 is recoverable from {row}"
    assert row[1:] == ["", ""]


def test_a_whole_table_proportion_does_not_give_back_its_one_suppressed_cell() -> None:
    out = dc.crosstab("a", "b", data=DATA, normalize="all").suppressed()
    shown = [Fraction(v) for r in _grid(out)[1:] for v in r[1:] if v]
    total = 178
    # the cells sum to 1: with one hidden, 1 minus the others is its share of the 178 people
    assert len(shown) != 5 or round((1 - sum(shown)) * total) != 3, f"3 recoverable from\n{out.to_csv()}"


@pytest.mark.parametrize("normalize", ["index", "columns", "all", True])
@pytest.mark.parametrize("margins", [False, True])
def test_no_suppressed_proportion_is_the_only_hidden_cell_of_a_line_summing_to_one(normalize, margins) -> None:
    rng = np.random.default_rng(7)
    for _ in range(30):
        n = int(rng.integers(60, 400))
        df = pd.DataFrame({"a": rng.choice(list("uvwxy"), n, p=[0.02, 0.28, 0.3, 0.3, 0.1]),
                           "b": rng.choice(list("pqr"), n, p=[0.05, 0.5, 0.45])})
        out = dc.crosstab("a", "b", data=df, normalize=normalize, margins=margins).suppressed()
        hidden = out.hidden.to_numpy(dtype=bool)
        inner = hidden[: hidden.shape[0] - int(margins), : hidden.shape[1] - int(margins)]
        lines: list[np.ndarray] = []
        if normalize == "index":
            lines += list(inner)
        elif normalize == "columns":
            lines += list(inner.T)
        else:
            lines.append(inner.ravel())
        assert all(line.sum() != 1 for line in lines), f"a lone hidden proportion in\n{out.to_csv()}"
        assert suppression.recoverable(hidden, out.margin_row, out.margin_col) == []
