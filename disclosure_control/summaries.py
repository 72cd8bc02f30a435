"""``describe`` and ``hist``: one-variable summaries, checked like table cells."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from . import filters as filters_mod
from . import rules
from .config import DEFAULT_CONFIG, SDCConfig
from .evidence import evaluate, group_evidence
from .output import Output

_DESCRIBE = ("count", "mean", "std", "min", "p25", "median", "p75", "max")
_DESCRIBE_LABELS = {"p25": "25%", "median": "50%", "p75": "75%"}


def describe(
    data: pd.DataFrame,
    columns: Sequence[str] | None = None,
    *,
    extremes: bool = True,
    dataset: str | None = None,
    filters: filters_mod.Filters | None = None,
    config: SDCConfig = DEFAULT_CONFIG,
) -> Output:
    """Like ``DataFrame.describe()`` for numeric columns; every statistic is checked as a cell.

    The minimum and maximum are single people's values, so they always send the output to
    review; ``extremes=False`` leaves them out.
    """
    stats = [s for s in _DESCRIBE if extremes or s not in {"min", "max"}]
    if filters:
        data = filters_mod.apply(data, filters)
    names = list(columns) if columns is not None else list(data.select_dtypes("number").columns)
    if not names:
        raise ValueError("describe needs at least one numeric column")
    index = [_DESCRIBE_LABELS.get(s, s) for s in stats]
    shown = np.full((len(stats), len(names)), np.nan)
    counts = np.zeros_like(shown)
    masks: dict[str, np.ndarray] = {}
    for j, name in enumerate(names):
        values = pd.to_numeric(data[name], errors="raise").to_numpy(dtype=float)
        ids = np.zeros(len(values), dtype=np.int64)
        ev = group_evidence(ids, values, 1, stats, config)
        for i, stat in enumerate(stats):
            value, stat_masks = evaluate(stat, ev, config)
            shown[i, j] = value[0]
            counts[i, j] = ev["n_values"][0]
            for rule, mask in stat_masks.items():
                masks.setdefault(rule, np.zeros(shown.shape, dtype=bool))[i, j] = bool(mask[0])
    frame_index = pd.Index(index)
    frame_cols = pd.Index(names)
    return Output(
        kind="describe",
        table=pd.DataFrame(shown, index=frame_index, columns=frame_cols),
        masks={r: pd.DataFrame(m, index=frame_index, columns=frame_cols) for r, m in masks.items()},
        query={
            "function": "describe",
            "dataset": dataset,
            "columns": names,
            "aggfunc": stats,
            "filters": filters_mod.normalise(filters),
            "description": f"describe of {', '.join(names)}",
        },
        config=config,
        counts=pd.DataFrame(counts, index=frame_index, columns=frame_cols),
    )


def hist(
    data: pd.DataFrame,
    column: str,
    bins: int | Sequence[float] = 10,
    range: tuple[float, float] | None = None,
    *,
    dataset: str | None = None,
    filters: filters_mod.Filters | None = None,
    config: SDCConfig = DEFAULT_CONFIG,
) -> Output:
    """Histogram counts per bin, checked as a frequency table.

    When the edges come from the data (``bins`` an integer and no ``range``), the outer edges are
    the exact minimum and maximum, i.e. two people's values: the outer bins go to review. Give
    explicit edges (or a range) that do not come from the data to avoid that.
    """
    if filters:
        data = filters_mod.apply(data, filters)
    values = pd.to_numeric(data[column], errors="raise").to_numpy(dtype=float)
    present = values[~np.isnan(values)]
    if len(present) == 0:
        raise ValueError(f"column {column!r} has no values to plot")
    edges = np.histogram_bin_edges(present, bins=bins, range=range)
    counts, _ = np.histogram(present, bins=edges)
    index = pd.IntervalIndex.from_breaks(edges, closed="left", name=column)
    n_missing = len(values) - len(present)
    masks = {
        "threshold": rules.threshold(counts, config),
        "zeros": rules.zeros(counts, config),
        "missing": np.full(len(counts), n_missing > 0 and config.check_missing_values),
    }
    edges_from_data = isinstance(bins, int | np.integer) and range is None
    outer = np.zeros(len(counts), dtype=bool)
    if edges_from_data:
        outer[[0, -1]] = True
    masks["single_person"] = outer & (counts > 0)
    frame = {name: pd.DataFrame({"count": m}, index=index) for name, m in masks.items()}
    notes = []
    if edges_from_data:
        notes.append("outer bin edges are the minimum and maximum of the data; pass explicit edges instead")
    return Output(
        kind="hist",
        table=pd.DataFrame({"count": counts}, index=index),
        masks=frame,
        query={
            "function": "hist",
            "dataset": dataset,
            "columns": [column],
            "bins": [float(e) for e in edges],
            "edges_from_data": edges_from_data,
            "aggfunc": ["count"],
            "filters": filters_mod.normalise(filters),
            "description": f"histogram of {column} ({len(counts)} bins)",
        },
        config=config,
        counts=pd.DataFrame({"count": counts.astype(float)}, index=index),
        notes=notes,
    )
