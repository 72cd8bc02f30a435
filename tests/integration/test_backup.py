"""`sde backup` / `sde restore`: a demo instance backed up and restored into a fresh database and folder."""

from __future__ import annotations

import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from gateway import audit
from gateway.cli import main
from gateway.config import Settings
from gateway.db import make_engine, make_session_factory, unit_of_work
from tests.support import databases


def sde(url: str, instance: Path, *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env={"SDE_DATABASE_URL": url, "SDE_INSTANCE_DIR": str(instance)})


def row_counts(url: str) -> dict[str, int]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return {t: conn.execute(text(f'SELECT count(*) FROM "{t}"')).scalar_one()  # noqa: S608
                    for t in inspect(conn).get_table_names()}
    finally:
        engine.dispose()


def counts_at_backup(url: str) -> dict[str, int]:
    """The source's row counts as the backup saw them: `sde backup` records itself (instance.backed_up) after
    the dump, so that event is in the source and not in the backup."""
    counts = row_counts(url)
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            counts["audit_events"] -= conn.execute(text(
                "SELECT count(*) FROM audit_events WHERE action = 'instance.backed_up'")).scalar_one()
    finally:
        engine.dispose()
    return counts


@pytest.fixture
def seeded(settings: Settings) -> Settings:
    """Demo data through the real services, with a built extract (so extracts and keys exist) and an output."""
    from gateway import demo

    engine = make_engine(settings.resolved_database_url)
    factory = make_session_factory(engine)
    with unit_of_work(factory) as session:
        demo.seed(session, settings)
    demo.prepare_data(settings, factory)
    engine.dispose()
    releases = settings.outputs_dir / "releases"
    releases.mkdir(parents=True)
    (releases / "LSDE-0001-r1.zip").write_bytes(b"release package bytes")
    return settings


@pytest.fixture
def empty_target(backend: str, tmp_path: Path) -> Iterator[str]:
    """A database that does not exist yet (SQLite) or a new empty one made for this test (PostgreSQL)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'restored.sqlite3'}"
        return
    server = databases.postgres_server_url()
    assert server is not None
    name = f"sde_restore_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.mark.parametrize("archive", [False, True], ids=["folder", "tar.gz"])
def test_backup_then_restore_into_a_fresh_instance(seeded: Settings, empty_target: str, tmp_path: Path,
                                                   archive: bool) -> None:
    source_url = seeded.resolved_database_url
    dest = tmp_path / ("backup.tar.gz" if archive else "backup")
    made = sde(source_url, seeded.instance_dir, "backup", str(dest))
    assert made.exit_code == 0, made.output

    new_instance = tmp_path / "restored-instance"
    restored = sde(empty_target, new_instance, "restore", str(dest))
    assert restored.exit_code == 0, restored.output
    assert "audit chain intact" in restored.output

    assert row_counts(empty_target) == counts_at_backup(source_url)
    assert row_counts(empty_target)["audit_events"] > 50
    engine = create_engine(empty_target, poolclass=NullPool)
    with make_session_factory(engine)() as session:
        assert audit.verify(session).ok
    engine.dispose()

    keys = list((new_instance / "keys").iterdir())
    assert keys and all(stat.S_IMODE(k.stat().st_mode) == 0o600 for k in keys)
    for private in (new_instance, new_instance / "keys", new_instance / "extracts", new_instance / "source"):
        assert not private.exists() or stat.S_IMODE(private.stat().st_mode) & 0o077 == 0, private
    for folder in ("extracts", "certificates", "outputs/releases"):
        before = sorted(p.relative_to(seeded.instance_dir / folder) for p in (seeded.instance_dir / folder).rglob("*"))
        after = sorted(p.relative_to(new_instance / folder) for p in (new_instance / folder).rglob("*"))
        assert before and before == after, folder
    links = sorted(p.relative_to(seeded.instance_dir) for p in seeded.instance_dir.rglob("*") if p.is_symlink())
    assert links == sorted(p.relative_to(new_instance) for p in new_instance.rglob("*") if p.is_symlink())

    again = sde(empty_target, new_instance, "restore", str(dest))
    assert again.exit_code != 0 and "not empty" in again.output
    forced = sde(empty_target, new_instance, "restore", "--force", str(dest))
    assert forced.exit_code == 0, forced.output
    assert row_counts(empty_target) == counts_at_backup(source_url)


def test_a_tampered_backup_is_refused_and_nothing_changes(seeded: Settings, empty_target: str,
                                                          tmp_path: Path) -> None:
    dest = tmp_path / "backup"
    assert sde(seeded.resolved_database_url, seeded.instance_dir, "backup", str(dest)).exit_code == 0
    certificate = next(p for p in (dest / "files" / "certificates").rglob("*") if p.is_file())
    certificate.chmod(0o600)
    certificate.write_bytes(certificate.read_bytes() + b"x")

    new_instance = tmp_path / "restored-instance"
    refused = sde(empty_target, new_instance, "restore", str(dest))
    assert refused.exit_code != 0
    assert "SHA-256 mismatch" in refused.output and certificate.name in refused.output
    assert not new_instance.exists()
    assert not any(row_counts(empty_target).values())


def test_restore_refuses_a_database_with_data_unless_forced(seeded: Settings, tmp_path: Path) -> None:
    dest = tmp_path / "backup"
    url = seeded.resolved_database_url
    assert sde(url, seeded.instance_dir, "backup", str(dest)).exit_code == 0
    refused = sde(url, tmp_path / "elsewhere", "restore", str(dest))
    assert refused.exit_code != 0 and "target database is not empty" in refused.output
