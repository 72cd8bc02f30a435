"""The hub's part of the output hand-over: pass a workspace's file on to the gateway, naming who sent it.

A sandbox can reach only the hub's API port, so a workspace sends the file it hands over here
(``POST /hub/api/londonsde/handover/<drafts|files>``), authenticated by its server's own hub API token. That
token's scopes name exactly one server (``access:servers!server=<user>/<server>``); a person's browser
session, which holds ``access:servers!user=...`` instead, is refused, and so is a server that is not running.
The body is forwarded unchanged to the gateway with the hub<->gateway secret and the user and server the
token belongs to; the gateway checks the workspace credential inside the body and applies every rule.
"""

from __future__ import annotations

from typing import Any

from jupyterhub.apihandlers.base import APIHandler
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

GATEWAY_PATH = "/api/internal/workspace-handover/v1/"
MAX_BODY_BYTES = 64 * 1024 * 1024


class HandoverForwarder(APIHandler):
    def initialize(self, gateway_url: str, secret: str) -> None:
        self.gateway_url = gateway_url.rstrip("/")
        self.secret = secret

    def _server(self) -> tuple[Any, str]:
        user = self.current_user
        if user is None or not getattr(self, "_token_authenticated", False) or getattr(user, "kind", "user") != "user":
            raise web.HTTPError(403, "Only a workspace server's own token may hand files over.")
        scopes = set(self.expanded_scopes)
        if "access:servers" in scopes or any(s.startswith("access:servers!user") for s in scopes):
            raise web.HTTPError(403, "Only a workspace server's own token may hand files over.")
        servers = {s.split("!server=", 1)[1] for s in scopes if s.startswith("access:servers!server=")}
        if len(servers) != 1:
            raise web.HTTPError(403, "Only a workspace server's own token may hand files over.")
        owner, _, server = servers.pop().partition("/")
        if owner != user.name or not server:
            raise web.HTTPError(403, "This token belongs to another user's server.")
        spawner = user.spawners.get(server)
        if spawner is None or not spawner.ready:
            raise web.HTTPError(409, "The workspace is not running.")
        return user, server

    async def post(self, op: str) -> None:
        user, server = self._server()
        if len(self.request.body) > MAX_BODY_BYTES:
            raise web.HTTPError(413, "The hand-over is too large.")
        forward = HTTPRequest(
            f"{self.gateway_url}{GATEWAY_PATH}{op}", method="POST", body=self.request.body,
            headers={"Content-Type": "application/json", "X-Londonsde-Hub-Secret": self.secret,
                     "X-Londonsde-Hub-User": user.name, "X-Londonsde-Hub-Server": server},
            request_timeout=120, follow_redirects=False)
        response = await AsyncHTTPClient().fetch(forward, raise_error=False)
        if response.code == 599:  # no answer at all
            raise web.HTTPError(502, "The gateway could not be reached.")
        self.set_status(response.code)
        self.set_header("Content-Type", "application/json")
        self.finish(response.body or b"{}")


def handlers(gateway_url: str, secret: str) -> list[tuple[str, type, dict[str, str]]]:
    return [(r"/api/londonsde/handover/(drafts|files|traffic)", HandoverForwarder,
             {"gateway_url": gateway_url, "secret": secret})]
