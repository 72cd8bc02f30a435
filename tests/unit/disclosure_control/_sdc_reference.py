"""Brute-force reference for the disclosure rules: one cell at a time, exact arithmetic.

Written straight from the definitions in docs/disclosure-control.md, with Fractions and sorted
lists instead of vectorised floats, so the property tests compare two independent routes.
"""

from __future__ import annotations

from fractions import Fraction
from math import isnan

from disclosure_control.config import SDCConfig


def _frac(x: float) -> Fraction:
    return Fraction(str(x))


def cell_rules(values: list[float], agg: str, config: SDCConfig, has_values: bool = True) -> set[str]:
    """Rules flagged for one cell holding ``values`` (NaN = missing) under statistic ``agg``."""
    present = [v for v in values if not isnan(v)]
    n = len(present) if has_values else len(values)
    flagged: set[str] = set()
    if 0 < n < config.threshold:
        flagged.add("threshold")
    if n == 0 and config.zeros_are_disclosive:
        flagged.add("zeros")
    if not has_values:
        return flagged
    if config.check_missing_values and len(present) < len(values):
        flagged.add("missing")
    if agg == "count":
        return flagged
    if n > 0 and min(present) == max(present):
        flagged.add("all_same")
    if agg in {"sum", "mean"}:
        if any(v < 0 for v in present):
            flagged.add("negative")
        else:
            ordered = sorted((_frac(v) for v in present), reverse=True)
            total = sum(ordered, Fraction(0))
            if total > 0 and sum(ordered[: config.nk_n], Fraction(0)) > _frac(config.nk_k) * total:
                flagged.add("nk_dominance")
            largest = ordered[0] if ordered else Fraction(0)
            second = ordered[1] if len(ordered) > 1 else Fraction(0)
            if largest > 0 and total - largest - second < _frac(config.p_ratio) * largest:
                flagged.add("p_percent")
    if agg in {"std", "var"} and n > 0 and n - 1 < config.dof_threshold:
        flagged.add("dof")
    if agg in {"min", "max"} and n > 0:
        flagged.add("single_person")
    if agg == "mode" and n > 0:
        frequency = max(present.count(v) for v in set(present))
        if frequency < config.threshold:
            flagged.add("mode_frequency")
    return flagged


FAIL_RULES = {"threshold", "zeros", "nk_dominance", "p_percent", "dof", "all_same", "mode_frequency"}


def verdict(flagged: set[str]) -> str:
    if flagged & FAIL_RULES:
        return "fail"
    return "review" if flagged else "pass"
