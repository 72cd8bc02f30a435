"""``ols``, ``logit``, ``probit``: statsmodels formula models, fitted and checked.

Rules: residual degrees of freedom (a model with too few is close to a lookup table of the
data); each class of a binary outcome needs at least ``threshold`` members; and the model is
checked cell by cell as the tables it summarises (``model_tables``): every category, or
combination of an interaction's categories, against the outcome classes of a binary model, or
its size and outcome values for a continuous outcome, with the table rules. Binary models are
checked for separation, with statsmodels' own warnings and exceptions as well as direct checks.
A failing cell flags the coefficients of the terms behind it and the summary names the term, the
category and what to do.
"""

from __future__ import annotations

import ast
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import patsy
import statsmodels.formula.api as smf
from statsmodels.tools.sm_exceptions import ConvergenceWarning, PerfectSeparationError, PerfectSeparationWarning

from . import filters as filters_mod
from . import model_tables, rules
from .config import DEFAULT_CONFIG, SDCConfig
from .output import Output
from .record import json_label

MODEL_RULES = ("model_threshold", "model_zeros", "model_all_same", "model_dominance", "separation")
_SUMMARY_COLUMNS = {
    "ols": ["Coef.", "Std.Err.", "t", "P>|t|", "[0.025", "0.975]"],
    "logit": ["Coef.", "Std.Err.", "z", "P>|z|", "[0.025", "0.975]"],
    "probit": ["Coef.", "Std.Err.", "z", "P>|z|", "[0.025", "0.975]"],
}
_PREDICTED_EXACTLY = 1e-4  # statsmodels' own separation diagnostic: predicted within this of the outcome
_PREDICTED_SHARE = 0.1  # ... for more than this share of people


# --------------------------------------------------------------------------- formulas from elsewhere

MAX_FORMULA_LENGTH = 2_000
MAX_COLUMNS = 500  # design columns a formula from a record may ask for
_FUNCTIONS = {"C", "I", "Q", "center", "standardize", "scale"}
_CONTRASTS = {"Treatment", "Sum", "Helmert", "Diff", "Poly"}
_NUMPY = {"log", "log1p", "log2", "log10", "exp", "sqrt", "abs", "square"}
_ARITHMETIC = (ast.Add, ast.Sub, ast.Mult, ast.Div)
_COMPARISONS = (ast.Gt, ast.GtE, ast.Lt, ast.LtE, ast.Eq, ast.NotEq)


def _check_factor(node: ast.AST, columns: set[str], where: str) -> None:
    """Allow a column, a number, a whitelisted function of allowed things; refuse everything else."""
    def bad(what: str) -> ValueError:
        return ValueError(f"formula term {where!r}: {what} is not allowed in a formula checked at the gateway")

    if isinstance(node, ast.Name):
        if node.id not in columns:
            raise bad(f"the name {node.id!r} (not a column of the dataset)")
    elif isinstance(node, ast.Constant):
        if not isinstance(node.value, int | float) or isinstance(node.value, bool):
            raise bad(f"the constant {node.value!r} here")
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        _check_factor(node.operand, columns, where)
    elif isinstance(node, ast.BinOp) and isinstance(node.op, _ARITHMETIC):
        _check_factor(node.left, columns, where)
        _check_factor(node.right, columns, where)
    elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
        if not any(isinstance(n, ast.Name) for n in ast.walk(node.left)):
            raise bad("a power of a number (only a power of a column is allowed)")
        _check_factor(node.left, columns, where)
        exponent = node.right
        if not (isinstance(exponent, ast.Constant) and isinstance(exponent.value, int | float)
                and not isinstance(exponent.value, bool) and abs(exponent.value) <= 10):
            raise bad("a power other than a number from -10 to 10")
    elif isinstance(node, ast.Compare) and all(isinstance(op, _COMPARISONS) for op in node.ops):
        for operand in [node.left, *node.comparators]:
            if isinstance(operand, ast.Constant) and isinstance(operand.value, str):
                continue
            _check_factor(operand, columns, where)
    elif isinstance(node, ast.Call):
        _check_call(node, columns, where, bad)
    else:
        raise bad(f"the expression {ast.unparse(node)!r}")


def _check_call(node: ast.Call, columns: set[str], where: str, bad: Any) -> None:
    func = node.func
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "np":
        if func.attr not in _NUMPY or node.keywords or len(node.args) != 1:
            raise bad(f"np.{func.attr}(...)")
        _check_factor(node.args[0], columns, where)
        return
    if not isinstance(func, ast.Name) or func.id not in _FUNCTIONS:
        raise bad(f"the call {ast.unparse(node)!r}")
    if func.id == "Q":
        if (len(node.args) != 1 or node.keywords or not isinstance(node.args[0], ast.Constant)
                or node.args[0].value not in columns):
            raise bad("Q() of anything but a column name")
        return
    if func.id != "C":
        if len(node.args) != 1 or node.keywords:
            raise bad(f"{func.id}() with more than one argument")
        _check_factor(node.args[0], columns, where)
        return
    if not node.args or len(node.args) > 2:
        raise bad("C() without one column")
    _check_factor(node.args[0], columns, where)
    contrasts = node.args[1:] + [k.value for k in node.keywords if k.arg == "contrast"]
    levels = [k.value for k in node.keywords if k.arg == "levels"]
    if any(k.arg not in {"contrast", "levels"} for k in node.keywords):
        raise bad("a C() option other than contrast or levels")
    for contrast in contrasts:
        name = contrast.func if isinstance(contrast, ast.Call) else contrast
        if not isinstance(name, ast.Name) or name.id not in _CONTRASTS:
            raise bad(f"the contrast {ast.unparse(contrast)!r}")
        if isinstance(contrast, ast.Call):
            literals = list(contrast.args) + [k.value for k in contrast.keywords]
            if any(k.arg not in {"reference"} for k in contrast.keywords) or not all(
                    isinstance(v, ast.Constant) for v in literals):
                raise bad(f"the contrast {ast.unparse(contrast)!r}")
    for value in levels:
        if not isinstance(value, ast.List | ast.Tuple) or not all(isinstance(v, ast.Constant) for v in value.elts):
            raise bad("levels= other than a list of constants")


def check_formula(formula: str, data: pd.DataFrame, max_columns: int = MAX_COLUMNS) -> None:
    """Refuse a formula that does more than name columns and apply the usual transforms; ValueError says why.

    patsy evaluates every term of a formula as Python, so a formula read from a record (written in a
    workspace) must be checked before the gateway fits it: only columns of ``data``, numbers, ``C()``
    with a contrast, ``I()`` arithmetic and comparisons, ``Q("column")``, ``center``/``standardize``/
    ``scale`` and a few numpy functions pass. The design must also stay under ``max_columns`` columns,
    so a record cannot make the gateway build a matrix with one column per person.
    """
    if not isinstance(formula, str) or len(formula) > MAX_FORMULA_LENGTH:
        raise ValueError(f"the formula must be text of at most {MAX_FORMULA_LENGTH} characters")
    columns = {str(c) for c in data.columns}
    try:
        description = patsy.ModelDesc.from_formula(formula)
    except (patsy.PatsyError, RecursionError) as exc:
        raise ValueError(f"the formula cannot be read: {exc}") from exc
    terms: Iterable[Any] = [*description.lhs_termlist, *description.rhs_termlist]
    for term in terms:
        for factor in term.factors:
            code = getattr(factor, "code", None)
            if not isinstance(code, str):
                raise ValueError(f"formula term {term.name()!r} is not a plain expression")
            try:
                tree = ast.parse(code, mode="eval")
            except (SyntaxError, RecursionError) as exc:
                raise ValueError(f"formula term {code!r} cannot be read") from exc
            _check_factor(tree.body, columns, code)
    environment = patsy.EvalEnvironment([{"np": np}])
    try:
        design = patsy.design_matrix_builders([description.rhs_termlist], lambda: iter([data]), environment)[0]
    except patsy.PatsyError as exc:
        raise ValueError(f"the formula cannot be evaluated on the data: {exc}") from exc
    if len(design.column_names) > max_columns:
        raise ValueError(f"the formula asks for {len(design.column_names)} model columns; at most {max_columns} "
                         f"are refitted at the gateway")


def _fit_options(fit_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The fit options as recorded: plain values as they are, anything else marked as not recordable."""
    return {
        key: json_label(value) if value is None or isinstance(value, str | int | float | bool) else "<not recorded>"
        for key, value in sorted(fit_kwargs.items())
    }


def _run_fit(model: Any, kind: str, fit_kwargs: dict[str, Any]) -> tuple[Any, Exception | None, list[type]]:
    """Fit, keeping statsmodels' warnings (they are evidence) and its separation/singularity exceptions."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            options = {"disp": 0, **fit_kwargs} if kind != "ols" else fit_kwargs
            result = model.fit(**options)
        except (PerfectSeparationError, np.linalg.LinAlgError) as exc:
            return None, exc, [w.category for w in caught]
    return result, None, [w.category for w in caught]


def _statsmodels_signals(
    result: Any, error: Exception | None, categories: list[type], endog: np.ndarray, findings: model_tables.Findings
) -> None:
    """statsmodels' own word on separation: its warning and exception, and its summary's diagnostic."""
    if error is not None:
        if isinstance(error, PerfectSeparationError):
            findings.whole.add("separation")
        return
    if any(issubclass(c, PerfectSeparationWarning) for c in categories):
        findings.whole.add("separation")
        findings.lines.append("statsmodels reports perfect separation: the model predicts every outcome exactly; "
                              "drop or merge the terms that predict it")
        return
    with np.errstate(over="ignore", under="ignore"):
        predicted = np.asarray(result.predict(), dtype=float)
    close = np.abs(endog - predicted) < _PREDICTED_EXACTLY
    if len(close) and close.all():
        findings.whole.add("separation")
        findings.lines.append("every outcome is predicted exactly (complete separation); drop or merge the terms "
                              "that predict it")
        return
    converged = bool((getattr(result, "mle_retvals", None) or {}).get("converged", True))
    converged = converged and not any(issubclass(c, ConvergenceWarning) for c in categories)
    many_exact = len(close) > 0 and close.mean() > _PREDICTED_SHARE
    if "separation" in findings.flagged_terms or findings.exact_separation_checked:
        if not converged:
            findings.notes.append("the fit did not converge")
        return
    if many_exact or not converged:
        why = (f"{close.mean():.0%} of people are predicted within {_PREDICTED_EXACTLY:g} of their outcome"
               if many_exact else "the fit did not converge")
        findings.whole.add("possible_separation")
        findings.lines.append(f"possible separation: {why}; check the coefficients and standard errors, and "
                              f"merge categories or drop a term if one runs away")


def _mask(table: pd.DataFrame, positions: set[int]) -> pd.DataFrame:
    flagged = np.zeros(table.shape, dtype=bool)
    flagged[sorted(positions), :] = True
    return pd.DataFrame(flagged, index=table.index, columns=table.columns)


def _fit(
    kind: str,
    formula: str,
    data: pd.DataFrame,
    dataset: str | None,
    filters: filters_mod.Filters | None,
    config: SDCConfig,
    fit_kwargs: dict[str, Any],
) -> Output:
    if filters:
        data = filters_mod.apply(data, filters)
    builder = {"ols": smf.ols, "logit": smf.logit, "probit": smf.probit}[kind]
    model = builder(formula, data)
    endog = np.asarray(model.endog, dtype=float)
    n_used = len(endog)
    binary_model = kind != "ols"

    info = model_tables.design_info(model, data)
    factors = model_tables.evaluate_factors(info, data, model_tables.fitted_rows(model, len(data)))
    findings = model_tables.check(info, factors, endog, np.asarray(model.exog, dtype=float), binary_model, config)

    result, error, caught = _run_fit(model, kind, fit_kwargs)
    if binary_model:
        _statsmodels_signals(result, error, caught, endog, findings)
    if error is not None:
        if not (findings.whole or findings.flagged_terms):
            raise error  # nothing we found explains it: the model itself is wrong (e.g. collinear terms)
        findings.lines.append(f"statsmodels could not fit the model ({type(error).__name__}: "
                              f"{str(error).splitlines()[0]}); fix the problems named here first")

    if result is not None:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")  # summary statistics of a degenerate fit warn; the rules speak here
            table = result.summary2().tables[1]
        dof_resid = float(result.df_resid)
    else:
        table = pd.DataFrame(np.nan, index=pd.Index(model.exog_names), columns=_SUMMARY_COLUMNS[kind])
        dof_resid = float(n_used - np.linalg.matrix_rank(model.exog))

    slices = info.term_name_slices
    masks: dict[str, pd.DataFrame] = {}
    for rule in (*MODEL_RULES, *findings.flagged_terms):
        positions = {i for term in findings.flagged_terms.get(rule, set()) for i in range(slices[term].start,
                                                                                           slices[term].stop)}
        masks[rule] = _mask(table, positions)

    checks = {"dof": bool(rules.dof(dof_resid, config))}
    if not binary_model:
        checks.update({rule: rule in findings.whole for rule in ("model_threshold", "model_all_same",
                                                                 "model_dominance")})
    else:
        positives = int((endog == 1).sum())
        checks["outcome_class"] = min(positives, n_used - positives) < config.threshold
        checks["separation"] = "separation" in findings.whole
        checks["possible_separation"] = "possible_separation" in findings.whole
    n_dropped = len(data) - n_used
    checks["missing"] = bool(n_dropped > 0 and config.check_missing_values)

    notes = list(findings.lines)
    if findings.more_lines:
        notes.append(f"... and {findings.more_lines} more problems of the same kinds")
    notes.append(f"residual degrees of freedom {dof_resid:g}")
    notes.extend(findings.notes)
    if n_dropped:
        notes.append(f"{n_dropped} rows with missing values were dropped by the model")
    return Output(
        kind=kind,
        table=table,
        masks=masks,
        query={
            "function": kind,
            "dataset": dataset,
            "formula": formula,
            "filters": filters_mod.normalise(filters),
            "fit": _fit_options(fit_kwargs),
            "n_obs": n_used,
            "dof": dof_resid,
            "description": f"{kind} {formula}",
        },
        config=config,
        checks=checks,
        notes=notes,
        model=result,
        implied=findings.recorded_cells(),
    )


def ols(
    formula: str,
    data: pd.DataFrame,
    *,
    dataset: str | None = None,
    filters: filters_mod.Filters | None = None,
    config: SDCConfig = DEFAULT_CONFIG,
    **fit_kwargs: Any,
) -> Output:
    """Like ``statsmodels.formula.api.ols(formula, data).fit()``; the fit is in ``.model``."""
    return _fit("ols", formula, data, dataset, filters, config, fit_kwargs)


def logit(
    formula: str,
    data: pd.DataFrame,
    *,
    dataset: str | None = None,
    filters: filters_mod.Filters | None = None,
    config: SDCConfig = DEFAULT_CONFIG,
    **fit_kwargs: Any,
) -> Output:
    """Like ``statsmodels.formula.api.logit(formula, data).fit()``."""
    return _fit("logit", formula, data, dataset, filters, config, fit_kwargs)


def probit(
    formula: str,
    data: pd.DataFrame,
    *,
    dataset: str | None = None,
    filters: filters_mod.Filters | None = None,
    config: SDCConfig = DEFAULT_CONFIG,
    **fit_kwargs: Any,
) -> Output:
    """Like ``statsmodels.formula.api.probit(formula, data).fit()``."""
    return _fit("probit", formula, data, dataset, filters, config, fit_kwargs)
