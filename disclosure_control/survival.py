"""``survival``: a Kaplan-Meier table, checked step by step.

Each row of a KM table is a time at which events happened, with the number at risk just before
it and the number of events. Both are counts of people: a step with 2 deaths among 14 at risk
says a lot about those two. So every step needs at least ``survival_threshold`` at risk and
either no events or at least ``survival_threshold`` events. ``Output.suppressed()`` merges
consecutive steps until each reported step carries enough events, and stops the curve where
fewer than the threshold remain at risk. The survival shown at a merged step is made from the
steps shown (the product of 1 - events / at risk over them), not the exact KM value at that time:
that value is a fraction whose factors are the at-risk numbers of the steps the merge hid.

With ``group=`` (a column or list of columns) there is one curve per group, each computed and
checked on its own rows only: a pooled check would let a small group's steps hide among the
others'. The table's index is then (group..., time); suppression merges steps within each group.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from . import filters as filters_mod
from .config import DEFAULT_CONFIG, SDCConfig
from .output import Output

COLUMNS = ["at_risk", "events", "survival"]


def km_table(time: np.ndarray, event: np.ndarray) -> pd.DataFrame:
    """Kaplan-Meier estimate at each event time (right-censored data, event == 1 is the event)."""
    order = np.argsort(time, kind="stable")
    t = np.asarray(time, dtype=float)[order]
    e = np.asarray(event, dtype=float)[order] == 1
    unique, first = np.unique(t, return_index=True)
    at_risk = len(t) - first
    events = np.add.reduceat(e.astype(np.int64), first) if len(t) else np.array([], dtype=np.int64)
    keep = events > 0
    at_risk, events, unique = at_risk[keep], events[keep], unique[keep]
    survival = np.cumprod(1.0 - events / at_risk)
    return pd.DataFrame(
        {"at_risk": at_risk.astype(np.int64), "events": events.astype(np.int64), "survival": survival},
        index=pd.Index(unique, name="time"),
    )


def _masks(table: pd.DataFrame, config: SDCConfig) -> dict[str, pd.DataFrame]:
    at_risk = table["at_risk"].to_numpy() < config.survival_threshold
    events = table["events"].to_numpy()
    few = (events > 0) & (events < config.survival_threshold)
    shape = table.shape
    return {
        "at_risk": pd.DataFrame(np.broadcast_to(at_risk[:, None], shape), index=table.index, columns=table.columns),
        "events": pd.DataFrame(np.broadcast_to(few[:, None], shape), index=table.index, columns=table.columns),
    }


def merge_steps(table: pd.DataFrame, threshold: int) -> pd.DataFrame:
    """Merge consecutive steps until each has >= threshold events; drop the tail with < threshold at risk."""
    rows: list[tuple[float, int, int, float]] = []
    start_at_risk: int | None = None
    pending = 0
    survival = 1.0
    for time, row in table.iterrows():
        if start_at_risk is None:
            start_at_risk = int(row["at_risk"])
        if start_at_risk < threshold:
            break
        pending += int(row["events"])
        if pending >= threshold:
            # made from the steps shown, not the exact KM value here: that is a product over the hidden steps too,
            # and its fraction (0.8205360278502554 = 348128/424269 = .../(3 x 47 x 51 x 59)) gives them back
            survival *= 1.0 - pending / start_at_risk
            rows.append((float(time), start_at_risk, pending, survival))
            start_at_risk, pending = None, 0
    merged = pd.DataFrame(rows, columns=["time", *COLUMNS]).set_index("time")
    return merged.astype({"at_risk": np.int64, "events": np.int64})


def _merge_by_group(table: pd.DataFrame, threshold: int) -> pd.DataFrame:
    """``merge_steps`` applied to each group's curve on its own (the table is indexed by group..., time)."""
    if table.index.nlevels == 1:
        return merge_steps(table, threshold)
    levels = list(range(table.index.nlevels - 1))
    pieces = []
    for key, curve in table.groupby(level=levels, sort=False):
        merged = merge_steps(curve.droplevel(levels), threshold)
        key = key if isinstance(key, tuple) else (key,)
        index = pd.MultiIndex.from_tuples([(*key, t) for t in merged.index], names=table.index.names)
        pieces.append(merged.set_axis(index, axis=0))
    if not pieces:
        return table.iloc[:0]
    return pd.concat(pieces).astype({"at_risk": np.int64, "events": np.int64})


def _suppress(output: Output) -> Output:
    merged = _merge_by_group(output.table, output.config.survival_threshold)
    return replace(
        output,
        table=merged,
        masks=_masks(merged, output.config),
        counts=merged[["at_risk"]].reindex(columns=merged.columns).ffill(axis=1).astype(float),
        mitigation={"method": "merged_steps", "steps_before": len(output.table), "steps_after": len(merged)},
        notes=[*output.notes, "steps merged until each reports enough events; tail with few at risk dropped"],
    )


def _grouped_table(frame: pd.DataFrame, time: str, event: str, groups: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """One Kaplan-Meier curve per group, stacked under a (group..., time) index; notes on groups with no events."""
    pieces = []
    notes = []
    for key, rows in frame.groupby(groups, sort=True, observed=True):
        key = key if isinstance(key, tuple) else (key,)
        curve = km_table(rows[time].to_numpy(dtype=float), rows[event].to_numpy(dtype=float))
        if curve.empty:
            notes.append(f"group {', '.join(map(str, key))}: no events, so no steps are shown")
            continue
        curve.index = pd.MultiIndex.from_tuples([(*key, t) for t in curve.index], names=[*groups, "time"])
        pieces.append(curve)
    if not pieces:
        empty = km_table(np.array([]), np.array([]))
        empty.index = pd.MultiIndex.from_arrays([[]] * (len(groups) + 1), names=[*groups, "time"])
        return empty, notes
    return pd.concat(pieces), notes


def survival(
    data: pd.DataFrame,
    time: str,
    event: str,
    *,
    group: str | list[str] | None = None,
    dataset: str | None = None,
    filters: filters_mod.Filters | None = None,
    config: SDCConfig = DEFAULT_CONFIG,
) -> Output:
    """Kaplan-Meier table of ``time`` with ``event`` (1 = event, 0 = censored), checked per step.

    ``group``: a column (or columns) to split by; each group's curve is computed and checked alone.
    """
    if filters:
        data = filters_mod.apply(data, filters)
    groups = [group] if isinstance(group, str) else list(group or [])
    frame = data[[time, event, *groups]]
    n_missing = int(frame.isna().any(axis=1).sum())
    frame = frame.dropna()
    notes = []
    if groups:
        table, group_notes = _grouped_table(frame, time, event, groups)
        notes.extend(group_notes)
    else:
        table = km_table(frame[time].to_numpy(dtype=float), frame[event].to_numpy(dtype=float))
    if n_missing:
        notes.append(f"{n_missing} rows with a missing time, event or group were left out")
    masks = _masks(table, config)
    if groups:
        failing = (masks["at_risk"] | masks["events"]).any(axis=1)
        for key, steps in failing[failing].groupby(level=list(range(len(groups))), sort=False):
            label = ", ".join(map(str, key if isinstance(key, tuple) else (key,)))
            notes.append(f"group {label}: {len(steps)} step(s) fail on their own; merge steps (.suppressed()) "
                         f"or merge this group with another")
    by = f" by {', '.join(groups)}" if groups else ""
    return Output(
        kind="survival",
        table=table,
        masks=masks,
        query={
            "function": "survival",
            "dataset": dataset,
            "columns": [time, event],
            "group": groups,
            "filters": filters_mod.normalise(filters),
            "description": f"Kaplan-Meier of {time} by {event}{by}",
        },
        config=config,
        counts=table[["at_risk"]].reindex(columns=table.columns).ffill(axis=1).astype(float),
        checks={"missing": bool(n_missing and config.check_missing_values)},
        notes=notes,
        suppressor=_suppress,
    )


__all__ = ["km_table", "merge_steps", "survival"]
