"""Each rule's boundary, pinned; and each rule against the brute-force reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from disclosure_control import rules
from disclosure_control.cellstats import cell_stats
from disclosure_control.config import SDCConfig
from disclosure_control.evidence import evaluate, group_evidence

from ._sdc_reference import cell_rules, verdict

CFG = SDCConfig()


def flags(values: list[float], agg: str, config: SDCConfig = CFG) -> set[str]:
    """Rules flagged by the library for one cell holding ``values``."""
    ids = np.zeros(len(values), dtype=np.int64)
    arr = np.asarray(values, dtype=float)
    ev = group_evidence(ids, arr, 1, [agg], config)
    _, masks = evaluate(agg, ev, config)
    return {name for name, mask in masks.items() if mask[0]}


# ---------------------------------------------------------------- boundaries
@pytest.mark.parametrize(("n", "flagged"), [(0, False), (1, True), (9, True), (10, False), (11, False)])
def test_threshold_boundary_limit_itself_is_safe(n: int, flagged: bool) -> None:
    assert bool(rules.threshold(np.array([n]), CFG)[0]) is flagged


def test_zeros_fail_only_when_zeros_are_disclosive() -> None:
    assert rules.zeros(np.array([0, 1]), CFG).tolist() == [True, False]
    assert rules.zeros(np.array([0]), SDCConfig(zeros_are_disclosive=False)).tolist() == [False]


@pytest.mark.parametrize(
    ("values", "flagged"),
    [
        ([45, 45, 10], False),  # top two are exactly 90%: the limit itself passes
        ([45, 45, 9.99], True),  # a hair over 90%
        ([45, 44, 11], False),
        ([100], True),  # a single contributor is 100%
        ([0, 0, 0], False),  # nothing to dominate
    ],
)
def test_nk_boundary(values: list[float], flagged: bool) -> None:
    assert ("nk_dominance" in flags(values * 1, "sum", SDCConfig(threshold=1))) is flagged


@pytest.mark.parametrize(
    ("values", "flagged"),
    [
        ([100, 50, 10], False),  # rest is exactly 10% of the largest: passes
        ([100, 50, 9.99], True),
        ([100, 50, 5, 5], False),  # ties in the rest add up to exactly 10%
        ([100, 1], True),  # two contributors: the second learns the first exactly
    ],
)
def test_p_percent_boundary(values: list[float], flagged: bool) -> None:
    assert ("p_percent" in flags(values, "sum", SDCConfig(threshold=1))) is flagged


def test_negative_values_send_dominance_to_review_not_fail() -> None:
    found = flags([-5.0, *range(1, 20)], "mean")
    assert "negative" in found
    assert "nk_dominance" not in found and "p_percent" not in found
    assert rules.RULES["negative"].verdict == "review"


def test_missing_values_review_only_when_checked() -> None:
    values = [float(v) for v in range(1, 15)] + [float("nan")]
    assert "missing" not in flags(values, "mean")
    assert "missing" in flags(values, "mean", SDCConfig(check_missing_values=True))
    assert rules.RULES["missing"].verdict == "review"


@pytest.mark.parametrize(("n", "flagged"), [(10, True), (11, False)])
def test_dispersion_needs_dof_of_ten(n: int, flagged: bool) -> None:
    """std of n values has n - 1 degrees of freedom: 11 values (dof 10) pass, 10 values fail."""
    values = [float(i) for i in range(n)]
    assert ("dof" in flags(values, "std")) is flagged


def test_all_same_value_fails_for_statistics() -> None:
    assert "all_same" in flags([7.0] * 30, "mean")
    assert "all_same" not in flags([7.0] * 29 + [8.0], "mean")


def test_min_and_max_are_single_person_statistics() -> None:
    values = [float(i) for i in range(30)]
    assert "single_person" in flags(values, "max")
    assert "single_person" in flags(values, "min")
    assert "single_person" not in flags(values, "median")


@pytest.mark.parametrize(("copies", "flagged"), [(9, True), (10, False)])
def test_mode_needs_threshold_sharers(copies: int, flagged: bool) -> None:
    values = [1.0] * copies + [float(i) for i in range(2, 30)]
    assert ("mode_frequency" in flags(values, "mode")) is flagged


def test_combine_fail_beats_review() -> None:
    out = rules.combine({"negative": np.array([True, True, False]), "threshold": np.array([True, False, False])}, (3,))
    assert out.tolist() == ["fail", "review", "pass"]


def test_every_rule_documents_its_boundary() -> None:
    for rule in rules.RULES.values():
        assert rule.verdict in {"fail", "review"}
        assert rule.boundary and rule.description


# ---------------------------------------------------------------- property tests
values_strategy = st.lists(st.one_of(st.integers(-5, 200).map(float), st.just(float("nan"))), min_size=0, max_size=25)
config_strategy = st.builds(
    SDCConfig,
    threshold=st.integers(1, 12),
    dof_threshold=st.integers(1, 12),
    nk_n=st.integers(1, 4),
    nk_k=st.sampled_from([0.5, 0.75, 0.8, 0.9, 0.95]),
    p_ratio=st.sampled_from([0.05, 0.1, 0.2, 0.5]),
    zeros_are_disclosive=st.booleans(),
    check_missing_values=st.booleans(),
)


@settings(max_examples=150, deadline=None)
@given(
    values=values_strategy,
    agg=st.sampled_from(["count", "sum", "mean", "median", "std", "min", "max", "mode"]),
    config=config_strategy,
)
def test_rules_match_brute_force_reference(values: list[float], agg: str, config: SDCConfig) -> None:
    expected = cell_rules(values, agg, config)
    assert flags(values, agg, config) == expected
    assert rules.combine({name: np.array([True]) for name in expected}, (1,))[0] == verdict(expected)


@settings(max_examples=100, deadline=None)
@given(
    cells=st.lists(st.lists(st.integers(-3, 1000).map(float), max_size=8), min_size=1, max_size=6),
    nk_n=st.integers(1, 4),
)
def test_cell_stats_match_sorting_each_cell(cells: list[list[float]], nk_n: int) -> None:
    ids = np.concatenate([np.full(len(c), i) for i, c in enumerate(cells)]).astype(np.int64)
    values = np.concatenate([np.asarray(c, dtype=float) for c in cells]) if ids.size else np.array([])
    stats = cell_stats(ids, values, len(cells), nk_n)
    for i, cell in enumerate(cells):
        ordered = sorted(cell, reverse=True)
        assert stats.count[i] == len(cell)
        assert stats.total[i] == pytest.approx(sum(cell))
        assert stats.top_n_sum[i] == pytest.approx(sum(ordered[:nk_n]))
        assert stats.second[i] == (ordered[1] if len(ordered) > 1 else 0)
        assert stats.n_negative[i] == sum(v < 0 for v in cell)
        if cell:
            assert stats.maximum[i] == ordered[0] and stats.minimum[i] == ordered[-1]


def test_config_refuses_unknown_or_invalid_parameters() -> None:
    with pytest.raises(ValueError, match="unknown"):
        SDCConfig.from_mapping({"treshold": 5})
    with pytest.raises(ValueError):
        SDCConfig(nk_k=1.0)
    with pytest.raises(ValueError):
        SDCConfig(threshold=0)
    acro = {"safe_threshold": 5, "safe_nk_k": 0.85, "safe_pratio_p": 0.2, "suppress": False}
    config = SDCConfig.from_acro(acro)
    assert (config.threshold, config.nk_k, config.p_ratio) == (5, 0.85, 0.2)
    assert SDCConfig.from_acro(config.to_acro()) == config


def test_cell_stats_ignores_rows_outside_cells() -> None:
    stats = cell_stats(np.array([0, -1, 0]), np.array([1.0, 1000.0, 2.0]), 1, 2)
    assert stats.count.tolist() == [2] and stats.total.tolist() == [3.0]
    assert pd.isna(cell_stats(np.array([], dtype=np.int64), np.array([]), 1, 2).maximum[0])
