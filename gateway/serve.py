"""Serve the app with gunicorn (threads per worker; each worker builds its own app and pool)."""

from __future__ import annotations

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


def serve(app_factory: Any, host: str, port: int, workers: int = 2, threads: int = 4) -> None:
    GatewayServer(app_factory, {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "accesslog": "-",
        "timeout": 120,
        "graceful_timeout": 10,
    }).run()
