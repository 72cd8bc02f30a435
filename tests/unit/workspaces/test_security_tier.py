"""The project's security tier as the workspace spec, the spawners' environment and the single-user server see it."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

from gateway.workspaces.kubernetes import kubespawner_overrides, main
from gateway.workspaces.spec import (
    SECURITY_TIER_LABELS,
    TIERS,
    SpecError,
    WorkspaceSpec,
    spec_from_user_options,
)

_MODULE = Path(__file__).resolve().parents[3] / "infra" / "jupyterhub" / "labextension" / "londonsde_security_tier.py"
_spec = importlib.util.spec_from_file_location("londonsde_security_tier", _MODULE)
assert _spec is not None and _spec.loader is not None
server_tier = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(server_tier)

OPTIONS = {"project_id": "p1", "extract_path": "/srv/extracts/p1/current", "tier": "small"}


@pytest.mark.parametrize("tier", ["standard", "high"])
def test_security_tier_round_trips_through_user_options(tier: str) -> None:
    spec = WorkspaceSpec("p1", "/srv/extracts/p1/current", TIERS["small"], security_tier=tier)
    assert spec.to_user_options()["security_tier"] == tier
    back = spec_from_user_options(spec.to_user_options(), "p1")
    assert back == spec and back.security_tier == tier
    assert back.environment()["LONDONSDE_SECURITY_TIER"] == tier


def test_user_options_without_a_security_tier_are_standard() -> None:
    # What a gateway from before the tier sent: every project then was standard.
    assert spec_from_user_options(dict(OPTIONS), "p1").security_tier == "standard"


@pytest.mark.parametrize("bad", ["High", "low", "", " high", "standard ", None, 1, ["high"], "small"])
def test_unknown_security_tiers_are_refused(bad: object) -> None:
    with pytest.raises(SpecError, match="security_tier"):
        spec_from_user_options({**OPTIONS, "security_tier": bad}, "p1")
    with pytest.raises(SpecError, match="security_tier"):
        WorkspaceSpec("p1", "/x", TIERS["small"], security_tier=bad)  # type: ignore[arg-type]


def test_size_tier_and_security_tier_are_separate_options() -> None:
    spec = spec_from_user_options({**OPTIONS, "tier": "large", "security_tier": "high"}, "p1")
    assert spec.tier.name == "large" and spec.security_tier == "high"
    with pytest.raises(SpecError, match="tier must be one of"):
        spec_from_user_options({**OPTIONS, "tier": "high"}, "p1")


def test_every_security_tier_has_a_plain_label() -> None:
    assert SECURITY_TIER_LABELS == {"standard": "Standard", "high": "High: no copy out, no terminals"}


def test_kubernetes_pod_gets_the_security_tier(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    settings = SimpleNamespace(extracts_root="/srv/extracts", extracts_pvc="extracts")
    spec = WorkspaceSpec("p1", "/srv/extracts/p1/v3", TIERS["small"], security_tier="high")
    overrides = kubespawner_overrides(spec, "_u7", settings)  # type: ignore[arg-type]
    assert overrides["environment"]["LONDONSDE_SECURITY_TIER"] == "high"
    assert overrides["extra_labels"]["londonsde.org/security-tier"] == "high"
    monkeypatch.setenv("LONDONSDE_K8S_EXTRACTS_ROOT", "/srv/extracts")
    assert main(["workspace", "--user", "_u7", "--project", "p1", "--extract", "/srv/extracts/p1/v3",
                 "--security-tier", "high"]) == 0
    assert "LONDONSDE_SECURITY_TIER: high" in capsys.readouterr().out


# --- inside the single-user server (infra/jupyterhub/labextension/londonsde_security_tier.py) -------------------

@pytest.mark.parametrize(("environ", "tier", "terminals"), [
    ({"LONDONSDE_SECURITY_TIER": "standard"}, "standard", True),
    ({"LONDONSDE_SECURITY_TIER": "high"}, "high", False),
    ({}, "high", False),  # fail closed: a server started without the setting is high
    ({"LONDONSDE_SECURITY_TIER": "Standard"}, "high", False),
    ({"LONDONSDE_SECURITY_TIER": "standard "}, "high", False),
    ({"LONDONSDE_SECURITY_TIER": ""}, "high", False),
])
def test_server_reads_the_tier_failing_closed(environ: dict[str, str], tier: str, terminals: bool) -> None:
    assert server_tier.security_tier(environ) == tier
    assert server_tier.terminals_enabled(environ) is terminals


@pytest.mark.parametrize(("raw", "limit"), [
    (None, 2000), ("500", 500), ("0", 0), ("-1", 2000), ("abc", 2000), ("99999999", 2000), ("", 2000)])
def test_paste_limit_from_the_environment(raw: str | None, limit: int) -> None:
    environ = {} if raw is None else {"LONDONSDE_PASTE_LIMIT": raw}
    assert server_tier.paste_limit(environ) == limit


def _serverapp(terminals: bool) -> SimpleNamespace:
    log = SimpleNamespace(info=lambda *a: None, critical=lambda *a: None)
    return SimpleNamespace(terminals_enabled=terminals, web_app=SimpleNamespace(settings={}), log=log)


def test_extension_puts_the_tier_into_page_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LONDONSDE_SECURITY_TIER", "high")
    monkeypatch.setenv("LONDONSDE_PASTE_LIMIT", "300")
    app = _serverapp(terminals=False)
    assert server_tier._jupyter_server_extension_points() == [{"module": "londonsde_security_tier"}]
    server_tier._load_jupyter_server_extension(app)
    assert app.web_app.settings["page_config_data"] == {"londonsdeSecurityTier": "high", "londonsdePasteLimit": 300}


def test_extension_stops_a_high_tier_server_that_has_terminals(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LONDONSDE_SECURITY_TIER", "high")
    with pytest.raises(SystemExit):
        server_tier._load_jupyter_server_extension(_serverapp(terminals=True))
    monkeypatch.setenv("LONDONSDE_SECURITY_TIER", "standard")
    app = _serverapp(terminals=True)
    server_tier._load_jupyter_server_extension(app)
    assert app.web_app.settings["page_config_data"]["londonsdeSecurityTier"] == "standard"



def test_paste_limit_travels_to_the_server_environment() -> None:
    spec = WorkspaceSpec("p1", "/x", TIERS["small"], security_tier="high", paste_limit=500)
    back = spec_from_user_options(spec.to_user_options(), "p1")
    assert back.paste_limit == 500 and back.environment()["LONDONSDE_PASTE_LIMIT"] == "500"
    assert spec_from_user_options(dict(OPTIONS), "p1").paste_limit == 2000


@pytest.mark.parametrize("bad", [-1, 1_000_001, "500", 2.5, True, None])
def test_bad_paste_limits_are_refused(bad: object) -> None:
    with pytest.raises(SpecError, match="paste_limit"):
        spec_from_user_options({**OPTIONS, "paste_limit": bad}, "p1")


def test_gateway_setting_bounds_the_paste_limit() -> None:
    from pydantic import ValidationError

    from gateway.config import WorkspaceSettings

    assert WorkspaceSettings().high_tier_paste_limit == 2000
    with pytest.raises(ValidationError):
        WorkspaceSettings(high_tier_paste_limit=-5)
