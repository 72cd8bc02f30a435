"""The one CSV writer for every report the gateway produces (register, audit export, invoices, finance).

A spreadsheet opening a CSV runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` (and, in some programs, one
that starts with a tab or a carriage return) as a formula: a project title like ``=HYPERLINK(...)`` on the public
register could then send a reader's other cells to someone else. Following the OWASP guidance, such a cell is
written with a leading single quote, which spreadsheets show as text. Leading white space does not hide a trigger
(some programs trim spaces and line breaks). A plain number (``-12.50``) cannot hold a formula and is written as it
is, so credit notes stay numbers.

Researchers' released output files are not written here: they leave byte for byte as the checkers saw them.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")


def needs_quote(text: str) -> bool:
    """A trigger first, or after any leading white space (spaces, line breaks, no-break spaces)."""
    return (text.startswith(TRIGGERS) or text.lstrip().startswith(TRIGGERS)) and \
        _PLAIN_NUMBER.fullmatch(text) is None


def neutralise(value: Any) -> str:
    """The text a cell is written as: ``None`` is empty, a formula trigger gets a leading single quote."""
    text = "" if value is None else str(value)
    return "'" + text if needs_quote(text) else text


class _Writable(Protocol):
    def write(self, text: str, /) -> Any: ...


class SafeWriter:
    """``csv.writer`` with every cell neutralised."""

    def __init__(self, stream: _Writable) -> None:
        self._writer = csv.writer(stream)

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow([neutralise(cell) for cell in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def writer(stream: _Writable) -> SafeWriter:
    return SafeWriter(stream)


def to_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A whole CSV document as text."""
    buffer = io.StringIO()
    out = SafeWriter(buffer)
    out.writerow(header)
    out.writerows(rows)
    return buffer.getvalue()


def dicts_to_text(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    """A CSV document from dictionaries keyed by ``columns`` (a missing key is an empty cell)."""
    return to_text(columns, ([row.get(c) for c in columns] for row in rows))


def stream_rows(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterable[str]:
    """The CSV a line at a time, for a streamed download of many rows."""
    buffer = io.StringIO()
    out = SafeWriter(buffer)
    out.writerow(header)
    for row in rows:
        out.writerow(row)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()
