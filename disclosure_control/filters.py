"""Structured filters: the population an output was computed on, in a form that can be compared.

A filter maps a column to one condition: a scalar (equal to), a list (one of), or a dict with
``in`` (one of), ``between`` ([low, high], both inclusive, either may be None) and/or
``min``/``max``. Keeping filters as data rather than free text lets the record say exactly which
rows were used, and lets the differencing check decide whether one output's population lies
inside another's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from .record import json_label

Filters = Mapping[str, Any]


def normalise(filters: Filters | None) -> dict[str, dict[str, Any]]:
    """Canonical JSON form: ``{"col": {"in": [...]}}`` or ``{"col": {"between": [lo, hi]}}``."""
    out: dict[str, dict[str, Any]] = {}
    for column, cond in (filters or {}).items():
        if isinstance(cond, Mapping):
            unknown = set(cond) - {"in", "between", "min", "max"}
            if unknown:
                raise ValueError(f"unknown filter operator(s) for {column}: {sorted(unknown)}")
            if "in" in cond:
                out[column] = {"in": sorted({json_label(v) for v in cond["in"]}, key=repr)}
                continue
            low, high = cond.get("between", [cond.get("min"), cond.get("max")])
            out[column] = {"between": [json_label(low), json_label(high)]}
        elif isinstance(cond, list | tuple | set | frozenset):
            out[column] = {"in": sorted({json_label(v) for v in cond}, key=repr)}
        else:
            out[column] = {"in": [json_label(cond)]}
    return out


def apply(data: pd.DataFrame, filters: Filters | None) -> pd.DataFrame:
    """The rows of ``data`` that satisfy every condition."""
    if not normalise(filters):
        return data
    return data.loc[_mask(data, filters)]


def _mask(data: pd.DataFrame, filters: Filters | None) -> Any:
    canonical = normalise(filters)
    keep = pd.Series(True, index=data.index)
    for column, cond in canonical.items():
        series = data[column]
        if "in" in cond:
            raw = (filters or {})[column]
            wanted = raw["in"] if isinstance(raw, Mapping) else raw
            wanted = list(wanted) if isinstance(wanted, list | tuple | set | frozenset) else [wanted]
            keep &= series.isin(wanted)
        else:
            low, high = cond["between"]
            if low is not None:
                keep &= series >= _like(series, low)
            if high is not None:
                keep &= series <= _like(series, high)
    return keep.to_numpy()


MAX_LISTED_VALUES = 200


def effective(data: pd.DataFrame, filters: Filters | None, max_values: int = MAX_LISTED_VALUES) -> dict[str, Any]:
    """The population ``filters`` select from ``data``, written so that nesting can be seen from the conditions.

    The differencing check decides from the conditions whether one population lies inside another, so the same
    rows written otherwise must not hide it: a condition that excludes nobody beside the others (``age >= 0``) is
    dropped, a list is cut to the values the data holds, and a range over a column of at most ``max_values``
    distinct values becomes the list of those it holds (``between 1 and 8`` and ``in [1..9]`` then compare).
    The result names values found in the data, so it is checker's evidence, never released.
    """
    canonical = normalise(filters)
    masks = {column: _mask(data, {column: (filters or {})[column]}) for column in canonical}
    out: dict[str, Any] = {}
    for column, cond in canonical.items():
        series = data[column]
        if "in" in cond or series.nunique(dropna=True) <= max_values:
            present = series[masks[column]].dropna().unique()
            out[column] = {"in": sorted({json_label(v) for v in present}, key=repr)}
        else:
            out[column] = cond
    everyone = _all(masks.values(), len(data))
    for column in list(out):
        others = [mask for name, mask in masks.items() if name != column and name in out]
        if (_all(others, len(data)) == everyone).all():
            del out[column]  # excludes nobody the other conditions keep
    return out


def _all(masks: Any, length: int) -> Any:
    keep = np.ones(length, dtype=bool)
    for mask in masks:
        keep &= mask
    return keep


def _like(series: pd.Series, value: Any) -> Any:
    if pd.api.types.is_datetime64_any_dtype(series) and isinstance(value, str):
        return pd.Timestamp(value)
    return value


def _within(inner: dict[str, Any], outer: dict[str, Any]) -> bool:
    """Every value allowed by ``inner`` is allowed by ``outer`` (for one column)."""
    if "in" in outer:
        if "in" not in inner:
            return False
        return set(map(repr, inner["in"])) <= set(map(repr, outer["in"]))
    low, high = outer["between"]
    if "in" in inner:
        values = inner["in"]
        try:
            return all((low is None or v >= low) and (high is None or v <= high) for v in values)
        except TypeError:
            return False
    ilow, ihigh = inner["between"]
    try:
        low_ok = low is None or (ilow is not None and ilow >= low)
        high_ok = high is None or (ihigh is not None and ihigh <= high)
    except TypeError:
        return False
    return low_ok and high_ok


def contains(outer: dict[str, dict[str, Any]], inner: dict[str, dict[str, Any]]) -> bool:
    """True when every row satisfying ``inner`` also satisfies ``outer`` (both canonical)."""
    return all(column in inner and _within(inner[column], cond) for column, cond in outer.items())
