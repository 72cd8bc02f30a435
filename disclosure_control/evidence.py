"""Turn a statistic name and per-cell evidence into shown values plus rule masks.

Shared by the table functions and ``describe`` so a mean is judged the same way wherever it is
computed.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from . import rules
from .cellstats import CellStats, can_sort_by_cell, cell_stats, quantiles, sorted_by_cell, variances
from .config import SDCConfig

BASIC = ("count", "sum", "mean", "median", "std", "var", "min", "max", "mode")
_QUANTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?)$")


def parse_aggfuncs(aggfunc: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """Accept pandas' names plus ``pNN`` for the NN-th percentile (``p25``, ``p90``)."""
    if aggfunc is None:
        return ["count"]
    names = [aggfunc] if isinstance(aggfunc, str) else list(aggfunc)
    for name in names:
        if name not in BASIC and not _QUANTILE.match(str(name)):
            raise ValueError(f"unsupported aggfunc {name!r}; use one of {BASIC} or pNN (e.g. p25)")
    return names


def quantile_of(name: str) -> float | None:
    match = _QUANTILE.match(name)
    return float(match.group(1)) / 100 if match else None


def group_evidence(
    ids: np.ndarray, values: np.ndarray | None, n_groups: int, aggfuncs: list[str], config: SDCConfig
) -> dict[str, np.ndarray]:
    """All evidence the requested statistics need, for groups 0..n_groups-1 (ids < 0 ignored)."""
    all_valid = len(ids) == 0 or ids.min() >= 0
    counted = ids if all_valid else ids[ids >= 0]
    ev: dict[str, np.ndarray] = {"count": np.bincount(counted, minlength=n_groups).astype(np.int64)}
    if values is None:
        return ev
    dominance = any(a in {"sum", "mean"} for a in aggfuncs)
    needs_sort = any(a == "median" or quantile_of(a) is not None for a in aggfuncs)
    extremes_from_sort = needs_sort and not dominance and can_sort_by_cell(n_groups)
    stats: CellStats = cell_stats(
        ids, values, n_groups, config.nk_n, dominance=dominance, extremes=not extremes_from_sort
    )
    ev.update(
        n_values=stats.n_values,
        n_missing=stats.n_missing,
        n_negative=stats.n_negative,
        total=stats.total,
        minimum=stats.minimum,
        maximum=stats.maximum,
        second=stats.second,
        top_n_sum=stats.top_n_sum,
    )
    extra = [a for a in aggfuncs if a in {"median", "std", "var", "mode"} or quantile_of(a) is not None]
    if not extra:
        return ev
    vals = np.asarray(values, dtype=float)
    nan = np.isnan(vals)
    if all_valid and not nan.any():
        gids, kept = ids, vals
    else:
        keep = (ids >= 0) & ~nan
        gids, kept = ids[keep], vals[keep]
    presorted = sorted_by_cell(gids, kept, n_groups) if needs_sort else None
    if extremes_from_sort and presorted is not None:
        ordered, bounds = presorted
        has = np.diff(bounds) > 0
        ev["minimum"][has] = ordered[bounds[:-1][has]]
        ev["maximum"][has] = ordered[bounds[1:][has] - 1]
    for agg in extra:
        if agg == "mode":
            ev["mode"], ev["mode_count"] = _modes(gids, kept, n_groups)
        elif agg in {"std", "var"}:
            variance = variances(gids, kept, stats.n_values, stats.total)
            ev[agg] = np.sqrt(variance) if agg == "std" else variance
        else:
            q = 0.5 if agg == "median" else quantile_of(agg) or 0.0
            ev[agg] = quantiles(gids, kept, n_groups, q, presorted)
    return ev


def _modes(gids: np.ndarray, vals: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Most frequent value per group (the smallest such value on ties, so it is reproducible)."""
    sizes = pd.DataFrame({"g": gids, "v": vals}).groupby(["g", "v"], sort=True).size()
    frame = sizes.reset_index(name="n").sort_values(["g", "n", "v"], ascending=[True, False, True])
    first = frame.drop_duplicates("g")
    mode = np.full(n_groups, np.nan)
    count = np.zeros(n_groups, dtype=np.int64)
    mode[first["g"].to_numpy()] = first["v"].to_numpy()
    count[first["g"].to_numpy()] = first["n"].to_numpy()
    return mode, count


def evaluate(agg: str, ev: dict[str, np.ndarray], config: SDCConfig) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Shown values and rule masks for one statistic over cells described by ``ev``."""
    count = ev["count"]
    if agg == "count" and "n_values" not in ev:
        return count.astype(float), {
            "threshold": rules.threshold(count, config),
            "zeros": rules.zeros(count, config),
        }
    n = ev["n_values"]
    masks: dict[str, np.ndarray] = {
        "threshold": rules.threshold(n, config),
        "zeros": rules.zeros(n, config),
        "missing": rules.missing(ev["n_missing"], config),
    }
    if agg == "count":
        return n.astype(float), masks
    with np.errstate(invalid="ignore", divide="ignore"):
        if agg == "sum":
            shown = np.where(n > 0, ev["total"], np.nan)
        elif agg == "mean":
            shown = np.where(n > 0, ev["total"] / np.where(n > 0, n, 1), np.nan)
        elif agg == "min":
            shown = ev["minimum"]
        elif agg == "max":
            shown = ev["maximum"]
        else:
            shown = ev[agg]
    masks["all_same"] = rules.all_same(n, ev["minimum"], ev["maximum"])
    if agg in {"sum", "mean"}:
        masks["nk_dominance"] = rules.nk_dominance(ev["top_n_sum"], ev["total"], ev["n_negative"], config)
        masks["p_percent"] = rules.p_percent(ev["maximum"], ev["second"], ev["total"], ev["n_negative"], config)
        masks["negative"] = rules.negative(ev["n_negative"])
    elif agg in {"std", "var"}:
        masks["dof"] = (n > 0) & rules.dof(n - 1, config)
    elif agg in {"min", "max"}:
        masks["single_person"] = rules.single_person(n)
    elif agg == "mode":
        masks["mode_frequency"] = rules.mode_frequency(n, ev["mode_count"], config)
    return np.asarray(shown, dtype=float), masks
