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
import pyarrow.compute as pc

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
            # ranked: biggest gain from dropping the column, then rarest on its own, then most varied
            "main_drivers": [d.column for d in self.drivers[:3]] if self.flagged else [],
        }


def equivalence_classes(table: pa.Table, columns: list[str]) -> pa.Table:
    """One row per equivalence class: its quasi-identifier values and its size (``count_all``).

    Missing values form a class of their own, as an attacker would see them.
    """
    if table.num_rows == 0:
        return pa.table({**{c: table.column(c) for c in columns}, COUNT: pa.array([], pa.int64())})
    return table.select(columns).group_by(columns, use_threads=False).aggregate([([], COUNT)])


def _codes(table: pa.Table, column: str) -> tuple[np.ndarray, int]:
    """Integer code per record for one column (missing values get a code of their own)."""
    encoded = pc.dictionary_encode(table.column(column).combine_chunks())
    cardinality = len(encoded.dictionary) + 1
    codes = pc.fill_null(encoded.indices, cardinality - 1).to_numpy(zero_copy_only=False)
    return codes.astype(np.int64), cardinality


def _sizes_from_codes(codes: list[tuple[np.ndarray, int]], records: int) -> np.ndarray:
    """Equivalence-class sizes, combining per-column codes into one integer key per record."""
    if not codes:
        return np.array([records] if records else [], dtype=np.int64)
    key = np.zeros(records, dtype=np.int64)
    space = 1
    for column_codes, cardinality in codes:
        if space * cardinality >= 2**62:  # too many combinations for one integer: regroup the keys so far
            key = np.unique(key, return_inverse=True)[1].astype(np.int64)
            space = int(key.max()) + 1 if records else 1
        key = key * cardinality + column_codes
        space *= cardinality
    return np.unique(key, return_counts=True)[1].astype(np.int64)


def class_sizes(table: pa.Table, columns: list[str]) -> np.ndarray:
    """Size of every equivalence class over ``columns`` (order unspecified)."""
    return _sizes_from_codes([_codes(table, c) for c in columns], table.num_rows)


def _below(sizes: np.ndarray, k: int) -> int:
    return int(sizes[sizes < k].sum())


def assess(table: pa.Table, quasi_identifiers: list[str], k: int) -> RiskReport:
    """k-anonymity report over ``quasi_identifiers`` of ``table`` (one row per released patient)."""
    if k < 2:
        raise ValueError("k must be at least 2")
    records = table.num_rows
    codes = {c: _codes(table, c) for c in quasi_identifiers}
    sizes = _sizes_from_codes(list(codes.values()), records)
    below = _below(sizes, k)
    small, counts = np.unique(sizes[sizes < k], return_counts=True)
    drivers = []
    for column in quasi_identifiers:
        without = _below(_sizes_from_codes([v for c, v in codes.items() if c != column], records), k)
        alone = _sizes_from_codes([codes[column]], records)
        drivers.append(
            ColumnDriver(
                column=column,
                distinct_values=len(alone),
                records_below_k_alone=_below(alone, k),
                records_below_k_without=without,
                reduction_if_removed=below - without,
            )
        )
    drivers.sort(key=lambda d: (-d.reduction_if_removed, -d.records_below_k_alone, -d.distinct_values, d.column))
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
