"""Back up and restore one gateway instance: the database plus the folders that hold state.

A backup is a folder (or the same folder as a ``.tar.gz``)::

    manifest.json            format, time, backend, Alembic revision, SHA-256 and mode of every file
    database.dump            PostgreSQL: ``pg_dump -Fc``      (or database.sqlite3: sqlite3's backup API)
    files/<area>/...         extracts, keys, certificates, outputs (requests and release packages)

Restore checks every hash before it touches anything, refuses a non-empty target unless forced, puts the
database and folders back, then verifies the audit chain.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from gateway import audit
from gateway.config import Settings
from gateway.db import make_session_factory
from gateway.migrate import current_revision, head_revision

FORMAT = 1
MANIFEST = "manifest.json"
FILES = "files"
PG_DUMP = "database.dump"
SQLITE_COPY = "database.sqlite3"
# Tables that exist, with a row, in a freshly migrated database: their rows do not make it "non-empty".
EMPTY_DB_TABLES = {"alembic_version", "audit_head"}


class BackupError(Exception):
    """A backup could not be made or restored; nothing was changed by a refused restore."""


@dataclass(frozen=True)
class RestoreResult:
    files: int
    audit: audit.VerifyResult
    revision: str | None
    head: str | None


def areas(settings: Settings) -> dict[str, Path]:
    """The instance folders that hold state, by the name they have inside a backup."""
    return {
        "extracts": settings.extracts_root,
        "keys": settings.keys_dir,
        "certificates": settings.instance_dir / "certificates",
        "outputs": settings.outputs_dir,
    }


def _backend(url: str) -> str:
    name = make_url(url).get_backend_name()
    if name not in {"postgresql", "sqlite"}:
        raise BackupError(f"unsupported database backend {name!r}")
    return name


def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up or restored")
    return Path(database)


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq connection URI for pg_dump/pg_restore, with the password in the environment, not argv."""
    parsed: URL = make_url(url)
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    return parsed.set(drivername="postgresql", password=None).render_as_string(hide_password=False), env


def _run(argv: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BackupError(f"{argv[0]} failed: {result.stderr.strip()[-2000:]}")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def _walk(root: Path) -> Iterator[Path]:
    """Every file and symlink under root (symlinks are not followed)."""
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        for name in sorted(filenames):
            yield base / name
        for name in sorted(dirnames):
            if (base / name).is_symlink():
                yield base / name


# --- backup ----------------------------------------------------------------------------------

def _dump_database(url: str, target_dir: Path) -> str:
    if _backend(url) == "postgresql":
        uri, env = _libpq(url)
        _run(["pg_dump", "-Fc", "--file", str(target_dir / PG_DUMP), "--dbname", uri], env)
        return PG_DUMP
    source = sqlite3.connect(_sqlite_path(url))
    target = sqlite3.connect(target_dir / SQLITE_COPY)
    try:
        with target:
            source.backup(target)  # a consistent snapshot even while the gateway writes
        target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file: reading it leaves no -wal/-shm
    finally:
        target.close()
        source.close()
    return SQLITE_COPY


def backup(settings: Settings, dest: Path) -> dict[str, Any]:
    """Write a backup to ``dest`` (a new folder, or a file ending .tar.gz); returns the manifest."""
    dest = dest.expanduser().resolve()
    if dest.exists():
        raise BackupError(f"{dest} already exists; choose a new name")
    url = settings.resolved_database_url
    if dest.name.endswith(".tar.gz"):
        with tempfile.TemporaryDirectory(prefix="sde-backup-") as tmp:
            folder = Path(tmp) / dest.name.removesuffix(".tar.gz")
            manifest = backup(settings, folder)
            partial = dest.with_name(f".{dest.name}.partial")
            with tarfile.open(partial, "w:gz") as tar:
                tar.add(folder, arcname=folder.name)
            partial.replace(dest)
            return manifest
    dest.mkdir(parents=True)
    engine = create_engine(url, poolclass=NullPool)
    try:
        revision = current_revision(engine)
    finally:
        engine.dispose()
    database_file = _dump_database(url, dest)
    for name, source in areas(settings).items():
        if source.is_dir():
            shutil.copytree(source, dest / FILES / name, symlinks=True)
    manifest = {
        "format": FORMAT,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "backend": _backend(url),
        "database_file": database_file,
        "alembic_revision": revision,
        "areas": sorted(name for name in areas(settings) if (dest / FILES / name).is_dir()),
        "files": _inventory(dest),
    }
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def _inventory(folder: Path) -> list[dict[str, Any]]:
    entries = []
    for path in _walk(folder):
        relative = path.relative_to(folder).as_posix()
        if relative == MANIFEST:
            continue
        if path.is_symlink():
            entries.append({"path": relative, "link": os.readlink(path)})
        else:
            entries.append({"path": relative, "sha256": sha256_of(path), "size": path.stat().st_size,
                            "mode": stat.S_IMODE(path.stat().st_mode)})
    return entries


# --- restore ---------------------------------------------------------------------------------

@contextmanager
def _opened(src: Path) -> Iterator[Path]:
    """The backup folder itself, or a .tar.gz unpacked into a temporary folder."""
    src = src.expanduser().resolve()
    if src.is_dir():
        yield src
        return
    if not src.is_file() or not src.name.endswith(".tar.gz"):
        raise BackupError(f"{src} is neither a backup folder nor a .tar.gz backup")
    with tempfile.TemporaryDirectory(prefix="sde-restore-") as tmp:
        with tarfile.open(src, "r:gz") as tar:
            tar.extractall(tmp, filter="data")  # refuses absolute paths, .. and links out of the folder
        folders = [p for p in Path(tmp).iterdir() if p.is_dir()]
        if len(folders) != 1:
            raise BackupError("the archive must hold exactly one backup folder")
        yield folders[0]


def check(folder: Path) -> dict[str, Any]:
    """The manifest, once every file in the backup matches it exactly (no file changed, missing or added)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise BackupError(f"no readable {MANIFEST} in {folder}") from exc
    if manifest.get("format") != FORMAT:
        raise BackupError(f"unknown backup format {manifest.get('format')!r}")
    listed = {entry["path"]: entry for entry in manifest["files"]}
    present = {p.relative_to(folder).as_posix(): p for p in _walk(folder)}
    present.pop(MANIFEST, None)
    problems = [f"not in the manifest: {name}" for name in sorted(set(present) - set(listed))]
    problems += [f"missing: {name}" for name in sorted(set(listed) - set(present))]
    for name in sorted(set(listed) & set(present)):
        entry, path = listed[name], present[name]
        if "link" in entry:
            target = os.readlink(path) if path.is_symlink() else None
            if target != entry["link"] or os.path.isabs(entry["link"]) or ".." in Path(entry["link"]).parts:
                problems.append(f"link changed or unsafe: {name}")
        elif path.is_symlink() or sha256_of(path) != entry["sha256"]:
            problems.append(f"SHA-256 mismatch: {name}")
    if manifest.get("database_file") not in listed:
        problems.append("the database file is not in the manifest")
    if problems:
        raise BackupError("the backup does not match its manifest; nothing was restored: "
                          + "; ".join(problems[:10]) + (" ..." if len(problems) > 10 else ""))
    return manifest


def _database_has_data(url: str) -> bool:
    if _backend(url) == "sqlite" and not _sqlite_path(url).exists():
        return False
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            tables = [t for t in inspect(conn).get_table_names() if t not in EMPTY_DB_TABLES]
            quote = conn.dialect.identifier_preparer.quote
            return any(conn.execute(text(f"SELECT 1 FROM {quote(t)} LIMIT 1")).first() for t in tables)  # noqa: S608 - names from the catalogue
    finally:
        engine.dispose()


def _remove_tree(path: Path) -> None:
    """Remove a folder that may hold read-only files and folders (released extracts are 0555/0444)."""
    if path.is_symlink() or path.is_file():
        path.unlink()
        return
    for dirpath, _dirs, _files in os.walk(path):
        os.chmod(dirpath, stat.S_IRWXU)
    shutil.rmtree(path)


def _restore_database(url: str, folder: Path, manifest: dict[str, Any]) -> None:
    backend = _backend(url)
    if backend != manifest["backend"]:
        raise BackupError(f"the backup is of a {manifest['backend']} database; the target is {backend}")
    source = folder / manifest["database_file"]
    if backend == "postgresql":
        uri, env = _libpq(url)
        _run(["pg_restore", "--clean", "--if-exists", "--no-owner", "--no-privileges", "--single-transaction",
              "--dbname", uri, str(source)], env)
        return
    target_path = _sqlite_path(url)
    target_path.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target_path)
    try:
        with dst:
            src.backup(dst)  # replaces every page of the target
    finally:
        dst.close()
        src.close()


def restore(settings: Settings, src: Path, *, force: bool = False) -> RestoreResult:
    """Check, then restore the database and folders of a backup into ``settings``' instance."""
    url = settings.resolved_database_url
    with _opened(src) as folder:
        manifest = check(folder)
        targets = areas(settings)
        if not force:
            if _database_has_data(url):
                raise BackupError("the target database is not empty; use --force to overwrite it")
            busy = [str(p) for name, p in targets.items()
                    if name in manifest["areas"] and p.is_dir() and any(p.iterdir())]
            if busy:
                raise BackupError(f"target folders are not empty: {', '.join(busy)}; use --force to replace them")
        _restore_database(url, folder, manifest)
        for name in manifest["areas"]:
            target = targets[name]
            if target.exists() or target.is_symlink():
                _remove_tree(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(folder / FILES / name, target, symlinks=True)
        for entry in manifest["files"]:  # modes as they were (keys stay 0600), whatever the unpacking did
            parts = entry["path"].split("/")
            if "mode" in entry and parts[0] == FILES and parts[1] in targets:
                os.chmod(targets[parts[1]].joinpath(*parts[2:]), entry["mode"])
    engine = create_engine(url, poolclass=NullPool)
    try:
        session = make_session_factory(engine)()
        try:
            result = audit.verify(session)
        finally:
            session.close()
        revision = current_revision(engine)
    finally:
        engine.dispose()
    return RestoreResult(files=len(manifest["files"]), audit=result, revision=revision, head=head_revision(url))
