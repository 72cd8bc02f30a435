"""The hub configuration file, loaded as JupyterHub loads it (no hub is started)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tornado.httpserver import HTTPServer
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

from gateway.workspaces.hub import GATEWAY_SCOPES

CONFIG = Path(__file__).resolve().parents[3] / "infra" / "jupyterhub" / "jupyterhub_config.py"


def load(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, spawner: str,
         server_kwargs: dict[str, object] | None = None) -> Config:
    """The config as the hub loads it; ``server_kwargs`` receives what it set for the hub's HTTPServer, which is
    then reset (the setting is for the whole process, and this one is pytest's)."""
    monkeypatch.setenv("LONDONSDE_HUB_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("LONDONSDE_HUB_SPAWNER", spawner)
    monkeypatch.setenv("LONDONSDE_HUB_CULL_IDLE_SECONDS", "1800")
    monkeypatch.setenv("LONDONSDE_HUB_HOST_REGISTRY", str(tmp_path / "instances.json"))
    umask = os.umask(0o022)
    os.umask(umask)
    saved = HTTPServer._save_configuration()
    try:
        config = PyFileConfigLoader(CONFIG.name, path=str(CONFIG.parent)).load_config()
        if server_kwargs is not None:
            server_kwargs.update(HTTPServer._save_configuration()[1])
        return config
    finally:
        os.umask(umask)  # the config sets the hub's umask (077); keep this test process's own
        HTTPServer._restore_configuration(saved)


@pytest.mark.parametrize("spawner", ["local", "kubernetes"])
def test_config_roles_state_and_secrets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, spawner: str) -> None:
    server_kwargs: dict[str, object] = {}
    c = load(monkeypatch, tmp_path, spawner, server_kwargs)
    assert server_kwargs == {"max_body_size": 1024 * 1024}  # any request body the hub reads (the hand-over's aside)
    state = tmp_path / "state"
    assert c.JupyterHub.db_url == f"sqlite:///{state / 'jupyterhub.sqlite'}"
    assert c.JupyterHub.cookie_secret_file == str(state / "cookie-secret")
    assert c.ConfigurableHTTPProxy.auth_token == (state / "proxy-token").read_text().strip()
    for secret in ("proxy-token", "gateway-token", "ticket-secret"):
        assert (state / secret).stat().st_mode & 0o777 == 0o600
    roles = {role["name"]: role for role in c.JupyterHub.load_roles}
    assert "users:activity!user" in roles["user"]["scopes"]
    assert not any(s.split("!")[0] in ("self", "servers", "admin:servers") for s in roles["user"]["scopes"])
    assert roles["londonsde-gateway"]["scopes"] == list(GATEWAY_SCOPES)
    assert roles["idle-culler"]["services"] == ["idle-culler"]
    culler = next(s for s in c.JupyterHub.services if s["name"] == "idle-culler")
    assert "--timeout=1800" in culler["command"]
    assert c.JupyterHub.allow_named_servers is True


def test_kubernetes_mode_renders_kubespawner_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    c = load(monkeypatch, tmp_path, "kubernetes")
    assert c.JupyterHub.spawner_class == "kubespawner.KubeSpawner"
    assert c.KubeSpawner.automount_service_account_token is False
    assert c.KubeSpawner.allow_privilege_escalation is False
    assert callable(c.KubeSpawner.pre_spawn_hook)


def test_egress_settings_reach_every_workspace_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """workspaces.contents_max_bytes and traffic_report_seconds: gateway settings -> hub -> server environment."""
    from gateway.config import Settings, WorkspaceSettings
    from gateway.workspaces.hub_process import hub_environment

    settings = Settings(instance_dir=tmp_path / "i", workspaces=WorkspaceSettings(contents_max_bytes=123_456,
                                                                                 traffic_report_seconds=45))
    env = hub_environment(settings)
    for key in ("LONDONSDE_HUB_CONTENTS_MAX_BYTES", "LONDONSDE_HUB_TRAFFIC_REPORT_SECONDS"):
        monkeypatch.setenv(key, env[key])
    c = load(monkeypatch, tmp_path, "local")
    assert c.Spawner.environment == {"LONDONSDE_CONTENTS_MAX_BYTES": "123456",
                                     "LONDONSDE_TRAFFIC_REPORT_SECONDS": "45"}
    monkeypatch.setenv("LONDONSDE_HUB_CONTENTS_MAX_BYTES", "10")
    with pytest.raises(ValueError, match="contents_max_bytes"):
        load(monkeypatch, tmp_path, "local")
