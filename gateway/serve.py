"""Serve the app with gunicorn (threads per worker; each worker builds its own app and pool)."""

from __future__ import annotations

import os
import socket
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication


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
    }).run()
