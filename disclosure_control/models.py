"""``ols``, ``logit``, ``probit``: statsmodels formula models, fitted and checked.

Rules: residual degrees of freedom (a model with too few is close to a lookup table of the
data); every 0/1 column of the design (dummies of a categorical, binary covariates) needs at
least ``threshold`` members and non-members, and for binary models its members must not all
share one outcome (the coefficient would then reveal it); each class of a binary outcome needs
at least ``threshold`` members.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf

from . import filters as filters_mod
from . import rules
from .config import DEFAULT_CONFIG, SDCConfig
from .output import Output

_INTERCEPTS = {"Intercept", "const"}


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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = model.fit(**fit_kwargs) if kind == "ols" else model.fit(disp=0, **fit_kwargs)
    table = result.summary2().tables[1]
    exog = pd.DataFrame(model.exog, columns=model.exog_names)
    endog = np.asarray(model.endog, dtype=float)
    n_used = len(endog)

    flagged = np.zeros(len(table), dtype=bool)
    details: list[str] = []
    for name in model.exog_names:
        if name in _INTERCEPTS:
            continue
        column = exog[name].to_numpy()
        if not np.isin(column, (0.0, 1.0)).all():
            continue
        members = int(column.sum())
        small = min(members, n_used - members) < config.threshold
        same_outcome = kind != "ols" and members > 0 and np.unique(endog[column == 1]).size == 1
        if small or same_outcome:
            flagged[list(table.index).index(name)] = True
            details.append(
                f"{name}: {members} members of {n_used}" + (", all with one outcome" if same_outcome else "")
            )

    checks = {"dof": bool(rules.dof(result.df_resid, config))}
    if kind != "ols":
        positives = int((endog == 1).sum())
        checks["outcome_class"] = min(positives, n_used - positives) < config.threshold
    n_dropped = len(data) - n_used
    checks["missing"] = bool(n_dropped > 0 and config.check_missing_values)

    mask = pd.DataFrame(np.repeat(flagged[:, None], table.shape[1], axis=1), index=table.index, columns=table.columns)
    notes = [f"residual degrees of freedom {result.df_resid:g}"]
    notes.extend(f"small category {d}" for d in details)
    if n_dropped:
        notes.append(f"{n_dropped} rows with missing values were dropped by the model")
    return Output(
        kind=kind,
        table=table,
        masks={"category_size": mask},
        query={
            "function": kind,
            "dataset": dataset,
            "formula": formula,
            "filters": filters_mod.normalise(filters),
            "n_obs": n_used,
            "dof": float(result.df_resid),
            "description": f"{kind} {formula}",
        },
        config=config,
        checks=checks,
        notes=notes,
        model=result,
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
