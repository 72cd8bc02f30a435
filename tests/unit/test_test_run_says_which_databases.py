"""Plain `pytest` without PostgreSQL says, in one line at the end, that the PostgreSQL half was not run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NOTICE = "PostgreSQL: NOT RUN"


def run_pytest(env: dict[str, str]) -> str:
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                             "tests/unit/test_csv_safe.py"], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-2000:]
    return result.stdout


def test_plain_pytest_says_the_postgresql_half_was_not_run_and_how_to_run_it() -> None:
    plain = {k: v for k, v in os.environ.items() if k not in {"SDE_TEST_DATABASE_URL", "DATABASE_URL"}}
    out = run_pytest(plain)
    lines = [line for line in out.splitlines() if NOTICE in line]
    assert len(lines) == 1
    assert "SDE_TEST_DATABASE_URL=postgresql+psycopg://" in lines[0] and "make test" in lines[0]
    assert "londonsde databases: sqlite only" in out  # and the header says the same at the start


def test_with_postgresql_configured_there_is_no_such_line() -> None:
    configured = {**os.environ, "SDE_TEST_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"}
    out = run_pytest(configured)
    assert NOTICE not in out and "londonsde databases: sqlite + postgresql" in out
