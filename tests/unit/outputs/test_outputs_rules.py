"""The output state table and the intake rules, without a database."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import OutputSettings
from gateway.errors import InvalidTransition, ValidationError
from gateway.outputs import files
from gateway.outputs.workflow import OUTPUT_OWNERS, OUTPUT_TRANSITIONS, OutputState, check_output_move


def test_every_state_has_an_owner_and_is_reachable_from_pending() -> None:
    assert set(OUTPUT_OWNERS) == set(OutputState)
    reached, frontier = {OutputState.PENDING}, [OutputState.PENDING]
    while frontier:
        state = frontier.pop()
        for (source, target) in OUTPUT_TRANSITIONS:
            if source == state and target not in reached:
                reached.add(target)
                frontier.append(target)
    assert reached == set(OutputState)
    finals = {s for s, owner in OUTPUT_OWNERS.items() if owner == "final"}
    assert finals == {OutputState.REJECTED, OutputState.WITHDRAWN, OutputState.RELEASED}
    assert not [t for t in OUTPUT_TRANSITIONS if t[0] in finals]


def test_a_rejected_request_is_final_and_release_needs_approval() -> None:
    with pytest.raises(InvalidTransition):
        check_output_move("rejected", OutputState.SUBMITTED)
    with pytest.raises(InvalidTransition):
        check_output_move("partially_reviewed", OutputState.APPROVED)
    with pytest.raises(InvalidTransition):
        check_output_move("reviewed", OutputState.RELEASED)


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    folder = tmp_path / "outputs"
    (folder / "tables").mkdir(parents=True)
    (folder / "tables" / "ok.csv").write_text("region,F,M\nNorth,40,35\n")
    (folder / ".secret.csv").write_text("a\n1\n")
    (folder / "data.parquet").write_bytes(b"PAR1")
    (tmp_path / "outside.csv").write_text("a\n1\n")
    (folder / "link.csv").symlink_to(tmp_path / "outside.csv")
    return folder


LIMITS = OutputSettings(max_file_bytes=1000, max_csv_rows=3)


def test_a_plain_file_is_taken_with_its_hash(outputs: Path) -> None:
    taken = files.take(outputs, "tables/ok.csv", LIMITS)
    assert (taken.path, taken.content_type, taken.sdc_record) == ("tables/ok.csv", "text/csv", None)
    assert [w.path for w in files.list_workspace_files(outputs, LIMITS)] == ["tables/ok.csv"]


@pytest.mark.parametrize(("path", "message"), [
    ("../outside.csv", "not a plain path"), ("tables/../../outside.csv", "not a plain path"),
    ("link.csv", "leads outside"), ("/etc/passwd", "Give the file's path"), (".secret.csv", "hidden file"),
    ("data.parquet", "allowed types"), ("missing.csv", "no file"),
])
def test_paths_outside_the_folder_dotfiles_and_unknown_types_are_refused(outputs: Path, path: str,
                                                                         message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        files.take(outputs, path, LIMITS)


def test_large_files_and_long_csvs_are_refused(outputs: Path) -> None:
    (outputs / "big.txt").write_text("x" * 1001)
    (outputs / "long.csv").write_text("a\n1\n2\n3\n4\n")
    with pytest.raises(ValidationError, match="the limit is 1,000 bytes"):
        files.take(outputs, "big.txt", LIMITS)
    with pytest.raises(ValidationError, match="4 rows; at most 3"):
        files.take(outputs, "long.csv", LIMITS)


@pytest.mark.parametrize("column", ["nhs_number", "pseudo_id", "Patient ID", "person_id", "DOB"])
def test_a_csv_with_an_identifier_column_is_blocked(outputs: Path, column: str) -> None:
    (outputs / "rows.csv").write_text(f"{column},n\nx,12\n")
    with pytest.raises(ValidationError, match="looks like a patient identifier"):
        files.take(outputs, "rows.csv", LIMITS)


def test_a_csv_holding_a_project_pseudonym_is_blocked(outputs: Path) -> None:
    (outputs / "sneaky.csv").write_text("code,n\n9f86d081884c7d659a2f,12\n")
    files.take(outputs, "sneaky.csv", LIMITS)  # not one of this project's pseudonyms: fine
    with pytest.raises(ValidationError, match="one of this project's patient pseudonyms"):
        files.take(outputs, "sneaky.csv", LIMITS, pseudonyms={"9f86d081884c7d659a2f"})
