"""The gateway as it runs in production, in a throwaway place: a fresh PostgreSQL database and instance folder,
`sde` commands and `sde serve` (gunicorn) as child processes, and optionally a private PostgreSQL server.

Shared by the live-server tests and the `bench/` scripts (load, faults). Everything started through a
sandbox is killed, and its database dropped, when the block ends, even on error.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
SDE = [PYTHON, "-m", "gateway.cli"]
HOST = "127.0.0.1"
DEMO_PASSWORD = "demo-password"  # the documented demo password (gateway/demo.py)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL (postgresql+psycopg://) as psycopg and the PostgreSQL tools spell it."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def admin_sql(admin_url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(libpq_url(admin_url), autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


@dataclass
class Sandbox:
    """A fresh database and instance folder; every child started through it is killed on close."""

    name: str
    workdir: Path
    env: dict[str, str]
    admin_url: str
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*SDE, *args], env=self.env, cwd=REPO, capture_output=True, text=True)
        if check and result.returncode != 0:
            raise RuntimeError(f"sde {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
        return result

    def start(self, argv: list[str], log_name: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = (self.workdir / log_name).open("ab")
        child = subprocess.Popen(argv, env={**self.env, **(extra_env or {})}, cwd=REPO, stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True)
        self.children.append(child)
        return child

    def kill(self, child: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
        if child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, sig)
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()

    def serve(self, workers: int = 2, log_name: str = "gateway.log") -> tuple[subprocess.Popen[bytes], str]:
        """`sde serve` (gunicorn, gthread) on a free loopback port; returns the server and its base URL."""
        port = free_port()
        server = self.start([*SDE, "serve", "--host", HOST, "--port", str(port)], log_name,
                            {"SDE_WORKERS": str(workers)})
        base = f"http://{HOST}:{port}"
        wait_http(f"{base}/api/v1/openapi.json", server)
        return server, base

    def log(self, log_name: str = "gateway.log") -> str:
        path = self.workdir / log_name
        return path.read_text(errors="replace") if path.exists() else ""

    @property
    def database_url(self) -> str:
        return self.env["SDE_DATABASE_URL"]


@contextlib.contextmanager
def sandbox(prefix: str, admin_url: str, config: dict[str, Any] | None = None) -> Iterator[Sandbox]:
    """A new database on the server of ``admin_url`` (a superuser URL) and a temporary instance folder."""
    name = f"{prefix}_{os.getpid()}_{time.time_ns() % 10**9}"
    workdir = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
    base = libpq_url(admin_url).rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    env = {**os.environ, "SDE_ENV": "development", "SDE_INSTANCE_DIR": str(workdir / "instance"),
           "SDE_DATABASE_URL": f"{base}/{name}", "PYTHONPATH": str(REPO)}
    env.pop("SDE_CONFIG", None)
    if config:
        (workdir / "config.json").write_text(json.dumps(config))  # JSON is YAML
        env["SDE_CONFIG"] = str(workdir / "config.json")
    admin_sql(admin_url, f'CREATE DATABASE "{name}"')
    box = Sandbox(name, workdir, env, admin_url)
    try:
        yield box
    finally:
        for child in reversed(box.children):
            box.kill(child)
        try:
            with contextlib.suppress(Exception):  # the server may be stopped on purpose (fault tests)
                admin_sql(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


def wait_http(url: str, child: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"server for {url} exited with {child.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - loopback URL built here
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


# --- a private PostgreSQL server, which a test may stop and start (never the shared one) -------------------------

def postgres_bindir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise RuntimeError("PostgreSQL's initdb is not installed: run `make test`, which installs PostgreSQL")
    return Path(initdb).resolve().parent


@dataclass
class PrivatePostgres:
    """A PostgreSQL cluster in a temporary folder on its own port (trust authentication, loopback only).

    initdb refuses to run as root, so as root the cluster belongs to the ``postgres`` system account."""

    root: Path
    port: int
    bindir: Path
    user: str | None  # the account the server runs as, when it is not the current one

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/postgres"

    def _tool(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([str(self.bindir / args[0]), *args[1:]], capture_output=True, text=True,
                                user=self.user, cwd=self.root, timeout=120)
        if check and result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({result.returncode}): {result.stderr[-2000:]}")
        return result

    def start(self) -> None:
        self._tool("pg_ctl", "start", "-w", "-D", str(self.datadir), "-l", str(self.root / "postgres.log"),
                   "-o", f"-p {self.port} -k {self.root} -c listen_addresses={HOST}")

    def stop(self, mode: str = "immediate") -> None:
        self._tool("pg_ctl", "stop", "-w", "-m", mode, "-D", str(self.datadir))

    def running(self) -> bool:
        return self._tool("pg_ctl", "status", "-D", str(self.datadir), check=False).returncode == 0

    def log(self) -> str:
        path = self.root / "postgres.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    user = "postgres" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="sde-pg-"))
    if user is not None:
        account = pwd.getpwnam(user)
        os.chown(root, account.pw_uid, account.pw_gid)
    server = PrivatePostgres(root, free_port(), postgres_bindir(), user)
    try:
        server._tool("initdb", "--no-sync", "--auth=trust", "--username=postgres", "--encoding=UTF8",
                     "--no-locale", "-D", str(server.datadir))
        server.start()
        yield server
    finally:
        if server.datadir.exists() and server.running():
            with contextlib.suppress(Exception):
                server.stop("fast")
        shutil.rmtree(root, ignore_errors=True)


def child_pids(parent: int) -> set[int]:
    """The processes whose parent is ``parent`` (e.g. gunicorn's workers), from /proc."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended meanwhile
        if int(fields[1]) == parent:
            found.add(int(stat.parent.name))
    return found
