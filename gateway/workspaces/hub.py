"""Typed client for the JupyterHub REST API, as used by the gateway.

The gateway is the only party that starts workspaces: it holds a service token with the scopes
listed in `GATEWAY_SCOPES` (registered in infra/jupyterhub/jupyterhub_config.py). Everything
here is a plain HTTP call; the gateway's outbox worker decides when to call it and retries.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from gateway.workspaces.spec import WorkspaceSpec, check_username

# What the gateway's service token needs, and why:
#   admin:users  create the hub user on first use (POST /users/<name>)
#   list:users   list users for metering and for the entitlement worker
#   read:users   read user models, including last activity
#   servers      start, stop and delete named servers (includes read:servers)
GATEWAY_SCOPES: tuple[str, ...] = ("admin:users", "list:users", "read:users", "servers")

PAGINATION_MEDIA_TYPE = "application/jupyterhub-pagination+json"


def ticket_login_url(base_url: str, ticket: str) -> str:
    """The hub's sign-in URL for a ticket.

    The parameter is called 'auth_ticket' because the hub masks query parameters named like
    that in its request log.
    """
    return f"{base_url.rstrip('/')}/hub/login?{urlencode({'auth_ticket': ticket})}"


class HubError(Exception):
    """The hub answered with an error or did not do what was asked in time."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ServerStatus:
    username: str
    server_name: str
    ready: bool
    pending: str | None
    url: str | None
    started: datetime | None
    last_activity: datetime | None
    user_options: dict[str, Any] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.ready or self.pending == "spawn"


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _status_from_model(username: str, server_name: str, model: dict[str, Any]) -> ServerStatus:
    return ServerStatus(
        username=username,
        server_name=server_name,
        ready=bool(model.get("ready")),
        pending=model.get("pending"),
        url=model.get("url"),
        started=_parse_time(model.get("started")),
        last_activity=_parse_time(model.get("last_activity")),
        user_options=dict(model.get("user_options") or {}),
    )


class HubClient:
    """Talks to one hub. `base_url` is the hub's public URL (the proxy), e.g. https://hub.example/."""

    def __init__(
        self,
        base_url: str,
        token: str,
        timeout: float = 10.0,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_url = f"{self.base_url}/hub/api"
        self.timeout = timeout
        self._http = session or requests.Session()
        # The proxy closes idle keep-alive connections after a few seconds; a request that races
        # that close fails with "connection reset". Retry those for reads and stops (idempotent);
        # a failed POST surfaces as an error for the caller (the outbox worker) to retry.
        retry = Retry(total=3, connect=3, read=3, status=0, allowed_methods={"GET", "DELETE"}, backoff_factor=0.1)
        self._http.mount("http://", HTTPAdapter(max_retries=retry))
        self._http.mount("https://", HTTPAdapter(max_retries=retry))
        self._http.headers["Authorization"] = f"token {token}"

    # -- plumbing ---------------------------------------------------------------------------

    def _request(self, method: str, path: str, ok: tuple[int, ...], **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        response = self._http.request(method, f"{self.api_url}{path}", **kwargs)
        if response.status_code not in ok:
            try:
                message = response.json().get("message", response.text)
            except ValueError:
                message = response.text
            raise HubError(f"{method} {path}: {response.status_code} {message}", response.status_code)
        return response

    @staticmethod
    def _user_path(username: str) -> str:
        return f"/users/{quote(check_username(username), safe='')}"

    @classmethod
    def _server_path(cls, username: str, server_name: str) -> str:
        return f"{cls._user_path(username)}/servers/{quote(server_name, safe='')}"

    # -- users ------------------------------------------------------------------------------

    def get_user(self, username: str) -> dict[str, Any] | None:
        response = self._request("GET", self._user_path(username), ok=(200, 404))
        return None if response.status_code == 404 else response.json()

    def ensure_user(self, username: str) -> dict[str, Any]:
        """Create the hub user if missing; return its model."""
        existing = self.get_user(username)
        if existing is not None:
            return existing
        response = self._request("POST", self._user_path(username), ok=(201, 409))
        if response.status_code == 409:  # created concurrently
            created = self.get_user(username)
            if created is None:
                raise HubError(f"user {username} vanished after creation")
            return created
        return response.json()

    # -- servers ----------------------------------------------------------------------------

    def server_status(self, username: str, server_name: str) -> ServerStatus | None:
        """The named server's status, or None if it does not exist (never started or removed)."""
        user = self.get_user(username)
        if user is None:
            return None
        model = (user.get("servers") or {}).get(server_name)
        return None if model is None else _status_from_model(username, server_name, model)

    def start_server(self, username: str, spec: WorkspaceSpec) -> ServerStatus:
        """Request a spawn of the project's server; idempotent if it is already running."""
        current = self.server_status(username, spec.project_id)
        if current is not None and current.running:
            return current
        if current is not None and current.pending == "stop":
            self.wait_until_stopped(username, spec.project_id)
        self._request(
            "POST",
            self._server_path(username, spec.project_id),
            ok=(201, 202),
            json=spec.to_user_options(),
            # The hub holds the request open while the server starts (up to its slow-spawn
            # timeout, 10 s by default) before answering 202.
            timeout=max(self.timeout, 30.0),
        )
        status = self.server_status(username, spec.project_id)
        if status is None:
            raise HubError(f"server {username}/{spec.project_id} missing right after spawn request")
        return status

    def wait_until_ready(
        self, username: str, server_name: str, timeout: float = 60.0, interval: float = 0.2
    ) -> ServerStatus:
        """Poll until the server is ready; raise HubError if it fails or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.server_status(username, server_name)
            if status is not None and status.ready:
                return status
            if status is None or status.pending is None:
                raise HubError(f"server {username}/{server_name} is not starting (spawn failed?)")
            if time.monotonic() >= deadline:
                raise HubError(f"server {username}/{server_name} not ready after {timeout:.0f}s")
            time.sleep(interval)

    def stop_server(
        self, username: str, server_name: str, remove: bool = False, wait: bool = True, timeout: float = 60.0
    ) -> None:
        """Stop the server (and with `remove`, forget it). Missing servers are already stopped."""
        path = self._server_path(username, server_name)
        response = self._request("DELETE", path, ok=(202, 204, 404), json={"remove": remove})
        if response.status_code == 404:  # no such user or server: nothing runs
            return
        if wait:
            self.wait_until_stopped(username, server_name, timeout=timeout)

    def wait_until_stopped(self, username: str, server_name: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            status = self.server_status(username, server_name)
            if status is None or (not status.ready and status.pending is None):
                return
            if time.monotonic() >= deadline:
                raise HubError(f"server {username}/{server_name} still running after {timeout:.0f}s")
            time.sleep(0.2)

    def list_servers(self, page_size: int = 200) -> list[ServerStatus]:
        """Every named server the hub knows, with last activity (for metering and culling)."""
        servers: list[ServerStatus] = []
        offset = 0
        while True:
            query = urlencode({"offset": offset, "limit": page_size})
            response = self._request("GET", f"/users?{query}", ok=(200,), headers={"Accept": PAGINATION_MEDIA_TYPE})
            body = response.json()
            for user in body["items"]:
                for name, model in (user.get("servers") or {}).items():
                    if name:  # the default (unnamed) server is not a workspace
                        servers.append(_status_from_model(user["name"], name, model))
            following = body["_pagination"].get("next")
            if not following:
                return servers
            offset = int(following["offset"])

    # -- sign-in ----------------------------------------------------------------------------

    def login_url(self, ticket: str) -> str:
        """Where to send the researcher's browser with a fresh ticket (see tickets.py)."""
        return ticket_login_url(self.base_url, ticket)
