from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.extracts.risk import COUNT, assess, equivalence_classes

COLUMNS = ["age_band", "sex", "borough"]
rows_strategy = st.lists(
    st.tuples(
        st.sampled_from(["0-4", "40-44", "90+", None]),
        st.sampled_from(["F", "M"]),
        st.sampled_from(["Hackney", "Newham", "Sutton"]),
    ),
    min_size=0,
    max_size=80,
)


def _table(rows: list[tuple]) -> pa.Table:
    return pa.table({c: pa.array([r[i] for r in rows], pa.string()) for i, c in enumerate(COLUMNS)})


def _brute_below(rows: list[tuple], columns: list[int], k: int) -> int:
    counts = Counter(tuple(r[i] for i in columns) for r in rows)
    return sum(n for n in counts.values() if n < k)


@given(rows_strategy, st.integers(2, 10))
def test_class_sizes_match_a_brute_force_count(rows: list[tuple], k: int) -> None:
    brute = Counter(rows)
    classes = equivalence_classes(_table(rows), COLUMNS).to_pylist()
    assert {tuple(c[col] for col in COLUMNS): c[COUNT] for c in classes} == dict(brute)

    report = assess(_table(rows), COLUMNS, k)
    assert report.records == len(rows)
    assert report.equivalence_classes == len(brute)
    assert report.smallest_class == min(brute.values(), default=0)
    assert report.records_below_k == _brute_below(rows, [0, 1, 2], k)
    assert report.unique_records == sum(1 for n in brute.values() if n == 1)
    assert report.classes_below_k_by_size == dict(Counter(n for n in brute.values() if n < k))
    assert report.flagged == (report.records_below_k > 0)
    if rows:
        assert report.share_below_k == pytest.approx(report.records_below_k / len(rows), abs=1e-6)


@given(rows_strategy, st.integers(2, 6))
def test_drivers_are_what_removing_each_column_would_change(rows: list[tuple], k: int) -> None:
    report = assess(_table(rows), COLUMNS, k)
    assert sorted(d.column for d in report.drivers) == sorted(COLUMNS)
    for driver in report.drivers:
        i = COLUMNS.index(driver.column)
        rest = [j for j in range(3) if j != i]
        assert driver.records_below_k_without == _brute_below(rows, rest, k)
        assert driver.records_below_k_alone == _brute_below(rows, [i], k)
        assert driver.reduction_if_removed == report.records_below_k - driver.records_below_k_without
        assert driver.distinct_values == len({r[i] for r in rows})
    reductions = [d.reduction_if_removed for d in report.drivers]
    assert reductions == sorted(reductions, reverse=True)


def test_a_rare_value_is_named_as_the_driver() -> None:
    rows = [("40-44", "F", "Hackney")] * 12 + [("40-44", "M", "Hackney")] * 12 + [("40-44", "F", "Sutton")]
    report = assess(_table(rows), COLUMNS, 5)
    assert report.records_below_k == 1 and report.flagged
    assert report.drivers[0].column == "borough"
    assert report.summary()["main_drivers"][0] == "borough"
    assert assess(_table(rows[:24]), COLUMNS, 5).summary()["main_drivers"] == []


def test_without_quasi_identifiers_only_a_tiny_cohort_is_flagged() -> None:
    assert not assess(pa.table({"x": [1] * 5}), [], 5).flagged
    small = assess(pa.table({"x": [1] * 4}), [], 5)
    assert small.flagged and small.records_below_k == 4
    assert not assess(pa.table({"x": pa.array([], pa.int8())}), [], 5).flagged
