"""Shared synthetic data for the extract tests: small, generated once per session."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from gateway.extracts.synth import generate

SMALL_PATIENTS = 800
SMALL_SEED = 11


@pytest.fixture(scope="session")
def small_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small population, in two chunks so chunk boundaries are exercised."""
    out = tmp_path_factory.mktemp("source")
    generate(SMALL_PATIENTS, SMALL_SEED, out, chunk_patients=500)
    return out


@pytest.fixture(scope="session")
def small_tables(small_source: Path) -> dict[str, object]:
    """The small source as pandas DataFrames, for brute-force expectations."""
    return {p.stem: pq.read_table(p).to_pandas() for p in small_source.glob("*.parquet")}
