"""The tables a regression summarises, rebuilt from the rows it was fitted on and checked as tables.

A model on categorical predictors is a summary of a table: with one categorical predictor and a
binary outcome, intercept plus coefficient give back each category's share of events exactly. So
for every term of the model the table the term implies is rebuilt from the fitted rows (each
category, or each combination of an interaction's categories, against the outcome classes for a
binary model; each category's size and outcome values for a continuous outcome) and the table
rules are applied to it. A failing cell flags the coefficients of the terms that imply the table.

Binary models are also checked for separation (a term that predicts some people's outcome
exactly): a category with everyone in one class, a numeric predictor that splits the classes
(overall or within a category of its interaction), and, for designs of categories only, an exact
linear-programming check for any separating direction. statsmodels' own signals are collected by
``models.py``.

Factors are read through patsy (statsmodels' formula engine). Numeric predictors that are categories
in disguise (two values, or a variable with as few values as the model has terms in it) are checked
as categories.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import patsy
from patsy.categorical import categorical_to_int

from . import rules
from .cellstats import cell_stats
from .config import SDCConfig
from .record import json_label

MAX_CELLS = 1_000_000  # a term implying more combinations than this fails without being enumerated
MAX_LP_SIZE = 300_000  # distinct rows x columns above which the exact separation check is skipped
MAX_RECORDED = 2_000  # implied cells kept in the record (flagged cells first)
MAX_LINES = 20  # problems named one by one in the summary; the rest are counted
_LP_TOL = 1e-6


@dataclass
class Factor:
    """One factor of the design, evaluated on the fitted rows."""

    name: str
    kind: str  # "categorical" (including numeric 0/1) or "numeric"
    levels: list[Any] = field(default_factory=list)
    codes: np.ndarray | None = None  # categorical: index into levels per fitted row
    values: np.ndarray | None = None  # numeric (one column): the value per fitted row


@dataclass
class ImpliedCell:
    """One cell of a table a model implies; ``outcome`` is the class (binary models) or None."""

    table: str
    category: list[Any]
    outcome: Any
    count: int
    rules: list[str]

    @property
    def status(self) -> str:
        verdicts = [rules.RULES[r].verdict for r in self.rules]
        return max(verdicts, key=lambda v: rules.VERDICT_ORDER[v], default="pass")

    def where(self) -> str:
        outcome = "" if self.outcome is None else f" with outcome {self.outcome}"
        return f"{self.table} = {shown(self.category)}{outcome}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "category": [json_label(v) for v in self.category],
            "outcome": json_label(self.outcome),
            "count": int(self.count),
            "status": self.status,
            "rules": sorted(self.rules),
        }


def shown(category: list[Any]) -> str:
    """A category as people read it: ``c``, or ``(a, x)`` for a combination."""
    return str(category[0]) if len(category) == 1 else "(" + ", ".join(map(str, category)) + ")"


@dataclass
class Findings:
    """What the model checks found: implied cells, which terms each rule flags, and plain-English lines."""

    cells: list[ImpliedCell] = field(default_factory=list)
    flagged_terms: dict[str, set[str]] = field(default_factory=dict)  # rule -> term names
    whole: set[str] = field(default_factory=set)  # rules about the whole model (no one term)
    lines: list[str] = field(default_factory=list)  # problems, naming term and category, with the fix
    more_lines: int = 0  # problems beyond MAX_LINES, counted only
    notes: list[str] = field(default_factory=list)
    exact_separation_checked: bool = False

    def flag(self, rule: str, terms: list[str], line: str | Callable[[], str] | None = None) -> None:
        """Flag ``terms`` under ``rule``; ``line`` (text, or a function making it, called only while the summary
        still lists problems one by one) names the term, the category and the fix."""
        self.flagged_terms.setdefault(rule, set()).update(terms)
        if line is None:
            return
        if len(self.lines) < MAX_LINES:
            self.lines.append(line() if callable(line) else line)
        else:
            self.more_lines += 1

    def recorded_cells(self) -> list[dict[str, Any]]:
        ordered = sorted(self.cells, key=lambda c: rules.VERDICT_ORDER[c.status], reverse=True)
        return [c.to_dict() for c in ordered[:MAX_RECORDED]]


# --------------------------------------------------------------------------- reading the design

def design_info(model: Any, data: Any) -> patsy.DesignInfo:
    """The patsy design of the right-hand side: statsmodels' own, or rebuilt with patsy when it used formulaic."""
    spec = getattr(model.data, "model_spec", None)
    if isinstance(spec, patsy.DesignInfo):
        return spec
    description = patsy.ModelDesc.from_formula(model.formula)
    environment = patsy.EvalEnvironment([{"np": np}])
    built: patsy.DesignInfo = patsy.design_matrix_builders(
        [description.rhs_termlist], lambda: iter([data]), environment, NA_action="drop"
    )[0]
    if list(built.column_names) != list(model.exog_names):
        raise ValueError("the model's terms could not be read back with patsy; use statsmodels' default formula engine")
    return built


def fitted_rows(model: Any, n_rows: int) -> np.ndarray:
    """Positions (in the data given to the model) of the rows the model was fitted on."""
    dropped = getattr(model.data, "missing_row_idx", None)
    keep = np.ones(n_rows, dtype=bool)
    if dropped is not None and len(dropped):
        keep[np.asarray(dropped, dtype=np.intp)] = False
    if int(keep.sum()) != len(model.endog):
        raise ValueError("could not tell which rows the model was fitted on")
    return np.flatnonzero(keep)


def _variables(factor: Any, columns: set[str]) -> set[str]:
    """The data columns a factor's expression reads (bare names and ``Q("name")``)."""
    try:
        tree = ast.parse(str(getattr(factor, "code", "")), mode="eval")
    except (SyntaxError, RecursionError):
        return set()
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    names |= {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    return names & columns


def _as_categories(name: str, values: np.ndarray) -> Factor:
    codes, levels = pd.factorize(values, sort=True, use_na_sentinel=False)
    labels = [json_label(v) for v in levels]
    labels = [int(v) if isinstance(v, float) and v.is_integer() else v for v in labels]  # 1, not 1.0
    return Factor(name, "categorical", labels, codes=np.asarray(codes, dtype=np.int64))


def evaluate_factors(info: patsy.DesignInfo, data: Any, rows: np.ndarray) -> dict[Any, Factor]:
    """Every factor of the design on the fitted rows, with numeric factors that are categories in disguise
    turned into categories.

    A numeric factor with two values is a dummy whatever the values (``I((region == 7) * 2)``); and a
    variable with k values entering the model through at least k - 1 numeric terms (``x + I(x**2)`` with
    three values of x) gets each value's own mean, exactly as ``C(x)`` would. Both are checked as the
    table of the variable's values.
    """
    factors: dict[Any, Factor] = {}
    na_action = patsy.NAAction()
    columns = {str(c) for c in getattr(data, "columns", [])}
    numeric: dict[Any, np.ndarray] = {}
    for factor, finfo in info.factor_infos.items():
        value = factor.eval(finfo.state, data)
        name = factor.name()
        if finfo.type == "categorical":
            codes = np.asarray(categorical_to_int(value, finfo.categories, na_action), dtype=np.int64)[rows]
            factors[factor] = Factor(name, "categorical", list(finfo.categories), codes=codes)
            continue
        array = np.asarray(value, dtype=float)
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        array = array[rows] if array.ndim == 1 else array[rows, ...]
        factors[factor] = Factor(name, "numeric", values=array if array.ndim == 1 else None)
        if array.ndim == 1:
            numeric[factor] = array
    by_variable: dict[str, list[Any]] = {}
    for factor in numeric:
        variables = _variables(factor, columns)
        if len(variables) == 1:
            by_variable.setdefault(variables.pop(), []).append(factor)
    for variable, group in by_variable.items():
        values = np.asarray(data[variable])[rows]
        if len(pd.unique(values)) <= max(2, len(group) + 1):
            for factor in group:
                factors[factor] = _as_categories(variable, values)
                del numeric[factor]
    for factor, array in numeric.items():
        if len(array) and len(np.unique(array)) <= 2:
            factors[factor] = _as_categories(factors[factor].name, array)
    return factors


def _term_groups(info: patsy.DesignInfo, factors: dict[Any, Factor]) -> dict[tuple[str, ...], tuple[list[Factor],
                                                                                                     list[str]]]:
    """Categorical factor sets (by name, in formula order) -> the factors and the terms built on exactly that set."""
    groups: dict[tuple[str, ...], tuple[list[Factor], list[str]]] = {}
    for term in info.terms:
        parts = _categorical_parts(term, factors)
        if parts:
            groups.setdefault(tuple(p.name for p in parts), (parts, []))[1].append(term.name())
    return groups


def _categorical_parts(term: Any, factors: dict[Any, Factor]) -> list[Factor]:
    parts: dict[str, Factor] = {}
    for factor in term.factors:
        if factors[factor].kind == "categorical":
            parts.setdefault(factors[factor].name, factors[factor])
    return list(parts.values())


def _combination_ids(parts: list[Factor]) -> tuple[np.ndarray, int]:
    ids = np.zeros(len(parts[0].codes) if parts[0].codes is not None else 0, dtype=np.int64)
    size = 1
    for part in parts:
        assert part.codes is not None
        ids *= len(part.levels)
        ids += part.codes
        size *= len(part.levels)
    return ids, size


def _category(parts: list[Factor], k: int) -> list[Any]:
    """The levels of combination ``k`` (the ids are mixed-radix, first factor most significant)."""
    if not parts:
        return []
    positions = np.unravel_index(int(k), [len(p.levels) for p in parts])
    return [p.levels[int(i)] for p, i in zip(parts, positions, strict=True)]


def _listed(flagged: np.ndarray, size: int) -> list[int]:
    """Combinations whose cells go into the record: flagged ones first, then the rest, up to MAX_RECORDED each."""
    return sorted({*np.flatnonzero(flagged)[:MAX_RECORDED].tolist(), *range(min(size, MAX_RECORDED))})


# --------------------------------------------------------------------------- the checks

def check(
    info: patsy.DesignInfo,
    factors: dict[Any, Factor],
    endog: np.ndarray,
    exog: np.ndarray,
    binary_model: bool,
    config: SDCConfig,
) -> Findings:
    """Every implied table and, for binary models, the separation checks."""
    findings = Findings()
    binary = len(endog) > 0 and bool(np.isin(endog, (0.0, 1.0)).all())  # a linear probability model too
    if binary_model and not binary:
        findings.notes.append("the outcome is not 0/1, so categories were checked as for a continuous outcome")
    if not binary and (endog < 0).any():
        findings.notes.append("the outcome has negative values, so the dominance rules do not apply to it")
    for parts, terms in _term_groups(info, factors).values():
        name = ":".join(p.name for p in parts)
        size = int(np.prod([len(p.levels) for p in parts], dtype=float))
        if size > MAX_CELLS:
            findings.flag("model_threshold", terms,
                          f"{name}: {size:,} combinations of categories, too many to check; merge categories "
                          f"or drop the term")
            continue
        ids, size = _combination_ids(parts)
        if binary:
            _binary_table(findings, name, terms, parts, ids, size, endog, config, binary_model)
        else:
            _continuous_table(findings, name, terms, parts, ids, size, endog, config)
    if not binary_model:
        _whole_outcome(findings, endog, binary, config)
    if binary and binary_model:
        _numeric_separation(findings, info, factors, endog)
        _exact_separation(findings, info, factors, endog, exog)
    return findings


def _whole_outcome(findings: Findings, endog: np.ndarray, binary: bool, config: SDCConfig) -> None:
    """A linear model speaks for everyone it was fitted on too (the margin of its tables): an outcome that is
    the same for everyone, a 0/1 outcome with a small class, or a total a few people dominate fails it.
    (Binary models have the outcome_class rule for this.)"""
    if binary:
        counts = np.bincount(endog.astype(np.int64), minlength=2)
        for j in (0, 1):
            findings.cells.append(ImpliedCell("(everyone)", [], j, int(counts[j]), []))
        if (counts == 0).any():
            findings.whole.add("model_all_same")
            findings.lines.append(f"everyone has outcome {int(np.argmax(counts))}: the model reveals it for each "
                                  f"person")
        elif rules.threshold(counts, config).any():
            findings.whole.add("model_threshold")
            findings.lines.append(f"outcome {int(np.argmin(counts))}: {int(counts.min())} people (fewer than "
                                  f"{config.threshold})")
        return
    stats = cell_stats(np.zeros(len(endog), dtype=np.int64), endog.astype(float), 1, config.nk_n)
    findings.cells.append(ImpliedCell("(everyone)", [], None, int(stats.n_values[0]), []))
    if rules.all_same(stats.n_values, stats.minimum, stats.maximum)[0]:
        findings.whole.add("model_all_same")
        findings.lines.append("everyone has the same outcome value: the model reveals it for each person")
    if not (endog < 0).any() and (
        rules.nk_dominance(stats.top_n_sum, stats.total, stats.n_negative, config)
        | rules.p_percent(stats.maximum, stats.second, stats.total, stats.n_negative, config)
    )[0]:
        findings.whole.add("model_dominance")
        findings.lines.append("a few people make up most of the outcome's total over everyone the model used")


def _binary_table(findings: Findings, name: str, terms: list[str], parts: list[Factor], ids: np.ndarray,
                  size: int, endog: np.ndarray, config: SDCConfig, binary_model: bool) -> None:
    """Category x outcome class. A category all in one class is separation in a logit or probit, and in a
    linear model of a 0/1 outcome the same class disclosure (everyone shares one outcome value)."""
    one_class_rule = "separation" if binary_model else "model_all_same"
    outcome = endog.astype(np.int64)
    counts = np.bincount(ids * 2 + outcome, minlength=2 * size).reshape(size, 2)
    small = rules.threshold(counts, config)
    totals = counts.sum(axis=1)
    empty = np.repeat((totals == 0)[:, None], 2, axis=1) & config.zeros_are_disclosive
    one_class = (counts == 0) & (totals > 0)[:, None]
    checks = (("model_threshold", small), ("model_zeros", empty), (one_class_rule, one_class))
    for k in _listed((small | empty | one_class).any(axis=1), size):
        for j in (0, 1):
            flagged = [r for r, m in checks if m[k, j]]
            findings.cells.append(ImpliedCell(name, _category(parts, k), j, int(counts[k, j]), flagged))
    for k in np.flatnonzero(one_class.any(axis=1)):
        shared = 1 if counts[k, 1] else 0
        what = " (quasi-complete separation)" if binary_model else ""
        findings.flag(one_class_rule, terms,
                      lambda k=k, shared=shared, what=what: f"{name} = {shown(_category(parts, k))}: all "
                      f"{int(totals[k])} people have outcome {shared}{what}; merge this category with another or "
                      f"drop the term")
    for k, j in zip(*np.nonzero(small), strict=True):
        findings.flag("model_threshold", terms,
                      lambda k=k, j=j: f"{name} = {shown(_category(parts, k))} with outcome {j}: {int(counts[k, j])} "
                      f"people (fewer than {config.threshold}); merge small categories or drop the term")
    for k in np.flatnonzero(empty[:, 0]):
        findings.flag("model_zeros", terms,
                      lambda k=k: f"{name} = {shown(_category(parts, k))}: nobody in the rows the model used; merge "
                      f"or drop this category")


def _continuous_table(findings: Findings, name: str, terms: list[str], parts: list[Factor], ids: np.ndarray,
                      size: int, endog: np.ndarray, config: SDCConfig) -> None:
    stats = cell_stats(ids, endog.astype(float), size, config.nk_n)
    n = stats.n_values
    small = rules.threshold(n, config)
    empty = rules.zeros(n, config)
    same = rules.all_same(n, stats.minimum, stats.maximum)
    dominated = np.zeros(size, dtype=bool)
    if not (endog < 0).any():
        dominated = rules.nk_dominance(stats.top_n_sum, stats.total, stats.n_negative, config) | rules.p_percent(
            stats.maximum, stats.second, stats.total, stats.n_negative, config
        )
    checks = (("model_threshold", small), ("model_zeros", empty), ("model_all_same", same),
              ("model_dominance", dominated))
    flagged_any = small | empty | same | dominated
    for k in _listed(flagged_any, size):
        fired = [r for r, m in checks if m[k]]
        findings.cells.append(ImpliedCell(name, _category(parts, k), None, int(n[k]), fired))
    for rule, mask in checks:
        if mask.any():
            findings.flag(rule, terms)
    reasons = {
        "model_threshold": lambda k: f"{int(n[k])} people (fewer than {config.threshold})",
        "model_zeros": lambda k: "nobody in the rows the model used",
        "model_all_same": lambda k: f"all {int(n[k])} people have the same outcome value",
        "model_dominance": lambda k: "a few people make up most of the outcome's total",
    }
    for k in np.flatnonzero(flagged_any):
        findings.flag(next(r for r, m in checks if m[k]), terms,
                      lambda k=k: f"{name} = {shown(_category(parts, k))}: "
                      + "; ".join(reasons[r](k) for r, m in checks if m[k])
                      + "; merge this category with another or drop the term")


def _numeric_separation(findings: Findings, info: patsy.DesignInfo, factors: dict[Any, Factor],
                        endog: np.ndarray) -> None:
    """A numeric predictor whose values split the two outcome classes, overall or within a category."""
    seen: set[tuple[Any, ...]] = set()
    for term in info.terms:
        numeric = [f for f in term.factors if factors[f].kind == "numeric"]
        if len(numeric) != 1 or factors[numeric[0]].values is None:
            continue  # products of numeric variables are left to statsmodels' own signals
        parts = _categorical_parts(term, factors)
        key = (numeric[0], *(p.name for p in parts))
        if key in seen:
            continue
        seen.add(key)
        x = factors[numeric[0]].values
        assert x is not None
        ids, size = _combination_ids(parts) if parts else (np.zeros(len(x), dtype=np.int64), 1)
        cls = endog.astype(np.int64)
        lo = np.full((size, 2), np.inf)
        hi = np.full((size, 2), -np.inf)
        np.minimum.at(lo, (ids, cls), x)
        np.maximum.at(hi, (ids, cls), x)
        both = np.isfinite(lo).all(axis=1)
        varies = np.minimum(lo[:, 0], lo[:, 1]) < np.maximum(hi[:, 0], hi[:, 1])
        split = both & varies & ((hi[:, 0] <= lo[:, 1]) | (hi[:, 1] <= lo[:, 0]))
        for k in np.flatnonzero(split):
            within = "" if not parts else " within " + ", ".join(
                f"{p.name} = {v}" for p, v in zip(parts, _category(parts, k), strict=True))
            findings.flag("separation", [term.name()],
                          f"{factors[numeric[0]].name}{within} splits the outcome classes (every value with one "
                          f"outcome is at or beyond every value with the other): drop the term, or band "
                          f"{factors[numeric[0]].name} and merge bands")


def _exact_separation(findings: Findings, info: patsy.DesignInfo, factors: dict[Any, Factor],
                      endog: np.ndarray, exog: np.ndarray) -> None:
    """Is there a direction b != 0 with s_i x_i b >= 0 for everyone (s_i = +1 for outcome 1, -1 for 0)?

    That is the definition of (quasi-)complete separation (Albert and Anderson 1984); a linear program
    over the distinct rows of the design decides it exactly (Konis 2007). A design of categories has
    few distinct rows; one with a continuous predictor has about as many as people, so the program
    runs only while rows x columns stay under ``MAX_LP_SIZE`` and the other checks cover larger ones.
    """
    cls = endog.astype(np.int64)
    if len(cls) == 0 or cls.min() == cls.max():
        return  # one outcome class only: the outcome_class rule already fails the model
    if all(f.kind == "categorical" for f in factors.values()):
        ids = cls.copy()
        for part in factors.values():
            assert part.codes is not None
            ids = ids * len(part.levels) + part.codes
            if ids.max(initial=0) > 2**40:
                ids = np.unique(ids, return_inverse=True)[1].astype(np.int64)  # keep the ids small
        _, first = np.unique(ids, return_index=True)
    elif len(cls) * exog.shape[1] <= MAX_LP_SIZE:
        _, first, ids = np.unique(np.column_stack([exog, cls]), axis=0, return_index=True, return_inverse=True)
        ids = ids.ravel()
    else:
        findings.notes.append("the exact separation check was skipped (too many distinct rows for it); the "
                              "table, single-variable and statsmodels checks ran")
        return
    if len(first) * exog.shape[1] > MAX_LP_SIZE:
        findings.notes.append("the exact separation check was skipped (too many distinct combinations of "
                              "categories); the table and statsmodels checks ran")
        return
    from scipy.optimize import linprog

    signs = np.where(cls[first] == 1, 1.0, -1.0)
    a = exog[first] * signs[:, None]
    scale = np.abs(a).max(axis=0)
    scale[scale == 0] = 1.0
    a = a / scale
    result = linprog(-a.sum(axis=0), A_ub=-a, b_ub=np.zeros(len(a)), bounds=[(-1, 1)] * a.shape[1],
                     method="highs")
    findings.exact_separation_checked = result.status == 0
    if result.status != 0:
        findings.notes.append(f"the exact separation check did not finish ({result.message})")
        return
    margins = a @ result.x
    if margins.max(initial=0.0) <= _LP_TOL or margins.min(initial=0.0) < -_LP_TOL:
        return  # no separating direction (or only one within the solver's tolerance)
    separated = margins > _LP_TOL
    columns = np.flatnonzero((np.abs(result.x) > _LP_TOL) & (np.abs(a).max(axis=0) > 0))  # not empty columns
    terms = sorted({name for name, cols in info.term_name_slices.items()
                    if name != "Intercept" and set(range(cols.start, cols.stop)) & set(columns)})
    people = int(np.isin(ids, ids[first][separated]).sum())
    known = findings.flagged_terms.get("separation", set())
    line = None if known & set(terms) else (
        f"{', '.join(terms) or 'the intercept'} together predict the outcome of {people} people exactly "
        f"(quasi-complete separation); merge categories or drop one of these terms")
    findings.flag("separation", terms, line)
    if not terms:
        findings.whole.add("separation")
