"""Checker statistics as plain functions: agreement, overturns and turnaround on facts a person can check by hand."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from gateway.outputs.statistics import (
    APPROVED,
    NOT_APPROVED,
    Duration,
    FileVersion,
    Round,
    Vote,
    compute,
    rule_label,
)

T0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
A, B, C = 1, 2, 3


def version(votes: list[tuple[int, str]], outcome: str | None, automatic: str | None = "pass",
            rules: tuple[str, ...] = ()) -> FileVersion:
    return FileVersion(1, "t.csv", 1, automatic, frozenset(rules), outcome, [Vote(c, v) for c, v in votes])


def test_agreement_counts_pairs_of_different_checkers_on_the_same_version() -> None:
    figures = compute([
        version([(A, "approve"), (B, "approve")], APPROVED),
        version([(A, "approve"), (B, "changes_requested")], NOT_APPROVED),
        version([(A, "approve"), (B, "approve"), (C, "changes_requested")], APPROVED),  # three pairs, one agreeing
        version([(A, "approve")], None),  # one vote: no pair
    ], [])
    assert (figures.agreement.count, figures.agreement.total) == (2, 5)
    by_checker = {c.checker_id: c for c in figures.checkers}
    assert (by_checker[A].agreement.count, by_checker[A].agreement.total) == (2, 4)
    assert (by_checker[C].agreement.count, by_checker[C].agreement.total) == (0, 2)
    assert by_checker[A].votes == 4 and figures.reviewed_versions == 4


def test_a_vote_is_overturned_when_it_differs_from_the_final_outcome() -> None:
    figures = compute([
        version([(A, "approve"), (B, "changes_requested")], NOT_APPROVED),  # A overturned
        version([(A, "changes_requested"), (B, "approve")], APPROVED),  # A overturned
        version([(A, "approve"), (B, "approve")], APPROVED),
        version([(A, "changes_requested"), (B, "changes_requested")], None),  # no outcome yet: not counted
    ], [])
    by_checker = {c.checker_id: c for c in figures.checkers}
    assert (by_checker[A].overturned.count, by_checker[A].overturned.total) == (2, 3)
    assert (by_checker[B].overturned.count, by_checker[B].overturned.total) == (0, 3)
    assert (figures.checker_overturned.count, figures.checker_overturned.total) == (2, 6)


def test_the_automatic_verdict_is_overturned_by_an_opposite_outcome_and_review_never_is() -> None:
    figures = compute([
        version([(A, "approve")], APPROVED, "fail", ("threshold",)),  # people approved what the checks failed
        version([(A, "changes_requested")], NOT_APPROVED, "pass"),  # people stopped what the checks passed
        version([(A, "approve")], APPROVED, "pass"),
        version([(A, "changes_requested")], NOT_APPROVED, "fail", ("threshold", "differencing")),
        version([(A, "approve")], APPROVED, "review"),  # review asks people: never overturned
        version([(A, "approve")], None, "fail", ("threshold",)),  # undecided
    ], [])
    assert (figures.automatic_overturned.count, figures.automatic_overturned.total) == (2, 4)
    rules = {r.rule: r for r in figures.rules}
    assert rules["threshold"].versions == 3
    assert (rules["threshold"].automatic_overturned.count, rules["threshold"].automatic_overturned.total) == (1, 2)
    assert (rules["threshold"].approved.count, rules["threshold"].approved.total) == (1, 2)
    assert rules["differencing"].versions == 1 and rules["none"].versions == 3
    assert [r.rule for r in figures.rules][-1] == "none"  # the unflagged bucket comes last


def test_turnaround_median_and_90th_percentile_in_hours() -> None:
    rounds = [Round(1, 1, T0, ((A, T0 + dt.timedelta(hours=h)), (B, T0 + dt.timedelta(hours=h + 10))),
                    T0 + dt.timedelta(hours=2 * h)) for h in range(1, 11)]
    figures = compute([], rounds)
    assert figures.to_first_review == Duration(10, 5.5, 9.1)  # 1..10 hours
    assert figures.to_decision == Duration(10, 11.0, 18.2)  # 2, 4, .., 20 hours
    figures = compute([version([(A, "approve"), (B, "approve")], APPROVED)], rounds)
    by_checker = {c.checker_id: c for c in figures.checkers}
    assert by_checker[B].turnaround == Duration(10, 15.5, 19.1)
    assert compute([], [Round(1, 1, T0, (), None)]).to_first_review == Duration(0, None, None)
    assert Duration.of([3.0]) == Duration(1, 3.0, 3.0)


def test_rule_labels_come_from_one_mapping() -> None:
    assert rule_label("threshold") == "Minimum threshold (too few people in a cell)"
    assert rule_label("none") == "No rule flagged a cell"
    assert "_" not in rule_label("some_new_rule")


@given(st.lists(st.tuples(st.lists(st.tuples(st.integers(1, 4), st.sampled_from(["approve", "changes_requested"])),
                                   max_size=4),
                          st.sampled_from([APPROVED, NOT_APPROVED, None]),
                          st.sampled_from(["pass", "review", "fail", None])), max_size=12))
def test_every_rate_stays_between_zero_and_one_and_counts_add_up(cases: list) -> None:
    versions = [version(votes, outcome, automatic) for votes, outcome, automatic in cases]
    figures = compute(versions, [])
    for rate in (figures.agreement, figures.checker_overturned, figures.automatic_overturned,
                 *(c.overturned for c in figures.checkers), *(c.agreement for c in figures.checkers)):
        assert 0 <= rate.count <= rate.total
    assert figures.reviewed_versions == sum(1 for v in versions if v.votes)
    assert sum(c.votes for c in figures.checkers) == sum(len(v.votes) for v in versions)
