"""Re-identification risk of a released table: k-anonymity over its quasi-identifiers.

Records sharing every quasi-identifier value form an equivalence class. A record in a class
smaller than k could be singled out by someone who knows those facts about a person, so an
extract with any such record is flagged and held for the data custodian. The report also
says which columns drive the small classes, so the custodian knows what to coarsen.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

COUNT = "count_all"


@dataclass(frozen=True)
class ColumnDriver:
    column: str
    distinct_values: int
    records_below_k_alone: int  # using this column as the only quasi-identifier
    records_below_k_without: int  # using every quasi-identifier except this one
    reduction_if_removed: int  # how many records would leave small classes without it


@dataclass(frozen=True)
class RiskReport:
    k: int
    quasi_identifiers: list[str]
    records: int
    equivalence_classes: int
    smallest_class: int
    records_below_k: int
    share_below_k: float
    unique_records: int
    classes_below_k_by_size: dict[int, int]  # class size (< k) -> number of such classes
    drivers: list[ColumnDriver] = field(default_factory=list)

    @property
    def flagged(self) -> bool:
        return self.records_below_k > 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["classes_below_k_by_size"] = {str(s): n for s, n in self.classes_below_k_by_size.items()}
        data["flagged"] = self.flagged
        return data

    def summary(self) -> dict[str, Any]:
        """The figures a manifest carries; the full report sits beside it."""
        return {
            "k": self.k,
            "quasi_identifiers": self.quasi_identifiers,
            "records": self.records,
            "equivalence_classes": self.equivalence_classes,
            "smallest_class": self.smallest_class,
            "records_below_k": self.records_below_k,
            "share_below_k": self.share_below_k,
            "flagged": self.flagged,
            "main_drivers": [d.column for d in self.drivers if d.reduction_if_removed > 0][:3],
        }


def equivalence_classes(table: pa.Table, columns: list[str]) -> pa.Table:
    """One row per equivalence class: its quasi-identifier values and its size (``count_all``).

    Missing values form a class of their own, as an attacker would see them.
    """
    if table.num_rows == 0:
        return pa.table({**{c: table.column(c) for c in columns}, COUNT: pa.array([], pa.int64())})
    return table.select(columns).group_by(columns, use_threads=False).aggregate([([], COUNT)])


def class_sizes(table: pa.Table, columns: list[str]) -> np.ndarray:
    if not columns:  # no quasi-identifiers: everyone is in one class
        return np.array([table.num_rows] if table.num_rows else [], dtype=np.int64)
    return equivalence_classes(table, columns).column(COUNT).to_numpy()


def _below(sizes: np.ndarray, k: int) -> int:
    return int(sizes[sizes < k].sum())


def assess(table: pa.Table, quasi_identifiers: list[str], k: int) -> RiskReport:
    """k-anonymity report over ``quasi_identifiers`` of ``table`` (one row per released patient)."""
    if k < 2:
        raise ValueError("k must be at least 2")
    sizes = class_sizes(table, quasi_identifiers)
    records = table.num_rows
    below = _below(sizes, k)
    small, counts = np.unique(sizes[sizes < k], return_counts=True)
    drivers = []
    for column in quasi_identifiers:
        rest = [c for c in quasi_identifiers if c != column]
        without = _below(class_sizes(table, rest), k)
        drivers.append(
            ColumnDriver(
                column=column,
                distinct_values=len(class_sizes(table, [column])),
                records_below_k_alone=_below(class_sizes(table, [column]), k),
                records_below_k_without=without,
                reduction_if_removed=below - without,
            )
        )
    drivers.sort(key=lambda d: (-d.reduction_if_removed, -d.records_below_k_alone, d.column))
    return RiskReport(
        k=k,
        quasi_identifiers=list(quasi_identifiers),
        records=records,
        equivalence_classes=len(sizes),
        smallest_class=int(sizes.min()) if len(sizes) else 0,
        records_below_k=below,
        share_below_k=round(below / records, 6) if records else 0.0,
        unique_records=int((sizes == 1).sum()),
        classes_below_k_by_size={int(s): int(n) for s, n in zip(small, counts, strict=True)},
        drivers=drivers,
    )
