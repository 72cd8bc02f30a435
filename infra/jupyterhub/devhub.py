"""Run a throw-away londonsde hub (hub + proxy) in a temp directory: for tests and the benchmark.

`DevHub` starts ``jupyterhub -f infra/jupyterhub/jupyterhub_config.py`` as a subprocess with its
settings in LONDONSDE_HUB_* variables, free loopback ports, its own bridge name and subnet, and
undoes everything on exit: the hub (which stops its servers), then any leftover namespaces,
cgroups, nftables table and bridge that carry this hub's bridge name.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import requests

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from hub_settings import load_settings, release_host_claim  # noqa: E402
from sandbox_spawner import CGROUP_CONTROLLERS, CGROUP_ROOT, cleanup_instance  # noqa: E402

REPO_ROOT = HERE.parents[1]
CONFIG = HERE / "jupyterhub_config.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def default_singleuser_prefix() -> Path:
    return Path(os.environ.get("LONDONSDE_SINGLEUSER_PREFIX", "/opt/londonsde/singleuser"))


def missing_facilities(singleuser_prefix: Path) -> list[str]:
    """What this machine lacks for the sandbox spawner (empty list: all there)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("must run as root")
    for tool in ("bwrap", "nft", "ip", "nsenter", "setpriv", "bridge"):
        if shutil.which(tool) is None:
            missing.append(f"{tool} not installed")
    for controller in CGROUP_CONTROLLERS:
        if not os.access(CGROUP_ROOT / controller, os.W_OK):
            missing.append(f"cgroup v1 {controller} controller not writable")
    if not (singleuser_prefix / "bin" / "jupyterhub-singleuser").exists():
        missing.append(f"single-user env missing: run infra/jupyterhub/build_singleuser_env.sh {singleuser_prefix}")
    return missing


ROOT_PREFIX = "londonsde-hub-"
HOST_ATTEMPTS = 3  # draws of ports, bridge, subnet and uids before a refused hub is reported


class HostRefused(RuntimeError):
    """The hub exited because another instance on this host holds a resource it drew."""

OWNER_FILE = "devhub.json"  # who made the hub and what it holds on the host, for sweep_orphaned_hubs


def _started(pid: int) -> str | None:
    """The process's start time (field 22 of /proc/<pid>/stat), or None if it is gone: with the pid, it names one
    process even after the pid is reused."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int | None, started: str | None) -> bool:
    return pid is not None and started is not None and _started(pid) == started


def _made_by_me(path: Path, kind: Any) -> bool:
    """``path`` is of ``kind`` (not a link to one), this account's, and nobody else may write it."""
    try:
        found = path.lstat()
    except OSError:
        return False
    return kind(found.st_mode) and found.st_uid == os.geteuid() and not found.st_mode & 0o022


def sweep_orphaned_hubs(tmp: Path | None = None) -> list[Path]:
    """Undo the hubs of test runs that died without their clean-up (a pytest killed with SIGKILL): stop the hub
    and its proxy if they still run, remove its sandboxes, bridge and firewall table, forget its claim in the host
    registry, and delete its folder. Without this, the registry keeps the dead hub's ports, and a later hub that
    draws one of them from the system's free ports refuses to start. A hub whose owner still runs is left alone,
    and so is a folder without an owner file, or one (or an owner file) another account made: the temporary folder
    is everyone's, and root must not kill the processes, nor tear down the bridge, homes and claim, that a file
    planted there names. Returns the folders swept."""
    swept = []
    for root in sorted((tmp or Path(tempfile.gettempdir())).glob(f"{ROOT_PREFIX}*")):
        if not (_made_by_me(root, stat.S_ISDIR) and _made_by_me(root / OWNER_FILE, stat.S_ISREG)):
            continue
        try:
            owner = json.loads((root / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if _alive(owner.get("owner_pid"), owner.get("owner_started")):
            continue
        for pid_key, started_key in (("hub_pid", "hub_started"), ("proxy_pid", "proxy_started")):
            if _alive(owner.get(pid_key), owner.get(started_key)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(owner[pid_key], signal.SIGKILL)
        cleanup_instance(owner["bridge"], owner["homes_root"])
        release_host_claim(Path(owner["registry"]), Path(owner["state_dir"]))
        shutil.rmtree(root, ignore_errors=True)
        swept.append(root)
    return swept


class DevHub:
    """A real hub in a temp dir. Use as a context manager; see `settings_env` for the knobs."""

    def __init__(
        self,
        spawner: str = "sandbox",
        root: Path | None = None,
        singleuser_prefix: Path | None = None,
        cull_idle_seconds: int = 0,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.spawner = spawner
        self._own_root = root is None
        if os.geteuid() == 0:  # what a killed earlier run left would hold ports (its clean-up needs root)
            sweep_orphaned_hubs()
        self.root = Path(tempfile.mkdtemp(prefix=ROOT_PREFIX)) if root is None else root
        # The sandbox needs no way in (root binds the extract and home for it): private, as in production. The
        # plain baseline spawner runs the server straight as the workspace uid, which must traverse to its home.
        folder_mode = 0o700 if spawner == "sandbox" else 0o755
        root_mode = 0o711 if spawner == "sandbox" else 0o755  # traversable to run/, like /run/londonsde
        self.state_dir = self.root / "state"
        self.extracts_root = self.root / "extracts"
        self.homes_root = self.root / "homes"
        self.runtime_root = self.root / "run"
        os.chmod(self.root, root_mode)
        for path in (self.extracts_root, self.homes_root):
            path.mkdir(parents=True, exist_ok=True)
            os.chmod(path, folder_mode)
        self.runtime_root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.runtime_root, 0o755)  # noqa: S103 (the workspace uid reads its passwd file there)
        self.uid_count = 1000
        self._draw_host_resources()
        self.singleuser_prefix = singleuser_prefix or default_singleuser_prefix()
        self.cull_idle_seconds = cull_idle_seconds
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.root / "hub.log"
        self.registry = load_settings(self.settings_env()).host_registry
        self._record_owner()

    def _draw_host_resources(self) -> None:
        """Free loopback ports, a bridge name, a /26 of 10.213.1.0-10.213.255.255 and a uid range of 1000 far above
        the default's, at random, so hubs of tests running side by side (and the host registry's check) rarely
        collide; `start` draws again when the registry refuses them."""
        self.public_port = free_port()
        self.hub_port = free_port()
        self.proxy_api_port = free_port()
        self.bridge = f"sdet{secrets.token_hex(3)}"
        self.subnet = f"10.213.{secrets.randbelow(255) + 1}.{64 * secrets.randbelow(4)}/26"
        self.uid_base = 100_000 + 1000 * secrets.randbelow(100_000)

    def _record_owner(self) -> None:
        """Write who made this hub and what it holds on the host (sweep_orphaned_hubs reads it)."""
        owner: dict[str, Any] = {
            "owner_pid": os.getpid(), "owner_started": _started(os.getpid()), "bridge": self.bridge,
            "homes_root": str(self.homes_root), "state_dir": str(self.state_dir), "registry": str(self.registry)}
        if self.proc is not None:
            owner.update(hub_pid=self.proc.pid, hub_started=_started(self.proc.pid))
            with contextlib.suppress(FileNotFoundError, ValueError):
                proxy = int((self.state_dir / "proxy.pid").read_text().strip())
                owner.update(proxy_pid=proxy, proxy_started=_started(proxy))
        (self.root / OWNER_FILE).write_text(json.dumps(owner))
        os.chmod(self.root / OWNER_FILE, 0o644)  # whatever the umask: the sweep trusts no file others may write

    # -- settings ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.public_port}"

    @property
    def bridge_ip(self) -> str:
        return str(next(ipaddress.IPv4Network(self.subnet).hosts()))

    def settings_env(self) -> dict[str, str]:
        return {
            "LONDONSDE_HUB_STATE_DIR": str(self.state_dir),
            "LONDONSDE_HUB_SPAWNER": self.spawner,
            "LONDONSDE_HUB_PUBLIC_PORT": str(self.public_port),
            "LONDONSDE_HUB_HUB_PORT": str(self.hub_port),
            "LONDONSDE_HUB_PROXY_API_PORT": str(self.proxy_api_port),
            "LONDONSDE_HUB_EXTRACTS_ROOT": str(self.extracts_root),
            "LONDONSDE_HUB_HOMES_ROOT": str(self.homes_root),
            "LONDONSDE_HUB_RUNTIME_ROOT": str(self.runtime_root),
            "LONDONSDE_HUB_SINGLEUSER_PREFIX": str(self.singleuser_prefix),
            "LONDONSDE_HUB_BRIDGE": self.bridge,
            "LONDONSDE_HUB_SUBNET": self.subnet,
            "LONDONSDE_HUB_UID_BASE": str(self.uid_base),
            "LONDONSDE_HUB_UID_COUNT": str(self.uid_count),
            "LONDONSDE_HUB_CULL_IDLE_SECONDS": str(self.cull_idle_seconds),
            "LONDONSDE_HUB_LOG_LEVEL": "INFO",
            **self.extra_env,
        }

    def read_secret(self, name: str) -> str:
        return (self.state_dir / name).read_text().strip()

    @property
    def gateway_token(self) -> str:
        return self.read_secret("gateway-token")

    @property
    def ticket_secret(self) -> bytes:
        return self.read_secret("ticket-secret").encode("ascii")

    def proxy_routes(self) -> dict[str, Any]:
        token = self.read_secret("proxy-token")
        response = requests.get(
            f"http://127.0.0.1:{self.proxy_api_port}/api/routes",
            headers={"Authorization": f"token {token}"},
            timeout=5,
        )
        response.raise_for_status()
        return dict(response.json())

    def make_extract(self, project_id: str, files: dict[str, str]) -> Path:
        """An extract directory as the gateway's builder leaves it (read-only, inside a private folder)."""
        extract = self.extracts_root / project_id / "current"
        extract.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (extract / name).write_text(text)
            os.chmod(extract / name, 0o444)
        os.chmod(extract.parent, 0o700 if self.spawner == "sandbox" else 0o755)
        os.chmod(extract, 0o555)  # noqa: S103 (as gateway.extracts.storage.make_read_only)
        return extract

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, timeout: float = 90.0) -> DevHub:
        """Start the hub and wait until it answers. A hub of another test running beside this one may hold a
        resource drawn at random (one /26 in 1,020, say): the registry refuses it and the hub exits, and this draws
        again, up to HOST_ATTEMPTS times."""
        for attempt in range(1, HOST_ATTEMPTS + 1):
            try:
                return self._start_once(timeout)
            except HostRefused:
                if attempt == HOST_ATTEMPTS:
                    raise
                self._draw_host_resources()
                self._record_owner()
        raise AssertionError("unreachable")

    def _start_once(self, timeout: float) -> DevHub:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LONDONSDE_HUB_")}
        env.update(self.settings_env())
        env["PYTHONPATH"] = str(REPO_ROOT)
        log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop via the process)
        logged_before = log.tell()

        def reset_signals() -> None:
            # A parent that ignores SIGINT (e.g. a background shell) would make every child
            # ignore it too, and the hub's services would then stop only after long timeouts.
            signal.signal(signal.SIGINT, signal.SIG_DFL)

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(CONFIG)],
            cwd=self.root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=reset_signals,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code, self.proc = self.proc.returncode, None
                with open(self.log_path, "rb") as written:
                    written.seek(logged_before)
                    if b"HostConflict" in written.read():
                        raise HostRefused(f"the host registry refused this hub's resources; see {self.log_path}")
                raise RuntimeError(f"hub exited with {code}; see {self.log_path}")
            try:
                if requests.get(f"{self.url}/hub/api/", timeout=1).status_code == 200:
                    self._record_owner()  # with the hub's and the proxy's pids, for a sweep after a crash
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"hub did not come up in {timeout}s; see {self.log_path}")

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the hub (it stops its servers and proxy); kill it if it takes too long."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self._kill_pidfile("proxy.pid")

    def crash(self) -> None:
        """SIGKILL the hub (servers and proxy keep running, as after a hub crash).

        Its managed services (the idle culler) are killed too, so they do not linger orphaned.
        """
        if self.proc is None:
            return
        services = [pid for pid in _children(self.proc.pid) if b"jupyterhub_idle_culler" in _cmdline(pid)]
        self.proc.kill()
        self.proc.wait()
        self.proc = None
        for pid in services:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _kill_pidfile(self, name: str) -> None:
        try:
            pid = int((self.state_dir / name).read_text().strip())
            os.kill(pid, signal.SIGKILL)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            pass

    def cleanup_host(self) -> None:
        """Remove whatever of this hub's sandboxes the kernel still holds. Safe to repeat."""
        cleanup_instance(self.bridge, self.homes_root)

    def __enter__(self) -> DevHub:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.stop()
        finally:
            self.cleanup_host()
            # a folder kept to read after a failure must not keep the ports: the next hub may draw one of them
            release_host_claim(self.registry, self.state_dir)
            if self._own_root and exc_type is None and not os.environ.get("LONDONSDE_KEEP_HUB_DIR"):
                shutil.rmtree(self.root, ignore_errors=True)
