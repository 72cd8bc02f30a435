"""Differentially private statistics through OpenDP, charged to a project's privacy budget.

Each function takes explicit bounds (the sensitivity must not be learnt from the data), spends
exactly the epsilon asked for under add/remove-one-person neighbouring, and says how far the
noisy value may be from the true one. A ``PrivacyBudget`` refuses a query before any noise is
drawn when the project's remaining epsilon is too small. DP outputs need no threshold rules
(the noise protects small cells by construction); their records carry the epsilon instead.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import opendp.prelude as opendp
import pandas as pd

from . import filters as filters_mod
from .config import DEFAULT_CONFIG, SDCConfig
from .output import Output
from .record import Record, json_label

opendp.enable_features("contrib")

_EPSILON_TOLERANCE = 1e-12


class BudgetExceeded(Exception):
    """The query would spend more epsilon than the project has left."""


@dataclass
class PrivacyBudget:
    """The project's epsilon ledger. Persist it with ``to_dict``/``from_dict`` between sessions."""

    total_epsilon: float
    ledger: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.total_epsilon > 0:
            raise ValueError("total_epsilon must be positive")

    @property
    def spent(self) -> float:
        return float(sum(entry["epsilon"] for entry in self.ledger))

    @property
    def remaining(self) -> float:
        return self.total_epsilon - self.spent

    def charge(self, epsilon: float, description: str) -> None:
        """Record ``epsilon`` as spent, or raise ``BudgetExceeded`` and record nothing."""
        if not epsilon > 0:
            raise ValueError("epsilon must be positive")
        if epsilon > self.remaining + _EPSILON_TOLERANCE:
            raise BudgetExceeded(
                f"{description} needs epsilon {epsilon:g} but only {max(self.remaining, 0):g} of "
                f"{self.total_epsilon:g} remains"
            )
        self.ledger.append(
            {"description": description, "epsilon": float(epsilon), "at": dt.datetime.now(dt.UTC).isoformat()}
        )

    def to_dict(self) -> dict[str, Any]:
        return {"total_epsilon": self.total_epsilon, "ledger": list(self.ledger)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PrivacyBudget:
        return cls(float(data["total_epsilon"]), list(data.get("ledger", [])))


@dataclass
class DPResult:
    """A noisy statistic, the epsilon it spent and how accurate it is (at confidence 1 - alpha)."""

    kind: str
    value: Any
    epsilon: float
    accuracy: float
    alpha: float
    query: dict[str, Any]

    @property
    def accuracy_statement(self) -> str:
        return (
            f"with probability {1 - self.alpha:.0%} the noise added to each released number is at most "
            f"{self.accuracy:.4g} in absolute value (epsilon {self.epsilon:g})"
        )

    def output(self, config: SDCConfig = DEFAULT_CONFIG) -> Output:
        if isinstance(self.value, dict):
            table = pd.DataFrame(
                {"value": list(self.value.values())}, index=pd.Index(list(self.value), name="category")
            )
        else:
            table = pd.DataFrame({"value": [self.value]}, index=pd.Index([self.kind]))
        return Output(
            kind=self.kind,
            table=table,
            masks={},
            query=self.query,
            config=config,
            notes=[self.accuracy_statement],
            epsilon=self.epsilon,
        )

    def record(self, config: SDCConfig = DEFAULT_CONFIG) -> Record:
        return self.output(config).record()


def _charge(budget: PrivacyBudget | None, epsilon: float, description: str) -> None:
    if not epsilon > 0:
        raise ValueError("epsilon must be positive")
    if budget is not None:
        budget.charge(epsilon, description)


def _query(kind: str, dataset: str | None, column: str | None, filters: Any, **extra: Any) -> dict[str, Any]:
    return {
        "function": kind,
        "dataset": dataset,
        "columns": [column] if column else [],
        "filters": filters_mod.normalise(filters),
        "description": f"{kind} of {column or 'rows'}",
        **extra,
    }


def _values(data: pd.DataFrame, column: str, filters: Any) -> list[float]:
    frame = filters_mod.apply(data, filters) if filters else data
    values = pd.to_numeric(frame[column], errors="raise").to_numpy(dtype=float)
    return [float(v) for v in values[~np.isnan(values)]]


def _laplace_after(transformation: Any, epsilon: float) -> tuple[Any, float]:
    """The Laplace measurement after ``transformation`` with the least noise that spends ``epsilon``."""

    def chain(scale: float) -> Any:
        return transformation >> opendp.m.then_laplace(scale=scale)

    scale = opendp.binary_search_param(chain, d_in=1, d_out=epsilon)
    return chain(scale), float(scale)


def _check_bounds(bounds: tuple[float, float]) -> tuple[float, float]:
    low, high = float(bounds[0]), float(bounds[1])
    if not low < high:
        raise ValueError("bounds must be (low, high) with low < high")
    return low, high


def dp_count(
    data: pd.DataFrame,
    *,
    epsilon: float,
    budget: PrivacyBudget | None = None,
    alpha: float = 0.05,
    dataset: str | None = None,
    filters: filters_mod.Filters | None = None,
) -> DPResult:
    """Number of rows (after ``filters``), with discrete Laplace noise."""
    query = _query("dp_count", dataset, None, filters, epsilon=epsilon)
    _charge(budget, epsilon, query["description"])
    frame = filters_mod.apply(data, filters) if filters else data
    domain = opendp.vector_domain(opendp.atom_domain(T=bool))
    measurement, scale = _laplace_after(opendp.t.make_count(domain, opendp.symmetric_distance()), epsilon)
    value = int(measurement([True] * len(frame)))
    accuracy = opendp.discrete_laplacian_scale_to_accuracy(scale, alpha)
    return DPResult("dp_count", value, epsilon, float(accuracy), alpha, query)


def dp_sum(
    data: pd.DataFrame,
    column: str,
    *,
    bounds: tuple[float, float],
    epsilon: float,
    budget: PrivacyBudget | None = None,
    alpha: float = 0.05,
    dataset: str | None = None,
    filters: filters_mod.Filters | None = None,
) -> DPResult:
    """Sum of ``column`` with each value clamped to ``bounds``, with Laplace noise."""
    low, high = _check_bounds(bounds)
    query = _query("dp_sum", dataset, column, filters, epsilon=epsilon, bounds=[low, high])
    _charge(budget, epsilon, query["description"])
    domain = opendp.vector_domain(opendp.atom_domain(T=float, nan=False))
    summed = opendp.t.make_clamp(domain, opendp.symmetric_distance(), bounds=(low, high)) >> opendp.t.then_sum()
    measurement, scale = _laplace_after(summed, epsilon)
    value = float(measurement(_values(data, column, filters)))
    accuracy = opendp.laplacian_scale_to_accuracy(scale, alpha)
    return DPResult("dp_sum", value, epsilon, float(accuracy), alpha, query)


def dp_mean(
    data: pd.DataFrame,
    column: str,
    *,
    bounds: tuple[float, float],
    epsilon: float,
    budget: PrivacyBudget | None = None,
    alpha: float = 0.05,
    dataset: str | None = None,
    filters: filters_mod.Filters | None = None,
) -> DPResult:
    """Mean as a noisy sum over a noisy count, each spending half of ``epsilon``.

    The accuracy given is that of the noisy sum divided by the noisy count at its worst within
    the count's accuracy, so it is conservative.
    """
    low, high = _check_bounds(bounds)
    query = _query("dp_mean", dataset, column, filters, epsilon=epsilon, bounds=[low, high])
    _charge(budget, epsilon, query["description"])
    values = _values(data, column, filters)
    total = dp_sum(pd.DataFrame({column: values}), column, bounds=(low, high), epsilon=epsilon / 2, alpha=alpha / 2)
    count = dp_count(pd.DataFrame({column: values}), epsilon=epsilon / 2, alpha=alpha / 2)
    n = max(int(count.value), 1)
    mean = float(np.clip(total.value / n, low, high))
    worst_n = max(n - count.accuracy, 1.0)
    accuracy = min(total.accuracy / worst_n + abs(mean) * count.accuracy / worst_n, high - low)
    return DPResult("dp_mean", mean, epsilon, float(accuracy), alpha, query)


def dp_histogram(
    data: pd.DataFrame,
    column: str,
    *,
    categories: Sequence[Any],
    epsilon: float,
    budget: PrivacyBudget | None = None,
    alpha: float = 0.05,
    dataset: str | None = None,
    filters: filters_mod.Filters | None = None,
) -> DPResult:
    """Counts of each of the public ``categories`` (others are counted but not released)."""
    if not categories:
        raise ValueError("categories must be given: learning them from the data would leak them")
    labels = [str(c) for c in categories]
    query = _query(
        "dp_histogram",
        dataset,
        column,
        filters,
        epsilon=epsilon,
        categories=[json_label(c) for c in categories],
    )
    _charge(budget, epsilon, query["description"])
    frame = filters_mod.apply(data, filters) if filters else data
    domain = opendp.vector_domain(opendp.atom_domain(T=str))
    counted = opendp.t.make_count_by_categories(domain, opendp.symmetric_distance(), categories=labels)
    measurement, scale = _laplace_after(counted, epsilon)
    noisy = measurement([str(v) for v in frame[column].dropna()])
    accuracy = opendp.discrete_laplacian_scale_to_accuracy(scale, alpha)
    value = {label: int(n) for label, n in zip(labels, noisy[: len(labels)], strict=True)}
    return DPResult("dp_histogram", value, epsilon, float(accuracy), alpha, query)
