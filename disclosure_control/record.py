"""Machine-readable record of one checked output.

The record says exactly what was computed (dataset, variables, filters, statistic), with which
rules and parameters, by which library version, and the verdict of every cell. It is plain JSON
so the gateway can store it beside the output request and a later check (differencing) can
re-read it without the microdata.
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
