"""``Output``: a computed statistic together with the verdict of every rule on every cell."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from . import rules, suppression
from .config import SDCConfig
from .record import CellVerdict, Record, json_label

SUPPRESSED = "suppressed"
MODEL_KINDS = frozenset({"ols", "logit", "probit"})


def _labels(index: pd.Index, position: int) -> list[Any]:
    label = index[position]
    if isinstance(label, tuple):
        return [json_label(v) for v in label]
    return [json_label(label)]


def _count(counts: np.ndarray | None, i: int, j: int) -> int | None:
    if counts is None or np.isnan(counts[i, j]):
        return None
    return int(counts[i, j])


def whole_numbers(table: pd.DataFrame) -> pd.DataFrame:
    """The table with every column of whole numbers as integers, so a CSV says 253, not 253.0.

    A column that holds any fraction stays as it is; empty (suppressed) cells stay empty.
    """
    shown = table.copy()
    for position in range(shown.shape[1]):
        column = shown.iloc[:, position]
        if not pd.api.types.is_float_dtype(column.dtype):
            continue
        present = column.dropna().to_numpy(dtype=float)
        if present.size and np.all(np.isfinite(present)) and np.all(present == np.round(present)) \
                and np.all(np.abs(present) < 2**53):
            shown.isetitem(position, column.astype("Int64"))
    return shown


@dataclass
class Output:
    """What a checked function returns.

    ``table`` is the statistic as pandas would show it; ``masks`` maps a rule name to a boolean
    frame shaped like ``table`` (True = the rule flags that cell); ``checks`` holds rules about the
    whole output (e.g. a model's residual degrees of freedom); ``counts`` the contributors per
    cell, used by rounding, suppression and the differencing check.
    """

    kind: str
    table: pd.DataFrame
    masks: dict[str, pd.DataFrame]
    query: dict[str, Any]
    config: SDCConfig
    counts: pd.DataFrame | None = None
    checks: dict[str, bool] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    model: Any = None
    additive: bool = False
    margin_row: bool = False
    margin_col: bool = False
    hidden: pd.DataFrame | None = None
    mitigation: dict[str, Any] | None = None
    epsilon: float | None = None
    denominators: pd.DataFrame | None = None  # for normalised tables: the count each cell was divided by
    suppressor: Callable[[Output], Output] | None = None  # kind-specific suppression (survival)
    implied: list[dict[str, Any]] | None = None  # models: cells of the tables the model summarises

    # ----------------------------------------------------------------- verdicts
    @property
    def cell_status(self) -> pd.DataFrame:
        """ "pass" / "review" / "fail" per cell ("suppressed" once a mitigation hid the cell)."""
        arrays = {name: mask.to_numpy(dtype=bool) for name, mask in self.masks.items()}
        verdicts = rules.combine(arrays, self.table.shape)
        if self.hidden is not None:
            verdicts[self.hidden.to_numpy(dtype=bool)] = SUPPRESSED
        return pd.DataFrame(verdicts, index=self.table.index, columns=self.table.columns)

    @property
    def status(self) -> rules.Verdict:
        verdicts = self.cell_status.to_numpy()
        status: rules.Verdict = "pass"
        if (verdicts == "review").any():
            status = "review"
        if (verdicts == "fail").any():
            status = "fail"
        for name, flagged in self.checks.items():
            if flagged and rules.VERDICT_ORDER[rules.RULES[name].verdict] > rules.VERDICT_ORDER[status]:
                status = rules.RULES[name].verdict
        if self.mitigation and self.mitigation.get("method") == "rounding" and status == "fail" \
                and int(self.mitigation.get("base") or 0) >= self.config.round_base:
            # rounding blurs small cells but does not remove them: a checker decides (rounding to less than the
            # round base, rounded(1) above all, leaves a small count as it was, so it is no mitigation)
            status = "review"
        return status

    def flagged_counts(self) -> dict[str, int]:
        """How many visible cells each rule flags."""
        visible = ~self.hidden.to_numpy(dtype=bool) if self.hidden is not None else True
        return {
            name: int((mask.to_numpy(dtype=bool) & visible).sum())
            for name, mask in self.masks.items()
            if (mask.to_numpy(dtype=bool) & visible).any()
        }

    @property
    def summary(self) -> str:
        """Plain English: the verdict, which rules fired on how many cells, and what to do next."""
        what = self.query.get("description") or self.kind
        n_cells = int(self.table.size)
        lines = [f"{self.status.upper()}: {what} ({n_cells} cells checked)."]
        model = self.kind in MODEL_KINDS
        for name, n in sorted(self.flagged_counts().items()):
            rule = rules.RULES[name]
            if model:  # a flagged coefficient is a whole row of the coefficient table
                n //= max(self.table.shape[1], 1)
                cells = "coefficient" if n == 1 else "coefficients"
            else:
                cells = "cell" if n == 1 else "cells"
            lines.append(f"- {n} {cells} {rule.verdict}: {rule.description} ({rule.boundary})")
        for name, flagged in self.checks.items():
            if flagged:
                rule = rules.RULES[name]
                lines.append(f"- whole output {rule.verdict}: {rule.description} ({rule.boundary})")
        lines.extend(f"- note: {note}" for note in self.notes)
        if self.mitigation:
            lines.append(f"- mitigation applied: {describe_mitigation(self.mitigation)}")
        if self.status == "fail" and self.kind in {"crosstab", "pivot_table", "hist", "describe"}:
            lines.append("Suggested: call .suppressed() or merge small categories and run it again.")
        elif self.status == "fail" and model:
            lines.append("Suggested: merge the categories or drop the terms named above, and fit the model again.")
        elif self.status == "pass":
            lines.append("All rules passed; the output can go to the output checker as it is.")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<Output {self.kind} status={self.status}>\n{self.table!r}\n{self.summary}"

    # ----------------------------------------------------------------- mitigations
    def suppressed(self) -> Output:
        """Hide failing cells, plus the cells or totals that would let anyone recompute them."""
        if self.kind in MODEL_KINDS:
            raise ValueError("a model cannot be suppressed cell by cell: change the model instead")
        if self.suppressor is not None:
            return self.suppressor(self)
        status = self.cell_status.to_numpy()
        primary = status == "fail"
        weights = self.counts.to_numpy(dtype=float) if self.counts is not None else np.ones(self.table.shape)
        statistics = len(self.query.get("aggfunc") or []) if self.kind in {"crosstab", "pivot_table"} else 1
        if statistics > 1 and self.table.shape[1] % statistics == 0:
            # several statistics side by side, one block each: a group is hidden in every block or none (a mean
            # shown beside a hidden sum and count is their quotient), and with margins the blocks of counts and sums
            # add up, and a mean times its count too, so the groups take secondary suppression as one table would
            n_rows, width = primary.shape[0], primary.shape[1] // statistics
            groups = primary.reshape(n_rows, statistics, width).any(axis=1)
            margins = bool(self.query.get("margins"))
            groups = suppression.secondary(groups, weights[:, :width], margins,
                                           margins and bool(self.query.get("columns")))
            hidden = np.tile(groups, (1, statistics))
        elif self.additive and self.table.ndim == 2:
            # a table of proportions also has lines summing to 1 (rows, columns or all of it), margins or not
            normalize = self.query.get("normalize") if self.denominators is not None else None
            extra = suppression.proportion_lines(primary.shape, normalize, self.margin_row, self.margin_col)
            hidden = suppression.secondary(primary, weights, self.margin_row, self.margin_col, extra)
        else:
            hidden = primary
        table = self.table.copy()
        values = table.to_numpy(dtype=float, copy=True)
        values[hidden] = np.nan
        table = pd.DataFrame(values, index=table.index, columns=table.columns)
        already = self.hidden.to_numpy(dtype=bool) if self.hidden is not None else np.zeros_like(hidden)
        mitigation = {
            "method": "suppression",
            "primary": int(primary.sum()),
            "secondary": int((hidden & ~primary).sum()),
        }
        return replace(
            self,
            table=table,
            hidden=pd.DataFrame(hidden | already, index=table.index, columns=table.columns),
            mitigation=mitigation,
            notes=[*self.notes],
        )

    def rounded(self, base: int | None = None) -> Output:
        """Round every shown value to a multiple of ``base`` (default: ``config.round_base``).

        Counts are rounded; for a normalised table the underlying counts are rounded and the
        proportions recomputed from them, so the shown percentages never carry the exact counts.
        """
        base = base or self.config.round_base
        if base < 1:
            raise ValueError("base must be a positive integer")
        if self.kind in {"ols", "logit", "probit", "survival"}:
            raise ValueError(f"rounding does not apply to a {self.kind} output")
        values = self.table.to_numpy(dtype=float, copy=True)
        if self.denominators is not None and self.counts is not None:
            counts = np.round(self.counts.to_numpy(dtype=float) / base) * base
            denominators = np.round(self.denominators.to_numpy(dtype=float) / base) * base
            with np.errstate(invalid="ignore", divide="ignore"):
                values = np.where(denominators > 0, counts / denominators, 0.0)
        else:
            values = np.round(values / base) * base
        table = pd.DataFrame(values, index=self.table.index, columns=self.table.columns)
        return replace(self, table=table, mitigation={"method": "rounding", "base": base}, notes=[*self.notes])

    def to_csv(self, path_or_buf: Any = None) -> str | None:
        """The table as CSV with whole counts written as integers (what save_output and the checker use)."""
        return whole_numbers(self.table).to_csv(path_or_buf)

    # ----------------------------------------------------------------- record
    def record(self) -> Record:
        status = self.cell_status
        values = self.table.to_numpy()
        counts = self.counts.to_numpy() if self.counts is not None else None
        masks = {name: mask.to_numpy(dtype=bool) for name, mask in self.masks.items()}
        cells: list[CellVerdict] = []
        for i in range(self.table.shape[0]):
            row = _labels(self.table.index, i)
            for j in range(self.table.shape[1]):
                cells.append(
                    CellVerdict(
                        row=row,
                        column=_labels(self.table.columns, j),
                        value=json_label(values[i, j]),
                        count=_count(counts, i, j),
                        status=str(status.iat[i, j]),
                        rules=sorted(name for name, m in masks.items() if m[i, j]),
                    )
                )
        return Record(
            kind=self.kind,
            query=self.query,
            rules=self.config.to_dict(),
            status=self.status,
            summary=self.summary,
            cells=cells,
            checks={name: rules.RULES[name].verdict if flagged else "pass" for name, flagged in self.checks.items()},
            mitigation=self.mitigation,
            epsilon=self.epsilon,
            implied=list(self.implied or []),
        )


def describe_mitigation(mitigation: dict[str, Any]) -> str:
    """A mitigation as a sentence for people (never the raw mapping)."""
    method = mitigation.get("method")
    if method == "suppression":
        primary, secondary = int(mitigation.get("primary") or 0), int(mitigation.get("secondary") or 0)
        cells = "cell" if primary == 1 else "cells"
        text = f"{primary} {cells} suppressed because a rule flagged {'it' if primary == 1 else 'them'}"
        if secondary:
            text += f", and {secondary} more so that {'it' if primary == 1 else 'they'} cannot be worked out " \
                    "from the totals"
        return text + "."
    if method == "rounding":
        return f"every shown value rounded to a multiple of {int(mitigation.get('base') or 0)}."
    if method == "merged_steps":
        return "steps of the curve merged so that each step covers enough people."
    return f"{str(method or 'an unnamed method').replace('_', ' ')}."
