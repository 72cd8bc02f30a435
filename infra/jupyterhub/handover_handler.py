"""The hub's part of the output hand-over: pass a workspace's file on to the gateway, naming who sent it.

A sandbox can reach only the hub's API port, so a workspace sends the file it hands over here
(``POST /hub/api/londonsde/handover/<drafts|files|traffic>``), authenticated by its server's own hub API token.
That token's scopes name exactly one server (``access:servers!server=<user>/<server>``, server_tokens.py); a
person's browser session, which holds ``access:servers!user=...`` instead, is refused, and so is a server that
is not running. The body is forwarded unchanged to the gateway with the hub<->gateway secret and the user and
server the token belongs to; the gateway checks the workspace credential inside the body and applies every rule.

The hub runs as root with no memory limit and every workspace depends on it, so what a workspace can make it hold
is bounded. The body is streamed (``stream_request_body``): nothing of it is read until the token, the declared
``Content-Length`` (at most ``MAX_BODY_BYTES[op]``) and the limits below have been checked, and every other hub
endpoint reads at most ``MAX_REQUEST_BODY_BYTES`` (`limit_request_bodies`). Each workspace server has at most one
request of each kind in flight, one person's servers together at most ``MAX_BYTES_PER_PERSON`` and all of them
together at most ``MAX_BYTES_IN_FLIGHT``; a request past a limit is answered 429 (its body read and dropped, so the
workspace sees the message). A body must arrive at ``BODY_MIN_BYTES_PER_SECOND`` or better (``body_seconds``), so a
slow sender cannot keep its share of the hub held for long.
"""

from __future__ import annotations

from typing import Any, ClassVar

from jupyterhub.apihandlers.base import APIHandler
from server_tokens import token_server
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.httpserver import HTTPServer

GATEWAY_PATH = "/api/internal/workspace-handover/v1/"
# The largest body of each kind (the gateway takes up to 64 MiB too; a file is 5 MiB by default, sent as base64).
MAX_BODY_BYTES = {"files": 64 * 1024 * 1024, "drafts": 64 * 1024, "traffic": 64 * 1024}
# Every hand-over body the hub holds at one time, from all workspaces together, and from one person's workspaces
# (all their projects) together: one researcher cannot keep everyone else's hand-overs waiting.
MAX_BYTES_IN_FLIGHT = 256 * 1024 * 1024
MAX_BYTES_PER_PERSON = MAX_BYTES_IN_FLIGHT // 4
# A body must arrive within a few seconds plus its size at this rate (a slow sender holds its claim no longer). The
# sender is a workspace beside the hub (a bridge on one machine, the pod network on Kubernetes): far faster.
BODY_MIN_SECONDS = 10
BODY_MIN_BYTES_PER_SECOND = 4 * 1024 * 1024
# Any other request body the hub reads (Tornado's default is 100 MB, read into memory before any check).
MAX_REQUEST_BODY_BYTES = 1024 * 1024


def limit_request_bodies(max_body_size: int = MAX_REQUEST_BODY_BYTES) -> None:
    """Make the hub's HTTP server refuse, from its headers, any request body larger than ``max_body_size``.

    JupyterHub makes its HTTPServer without a limit of its own; Tornado's `Configurable.configure` sets the
    keyword arguments every HTTPServer of this process is made with. The hand-over raises it for its own requests.
    """
    HTTPServer.configure(None, max_body_size=max_body_size)


def body_seconds(size: int) -> float:
    """How long a body of ``size`` bytes may take to arrive."""
    return BODY_MIN_SECONDS + size / BODY_MIN_BYTES_PER_SECOND


class InFlight:
    """The hand-overs the hub is holding: one of each kind per server (``<user>/<server>``), ``per_person`` bytes
    from one user's servers together, ``limit`` bytes in all."""

    def __init__(self, limit: int = MAX_BYTES_IN_FLIGHT, per_person: int = MAX_BYTES_PER_PERSON) -> None:
        self.limit = limit
        self.per_person = per_person
        self.held: dict[tuple[str, str], int] = {}

    def claim(self, server: str, op: str, size: int) -> str | None:
        """Hold ``size`` bytes for ``server``'s ``op``; None, or why not (the message for a 429)."""
        if (server, op) in self.held:
            return "Another hand-over from this workspace is still being handed over; try again when it has finished."
        person = server.partition("/")[0]
        if sum(n for (s, _), n in self.held.items() if s.partition("/")[0] == person) + size > self.per_person:
            return ("Your other workspaces are still handing files over; try again when they have finished.")
        if sum(self.held.values()) + size > self.limit:
            return "The hub is busy with other hand-overs; try again in a minute."
        self.held[(server, op)] = size
        return None

    def release(self, server: str, op: str) -> None:
        self.held.pop((server, op), None)


@web.stream_request_body
class HandoverForwarder(APIHandler):
    in_flight: ClassVar[InFlight] = InFlight()

    def initialize(self, gateway_url: str, secret: str) -> None:
        self.gateway_url = gateway_url.rstrip("/")
        self.secret = secret
        self._claim: tuple[str, str] | None = None
        self._refusal: web.HTTPError | None = None
        self._chunks: list[bytes] = []
        self._forwarding = False

    def _server(self) -> tuple[Any, str]:
        user = self.current_user
        own = token_server(self)
        if user is None or own is None:
            raise web.HTTPError(403, "Only a workspace server's own token may hand files over.")
        owner, _, server = own.partition("/")
        if owner != user.name or not server:
            raise web.HTTPError(403, "This token belongs to another user's server.")
        spawner = user.spawners.get(server)
        if spawner is None or not spawner.ready:
            raise web.HTTPError(409, "The workspace is not running.")
        return user, server

    async def prepare(self) -> None:
        """Before any of the body is read: who sends it, how large it says it is, and whether it may come now."""
        await super().prepare()
        op = self.path_args[0]
        user, server = self._server()
        declared = self.request.headers.get("Content-Length", "")
        if not declared.isdigit():
            raise web.HTTPError(411, "Send the hand-over with a Content-Length.")
        size = int(declared)
        if size > MAX_BODY_BYTES[op]:
            raise web.HTTPError(413, "The hand-over is too large.")
        refusal = self.in_flight.claim(f"{user.name}/{server}", op, size)
        if refusal is None:
            self._claim = (f"{user.name}/{server}", op)
        else:
            self._refusal = web.HTTPError(429, refusal)
        self.request.connection.set_max_body_size(size)
        self.request.connection.set_body_timeout(body_seconds(size))

    def data_received(self, chunk: bytes) -> None:
        if self._claim is not None:
            self._chunks.append(chunk)

    async def post(self, op: str) -> None:
        if self._refusal is not None:
            raise self._refusal
        if self._claim is None:  # the sender has gone
            return
        self._forwarding = True  # the claim is held until the gateway has answered, whoever waits for it
        try:
            user, server = self._server()  # again: the server may have stopped while the body came
            body, self._chunks = b"".join(self._chunks), []
            forward = HTTPRequest(
                f"{self.gateway_url}{GATEWAY_PATH}{op}", method="POST", body=body,
                headers={"Content-Type": "application/json", "X-Londonsde-Hub-Secret": self.secret,
                         "X-Londonsde-Hub-User": user.name, "X-Londonsde-Hub-Server": server},
                request_timeout=120, follow_redirects=False)
            response = await AsyncHTTPClient().fetch(forward, raise_error=False)
        finally:
            self._release()
        if response.code == 599:  # no answer at all
            raise web.HTTPError(502, "The gateway could not be reached.")
        self.set_status(response.code)
        self.set_header("Content-Type", "application/json")
        self.finish(response.body or b"{}")

    def _release(self) -> None:
        if self._claim is not None:
            self.in_flight.release(*self._claim)
            self._claim = None
        self._chunks = []

    def on_finish(self) -> None:
        self._release()

    def on_connection_close(self) -> None:
        if not self._forwarding:  # the sender went away (or took too long) before the body was all here
            self._release()
        super().on_connection_close()


def handlers(gateway_url: str, secret: str) -> list[tuple[str, type, dict[str, str]]]:
    return [(r"/api/londonsde/handover/(drafts|files|traffic)", HandoverForwarder,
             {"gateway_url": gateway_url, "secret": secret})]
