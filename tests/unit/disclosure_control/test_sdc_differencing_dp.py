"""Project-level differencing across records, and differential privacy with a budget."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import disclosure_control as dc
from disclosure_control.dp import BudgetExceeded, PrivacyBudget


def cohort() -> pd.DataFrame:
    rng = np.random.default_rng(2)
    n = 3000
    df = pd.DataFrame(
        {
            "age_band": rng.choice(["18-29", "30-49", "50-64", "65+", "90+"], n, p=[0.3, 0.3, 0.3, 0.098, 0.002]),
            "sex": rng.choice(["F", "M"], n),
            "admitted": pd.to_datetime("2021-01-01") + pd.to_timedelta(rng.integers(0, 365, n), unit="D"),
            "cost": rng.lognormal(7, 1, n),
        }
    )
    df["month"] = df.admitted.dt.strftime("%Y-%m-%d")
    return df


def test_one_extra_category_is_flagged() -> None:
    df = cohort()
    first = dc.crosstab(
        "sex", "sex", data=df, filters={"age_band": ["18-29", "30-49", "50-64", "65+"]}, dataset="cohort", margins=True
    ).record()
    second = dc.crosstab("sex", "sex", data=df, dataset="cohort", margins=True).record()
    n_extra = int((df.age_band == "90+").sum())
    assert 0 < n_extra < 10
    report = dc.check_differencing(second, [first])
    assert report.status == "fail"
    assert any(flag.difference == n_extra for flag in report.flags)
    assert "differ by" in report.summary


def test_nested_subgroup_is_flagged_and_different_datasets_are_not() -> None:
    df = cohort()
    whole = dc.crosstab("sex", "age_band", data=df, dataset="cohort").record()
    no_oldest = dc.crosstab(
        "sex",
        "age_band",
        data=df,
        dataset="cohort",
        margins=True,
        filters={"age_band": ["18-29", "30-49", "50-64", "65+"]},
    ).record()
    # the filtered table's margin (F, All) is every woman but the 90+: inside "every woman"
    everyone = dc.pivot_table(df.assign(one=1), "one", "sex", aggfunc="count", dataset="cohort").record()
    assert dc.check_differencing(no_oldest, [everyone]).status == "fail"
    elsewhere = dc.pivot_table(df.assign(one=1), "one", "sex", aggfunc="count", dataset="other").record()
    assert dc.check_differencing(no_oldest, [elsewhere]).status == "pass"
    assert dc.check_differencing(whole, [everyone]).status == "pass"  # no nested pair differs by 1..9


def test_overlapping_date_ranges_are_flagged() -> None:
    df = cohort()
    last_day = df.month.max()
    day_before = (pd.Timestamp(last_day) - pd.Timedelta(days=1)).strftime("%Y-%m-%d")
    through_end = dc.pivot_table(
        df.assign(one=1),
        "one",
        "sex",
        aggfunc="count",
        dataset="cohort",
        filters={"month": {"between": ["2021-01-01", last_day]}},
    ).record()
    one_day_less = dc.pivot_table(
        df.assign(one=1),
        "one",
        "sex",
        aggfunc="count",
        dataset="cohort",
        filters={"month": {"between": ["2021-01-01", day_before]}},
    ).record()
    on_last_day = df[df.month == last_day].groupby("sex").size()
    assert (on_last_day < 10).all()
    report = dc.check_differencing(one_day_less, [through_end])
    assert report.status == "fail"
    assert sorted(f.difference for f in report.flags) == sorted(on_last_day.tolist())


def test_differences_of_threshold_or_more_pass() -> None:
    df = cohort()
    a = dc.pivot_table(
        df.assign(one=1), "one", "sex", aggfunc="count", dataset="cohort", filters={"age_band": ["18-29", "30-49"]}
    ).record()
    b = dc.pivot_table(
        df.assign(one=1),
        "one",
        "sex",
        aggfunc="count",
        dataset="cohort",
        filters={"age_band": ["18-29", "30-49", "50-64"]},
    ).record()
    assert dc.check_differencing(b, [a]).status == "pass"


# ---------------------------------------------------------------- differential privacy
def test_budget_refuses_a_query_past_the_remaining_epsilon() -> None:
    df = cohort()
    budget = PrivacyBudget(total_epsilon=1.0)
    dc.dp_count(df, epsilon=0.6, budget=budget)
    with pytest.raises(BudgetExceeded):
        dc.dp_sum(df, "cost", bounds=(0, 5000), epsilon=0.5, budget=budget)
    assert budget.spent == pytest.approx(0.6)  # the refused query spent nothing
    dc.dp_mean(df, "cost", bounds=(0, 5000), epsilon=0.4, budget=budget)
    assert budget.remaining == pytest.approx(0.0)
    assert [e["epsilon"] for e in PrivacyBudget.from_dict(budget.to_dict()).ledger] == [0.6, 0.4]


def test_dp_values_are_close_with_a_large_epsilon_and_state_their_accuracy() -> None:
    df = cohort()
    count = dc.dp_count(df, epsilon=50.0)
    assert abs(count.value - len(df)) <= count.accuracy + 1
    assert count.epsilon == 50.0 and "95%" in count.accuracy_statement
    total = dc.dp_sum(df, "cost", bounds=(0, 5000), epsilon=50.0)
    assert abs(total.value - df.cost.clip(0, 5000).sum()) <= total.accuracy * 3
    mean = dc.dp_mean(df, "cost", bounds=(0, 5000), epsilon=50.0)
    assert abs(mean.value - df.cost.clip(0, 5000).mean()) <= mean.accuracy
    hist = dc.dp_histogram(df, "sex", categories=["F", "M"], epsilon=50.0)
    truth = df.sex.value_counts()
    assert all(abs(hist.value[k] - truth[k]) <= hist.accuracy + 1 for k in ["F", "M"])


def test_dp_noise_scales_with_epsilon() -> None:
    df = cohort()
    tight = dc.dp_sum(df, "cost", bounds=(0, 5000), epsilon=1.0)
    loose = dc.dp_sum(df, "cost", bounds=(0, 5000), epsilon=0.1)
    assert loose.accuracy == pytest.approx(tight.accuracy * 10, rel=1e-3)


def test_dp_outputs_pass_threshold_rules_by_construction() -> None:
    df = cohort()
    tiny = df[df.age_band == "90+"]
    result = dc.dp_histogram(tiny, "sex", categories=["F", "M"], epsilon=1.0)
    output = result.output()
    assert output.status == "pass" and output.epsilon == 1.0
    with pytest.raises(ValueError):
        dc.dp_sum(df, "cost", bounds=(10, 1), epsilon=1.0)
    with pytest.raises(ValueError):
        dc.dp_histogram(df, "sex", categories=[], epsilon=1.0)
