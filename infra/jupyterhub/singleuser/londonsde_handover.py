"""Hand outputs over from a workspace to the gateway: read a file safely here, send its bytes through the hub.

Runs inside the workspace as the researcher's own user (in the single-user server as a jupyter_server
extension, and in kernels through ``outputs_helper.submit_output``), so it can read nothing the workspace
cannot. Opening is still careful, because the folder is the researcher's to change while we read:

* the name must be plain relative components (no ``..``, no dotfiles) under ``~/outputs``;
* the file is opened relative to a descriptor of ``outputs/`` with ``openat2(RESOLVE_BENEATH |
  RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)`` where the kernel has it, else component by
  component with ``O_NOFOLLOW`` (a symlink anywhere on the way, even one swapped in mid-walk, is refused);
* ``O_NONBLOCK`` so a FIFO never blocks the open, then ``fstat`` on the opened descriptor: only a regular
  file on the same filesystem as ``outputs/`` is read (FIFOs, sockets, devices are refused), at most the
  size limit plus one byte;
* the table's ``.sdc.json`` sidecar, if there is one, is opened the same way.

The bytes go to the hub's ``/hub/api/londonsde/handover/<op>`` with the server's own hub API token and the
workspace credential the gateway put in this server's environment; the hub forwards them to the gateway,
which checks everything again. Nothing here can reach any other address.
"""

from __future__ import annotations

import base64
import ctypes
import errno
import json
import os
import stat
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

SIDECAR_SUFFIX = ".sdc.json"
DEFAULT_MAX_BYTES = 5 * 1024 * 1024
MAX_PARTS = 4
SYS_OPENAT2 = 437  # x86_64 and aarch64
RESOLVE_NO_XDEV, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS, RESOLVE_BENEATH = 0x01, 0x02, 0x04, 0x08
READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC | os.O_NOFOLLOW
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Refused(Exception):
    """The file cannot be handed over; the message says why in words a researcher can act on."""


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_openat2_works: bool | None = None


def outputs_dir() -> Path:
    return Path(os.environ.get("LONDONSDE_OUTPUTS_DIR") or Path.home() / "outputs")


def max_bytes() -> int:
    return int(os.environ.get("LONDONSDE_HANDOVER_MAX_BYTES") or DEFAULT_MAX_BYTES)


def check_name(name: str) -> list[str]:
    """The name's components, refusing anything that is not a plain path inside outputs/."""
    if not isinstance(name, str) or not name.strip():
        raise Refused("Name the file by its path inside your outputs folder, like tables/admissions.csv.")
    clean = name.strip()
    if clean.startswith("outputs/"):
        clean = clean[len("outputs/"):]
    parts = clean.split("/")
    if clean.startswith("/") or len(parts) > MAX_PARTS or any(p in {"", ".", ".."} for p in parts):
        raise Refused(f"'{name}' is not a plain path inside your outputs folder.")
    if any(p.startswith(".") for p in parts):
        raise Refused(f"'{name}' is a hidden file or folder; these cannot be handed over.")
    return parts


def _openat2(dirfd: int, relative: str, flags: int) -> int:
    """openat2 with every resolution restriction; raises OSError (ENOSYS when the kernel lacks it)."""
    how = _OpenHow(flags & ~os.O_NOFOLLOW, 0,
                   RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)
    fd = _libc.syscall(SYS_OPENAT2, dirfd, os.fsencode(relative), ctypes.byref(how), ctypes.sizeof(how))
    if fd < 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error), relative)
    return int(fd)


def _open_by_components(dirfd: int, parts: list[str], flags: int) -> int:
    current = dirfd
    try:
        for part in parts[:-1]:
            following = os.open(part, DIR_FLAGS, dir_fd=current)
            if current != dirfd:
                os.close(current)
            current = following
        return os.open(parts[-1], flags, dir_fd=current)
    finally:
        if current != dirfd:
            os.close(current)


def open_beneath(dirfd: int, parts: list[str], flags: int = READ_FLAGS) -> int:
    """Open ``parts`` under the directory ``dirfd`` without following any symbolic link or leaving it."""
    global _openat2_works
    if _openat2_works is not False:
        try:
            fd = _openat2(dirfd, "/".join(parts), flags)
            _openat2_works = True
            return fd
        except OSError as exc:
            if exc.errno not in (errno.ENOSYS, errno.EPERM) or _openat2_works:
                raise
            _openat2_works = False  # no openat2 here (old kernel, or a seccomp filter): one component at a time
    return _open_by_components(dirfd, parts, flags)


def _refusal(name: str, exc: OSError) -> Refused:
    if exc.errno == errno.ENOENT:
        return Refused(f"There is no file '{name}' in your outputs folder.")
    if exc.errno in (errno.ELOOP, errno.EXDEV, errno.ENOTDIR):
        return Refused(f"'{name}' is or passes through a symbolic link (or leaves the folder); save the file "
                       "itself in outputs/.")
    if exc.errno in (errno.ENXIO, errno.EOPNOTSUPP):
        return Refused(f"'{name}' is not a regular file (a socket or device); only files can be handed over.")
    return Refused(f"'{name}' cannot be read: {exc.strerror}.")


def _read_fd(fd: int, name: str, limit: int, outputs_dev: int) -> bytes:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise Refused(f"'{name}' is not a regular file (a FIFO, socket, device or folder); only files can be "
                      "handed over.")
    if info.st_dev != outputs_dev:
        raise Refused(f"'{name}' is on another filesystem than your outputs folder.")
    if info.st_size > limit:
        raise Refused(f"'{name}' is {info.st_size:,} bytes; the limit is {limit:,} bytes.")
    chunks: list[bytes] = []
    total = 0
    while total <= limit:
        try:
            block = os.read(fd, min(1 << 20, limit + 1 - total))
        except BlockingIOError:
            raise Refused(f"'{name}' cannot be read without waiting; only plain files can be handed over.") from None
        if not block:
            break
        chunks.append(block)
        total += len(block)
    if total > limit:
        raise Refused(f"'{name}' is larger than the limit of {limit:,} bytes.")
    return b"".join(chunks)


def read_output(name: str, folder: Path | None = None, limit: int | None = None) -> tuple[str, bytes, bytes | None]:
    """The file's clean name, its bytes and its sidecar's bytes (None without one), read as described above."""
    parts = check_name(name)
    clean = "/".join(parts)
    limit = max_bytes() if limit is None else limit
    root = folder or outputs_dir()
    try:
        dirfd = os.open(root, DIR_FLAGS)
    except OSError as exc:
        raise Refused("Your outputs folder is missing or is not a plain folder.") from exc
    try:
        outputs_dev = os.fstat(dirfd).st_dev
        try:
            fd = open_beneath(dirfd, parts)
        except OSError as exc:
            raise _refusal(clean, exc) from None
        try:
            data = _read_fd(fd, clean, limit, outputs_dev)
        finally:
            os.close(fd)
        sidecar = None
        if parts[-1].lower().endswith(".csv"):
            side_parts = [*parts[:-1], parts[-1][: -len(".csv")] + SIDECAR_SUFFIX]
            try:
                side_fd = open_beneath(dirfd, side_parts)
            except FileNotFoundError:
                side_fd = None
            except OSError as exc:
                raise _refusal("/".join(side_parts), exc) from None
            if side_fd is not None:
                try:
                    sidecar = _read_fd(side_fd, "/".join(side_parts), limit, outputs_dev)
                finally:
                    os.close(side_fd)
        return clean, data, sidecar
    finally:
        os.close(dirfd)


def list_outputs(folder: Path | None = None) -> list[dict[str, Any]]:
    """Regular, visible files under outputs/ (sidecars listed with their tables), found without following links."""
    root = folder or outputs_dir()
    found: list[dict[str, Any]] = []

    def walk(dirfd: int, prefix: list[str]) -> None:
        for entry in sorted(os.listdir(dirfd)):
            if entry.startswith(".") or entry.endswith(SIDECAR_SUFFIX):
                continue
            info = os.stat(entry, dir_fd=dirfd, follow_symlinks=False)
            if stat.S_ISREG(info.st_mode):
                found.append({"name": "/".join([*prefix, entry]), "size": info.st_size})
            elif stat.S_ISDIR(info.st_mode) and len(prefix) + 1 < MAX_PARTS:
                try:
                    child = os.open(entry, DIR_FLAGS, dir_fd=dirfd)
                except OSError:
                    continue
                try:
                    walk(child, [*prefix, entry])
                finally:
                    os.close(child)

    try:
        top = os.open(root, DIR_FLAGS)
    except OSError:
        return []
    try:
        walk(top, [])
    finally:
        os.close(top)
    return found


# --- sending, through the hub --------------------------------------------------------------------------------

def _hub_call(op: str, body: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
    api = os.environ.get("JUPYTERHUB_API_URL")
    token = os.environ.get("JUPYTERHUB_API_TOKEN")
    credential = os.environ.get("LONDONSDE_HANDOVER_CREDENTIAL")
    if not (api and token and credential):
        raise Refused("This workspace was not opened from the gateway with a hand-over credential; open it again "
                      "from the project page.")
    request = urllib.request.Request(  # noqa: S310 - the hub API URL the hub itself set
        f"{api.rstrip('/')}/londonsde/handover/{op}", method="POST",
        data=json.dumps({**body, "credential": credential}).encode("utf-8"),
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return dict(json.loads(response.read() or b"{}"))
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read() or b"{}")
        except ValueError:
            detail = {}
        message = detail.get("detail") or detail.get("message") or exc.reason
        if isinstance(message, dict):
            fields = message.get("fields") or {}
            message = " ".join([m for ms in fields.values() for m in ms] or [str(message.get("message", ""))])
        raise Refused(f"The gateway refused it: {message}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise Refused(f"The gateway could not be reached: {exc}") from None


def drafts() -> dict[str, Any]:
    """Your draft output requests on this project (id, title, groups, files), from the gateway."""
    return _hub_call("drafts", {})


def submit(name: str, request: int, group: int | str | None = None, kind: str | None = None,
           folder: Path | None = None) -> dict[str, Any]:
    """Read ``outputs/<name>`` (and its sidecar) safely and hand it to output request ``request``."""
    clean, data, sidecar = read_output(name, folder)
    body: dict[str, Any] = {"request_id": int(request), "name": clean, "data": base64.b64encode(data).decode()}
    if sidecar is not None:
        body["sidecar"] = base64.b64encode(sidecar).decode()
    if isinstance(group, str):
        body["group"] = group
    elif group is not None:
        body["group_id"] = int(group)
    if kind is not None:
        body["kind"] = kind
    return _hub_call("files", body)


# --- the jupyter_server extension ----------------------------------------------------------------------------

def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "londonsde_handover"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    import asyncio

    from jupyter_server.base.handlers import APIHandler
    from jupyter_server.utils import url_path_join
    from tornado import web

    class OutputsHandler(APIHandler):
        """GET: files in outputs/ and your draft requests. POST: hand one file over."""

        @web.authenticated
        async def get(self) -> None:
            files = await asyncio.to_thread(list_outputs)
            try:
                requests = (await asyncio.to_thread(drafts)).get("requests", [])
                problem = None
            except Refused as exc:
                requests, problem = [], str(exc)
            self.finish(json.dumps({"files": files, "requests": requests, "problem": problem}))

        @web.authenticated
        async def post(self) -> None:
            body = self.get_json_body() or {}
            try:
                result = await asyncio.to_thread(submit, body.get("name", ""), body.get("request"),
                                                 body.get("group"), body.get("kind"))
            except (Refused, TypeError, ValueError) as exc:
                self.set_status(422)
                self.finish(json.dumps({"message": str(exc)}))
                return
            self.set_status(201)
            self.finish(json.dumps(result))

    base = serverapp.web_app.settings["base_url"]
    serverapp.web_app.add_handlers(".*$", [(url_path_join(base, "/londonsde/outputs"), OutputsHandler)])
    serverapp.log.info("londonsde_handover: outputs are handed over through the hub")
