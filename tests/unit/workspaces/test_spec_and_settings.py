from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from gateway.workspaces.spec import TIERS, SpecError, WorkspaceSpec, spec_from_user_options

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "infra" / "jupyterhub"))
from hub_settings import load_settings


def test_user_options_round_trip() -> None:
    spec = WorkspaceSpec("p1", "/srv/extracts/p1/current", TIERS["medium"])
    assert spec_from_user_options(spec.to_user_options(), "p1") == spec


@pytest.mark.parametrize(
    ("options", "server", "message"),
    [
        ({"project_id": "p1", "extract_path": "/x", "tier": "huge"}, "p1", "tier"),
        ({"project_id": "p1", "extract_path": "/x"}, "p2", "server name"),
        ({"project_id": "../p1", "extract_path": "/x"}, "../p1", "project_id"),
        ({"project_id": "P1", "extract_path": "/x"}, "P1", "project_id"),
        ({"project_id": "p1"}, "p1", "extract_path"),
        ({"project_id": "p1", "extract_path": "/x", "image": "evil"}, "p1", "unknown"),
    ],
)
def test_bad_user_options_are_refused(options: dict[str, str], server: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        spec_from_user_options(options, server)


def test_tiers_grow_with_size() -> None:
    small, medium, large = TIERS["small"], TIERS["medium"], TIERS["large"]
    assert small.memory_bytes < medium.memory_bytes < large.memory_bytes
    assert small.cpus <= medium.cpus <= large.cpus


def test_settings_env_overrides_file(tmp_path: Path) -> None:
    file = tmp_path / "hub.json"
    file.write_text(json.dumps({"spawner": "local", "public_port": 9000, "state_dir": str(tmp_path)}))
    settings = load_settings({"LONDONSDE_HUB_SETTINGS_FILE": str(file), "LONDONSDE_HUB_PUBLIC_PORT": "9100"})
    assert settings.spawner == "local"
    assert settings.public_port == 9100
    assert settings.gateway_token_path == tmp_path / "gateway-token"
    assert settings.database_url == f"sqlite:///{tmp_path / 'jupyterhub.sqlite'}"


def test_settings_refuse_unknown_names_and_spawners(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="SPAWNER"):
        load_settings({"LONDONSDE_HUB_SPAWNER": "docker"})
    file = tmp_path / "hub.json"
    file.write_text(json.dumps({"spwaner": "local"}))
    with pytest.raises(ValueError, match="unknown"):
        load_settings({"LONDONSDE_HUB_SETTINGS_FILE": str(file)})


def test_bridge_address_is_first_host_of_subnet() -> None:
    assert load_settings({"LONDONSDE_HUB_SUBNET": "10.213.5.0/24"}).bridge_ip == "10.213.5.1"
