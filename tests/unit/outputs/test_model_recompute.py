"""The gateway's refit of a recorded model or survival curve, fed records a researcher could have written:
whatever the record says, the result is a checked output or a clear reason for manual review, never code run
from the record and never an exception that stops the worker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from gateway.outputs import checks


@pytest.fixture
def extract(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    n = 600
    frame = pd.DataFrame({"g": rng.choice(list("abc"), n), "x": rng.normal(size=n), "y": rng.integers(0, 2, n),
                          "c": rng.normal(size=n) * 5, "months": rng.integers(1, 13, n), "died": rng.integers(0, 2, n)})
    frame.to_parquet(tmp_path / "t.parquet")
    (tmp_path / "manifest.json").write_text(json.dumps({"tables": [{"dataset": "t", "file": "t.parquet"}]}))
    return tmp_path


def refit(extract: Path, kind: str, **query: Any) -> Any:
    return checks.recompute({"kind": kind, "query": {"dataset": "t", **query}}, extract)


def test_a_recorded_model_and_curve_are_refitted(extract: Path) -> None:
    assert refit(extract, "logit", formula="y ~ x + C(g)", fit={"cov_type": "HC1", "disp": True}).status == "pass"
    assert refit(extract, "survival", columns=["months", "died"], group=["g"]).kind == "survival"


@pytest.mark.parametrize(("kind", "query", "reason"), [
    ("logit", {"formula": 'y ~ I(__import__("os").system("true"))'}, "is not allowed in a formula"),
    ("logit", {"formula": "y ~ x.__class__"}, "is not allowed in a formula"),
    ("logit", {"formula": "y ~ I((10 ** 10) ** 10)"}, "a power of a number"),
    ("ols", {"formula": "c ~ C(x)"}, "model columns"),  # one column per person
    ("ols", {"formula": ["c ~ x"]}, "must be text"),
    ("ols", {"formula": "zz ~ x"}, "not a column"),
    ("ols", {"formula": "c ~ x", "fit": {"callback": "print"}}, "is not refitted"),
    ("ols", {"formula": "c ~ x", "fit": {"cov_type": ["HC0"]}}, "is not refitted"),
    ("ols", {"formula": "c ~ x", "fit": ["cov_type"]}, "not a mapping"),
    ("logit", {"formula": "y ~ x", "filters": {"g": {"in": ["zz"]}}}, "cannot be fitted"),  # no rows
    ("logit", {"formula": "c ~ x"}, "cannot be fitted"),  # outcome outside 0..1
    ("logit", {"formula": "y ~ x", "fit": {"maxiter": 0}}, "is not refitted"),
    ("logit", {"formula": "C(g) ~ x"}, "cannot be fitted"),
    ("survival", {"columns": ["months", "died"], "group": {"a": 1}}, "cannot be run"),
    ("survival", {"columns": ["months"]}, "cannot be run"),
])
def test_a_record_that_cannot_be_refitted_goes_to_manual_review_with_the_reason(
        extract: Path, kind: str, query: dict[str, Any], reason: str) -> None:
    with pytest.raises(checks.CannotRecompute, match=reason):
        refit(extract, kind, **query)
