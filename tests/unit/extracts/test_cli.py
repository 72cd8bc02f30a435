from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.extracts import storage
from gateway.extracts.cli import extracts_cli, read_key_file

SPEC = """\
project_id: cli-demo
datasets:
  patients: [date_of_birth, sex]
  bp_readings: [reading_date, systolic_mmhg]
cohort: {age_min: 18}
date_range: {start: 2020-01-01, end: 2024-12-31}
generalisation: {date_of_birth: age_band, age_band_years: 10}
"""


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "project.key"
    path.write_text(bytes(range(32)).hex() + "\n", encoding="utf-8")
    return path


def test_synth_then_extract_build(tmp_path: Path, key_file: Path) -> None:
    runner = CliRunner()
    data = tmp_path / "data"
    result = runner.invoke(extracts_cli, ["synth", "--patients", "600", "--seed", "4", "--out", str(data)])
    assert result.exit_code == 0, result.output
    assert "patients                    600 rows" in result.output
    assert (data / "catalogue.yaml").is_file()

    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC, encoding="utf-8")
    root = tmp_path / "extracts"
    args = [
        "extract-build",
        str(spec),
        "--source",
        str(data),
        "--extracts-root",
        str(root),
        "--key-file",
        str(key_file),
    ]
    result = runner.invoke(extracts_cli, args)
    assert result.exit_code == 0, result.output
    assert "Version v1" in result.output and "opt-outs removed" in result.output
    manifest = storage.read_manifest(root, "cli-demo", 1)
    assert manifest["cohort"]["patients_released"] > 0
    released = "Released: current -> v1" in result.output
    assert released == (not manifest["risk"]["flagged"])
    assert ("HELD" in result.output) == manifest["risk"]["flagged"]


def test_a_spec_asking_for_nhs_numbers_fails_cleanly(tmp_path: Path, key_file: Path) -> None:
    runner = CliRunner()
    data = tmp_path / "data"
    runner.invoke(extracts_cli, ["synth", "--patients", "50", "--out", str(data)])
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.replace("[date_of_birth, sex]", "[nhs_number]"), encoding="utf-8")
    root = tmp_path / "extracts"
    args = [
        "extract-build",
        str(spec),
        "--source",
        str(data),
        "--extracts-root",
        str(root),
        "--key-file",
        str(key_file),
    ]
    result = runner.invoke(extracts_cli, args)
    assert result.exit_code == 1
    assert "direct identifier" in result.output
    assert storage.list_versions(root, "cli-demo") == []


def test_key_files_hold_hex_or_raw_bytes(tmp_path: Path) -> None:
    hex_file, raw_file, short_file = tmp_path / "hex", tmp_path / "raw", tmp_path / "short"
    hex_file.write_text("ab" * 32, encoding="utf-8")
    raw_file.write_bytes(b"\xff\x00" * 20)
    short_file.write_text("ab" * 8, encoding="utf-8")
    assert read_key_file(hex_file) == b"\xab" * 32
    assert read_key_file(raw_file) == b"\xff\x00" * 20
    with pytest.raises(Exception, match="at least 32 bytes"):
        read_key_file(short_file)
