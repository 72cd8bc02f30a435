"""What one workspace can make the hub do for it, against a real hub (plain local spawner) and a stand-in gateway.

A workspace reaches the hub's API port and holds its server's own hub token (every kernel has it in its
environment). With them it must not be able to:

* make the hub hold large request bodies in memory: the hub reads at most 1 MiB of any request body, reads a
  hand-over's body only once the token is a running server's own, and takes one hand-over at a time from each
  workspace (the next is answered 429);
* keep another of its researcher's workspaces from being culled (and metered) by reporting activity for it.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from gateway.workspaces.hub import HubClient
from gateway.workspaces.spec import TIERS, WorkspaceSpec
from gateway.workspaces.tickets import mint_ticket
from tests.integration.workspaces.test_local_hub import pytestmark  # noqa: F401 (a local hub: the same needs)
from tests.integration.workspaces.workspace_client import Workspace, browser_login

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "infra" / "jupyterhub"))
from devhub import DevHub, free_port

USER = "_u7"
PROJECTS = ("p1", "p2")


class StandInGateway:
    """Answers every forwarded hand-over 200; one whose JSON body has ``"hold": true`` waits for `release`."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str, int]] = []  # (path, hub server header, body length)
        self.holding = threading.Event()
        self.release = threading.Event()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                gateway.received.append((self.path, self.headers.get("X-Londonsde-Hub-Server", ""), len(body)))
                if json.loads(body or b"{}").get("hold"):
                    gateway.holding.set()
                    gateway.release.wait(60)
                answer = b'{"ok": true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def gateway() -> Iterator[StandInGateway]:
    stand_in = StandInGateway()
    try:
        yield stand_in
    finally:
        stand_in.stop()


@pytest.fixture(scope="module")
def hub(gateway: StandInGateway) -> Iterator[DevHub]:
    forward_to = {"LONDONSDE_HUB_GATEWAY_URL": f"http://127.0.0.1:{gateway.port}"}
    with DevHub(spawner="local", extra_env=forward_to) as running:
        yield running


@pytest.fixture(scope="module")
def tokens(hub: DevHub) -> dict[str, str]:
    """Each running server's own hub API token, as a kernel in that workspace reads it from its environment."""
    client = HubClient(hub.url, hub.gateway_token)
    client.ensure_user(USER)
    found = {}
    for project in PROJECTS:
        extract = hub.make_extract(project, {"manifest.json": "{}"})
        client.start_server(USER, WorkspaceSpec(project, str(extract), TIERS["small"]))
        client.wait_until_ready(USER, project, timeout=60)
        session, response = browser_login(hub.url, mint_ticket(hub.ticket_secret, USER, project))
        assert response.status_code == 200, response.text[:300]
        workspace = Workspace(hub.url, session, USER, project)
        result = workspace.execute(workspace.start_kernel(),
                                   "import json, os; print(json.dumps(os.environ['JUPYTERHUB_API_TOKEN']))")
        assert result.error is None, result.error
        found[project] = result.json()
    return found


def hub_api(hub: DevHub) -> str:
    """The hub's own API port, the one address a sandbox can reach."""
    return f"http://127.0.0.1:{hub.hub_port}/hub/api"


def first_answer_to(hub: DevHub, path: str, declared: int, headers: dict[str, str], timeout: float = 10) -> str:
    """Send only the headers of a POST declaring a ``declared``-byte body; the status line the hub answers with.

    A hub that means to read the body first answers nothing (it waits for the bytes): that is a timeout here.
    """
    lines = [f"POST /hub/api{path} HTTP/1.1", f"Host: 127.0.0.1:{hub.hub_port}", "Content-Type: application/json",
             f"Content-Length: {declared}", *[f"{k}: {v}" for k, v in headers.items()], "", ""]
    with socket.create_connection(("127.0.0.1", hub.hub_port), timeout=timeout) as sock:
        sock.sendall("\r\n".join(lines).encode())
        try:
            answer = sock.recv(4096)
        except TimeoutError:
            return "no answer: the hub waited for the body"
    return answer.split(b"\r\n", 1)[0].decode()


def test_the_hub_refuses_a_large_body_before_reading_it(hub: DevHub, gateway: StandInGateway,
                                                         tokens: dict[str, str]) -> None:
    auth = {"Authorization": f"token {tokens['p1']}"}
    # any hub endpoint: at most 1 MiB, refused from the headers (Tornado's default was 100 MB, read into memory)
    assert first_answer_to(hub, f"/users/{USER}/activity", 50_000_000, auth).startswith("HTTP/1.1 400")
    assert first_answer_to(hub, "/users", 2 * 1024 * 1024, {}).startswith("HTTP/1.1 400")
    # the hand-over: refused from the headers unless a running server's own token sends it, and within its limit
    assert first_answer_to(hub, "/londonsde/handover/files", 50_000_000, {"Authorization": "token nope"}) \
        .startswith("HTTP/1.1 403")
    assert first_answer_to(hub, "/londonsde/handover/files", 65 * 1024 * 1024, auth).startswith("HTTP/1.1 413")
    assert first_answer_to(hub, "/londonsde/handover/traffic", 1024 * 1024, auth).startswith("HTTP/1.1 413")
    # an ordinary hand-over still goes through, whole
    body = json.dumps({"credential": "c", "data": "x" * (3 * 1024 * 1024)})
    sent = requests.post(f"{hub_api(hub)}/londonsde/handover/files", data=body, headers=auth, timeout=30)
    assert sent.status_code == 200, sent.text
    assert ("/api/internal/workspace-handover/v1/files", "p1", len(body)) in gateway.received


def test_one_hand_over_at_a_time_from_each_workspace(hub: DevHub, gateway: StandInGateway,
                                                      tokens: dict[str, str]) -> None:
    def post(project: str, op: str, body: dict[str, Any]) -> requests.Response:
        return requests.post(f"{hub_api(hub)}/londonsde/handover/{op}", data=json.dumps(body), timeout=20,
                             headers={"Authorization": f"token {tokens[project]}"})

    large = "x" * (2 * 1024 * 1024)
    gateway.holding.clear()
    gateway.release.clear()
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(post, "p1", "files", {"hold": True, "data": large})
        try:
            assert gateway.holding.wait(20), "the first hand-over never reached the gateway"
            before = len(gateway.received)
            began = time.monotonic()
            second = post("p1", "files", {"data": large})  # the same workspace, while its first is in flight
            assert second.status_code == 429, second.text
            assert "still being handed over" in second.json()["message"]
            assert time.monotonic() - began < 10
            assert len(gateway.received) == before  # never forwarded
            # the same workspace's traffic report and another workspace's hand-over are not held up
            assert post("p1", "traffic", {"bytes": 5}).status_code == 200
            assert post("p2", "files", {"data": large}).status_code == 200
        finally:
            gateway.release.set()
        assert first.result(timeout=30).status_code == 200
    assert post("p1", "files", {"data": "again"}).status_code == 200  # the slot is free once the first is done


def server_activity(hub: DevHub, project: str) -> datetime | None:
    status = HubClient(hub.url, hub.gateway_token).server_status(USER, project)
    assert status is not None
    return status.last_activity


def test_a_workspace_reports_activity_for_its_own_server_only(hub: DevHub, tokens: dict[str, str]) -> None:
    """Activity up to 59 minutes ahead is taken: a forged report would keep project B's server from being culled."""
    stamp = (datetime.now(UTC) + timedelta(minutes=30)).replace(microsecond=0)
    report = {"last_activity": stamp.isoformat()}

    def post(token_of: str, servers: dict[str, Any], **kwargs: Any) -> requests.Response:
        return requests.post(f"{hub_api(hub)}/users/{USER}/activity", json={"servers": servers}, timeout=10,
                             headers={"Authorization": f"token {tokens[token_of]}"}, **kwargs)

    for servers in ({"p2": report}, {"p1": report, "p2": report}):
        forged = post("p1", servers)  # project A's workspace, for project B's server
        assert forged.status_code == 403, forged.text
        assert "for itself only" in forged.json()["message"]
    browser, _ = browser_login(hub.url, mint_ticket(hub.ticket_secret, USER, "p2"))  # the researcher's session
    by_browser = browser.post(f"{hub.url}/hub/api/users/{USER}/activity", json={"servers": {"p2": report}}, timeout=10,
                              headers={"Referer": f"{hub.url}/hub/home",
                                       "X-XSRFToken": browser.cookies.get("_xsrf", path="/hub/") or ""})
    assert by_browser.status_code == 403 and "for itself only" in by_browser.json()["message"], by_browser.text
    for project in PROJECTS:
        seen = server_activity(hub, project)
        assert seen is None or seen < stamp - timedelta(minutes=20), (project, seen)  # nothing was recorded

    own = post("p2", {"p2": report})  # a server's own report counts, as the single-user server sends it
    assert own.status_code == 200, own.text
    assert server_activity(hub, "p2") == stamp
