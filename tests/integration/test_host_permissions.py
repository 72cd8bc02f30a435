"""Another local account on the gateway's host reads nothing of the instance (issue 13, finding 4).

A real instance made by `sde demo --seed-only` (database, secret key, pseudonymisation keys, synthetic source
data, built extracts) and prepared for the hub as `sde hub` does, then probed by a process running as an unused
uid with no groups, as any other account on the machine would be. The probe tries to list every folder and read
every file, by their full paths (which it is told, so hiding names is not what protects them).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import load_settings

REPO = Path(__file__).resolve().parents[2]
OUTSIDER_UID = 64999  # no account, no groups: "any local account"

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="must run as root to switch to another uid"),
              pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) missing")]

PROBE = r"""
for p in "$@"; do
  if [ -d "$p" ]; then ls "$p" >/dev/null 2>&1 && echo "LISTED $p"
  else head -c 1 "$p" >/dev/null 2>&1 && echo "READ $p"
  fi
done
true
"""


@pytest.fixture(scope="module")
def instance() -> Iterator[Path]:
    # The parent is world-traversable on purpose, as /srv or /var/lib would be: the instance must protect itself.
    parent = Path(tempfile.mkdtemp(prefix="sde-perms-"))
    os.chmod(parent, 0o755)  # noqa: S103
    folder = parent / "instance"
    (parent / "config.json").write_text(json.dumps({"extracts": {"demo_patients": 400}}))
    env = {**os.environ, "SDE_INSTANCE_DIR": str(folder), "SDE_ENV": "development",
           "SDE_CONFIG": str(parent / "config.json"), "PYTHONPATH": str(REPO), "SDE_DATABASE_URL": ""}
    env.pop("SDE_DATABASE_URL")
    # The umask a service manager or a login shell typically leaves (022), not a kind one.
    seeded = subprocess.run([sys.executable, "-c", "import os, sys; os.umask(0o022); from gateway.cli import main; "
                             "sys.argv = ['sde', 'demo', '--seed-only']; main()"],
                            env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert seeded.returncode == 0, seeded.stderr[-2000:]
    from gateway.workspaces import hub_process

    old = dict(os.environ)
    os.environ.update({"SDE_INSTANCE_DIR": str(folder), "SDE_CONFIG": str(parent / "config.json")})
    try:
        hub_process.prepare_folders(load_settings())
    finally:
        os.environ.clear()
        os.environ.update(old)
    yield folder
    shutil.rmtree(parent, ignore_errors=True)


def everything_in(folder: Path) -> list[Path]:
    found = [folder]
    for dirpath, dirnames, filenames in os.walk(folder):
        found.extend(Path(dirpath) / name for name in (*dirnames, *filenames))
    return found


def test_another_local_account_reads_nothing_of_the_instance(instance: Path) -> None:
    paths = everything_in(instance)
    names = {p.relative_to(instance).parts[0] for p in paths if p != instance}
    assert {"londonsde.sqlite3", "keys", "source", "extracts"} <= names, names
    assert any(p.suffix == ".parquet" and "extracts" in p.parts for p in paths)  # a built extract is there
    probe = subprocess.run(["setpriv", f"--reuid={OUTSIDER_UID}", f"--regid={OUTSIDER_UID}", "--clear-groups",
                            "sh", "-c", PROBE, "probe", *map(str, paths)], capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.splitlines() == []


def test_secrets_and_the_database_are_owner_only(instance: Path) -> None:
    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(instance) == 0o700
    assert mode(instance / "londonsde.sqlite3") == 0o600
    assert not (instance / "secret_key").exists() or mode(instance / "secret_key") == 0o600
    assert mode(instance / "keys") == 0o700
    assert all(mode(key) == 0o600 for key in (instance / "keys").iterdir())
    for folder in ("source", "extracts", "homes", "hub"):
        assert mode(instance / folder) == 0o700, folder
    source_files = [p for p in everything_in(instance / "source") if p.is_file()]
    assert source_files and all(mode(p) & 0o077 == 0 for p in source_files)
