"""The disclosure rules, each a vectorised function of per-cell evidence.

Every rule answers "which cells does this rule flag?" as a boolean array. Whether a flag means
"fail" or "review" is a property of the rule (``RULES[name].verdict``), never of the caller, so
the gateway and a notebook cannot disagree. Boundaries are written out in ``Rule.boundary`` and
pinned by tests: the limit itself is always SAFE (10 contributors pass, 9 fail; a top-2 share of
exactly 0.9 passes; a remainder of exactly 10% of the largest passes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from .config import SDCConfig

Verdict = Literal["pass", "fail", "review"]
VERDICT_ORDER: dict[str, int] = {"pass": 0, "review": 1, "fail": 2}

# Relative tolerance for comparing sums of floats against a fraction of a total, so that a share
# that is exactly on the boundary in decimal arithmetic (e.g. 45+45 of 100 against k=0.9) is not
# pushed over it by binary rounding.
_REL_TOL = 1e-9


@dataclass(frozen=True)
class Rule:
    name: str
    verdict: Verdict
    description: str
    boundary: str


RULES: dict[str, Rule] = {
    r.name: r
    for r in (
        Rule(
            "threshold",
            "fail",
            "Fewer contributors than the minimum threshold.",
            "fails when 0 < n < threshold; n == threshold passes",
        ),
        Rule(
            "zeros",
            "fail",
            "A zero count reveals that nobody in this group has the attribute (class disclosure).",
            "fails when n == 0 and zeros_are_disclosive",
        ),
        Rule(
            "nk_dominance",
            "fail",
            "The largest nk_n contributors make up too much of the total.",
            "fails when sum of nk_n largest > nk_k * total; exactly nk_k passes",
        ),
        Rule(
            "p_percent",
            "fail",
            "The second largest contributor could estimate the largest to within p%.",
            "fails when total - largest - second < p_ratio * largest; equal passes",
        ),
        Rule(
            "negative",
            "review",
            "Negative values make dominance undefined.",
            "review when any contribution is < 0",
        ),
        Rule(
            "missing",
            "review",
            "The statistic silently ignored missing values.",
            "review when check_missing_values and any value is missing",
        ),
        Rule(
            "dof",
            "fail",
            "Too few residual degrees of freedom.",
            "fails when dof < dof_threshold; dof == dof_threshold passes",
        ),
        Rule(
            "all_same",
            "fail",
            "Every member of the group has the same value, so the statistic reveals each member's value.",
            "fails when n >= 1 and min == max",
        ),
        Rule(
            "single_person",
            "review",
            "The statistic is one person's value (minimum, maximum, modal value or an outer histogram edge).",
            "always review",
        ),
        Rule(
            "mode_frequency",
            "fail",
            "The modal value is shared by fewer people than the threshold.",
            "fails when frequency of the mode < threshold",
        ),
        Rule(
            "at_risk",
            "fail",
            "Fewer people at risk than the survival threshold at this step.",
            "fails when at risk < survival_threshold",
        ),
        Rule(
            "events",
            "fail",
            "Fewer events than the survival threshold at this step.",
            "fails when 0 < events < survival_threshold",
        ),
        Rule(
            "model_threshold",
            "fail",
            "A cell of a table the model summarises has too few people: a category (or combination of an "
            "interaction's categories) by outcome class in a binary model, a category's size for a continuous "
            "outcome.",
            "fails when 0 < n < threshold; n == threshold passes",
        ),
        Rule(
            "model_zeros",
            "fail",
            "A category (or combination of an interaction's categories) in the model has nobody in the rows the "
            "model used (class disclosure).",
            "fails when n == 0 and zeros_are_disclosive",
        ),
        Rule(
            "model_all_same",
            "fail",
            "Everyone in a category of the model has the same value of the continuous outcome, so the model "
            "reveals each member's value.",
            "fails when n >= 1 and min == max of the outcome in the category",
        ),
        Rule(
            "model_dominance",
            "fail",
            "In a category of the model, a few people make up most of the (non-negative) outcome's total.",
            "fails when the nk_n largest outcomes are more than nk_k of the category total, or the rest is less "
            "than p_ratio of the largest; exactly the limit passes; not applied when any outcome is negative",
        ),
        Rule(
            "separation",
            "fail",
            "Complete or quasi-complete separation in a binary model: a term predicts some people's outcome "
            "exactly, so its coefficient runs to infinity and reveals their outcome.",
            "fails when a category (or combination) has everyone in one outcome class, a numeric predictor splits "
            "the classes (overall or within a category), an exact check finds a separating direction, or "
            "statsmodels reports perfect separation",
        ),
        Rule(
            "possible_separation",
            "review",
            "statsmodels suspects separation (many outcomes predicted almost exactly, or the fit did not "
            "converge) and the exact checks could not confirm or rule it out.",
            "review when more than 10% of people are predicted within 1e-4 of their outcome or the fit did "
            "not converge, and no separation was found",
        ),
        Rule(
            "outcome_class",
            "fail",
            "An outcome class of a binary model has too few members.",
            "fails when either class has < threshold members",
        ),
    )
}


def threshold(counts: np.ndarray, config: SDCConfig) -> np.ndarray:
    counts = np.asarray(counts)
    return (counts > 0) & (counts < config.threshold)


def zeros(counts: np.ndarray, config: SDCConfig) -> np.ndarray:
    counts = np.asarray(counts)
    if not config.zeros_are_disclosive:
        return np.zeros(counts.shape, dtype=bool)
    return counts == 0


def nk_dominance(top_n_sum: np.ndarray, total: np.ndarray, n_negative: np.ndarray, config: SDCConfig) -> np.ndarray:
    """Cells whose nk_n largest contributions exceed nk_k of the total.

    Undefined (so not flagged here; ``negative`` flags it) where a contribution is negative, and
    where the total is zero (nothing is dominated).
    """
    top = np.asarray(top_n_sum, dtype=float)
    tot = np.asarray(total, dtype=float)
    with np.errstate(invalid="ignore"):
        over = top - config.nk_k * tot > _REL_TOL * np.abs(tot)
    return over & (tot > 0) & (np.asarray(n_negative) == 0)


def p_percent(
    largest: np.ndarray, second: np.ndarray, total: np.ndarray, n_negative: np.ndarray, config: SDCConfig
) -> np.ndarray:
    """Cells where the rest (total less the two largest) is under p_ratio of the largest."""
    top1 = np.nan_to_num(np.asarray(largest, dtype=float))
    top2 = np.nan_to_num(np.asarray(second, dtype=float))
    rest = np.nan_to_num(np.asarray(total, dtype=float)) - top1 - top2
    with np.errstate(invalid="ignore"):
        under = config.p_ratio * top1 - rest > _REL_TOL * np.abs(top1)
    return under & (top1 > 0) & (np.asarray(n_negative) == 0)


def negative(n_negative: np.ndarray) -> np.ndarray:
    return np.asarray(n_negative) > 0


def missing(n_missing: np.ndarray, config: SDCConfig) -> np.ndarray:
    n_missing = np.asarray(n_missing)
    if not config.check_missing_values:
        return np.zeros(n_missing.shape, dtype=bool)
    return n_missing > 0


def dof(degrees: np.ndarray | float, config: SDCConfig) -> np.ndarray:
    return np.asarray(degrees) < config.dof_threshold


def all_same(counts: np.ndarray, minimum: np.ndarray, maximum: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return (np.asarray(counts) > 0) & (np.asarray(minimum) == np.asarray(maximum))


def single_person(counts: np.ndarray) -> np.ndarray:
    return np.asarray(counts) > 0


def mode_frequency(counts: np.ndarray, mode_counts: np.ndarray, config: SDCConfig) -> np.ndarray:
    return (np.asarray(counts) > 0) & (np.asarray(mode_counts) < config.threshold)


def combine(masks: dict[str, np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """Per-cell verdict ("pass"/"review"/"fail") from the flagged rules; fail beats review."""
    fail = np.zeros(shape, dtype=bool)
    review = np.zeros(shape, dtype=bool)
    for name, mask in masks.items():
        if RULES[name].verdict == "fail":
            fail |= mask
        else:
            review |= mask
    out = np.full(shape, "pass", dtype=object)
    out[review] = "review"
    out[fail] = "fail"
    return out
