"""Throwaway databases: a migrated SQLite file per test, or a PostgreSQL database emptied per test.

Both are made by the real Alembic migrations, so every test run also tests the migrations.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from gateway.migrate import upgrade


def postgres_server_url() -> str | None:
    """Where to create test databases; set by `make test` (SDE_TEST_DATABASE_URL or DATABASE_URL)."""
    url = os.environ.get("SDE_TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if url and url.startswith("postgresql"):
        return url if "+psycopg" in url else url.replace("postgresql://", "postgresql+psycopg://", 1)
    return None


def backends() -> list[str]:
    return ["sqlite", "postgresql"] if postgres_server_url() else ["sqlite"]


class SqliteTemplate:
    def __init__(self, directory: Path) -> None:
        self.template = directory / "template.sqlite3"
        upgrade(f"sqlite:///{self.template}")

    def fresh(self, directory: Path) -> str:
        target = directory / f"db-{uuid.uuid4().hex[:8]}.sqlite3"
        shutil.copyfile(self.template, target)
        return f"sqlite:///{target}"


class PostgresDatabase:
    """One database per test session, migrated once, emptied (not dropped) between tests."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.name = f"sde_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.name}"'))
        admin.dispose()
        self.url = make_url(server_url).set(database=self.name).render_as_string(hide_password=False)
        upgrade(self.url)
        # No pool: reset() ends every other connection to this database, idle pooled ones included.
        self.engine = create_engine(self.url, poolclass=NullPool)

    def reset(self) -> str:
        with self.engine.begin() as conn:
            # A connection leaked by a previous test must not block the TRUNCATE below.
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
            tables = [row[0] for row in conn.execute(text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"))]
            # Bypass the append-only triggers: only the test harness empties the log.
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))
            conn.execute(text("INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, :h)"), {"h": "0" * 64})
        return self.url

    def drop(self) -> None:
        self.engine.dispose()
        admin = create_engine(self.server_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def postgres_database(server_url: str) -> Iterator[PostgresDatabase]:
    database = PostgresDatabase(server_url)
    try:
        yield database
    finally:
        database.drop()


@contextmanager
def scratch_database(backend: str, directory: Path) -> Iterator[str]:
    """An empty, unmigrated database of its own, for tests that move migrations up and down."""
    if backend == "sqlite":
        yield f"sqlite:///{directory / 'scratch.sqlite3'}"
        return
    server = postgres_server_url()
    assert server is not None
    name = f"sde_scratch_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# For tests of races between transactions (row locks): SQLite runs one writer at a time, so there is nothing to test
# there, and a skip would fail a strict run. Without PostgreSQL configured the parameter list is empty (pytest skips).
postgres_only = pytest.mark.parametrize("backend", [b for b in backends() if b == "postgresql"])
