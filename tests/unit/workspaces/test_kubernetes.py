from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml

from gateway.workspaces.kubernetes import (
    KubernetesSettings,
    apply_hub_config,
    kubespawner_overrides,
    render_z2jh_values,
    spawner_pre_spawn_hook,
    to_yaml,
)
from gateway.workspaces.spec import TIERS, SpecError, WorkspaceSpec

REPO = Path(__file__).resolve().parents[3]
SETTINGS = KubernetesSettings(extracts_root="/srv/extracts", extracts_pvc="extracts")
SPEC = WorkspaceSpec("p1", "/srv/extracts/p1/v3", TIERS["medium"])
MAX_REQUEST_BODY_BYTES = 1 << 20  # the 1 MiB docs/operators.md promises for any request body the hub reads


def test_values_deny_all_egress_and_keep_tokens_out() -> None:
    values = yaml.safe_load(to_yaml(render_z2jh_values(SETTINGS)))
    policy = values["singleuser"]["networkPolicy"]
    assert policy["enabled"] is True
    assert policy["egress"] == []
    assert policy["egressAllowRules"] and not any(policy["egressAllowRules"].values())
    spawner = values["hub"]["config"]["KubeSpawner"]
    assert spawner["automount_service_account_token"] is False
    assert spawner["allow_privilege_escalation"] is False
    assert spawner["container_security_context"]["capabilities"] == {"drop": ["ALL"]}
    assert spawner["uid"] != 0 and values["singleuser"]["uid"] == spawner["uid"]
    assert values["singleuser"]["allowPrivilegeEscalation"] is False


def test_values_let_only_the_gateway_spawn() -> None:
    values = render_z2jh_values(SETTINGS)
    roles = values["hub"]["loadRoles"]
    assert not any(scope.split("!")[0] in ("servers", "admin:servers", "self") for scope in roles["user"]["scopes"])
    assert "users:activity!user" in roles["user"]["scopes"]
    assert roles["londonsde-gateway"]["services"] == ["gateway"]
    assert "servers" in roles["londonsde-gateway"]["scopes"]
    assert values["hub"]["allowNamedServers"] is True
    assert values["cull"]["removeNamedServers"] is False


def test_workspace_mounts_its_extract_read_only() -> None:
    overrides = kubespawner_overrides(SPEC, "alice", SETTINGS)
    (extract_volume,) = [v for v in overrides["volumes"] if v["name"] == "extract"]
    assert extract_volume["persistentVolumeClaim"] == {"claimName": "extracts", "readOnly": True}
    (extract_mount,) = [m for m in overrides["volume_mounts"] if m["name"] == "extract"]
    assert extract_mount == {"name": "extract", "mountPath": "/data", "subPath": "p1/v3", "readOnly": True}
    assert overrides["mem_limit"] == TIERS["medium"].memory_bytes
    assert overrides["cpu_limit"] == TIERS["medium"].cpus
    (home,) = [v for v in overrides["volumes"] if v["name"] == "home"]
    assert home["persistentVolumeClaim"]["claimName"] == "{pvc_name}"
    assert overrides["storage_capacity"] == "50Gi"  # the medium tier's disk quota is the home volume's size


@pytest.mark.parametrize(
    "extract", ["/srv/extracts", "/srv/other/p1", "/srv/extracts/../p1", "/srv/extracts/p2/v1", "p1/v3"]
)
def test_extract_outside_the_project_is_refused(extract: str) -> None:
    with pytest.raises(SpecError):
        kubespawner_overrides(WorkspaceSpec("p1", extract, TIERS["small"]), "alice", SETTINGS)


def test_settings_from_environment() -> None:
    settings = KubernetesSettings.from_env({"LONDONSDE_K8S_UID": "1234", "LONDONSDE_K8S_NAMESPACE": "tre"})
    assert (settings.uid, settings.namespace) == (1234, "tre")


def test_checked_in_values_match_the_renderer() -> None:
    checked_in = yaml.safe_load((REPO / "infra" / "kubernetes" / "values.yaml").read_text())
    assert checked_in == render_z2jh_values(KubernetesSettings())


def _field(obj: Any, camel: str, snake: str) -> Any:
    """KubeSpawner's pod mixes client model objects and the plain dicts it was configured with."""
    return obj[camel] if isinstance(obj, dict) else getattr(obj, snake)


def test_kubespawner_builds_the_pod_we_expect(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """KubeSpawner itself renders the pod (no cluster is contacted)."""
    kubespawner = pytest.importorskip("kubespawner")
    from jupyterhub.objects import Hub
    from traitlets.config import Config

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "render",
                "clusters": [{"name": "render", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "render", "user": {"token": "unused"}}],
                "contexts": [{"name": "render", "context": {"cluster": "render", "user": "render"}}],
            }
        )
    )
    monkeypatch.setattr("kubernetes_asyncio.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
    config = Config()
    apply_hub_config(config, SETTINGS)

    async def render() -> Any:
        user = mock.Mock()
        user.name, user.id, user.url, user.escaped_name = "alice", 1, "/user/alice/", "alice"
        orm_spawner = mock.Mock()
        orm_spawner.name, orm_spawner.server = "p1", None
        spawner = kubespawner.KubeSpawner(_mock=True, config=config, user=user, hub=Hub(), orm_spawner=orm_spawner)
        spawner.user_options = SPEC.to_user_options()
        spawner_pre_spawn_hook(SETTINGS)(spawner)
        return await spawner.get_pod_manifest()

    pod = asyncio.run(render())
    container = pod.spec.containers[0]
    assert pod.spec.automount_service_account_token is False
    assert pod.spec.enable_service_links is False
    assert pod.spec.security_context["fsGroup"] == SETTINGS.fs_gid
    security = container.security_context
    assert security["allowPrivilegeEscalation"] is False and security["runAsNonRoot"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    mounts = {_field(m, "mountPath", "mount_path"): m for m in container.volume_mounts}
    data = mounts["/data"]
    assert (_field(data, "readOnly", "read_only"), _field(data, "subPath", "sub_path")) == (True, "p1/v3")
    assert int(container.resources.limits["memory"]) == TIERS["medium"].memory_bytes
    assert pod.metadata.labels["londonsde.org/project"] == "p1"
    volumes = {_field(v, "name", "name"): v for v in pod.spec.volumes}
    home_claim = _field(
        _field(volumes["home"], "persistentVolumeClaim", "persistent_volume_claim"), "claimName", "claim_name"
    )
    assert home_claim.startswith("home-alice--p1")  # per researcher AND per project
    extract_claim = _field(volumes["extract"], "persistentVolumeClaim", "persistent_volume_claim")
    assert _field(extract_claim, "claimName", "claim_name") == "extracts"
    assert _field(extract_claim, "readOnly", "read_only") is True


_RUN_EXTRA_CONFIG = """
import json, sys
from traitlets.config import Config
from tornado.httpserver import HTTPServer
from jupyterhub import apihandlers
c = Config()
exec(sys.stdin.read(), {"c": c})
activity = [route[1].__name__ for route in apihandlers.default_handlers if route[0].endswith("/activity")]
print(json.dumps({
    "pre_spawn_hook": callable(c.KubeSpawner.pre_spawn_hook),
    "handlers": [[route, handler.__name__, kwargs] for route, handler, kwargs in c.JupyterHub.extra_handlers],
    "max_body_size": HTTPServer._Configurable__impl_kwargs.get("max_body_size"),
    "activity": activity,
}))
"""


def _run_extra_config(tmp_path: Path, secret: str | None) -> subprocess.CompletedProcess[str]:
    """The rendered hub.extraConfig, run as the chart's hub runs it: against the hub's config object, with
    infra/jupyterhub on the path (as the hub image has it) and the rendered environment."""
    values = yaml.safe_load((REPO / "infra" / "kubernetes" / "values.yaml").read_text())
    env = {**os.environ, **values["hub"]["extraEnv"],
           "PYTHONPATH": os.pathsep.join([str(REPO / "infra" / "jupyterhub"), str(REPO)]),
           "LONDONSDE_K8S_GATEWAY_URL": "http://gateway.test:5000",
           "LONDONSDE_K8S_HANDOVER_SECRET_FILE": str(tmp_path / "secret")}
    if secret is not None:
        (tmp_path / "secret").write_text(secret)
    return subprocess.run([sys.executable, "-c", _RUN_EXTRA_CONFIG], input=values["hub"]["extraConfig"]["londonsde"],
                          env=env, capture_output=True, text=True, timeout=120)


def test_the_chart_hub_installs_the_hand_over_its_limits_and_the_activity_check(tmp_path: Path) -> None:
    ran = _run_extra_config(tmp_path, "s3cret-shared-with-the-gateway\n")
    assert ran.returncode == 0, ran.stderr
    installed = json.loads(ran.stdout)
    assert installed["pre_spawn_hook"] is True
    (handover,) = installed["handlers"]
    assert handover[0].startswith("/api/londonsde/handover/") and handover[1] == "HandoverForwarder"
    assert handover[2] == {"gateway_url": "http://gateway.test:5000", "secret": "s3cret-shared-with-the-gateway"}
    assert installed["max_body_size"] == MAX_REQUEST_BODY_BYTES
    assert installed["activity"] == ["OwnServerActivityHandler"]


@pytest.mark.parametrize("secret", [None, "", "  \n"])
def test_the_chart_hub_does_not_start_without_the_hand_over_secret(tmp_path: Path, secret: str | None) -> None:
    ran = _run_extra_config(tmp_path, secret)
    assert ran.returncode != 0
    assert ("is empty" if secret is not None else "No such file") in ran.stderr
