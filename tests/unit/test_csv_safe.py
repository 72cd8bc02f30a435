"""The shared CSV writer: no cell it writes can start a spreadsheet formula, and nothing else is changed."""

from __future__ import annotations

import csv
import io

from hypothesis import given
from hypothesis import strategies as st

from gateway import csv_safe

# Text biased towards the characters that matter: triggers, spaces, quotes, separators and line breaks.
CELL = st.text(alphabet=st.sampled_from(list("=+-@\t\r\n '\",;0123456789.abcAZ\u00a0\u3000é")) | st.characters(),
               max_size=12)


def _read(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


@given(st.lists(st.lists(CELL, min_size=1, max_size=5), max_size=5))
def test_no_cell_can_start_a_formula_and_each_reads_back_as_written(rows: list[list[str]]) -> None:
    text = csv_safe.to_text(["a"], rows)
    read = _read(text)
    assert read[0] == ["a"]
    for written, original in zip(read[1:], rows, strict=True):
        assert len(written) == len(original)
        for cell, value in zip(written, original, strict=True):
            stripped = cell.lstrip()
            is_number = csv_safe._PLAIN_NUMBER.fullmatch(cell) is not None
            assert is_number or not stripped.startswith(csv_safe.TRIGGERS), repr(cell)
            # the only change is one leading quote, and only where a trigger needed it
            assert cell == value or (cell == "'" + value and csv_safe.needs_quote(value)), (cell, value)


def test_the_owasp_examples_and_numbers() -> None:
    assert csv_safe.neutralise('=HYPERLINK("x")') == '\'=HYPERLINK("x")'
    assert csv_safe.neutralise("@SUM(A1)") == "'@SUM(A1)"
    assert csv_safe.neutralise("+1+1") == "'+1+1"
    assert csv_safe.neutralise("-1+1") == "'-1+1"
    assert csv_safe.neutralise("\t=1") == "'\t=1"
    assert csv_safe.neutralise("\r=1") == "'\r=1"
    assert csv_safe.neutralise("  =1") == "'  =1"  # leading spaces do not hide it
    assert csv_safe.neutralise("\n=1") == "'\n=1" and csv_safe.neutralise("\u3000@x") == "'\u3000@x"
    assert csv_safe.neutralise("-12.50") == "-12.50" and csv_safe.neutralise(-3) == "-3"  # numbers stay numbers
    assert csv_safe.neutralise(None) == "" and csv_safe.neutralise("Asthma") == "Asthma"


def test_a_streamed_export_is_the_same_document() -> None:
    rows = [["=1", "x"], ["2", "@y"]]
    assert "".join(csv_safe.stream_rows(["h1", "h2"], rows)) == csv_safe.to_text(["h1", "h2"], rows)
    assert "".join(csv_safe.stream_rows(["h"], [])) == csv_safe.to_text(["h"], [])
