"""``crosstab`` and ``pivot_table``: pandas' tables, computed from microdata and checked.

Tables always show every combination of the categories seen (pandas' ``dropna=False``), because
an omitted empty cell discloses exactly what a shown zero would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from . import filters as filters_mod
from .config import DEFAULT_CONFIG, SDCConfig
from .evidence import evaluate, group_evidence, parse_aggfuncs
from .output import Output

Axis = str | pd.Series | Sequence[str] | Sequence[pd.Series] | None


def _axis(data: pd.DataFrame | None, spec: Axis, prefix: str) -> list[pd.Series]:
    if spec is None:
        return []
    items = [spec] if isinstance(spec, str | pd.Series | np.ndarray) else list(spec)
    out: list[pd.Series] = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            if data is None:
                raise ValueError(f"column name {item!r} given without data=")
            series = data[item]
        else:
            series = pd.Series(item) if not isinstance(item, pd.Series) else item
        if series.name is None:
            series = series.rename(f"{prefix}_{i}")
        out.append(series)
    return out


def _factorize(series: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Category codes (-1 = missing) and the categories; categoricals keep their own (small) codes."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        return series.cat.codes.to_numpy(), pd.Index(series.cat.categories)
    codes, uniques = pd.factorize(series, sort=True)
    return codes, pd.Index(uniques)


def _combine(parts: list[tuple[np.ndarray, pd.Index]], length: int) -> tuple[np.ndarray, int]:
    """Mixed-radix id of each row's category combination; -1 where any category is missing.

    Built in place in one int64 array: at a million rows every temporary costs milliseconds.
    """
    ids = np.zeros(length, dtype=np.int64)
    size = 1
    missing: np.ndarray | None = None
    for codes, cats in parts:
        ids *= len(cats)
        ids += codes
        if len(codes) and codes.min() < 0:
            missing = codes < 0 if missing is None else missing | (codes < 0)
        size *= len(cats)
    if missing is not None:
        ids[missing] = -1
    return ids, size


def _product(parts: list[tuple[np.ndarray, pd.Index]], names: list[Any]) -> pd.Index:
    if len(parts) == 1:
        return pd.Index(parts[0][1], name=names[0])
    return pd.MultiIndex.from_product([cats for _, cats in parts], names=names)


def _numeric(values: pd.Series) -> np.ndarray:
    if pd.api.types.is_float_dtype(values.dtype) and isinstance(values.dtype, np.dtype):
        return values.to_numpy(dtype=float, copy=False)
    return pd.to_numeric(values, errors="raise").to_numpy(dtype=float, na_value=np.nan)


def _with_margin(index: pd.Index, margins_name: str) -> pd.Index:
    if isinstance(index, pd.MultiIndex):
        extra = pd.MultiIndex.from_tuples([(margins_name,) + ("",) * (index.nlevels - 1)], names=index.names)
        return index.append(extra)
    return pd.Index([*list(index), margins_name], name=index.name, dtype=object)


def _describe(
    kind: str, rows: list[pd.Series], cols: list[pd.Series], values: pd.Series | None, aggfuncs: list[str]
) -> str:
    dims = " x ".join(str(s.name) for s in rows + cols)
    stat = ", ".join(aggfuncs)
    of = f" of {values.name}" if values is not None else ""
    return f"{kind} {dims}: {stat}{of}"


def build_table(
    kind: str,
    rows: list[pd.Series],
    cols: list[pd.Series],
    values: pd.Series | None,
    aggfuncs: list[str],
    *,
    margins: bool,
    margins_name: str,
    normalize: bool | str,
    config: SDCConfig,
    query: dict[str, Any],
) -> Output:
    """Compute the table and the evidence for every rule in one grouped pass per grouping."""
    if not rows:
        raise ValueError("at least one row variable is needed")
    length = len(rows[0])
    row_parts = [_factorize(s) for s in rows]
    col_parts = [_factorize(s) for s in cols]
    row_id, n_rows = _combine(row_parts, length)
    col_id, n_cols = _combine(col_parts, length) if cols else (np.zeros(length, dtype=np.int64), 1)
    all_valid = (length == 0 or row_id.min() >= 0) and (not cols or length == 0 or col_id.min() >= 0)
    valid = None if all_valid else (row_id >= 0) & (col_id >= 0)
    vals = None if values is None else _numeric(values)

    margin_col = margins and bool(cols)
    margin_row = margins
    if margins and any(str(margins_name) == str(label) for _, labels in [*row_parts, *col_parts] for label in labels):
        # as pandas refuses it: a total labelled like a category reads as that category, to people and to the
        # differencing check, which tells margins by their label (the real totals then went uncompared)
        raise ValueError(f"margins_name {margins_name!r} is also the label of a category: name the margins "
                         "something else")
    shape = (n_rows + int(margin_row), n_cols + int(margin_col))

    # (ids, number of groups, where the groups land in the extended grid)
    def within(ids: np.ndarray) -> np.ndarray:
        return ids if valid is None else np.where(valid, ids, -1)

    inner = row_id * n_cols + col_id if cols else row_id
    groupings: list[tuple[np.ndarray, int, Any]] = [
        (within(inner), n_rows * n_cols, (slice(0, n_rows), slice(0, n_cols)))
    ]
    if margin_col:
        groupings.append((within(row_id), n_rows, (slice(0, n_rows), n_cols)))
    if margin_row:
        groupings.append((within(col_id), n_cols, (n_rows, slice(0, n_cols))))
    if margin_row and margin_col:
        groupings.append((within(np.zeros(length, dtype=np.int64)), 1, (n_rows, n_cols)))

    blocks: list[tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]] = []
    evidence_grid: dict[str, np.ndarray] = {}
    if vals is None:
        groupings = groupings[:1]  # a count table's margins are sums of its cells
    for ids, n_groups, where in groupings:
        ev = group_evidence(ids, vals, n_groups, aggfuncs, config)
        for key, arr in ev.items():
            grid = evidence_grid.setdefault(key, np.full(shape, np.nan))
            grid[where] = arr.reshape(grid[where].shape)
    if vals is None and margins:
        grid = evidence_grid["count"]
        inner_counts = grid[:n_rows, :n_cols]
        if margin_col:
            grid[:n_rows, n_cols] = inner_counts.sum(axis=1)
        grid[n_rows, :n_cols] = inner_counts.sum(axis=0)
        if margin_col:
            grid[n_rows, n_cols] = inner_counts.sum()
    flat = {key: grid.ravel() for key, grid in evidence_grid.items()}
    for key in ("count", "n_values", "n_missing", "n_negative", "mode_count"):
        if key in flat:
            flat[key] = np.nan_to_num(flat[key]).astype(np.int64)

    denominators = None
    for agg in aggfuncs:
        shown, masks = evaluate(agg, flat, config)
        shown = shown.reshape(shape)
        masks = {name: m.reshape(shape) for name, m in masks.items()}
        counts = (flat["n_values"] if values is not None else flat["count"]).reshape(shape).astype(float)
        if normalize and agg == "count" and values is None:
            shown, denominators = _normalise(shown, normalize, n_rows, n_cols, margin_row, margin_col)
        blocks.append((shown, masks, counts))

    index = _product(row_parts, [s.name for s in rows])
    if margin_row:
        index = _with_margin(index, margins_name)
    if cols:
        col_index = _product(col_parts, [s.name for s in cols])
        if margin_col:
            col_index = _with_margin(col_index, margins_name)
    else:
        col_index = pd.Index([values.name if values is not None else "count"])

    if len(aggfuncs) == 1:
        columns = col_index
        shown, masks, counts = blocks[0]
    else:
        tuples = [(agg, *(c if isinstance(c, tuple) else (c,))) for agg in aggfuncs for c in col_index]
        columns = pd.MultiIndex.from_tuples(tuples, names=[None, *col_index.names])
        shown = np.hstack([b[0] for b in blocks])
        counts = np.hstack([b[2] for b in blocks])
        names = sorted({name for b in blocks for name in b[1]})
        masks = {name: np.hstack([b[1].get(name, np.zeros(shape, dtype=bool)) for b in blocks]) for name in names}

    table = pd.DataFrame(shown, index=index, columns=columns)
    if aggfuncs == ["count"] and not normalize:
        table = table.astype(np.int64)
    frame = {name: pd.DataFrame(m, index=index, columns=columns) for name, m in masks.items()}
    query = {**query, "description": _describe(kind, rows, cols, values, aggfuncs)}
    return Output(
        kind=kind,
        table=table,
        masks=frame,
        query=query,
        config=config,
        counts=pd.DataFrame(counts, index=index, columns=columns),
        additive=len(aggfuncs) == 1 and aggfuncs[0] in {"count", "sum"},
        margin_row=margin_row and len(aggfuncs) == 1,
        margin_col=margin_col and len(aggfuncs) == 1,
        denominators=None if denominators is None else pd.DataFrame(denominators, index=index, columns=columns),
        notes=_notes(flat, aggfuncs, config, normalize),
    )


def _normalise(
    counts: np.ndarray, how: bool | str, n_rows: int, n_cols: int, margin_row: bool, margin_col: bool
) -> tuple[np.ndarray, np.ndarray]:
    inner = counts[:n_rows, :n_cols]
    if how is True or how == "all":
        denominators = np.full(counts.shape, inner.sum())
    elif how in ("index", 0):
        denominators = np.repeat(counts[:, :n_cols].sum(axis=1, keepdims=True), counts.shape[1], axis=1)
        if margin_row:
            denominators[n_rows, :] = inner.sum()
    elif how in ("columns", 1):
        denominators = np.repeat(counts[:n_rows, :].sum(axis=0, keepdims=True), counts.shape[0], axis=0)
        if margin_col:
            denominators[:, n_cols] = inner.sum()
    else:
        raise ValueError(f"normalize must be True, 'all', 'index' or 'columns', got {how!r}")
    with np.errstate(invalid="ignore", divide="ignore"):
        shown = np.where(denominators > 0, counts / np.where(denominators > 0, denominators, 1), 0.0)
    return shown, denominators.astype(float)


def _notes(flat: dict[str, np.ndarray], aggfuncs: list[str], config: SDCConfig, normalize: bool | str) -> list[str]:
    notes: list[str] = []
    if normalize:
        notes.append("proportions were checked on the counts they were computed from")
    missing = int(flat["n_missing"].sum()) if "n_missing" in flat else 0
    if missing and not config.check_missing_values:
        notes.append(f"{missing} missing values were ignored (check_missing_values is off)")
    return notes


def _query(
    function: str,
    dataset: str | None,
    rows: list[pd.Series],
    cols: list[pd.Series],
    values: pd.Series | None,
    aggfuncs: list[str],
    filters: Any,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "function": function,
        "dataset": dataset,
        "index": [str(s.name) for s in rows],
        "columns": [str(s.name) for s in cols],
        "values": None if values is None else str(values.name),
        "aggfunc": aggfuncs,
        "filters": filters_mod.normalise(filters),
        **extra,
    }


def crosstab(
    index: Axis,
    columns: Axis,
    values: str | pd.Series | None = None,
    aggfunc: str | None = None,
    *,
    data: pd.DataFrame | None = None,
    margins: bool = False,
    margins_name: str = "All",
    normalize: bool | str = False,
    dataset: str | None = None,
    filters: filters_mod.Filters | None = None,
    config: SDCConfig = DEFAULT_CONFIG,
) -> Output:
    """Like ``pandas.crosstab``; ``index``/``columns``/``values`` are Series, or column names of ``data``.

    With ``data`` and ``filters`` the filters are applied here, so the record states exactly
    which rows were counted; with Series, ``filters`` only documents what the caller applied.
    """
    if (values is None) != (aggfunc is None):
        raise ValueError("values and aggfunc must be given together")
    if data is not None and filters:
        data = filters_mod.apply(data, filters)
    rows = _axis(data, index, "row")
    cols = _axis(data, columns, "col")
    if not cols:
        raise ValueError("crosstab needs at least one column variable")
    vals = _axis(data, values, "values")[0] if values is not None else None
    aggfuncs = parse_aggfuncs(aggfunc)
    if len(aggfuncs) != 1:
        raise ValueError("crosstab takes one aggfunc; use pivot_table for several")
    query = _query(
        "crosstab",
        dataset,
        rows,
        cols,
        vals,
        aggfuncs,
        filters,
        margins=margins,
        normalize=normalize,
        margins_name=margins_name,
    )
    return build_table(
        "crosstab",
        rows,
        cols,
        vals,
        aggfuncs,
        margins=margins,
        margins_name=margins_name,
        normalize=normalize,
        config=config,
        query=query,
    )


def pivot_table(
    data: pd.DataFrame,
    values: str,
    index: str | Sequence[str],
    columns: str | Sequence[str] | None = None,
    aggfunc: str | list[str] = "mean",
    *,
    margins: bool = False,
    margins_name: str = "All",
    dataset: str | None = None,
    filters: filters_mod.Filters | None = None,
    config: SDCConfig = DEFAULT_CONFIG,
) -> Output:
    """Like ``pandas.pivot_table`` with one ``values`` column; aggfuncs as in ``parse_aggfuncs``."""
    if filters:
        data = filters_mod.apply(data, filters)
    rows = _axis(data, index, "row")
    cols = _axis(data, columns, "col")
    vals = data[values]
    aggfuncs = parse_aggfuncs(aggfunc)
    query = _query(
        "pivot_table",
        dataset,
        rows,
        cols,
        vals,
        aggfuncs,
        filters,
        margins=margins,
        margins_name=margins_name,
    )
    return build_table(
        "pivot_table",
        rows,
        cols,
        vals,
        aggfuncs,
        margins=margins,
        margins_name=margins_name,
        normalize=False,
        config=config,
        query=query,
    )
