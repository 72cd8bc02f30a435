"""The automatic check of files without a record, in every allowed type: tables are found wherever they are,
record-level data fails, and anything a check cannot read is "review: a person must look", never "pass"."""

from __future__ import annotations

import json

import pytest

from gateway.outputs.checks import check_heuristic
from gateway.outputs.content import PseudonymMatcher, nhs_number_valid, read_contents

SMALL = {
    "csv": "region,n\nNorth,40\nSouth,3\n",
    "txt": "region\tn\nNorth\t40\nSouth\t3\n",
    "md": "Results:\n\n| region | n |\n|---|---|\n| North | 40 |\n| South | 3 |\n",
    "html": "<p>Results</p><table><tr><th>region</th><th>n</th></tr><tr><td>North</td><td>40</td></tr>"
            "<tr><td>South</td><td>3</td></tr></table>",
    "json": json.dumps({"meta": {"by": "region"}, "rows": [{"region": "North", "n": 40}, {"region": "South", "n": 3}]}),
}


@pytest.mark.parametrize("extension", sorted(SMALL))
def test_a_small_count_fails_in_a_table_of_any_type(extension: str) -> None:
    result = check_heuristic(SMALL[extension].encode(), extension)
    assert result["status"] == "fail" and result["tables"] == 1
    assert "1 cell small count" in result["summary"]


@pytest.mark.parametrize(("extension", "data"), [
    ("txt", "We counted admissions by region and found nothing unusual."),
    ("md", "# Method\n\nThe table was made with disclosure_control.\n"),
    ("json", json.dumps({"note": "no table here"})),
    ("html", "<p>No table</p>"),
])
def test_a_file_with_no_table_is_review_never_pass(extension: str, data: str) -> None:
    result = check_heuristic(data.encode(), extension)
    assert (result["status"], result["tables"]) == ("review", 0)
    assert any("No table was found" in n for n in result["notes"])


@pytest.mark.parametrize("extension", ["png", "svg"])
def test_an_image_is_for_a_person_to_look_at(extension: str) -> None:
    result = check_heuristic(b"<svg xmlns='http://www.w3.org/2000/svg'/>", extension)
    assert (result["status"], result["method"]) == ("review", "manual")
    assert "a person must look" in result["summary"]


def test_a_clean_table_is_still_only_review_without_a_record() -> None:
    assert check_heuristic(b"region,n\nNorth,40\nSouth,35\n", "csv")["status"] == "review"


def test_record_level_columns_fail_whatever_their_name() -> None:
    codes = "ref,region\n" + "".join(f"A{i:07d}X,North\n" for i in range(30))
    result = check_heuristic(codes.encode(), "csv")
    assert result["status"] == "fail" and any("distinct codes" in n for n in result["notes"])
    nhs = "who,n\n" + "".join(f"{number},{i}0\n" for i, number in enumerate(["9434765919", "943 476 5870"]))
    assert nhs_number_valid("9434765919") and not nhs_number_valid("9434765918")
    result = check_heuristic(nhs.encode(), "csv")
    assert result["status"] == "fail" and any("NHS numbers" in n for n in result["notes"])
    pseudonym = "0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e"
    result = check_heuristic(f"{{\"x\": \"{pseudonym.upper()}\"}}".encode(), "json",
                             pseudonyms=PseudonymMatcher([pseudonym]))
    assert result["status"] == "fail" and any("pseudonyms" in n for n in result["notes"])


def test_a_thirty_row_table_of_region_codes_is_not_mistaken_for_records_below_the_row_count() -> None:
    boroughs = "borough,n\n" + "".join(f"E0900{i:04d},{10 * (i + 1)}\n" for i in range(15))
    assert check_heuristic(boroughs.encode(), "csv")["status"] == "review"


def test_tables_are_found_in_json_layouts_and_prose_is_not_a_table() -> None:
    layouts = [
        [{"a": 1, "b": 2}, {"a": 3, "b": 4}],  # records
        [["a", "b"], [1, 2], [3, 4]],  # rows with a header
        {"a": [1, 3], "b": [2, 4]},  # column-oriented
        {"0": {"a": 1, "b": 2}, "1": {"a": 3, "b": 4}},  # index-oriented
        {"columns": ["a", "b"], "index": [0, 1], "data": [[1, 2], [3, 4]]},  # pandas "split"
    ]
    for layout in layouts:
        [table] = read_contents(json.dumps(layout).encode(), "json").tables
        assert len(table.rows) == 2, layout
    assert read_contents(b"postcode lookup\nwas done\n", "txt").tables == []
    assert len(read_contents(b"  region   F   M\n0  North  40  35\n1  South  30   3\n", "txt").tables) == 1
