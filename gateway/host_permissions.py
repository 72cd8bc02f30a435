"""What other accounts on the gateway's host may read of the instance: nothing.

The instance folder holds the database (password hashes, TOTP secrets), the secret key, the pseudonymisation
keys, the source data and every extract. Every `sde` command runs with umask 077, so whatever it creates is its
own; `secure_instance` also closes what an older release or a copied backup left open. Workspaces still reach
their extract and home: the hub (as root) binds them into each sandbox's private mount namespace, so nobody
needs a way in through these folders (see infra/jupyterhub/sandbox_spawner.py and docs/operators.md).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from gateway.config import Settings

PRIVATE_UMASK = 0o077
FOLDER_MODE = 0o700
FILE_MODE = 0o600


def private_umask() -> None:
    os.umask(PRIVATE_UMASK)


def _close(path: Path, mode: int) -> None:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        return
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, stat.S_IMODE(info.st_mode) & ~0o077 | (mode & 0o700))


def _close_tree(folder: Path) -> None:
    """No group or other bits anywhere below `folder` (owner bits are kept: read-only stays read-only)."""
    if not folder.is_dir() or folder.is_symlink():
        return
    _close(folder, FOLDER_MODE)
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        for name in dirnames:
            _close(Path(dirpath) / name, FOLDER_MODE)
        for name in filenames:
            _close(Path(dirpath) / name, FILE_MODE)


def sqlite_files(settings: Settings) -> list[Path]:
    url = settings.resolved_database_url
    if not url.startswith("sqlite:///"):
        return []
    db = Path(url.removeprefix("sqlite:///"))
    return [db, *(db.with_name(db.name + suffix) for suffix in ("-wal", "-shm", "-journal"))]


def secure_instance(settings: Settings) -> None:
    """Close the instance folder and everything secret in it to other accounts (idempotent, cheap)."""
    for folder in (settings.instance_dir, settings.hub_state_dir, settings.keys_dir, settings.extracts_root,
                   settings.homes_root, settings.outputs_dir, settings.certificates_dir):
        if folder.is_dir():
            os.chmod(folder, FOLDER_MODE)
    for path in (*sqlite_files(settings), settings.instance_dir / "secret_key"):
        _close(path, FILE_MODE)
    for folder in (settings.keys_dir, settings.source_dir):
        _close_tree(folder)
