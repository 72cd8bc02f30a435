"""Spawners for londonsde workspaces on one machine, without containers.

`SandboxSpawner` runs each workspace (one per researcher per project, server name = project id)
as an unprivileged uid inside:

* its own network namespace, joined by a veth to a host bridge whose port is isolated from
  the other sandboxes; the nftables table on the bridge (see `ensure_bridge`) lets the
  namespace open connections only to the hub's API port, and the namespace has no default route;
* bubblewrap with new user/pid/ipc/uts namespaces, an empty root holding read-only binds of
  /usr and the single-user venv, the project's extract read-only at /data, the researcher's
  private per-project home (writable) at /home/<user>, and a fresh /tmp;
* cgroup v1 memory, cpu and pids limits from the size tier (gateway.workspaces.spec.TIERS).

`PlainLocalSpawner` is the unsandboxed baseline (JupyterHub's LocalProcessSpawner, changed only
to run as the same mapped uid with the same home), used by the spawn benchmark.

Both read the gateway's `user_options` (project_id, extract_path, tier) through
`gateway.workspaces.spec`, and check that the extract lies under `extracts_root`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from subprocess import Popen
from typing import Any

import home_quota
from jupyterhub.spawner import LocalProcessSpawner
from sandbox_seccomp import filter_fd
from traitlets import Integer, Unicode

from gateway.workspaces.spec import (
    SizeTier,
    SpecError,
    WorkspaceSpec,
    adopt_legacy_home,
    check_project_id,
    check_username,
    spec_from_user_options,
    workspace_home,
)

NETNS_DIR = Path("/run/netns")
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_CONTROLLERS = ("memory", "cpu", "pids")
STAGE_DATA, STAGE_HOME, STAGE_TEAM = "data", "home", "team"  # mount points in the sandbox's runtime folder
# Run by root in the sandbox's private mount namespace: bind the extract, the home and the team folder, then exec
# the rest.
STAGE_SCRIPT = ('set -e; mount --bind -o ro "$1" "$2"; mount --bind "$3" "$4"; mount --bind "$5" "$6"; shift 6; '
                'exec "$@"')
TEAM_INSIDE = "team"  # the team folder's place in the home, as the sandbox sees it
SERVER_PORT = 8888  # inside the namespace every server may use the same port
CFS_PERIOD_US = 100_000
# How the server starts inside the sandbox: a Python that first makes itself non-dumpable (PR_SET_DUMPABLE 0), then
# runs jupyterhub-singleuser in the same process. The server is where the browser egress rules are kept and counted,
# and its kernels and terminals run as the same uid: without this, any of them could open /proc/<server>/mem and
# write the server's memory (or read its environment and file descriptors), which is what refusing ptrace and
# process_vm_writev is meant to stop. Kernels it starts are dumpable again after their exec, as ordinary programs.
# -I: isolated mode, so nothing is imported from the current folder (the home) or from PYTHON* variables.
SERVER_LAUNCHER = (
    "import ctypes, sys\n"
    "if ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0) != 0:  # PR_SET_DUMPABLE, 0\n"
    "    sys.exit('londonsde: could not make the workspace server non-dumpable')\n"
    "sys.argv[0] = 'jupyterhub-singleuser'\n"
    "from jupyterhub.singleuser import main\n"
    "sys.exit(main())\n"
)
# What a sandbox writes to its stdout and stderr (the server's log, and whatever its kernels echo there: ipykernel
# copies every subprocess's and C library's output to the stream it inherited, so `!head /data/x.csv` would land
# there) reaches the hub through a pipe, never the hub's own log file: logged line by line under the workspace's
# name while the server starts (the spawn's errors, for the operator), at most OUTPUT_LOG_BYTES of it; after that it
# is read and dropped, at most OUTPUT_READ_BYTES_PER_SECOND, so a flood neither fills the host's disk nor busies
# the hub (a writer past the rate waits on the pipe, in its own sandbox).
OUTPUT_LOG_BYTES = 256 * 1024
OUTPUT_LINE_CHARS = 2000
OUTPUT_READ_BYTES_PER_SECOND = 2 * 1024 * 1024  # above what the notebook itself shows (1 MB/s)


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), check=check, capture_output=True, text=True)


# --------------------------------------------------------------------------------------------
# uids: one per researcher, stable across restarts
# --------------------------------------------------------------------------------------------


class UidMap:
    """Maps hub usernames to host uids from a reserved range, kept in a JSON file.

    No /etc/passwd entry is needed: the sandbox gets its own passwd file naming only this uid.
    """

    def __init__(self, path: Path, base: int, count: int) -> None:
        self.path, self.base, self.count = path, base, count

    def uid_for(self, username: str) -> int:
        return self._id_for(check_username(username))

    def gid_for_project(self, project_id: str) -> int:
        """The group of a project's team folder, from the same range and table as the uids, so it is never the
        private group (gid = uid) of any workspace user. 'project:' cannot begin a username."""
        return self._id_for(f"project:{check_project_id(project_id)}")

    def _id_for(self, username: str) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            table: dict[str, int] = json.loads(self.path.read_text()) if self.path.exists() else {}
            if username not in table:
                if len(table) >= self.count:
                    raise RuntimeError("workspace uid range exhausted")
                table[username] = self.base + len(table)
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps(table, indent=1, sort_keys=True))
                tmp.replace(self.path)
            return table[username]


# --------------------------------------------------------------------------------------------
# shared workspace logic
# --------------------------------------------------------------------------------------------


def jupyter_paths_env(singleuser_prefix: str, home: str) -> dict[str, str]:
    """Jupyter takes its settings from the workspace env only, never from files in the researcher's home.

    Without this, a kernel could write ~/.jupyter/jupyter_server_config.json turning terminals back on or the
    lockdown and security-tier extensions off, and have it obeyed at the next start (the user's config dir is
    Jupyter's highest-priority source), or shadow an installed JupyterLab extension with one of its own in
    ~/.local/share/jupyter. So the user config dir is an empty, read-only folder of the env, the env's own data
    paths come first, and only JupyterLab's own UI settings and layouts stay in the home.
    """
    return {
        "JUPYTER_CONFIG_DIR": f"{singleuser_prefix}/etc/jupyter-user",
        "JUPYTER_PREFER_ENV_PATH": "1",
        "JUPYTERLAB_SETTINGS_DIR": f"{home}/.jupyter/lab/user-settings",
        "JUPYTERLAB_WORKSPACES_DIR": f"{home}/.jupyter/lab/workspaces",
    }


# Inherited variables that would add or move a Jupyter settings path: never passed on to a workspace.
JUPYTER_PATH_VARIABLES = ("JUPYTER_CONFIG_PATH", "JUPYTER_PATH", "JUPYTER_DATA_DIR", "JUPYTER_NO_CONFIG",
                          "JUPYTER_PLATFORM_DIRS", "JUPYTERLAB_DIR")


def exited(pid: int) -> bool:
    """The process has ended, reaped or not. A zombie still answers signal 0: after a hub crash a workspace's
    process belongs to init, which may reap it late, and a restarted hub that asked only `kill(pid, 0)` took the
    dead workspace for a running one and left its sandbox (namespace, cgroups, firewall rules) in place."""
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in {"Z", "X"}


class WorkspaceSpawnerBase(LocalProcessSpawner):
    """What both local spawners share: options, uid, home preparation."""

    async def _signal(self, sig: int) -> bool:
        """Whether the server's process still exists (after sending ``sig``); a zombie has exited (see `exited`)."""
        if exited(self.pid):
            return False
        return bool(await super()._signal(sig))

    extracts_root = Unicode("/srv/londonsde/extracts", help="Extracts must lie under this.").tag(config=True)
    homes_root = Unicode("/srv/londonsde/homes", help="Homes live at <root>/<project>/<user>.").tag(config=True)
    notebooks_template = Unicode("", help="Copied into a home the first time it is created.").tag(config=True)
    state_dir = Unicode("/var/lib/londonsde/hub", help="Hub state directory (uid map).").tag(config=True)
    uid_base = Integer(20000, help="First uid of the workspace range.").tag(config=True)
    uid_count = Integer(10000, help="Size of the workspace uid range.").tag(config=True)
    singleuser_prefix = Unicode("/opt/londonsde/singleuser", help="The single-user venv.").tag(config=True)

    def workspace(self) -> tuple[WorkspaceSpec, Path]:
        """Validate user_options; return the spec and the resolved extract directory."""
        spec = spec_from_user_options(dict(self.user_options or {}), self.name)
        root = Path(self.extracts_root).resolve()
        extract = Path(spec.extract).resolve()
        if not extract.is_relative_to(root) or extract == root:
            raise SpecError(f"extract_path must be under {root}")
        if not extract.is_dir():
            raise SpecError(f"extract {extract} does not exist")
        return spec, extract

    def uid_map(self) -> UidMap:
        return UidMap(Path(self.state_dir) / "uids.json", self.uid_base, self.uid_count)

    def workspace_uid(self) -> int:
        return self.uid_map().uid_for(self.user.name)

    def prepare_home(self, spec: WorkspaceSpec, uid: int) -> Path:
        """Create the private home (and outputs/); seed it from the template the first time."""
        home = workspace_home(self.homes_root, self.user.name, spec.project_id)
        if spec.legacy_home:
            adopt_legacy_home(Path(self.homes_root), spec.legacy_home, self.user.name, spec.project_id, shared=False)
        project_dir = home.parent
        project_dir.mkdir(parents=True, exist_ok=True)
        # Traversable, not listable: a uid reaches only the home it is told about (its own, 0700).
        os.chmod(self.homes_root, 0o711)  # noqa: S103
        os.chmod(project_dir, 0o711)  # noqa: S103
        if not home.exists():
            home.mkdir(mode=0o700)
            template = Path(self.notebooks_template) if self.notebooks_template else None
            if template is not None and template.is_dir():
                shutil.copytree(
                    template, home, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
                )
        (home / "outputs").mkdir(exist_ok=True)
        for path in [home, *home.rglob("*")]:
            if path.is_symlink():
                continue
            os.chown(path, uid, uid)
        os.chmod(home, 0o700)
        return home

    def workspace_env(self, home_inside: str, spec: WorkspaceSpec | None = None) -> dict[str, str]:
        env = self.get_env()
        for key in ("PYTHONPATH", "VIRTUAL_ENV", "LD_LIBRARY_PATH", "CONDA_ROOT", "CONDA_DEFAULT_ENV",
                    *JUPYTER_PATH_VARIABLES):
            env.pop(key, None)
        env.update(
            {
                "HOME": home_inside,
                "USER": self.user.name,
                "SHELL": "/bin/bash",
                "LANG": "C.UTF-8",
                "PATH": f"{self.singleuser_prefix}/bin:/usr/local/bin:/usr/bin:/bin",
                **jupyter_paths_env(self.singleuser_prefix, home_inside),
                **(spec.environment() if spec is not None else {}),
            }
        )
        return env

    def user_env(self, env: dict[str, str]) -> dict[str, str]:
        # LocalProcessSpawner looks the user up in /etc/passwd; workspace users are not there.
        return env

    async def wait_until_listening(self, ip: str, port: int, timeout: float) -> bool:
        """Return True once the server accepts connections (False after `timeout`); raise at once if its process
        exits.

        The hub's own readiness check backs off exponentially (0.2 s, 0.4 s, 0.8 s, 1.6 s, ...),
        so a server ready at 1.5 s would be noticed only at about 3 s; polling here every 50 ms
        lets the hub's first check succeed. Both workspace spawners do this, so the benchmark
        compares like with like.
        """
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self._log_name} exited with status {self.proc.returncode} while starting")
            try:
                _reader, writer = await asyncio.open_connection(ip, port)
            except OSError:
                if asyncio.get_running_loop().time() > deadline:
                    return False  # let the hub's own timeout report it
                await asyncio.sleep(0.05)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return True


class OutputRelay:
    """Drains a sandbox's stdout/stderr pipe in the hub's event loop: see OUTPUT_LOG_BYTES above."""

    def __init__(self, fd: int, log: Any, name: str) -> None:
        self.fd, self.log, self.name = fd, log, name
        self.logging = True  # until the server is up (stop_logging) or the allowance is spent
        self.logged = self.dropped = 0
        self._partial = b""
        self._window_start, self._window_bytes = time.monotonic(), 0
        self._loop = asyncio.get_running_loop()
        self._resume: asyncio.TimerHandle | None = None
        os.set_blocking(fd, False)
        self._loop.add_reader(fd, self._readable)

    def drain(self) -> None:
        """Log what is waiting in the pipe now (a server that failed to start: its last words)."""
        while self.fd >= 0 and self.logging:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            self._take(chunk)
        self._flush_partial()

    def stop_logging(self) -> None:
        if self.logging:
            self._flush_partial()
            self.logging = False

    def close(self) -> None:
        if self.fd < 0:
            return
        if self._resume is not None:
            self._resume.cancel()
        self._loop.remove_reader(self.fd)
        os.close(self.fd)
        self.fd = -1
        if self.dropped:
            self.log.info("workspace %s: %d bytes of later output not logged", self.name, self.dropped)

    def _readable(self) -> None:
        try:
            chunk = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._flush_partial()
            self.close()
            return
        if self.logging:
            self._take(chunk)
        else:
            self.dropped += len(chunk)
        now = time.monotonic()
        if now - self._window_start >= 1.0:
            self._window_start, self._window_bytes = now, 0
        self._window_bytes += len(chunk)
        if self._window_bytes >= OUTPUT_READ_BYTES_PER_SECOND:  # wait for the next second before reading on
            self._loop.remove_reader(self.fd)
            self._resume = self._loop.call_later(max(0.0, 1.0 - (now - self._window_start)), self._resume_reading)

    def _resume_reading(self) -> None:
        self._resume = None
        if self.fd >= 0:
            self._window_start, self._window_bytes = time.monotonic(), 0
            self._loop.add_reader(self.fd, self._readable)

    def _take(self, chunk: bytes) -> None:
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > OUTPUT_LINE_CHARS:
            lines.append(self._partial)
            self._partial = b""
        for line in lines:
            self._log_line(line)

    def _flush_partial(self) -> None:
        if self._partial:
            self._log_line(self._partial)
            self._partial = b""

    def _log_line(self, raw: bytes) -> None:
        if not self.logging:
            self.dropped += len(raw)
            return
        text = raw.decode("utf-8", "replace")[:OUTPUT_LINE_CHARS]
        # One log record per line, control characters escaped: a workspace cannot start a line of the hub's log.
        text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
        self.logged += len(text)
        if self.logged > OUTPUT_LOG_BYTES:
            self.logging = False
            self.dropped += len(raw)
            self.log.warning("workspace %s: output past %d bytes is not logged", self.name, OUTPUT_LOG_BYTES)
            return
        self.log.info("workspace %s: %s", self.name, text)


def make_traversable(folder: Path) -> None:
    """Let any uid pass through `folder` and the root-owned folders above it (pass, not list: 0711)."""
    for path in (folder, *folder.parents):
        info = path.stat()
        if path == Path("/") or info.st_uid != 0:
            return
        if info.st_mode & 0o011 != 0o011:
            os.chmod(path, (info.st_mode & 0o7777) | 0o711)  # noqa: S103 (pass through, not list)


def give_to(home: Path, uid: int) -> None:
    """Make everything in the home belong to `uid`, never following a link (run only while no sandbox runs).

    Skipped when the home's root already belongs to it: only a new, moved or renamed home needs the walk.
    """
    if home.stat().st_uid == uid:
        for child in home.iterdir():
            if child.lstat().st_uid != uid:
                break
        else:
            return
    os.lchown(home, uid, uid)
    for dirpath, dirnames, filenames in os.walk(home, followlinks=False):
        for name in (*dirnames, *filenames):
            os.lchown(os.path.join(dirpath, name), uid, uid)


def _drop_privileges(uid: int, home: str | None) -> Callable[[], None]:
    def preexec() -> None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        if home:
            os.chdir(home)

    return preexec


class PlainLocalSpawner(WorkspaceSpawnerBase):
    """Baseline: the single-user server as the mapped uid, no namespaces, no limits."""

    async def start(self) -> tuple[str, int]:
        spec, _extract = self.workspace()
        uid = self.workspace_uid()
        home = self.prepare_home(spec, uid)
        self._preexec_uid, self._preexec_home = uid, str(home)
        self._handover_env = spec.environment()
        self.cmd = [f"{self.singleuser_prefix}/bin/jupyterhub-singleuser"]
        ip, port = await super().start()
        await self.wait_until_listening(ip, port, timeout=self.start_timeout)
        return ip, port

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        home = getattr(self, "_preexec_home", None)
        if home:
            env["HOME"] = home
            env["PATH"] = f"{self.singleuser_prefix}/bin:/usr/bin:/bin"
            env.pop("VIRTUAL_ENV", None)
            for key in JUPYTER_PATH_VARIABLES:
                env.pop(key, None)
            env.update(jupyter_paths_env(self.singleuser_prefix, home))
        env.update(getattr(self, "_handover_env", {}))
        return env

    def make_preexec_fn(self, name: str) -> Callable[[], None]:
        return _drop_privileges(self._preexec_uid, self._preexec_home)


# --------------------------------------------------------------------------------------------
# the sandbox
# --------------------------------------------------------------------------------------------


def nft_ruleset(table: str, bridge: str, bridge_ip: str, hub_port: int) -> str:
    """The host firewall for one bridge: sandboxes may only open connections to the hub API."""
    return f"""
table inet {table} {{
    chain input {{
        type filter hook input priority -10; policy accept;
        iifname "{bridge}" ct state established,related accept
        iifname "{bridge}" ip daddr {bridge_ip} tcp dport {hub_port} ct state new accept
        iifname "{bridge}" counter drop
    }}
    chain forward {{
        type filter hook forward priority -10; policy accept;
        iifname "{bridge}" counter drop
        oifname "{bridge}" counter drop
    }}
}}
"""


def nft_table_name(bridge: str) -> str:
    return f"londonsde_{bridge}"


def ensure_bridge(bridge: str, subnet: str, hub_port: int) -> str:
    """Create the host bridge and its nftables table if missing (idempotent). Returns the bridge IP."""
    network = ipaddress.IPv4Network(subnet)
    bridge_ip = str(next(network.hosts()))
    if _run("ip", "link", "show", "dev", bridge, check=False).returncode != 0:
        _run("ip", "link", "add", "name", bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{bridge_ip}/{network.prefixlen}", "dev", bridge)
        _run("sysctl", "-qw", f"net.ipv6.conf.{bridge}.disable_ipv6=1", check=False)
    _run("ip", "link", "set", "dev", bridge, "up")
    table = nft_table_name(bridge)
    ruleset = nft_ruleset(table, bridge, bridge_ip, hub_port)
    # Replace the table atomically so a changed hub port takes effect.
    script = f"table inet {table}\ndelete table inet {table}\n{ruleset}"
    subprocess.run(["nft", "-f", "-"], input=script, check=True, capture_output=True, text=True)
    return bridge_ip


def remove_bridge(bridge: str) -> None:
    """Undo `ensure_bridge` (tests, uninstall). Namespaces on it must be gone first."""
    _run("nft", "delete", "table", "inet", nft_table_name(bridge), check=False)
    _run("ip", "link", "del", "dev", bridge, check=False)


def cleanup_instance(bridge: str, homes_root: str | Path) -> None:
    """Remove whatever one hub's sandboxes left in the kernel: processes, cgroups, namespaces, the firewall
    table, the bridge and the home mounts. For after the hub has stopped (`sde demo`, tests). Safe to repeat."""
    parent = f"londonsde-{bridge}"
    for controller in CGROUP_CONTROLLERS:
        base = CGROUP_ROOT / controller / parent
        if not base.exists():
            continue
        for child in base.iterdir():
            if child.is_dir():
                kill_cgroup(f"{parent}/{child.name}")
                with contextlib.suppress(OSError):
                    child.rmdir()
        with contextlib.suppress(OSError):
            base.rmdir()
    if NETNS_DIR.exists():
        for netns in NETNS_DIR.iterdir():
            if netns.name.startswith(f"{bridge}-"):
                _run("ip", "netns", "del", netns.name, check=False)
    remove_bridge(bridge)
    home_quota.unmount_all(homes_root)


@dataclass
class SandboxState:
    """Everything needed to tear a sandbox down, even from a restarted hub."""

    netns: str
    veth: str
    ip: str
    cgroup: str
    runtime_dir: str
    uid: int


def cgroup_dirs(cgroup: str) -> list[Path]:
    return [CGROUP_ROOT / controller / cgroup for controller in CGROUP_CONTROLLERS]


def create_cgroups(cgroup: str, tier: SizeTier) -> None:
    memory, cpu, pids = cgroup_dirs(cgroup)
    for path in (memory, cpu, pids):
        path.mkdir(parents=True, exist_ok=True)
    (memory / "memory.limit_in_bytes").write_text(str(tier.memory_bytes))
    memsw = memory / "memory.memsw.limit_in_bytes"
    if memsw.exists():  # no swapping past the limit either
        memsw.write_text(str(tier.memory_bytes))
    (cpu / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
    (cpu / "cpu.cfs_quota_us").write_text(str(int(tier.cpus * CFS_PERIOD_US)))
    (pids / "pids.max").write_text(str(tier.max_pids))


def cgroup_pids(cgroup: str) -> set[int]:
    found: set[int] = set()
    for path in cgroup_dirs(cgroup):
        try:
            found.update(int(line) for line in (path / "cgroup.procs").read_text().split())
        except FileNotFoundError:
            continue
    return found


def kill_cgroup(cgroup: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        pids = cgroup_pids(cgroup)
        if not pids or time.monotonic() > deadline:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def teardown(state: SandboxState) -> None:
    """Kill what is left, remove cgroups and the namespace (its veth goes with it). Idempotent."""
    kill_cgroup(state.cgroup)
    for path in cgroup_dirs(state.cgroup):
        try:
            path.rmdir()
        except FileNotFoundError:
            pass
        except OSError:
            time.sleep(0.1)
            path.rmdir()
    if (NETNS_DIR / state.netns).exists():
        _run("ip", "netns", "del", state.netns, check=False)
    _run("ip", "link", "del", "dev", state.veth, check=False)
    shutil.rmtree(state.runtime_dir, ignore_errors=True)


class SandboxSpawner(WorkspaceSpawnerBase):
    """One isolated workspace per (researcher, project). See the module docstring."""

    bridge = Unicode("sdebr0", help="Host bridge the sandboxes join.").tag(config=True)
    subnet = Unicode("10.213.0.0/24", help="Addresses for the bridge and the sandboxes.").tag(config=True)
    hub_api_port = Integer(8081, help="The only host port a sandbox may connect to.").tag(config=True)
    bwrap_path = Unicode("/usr/bin/bwrap").tag(config=True)
    runtime_root = Unicode(
        "/run/londonsde/sandboxes",
        help="Per-sandbox files the workspace uid must read (its passwd/group); not secret.",
    ).tag(config=True)

    sandbox: SandboxState | None = None
    output: OutputRelay | None = None

    # -- state ------------------------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        if self.sandbox is not None:
            state["sandbox"] = asdict(self.sandbox)
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        if "sandbox" in state:
            self.sandbox = SandboxState(**state["sandbox"])

    def clear_state(self) -> None:
        """Called when the server is gone (stopped, died, or found dead after a hub restart)."""
        if self.sandbox is not None:
            teardown(self.sandbox)
            self.sandbox = None
        if self.output is not None:
            self.output.close()
            self.output = None
        super().clear_state()

    # -- set-up -----------------------------------------------------------------------------

    def prepare_home(self, spec: WorkspaceSpec, uid: int) -> Path:
        """The home as its own ext4 of the tier's size (home_quota), in folders only root may enter."""
        home = workspace_home(self.homes_root, self.user.name, spec.project_id)
        if spec.legacy_home:  # a home made under the hub name of before 0014 moves, once, before it is mounted
            adopt_legacy_home(Path(self.homes_root), spec.legacy_home, self.user.name, spec.project_id, shared=False)
        for folder in (Path(self.homes_root), home.parent):
            folder.mkdir(parents=True, exist_ok=True)
            os.chmod(folder, 0o700)
        fresh = home_quota.ensure_mounted(self.homes_root, self.user.name, spec.project_id, home,
                                          spec.tier.disk_bytes, uid)
        template = Path(self.notebooks_template) if self.notebooks_template else None
        if fresh and template is not None and template.is_dir():
            shutil.copytree(template, home, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        outputs = home / "outputs"
        if not outputs.exists() and not outputs.is_symlink():
            outputs.mkdir()
        team = home / TEAM_INSIDE  # where the team folder is mounted: a plain folder, or bubblewrap cannot mount it
        if team.is_symlink() or (team.exists() and not team.is_dir()):
            team.rename(home / f"{TEAM_INSIDE}.moved-{time.time_ns()}")  # rename never follows the link
        if not team.exists():
            team.mkdir()
        give_to(home, uid)
        os.chmod(home, 0o700)
        return home

    @property
    def cgroup_parent(self) -> str:
        return f"londonsde-{self.bridge}"

    def _allocate_netns(self) -> tuple[str, str]:
        """Pick a free address; the namespace name encodes it, so the kernel is the ledger."""
        network = ipaddress.IPv4Network(self.subnet)
        taken = {p.name for p in NETNS_DIR.iterdir()} if NETNS_DIR.exists() else set()
        for index, address in enumerate(network.hosts()):
            if index == 0:
                continue  # the bridge's own address
            name = f"{self.bridge}-{index}"
            if name not in taken:
                _run("ip", "netns", "add", name)  # fails if someone raced us: spawn errors out
                return name, str(address)
        raise RuntimeError("no free sandbox address")

    def _make_network(self, netns: str, address: str) -> str:
        prefix = ipaddress.IPv4Network(self.subnet).prefixlen
        veth = "vs" + hashlib.sha256(netns.encode()).hexdigest()[:10]
        peer = "vp" + veth[2:]
        _run("ip", "link", "add", veth, "type", "veth", "peer", "name", peer, "netns", netns)
        _run("ip", "link", "set", "dev", veth, "master", self.bridge)
        _run("bridge", "link", "set", "dev", veth, "isolated", "on")
        _run("ip", "link", "set", "dev", veth, "up")
        _run("ip", "-n", netns, "link", "set", "dev", peer, "name", "eth0")
        _run("ip", "-n", netns, "addr", "add", f"{address}/{prefix}", "dev", "eth0")
        _run("ip", "-n", netns, "link", "set", "dev", "eth0", "up")
        _run("ip", "-n", netns, "link", "set", "dev", "lo", "up")
        return veth

    def _write_identity(self, runtime_dir: Path, uid: int, home_inside: str) -> None:
        """A passwd/group naming only this workspace's user (the host's are not visible)."""
        (runtime_dir / "passwd").write_text(
            f"root:x:0:0:root:/root:/usr/sbin/nologin\n"
            f"{self.user.name}:x:{uid}:{uid}:workspace:{home_inside}:/bin/bash\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        )
        (runtime_dir / "group").write_text(f"root:x:0:\n{self.user.name}:x:{uid}:\nnogroup:x:65534:\n")
        for name in ("passwd", "group"):
            os.chmod(runtime_dir / name, 0o644)

    def sandbox_command(self, state: SandboxState, extract: Path, home: Path, home_inside: str,
                        seccomp_fd: int, team: Path, team_gid: int) -> list[str]:
        venv = str(Path(self.singleuser_prefix).resolve())
        runtime = state.runtime_dir
        bwrap = [
            self.bwrap_path,
            "--die-with-parent",
            "--new-session",
            "--unshare-user",
            "--disable-userns",  # no nested user namespace, so no namespace in which the uid is root
            "--seccomp", str(seccomp_fd),  # the deny list of sandbox_seccomp, loaded just before exec
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--hostname", "workspace",
            "--cap-drop", "ALL",
            "--tmpfs", "/tmp",  # noqa: S108 (private tmpfs) first, so later binds are not hidden under it
            "--ro-bind", "/usr", "/usr",
            "--symlink", "usr/bin", "/bin",
            "--symlink", "usr/sbin", "/sbin",
            "--symlink", "usr/lib", "/lib",
            "--symlink", "usr/lib64", "/lib64",
            "--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache",
            "--ro-bind-try", "/etc/localtime", "/etc/localtime",
            "--ro-bind-try", "/etc/mime.types", "/etc/mime.types",
            # For the R kernel: R's settings (/usr/lib/R/etc links there) and the alternatives links by which R finds
            # its BLAS and LAPACK (links into /usr only).
            "--ro-bind-try", "/etc/R", "/etc/R",
            "--ro-bind-try", "/etc/alternatives", "/etc/alternatives",
            "--ro-bind", f"{runtime}/passwd", "/etc/passwd",
            "--ro-bind", f"{runtime}/group", "/etc/group",
            "--proc", "/proc",
            "--dev", "/dev",
            "--ro-bind", venv, venv,
            "--ro-bind", f"{runtime}/{STAGE_DATA}", "/data",
            "--bind", f"{runtime}/{STAGE_HOME}", home_inside,
            "--bind", f"{runtime}/{STAGE_TEAM}", f"{home_inside}/{TEAM_INSIDE}",
            "--chdir", home_inside,
            "--",
            f"{venv}/bin/python", "-I", "-c", SERVER_LAUNCHER,
            *self.get_args(),
        ]  # fmt: skip
        # The extract and the home lie in folders no other account may enter (the instance folder is 0700): root
        # binds them onto the sandbox's own staging points in a private mount namespace, which only this
        # sandbox sees, and bubblewrap (as the workspace uid) binds them on from there.
        return [
            "nsenter", f"--net={NETNS_DIR / state.netns}", "--",
            "unshare", "--mount", "--propagation", "private", "--",
            "sh", "-c", STAGE_SCRIPT, "stage", str(extract), f"{runtime}/{STAGE_DATA}", str(home),
            f"{runtime}/{STAGE_HOME}", str(team), f"{runtime}/{STAGE_TEAM}",
            # The project's group is the one supplementary group: it opens this project's team folder, no other.
            "setpriv", f"--reuid={state.uid}", f"--regid={state.uid}", f"--groups={team_gid}", "--no-new-privs",
            "--",
            *bwrap,
        ]  # fmt: skip

    async def start(self) -> tuple[str, int]:
        spec, extract = self.workspace()
        uid = self.workspace_uid()
        home = self.prepare_home(spec, uid)
        team_gid = self.uid_map().gid_for_project(spec.project_id)
        team = home_quota.ensure_team_mounted(self.homes_root, spec.project_id, spec.tier.disk_bytes, team_gid)
        home_inside = f"/home/{self.user.name}"
        runtime_root = Path(self.runtime_root) / self.bridge
        runtime_root.mkdir(parents=True, exist_ok=True)
        make_traversable(runtime_root)  # the uid reads its passwd file there (the hub's umask is 077)
        runtime_dir = runtime_root / f"{self.user.name}--{spec.project_id}"
        if self.sandbox is not None:  # leftovers of an earlier run that was never cleared
            teardown(self.sandbox)
            self.sandbox = None
        runtime_dir.mkdir(exist_ok=True)
        os.chmod(runtime_dir, 0o711)  # noqa: S103
        for stage in (STAGE_DATA, STAGE_HOME, STAGE_TEAM):
            (runtime_dir / stage).mkdir(mode=0o700, exist_ok=True)
        netns, address = self._allocate_netns()
        state = SandboxState(
            netns=netns,
            veth="",
            ip=address,
            cgroup=f"{self.cgroup_parent}/{self.user.name}--{spec.project_id}",
            runtime_dir=str(runtime_dir),
            uid=uid,
        )
        self.sandbox = state  # from here on, clear_state() undoes whatever was made
        state.veth = self._make_network(netns, address)
        create_cgroups(state.cgroup, spec.tier)
        self._write_identity(runtime_dir, uid, home_inside)

        self.ip, self.port = address, SERVER_PORT
        env = self.workspace_env(home_inside, spec)
        seccomp_fd = filter_fd()
        cmd = self.sandbox_command(state, extract, home, home_inside, seccomp_fd, team, team_gid)
        self.log.info("Spawning sandbox %s: %s", netns, " ".join(shlex.quote(part) for part in cmd))
        cgroup_procs = [str(path / "cgroup.procs") for path in cgroup_dirs(state.cgroup)]

        def join_cgroups() -> None:
            pid = str(os.getpid())
            for procs in cgroup_procs:
                with open(procs, "w") as fh:
                    fh.write(pid)

        # stdout and stderr: a pipe of the hub's (OutputRelay), never the hub's own log file.
        output_read, output_write = os.pipe()
        try:
            self.proc = Popen(cmd, env=env, preexec_fn=join_cgroups, start_new_session=True, pass_fds=(seccomp_fd,),
                              stdin=subprocess.DEVNULL, stdout=output_write, stderr=output_write)
        except BaseException:
            os.close(output_read)
            raise
        finally:
            os.close(seccomp_fd)
            os.close(output_write)
        if self.output is not None:
            self.output.close()
        self.output = OutputRelay(output_read, self.log, f"{self.user.name}/{self.name}")
        self.pid = self.proc.pid
        try:
            listening = await self.wait_until_listening(address, SERVER_PORT, timeout=self.start_timeout)
        except BaseException:
            self.output.drain()
            raise
        if listening:  # from here on, what the workspace prints may be its data: not kept on the host
            self.output.stop_logging()
        return (address, SERVER_PORT)

    async def stop(self, now: bool = False) -> None:
        """bubblewrap does not forward signals, so signal the whole cgroup, then kill it."""
        state = self.sandbox
        if state is not None and not now:
            for pid in cgroup_pids(state.cgroup):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            await self.wait_for_death(self.term_timeout)
        if state is not None:
            kill_cgroup(state.cgroup)
        await super().stop(now=True)
