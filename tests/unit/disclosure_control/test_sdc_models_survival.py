"""ols, logit, probit and the Kaplan-Meier table: pass, fail and review cases and their boundaries."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from hypothesis import given, settings
from hypothesis import strategies as st

import disclosure_control as dc
from disclosure_control.config import SDCConfig
from disclosure_control.survival import km_table, merge_steps


def patients(n: int = 400, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"age": rng.uniform(20, 80, n), "group": rng.choice(["a", "b", "c"], n)})
    df["bp"] = 100 + 0.5 * df.age + rng.normal(0, 5, n)
    df["event"] = (rng.random(n) < 1 / (1 + np.exp(-(df.age - 50) / 10))).astype(int)
    return df


@pytest.mark.parametrize(("n", "status"), [(13, "pass"), (12, "fail")])
def test_ols_dof_boundary(n: int, status: str) -> None:
    """y ~ x1 + x2 has 3 parameters: 13 rows leave 10 residual dof (passes), 12 leave 9."""
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"y": rng.random(n), "x1": rng.random(n), "x2": rng.random(n)})
    out = dc.ols("y ~ x1 + x2", df)
    assert out.status == status
    assert out.record().checks["dof"] == ("pass" if status == "pass" else "fail")


def test_ols_matches_statsmodels_and_flags_small_category() -> None:
    df = patients()
    out = dc.ols("bp ~ age + C(group)", df)
    assert out.status == "pass"
    assert out.model.params.equals(sm.formula.ols("bp ~ age + C(group)", df).fit().params)
    df.loc[df.index[:395], "group"] = "a"
    df.loc[df.index[395:], "group"] = "b"  # 5 people in group b
    small = dc.ols("bp ~ age + C(group)", df)
    assert small.status == "fail"
    assert small.masks["model_threshold"].loc["C(group)[T.b]"].all()
    assert "C(group) = b: 5 people" in small.summary


def test_model_review_for_missing_values() -> None:
    df = patients()
    df.loc[df.index[:3], "bp"] = np.nan
    config = SDCConfig(check_missing_values=True)
    assert dc.ols("bp ~ age", df, config=config).status == "review"
    with_gaps = df.assign(age=df.age.where(df.index > 2))
    assert dc.logit("event ~ age", with_gaps, config=config).status == "review"
    assert dc.probit("event ~ age", with_gaps, config=config).status == "review"
    assert dc.probit("event ~ age", with_gaps).status == "pass"  # missing values noted, not reviewed


@pytest.mark.parametrize("fit", [dc.logit, dc.probit])
def test_binary_models_pass_and_fail(fit: Callable[..., dc.Output]) -> None:
    df = patients()
    assert fit("event ~ age + C(group)", df).status == "pass"
    rare = df.copy()
    rare["event"] = 0
    rare.loc[rare.index[:6], "event"] = 1  # only 6 events
    out = fit("event ~ age", rare)
    assert out.status == "fail" and out.checks["outcome_class"]


def test_logit_flags_a_category_whose_members_share_one_outcome() -> None:
    df = patients()
    df.loc[df.group == "c", "event"] = 1  # everyone in c had the event: the coefficient reveals it
    out = dc.logit("event ~ age + C(group)", df)
    assert out.status == "fail"
    assert out.masks["separation"].loc["C(group)[T.c]"].all()
    assert "C(group) = c: all" in out.summary


# ---------------------------------------------------------------- survival
@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 15), st.integers(0, 1)), min_size=1, max_size=60))
def test_km_table_matches_statsmodels(rows: list[tuple[int, int]]) -> None:
    time = np.array([r[0] for r in rows], dtype=float)
    event = np.array([r[1] for r in rows], dtype=float)
    ours = km_table(time, event)
    if event.sum() == 0:
        assert ours.empty
        return
    theirs = sm.SurvfuncRight(time, event).summary()
    theirs = theirs[theirs["num events"] > 0]
    np.testing.assert_allclose(ours["survival"].to_numpy(), theirs["Surv prob"].to_numpy())
    np.testing.assert_array_equal(ours["at_risk"].to_numpy(), theirs["num at risk"].to_numpy())
    np.testing.assert_array_equal(ours["events"].to_numpy(), theirs["num events"].to_numpy())


def cohort(months: int = 12, per_month: int = 12, survivors: int = 40) -> pd.DataFrame:
    """Deaths in whole months, `per_month` each, then `survivors` censored at the end."""
    time = np.repeat(np.arange(1, months + 1), per_month).tolist() + [months + 1] * survivors
    event = [1] * (months * per_month) + [0] * survivors
    return pd.DataFrame({"t": time, "e": event})


def test_survival_pass_fail_review() -> None:
    assert dc.survival(cohort(), "t", "e").status == "pass"
    individual = dc.survival(cohort(per_month=3), "t", "e")
    assert individual.status == "fail"
    assert individual.masks["events"].to_numpy().any()
    missing = cohort()
    missing.loc[0, "t"] = np.nan
    assert dc.survival(missing, "t", "e", config=SDCConfig(check_missing_values=True)).status == "review"


@pytest.mark.parametrize(("deaths", "status"), [(10, "pass"), (9, "fail")])
def test_survival_event_boundary(deaths: int, status: str) -> None:
    assert dc.survival(cohort(per_month=deaths), "t", "e").status == status


def test_survival_at_risk_boundary() -> None:
    ten_left = dc.survival(pd.DataFrame({"t": [1] * 10 + [2] * 10, "e": [1] * 20}), "t", "e")
    assert ten_left.table.loc[2.0, "at_risk"] == 10
    assert ten_left.status == "pass" and not ten_left.masks["at_risk"].loc[2.0].any()
    nine_left = dc.survival(pd.DataFrame({"t": [1] * 11 + [2] * 9, "e": [1] * 20}), "t", "e")
    assert nine_left.table.loc[2.0, "at_risk"] == 9
    assert nine_left.masks["at_risk"].loc[2.0].all() and not nine_left.masks["at_risk"].loc[1.0].any()


def test_survival_suppression_merges_steps() -> None:
    out = dc.survival(cohort(per_month=4), "t", "e")
    merged = out.suppressed()
    assert merged.status == "pass"
    assert (merged.table["events"] >= 10).all() and (merged.table["at_risk"] >= 10).all()
    full = out.table["survival"]
    made = np.cumprod(1 - merged.table["events"] / merged.table["at_risk"])
    # made from the steps shown (the exact KM value's fraction gives the hidden steps back), close to the exact one
    assert np.allclose(merged.table["survival"], made, rtol=0, atol=1e-12)
    assert np.allclose(merged.table["survival"], full.loc[merged.table.index], atol=0.05)
    assert merged.mitigation["steps_after"] < merged.mitigation["steps_before"]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 40), st.integers(0, 1)), min_size=1, max_size=150), st.integers(2, 12))
def test_merged_steps_always_pass(rows: list[tuple[int, int]], threshold: int) -> None:
    table = km_table(np.array([r[0] for r in rows], dtype=float), np.array([r[1] for r in rows], dtype=float))
    merged = merge_steps(table, threshold)
    assert (merged["events"] >= threshold).all() and (merged["at_risk"] >= threshold).all()
    assert merged["events"].sum() <= table["events"].sum()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 12), st.integers(0, 1)), min_size=1, max_size=80), st.integers(1, 12))
def test_survival_step_rules_match_brute_force(rows: list[tuple[int, int]], threshold: int) -> None:
    df = pd.DataFrame(rows, columns=["t", "e"])
    out = dc.survival(df, "t", "e", config=SDCConfig(survival_threshold=threshold))
    event_times = sorted({t for t, e in rows if e == 1})
    assert list(out.table.index) == event_times
    for time in event_times:
        at_risk = sum(1 for t, _ in rows if t >= time)
        events = sum(1 for t, e in rows if t == time and e == 1)
        assert bool(out.masks["at_risk"].loc[time].all()) == (at_risk < threshold)
        assert bool(out.masks["events"].loc[time].all()) == (0 < events < threshold)


# ---------------------------------------------------------------- survival split by group
def two_arms(deaths_b: int = 12) -> pd.DataFrame:
    """Arm a: 12 deaths a month for 12 months; arm b: `deaths_b` deaths in month 3; 40 survivors each."""
    a = cohort().assign(arm="a")
    b = pd.DataFrame({"t": [3] * deaths_b + [13] * 40, "e": [1] * deaths_b + [0] * 40, "arm": "b"})
    return pd.concat([a, b], ignore_index=True)


def test_each_group_curve_is_checked_on_its_own() -> None:
    """Pooled, month 3 has 12 + 4 = 16 deaths and passes; arm b's own step of 4 deaths must fail."""
    pooled = dc.survival(two_arms(deaths_b=4), "t", "e")
    assert pooled.status == "pass"
    by_arm = dc.survival(two_arms(deaths_b=4), "t", "e", group="arm")
    assert by_arm.status == "fail"
    assert by_arm.masks["events"].loc[("b", 3.0)].all() and not by_arm.masks["events"].loc["a"].to_numpy().any()
    assert "group b: 1 step(s) fail on their own" in by_arm.summary
    assert by_arm.record().query["group"] == ["arm"]
    assert dc.survival(two_arms(deaths_b=10), "t", "e", group="arm").status == "pass"
    gap = two_arms(deaths_b=10)
    gap.loc[0, "arm"] = None
    review = dc.survival(gap, "t", "e", group="arm", config=SDCConfig(check_missing_values=True))
    assert review.status == "review" and "1 rows with a missing time, event or group" in review.summary


def test_grouped_suppression_merges_steps_within_each_group() -> None:
    out = dc.survival(two_arms(deaths_b=4), "t", "e", group="arm")
    merged = out.suppressed()
    assert merged.status == "pass"
    assert set(merged.table.index.get_level_values("arm")) == {"a"}  # arm b never reaches 10 events
    full_a = km_table(cohort()["t"].to_numpy(dtype=float), cohort()["e"].to_numpy(dtype=float))
    for (_, time), row in merged.table.iterrows():
        assert row["survival"] == full_a.loc[time, "survival"]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 10), st.integers(0, 1), st.sampled_from(["x", "y", "z"])), min_size=1,
                max_size=80), st.integers(1, 8))
def test_grouped_curves_match_brute_force(rows: list[tuple[int, int, str]], threshold: int) -> None:
    df = pd.DataFrame(rows, columns=["t", "e", "g"])
    out = dc.survival(df, "t", "e", group="g", config=SDCConfig(survival_threshold=threshold))
    expected = sorted({(g, float(t)) for t, e, g in rows if e == 1})
    assert list(out.table.index) == expected
    for g, time in expected:
        mine = [(t, e) for t, e, gg in rows if gg == g]
        at_risk = sum(1 for t, _ in mine if t >= time)
        events = sum(1 for t, e in mine if t == time and e == 1)
        assert out.table.loc[(g, time), "at_risk"] == at_risk and out.table.loc[(g, time), "events"] == events
        assert bool(out.masks["at_risk"].loc[(g, time)].all()) == (at_risk < threshold)
        assert bool(out.masks["events"].loc[(g, time)].all()) == (0 < events < threshold)
    merged = out.suppressed().table
    assert (merged["events"] >= threshold).all() and (merged["at_risk"] >= threshold).all()
