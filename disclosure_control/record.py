"""Machine-readable record of one checked output, in two forms.

``Record`` is the checker's form: exactly what was computed (dataset, variables, filters,
statistic), with which rules and parameters, by which library version, and the verdict, value and
contributor count of every cell. It is plain JSON so the gateway can store it beside the output
request and a later check (differencing) can re-read it without the microdata. It stays inside
the secure environment: the count of a suppressed cell is exactly what suppression hides.

``PublicRecord`` (``Record.public()``) is what may leave with a released output: the same query,
rules, verdicts and rule names per cell, but no cell value, no count and no free-text note (notes
can carry numbers such as how many rows were dropped).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .version import __version__

LIBRARY_NAME = "londonsde.disclosure_control"


def json_label(value: Any) -> Any:
    """A table label or cell value as JSON: numbers stay numbers, everything else a string."""
    if isinstance(value, tuple):
        return [json_label(v) for v in value]
    if value is None:
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return None if np.isnan(value) else float(value)
    if isinstance(value, pd.Timestamp | dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, pd.Interval):
        return str(value)
    return str(value)


@dataclass
class CellVerdict:
    row: list[Any]
    column: list[Any]
    value: float | None
    count: int | None
    status: str
    rules: list[str]

    def key(self) -> tuple[str, str]:
        return json.dumps(self.row), json.dumps(self.column)


@dataclass
class Record:
    kind: str
    query: dict[str, Any]
    rules: dict[str, Any]
    status: str
    summary: str
    cells: list[CellVerdict]
    checks: dict[str, str] = field(default_factory=dict)
    mitigation: dict[str, Any] | None = None
    epsilon: float | None = None
    # models: every cell of the tables the model summarises (term, category, outcome class, count, verdict,
    # rules); checker-only evidence, like the counts of the cells above
    implied: list[dict[str, Any]] = field(default_factory=list)
    library: dict[str, str] = field(default_factory=lambda: {"name": LIBRARY_NAME, "version": __version__})
    uid: str = field(default_factory=lambda: uuid.uuid4().hex)
    created_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())
    # the rows the query's filters select, as ``filters.effective`` writes them from the data (set where the data
    # is at hand, the gateway's recomputation): what the differencing check compares; checker's evidence only
    population: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        values = dict(data)
        values["cells"] = [CellVerdict(**c) for c in data.get("cells", [])]
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> Record:
        return cls.from_dict(json.loads(text))

    def cell_map(self) -> dict[tuple[str, str], CellVerdict]:
        return {c.key(): c for c in self.cells}

    def public(self) -> PublicRecord:
        """The form that may leave the environment: verdicts and rule names, no cell values or counts."""
        return to_public(self)


# --- the public form: what leaves the environment -----------------------------------------------------------

PUBLIC_FORMAT = "londonsde.public_record/1"


@dataclass
class PublicCell:
    """A cell's labels, verdict and the rules that flagged it: never its value or count (nor, for a suppressed cell,
    the rules that hid it)."""

    row: list[Any]
    column: list[Any]
    status: str
    rules: list[str]


def public_summary(kind: str, status: str, cells: list[PublicCell], checks: dict[str, str],
                   mitigation: dict[str, Any] | None) -> str:
    """One plain sentence per fact, made only from verdicts and rule names (no numbers from the data)."""
    flagged: dict[str, int] = {}
    for cell in cells:
        for rule in cell.rules:
            flagged[rule] = flagged.get(rule, 0) + 1
    suppressed = sum(cell.status == "suppressed" for cell in cells)
    parts = [f"Verdict {status}: {kind}, {len(cells)} cells checked."]
    if flagged:
        parts.append("Rules that flagged cells: " + ", ".join(f"{rule} ({n} {'cell' if n == 1 else 'cells'})"
                                                              for rule, n in sorted(flagged.items())) + ".")
    whole = sorted(name for name, verdict in checks.items() if verdict != "pass")
    if whole:
        parts.append("Whole-output checks not passed: " + ", ".join(whole) + ".")
    if mitigation and mitigation.get("method") == "suppression":
        parts.append(f"{suppressed} {'cell was' if suppressed == 1 else 'cells were'} suppressed.")
    elif mitigation and mitigation.get("method") == "rounding":
        parts.append(f"Values were rounded to a base of {int(mitigation.get('base') or 0)}.")
    return " ".join(parts)


@dataclass
class PublicRecord:
    """What was computed and which rules it passed, without any cell value or count (see the module doc)."""

    kind: str
    query: dict[str, Any]
    rules: dict[str, Any]
    status: str
    summary: str
    cells: list[PublicCell]
    checks: dict[str, str] = field(default_factory=dict)
    mitigation: dict[str, Any] | None = None
    epsilon: float | None = None
    library: dict[str, str] = field(default_factory=lambda: {"name": LIBRARY_NAME, "version": __version__})
    uid: str = ""
    created_at: str = ""
    format: str = PUBLIC_FORMAT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PublicRecord:
        values = {k: v for k, v in data.items() if k in PUBLIC_FIELDS}
        values["cells"] = [PublicCell(row=list(c["row"]), column=list(c["column"]), status=str(c["status"]),
                                      rules=[str(r) for r in c.get("rules", [])]) for c in data.get("cells", [])]
        return cls(**values)


PUBLIC_FIELDS = frozenset(PublicRecord.__dataclass_fields__)
_MITIGATION_KEYS = frozenset({"method", "base", "primary", "secondary"})


def _public_query(query: dict[str, Any]) -> dict[str, Any]:
    """The query as recorded, less anything that is not a plain description of what was computed."""
    return json.loads(json.dumps(query, default=str))


def to_public(record: Record) -> PublicRecord:
    # a suppressed cell says only that it is suppressed: the rule that hid it describes what it hides ("zeros" is
    # its count, 0; "threshold" against no rule tells a small cell from a secondary one beside a total)
    cells = [PublicCell(row=list(c.row), column=list(c.column), status=c.status,
                        rules=[] if c.status == "suppressed" else sorted(c.rules))
             for c in record.cells]
    mitigation = ({k: v for k, v in record.mitigation.items() if k in _MITIGATION_KEYS}
                  if record.mitigation else None)
    return PublicRecord(kind=record.kind, query=_public_query(record.query), rules=dict(record.rules),
                        status=record.status,
                        summary=public_summary(record.kind, record.status, cells, record.checks, mitigation),
                        cells=cells, checks=dict(record.checks), mitigation=mitigation, epsilon=record.epsilon,
                        library=dict(record.library), uid=record.uid, created_at=record.created_at)

