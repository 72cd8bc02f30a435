"""Versioned, read-only extract storage with atomic publication.

Layout under the extracts root::

    <project>/v1/ ... v<N>/     published versions (files 0444, directories 0555)
    <project>/current -> vN     symlink naming the live version, swapped with os.replace
    <project>/.building-*       a build in progress (or the remains of a killed one)
    <project>/.lock             held by the one build or promotion running for the project

A version directory appears only through a rename of a complete, verified staging
directory, so a reader never sees a half-written extract.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

VERSION_PATTERN = re.compile(r"^v([1-9][0-9]*)$")
STAGING_PREFIX = ".building-"
CURRENT = "current"
LOCK_FILE = ".lock"
MANIFEST = "manifest.json"
_POINTER_PREFIX = ".current-"
_CHUNK = 1 << 20


class BuildInProgress(RuntimeError):
    """Another build or promotion holds the project's lock."""


class ExtractNotFound(LookupError):
    pass


def project_dir(root: Path | str, project_id: str) -> Path:
    return Path(root) / project_id


def version_dir(root: Path | str, project_id: str, version: int) -> Path:
    return project_dir(root, project_id) / f"v{version}"


def list_versions(root: Path | str, project_id: str) -> list[int]:
    pdir = project_dir(root, project_id)
    if not pdir.is_dir():
        return []
    found = (VERSION_PATTERN.match(p.name) for p in pdir.iterdir() if p.is_dir() and not p.is_symlink())
    return sorted(int(m.group(1)) for m in found if m)


def current_version(root: Path | str, project_id: str) -> int | None:
    link = project_dir(root, project_id) / CURRENT
    try:
        target = os.readlink(link)
    except (FileNotFoundError, OSError):
        return None
    m = VERSION_PATTERN.match(target)
    return int(m.group(1)) if m else None


def read_manifest(root: Path | str, project_id: str, version: int | None = None) -> dict[str, Any]:
    """The manifest of ``version``, or of the current version when None."""
    if version is None:
        version = current_version(root, project_id)
        if version is None:
            raise ExtractNotFound(f"project {project_id} has no current extract")
    path = version_dir(root, project_id, version) / MANIFEST
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ExtractNotFound(f"project {project_id} has no extract version {version}") from exc


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def verify_version(root: Path | str, project_id: str, version: int) -> list[str]:
    """Problems found re-hashing a published version against its manifest (empty when sound)."""
    vdir = version_dir(root, project_id, version)
    manifest = read_manifest(root, project_id, version)
    problems = []
    for name, expected in manifest["files"].items():
        path = vdir / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif sha256_file(path) != expected:
            problems.append(f"{name} does not match its SHA-256")
        elif path.stat().st_mode & 0o222:
            problems.append(f"{name} is writable")
    listed = set(manifest["files"]) | {MANIFEST}
    problems.extend(f"{p.name} is not in the manifest" for p in vdir.iterdir() if p.name not in listed)
    return problems


class HashingWriter:
    """A write-only file that hashes what passes through, so a file is hashed as it is written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: BinaryIO = open(path, "xb")  # noqa: SIM115 - closed by close()
        self._digest = hashlib.sha256()
        self._size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data)
        self._digest.update(view)
        self._size += view.nbytes
        return self._fh.write(view)

    def tell(self) -> int:
        return self._size

    def flush(self) -> None:
        self._fh.flush()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return False

    @property
    def closed(self) -> bool:
        return self._fh.closed

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    @property
    def size(self) -> int:
        return self._size


def write_file(path: Path, data: bytes) -> str:
    """Write, fsync and return the SHA-256 of a small file."""
    with open(path, "xb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return hashlib.sha256(data).hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_read_only(path: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames:
            os.chmod(Path(dirpath) / name, 0o444)
        for name in dirnames:
            os.chmod(Path(dirpath) / name, 0o555)  # noqa: S103 - readable by the workspace, never writable
    os.chmod(path, 0o555)  # noqa: S103 - as above


def remove_tree(path: Path) -> None:
    """Remove a directory even when its files and folders were made read-only."""
    if path.is_symlink() or path.is_file():
        path.unlink()
        return
    os.chmod(path, stat.S_IRWXU)
    for dirpath, dirnames, _ in os.walk(path):
        for name in dirnames:
            os.chmod(Path(dirpath) / name, stat.S_IRWXU)
    shutil.rmtree(path)


@contextlib.contextmanager
def project_lock(root: Path | str, project_id: str) -> Iterator[Path]:
    """Hold the project's exclusive lock; the kernel releases it if the process dies."""
    pdir = project_dir(root, project_id)
    pdir.mkdir(parents=True, exist_ok=True)
    fd = os.open(pdir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise BuildInProgress(f"another extract build is running for project {project_id}") from exc
        yield pdir
    finally:
        os.close(fd)


def clean_leftovers(pdir: Path) -> list[str]:
    """Remove staging directories and pointer temporaries left by killed builds (lock held)."""
    removed = []
    for entry in sorted(pdir.iterdir()):
        if entry.name.startswith((STAGING_PREFIX, _POINTER_PREFIX)):
            remove_tree(entry)
            removed.append(entry.name)
    return removed


def new_staging_dir(pdir: Path, version: int) -> Path:
    staging = pdir / f"{STAGING_PREFIX}v{version}-{os.getpid()}-{secrets.token_hex(4)}"
    staging.mkdir()
    return staging


def publish(staging: Path, pdir: Path, version: int) -> Path:
    """Make the staged version read-only and rename it into place (fails if it already exists)."""
    target = pdir / f"v{version}"
    if target.exists():
        raise FileExistsError(f"{target} already exists")
    for child in staging.iterdir():
        if child.is_file():
            with open(child, "rb") as fh:
                os.fsync(fh.fileno())
    make_read_only(staging)
    _fsync_dir(staging)
    os.rename(staging, target)
    _fsync_dir(pdir)
    return target


def point_current(pdir: Path, version: int) -> None:
    """Swap the ``current`` symlink to ``v<version>`` atomically (caller holds the lock)."""
    if not (pdir / f"v{version}").is_dir():
        raise ExtractNotFound(f"{pdir.name} has no version {version}")
    temp = pdir / f"{_POINTER_PREFIX}{secrets.token_hex(4)}"
    os.symlink(f"v{version}", temp)
    os.replace(temp, pdir / CURRENT)
    _fsync_dir(pdir)


def set_current(root: Path | str, project_id: str, version: int) -> None:
    """Make ``version`` the live extract, e.g. once a custodian releases a held version."""
    with project_lock(root, project_id) as pdir:
        point_current(pdir, version)
