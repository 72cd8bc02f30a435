"""Per-cell evidence for the rules, computed in one pass of numpy reductions over cell ids.

ACRO re-runs ``pd.crosstab`` once per piece of evidence (count, sum, top-n, max, negatives) and
computes the top-n sums with a Python function per cell. Here cells are dense integer ids, so
counts and sums are ``np.bincount`` and extremes are ``np.maximum.at``/``np.minimum.at``; the
n largest values per cell are found by taking out one largest value per cell n times. That is
where the speed in ``bench/sdc_vs_acro.py`` comes from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass
class CellStats:
    """Evidence per cell; arrays of length ``n_cells`` (empty cells have count 0, NaN extremes)."""

    count: np.ndarray  # rows in the cell
    n_values: np.ndarray  # non-missing values in the cell (the contributors)
    n_missing: np.ndarray
    n_negative: np.ndarray
    total: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray
    second: np.ndarray  # second largest value (0 when fewer than two values)
    top_n_sum: np.ndarray  # sum of the nk_n largest values


def _extreme(ufunc: np.ufunc, start: float, ids: np.ndarray, vals: np.ndarray, n_cells: int) -> np.ndarray:
    out = np.full(n_cells, start)
    ufunc.at(out, ids, vals)
    return out


def cell_stats(
    cell_ids: np.ndarray,
    values: np.ndarray,
    n_cells: int,
    nk_n: int,
    dominance: bool = True,
    extremes: bool = True,
) -> CellStats:
    """Evidence for value statistics. ``cell_ids`` < 0 marks rows outside every cell.

    ``dominance=False`` skips the evidence only the dominance rules use (``n_negative``,
    ``second``, ``top_n_sum`` stay 0); ``extremes=False`` leaves ``minimum``/``maximum`` NaN for
    a caller that reads them off values it sorts anyway.
    """
    ids = np.asarray(cell_ids, dtype=np.intp)
    vals = np.asarray(values, dtype=float)
    if len(ids) and ids.min() < 0:
        keep = ids >= 0
        ids, vals = ids[keep], vals[keep]
    count = np.bincount(ids, minlength=n_cells).astype(np.int64)
    nan = np.isnan(vals)
    if not nan.any():
        n_missing = np.zeros(n_cells, dtype=np.int64)
        ids_p, vals_p = ids, vals
    else:
        n_missing = np.bincount(ids[nan], minlength=n_cells).astype(np.int64)
        ids_p, vals_p = ids[~nan], vals[~nan]
    n_values = count - n_missing
    if dominance:
        n_negative = np.bincount(ids_p[vals_p < 0], minlength=n_cells).astype(np.int64)
    else:
        n_negative = np.zeros(n_cells, dtype=np.int64)
    total = np.bincount(ids_p, weights=vals_p, minlength=n_cells)
    empty = n_values == 0
    if not (extremes or dominance):
        nothing = np.full(n_cells, np.nan)
        return CellStats(
            count, n_values, n_missing, n_negative, total, nothing, nothing.copy(), np.zeros(n_cells), np.zeros(n_cells)
        )
    minimum = _extreme(np.minimum, np.inf, ids_p, vals_p, n_cells)
    current = _extreme(np.maximum, -np.inf, ids_p, vals_p, n_cells)
    maximum = np.where(empty, np.nan, current)
    minimum[empty] = np.nan

    second = np.zeros(n_cells)
    top_n_sum = np.zeros(n_cells)
    if dominance and len(vals_p):
        passes = max(nk_n, 2)
        remaining = vals_p.copy()
        for rank in range(passes):
            top = np.where(np.isfinite(current), current, 0.0)
            if rank == 1:
                second = top
            if rank < nk_n:
                top_n_sum = top_n_sum + top
            if rank + 1 == passes:
                break
            # take one largest value out of each cell (the first on ties: equal values are
            # different people), then find the new largest
            hits = np.flatnonzero(remaining == current[ids_p])
            _, first = np.unique(ids_p[hits], return_index=True)
            remaining[hits[first]] = -np.inf
            current = _extreme(np.maximum, -np.inf, ids_p, remaining, n_cells)
    return CellStats(count, n_values, n_missing, n_negative, total, minimum, maximum, second, top_n_sum)


def grouped(cell_ids: np.ndarray, values: np.ndarray, n_cells: int) -> pd.core.groupby.SeriesGroupBy:
    """A pandas GroupBy over cells 0..n_cells-1 that reuses the ids (no re-hashing), empty cells kept."""
    dtype = pd.CategoricalDtype(pd.RangeIndex(n_cells))
    codes = pd.Categorical.from_codes(np.asarray(cell_ids), dtype=dtype, validate=False)
    return pd.Series(values).groupby(codes, observed=False, sort=True)


_LOOP_LIMIT = 4096  # above this many cells a per-cell loop costs more than pandas' grouped sort


def _radix_dtype(n_cells: int) -> type[np.unsignedinteger]:
    if n_cells <= np.iinfo(np.uint8).max:
        return np.uint8
    if n_cells <= np.iinfo(np.uint16).max:
        return np.uint16
    return np.uint32


def can_sort_by_cell(n_cells: int) -> bool:
    return n_cells <= _LOOP_LIMIT


def sorted_by_cell(cell_ids: np.ndarray, values: np.ndarray, n_cells: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Values grouped by cell and sorted within each cell, plus each cell's start offset.

    A stable radix sort of the small-integer cell ids groups the values; each cell's slice is
    then sorted in place (numpy's SIMD sort), which beats pandas' grouped sort for few cells.
    None when there are too many cells for the per-cell loop to pay off.
    """
    if n_cells > _LOOP_LIMIT:
        return None
    order = np.argsort(np.asarray(cell_ids).astype(_radix_dtype(n_cells)), kind="stable")
    ordered = np.asarray(values, dtype=float)[order]
    bounds = np.concatenate([[0], np.cumsum(np.bincount(cell_ids, minlength=n_cells))])
    for cell in range(n_cells):
        ordered[bounds[cell] : bounds[cell + 1]].sort()
    return ordered, bounds


def quantiles(
    cell_ids: np.ndarray,
    values: np.ndarray,
    n_cells: int,
    q: float,
    presorted: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """The q-quantile of each cell (linear interpolation, as pandas); NaN for empty cells.

    Values are not missing and ids are all >= 0 here.
    """
    prepared = presorted or sorted_by_cell(cell_ids, values, n_cells)
    if prepared is None:
        return grouped(cell_ids, values, n_cells).quantile(q).to_numpy(dtype=float)
    ordered, bounds = prepared
    starts, sizes = bounds[:-1], np.diff(bounds)
    out = np.full(n_cells, np.nan)
    has = sizes > 0
    position = starts[has] + q * (sizes[has] - 1)
    lower = np.floor(position).astype(np.int64)
    upper = np.minimum(lower + 1, starts[has] + sizes[has] - 1)
    fraction = position - lower
    out[has] = ordered[lower] + fraction * (ordered[upper] - ordered[lower])
    return out


def variances(cell_ids: np.ndarray, values: np.ndarray, n: np.ndarray, total: np.ndarray, ddof: int = 1) -> np.ndarray:
    """Sample variance per cell from counts and totals already known (NaN where n <= ddof)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / n
        deviation = mean[cell_ids]
        np.subtract(values, deviation, out=deviation)
        np.square(deviation, out=deviation)
        squares = np.bincount(cell_ids, weights=deviation, minlength=len(n))
        return np.where(n > ddof, squares / np.where(n > ddof, n - ddof, 1), np.nan)
