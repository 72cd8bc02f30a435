"""Every hub setting comes from the gateway's settings, and two instances on one host cannot collide (finding 6)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.config import Settings, WorkspaceSettings
from gateway.workspaces.hub_process import hub_environment

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "infra" / "jupyterhub"))
from hub_settings import HostConflict, HubSettings, claim_host_resources, load_settings

# Hub settings that are not the gateway's business: where the hub's own tools and secrets are, how it logs,
# its loopback address when not sandboxing, the host-wide registry, and the template every home starts from.
HUB_ONLY = {"chp_path", "gateway_token_file", "ticket_secret_file", "handover_secret_file", "notebooks_template",
            "cleanup_servers", "log_level", "hub_ip", "host_registry"}

SECOND = {"hub_url": "http://127.0.0.1:8100", "proxy_api_port": 8101, "hub_api_port": 8181, "bridge": "sdebr1",
          "subnet": "10.214.0.0/24", "uid_base": 40000, "uid_count": 5000,
          "runtime_root": "/run/londonsde/second"}


def hub_settings_for(settings: Settings, registry: Path) -> HubSettings:
    env = hub_environment(settings)
    env["LONDONSDE_HUB_HOST_REGISTRY"] = str(registry)
    return load_settings(env)


def test_every_hub_setting_is_passed_from_the_gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LONDONSDE_SINGLEUSER_PREFIX", raising=False)
    settings = Settings(instance_dir=tmp_path / "b", workspaces=WorkspaceSettings(**SECOND))
    env = hub_environment(settings)
    passed = {key.removeprefix("LONDONSDE_HUB_").lower() for key in env if key.startswith("LONDONSDE_HUB_")}
    assert {f.name for f in dataclasses.fields(HubSettings)} - HUB_ONLY == passed
    hub = hub_settings_for(settings, tmp_path / "instances.json")
    assert (hub.public_port, hub.proxy_api_port, hub.hub_port) == (8100, 8101, 8181)
    assert (hub.bridge, hub.subnet, hub.uid_base, hub.uid_count) == ("sdebr1", "10.214.0.0/24", 40000, 5000)
    assert hub.state_dir == tmp_path / "b" / "hub" and hub.runtime_root == Path("/run/londonsde/second")
    assert hub.homes_root == tmp_path / "b" / "homes" and hub.extracts_root == tmp_path / "b" / "extracts"


def test_two_instances_side_by_side_and_a_third_that_collides(tmp_path: Path) -> None:
    registry = tmp_path / "instances.json"
    first = Settings(instance_dir=tmp_path / "a")
    second = Settings(instance_dir=tmp_path / "b", workspaces=WorkspaceSettings(**SECOND))
    for settings in (first, second):
        settings.hub_state_dir.mkdir(parents=True)
        claim_host_resources(hub_settings_for(settings, registry))
    claim_host_resources(hub_settings_for(first, registry))  # the same instance again (a restart) is fine
    third = Settings(instance_dir=tmp_path / "c", workspaces=WorkspaceSettings(
        **{**SECOND, "uid_base": 44000, "bridge": "sdebr2", "subnet": "10.215.0.0/24", "hub_url":
           "http://127.0.0.1:8200", "proxy_api_port": 8201, "hub_api_port": 8281}))
    third.hub_state_dir.mkdir(parents=True)
    with pytest.raises(HostConflict, match="uids 44000-48999 overlap 40000-44999"):
        claim_host_resources(hub_settings_for(third, registry))
    # An instance whose folder is gone is forgotten, and its range can be used again.
    for path in sorted(second.instance_dir.rglob("*"), reverse=True):
        path.rmdir()
    second.instance_dir.rmdir()
    claim_host_resources(hub_settings_for(third, registry))


@pytest.mark.parametrize("change", [{"bridge": "sdebr0"}, {"subnet": "10.213.0.128/25"}, {"proxy_api_port": 8001}])
def test_a_shared_bridge_subnet_or_port_is_refused(tmp_path: Path, change: dict[str, object]) -> None:
    registry = tmp_path / "instances.json"
    first = Settings(instance_dir=tmp_path / "a")
    other = Settings(instance_dir=tmp_path / "b", workspaces=WorkspaceSettings(**{**SECOND, **change}))
    for settings in (first, other):
        settings.hub_state_dir.mkdir(parents=True)
    claim_host_resources(hub_settings_for(first, registry))
    with pytest.raises(HostConflict):
        claim_host_resources(hub_settings_for(other, registry))


@pytest.mark.parametrize("bad", [{"bridge": "Bad-Name"}, {"bridge": "averyverylongname"}, {"subnet": "10.0.0.0/30"},
                                 {"hub_api_port": 8000}, {"uid_base": 10}, {"subnet": "not a subnet"}])
def test_bad_hub_settings_are_refused_by_the_gateway(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        WorkspaceSettings(**bad)
