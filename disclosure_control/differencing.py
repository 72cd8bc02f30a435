"""Project-level differencing check across the records of a project's outputs.

Two safe outputs can be unsafe together: the count of everyone aged 18-65 and the count of
everyone aged 18-64 differ by the number aged exactly 65. Each cell of an output describes a
population (dataset, filters and the cell's categories); whenever one cell's population lies
inside another's and their counts differ by fewer than ``threshold`` people, subtracting them
reveals a small group. This covers nested subgroups, one extra category and date ranges that
extend one another. Partly overlapping ranges are caught when a third output covers the overlap.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from . import filters as filters_mod
from .config import DEFAULT_CONFIG, SDCConfig
from .output import Output
from .record import Record

_SUPPORTED = {"crosstab", "pivot_table", "describe"}


@dataclass(frozen=True)
class Population:
    record_uid: str
    dataset: str | None
    conditions: dict[str, dict[str, Any]]
    count: int
    cell: tuple[tuple[Any, ...], tuple[Any, ...]]


@dataclass(frozen=True)
class DifferencingFlag:
    new: Population
    earlier: Population
    difference: int

    def describe(self) -> str:
        inner, outer = (self.new, self.earlier) if self.new.count < self.earlier.count else (self.earlier, self.new)
        return (
            f"cell {list(self.new.cell)} and cell {list(self.earlier.cell)} "
            f"of output {self.earlier.record_uid} "
            f"differ by {self.difference} people ({outer.count} - {inner.count}); "
            f"one population lies inside the other"
        )


@dataclass(frozen=True)
class DifferencingReport:
    flags: list[DifferencingFlag]
    threshold: int

    @property
    def status(self) -> str:
        return "fail" if self.flags else "pass"

    @property
    def summary(self) -> str:
        if not self.flags:
            return (
                f"PASS: no cell differs from a cell of an earlier output by fewer than {self.threshold} contributors."
            )
        lines = [f"FAIL: {len(self.flags)} pair(s) of cells differ by fewer than {self.threshold} contributors:"]
        lines.extend(f"- {flag.describe()}" for flag in self.flags)
        return "\n".join(lines)


def _conditions(variables: list[str], labels: list[Any], margins_name: str | None) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, label in zip(variables, labels, strict=False):
        if label == margins_name or label == "":
            continue  # a margin cell: every category of this variable
        out[name] = {"in": [label]}
    return out


def populations(record: Record) -> list[Population]:
    """One population per cell whose contributor count is known."""
    if record.kind not in _SUPPORTED:
        return []
    query = record.query
    # the population as the gateway found it in the data when it has it (conditions that exclude nobody dropped,
    # ranges over few values as those values), else as the query wrote it
    base = filters_mod.normalise(record.population if record.population is not None else query.get("filters") or {})
    dataset = query.get("dataset")
    margins_name = query.get("margins_name") if query.get("margins") else None
    out: list[Population] = []
    seen: set[tuple[str, str]] = set()
    for cell in record.cells:
        if cell.count is None:
            continue
        if record.kind == "describe":
            if cell.row != ["count"]:
                continue
            conditions = dict(base)
        else:
            column = cell.column
            if len(query.get("aggfunc", [])) > 1:
                column = column[1:]  # first level names the statistic
            if not query.get("columns"):
                column = []
            own = {
                **_conditions(query.get("index", []), cell.row, margins_name),
                **_conditions(query.get("columns", []), column, margins_name),
            }
            conditions = {**base, **own}
            for name in set(base) & set(own):
                if not filters_mod.contains({name: base[name]}, {name: own[name]}):
                    conditions[name] = {"in": []}  # the category lies outside the filter: nobody
        key = cell.key()
        if key in seen:
            continue
        seen.add(key)
        out.append(Population(record.uid, dataset, conditions, int(cell.count), (tuple(cell.row), tuple(cell.column))))
    return out


def check_differencing(
    new: Record | Output, earlier: Iterable[Record], config: SDCConfig = DEFAULT_CONFIG
) -> DifferencingReport:
    """Flag cells of ``new`` that differ from a nested cell of an earlier record by < threshold people."""
    new_record = new.record() if isinstance(new, Output) else new
    fresh = populations(new_record)
    flags: list[DifferencingFlag] = []
    for old_record in earlier:
        if old_record.uid == new_record.uid:
            continue
        for old in populations(old_record):
            for cell in fresh:
                if cell.dataset != old.dataset:
                    continue
                difference = abs(cell.count - old.count)
                if difference == 0 or difference >= config.threshold:
                    continue
                bigger, smaller = (old, cell) if old.count > cell.count else (cell, old)
                if filters_mod.contains(bigger.conditions, smaller.conditions):
                    flags.append(DifferencingFlag(cell, old, difference))
    return DifferencingReport(flags, config.threshold)
