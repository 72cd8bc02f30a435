"""Serve the app with gunicorn (threads per worker; each worker builds its own app and pool)."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger


class GatewayServer(BaseApplication):  # type: ignore[misc]
    def __init__(self, app_factory: Any, options: dict[str, Any]) -> None:
        self.app_factory = app_factory
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self.app_factory()


class GatewayLogger(Logger):  # type: ignore[misc]
    """gunicorn's logger, naming the address it listens on. With reuse_port each worker binds its own socket and
    the master has none, so gunicorn itself would log "Listening at:  (pid)" with a blank address."""

    def info(self, msg: str, *args: Any, **kwargs: Any) -> None:
        if msg.startswith("Listening at:") and args and not args[0]:
            args = (",".join(f"http://{address}" for address in self.cfg.bind), *args[1:])
        super().info(msg, *args, **kwargs)


def end_worker_now(server: Any, worker: Any) -> None:
    """gunicorn's worker_exit hook: the worker's last step, so it leaves at once with the status it was exiting
    with. Otherwise its exit unwinds through the code that started gunicorn (`sde demo` has more to do after
    serving) and Python waits for every request thread; a request stuck on a database lock then kept the worker
    alive past the graceful timeout, and gunicorn SIGKILLed it with "Perhaps out of memory?" on a plain Ctrl+C.
    Requests still running are abandoned, as they would be by that SIGKILL, without the wait."""
    error = sys.exc_info()[1]
    if isinstance(error, SystemExit):
        code = error.code if isinstance(error.code, int) else (0 if error.code is None else 1)
    else:
        code = 0 if error is None else 1
    _leave(code)


def _leave(code: int) -> None:
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code & 0xFF)


def quit_at_once(worker: Any) -> None:
    """gunicorn's post_worker_init hook: a worker told to quit (SIGINT, SIGQUIT) leaves at once.

    Ctrl+C sends SIGINT to every process of the terminal's group, and the master then sends each worker SIGQUIT
    as well. gunicorn's own quit handler shuts the thread pool down under a lock that is not re-entrant, so the
    second signal, arriving while the first was being handled, could deadlock the worker until the master
    SIGKILLed it ("Perhaps out of memory?"). This handler takes none of the pool's locks: requests still running
    are abandoned, as the quick shutdown intends."""
    import signal

    def leave(signum: int, frame: Any) -> None:
        if not worker.alive and getattr(worker, "_sde_leaving", False):
            return  # the second signal of the same Ctrl+C
        worker._sde_leaving = True
        worker.alive = False
        worker.log.info("Worker exiting (pid: %s)", worker.pid)
        _leave(0)

    signal.signal(signal.SIGINT, leave)
    signal.signal(signal.SIGQUIT, leave)


def default_workers() -> int:
    """SDE_WORKERS, else one process per CPU (at least 2): the GIL lets each process use one core at a time."""
    return int(os.environ.get("SDE_WORKERS") or max(2, os.cpu_count() or 1))


def default_threads() -> int:
    """SDE_THREADS, else 4: enough to overlap each request's database round trips without GIL contention."""
    return int(os.environ.get("SDE_THREADS") or 4)


class PortInUse(RuntimeError):
    pass


def check_port_free(host: str, port: int) -> None:
    """Refuse a port something already listens on. With SO_REUSEPORT the workers' own binds would not fail, and
    an old server left running would silently get a share of the connections."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn does: TIME_WAIT is no obstacle
        try:
            probe.bind(address)
        except OSError as exc:
            raise PortInUse(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def serve(app_factory: Any, host: str, port: int, workers: int = 2, threads: int = 4) -> None:
    check_port_free(host, port)
    GatewayServer(app_factory, {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        # Each worker listens on its own SO_REUSEPORT socket and the kernel spreads new connections evenly;
        # on one shared socket the least busy worker wins most accepts, and keep-alive clients stay put.
        "reuse_port": True,
        "accesslog": "-",
        "timeout": 120,
        "graceful_timeout": 10,
        "logger_class": GatewayLogger,
        "worker_exit": end_worker_now,
        "post_worker_init": quit_at_once,
        # No control socket in the service account's home folder: nothing here uses it.
        "control_socket_disable": True,
    }).run()
