"""The sandbox against a motivated insider, from a real kernel in a real sandboxed server (issue 13, findings 3-5).

One hub for the module; the researcher's ordinary work (pandas on /data, a crosstab, saving an output, threads,
a terminal) is run after the attacks to show the hardening broke nothing they need.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from gateway.workspaces.hub import HubClient
from gateway.workspaces.spec import TIERS, WorkspaceSpec
from gateway.workspaces.tickets import mint_ticket
from tests.integration.workspaces.workspace_client import Workspace, browser_login

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "infra" / "jupyterhub"))

from devhub import DevHub, missing_facilities  # noqa: E402
from sandbox_seccomp import CLONE_NAMESPACE_FLAGS, DENIED  # noqa: E402
from sandbox_spawner import SandboxSpawner  # noqa: E402

SINGLEUSER = Path(os.environ.get("LONDONSDE_SINGLEUSER_PREFIX", "/opt/londonsde/singleuser"))
MISSING = missing_facilities(SINGLEUSER)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(MISSING), reason="sandbox needs: " + "; ".join(MISSING)),
]

USER, PROJECT = "_u1", "p1"  # the id-derived form the gateway uses
ADMISSIONS = "age_band,sex,los_days\n" + "".join(
    f"{age},{sex},{(i * 7) % 15}\n"
    for i, (age, sex) in enumerate((a, s) for a in ("20-39", "40-59", "60+") for s in ("F", "M") for _ in range(40)))


@pytest.fixture(scope="module")
def hub() -> Iterator[DevHub]:
    with DevHub(spawner="sandbox") as running:
        yield running


@pytest.fixture(scope="module")
def workspace(hub: DevHub) -> Workspace:
    extract = hub.make_extract(PROJECT, {"manifest.json": json.dumps({"project_id": PROJECT}),
                                         "admissions.csv": ADMISSIONS})
    client = HubClient(hub.url, hub.gateway_token)
    client.ensure_user(USER)
    client.start_server(USER, WorkspaceSpec(PROJECT, str(extract), TIERS["small"]))
    client.wait_until_ready(USER, PROJECT, timeout=90)
    session, response = browser_login(hub.url, mint_ticket(hub.ticket_secret, USER, PROJECT))
    assert response.status_code == 200, response.text[:300]
    return Workspace(hub.url, session, USER, PROJECT)


@pytest.fixture(scope="module")
def kernel(workspace: Workspace) -> str:
    return workspace.start_kernel()


def run(workspace: Workspace, kernel: str, code: str, timeout: float = 90) -> object:
    result = workspace.execute(kernel, code, timeout=timeout)
    assert result.error is None, (result.error, result.stdout)
    return result.json()


# --- finding 3: the kernel's attack surface ----------------------------------------------------------------------

SYSCALLS = r"""
import ctypes, json, os, pyseccomp_numbers
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
numbers = json.loads({numbers!r})
buf = ctypes.create_string_buffer(256)

def call(name, *args):
    ctypes.set_errno(0)
    result = libc.syscall(ctypes.c_long(numbers[name]), *[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    err = ctypes.get_errno()
    if result >= 0 and name in ("io_uring_setup", "userfaultfd", "perf_event_open", "bpf", "fsopen", "open_tree",
                                "fanotify_init"):
        os.close(result)
    return "ok" if result >= 0 else errno_name(err)

def errno_name(err):
    import errno as e
    return e.errorcode.get(err, str(err))

report = {{}}
for name in numbers:
    if name in ("clone", "clone3", "reboot", "vhangup", "unshare", "ptrace"):
        continue
    args = {{
        "io_uring_setup": (8, buf),
        "add_key": (b"user", b"londonsde-probe", b"x", 1, -2),
        "keyctl": (0, -2, 0),
        "request_key": (b"user", b"londonsde-probe", None, 0),
        "userfaultfd": (1,),
        "setns": (-1, 0),
    }}.get(name, (0, 0, 0, 0, 0, 0))
    report[name] = call(name, *args)
report["unshare"] = call("unshare", 0x10000000)  # CLONE_NEWUSER
# ptrace of a process of our own
import subprocess
child = subprocess.Popen(["sleep", "30"])
report["ptrace"] = call("ptrace", 16, child.pid, 0, 0)  # PTRACE_ATTACH
if report["ptrace"] == "ok":
    libc.syscall(ctypes.c_long(numbers["ptrace"]), 17, child.pid, 0, 0)  # PTRACE_DETACH
child.kill(); child.wait()
# clone with each namespace flag (raw, fork-like: a child that got through exits at once)
for flag_name, flag in json.loads({flags!r}).items():
    pid = libc.syscall(ctypes.c_long(numbers["clone"]), ctypes.c_long(flag | 17), 0, 0, 0, 0)
    if pid == 0:
        os._exit(0)
    report["clone " + flag_name] = errno_name(ctypes.get_errno()) if pid < 0 else "ok"
    if pid > 0:
        os.waitpid(pid, 0)
report["clone3"] = call("clone3", 0, 0)
# the command line way in: a user namespace in which the sandbox user is root
out = subprocess.run(["unshare", "-Urn", "sh", "-c", "id -u"], capture_output=True, text=True)
report["unshare -Urn"] = "ok" if out.returncode == 0 else out.stderr.strip()[-80:]
print(json.dumps(report))
""".replace("import ctypes, json, os, pyseccomp_numbers", "import ctypes, json, os")


def syscall_numbers() -> dict[str, int]:
    import pyseccomp

    names = [*DENIED, "clone", "clone3"]
    return {name: pyseccomp.resolve_syscall(pyseccomp.system_arch(), name) for name in names}


def test_dangerous_syscalls_are_refused_from_a_real_kernel(workspace: Workspace, kernel: str) -> None:
    code = SYSCALLS.format(numbers=json.dumps(syscall_numbers()), flags=json.dumps(CLONE_NAMESPACE_FLAGS))
    report = run(workspace, kernel, code)
    assert isinstance(report, dict)
    refused = {name: result for name, result in report.items()
               if name not in ("clone3", "unshare -Urn") and result != "ok"}
    expected = {name: errno.errorcode[errno.EPERM] for name in report if name not in ("clone3", "unshare -Urn")}
    assert refused == expected, {name: r for name, r in report.items() if r != expected.get(name)}
    assert report["clone3"] == "ENOSYS"
    assert report["unshare -Urn"] != "ok"


def test_disable_userns_alone_stops_a_nested_user_namespace() -> None:
    """The second layer, without the filter: bwrap's --disable-userns as the spawner passes it (the kernel then
    answers ENOSPC: the sandbox's allowance of user namespaces is used up)."""
    def nested(*flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["setpriv", "--reuid=65000", "--regid=65000", "--clear-groups", "--no-new-privs",
                               "bwrap", "--unshare-user", *flags, "--ro-bind", "/", "/", "--proc", "/proc",
                               "--dev", "/dev", "--", "unshare", "-U", "true"], capture_output=True, text=True,
                              timeout=30)
    assert nested().returncode == 0  # what the sandbox allowed before
    refused = nested("--disable-userns")
    assert refused.returncode != 0 and "No space left" in refused.stderr
    assert "--disable-userns" in SandboxSpawner.sandbox_command.__code__.co_consts


# --- what a researcher does every day still works ----------------------------------------------------------------

EVERYDAY = r"""
import json, os, concurrent.futures as cf, multiprocessing as mp
import pandas as pd
df = pd.read_csv("/data/admissions.csv")
table = pd.crosstab(df["age_band"], df["sex"])
os.makedirs(os.path.expanduser("~/outputs"), exist_ok=True)
table.to_csv(os.path.expanduser("~/outputs/everyday.csv"))
with cf.ThreadPoolExecutor(4) as pool:
    squares = list(pool.map(lambda x: x * x, range(8)))
with mp.get_context("fork").Pool(2) as procs:
    cubes = procs.map(abs, [-1, -2, -3])
import subprocess
echoed = subprocess.run(["sh", "-c", "echo shell-ok"], capture_output=True, text=True).stdout.strip()
print(json.dumps({"rows": len(df), "cells": int(table.values.sum()), "squares": squares, "cubes": cubes,
                  "shell": echoed}))
"""


def test_everyday_analysis_still_works(hub: DevHub, workspace: Workspace, kernel: str) -> None:
    report = run(workspace, kernel, EVERYDAY)
    assert report == {"rows": 240, "cells": 240, "squares": [x * x for x in range(8)], "cubes": [1, 2, 3],
                      "shell": "shell-ok"}
    assert "age_band" in (hub.homes_root / PROJECT / USER / "outputs" / "everyday.csv").read_text()


def test_a_terminal_still_works(workspace: Workspace) -> None:
    response = workspace.api("POST", "/api/terminals")
    assert response.status_code == 200, response.text
    name = response.json()["name"]

    async def talk() -> str:
        cookies = "; ".join(f"{c.name}={c.value}" for c in workspace.session.cookies
                            if workspace.path_prefix.startswith(c.path))
        url = workspace.base.replace("http://", "ws://") + f"/terminals/websocket/{name}"
        conn = await websocket_connect(HTTPRequest(url, headers={"Cookie": cookies}))
        typed = "echo term-$((6*7)); unshare -U true || echo userns-refused-$((2*2))\r"
        conn.write_message(json.dumps(["stdin", typed]))
        seen = ""
        while "term-42" not in seen or "userns-refused-4" not in seen:
            raw = await conn.read_message()
            if raw is None:
                break
            message = json.loads(raw)
            if message[0] == "stdout":
                seen += message[1]
        conn.close()
        return seen

    seen = asyncio.run(asyncio.wait_for(talk(), 30))
    assert "term-42" in seen and "userns-refused-4" in seen  # the typed line echoes only "$((2*2))"
    workspace.api("DELETE", f"/api/terminals/{name}")


def test_unshare_binary_is_what_the_probe_uses() -> None:
    """The probe's `unshare -Urn` must exist in the workspace (it binds the host's /usr)."""
    assert shutil.which("unshare") is not None


# --- finding 5: no disk limit ------------------------------------------------------------------------------------

FILL = r"""
import json, os, subprocess
home = os.path.expanduser("~")
big = subprocess.run(["fallocate", "-l", "{too_big}", home + "/fill.bin"], capture_output=True, text=True)
if os.path.exists(home + "/fill.bin"):  # a refused fallocate may keep what it got
    os.remove(home + "/fill.bin")
st = os.statvfs(home)
free = st.f_bavail * st.f_frsize
subprocess.run(["fallocate", "-l", str(free - 32 * 1024 * 1024), home + "/almost.bin"], check=True)
dd = subprocess.run(["dd", "if=/dev/zero", "of=" + home + "/more.bin", "bs=1M", "count=128"],
                    capture_output=True, text=True)
try:
    with open(home + "/outputs/table.csv", "w") as fh:
        fh.write("x" * (64 * 1024 * 1024))
    python_write = "ok"
except OSError as exc:
    python_write = exc.strerror
report = {{"size": st.f_blocks * st.f_frsize, "fallocate": big.stderr.strip(), "dd": dd.stderr.strip().splitlines()[0],
           "python": python_write}}
for name in ("fill.bin", "almost.bin", "more.bin", "outputs/table.csv"):
    if os.path.exists(home + "/" + name):
        os.remove(home + "/" + name)
st = os.statvfs(home)
report["free_after"] = st.f_bavail * st.f_frsize
print(json.dumps(report))
"""


def test_writing_past_the_quota_fails_inside_and_leaves_the_host_disk_alone(
        hub: DevHub, workspace: Workspace, kernel: str) -> None:
    quota = TIERS["small"].disk_bytes
    host = os.statvfs(hub.homes_root)
    host_free = host.f_bavail * host.f_frsize
    report = run(workspace, kernel, FILL.format(too_big=quota + 1024**3), timeout=180)
    assert isinstance(report, dict)
    assert "No space left on device" in report["fallocate"], report
    assert "No space left on device" in report["dd"], report
    assert report["python"] == "No space left on device"
    assert quota * 0.95 <= report["size"] <= quota
    assert report["free_after"] > quota * 0.9  # deleting frees the home again
    host = os.statvfs(hub.homes_root)
    # Other work on this machine moves the host's free space a little; a filled home would have taken 10 GiB.
    assert host.f_bavail * host.f_frsize > host_free - 1024**3


def test_the_home_image_is_private_and_mounted_with_nosuid(hub: DevHub, workspace: Workspace) -> None:
    image = hub.homes_root / ".images" / PROJECT / f"{USER}.ext4"
    assert stat.S_IMODE(image.stat().st_mode) == 0o600 and stat.S_IMODE(image.parent.stat().st_mode) == 0o700
    home = hub.homes_root / PROJECT / USER
    options = subprocess.run(["findmnt", "-n", "-o", "OPTIONS", "--mountpoint", str(home)], capture_output=True,
                             text=True, check=True).stdout
    assert {"nosuid", "nodev"} <= set(options.strip().split(","))


# --- the server against its own kernels, and the host's log against the workspace (session 11) -------------------

SERVER_PROCESS = r"""
import json, os
server = os.getppid()  # the kernel's parent: the single-user server, which keeps the browser egress rules
def attempt(action):
    try:
        action()
        return "ok"
    except OSError as exc:
        return type(exc).__name__
def write_own_bytes_back():
    start = int(next(l for l in open(f"/proc/{server}/maps") if " rw-p " in l).split("-")[0], 16)
    fd = os.open(f"/proc/{server}/mem", os.O_RDWR)
    try:
        os.pwrite(fd, os.pread(fd, 16, start), start)
    finally:
        os.close(fd)
print(json.dumps({
    "server_cmdline": open(f"/proc/{server}/cmdline").read().split("\0")[:3],
    "mem": attempt(write_own_bytes_back),
    "environ": attempt(lambda: open(f"/proc/{server}/environ").read()),
    "fds": attempt(lambda: os.listdir(f"/proc/{server}/fd")),
    "own_mem": attempt(lambda: open("/proc/self/mem", "rb").close()),
}))
"""


def test_the_server_cannot_be_read_or_written_from_its_kernels(workspace: Workspace, kernel: str) -> None:
    """The server is where the egress rules are kept and counted; its kernels run as the same uid. Refusing ptrace
    and process_vm_writev was not enough: /proc/<server>/mem could be opened for writing all the same."""
    report = run(workspace, kernel, SERVER_PROCESS)
    assert isinstance(report, dict)
    assert report["server_cmdline"][0].endswith("/bin/python")  # the launcher that makes the server non-dumpable
    assert report["mem"] == "PermissionError"
    assert report["environ"] == "PermissionError"
    assert report["fds"] == "PermissionError"
    assert report["own_mem"] == "ok"  # a kernel is an ordinary program again after its exec


HOST_LOG = r"""
import json, os, subprocess, sys, time
marker = "{marker}"
subprocess.run(["sh", "-c", f"echo {{marker}}-echoed-by-ipykernel; echo {{marker}}-on-stderr >&2"])
originals = [s._original_stdstream_copy for s in (sys.stdout, sys.stderr)
             if getattr(s, "_original_stdstream_copy", None) is not None]
targets = []
for fd in originals:
    targets.append(os.readlink(f"/proc/self/fd/{{fd}}"))
    os.write(fd, f"\n[W 2026-01-01 00:00:00.000 JupyterHub app:1] {{marker}}-forged\n".encode())
    flood = subprocess.Popen(["dd", "if=/dev/zero", "bs=64k", "count=256"], stdout=fd, stderr=subprocess.DEVNULL)
    try:
        flood.wait(timeout=8)
    except subprocess.TimeoutExpired:
        flood.kill()
        flood.wait()
print(json.dumps({{"originals": len(originals), "targets": targets}}))
"""


def test_what_a_workspace_prints_never_reaches_the_hubs_log_file(hub: DevHub, workspace: Workspace,
                                                                  kernel: str) -> None:
    """The server's stdout and stderr were the hub's own log file, which every kernel inherited (ipykernel keeps the
    original streams open and copies every subprocess's output there): a kernel could forge hub log lines, fill the
    host's disk past its quota, and `!cat /data/...` left extract rows in a host log."""
    marker = f"sde-probe-{os.getpid()}"
    before = hub.log_path.stat().st_size
    report = run(workspace, kernel, HOST_LOG.format(marker=marker), timeout=120)
    assert isinstance(report, dict)
    assert report["originals"] == 2
    assert all(target.startswith("pipe:") for target in report["targets"]), report
    time.sleep(1)
    written = hub.log_path.read_bytes()
    assert marker.encode() not in written[before:]
    assert len(written) - before < 256 * 1024  # 2 x 16 MiB were written to those streams
    # While it starts, the server's own log still reaches the operator, one prefixed line at a time.
    assert f"workspace {USER}/{PROJECT}: ".encode() in written
