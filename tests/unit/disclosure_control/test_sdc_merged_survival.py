"""Attack on merged survival steps: the survival shown at a merged step was the exact Kaplan-Meier value there.

A KM value is a product of fractions (1 - d/n) over every step, merged ones included, and a double holds it exactly
enough to get the fraction back: 0.8205360278502554 is 348128/424269, and 424269 = 3 x 47 x 51 x 59, so people were
at risk 51 and 47 at steps the merge hid, and (trying the few sequences that fit) 1, 2, 1 and 2 events there: the
small steps merging exists to hide. The survival shown is now made from the steps shown alone.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

import disclosure_control as dc

RNG = np.random.default_rng(3)
DATA = pd.DataFrame({"t": RNG.integers(1, 40, 60), "e": RNG.integers(0, 2, 60), "g": ["a"] * 30 + ["b"] * 30})


def primes(n: int) -> set[int]:
    found, p = set(), 2
    while p * p <= n:
        while n % p == 0:
            found.add(p)
            n //= p
        p += 1
    return found | ({n} if n > 1 else set())


def test_a_merged_steps_survival_does_not_give_back_the_steps_it_hides() -> None:
    full = dc.survival(DATA, "t", "e")
    merged = full.suppressed()
    assert merged.status == "pass"
    hidden = set(full.table["at_risk"]) - set(merged.table["at_risk"])
    assert hidden
    shown = set().union(*(primes(int(n)) for n in merged.table["at_risk"]))
    for value in merged.table["survival"]:
        q = Fraction(float(value)).limit_denominator(10**8).denominator
        assert primes(q) <= shown, f"{value} = .../{q}: factors {sorted(primes(q) - shown)} of at-risk numbers hidden"


@pytest.mark.parametrize("group", [None, "g"])
def test_the_survival_shown_is_made_from_the_steps_shown(group) -> None:
    merged = dc.survival(DATA, "t", "e", group=group).suppressed()
    tables = [merged.table] if group is None else [c for _, c in merged.table.groupby(level=0)]
    for curve in tables:
        made = np.cumprod(1 - curve["events"].to_numpy() / curve["at_risk"].to_numpy())
        assert np.allclose(curve["survival"].to_numpy(), made, rtol=0, atol=1e-12)
