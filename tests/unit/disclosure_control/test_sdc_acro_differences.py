"""Where our verdicts differ from ACRO 1.0.2 (see bench/sdc_vs_acro.py), which is right and why.

ACRO runs in its own virtual environment (it pins pandas <= 2.3.3), so these tests do not import
it. Each restates, in a few lines, the formula ACRO 1.0.2 applies (read from its source: sdcchecks.py,
tablemodeldetails.py, acro_tables.py) and shows on a concrete table why that formula gives the
wrong answer and ours the right one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import disclosure_control as dc


def test_normalised_table_acro_thresholds_the_proportions() -> None:
    """ACRO 1.0.2 builds its count table with the caller's ``normalize`` still set, so it compares
    proportions (all below 1) with the threshold of 10 and fails every cell of every normalised
    table. The risk in a proportion is the count behind it: 500/1000 people is safe whether shown
    as 500 or as 0.5. We check the counts: large cells pass, small ones fail, as for the counts."""
    df = pd.DataFrame({"a": ["x"] * 500 + ["y"] * 500, "b": (["p"] * 250 + ["q"] * 250) * 2})
    proportions = pd.crosstab(df.a, df.b, normalize="index")
    acro_verdict = (proportions < 10).to_numpy()  # ACRO's threshold mask on this table
    assert acro_verdict.all()
    ours = dc.crosstab(df.a, df.b, normalize="index")
    assert ours.status == "pass"
    assert (ours.cell_status == "pass").to_numpy().all()


def test_dispersion_acro_marks_every_cell_with_its_dof_value() -> None:
    """For std, ACRO 1.0.2 uses the table of degrees of freedom (count - 1) itself as the cell
    mask, not ``dof < threshold``; every non-zero number is truthy, so every cell with any dof is
    marked MinimumDoFCheck, safe or not (and a cell with dof 0 is not marked). Its overall status
    uses the comparison and is right; its per-cell verdicts are not. We mark exactly the cells
    with dof below the threshold."""
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"g": ["big"] * 200 + ["small"] * 5, "v": rng.random(205)})
    dof = df.groupby("g").size() - 1
    acro_cell_marked = dof.astype(bool)  # what ACRO's collation does with that mask
    assert acro_cell_marked.to_dict() == {"big": True, "small": True}
    ours = dc.pivot_table(df, "v", "g", aggfunc="std")
    assert ours.cell_status["v"].to_dict() == {"big": "pass", "small": "fail"}


def test_nk_boundary_exactly_k_is_safe() -> None:
    """The (n,k) rule says a cell is dominated when its n largest contributions are MORE than k%
    of the total; ACRO's own check definition says the same ("more than k%"), but ACRO 1.0.2
    compares with ``>=`` (the comparison has changed between releases), so a cell at exactly 90% fails there
    and passes here. We keep the textbook boundary and pin it."""
    values = [45.0, 45.0] + [10.0 / 8] * 8  # top two exactly 90% of 100, ten contributors
    df = pd.DataFrame({"g": ["a"] * 10, "v": values})
    top2_share = sum(sorted(values, reverse=True)[:2]) / sum(values)
    assert top2_share == 0.9
    assert top2_share >= 0.9  # ACRO 1.0.2 would flag NKCheck
    ours = dc.pivot_table(df, "v", "g", aggfunc="sum")
    assert not ours.masks["nk_dominance"].to_numpy().any()
    nudged = df.assign(v=[45.0, 45.001] + [10.0 / 8] * 8)
    assert dc.pivot_table(nudged, "v", "g", aggfunc="sum").masks["nk_dominance"].to_numpy().all()


def test_survival_acro_dof_says_nothing_about_the_steps() -> None:
    """ACRO 1.0.2 checks a Kaplan-Meier table with 'dof' = number of people - number of distinct
    times. A cohort of 200 with deaths in 20 distinct months has dof 180 and passes, even when a
    month holds a single death among 11 at risk. We check every step: at risk and events."""
    time = np.concatenate([np.repeat(np.arange(1, 20), 10), [20], np.full(9, 21)])
    event = np.concatenate([np.ones(190), [1], np.zeros(9)])
    df = pd.DataFrame({"t": time, "e": event})
    acro_dof = len(event) - len(np.unique(time))
    assert acro_dof >= 10  # ACRO's MinimumDoFCheck passes
    ours = dc.survival(df, "t", "e")
    assert ours.status == "fail"
    assert ours.masks["events"].loc[20.0].all()  # one death among ten at risk: identifiable


def test_negative_values_acro_skips_dominance_for_the_whole_table() -> None:
    """When any cell holds a negative value ACRO 1.0.2 returns early from both dominance checks,
    marking only the cells with negatives, so a dominated cell elsewhere in the table is not
    flagged at all. Dominance is undefined only where negatives are: we review those cells and
    still check the others."""
    rng = np.random.default_rng(1)
    dominated = [1.0] * 19 + [1_000_000.0]
    df = pd.DataFrame(
        {
            "g": ["dominated"] * 20 + ["negative"] * 20 + ["fine"] * 20,
            "v": [*dominated, -1.0, *(rng.random(19) + 1), *(rng.random(20) + 1)],
        }
    )
    ours = dc.pivot_table(df, "v", "g", aggfunc="sum")
    assert ours.cell_status["v"].to_dict() == {"dominated": "fail", "fine": "pass", "negative": "review"}


def test_models_acro_checks_only_the_residual_degrees_of_freedom() -> None:
    """ACRO 1.0.2 runs one check on a regression, MinimumDoFCheck (acro_regression.py records only
    ``dof``, with an empty outcome frame). A logit with 180 residual dof passes it, though one category
    has 3 people with the event: the coefficient of that category is a table cell of 3. We rebuild the
    tables a model implies and fail it, naming the category."""
    rows = [(g, y) for g, (n0, n1) in {"a": (40, 40), "b": (40, 30), "c": (30, 3)}.items()
            for y, n in ((0, n0), (1, n1)) for _ in range(n)]
    df = pd.DataFrame(rows, columns=["group", "event"])
    df["age"] = np.random.default_rng(1).uniform(20, 80, len(df))
    ours = dc.logit("event ~ age + C(group)", df)
    acro_verdict = "pass" if ours.model.df_resid >= 10 else "fail"  # ACRO's whole check on a model
    assert acro_verdict == "pass"
    assert ours.status == "fail" and "C(group) = c with outcome 1: 3 people" in ours.summary
