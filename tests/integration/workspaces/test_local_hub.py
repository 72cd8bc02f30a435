"""The gateway's adapter against a real hub with the plain local spawner (the baseline)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.workspaces.hub import HubClient, HubError
from gateway.workspaces.spec import TIERS, WorkspaceSpec
from gateway.workspaces.tickets import mint_ticket
from tests.integration.workspaces.workspace_client import browser_login

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "infra" / "jupyterhub"))
from devhub import DevHub, default_singleuser_prefix

REASONS = []
if os.geteuid() != 0:
    REASONS.append("must run as root (servers run as a mapped uid)")
if not (default_singleuser_prefix() / "bin" / "jupyterhub-singleuser").exists():
    REASONS.append("single-user env missing: run infra/jupyterhub/build_singleuser_env.sh")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(REASONS), reason="; ".join(REASONS))]


@pytest.fixture(scope="module")
def hub() -> Iterator[DevHub]:
    with DevHub(spawner="local") as running:
        yield running


def test_gateway_lifecycle_through_the_rest_api(hub: DevHub) -> None:
    client = HubClient(hub.url, hub.gateway_token)
    extract = hub.make_extract("p7", {"manifest.json": "{}"})
    spec = WorkspaceSpec("p7", str(extract), TIERS["small"])

    created = client.ensure_user("carol")
    assert created["name"] == "carol"
    assert client.ensure_user("carol")["name"] == "carol"  # idempotent
    assert client.server_status("carol", "p7") is None

    client.start_server("carol", spec)
    ready = client.wait_until_ready("carol", "p7", timeout=60)
    assert ready.ready and ready.url == "/user/carol/p7/"
    assert ready.user_options == spec.to_user_options()
    assert client.start_server("carol", spec).ready  # already running: no second spawn

    listed = {(s.username, s.server_name): s for s in client.list_servers()}
    assert listed[("carol", "p7")].last_activity is not None

    session, landing = browser_login(hub.url, mint_ticket(hub.ticket_secret, "carol", "p7"))
    assert landing.status_code == 200 and landing.url.endswith("/user/carol/p7/lab/tree/welcome.ipynb")

    client.stop_server("carol", "p7")
    assert client.server_status("carol", "p7") is None
    assert session.get(f"{hub.url}/user/carol/p7/api/status", timeout=10).status_code != 200


def test_spawn_with_bad_options_is_refused(hub: DevHub) -> None:
    client = HubClient(hub.url, hub.gateway_token)
    client.ensure_user("dave")
    outside = hub.root / "elsewhere"
    outside.mkdir(exist_ok=True)
    with pytest.raises(HubError):
        client.start_server("dave", WorkspaceSpec("p8", str(outside), TIERS["small"]))
        client.wait_until_ready("dave", "p8", timeout=30)
    assert client.server_status("dave", "p8") is None


def test_wrong_token_is_refused(hub: DevHub) -> None:
    with pytest.raises(HubError) as error:
        HubClient(hub.url, "not-the-token").ensure_user("erin")
    assert error.value.status == 403


def test_idle_culler_stops_an_idle_workspace() -> None:
    """The culler runs as a hub service with only its own scopes, and stops idle named servers."""
    quick = {"LONDONSDE_HUB_CULL_IDLE_SECONDS": "3", "LONDONSDE_HUB_CULL_EVERY_SECONDS": "1"}
    with DevHub(spawner="local", extra_env=quick) as hub:
        client = HubClient(hub.url, hub.gateway_token)
        extract = hub.make_extract("p9", {"manifest.json": "{}"})
        client.ensure_user("frank")
        client.start_server("frank", WorkspaceSpec("p9", str(extract), TIERS["small"]))
        client.wait_until_ready("frank", "p9", timeout=60)
        deadline = time.monotonic() + 60
        while client.server_status("frank", "p9") is not None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert client.server_status("frank", "p9") is None
        culls = [line for line in hub.log_path.read_text().splitlines() if "DELETE" in line and "idle-culler" in line]
        assert any("/users/frank/servers/p9" in line for line in culls)


def test_the_hub_handles_the_gateways_user_options_and_refuses_unknown_ones_at_once(hub: DevHub) -> None:
    """The hub used to log "Received unhandled user_options" on every spawn: the config now declares the hook
    (apply_user_options), which checks them with the spawner's own parser before anything starts."""
    client = HubClient(hub.url, hub.gateway_token)
    client.ensure_user("frank")
    extract = hub.make_extract("p9", {"manifest.json": "{}"})
    client.start_server("frank", WorkspaceSpec("p9", str(extract), TIERS["small"]))
    client.wait_until_ready("frank", "p9", timeout=60)
    client.stop_server("frank", "p9")
    log = hub.log_path.read_text(errors="replace")
    assert "Spawning" in log or "frank" in log  # the spawn is in this log
    assert "unhandled user_options" not in log

    with pytest.raises(HubError) as refused:  # refused when asked, not after a failed start
        client._request("POST", "/users/frank/servers/p9", ok=(201, 202),
                        json={"project_id": "p9", "extract_path": str(extract), "surprise": "1"})
    assert refused.value.status == 400
    assert client.server_status("frank", "p9") is None
