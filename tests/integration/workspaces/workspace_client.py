"""A researcher's browser, reduced to what the tests need: ticket sign-in and running code.

Signs in with a gateway ticket (following the hub's OAuth redirects with cookies, as a browser
does), then talks to the single-user server's REST API and kernel websocket with those cookies.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import requests
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from gateway.workspaces.hub import ticket_login_url


def browser_login(hub_url: str, ticket: str) -> tuple[requests.Session, requests.Response]:
    session = requests.Session()
    # No pooled keep-alive connections: the proxy (node) closes idle ones after a few seconds,
    # and reusing one at that moment fails with "connection reset", which a browser would retry.
    session.headers["Connection"] = "close"
    response = session.get(ticket_login_url(hub_url, ticket), timeout=30)
    return session, response


@dataclass
class ExecResult:
    stdout: str = ""
    error: str | None = None
    kernel_died: bool = False
    messages: list[dict[str, Any]] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.stdout.strip().splitlines()[-1])


class Workspace:
    """One signed-in researcher's view of one running server."""

    def __init__(self, hub_url: str, session: requests.Session, username: str, server_name: str) -> None:
        self.base = f"{hub_url}/user/{username}/{server_name}"
        self.path_prefix = f"/user/{username}/{server_name}/"
        self.session = session

    @property
    def xsrf(self) -> str:
        return self.session.cookies.get("_xsrf", path=self.path_prefix) or ""

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"X-XSRFToken": self.xsrf, **kwargs.pop("headers", {})}
        return self.session.request(method, f"{self.base}{path}", headers=headers, timeout=30, **kwargs)

    def start_kernel(self, name: str = "python3") -> str:
        response = self.api("POST", "/api/kernels", json={"name": name})
        response.raise_for_status()
        return str(response.json()["id"])

    def execute(self, kernel_id: str, code: str, timeout: float = 60.0) -> ExecResult:
        return asyncio.run(asyncio.wait_for(self._execute(kernel_id, code), timeout))

    async def _execute(self, kernel_id: str, code: str) -> ExecResult:
        ws_url = self.base.replace("http://", "ws://") + f"/api/kernels/{kernel_id}/channels"
        cookies = "; ".join(f"{c.name}={c.value}" for c in self.session.cookies if self.path_prefix.startswith(c.path))
        request = HTTPRequest(
            f"{ws_url}?session_id={uuid.uuid4().hex}",
            headers={"Cookie": cookies, "X-XSRFToken": self.xsrf},
        )
        conn = await websocket_connect(request)
        msg_id = uuid.uuid4().hex
        conn.write_message(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "msg_type": "execute_request",
                        "session": uuid.uuid4().hex,
                        "username": "",
                        "version": "5.3",
                    },
                    "parent_header": {},
                    "metadata": {},
                    "content": {
                        "code": code,
                        "silent": False,
                        "store_history": True,  # as JupyterLab runs a researcher's cell (IPython's In)
                        "user_expressions": {},
                        "allow_stdin": False,
                        "stop_on_error": True,
                    },
                    "channel": "shell",
                    "buffers": [],
                }
            )
        )
        result = ExecResult()
        try:
            while True:
                raw = await conn.read_message()
                if raw is None:  # server closed the socket: the kernel went away
                    result.kernel_died = True
                    return result
                msg = json.loads(raw)
                result.messages.append(msg)
                kind = msg.get("msg_type")
                content = msg.get("content", {})
                if kind == "status" and content.get("execution_state") in ("restarting", "dead"):
                    result.kernel_died = True
                    return result
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                if kind == "stream" and content.get("name") == "stdout":
                    result.stdout += content.get("text", "")
                elif kind == "error":
                    result.error = f"{content.get('ename')}: {content.get('evalue')}"
                elif kind == "status" and content.get("execution_state") == "idle":
                    return result
        finally:
            conn.close()
