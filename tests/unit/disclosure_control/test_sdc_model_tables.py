"""Models checked as the tables they summarise: one test per rule (pass, fail, review), separation by every
route, and property tests of the implied tables against counts made by hand, row by row."""

from __future__ import annotations

from collections.abc import Callable
from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula as sm_formula
import statsmodels.formula.api as smf
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import disclosure_control as dc
from disclosure_control import model_tables
from disclosure_control.config import SDCConfig
from disclosure_control.record import Record
from disclosure_control.rules import RULES
from tests.unit.disclosure_control._sdc_reference import cell_rules

BINARY = [dc.logit, dc.probit]
MISSING_REVIEWED = SDCConfig(check_missing_values=True)


def binary(cells: dict[str, tuple[int, int]], seed: int = 0) -> pd.DataFrame:
    """group -> (people with event 0, people with event 1), with an unrelated age."""
    rows = [(g, y) for g, (n0, n1) in cells.items() for y, n in ((0, n0), (1, n1)) for _ in range(n)]
    frame = pd.DataFrame(rows, columns=["group", "event"])
    frame["age"] = np.random.default_rng(seed).uniform(20, 80, len(frame))
    return frame


def continuous(sizes: dict[str, int], seed: int = 0) -> pd.DataFrame:
    """group -> size; cost is spread out (no dominance, no shared values)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"group": [g for g, n in sizes.items() for _ in range(n)]})
    frame["age"] = rng.uniform(20, 80, len(frame))
    frame["cost"] = rng.uniform(100, 200, len(frame))
    return frame


def with_a_gap(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """The same rows plus one whose ``column`` is missing: with check_missing_values the model goes to review."""
    extra = frame.iloc[[0]].copy()
    extra[column] = np.nan
    return pd.concat([frame, extra], ignore_index=True)


def flagged(out: dc.Output, rule: str) -> list[str]:
    return [str(name) for name in out.masks[rule].index[out.masks[rule].to_numpy().any(axis=1)]]


# ---------------------------------------------------------------- model_threshold
@pytest.mark.parametrize("fit", [*BINARY, dc.ols])
@pytest.mark.parametrize(("events", "status"), [(10, "pass"), (9, "fail"), (1, "fail")])
def test_a_category_by_outcome_cell_of_one_to_nine_people_fails(fit: Callable[..., dc.Output], events: int,
                                                                 status: str) -> None:
    """Group c has 30+ members and both outcomes (main's checks pass it), but only `events` had the event.
    A linear probability model (ols of a 0/1 outcome) summarises the same table."""
    out = fit("event ~ age + C(group)", binary({"a": (40, 40), "b": (40, 30), "c": (30, events)}))
    assert out.status == status
    assert (flagged(out, "model_threshold") == ["C(group)[T.b]", "C(group)[T.c]"]) == (status == "fail")
    if status == "fail":
        assert f"C(group) = c with outcome 1: {events} people (fewer than 10)" in out.summary
        assert "merge" in out.summary


@pytest.mark.parametrize(("size", "status"), [(10, "pass"), (9, "fail")])
def test_a_small_category_of_a_continuous_outcome_fails(size: int, status: str) -> None:
    out = dc.ols("cost ~ age + C(group)", continuous({"a": 50, "b": 50, "c": size}))
    assert out.status == status
    assert bool(flagged(out, "model_threshold")) == (status == "fail")


def test_an_interaction_cell_hidden_in_the_reference_categories_fails() -> None:
    """(a=0, b=y) has 4 people but no column of its own: main's per-column check could not see it."""
    sizes = {(0, "x"): 50, (0, "y"): 4, (1, "x"): 50, (1, "y"): 50}
    rows = [(a, b) for (a, b), n in sizes.items() for _ in range(n)]
    frame = pd.DataFrame(rows, columns=["a", "b"])
    frame["cost"] = np.random.default_rng(3).uniform(100, 200, len(frame))
    out = dc.ols("cost ~ C(a) * C(b)", frame)
    assert out.status == "fail"
    assert flagged(out, "model_threshold") == ["C(a)[T.1]:C(b)[T.y]"]
    assert "C(a):C(b) = (0, y): 4 people" in out.summary


def test_model_threshold_review_case() -> None:
    """Passing cells stay passing; a reviewed rule (missing values) makes the model review, not fail."""
    out = dc.logit("event ~ age + C(group)", with_a_gap(binary({"a": (40, 40), "b": (40, 30), "c": (30, 10)}), "age"),
                   config=MISSING_REVIEWED)
    assert out.status == "review" and not flagged(out, "model_threshold")


@pytest.mark.parametrize("fit", [dc.ols, dc.logit])
def test_a_category_disguised_as_a_number_is_still_a_category(fit: Callable[..., dc.Output]) -> None:
    """(group == "c") * 2 is a dummy with the values 0 and 2: the model isolates group c just the same."""
    frame = binary({"a": (40, 40), "b": (40, 30), "c": (30, 3)})
    out = fit("event ~ age + I((group == 'c') * 2)", frame)
    assert out.status == "fail" and flagged(out, "model_threshold") == ["I((group == 'c') * 2)"]
    assert "I((group == 'c') * 2) = 2" in out.summary


def test_a_variable_with_as_few_values_as_terms_is_checked_as_categories() -> None:
    """x + x**2 over three values of x gives each value's mean exactly, as C(x) would; x alone does not."""
    frame = pd.DataFrame({"x": [0] * 50 + [1] * 50 + [2] * 3})
    frame["cost"] = np.random.default_rng(2).uniform(100, 200, len(frame))
    out = dc.ols("cost ~ x + I(x ** 2)", frame)
    assert out.status == "fail" and set(flagged(out, "model_threshold")) == {"x", "I(x ** 2)"}
    assert "x = 2: 3 people" in out.summary
    assert dc.ols("cost ~ x", frame).status == "pass"


# ---------------------------------------------------------------- model_zeros
def test_an_empty_category_fails_unless_zeros_are_not_disclosive() -> None:
    frame = continuous({"a": 40, "b": 40, "c": 40})
    frame["group"] = pd.Categorical(frame["group"], categories=["a", "b", "c", "d"])
    out = dc.ols("cost ~ C(group)", frame)
    assert out.status == "fail" and flagged(out, "model_zeros")
    assert "C(group) = d: nobody in the rows the model used" in out.summary
    relaxed = dc.ols("cost ~ C(group)", frame, config=SDCConfig(zeros_are_disclosive=False))
    assert relaxed.status == "pass"
    review = dc.ols("cost ~ C(group)", with_a_gap(frame, "cost"),
                    config=SDCConfig(zeros_are_disclosive=False, check_missing_values=True))
    assert review.status == "review" and not flagged(review, "model_zeros")


def test_an_empty_combination_of_an_interaction_fails() -> None:
    rows = [(a, b) for (a, b), n in {("p", "x"): 30, ("p", "y"): 30, ("q", "x"): 30}.items() for _ in range(n)]
    frame = pd.DataFrame(rows, columns=["a", "b"])
    frame["cost"] = np.random.default_rng(1).uniform(100, 200, len(frame))
    out = dc.ols("cost ~ C(a):C(b)", frame)
    assert out.status == "fail"
    assert "C(a):C(b) = (q, y): nobody" in out.summary


def test_a_binary_model_with_an_empty_category_fails_instead_of_raising() -> None:
    """statsmodels cannot invert the Hessian with an all-zero column; the output fails and says why."""
    frame = binary({"a": (40, 40), "b": (40, 30), "c": (30, 30)})
    frame["group"] = pd.Categorical(frame["group"], categories=["a", "b", "c", "d"])
    out = dc.logit("event ~ C(group)", frame)
    assert out.status == "fail" and "C(group) = d: nobody" in out.summary


# ---------------------------------------------------------------- model_all_same
def test_a_category_sharing_one_outcome_value_fails() -> None:
    frame = continuous({"a": 40, "b": 40, "c": 20})
    frame.loc[frame.group == "c", "cost"] = 150.0
    out = dc.ols("cost ~ C(group)", frame)
    assert out.status == "fail" and flagged(out, "model_all_same")
    assert "C(group) = c: all 20 people have the same outcome value" in out.summary
    frame.loc[frame.index[frame.group == "c"][0], "cost"] = 151.0
    assert dc.ols("cost ~ C(group)", frame).status == "pass"
    review = dc.ols("cost ~ C(group) + age", with_a_gap(frame, "age"), config=MISSING_REVIEWED)
    assert review.status == "review" and not flagged(review, "model_all_same")


def test_a_linear_model_of_an_outcome_everyone_shares_fails() -> None:
    """The margin of a linear model's tables is everyone it was fitted on: an outcome that is the same for all
    (or a 0/1 outcome with a small class) fails, as an "All" cell of a table would."""
    frame = continuous({"a": 40, "b": 40})
    assert dc.ols("cost ~ age", frame).status == "pass"
    same = dc.ols("cost ~ age", frame.assign(cost=7.0))
    assert same.status == "fail" and same.checks["model_all_same"]
    assert "everyone has the same outcome value" in same.summary
    few = frame.assign(cost=0.0)
    few.loc[few.index[:4], "cost"] = 1.0
    out = dc.ols("cost ~ age", few)
    assert out.status == "fail" and out.checks["model_threshold"] and "outcome 1: 4 people" in out.summary


# ---------------------------------------------------------------- model_dominance
@pytest.mark.parametrize(("top", "status"), [([45.0, 45.0], "pass"), ([46.0, 45.0], "fail")])
def test_dominance_boundary_in_a_category(top: list[float], status: str) -> None:
    """Group c: two big values and eight that bring the total to exactly 100 or 101: 90% passes, 91% fails."""
    frame = continuous({"a": 40, "b": 40})
    group_c = pd.DataFrame({"group": "c", "age": 50.0, "cost": [*top, *([1.0, 1.5] * 4)]})
    out = dc.ols("cost ~ C(group)", pd.concat([frame, group_c], ignore_index=True))
    assert out.status == status
    assert bool(flagged(out, "model_dominance")) == (status == "fail")


def test_one_very_large_outcome_in_a_category_fails_and_negative_outcomes_skip_dominance() -> None:
    frame = continuous({"a": 40, "b": 40, "c": 12})
    frame.loc[frame.index[frame.group == "c"][0], "cost"] = 1_000_000.0
    out = dc.ols("cost ~ C(group)", frame)
    assert out.status == "fail" and "a few people make up most of the outcome's total" in out.summary
    centred = frame.assign(cost=frame.cost - 1000.0)
    skipped = dc.ols("cost ~ C(group)", centred)
    assert not flagged(skipped, "model_dominance")
    assert "negative values, so the dominance rules do not apply" in skipped.summary
    review = dc.ols("cost ~ C(group) + age", with_a_gap(continuous({"a": 40, "b": 40, "c": 12}), "age"),
                    config=MISSING_REVIEWED)
    assert review.status == "review" and not flagged(review, "model_dominance")


# ---------------------------------------------------------------- separation
@pytest.mark.parametrize("fit", BINARY)
def test_a_reference_category_where_everyone_shares_one_outcome_is_separation(fit: Callable[..., dc.Output]) -> None:
    """Main checked only the dummy columns, never the reference category."""
    out = fit("event ~ age + C(group)", binary({"a": (25, 0), "b": (40, 40), "c": (40, 40)}))
    assert out.status == "fail" and flagged(out, "separation") == ["C(group)[T.b]", "C(group)[T.c]"]
    assert "C(group) = a: all 25 people have outcome 0 (quasi-complete separation)" in out.summary


def test_separation_by_a_combination_of_terms_is_found_exactly() -> None:
    """No category is all one outcome, yet a=1 & b=0 all had it and a=0 & b=1 none: a + b separate them."""
    cells = {(0, 0): (20, 20), (1, 0): (0, 15), (0, 1): (15, 0), (1, 1): (20, 20)}
    rows = [(a, b, y) for (a, b), (n0, n1) in cells.items() for y, n in ((0, n0), (1, n1)) for _ in range(n)]
    frame = pd.DataFrame(rows, columns=["a", "b", "y"])
    out = dc.logit("y ~ C(a) + C(b)", frame)
    assert out.status == "fail" and set(flagged(out, "separation")) == {"C(a)[T.1]", "C(b)[T.1]"}
    assert "C(a), C(b) together predict the outcome of 30 people exactly" in out.summary
    mixed = frame.copy()
    mixed.loc[(mixed.a == 1) & (mixed.b == 0), "y"] = [0, 1] * 7 + [1]
    mixed.loc[(mixed.a == 0) & (mixed.b == 1), "y"] = [0, 1] * 7 + [0]
    assert dc.logit("y ~ C(a) + C(b)", mixed).status == "pass"


@pytest.mark.parametrize("fit", BINARY)
def test_a_numeric_predictor_that_splits_the_outcome_is_separation(fit: Callable[..., dc.Output]) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=200)})
    frame["y"] = (frame.x > 0).astype(int)
    out = fit("y ~ x", frame)
    assert out.status == "fail" and flagged(out, "separation") == ["x"]
    assert "x splits the outcome classes" in out.summary
    assert out.checks["separation"]  # statsmodels predicts every outcome exactly too


def test_a_numeric_predictor_that_splits_the_outcome_within_one_category_is_separation() -> None:
    frame = binary({"a": (40, 40), "b": (40, 40), "c": (20, 20)}, seed=4)
    in_c = frame.group == "c"
    frame.loc[in_c, "event"] = (frame.loc[in_c, "age"] > frame.loc[in_c, "age"].median()).astype(int)
    out = dc.logit("event ~ C(group) + age:C(group)", frame)
    assert out.status == "fail"
    assert "age within C(group) = c splits the outcome classes" in out.summary
    assert set(flagged(out, "separation")) >= {"age:C(group)[a]", "age:C(group)[b]", "age:C(group)[c]"}


def test_separation_pass_and_review() -> None:
    """Two whole-number predictors separate the classes together (x1 + x2 > 0 had the event, < 0 did not, = 0
    either), in more rows than the exact check takes and with no single predictor splitting them: statsmodels
    predicts most outcomes exactly, so the model goes to review."""
    rng = np.random.default_rng(7)
    n = 80_000
    frame = pd.DataFrame({"x1": rng.integers(-3, 4, n), "x2": rng.integers(-3, 4, n), "z": rng.normal(size=n)})
    frame["y"] = rng.integers(0, 2, n)
    assert dc.logit("y ~ x1 + x2 + z", frame).status == "pass"
    total = frame.x1 + frame.x2
    frame.loc[total > 0, "y"] = 1
    frame.loc[total < 0, "y"] = 0
    out = dc.logit("y ~ x1 + x2 + z", frame)
    assert out.status == "review" and out.checks["possible_separation"] and not out.checks["separation"]
    assert "possible separation" in out.summary and "exact separation check was skipped" in out.summary
    assert out.record().checks["possible_separation"] == "review"


# ---------------------------------------------------------------- what the record and summary carry
def test_the_record_holds_every_implied_cell_and_round_trips() -> None:
    out = dc.logit("event ~ age + C(group)", binary({"a": (40, 40), "b": (40, 30), "c": (30, 3)}))
    record = out.record()
    cells = {(c["table"], c["category"][0], c["outcome"]): c for c in record.implied}
    assert len(cells) == 6
    assert cells[("C(group)", "c", 1)] == {"table": "C(group)", "category": ["c"], "outcome": 1, "count": 3,
                                           "status": "fail", "rules": ["model_threshold"]}
    assert cells[("C(group)", "a", 0)]["status"] == "pass" and cells[("C(group)", "a", 0)]["count"] == 40
    assert Record.from_json(record.to_json()) == record
    older = record.to_dict()
    del older["implied"]
    assert Record.from_dict(older).implied == []
    row = next(c for c in record.cells if c.row == ["C(group)[T.c]"] and c.column == ["Coef."])
    assert row.status == "fail" and row.rules == ["model_threshold"]
    assert "1 coefficient" not in out.summary and "2 coefficients fail" in out.summary


def test_rows_the_model_drops_filters_and_duplicate_labels_are_respected() -> None:
    frame = binary({"a": (40, 40), "b": (40, 30), "c": (30, 10)})
    frame.index = [7] * len(frame)  # duplicate labels: positions, not labels, decide which rows were used
    frame.iloc[0, frame.columns.get_loc("age")] = np.nan  # an (a, 0) row dropped by the model
    frame = pd.concat([frame, pd.DataFrame({"group": ["c"] * 5, "event": [1] * 5, "age": [50.0] * 5,
                                            "site": "other"})])
    frame["site"] = frame["site"].fillna("main")
    out = dc.logit("event ~ age + C(group)", frame, filters={"site": "main"})
    cells = {(c["category"][0], c["outcome"]): c["count"] for c in out.record().implied}
    assert cells[("a", 0)] == 39 and cells[("c", 1)] == 10
    assert out.status == "pass"


def test_fit_options_are_passed_on_and_recorded() -> None:
    frame = binary({"a": (40, 40), "b": (40, 30), "c": (30, 10)})
    out = dc.logit("event ~ age + C(group)", frame, disp=False, maxiter=50, cov_type="HC0")
    assert out.status == "pass" and out.model.cov_type == "HC0"
    assert out.record().query["fit"] == {"cov_type": "HC0", "disp": False, "maxiter": 50}


def test_the_formulaic_engine_gives_the_same_tables() -> None:
    frame = binary({"a": (40, 40), "b": (40, 30), "c": (30, 3)})
    default = dc.logit("event ~ age + C(group)", frame)
    before = sm_formula.options.formula_engine
    sm_formula.options.formula_engine = "formulaic"
    try:
        other = dc.logit("event ~ age + C(group)", frame)
    finally:
        sm_formula.options.formula_engine = before
    assert other.record().implied == default.record().implied and other.status == "fail"


# ---------------------------------------------------------------- property tests against counts by hand
def _findings(kind: str, formula: str, frame: pd.DataFrame, config: SDCConfig) -> model_tables.Findings:
    model = {"ols": smf.ols, "logit": smf.logit}[kind](formula, frame)
    info = model_tables.design_info(model, frame)
    factors = model_tables.evaluate_factors(info, frame, model_tables.fitted_rows(model, len(frame)))
    return model_tables.check(info, factors, np.asarray(model.endog, dtype=float), np.asarray(model.exog),
                              kind != "ols", config)


rows_g_h = st.lists(st.tuples(st.sampled_from(["a", "b", "c", None]), st.sampled_from(["x", "y"]),
                              st.integers(0, 1)), min_size=2, max_size=60)


@settings(max_examples=60, deadline=None)
@given(rows_g_h, st.integers(1, 6), st.booleans(), st.sampled_from(["logit", "ols"]))
def test_binary_implied_tables_match_counts_by_hand(rows: list[tuple[str | None, str, int]], threshold: int,
                                                    zeros: bool, kind: str) -> None:
    """A 0/1 outcome implies the category x outcome table in a logit and in a linear probability model alike;
    a category all in one class is separation in the one and shared outcome values in the other."""
    frame = pd.DataFrame(rows, columns=["g", "h", "y"])
    complete = [r for r in rows if r[0] is not None]
    assume(complete)
    config = SDCConfig(threshold=threshold, zeros_are_disclosive=zeros)
    one_class = "separation" if kind == "logit" else "model_all_same"
    found = _findings(kind, "y ~ C(g) * C(h)", frame, config)
    got = {(c.table, tuple(c.category), c.outcome): (c.count, sorted(c.rules)) for c in found.cells
           if c.table != "(everyone)"}
    g_levels = sorted({r[0] for r in complete})
    h_levels = sorted({r[1] for r in rows})
    tables = {"C(g)": [(g,) for g in g_levels], "C(h)": [(h,) for h in h_levels],
              "C(g):C(h)": list(product(g_levels, h_levels))}
    expected = {}
    for name, combos in tables.items():
        picks = {"C(g)": lambda r: (r[0],), "C(h)": lambda r: (r[1],), "C(g):C(h)": lambda r: (r[0], r[1])}[name]
        for combo in combos:
            members = [r for r in complete if picks(r) == combo]
            for outcome in (0, 1):
                n = sum(1 for r in members if r[2] == outcome)
                fired = []
                if 0 < n < threshold:
                    fired.append("model_threshold")
                if not members and zeros:
                    fired.append("model_zeros")
                if members and n == 0:
                    fired.append(one_class)
                expected[(name, combo, outcome)] = (n, sorted(fired))
    assert got == expected
    classes = [sum(1 for r in complete if r[2] == outcome) for outcome in (0, 1)]
    whole = set()
    if kind == "ols" and 0 in classes:
        whole.add("model_all_same")
    elif kind == "ols" and 0 < min(classes) < threshold:
        whole.add("model_threshold")
    assert found.whole == whole


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]),
                          st.sampled_from([-5.0, 0.0, 1.0, 2.5, 10.0, 400.0, 1e4])), min_size=2, max_size=50),
       st.integers(1, 5), st.booleans())
def test_continuous_implied_tables_match_the_reference_rules(rows: list[tuple[str, float]], threshold: int,
                                                             negatives: bool) -> None:
    if not negatives:
        rows = [(g, abs(v)) for g, v in rows]
    assume(not {v for _, v in rows} <= {0.0, 1.0})  # a 0/1 outcome is checked as classes (test above)
    frame = pd.DataFrame(rows, columns=["g", "y"])
    config = SDCConfig(threshold=threshold)
    found = _findings("ols", "y ~ C(g)", frame, config)
    any_negative = any(v < 0 for _, v in rows)
    rename = {"threshold": "model_threshold", "zeros": "model_zeros", "all_same": "model_all_same",
              "nk_dominance": "model_dominance", "p_percent": "model_dominance"}
    for cell in found.cells:
        if cell.table == "(everyone)":
            everyone = {rename[r] for r in cell_rules([v for _, v in rows], "mean", config) if r in rename}
            everyone -= {"model_threshold"} | ({"model_dominance"} if any_negative else set())
            assert found.whole == everyone
            continue
        values = [v for g, v in rows if g == cell.category[0]]
        reference = {rename[r] for r in cell_rules(values, "mean", config) if r in rename}
        if any_negative:
            reference.discard("model_dominance")
        assert (cell.count, set(cell.rules)) == (len(values), reference)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 2), st.integers(1, 3), st.integers(0, 3)),
                min_size=6, max_size=12, unique_by=lambda t: (t[0], t[1])), st.booleans())
def test_the_exact_check_finds_separation_only_where_there_is_one(cells: list[tuple[int, int, int, int]],
                                                                  saturated: bool) -> None:
    """Categorical designs: with both outcomes in every combination nothing can separate; the saturated model
    separates exactly when some combination has only one outcome."""
    rows = [(a, b, y) for a, b, n0, n1 in cells for y, n in ((0, n0), (1, n1)) for _ in range(n)]
    frame = pd.DataFrame(rows, columns=["a", "b", "y"])
    formula = "y ~ C(a) * C(b)" if saturated else "y ~ C(a) + C(b)"
    found = _findings("logit", formula, frame, SDCConfig(threshold=1))
    assert found.exact_separation_checked
    one_outcome = any(n1 == 0 for *_, n1 in cells)
    separated = "separation" in found.flagged_terms or "separation" in found.whole
    if not one_outcome:
        assert not separated
    if saturated and len(cells) == len({(a, b) for a, b, *_ in cells}) == 6:
        assert separated == one_outcome


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(2, 7), st.integers(0, 1)), min_size=3, max_size=30))
def test_one_numeric_predictor_separates_exactly_when_a_threshold_splits_the_classes(
        rows: list[tuple[int, int]]) -> None:
    assume(len({x for x, _ in rows}) >= 3)  # with two values x is a dummy, checked as a category
    frame = pd.DataFrame(rows, columns=["x", "y"]).astype(float)
    found = _findings("logit", "y ~ x", frame, SDCConfig(threshold=1))
    zeros = [x for x, y in rows if y == 0]
    ones = [x for x, y in rows if y == 1]
    split = bool(zeros and ones and (max(zeros) <= min(ones) or max(ones) <= min(zeros)))
    assert ("x" in found.flagged_terms.get("separation", set())) == split
    assert "separation" not in found.whole  # one class only is the outcome_class rule's to fail


def test_every_rule_has_a_row_in_the_documented_rules_table() -> None:
    doc = (Path(__file__).resolve().parents[3] / "docs" / "disclosure-control.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip().strip("`"): line.split("|")[2].strip() for line in doc.splitlines()
            if line.startswith("| `")}
    assert {name: rows.get(name) for name in RULES} == {name: rule.verdict for name, rule in RULES.items()}


def test_a_term_with_many_failing_combinations_is_summarised_not_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_tables, "MAX_RECORDED", 50)
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"a": rng.integers(0, 12, 400).astype(str), "b": rng.integers(0, 12, 400).astype(str)})
    frame["cost"] = rng.uniform(100, 200, len(frame))
    out = dc.ols("cost ~ C(a):C(b)", frame)
    assert out.status == "fail"
    assert sum(line.startswith("- note: C(a):C(b) = ") for line in out.summary.splitlines()) == 20
    assert "more problems of the same kinds" in out.summary
    implied = out.record().implied
    assert len(implied) == 50 and all(c["status"] == "fail" for c in implied)
