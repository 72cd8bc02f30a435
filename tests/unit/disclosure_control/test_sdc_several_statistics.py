"""Attack on suppression in a table of several statistics (``pivot_table(aggfunc=["count", "mean"], margins=True)``).

Such a table was suppressed cell by cell only (secondary suppression ran for one statistic alone), so with margins
the hidden group came straight back: its count is the "All" count minus the others (93 - 40 - 50 = 3), its sum the
"All" sum minus the others, and its mean (All mean x 93 - the others' means x counts) / 3: the mean of three people,
under a pass. And a group could be hidden in one statistic and shown in another (a mean hidden for dominance, with
its sum and count shown, is their quotient).
"""

from __future__ import annotations

import csv
import io

import numpy as np
import pandas as pd
import pytest

import disclosure_control as dc
from disclosure_control import suppression

RNG = np.random.default_rng(0)
DATA = pd.DataFrame({"a": ["x"] * 3 + ["y"] * 40 + ["z"] * 50, "v": RNG.normal(50, 10, 93).round(1),
                     "b": ["p", "q"] * 46 + ["p"]})


def grid(output: dc.Output) -> list[list[str]]:
    return list(csv.reader(io.StringIO(output.to_csv() or "")))


def test_the_hidden_count_and_mean_do_not_come_back_from_the_totals() -> None:
    out = dc.pivot_table(DATA, "v", "a", aggfunc=["count", "mean"], margins=True).suppressed()
    assert out.status == "pass"
    rows = {r[0]: r[1:] for r in grid(out)[3:]}
    counts = [rows[k][0] for k in ("x", "y", "z")]
    assert counts.count("") != 1, f"one hidden count beside a shown total:\n{out.to_csv()}"
    if counts.count("") == 0:
        pytest.fail("the small group's count is shown")


@pytest.mark.parametrize("aggfunc", [["count", "mean"], ["count", "sum"], ["sum", "mean"], ["count", "sum", "mean"],
                                     ["count", "median"]])
@pytest.mark.parametrize("columns", [None, "b"])
@pytest.mark.parametrize("margins", [False, True])
def test_every_statistic_of_a_hidden_group_is_hidden_and_no_line_has_one(aggfunc, columns, margins) -> None:
    out = dc.pivot_table(DATA, "v", "a", columns, aggfunc=aggfunc, margins=margins).suppressed()
    hidden = out.hidden.to_numpy(dtype=bool)
    width = hidden.shape[1] // len(aggfunc)
    blocks = [hidden[:, i * width:(i + 1) * width] for i in range(len(aggfunc))]
    assert all((b == blocks[0]).all() for b in blocks), f"a group hidden in one statistic only:\n{out.to_csv()}"
    assert blocks[0].any(), "the group of 3 is hidden"
    if margins:
        assert suppression.recoverable(blocks[0], True, columns is not None) == [], out.to_csv()
