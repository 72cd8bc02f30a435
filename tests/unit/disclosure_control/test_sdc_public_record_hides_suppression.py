"""Attack on the claim that a suppressed cell's count never leaves (outputs.md, disclosure-control.md).

The public record (released in manifest.json and results.json) kept, for a suppressed cell, the names of the rules
that flagged it: ``zeros`` says the hidden count is 0, which is exactly what suppressing a zero hides (and with a
total shown, a zero and one secondary cell in a row give both back).
"""

from __future__ import annotations

import pandas as pd

import disclosure_control as dc
from disclosure_control.acro_format import PublicEntry, sacro_results


def _zero_table() -> dc.Output:
    df = pd.DataFrame({"a": ["x"] * 40 + ["y"] * 60 + ["z"] * 70,
                       "b": ["p"] * 40 + ["p"] * 30 + ["q"] * 30 + ["p"] * 35 + ["q"] * 35})
    out = dc.crosstab("a", "b", data=df, margins=True).suppressed()  # x,q is 0: suppressed as a zero
    assert out.status == "pass"
    return out


def test_the_public_record_of_a_suppressed_cell_says_only_that_it_is_suppressed() -> None:
    public = _zero_table().record().public()
    hidden = [c for c in public.cells if c.status == "suppressed"]
    assert hidden, "the zero was suppressed"
    assert [c.rules for c in hidden] == [[]] * len(hidden), "a suppressed cell's rules say what it hides"
    assert "zeros" not in public.summary and "threshold" not in public.summary
    assert "\"zeros\"" not in public.to_json()


def test_the_released_results_json_does_not_say_a_suppressed_cell_is_a_zero() -> None:
    public = _zero_table().record().public()
    document = sacro_results([PublicEntry(path="outputs/t.csv", record=public, status="pass")])
    entry = document["results"]["output_0"]
    assert "PresenceOfZeroCheck" not in str(entry), "results.json names the zero behind a suppressed cell"
    assert entry["outcome"]["q"]["x"] == "suppressed; "
