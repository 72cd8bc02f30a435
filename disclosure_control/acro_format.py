"""Export records to, and import them from, ACRO's ``results.json`` folder layout.

The folder holds ``results.json`` (one entry per output: status, type, properties, files with
their per-check cell lists, the per-cell outcome frame, summary, timestamp, comments,
exception), one CSV per output and ``config.json``, as ACRO 1.0.2 writes it, so the SACRO viewer
and ACRO users can open what this library checked. ``version`` names the ACRO layout followed;
``tool`` names this library. Our full record rides along in ``properties["londonsde"]`` so an
import is lossless; a folder written by ACRO itself is imported from its own fields.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .config import DEFAULT_CONFIG, SDCConfig
from .output import Output, whole_numbers
from .record import LIBRARY_NAME, CellVerdict, PublicRecord, Record
from .version import __version__

ACRO_LAYOUT_VERSION = "1.0.2"

# our rule name -> ACRO 1.0.2 check name (rules ACRO does not have keep our name)
TO_ACRO = {
    "threshold": "MinimumThresholdCheck",
    "zeros": "PresenceOfZeroCheck",
    "nk_dominance": "NKCheck",
    "p_percent": "PPercentCheck",
    "dof": "MinimumDoFCheck",
    "all_same": "AllSameValuesCheck",
    "missing": "MissingCheck",
}
# ACRO check names, 1.0.2 and the older short names, -> our rule name
FROM_ACRO = {
    **{acro: ours for ours, acro in TO_ACRO.items()},
    "threshold": "threshold",
    "p-ratio": "p_percent",
    "nk-rule": "nk_dominance",
    "all-values-are-same": "all_same",
    "negative": "negative",
    "missing": "missing",
}
_TYPES = {"ols": "regression", "logit": "regression", "probit": "regression"}


def _grid(record: Record) -> tuple[list[str], list[str], dict[tuple[str, str], CellVerdict]]:
    rows: list[str] = []
    cols: list[str] = []
    cells: dict[tuple[str, str], CellVerdict] = {}
    for cell in record.cells:
        row, col = cell.key()
        if row not in rows:
            rows.append(row)
        if col not in cols:
            cols.append(col)
        cells[(row, col)] = cell
    return rows, cols, cells


def _label(key: str) -> str:
    parts = json.loads(key)
    return str(parts[0]) if len(parts) == 1 else str(tuple(parts))


def _entry(uid: str, record: Record, files: list[str]) -> dict[str, Any]:
    rows, cols, cells = _grid(record)
    outcome: dict[str, dict[str, str]] = {}
    sdc: dict[str, Any] = {"summary": {}, "cells": {}}
    for j, col in enumerate(cols):
        column = outcome.setdefault(_label(col), {})
        for i, row in enumerate(rows):
            cell = cells.get((row, col))
            names = [TO_ACRO.get(r, r) for r in (cell.rules if cell else [])]
            column[_label(row)] = "".join(f"{n}; " for n in names) or "ok"
            for name in names:
                sdc["cells"].setdefault(name, []).append([i, j])
    sdc["summary"] = {name: len(positions) for name, positions in sdc["cells"].items()}
    for name, verdict in record.checks.items():
        sdc["summary"].setdefault(TO_ACRO.get(name, name), 0 if verdict == "pass" else 1)
    properties: dict[str, Any] = {"method": record.kind, "londonsde": record.to_dict()}
    if "dof" in record.query:
        properties["dof"] = record.query["dof"]
    if record.epsilon is not None:
        properties["epsilon"] = record.epsilon
    return {
        "uid": uid,
        "status": record.status,
        "type": _TYPES.get(record.kind, "table"),
        "properties": properties,
        "files": [{"name": name, "sdc": sdc} for name in files],
        "outcome": outcome,
        "command": json.dumps(record.query, sort_keys=True, default=str),
        "summary": record.summary,
        "timestamp": record.created_at,
        "comments": [],
        "exception": "",
        "fair": {"query": record.query, "library": record.library},
    }


def _table_of(record: Record) -> pd.DataFrame:
    rows, cols, cells = _grid(record)
    data = [[cells[(r, c)].value if (r, c) in cells else None for c in cols] for r in rows]
    return pd.DataFrame(data, index=[_label(r) for r in rows], columns=[_label(c) for c in cols])


def write_acro_results(items: list[Output | Record], folder: str | Path, config: SDCConfig = DEFAULT_CONFIG) -> Path:
    """Write ``results.json``, one CSV per output and ``config.json`` into a new ``folder``."""
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=False)
    results: dict[str, Any] = {}
    for i, item in enumerate(items):
        uid = f"output_{i}"
        record = item.record() if isinstance(item, Output) else item
        table = item.table if isinstance(item, Output) else _table_of(record)
        filename = f"{uid}_0.csv"
        whole_numbers(table).to_csv(path / filename)
        results[uid] = _entry(uid, record, [filename])
    document = {
        "version": ACRO_LAYOUT_VERSION,
        "tool": {"@type": "SoftwareApplication", "name": LIBRARY_NAME, "version": __version__},
        "results": results,
    }
    (path / "results.json").write_text(json.dumps(document, indent=4, default=str), encoding="utf-8")
    (path / "config.json").write_text(json.dumps(config.to_acro(), indent=4), encoding="utf-8")
    return path / "results.json"


def _from_acro_entry(uid: str, entry: dict[str, Any], rules: dict[str, Any]) -> Record:
    cells: list[CellVerdict] = []
    for col, column in (entry.get("outcome") or {}).items():
        for row, text in column.items():
            names = [part.strip() for part in str(text).split(";") if part.strip() and part.strip() != "ok"]
            ours = sorted({FROM_ACRO.get(n, n) for n in names})
            cells.append(
                CellVerdict(
                    row=[row],
                    column=[col],
                    value=None,
                    count=None,
                    status="pass" if not ours else entry.get("status", "fail"),
                    rules=ours,
                )
            )
    return Record(
        kind=str((entry.get("properties") or {}).get("method", entry.get("type", "unknown"))),
        query={"command": entry.get("command", "")},
        rules=rules,
        status=str(entry.get("status", "review")),
        summary=str(entry.get("summary", "")),
        cells=cells,
        uid=uid,
        created_at=str(entry.get("timestamp", "")),
        library={"name": "acro", "version": "unknown"},
    )


@dataclass
class AcroResult:
    """One output of an ACRO results.json as ACRO judged it: its verdict, files, exception and comments."""

    uid: str
    status: str
    kind: str
    method: str
    files: list[str]
    checks: dict[str, int]  # check name -> how many cells it flagged (ACRO's own names)
    summary: str
    command: str
    comments: list[str]
    exception: str
    record: Record

    def to_dict(self) -> dict[str, Any]:
        return {"uid": self.uid, "status": self.status, "kind": self.kind, "method": self.method, "files": self.files,
                "checks": self.checks, "summary": self.summary, "command": self.command, "comments": self.comments,
                "exception": self.exception}


def _text(value: Any, limit: int = 5000) -> str:
    return str(value if value is not None else "")[:limit]


def read_acro_document(document: Any, rules: dict[str, Any] | None = None) -> list[AcroResult]:
    """Every output of a parsed results.json (ACRO's or ours), with ACRO's verdict, exception and comments.

    Raises ValueError when the document is not a results.json at all.
    """
    if not isinstance(document, dict) or not isinstance(document.get("results"), dict):
        raise ValueError("not an ACRO results.json: no 'results' object")
    found: list[AcroResult] = []
    tool = document.get("tool") if isinstance(document.get("tool"), dict) else {}
    for uid, entry in document["results"].items():
        if not isinstance(entry, dict):
            raise ValueError(f"not an ACRO results.json: result {uid!r} is not an object")
        record = _from_acro_entry(str(uid), entry, rules or {})
        record.library = {"name": str(tool.get("name", "acro")), "version": str(document.get("version", ""))}
        files = [str(f.get("name")) for f in entry.get("files") or [] if isinstance(f, dict) and f.get("name")]
        checks: dict[str, int] = {}
        for item in entry.get("files") or []:
            summary = ((item.get("sdc") or {}).get("summary") or {}) if isinstance(item, dict) else {}
            for name, n in summary.items():
                if isinstance(n, int | float) and not isinstance(n, bool):
                    checks[str(name)] = checks.get(str(name), 0) + int(n)
        comments = entry.get("comments") or []
        found.append(AcroResult(
            uid=str(uid), status=_text(entry.get("status"), 20) or "review", kind=_text(entry.get("type"), 40),
            method=_text((entry.get("properties") or {}).get("method"), 60), files=files, checks=checks,
            summary=_text(entry.get("summary")), command=_text(entry.get("command")),
            comments=[_text(c, 2000) for c in (comments if isinstance(comments, list) else [comments])],
            exception=_text(entry.get("exception"), 5000), record=record))
    return found


def read_acro_results(location: str | Path) -> list[Record]:
    """Records from a ``results.json`` (or the folder holding it), ours or ACRO's."""
    path = Path(location)
    if path.is_dir():
        path = path / "results.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    config_path = path.parent / "config.json"
    rules = (
        SDCConfig.from_acro(json.loads(config_path.read_text(encoding="utf-8"))).to_dict()
        if config_path.exists()
        else {}
    )
    records: list[Record] = []
    for uid, entry in document.get("results", {}).items():
        ours = (entry.get("properties") or {}).get("londonsde")
        if ours:
            records.append(Record.from_dict(ours))
        else:
            record = _from_acro_entry(uid, entry, rules)
            tool = document.get("tool") or {}
            record.library = {
                "name": str(tool.get("name", "acro")),
                "version": str(document.get("version", "")),
            }
            records.append(record)
    return records


# --- the released form: SACRO-Viewer's results.json from public records only ----------------------------------

@dataclass
class PublicEntry:
    """One released file for ``sacro_results``: its path in the package and the public form of its record."""

    path: str
    record: PublicRecord | None  # None: a file checked by people only (an image, a text)
    status: str
    approved: bool = True
    comments: list[str] = field(default_factory=list)
    exception: str = ""


def _public_outcome(record: PublicRecord) -> tuple[dict[str, dict[str, str]], dict[str, Any]]:
    rows: list[str] = []
    cols: list[str] = []
    verdicts: dict[tuple[str, str], list[str]] = {}
    for cell in record.cells:
        row, col = json.dumps(cell.row), json.dumps(cell.column)
        if row not in rows:
            rows.append(row)
        if col not in cols:
            cols.append(col)
        names = [TO_ACRO.get(r, r) for r in cell.rules]
        if cell.status == "suppressed":
            names = [*names, "suppressed"]
        verdicts[(row, col)] = names
    outcome: dict[str, dict[str, str]] = {}
    sdc: dict[str, Any] = {"summary": {}, "cells": {}}
    for j, col in enumerate(cols):
        column = outcome.setdefault(_label(col), {})
        for i, row in enumerate(rows):
            names = verdicts.get((row, col), [])
            column[_label(row)] = "".join(f"{n}; " for n in names) or "ok"
            for name in names:
                sdc["cells"].setdefault(name, []).append([i, j])
    sdc["summary"] = {name: len(positions) for name, positions in sdc["cells"].items()}
    for name, verdict in record.checks.items():
        sdc["summary"].setdefault(TO_ACRO.get(name, name), 0 if verdict == "pass" else 1)
    return outcome, sdc


def sacro_results(entries: list[PublicEntry]) -> dict[str, Any]:
    """A results.json document SACRO-Viewer can open, holding nothing but public records.

    Each file's entry carries its verdict, the rules that flagged which cells (by position), the summary
    sentence of its public record, the checkers' comments and any exception; never a value or a count.
    """
    results: dict[str, Any] = {}
    for i, entry in enumerate(entries):
        uid = f"output_{i}"
        record = entry.record
        if record is not None:
            outcome, sdc = _public_outcome(record)
            properties: dict[str, Any] = {"method": record.kind, "londonsde_public": record.to_dict()}
            kind, command, summary, timestamp = (_TYPES.get(record.kind, "table"),
                                                 json.dumps(record.query, sort_keys=True, default=str),
                                                 record.summary, record.created_at)
        else:
            outcome, sdc = {}, {"summary": {}, "cells": {}}
            properties = {"method": "custom"}
            kind, command, summary, timestamp = "custom", "", "Checked by people only: no automatic record.", ""
        results[uid] = {
            "uid": uid,
            "status": entry.status,
            "type": kind,
            "properties": properties,
            "files": [{"name": entry.path, "sdc": sdc}],
            "outcome": outcome,
            "command": command,
            "summary": summary,
            "timestamp": timestamp,
            "comments": list(entry.comments),
            "exception": entry.exception,
            "released": entry.approved,
        }
    return {
        "version": ACRO_LAYOUT_VERSION,
        "tool": {"@type": "SoftwareApplication", "name": LIBRARY_NAME, "version": __version__},
        "results": results,
    }
