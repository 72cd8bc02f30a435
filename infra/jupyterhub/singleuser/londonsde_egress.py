"""Browser egress policy for a workspace's Jupyter server, and a count of every byte it sends to the browser.

The sandbox has no network route out, so what a researcher's browser receives is the only way out besides the
gateway's output checking. This jupyter_server extension narrows that way and watches it:

* **Contents API reads** (``GET /api/contents/<path>`` with content) serve notebooks and UTF-8 text only, each
  at most ``LONDONSDE_CONTENTS_MAX_BYTES`` (default 2 MB). ``format=base64`` and any file that is not text are
  refused, and so is a file whose bytes equal a file under ``/data`` whatever it is called (the ``/data`` files
  are listed by size at start; a /data file is hashed, once, only when a file of its size is asked for). The checks run
  twice: on the file before it is read (size, equality), and on the very content about to be sent (so a file
  swapped in between is still caught).
* **Uploads** are refused: a contents ``PUT`` carrying base64 content, any chunked upload (``chunk``), and a
  ``PUT`` that creates a new non-notebook file with content (JupyterLab's upload and drag and drop send base64,
  in chunks when large). New notebooks, new (empty) text files, folders, renames, copies inside the workspace,
  saves of open notebooks (``type=notebook``, JSON) and saves of text files that already exist keep working,
  each under the same size limit: that is text a person could type or paste into the page anyway.
* **Bytes to the browser**: every byte written to a browser connection (HTTP responses and websocket frames,
  counted on the accepted socket's stream) is added up and reported every ``LONDONSDE_TRAFFIC_REPORT_SECONDS``
  (default 30 s) and when the server stops, through the hub, with the workspace credential, to the gateway,
  which keeps the total on the workspace session and raises an audit event past a threshold.

What this cannot stop: what the kernel sends to the page as cell output (the kernel's websocket is the
researcher's own channel, and whatever is shown on a screen can be read off it). That traffic is counted.

The pure rules (``read_refusal``, ``content_refusal``, ``write_refusal``, ``DataIndex``) import nothing from
jupyter_server, so they are unit-tested on their own; the handler and the counter are wired in
``_load_jupyter_server_extension``.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import stat
import sys
import threading
import time
from pathlib import Path
from typing import Any

DEFAULT_MAX_BYTES = 2 * 1024 * 1024
DEFAULT_REPORT_SECONDS = 30
DATA_ROOT = "/data"
UPLOAD_REFUSAL = ("Uploads into the workspace are disabled: the extract at /data is the only data here. New "
                  "notebooks and text files can be created and saved.")
BINARY_REFUSAL = ("Only notebooks and text files can be opened in the browser here; binary and base64 downloads "
                  "are disabled. Save results to outputs/ and request their release.")
DATA_COPY_REFUSAL = ("This file is a copy of a file in /data; the extract cannot be opened in the browser. Work on "
                     "it in a notebook.")


def max_bytes() -> int:
    try:
        value = int(os.environ.get("LONDONSDE_CONTENTS_MAX_BYTES") or DEFAULT_MAX_BYTES)
    except ValueError:
        return DEFAULT_MAX_BYTES
    return value if value > 0 else DEFAULT_MAX_BYTES


def report_seconds() -> float:
    try:
        value = float(os.environ.get("LONDONSDE_TRAFFIC_REPORT_SECONDS") or DEFAULT_REPORT_SECONDS)
    except ValueError:
        return DEFAULT_REPORT_SECONDS
    return max(value, 1.0)


def too_large(size: int, limit: int) -> str:
    return (f"This file is {size:,} bytes; files larger than {limit:,} bytes cannot be opened in the browser "
            "here. Work on it in a notebook, or save a smaller result to outputs/.")


# --- /data, hashed on demand ----------------------------------------------------------------------------------------

class DataIndex:
    """Every regular file under a folder, by size; a file is hashed (sha256, once) only when a file of its size is
    asked for, so equal bytes are found whatever the name and starting costs one ``stat`` per file."""

    def __init__(self, by_size: dict[int, set[str]] | None = None) -> None:
        self.by_size: dict[int, set[str]] = by_size or {}  # size -> paths
        self._hashes: dict[str, str] = {}
        self._lock = threading.Lock()

    @classmethod
    def build(cls, root: str | Path = DATA_ROOT, max_files: int = 100_000) -> DataIndex:
        by_size: dict[int, set[str]] = {}
        seen = 0
        for dirpath, _dirs, files in os.walk(root, followlinks=False):
            for name in files:
                path = os.path.join(dirpath, name)
                try:
                    info = os.stat(path, follow_symlinks=False)
                except OSError:
                    continue
                if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
                    continue
                by_size.setdefault(info.st_size, set()).add(path)
                seen += 1
                if seen >= max_files:
                    return cls(by_size)
        return cls(by_size)

    def _hashes_of_size(self, size: int) -> set[str]:
        found = set()
        for path in self.by_size.get(size, ()):
            with self._lock:
                known = self._hashes.get(path)
            if known is None:
                try:
                    known = _hash_path(path)
                except OSError:
                    continue
                with self._lock:
                    self._hashes[path] = known
            found.add(known)
        return found

    def matches_bytes(self, data: bytes) -> bool:
        if len(data) not in self.by_size:
            return False
        return hashlib.sha256(data).hexdigest() in self._hashes_of_size(len(data))

    def matches_path(self, path: str | os.PathLike[str]) -> bool:
        """Whether the file at ``path`` (not followed) has the bytes of a /data file (hashed only on a size match)."""
        try:
            info = os.stat(path, follow_symlinks=False)
        except OSError:
            return False
        if not stat.S_ISREG(info.st_mode) or info.st_size not in self.by_size:
            return False
        try:
            return _hash_path(path) in self._hashes_of_size(info.st_size)
        except OSError:
            return False


def _hash_path(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- the rules -------------------------------------------------------------------------------------------------

def read_refusal(*, content: bool, fmt: str | None, size: int | None, is_file: bool, limit: int,
                 equals_data: bool = False) -> str | None:
    """Why a contents GET must be refused before anything is read (None: go on). ``size`` is the file's on disk."""
    if not content:
        return None  # names, sizes and dates only
    if fmt == "base64":
        return BINARY_REFUSAL
    if not is_file:
        return None  # a folder's listing
    if size is not None and size > limit:
        return too_large(size, limit)
    if equals_data:
        return DATA_COPY_REFUSAL
    return None


def notebook_bytes(content: Any) -> bytes:
    return json.dumps(content, default=str, separators=(",", ":")).encode("utf-8")


def content_refusal(model: dict[str, Any], limit: int, index: DataIndex) -> str | None:
    """Why a model about to be sent must not be (None: send it). Checked on the exact content, after reading."""
    body = model.get("content")
    if body is None or model.get("type") == "directory":
        return None
    if model.get("format") == "base64" or model.get("type") not in ("notebook", "file"):
        return BINARY_REFUSAL
    if model["type"] == "notebook":
        data = notebook_bytes(body)
    elif isinstance(body, str):
        data = body.encode("utf-8", errors="surrogatepass")
    else:
        return BINARY_REFUSAL
    if len(data) > limit:
        return too_large(len(data), limit)
    if index.matches_bytes(data):
        return DATA_COPY_REFUSAL
    return None


def write_refusal(model: dict[str, Any] | None, *, exists: bool, limit: int) -> str | None:
    """Why a contents PUT body must be refused (None: let the server save it).

    Allowed: no body or no content (a new empty notebook, file or folder); a notebook as JSON (a save of an open
    notebook, or "save as"); text for a file that already exists (a save from the text editor). Refused: base64,
    chunked uploads, text that would create a new file (an upload), anything over the size limit.
    """
    if not model:
        return None
    if "chunk" in model:
        return UPLOAD_REFUSAL
    kind, fmt, body = model.get("type"), model.get("format"), model.get("content")
    if fmt == "base64":
        return UPLOAD_REFUSAL
    if body is None:
        return None
    if kind == "directory":
        return UPLOAD_REFUSAL  # a folder carries no content
    if kind == "notebook":
        if fmt not in (None, "json") or not isinstance(body, dict):
            return UPLOAD_REFUSAL
        size = len(notebook_bytes(body))
    else:
        if fmt not in (None, "text") or not isinstance(body, str) or not exists:
            return UPLOAD_REFUSAL
        size = len(body.encode("utf-8", errors="surrogatepass"))
    if size > limit:
        return (f"This save is {size:,} bytes; the limit here is {limit:,} bytes. Keep large data in files your "
                "code writes, not in the notebook.")
    return None


# --- counting what goes to the browser --------------------------------------------------------------------------

class TrafficCounter:
    """Bytes written to browser connections, and how many of them have been reported (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.total = 0
        self.reported = 0

    def add(self, count: int) -> None:
        if count > 0:
            with self._lock:
                self.total += count

    def take(self) -> int:
        """The bytes not yet reported (to be confirmed with ``done`` once the gateway has them)."""
        with self._lock:
            return self.total - self.reported

    def done(self, count: int) -> None:
        with self._lock:
            self.reported += count


def count_stream(stream: Any, counter: TrafficCounter) -> None:
    """Count every byte later written to ``stream`` (an accepted browser connection)."""
    write = stream.write

    def counted(data: Any, *args: Any, **kwargs: Any) -> Any:
        counter.add(memoryview(data).nbytes if not isinstance(data, bytes | bytearray) else len(data))
        return write(data, *args, **kwargs)

    stream.write = counted


_REPORTING = threading.Lock()


def report(counter: TrafficCounter, timeout: float = 20.0, wait: bool = False) -> int:
    """Send the unreported bytes to the gateway through the hub; the number sent (0 if none or on failure).

    One report at a time (a slow one is not overlapped by the next, which would send the same bytes twice); the
    last report at exit waits for one still running.
    """
    from londonsde_handover import Refused, _hub_call

    if not _REPORTING.acquire(blocking=wait, timeout=timeout if wait else -1):
        return 0
    try:
        pending = counter.take()
        if pending <= 0:
            return 0
        try:
            _hub_call("traffic", {"bytes": pending}, timeout=timeout)
        except Refused:
            return 0  # kept for the next report
        counter.done(pending)
        return pending
    finally:
        _REPORTING.release()


def answer_size(buffered: list[bytes], chunk: Any) -> int:
    """The size of a JSON answer about to be finished: what is buffered plus the last chunk."""
    if chunk is None:
        extra = 0
    elif isinstance(chunk, bytes | bytearray):
        extra = len(chunk)
    elif isinstance(chunk, str):
        extra = len(chunk.encode("utf-8", errors="surrogatepass"))
    else:
        extra = len(json.dumps(chunk, default=str).encode("utf-8"))
    return sum(len(part) for part in buffered) + extra


def _cap_answers(serverapp: Any, limit: int) -> None:
    from jupyterlab_server.settings_handler import SettingsHandler
    from jupyterlab_server.workspaces_handler import WorkspacesHandler

    for handler in (SettingsHandler, WorkspacesHandler):
        original = handler.finish
        if getattr(original, "_londonsde_capped", False):
            continue

        def finish(self: Any, chunk: Any = None, _original: Any = original) -> Any:
            if self.request.method == "GET" and not self._finished:
                size = answer_size(self._write_buffer, chunk)
                if size > limit:  # answered here: the handlers turn an exception into a 500 of their own
                    self._write_buffer.clear()
                    serverapp.log.warning("londonsde_egress: %s answer of %d bytes refused", self.request.path, size)
                    self.set_status(403)
                    self.set_header("Content-Type", "application/json")
                    chunk = json.dumps({"message": too_large(size, limit), "reason": None})
            return _original(self, chunk)

        finish._londonsde_capped = True  # type: ignore[attr-defined]
        handler.finish = finish  # type: ignore[method-assign]


# --- the jupyter_server extension ----------------------------------------------------------------------------

COUNTER = TrafficCounter()


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "londonsde_egress"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    import asyncio

    from jupyter_server.auth.decorator import authorized
    from jupyter_server.services.contents import handlers as contents_handlers
    from jupyter_server.services.contents.handlers import ContentsHandler
    from jupyter_server.utils import url_path_join
    from tornado import httpserver, ioloop, web

    # Kernel specs only from the read-only environment (not ~/.local/share/jupyter/kernels or ~/.ipython/kernels):
    # /kernelspecs/<name>/<file> serves any file of a spec's folder, so a spec the researcher made would be a door.
    serverapp.kernel_spec_manager.kernel_dirs = [os.path.join(sys.prefix, "share", "jupyter", "kernels")]

    limit = max_bytes()
    started = time.monotonic()
    index = DataIndex.build(os.environ.get("LONDONSDE_DATA_ROOT", DATA_ROOT))
    serverapp.log.info("londonsde_egress: %d /data files indexed in %.2f s; contents limit %d bytes",
                       sum(len(v) for v in index.by_size.values()), time.monotonic() - started, limit)

    class PolicedContentsHandler(ContentsHandler):
        """The contents API, with the reads and writes above refused (403 with a message)."""

        def _refuse(self, message: str) -> None:
            raise web.HTTPError(403, message)

        @web.authenticated
        @authorized
        async def get(self, path: str = "") -> None:
            content = self.get_query_argument("content", default="1") != "0"
            fmt = self.get_query_argument("format", default=None)
            size, is_file, equals = None, False, False
            if content:
                try:
                    os_path = self.contents_manager._get_os_path(path)  # FileContentsManager (the one used here)
                    info = os.stat(os_path, follow_symlinks=False)
                    is_file = not stat.S_ISDIR(info.st_mode)
                    size = info.st_size
                    equals = is_file and index.matches_path(os_path)
                except (OSError, web.HTTPError):
                    pass  # the server's own handler answers (404 and the like)
            problem = read_refusal(content=content, fmt=fmt, size=size, is_file=is_file, limit=limit,
                                   equals_data=equals)
            if problem:
                self._refuse(problem)
            await super().get(path)

        def _finish_model(self, model: dict[str, Any], location: bool = True) -> None:
            problem = content_refusal(model, limit, index)
            if problem:
                self._refuse(problem)
            super()._finish_model(model, location)

        @web.authenticated
        @authorized
        async def put(self, path: str = "") -> None:
            model = self.get_json_body()
            exists = bool(model) and await _maybe_await(self.contents_manager.file_exists(path))
            problem = write_refusal(model, exists=exists, limit=limit)
            if problem:
                self._refuse(problem)
            await super().put(path)

    async def _maybe_await(value: Any) -> Any:
        return await value if asyncio.iscoroutine(value) or asyncio.isfuture(value) else value

    # The server's own contents routes, in their order (checkpoints before the catch-all contents path), with
    # ContentsHandler replaced; extension handlers are matched ahead of the server's.
    base = serverapp.web_app.settings["base_url"]
    routes = [(url_path_join(base, pattern), PolicedContentsHandler if handler is ContentsHandler else handler)
              for pattern, handler in contents_handlers.default_handlers]
    assert any(handler is PolicedContentsHandler for _pattern, handler in routes)
    serverapp.web_app.add_handlers(".*$", routes)

    # JupyterLab's workspaces and settings APIs serve JSON files from the home (~/.jupyter/lab/...), which the kernel
    # can write: a workspace is any JSON, and a settings file's raw text (JSON5, comments included) is sent as it is.
    # Their answers are held to the contents limit, so they are no wider a door than the contents API.
    _cap_answers(serverapp, limit)

    # Count bytes on every connection the server accepts (the browser's, through the proxy). The server's own
    # outgoing calls (to the hub) use client connections, not counted.
    original = httpserver.HTTPServer.handle_stream
    if not getattr(original, "_londonsde_counting", False):
        def handle_stream(self: Any, stream: Any, address: Any) -> None:
            count_stream(stream, COUNTER)
            original(self, stream, address)

        handle_stream._londonsde_counting = True  # type: ignore[attr-defined]
        httpserver.HTTPServer.handle_stream = handle_stream  # type: ignore[method-assign]

    if os.environ.get("LONDONSDE_HANDOVER_CREDENTIAL"):
        async def periodic() -> None:
            await asyncio.to_thread(report, COUNTER)

        ioloop.PeriodicCallback(lambda: asyncio.ensure_future(periodic()), report_seconds() * 1000).start()
        atexit.register(report, COUNTER, 5.0, True)
    serverapp.log.info("londonsde_egress: contents policed, bytes to the browser counted")
