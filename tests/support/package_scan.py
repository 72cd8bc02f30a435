"""Decode a release package and look for anything that must not leave: per-cell counts or values of any kind,
and in particular the count or value of any cell the checks suppressed.

Used on every package the test suite publishes (tests/conftest.py wraps ``release.publish``), so a leak fails
the test that produced it, whichever test that is.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path
from typing import Any

FORBIDDEN_CELL_KEYS = {"count", "counts", "value", "values", "expected"}


def suppressed_cells(item: Any) -> list[dict[str, Any]]:
    """The suppressed cells of a file, from the checker's record and the researcher's sidecar."""
    found = []
    for record in ((item.check_result or {}).get("record"), (item.sdc_record or {}).get("record")):
        for cell in (record or {}).get("cells", []):
            if cell.get("status") == "suppressed":
                found.append(cell)
    return found


def _walk(node: Any, path: str, problems: list[str], secrets: list[dict[str, Any]]) -> None:
    if isinstance(node, dict):
        if {"row", "column"} <= set(node) and FORBIDDEN_CELL_KEYS & set(node):
            problems.append(f"{path}: a per-cell entry carries {sorted(FORBIDDEN_CELL_KEYS & set(node))}")
        for cell in secrets:
            if node.get("row") == cell.get("row") and node.get("column") == cell.get("column"):
                numbers = [v for v in node.values() if isinstance(v, int | float) and not isinstance(v, bool)]
                if cell.get("count") in numbers:
                    problems.append(f"{path}: the suppressed cell {cell['row']}/{cell['column']} shows its count")
                if node.get("status") == "suppressed" and node.get("rules"):  # "zeros" says the count is 0
                    problems.append(f"{path}: the suppressed cell {cell['row']}/{cell['column']} names the rules "
                                    "that hid it")
        for key, value in node.items():
            if isinstance(value, str) and value.endswith("suppressed; ") and value != "suppressed; ":
                problems.append(f"{path}.{key}: a suppressed cell's outcome names the checks that hid it")
        for key, value in node.items():
            _walk(value, f"{path}.{key}", problems, secrets)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _walk(value, f"{path}[{i}]", problems, secrets)


def _csv_cell(grid: list[list[str]], row: list[Any], column: list[Any]) -> str | None:
    """The text at (row label, column label) of a CSV written by pandas (one header row, one index column)."""
    if not grid or len(row) != 1 or len(column) != 1:
        return None
    header = grid[0]
    try:
        j = header.index(str(column[0]))
    except ValueError:
        return None
    for line in grid[1:]:
        if line and line[0] == str(row[0]):
            return line[j] if j < len(line) else None
    return None


def scan_package(path: Path, request: Any) -> list[str]:
    """Every problem found in the package at ``path`` for the approved ``request`` (empty: nothing leaks)."""
    problems: list[str] = []
    files = {f"outputs/{item.path}": item for item in request.files if item.kind == "output"}
    secrets = [cell for item in files.values() for cell in suppressed_cells(item)]
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            data = archive.read(name)
            if name.endswith(".json"):
                try:
                    document = json.loads(data)
                except ValueError:
                    problems.append(f"{name} is not JSON")
                    continue
                _walk(document, name, problems, secrets if name in {"manifest.json", "results.json"} else [])
            item = files.get(name)
            if item is not None and name.endswith(".csv"):
                grid = list(csv.reader(io.StringIO(data.decode("utf-8-sig", errors="replace"))))
                for cell in suppressed_cells(item):
                    shown = _csv_cell(grid, cell.get("row", []), cell.get("column", []))
                    if shown not in (None, ""):  # not even blanks or "nan": spaces can count
                        problems.append(f"{name}: suppressed cell {cell['row']}/{cell['column']} shows {shown!r}")
    return problems
