"""Attack on differencing through the margins' name: ``margins_name`` may be any text, a category's label too.

The differencing check tells a margin cell by its label (``label == margins_name``). With ``margins_name="North"``
the real North cells were read as margins (everyone) and the real "All" cells, sharing their labels, were dropped
as duplicates: a released table's F total (70) was never compared, and a later table of the same people less IMD
decile 10 (F: 66) passed though the two give the 4 women of decile 10. pandas refuses such a name ("Conflicting
name in margins"); so does the library now, so the gateway's recomputation refuses it too.
"""

from __future__ import annotations

import pandas as pd
import pytest

import disclosure_control as dc

# F: North 40 (4 of them in IMD decile 10), South 30; M: North 50, South 25
DATA = pd.DataFrame({"region": ["North"] * 40 + ["South"] * 30 + ["North"] * 50 + ["South"] * 25,
                     "sex": ["F"] * 70 + ["M"] * 75,
                     "imd": [10] * 4 + [1] * 66 + [3] * 75, "everyone": ["London"] * 145})


def test_a_total_named_like_a_category_cannot_hide_it_from_the_differencing_check() -> None:
    try:
        released = dc.crosstab("region", "sex", data=DATA, margins=True, margins_name="North", dataset="p")
    except ValueError:
        return  # refused: nothing mislabelled can be released
    later = dc.crosstab("sex", "everyone", data=DATA, dataset="p", filters={"imd": {"between": [1, 9]}})
    report = dc.check_differencing(later, [released.record()])
    assert report.status == "fail", "the F totals 70 and 66 differ by the 4 women of decile 10"


@pytest.mark.parametrize("name", ["North", "F", "South"])
def test_a_margins_name_that_is_a_label_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="margins"):
        dc.crosstab("region", "sex", data=DATA, margins=True, margins_name=name)
    with pytest.raises(ValueError, match="margins"):
        dc.pivot_table(DATA, "imd", "region", "sex", aggfunc="sum", margins=True, margins_name=name)


def test_an_ordinary_margins_name_is_fine() -> None:
    assert dc.crosstab("region", "sex", data=DATA, margins=True, margins_name="Total").table.loc["Total", "F"] == 70


def test_with_a_plain_margins_name_the_same_pair_is_flagged() -> None:
    released = dc.crosstab("region", "sex", data=DATA, margins=True, dataset="p")
    later = dc.crosstab("sex", "everyone", data=DATA, dataset="p", filters={"imd": {"between": [1, 9]}})
    assert dc.check_differencing(later, [released.record()]).status == "fail"
