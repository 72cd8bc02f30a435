"""Kubernetes path: the same workspace data rendered as KubeSpawner settings and Z2JH values.

Beyond one machine the hub runs on Kubernetes (Zero-to-JupyterHub chart, KubeSpawner). The
gateway's spawn options do not change: `project_id`, `extract_path` (a path under the extracts
root, which on Kubernetes is a shared ReadWriteMany volume, claim `extracts_pvc`) and `tier`.
This module turns them into:

* `kubespawner_overrides`: per-server KubeSpawner settings (extract mounted read-only at /data
  from a subPath of the extracts claim, a home claim per researcher per project, tier limits);
* `apply_hub_config`: hub-wide KubeSpawner settings (uid/fs_gid, no privilege escalation, all
  capabilities dropped, no service-account token, no service links);
* `render_z2jh_values`: the chart values (named servers, roles, gateway service, idle culler,
  NetworkPolicy denying all egress but the hub).

Pure Python (PyYAML only); nothing here talks to a cluster. See docs/operators-kubernetes.md.
Run ``python -m gateway.workspaces.kubernetes values`` to print values.yaml.
"""

from __future__ import annotations

import argparse
import os
import posixpath
import sys
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import yaml

from gateway.workspaces.hub import GATEWAY_SCOPES
from gateway.workspaces.spec import (
    DEFAULT_SECURITY_TIER,
    GIB,
    SECURITY_TIERS,
    TIERS,
    WELCOME_URL,
    SpecError,
    WorkspaceSpec,
    spec_from_user_options,
    tier_named,
)

HOME_MOUNT = "/home/jovyan"
DATA_MOUNT = "/data"
# The researcher role on the hub: use own servers and report activity; never start them.
USER_SCOPES = ["access:servers!user", "read:users!user", "read:servers!user", "users:activity!user"]


@dataclass(frozen=True)
class KubernetesSettings:
    """Cluster-side choices. Environment: LONDONSDE_K8S_<NAME> (upper case)."""

    namespace: str = "londonsde"
    image: str = "registry.invalid/londonsde/singleuser"
    image_tag: str = "latest"
    extracts_root: str = "/srv/londonsde/extracts"
    extracts_pvc: str = "londonsde-extracts"
    home_capacity: str = "10Gi"
    storage_class: str = ""
    uid: int = 1000
    fs_gid: int = 100
    cull_idle_seconds: int = 3600
    cull_every_seconds: int = 300
    # Where the hub forwards the outputs a workspace hands over: the gateway as the hub reaches it (its
    # `workspaces.gateway_internal_url`). The placeholder cannot resolve, so an unset value fails loudly.
    gateway_url: str = "http://gateway.invalid:5000"
    # The hand-over secret the hub shares with the gateway (a Secret mounted read-only in the hub's pod).
    handover_secret_file: str = "/etc/londonsde/handover-secret/secret"  # noqa: S105 (a path, not a secret)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> KubernetesSettings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"LONDONSDE_K8S_{f.name.upper()}")
            if raw is not None:
                values[f.name] = int(raw) if f.type in ("int", int) else raw
        return cls(**values)


def extract_sub_path(spec: WorkspaceSpec, settings: KubernetesSettings) -> str:
    """The extract's path inside the extracts claim; refuses anything outside the root.

    Pass a version directory (e.g. ``<root>/p1/v3``), not the ``current`` symlink: the kubelet
    does not follow symlinks in subPath mounts out of the volume, and a running workspace
    should keep the version it started with.
    """
    root = posixpath.normpath(settings.extracts_root)
    path = posixpath.normpath(spec.extract)
    if not posixpath.isabs(spec.extract) or not path.startswith(root + "/"):
        raise SpecError(f"extract_path must be under {root}")
    sub = path[len(root) + 1 :]
    if sub.split("/")[0] != spec.project_id:
        raise SpecError("extract_path must belong to the project")
    return sub


def kubespawner_overrides(spec: WorkspaceSpec, username: str, settings: KubernetesSettings) -> dict[str, Any]:
    """KubeSpawner trait values for one workspace server."""
    tier = spec.tier
    return {
        "cpu_limit": tier.cpus,
        "cpu_guarantee": tier.cpus / 2,
        "mem_limit": tier.memory_bytes,
        "mem_guarantee": tier.memory_bytes // 2,
        # The home volume's size is the tier's disk quota (the claim is made on the first start; a bigger tier
        # later needs a storage class that allows expansion).
        "storage_capacity": f"{tier.disk_bytes // GIB}Gi",
        "volumes": [
            {
                "name": "extract",
                "persistentVolumeClaim": {"claimName": settings.extracts_pvc, "readOnly": True},
            },
            # "{pvc_name}" is expanded by KubeSpawner from pvc_name_template (per user and server).
            {"name": "home", "persistentVolumeClaim": {"claimName": "{pvc_name}"}},
        ],
        "volume_mounts": [
            {
                "name": "extract",
                "mountPath": DATA_MOUNT,
                "subPath": extract_sub_path(spec, settings),
                "readOnly": True,
            },
            {"name": "home", "mountPath": HOME_MOUNT},
        ],
        "extra_labels": {"londonsde.org/project": spec.project_id, "londonsde.org/tier": tier.name,
                         "londonsde.org/security-tier": spec.security_tier},
        "environment": {"LONDONSDE_PROJECT_ID": spec.project_id, "LONDONSDE_TIER": tier.name,
                        **spec.environment()},
    }


def spawner_pre_spawn_hook(settings: KubernetesSettings) -> Callable[[Any], None]:
    """A KubeSpawner.pre_spawn_hook applying the gateway's user_options to the pod."""

    def hook(spawner: Any) -> None:
        spec = spec_from_user_options(dict(spawner.user_options or {}), spawner.name)
        for trait, value in kubespawner_overrides(spec, spawner.user.name, settings).items():
            setattr(spawner, trait, value)

    return hook


def hub_kubespawner_config(settings: KubernetesSettings) -> dict[str, Any]:
    """Hub-wide KubeSpawner settings: who the container runs as and what it may never do."""
    return {
        "namespace": settings.namespace,
        "image": f"{settings.image}:{settings.image_tag}",
        "uid": settings.uid,
        "gid": settings.fs_gid,
        "fs_gid": settings.fs_gid,
        "allow_privilege_escalation": False,
        "privileged": False,
        "automount_service_account_token": False,
        "container_security_context": {
            "runAsNonRoot": True,
            "runAsUser": settings.uid,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "extra_pod_config": {"enableServiceLinks": False},
        "default_url": WELCOME_URL,
        "cmd": ["jupyterhub-singleuser"],
        # One home claim per researcher per project ({user_server} = <user>--<server name>).
        "storage_pvc_ensure": True,
        "pvc_name_template": "home-{user_server}",
        "storage_capacity": settings.home_capacity,
        "storage_class": settings.storage_class or None,
        "storage_access_modes": ["ReadWriteOnce"],
    }


def apply_hub_config(c: Any, settings: KubernetesSettings) -> None:
    """Set the hub-wide KubeSpawner traits on a traitlets config object."""
    for trait, value in hub_kubespawner_config(settings).items():
        if value is not None:
            setattr(c.KubeSpawner, trait, value)


# What this repo's jupyterhub_config.py adds to the hub, installed the same way on the chart's hub (whose image holds
# infra/jupyterhub on its path, as the authenticator class already needs): the pre-spawn hook; the activity check
# (server_tokens.py: a server's activity only from its own token); the hand-over forwarder and its limits, and the
# 1 MiB limit on any other request body (handover_handler.py). A missing or empty hand-over secret stops the hub.
EXTRA_CONFIG = """\
from pathlib import Path

from handover_handler import handlers as handover_handlers
from handover_handler import limit_request_bodies
from server_tokens import install_activity_handler

from gateway.workspaces.kubernetes import KubernetesSettings, spawner_pre_spawn_hook

londonsde = KubernetesSettings.from_env()
c.KubeSpawner.pre_spawn_hook = spawner_pre_spawn_hook(londonsde)
install_activity_handler()
londonsde_handover_secret = Path(londonsde.handover_secret_file).read_text().strip()
if not londonsde_handover_secret:
    raise RuntimeError(f"the hand-over secret {londonsde.handover_secret_file} is empty")
c.JupyterHub.extra_handlers = handover_handlers(londonsde.gateway_url, londonsde_handover_secret)
limit_request_bodies()
"""


def render_z2jh_values(settings: KubernetesSettings) -> dict[str, Any]:
    """Zero-to-JupyterHub chart values for londonsde workspaces."""
    kubespawner = {k: v for k, v in hub_kubespawner_config(settings).items() if v is not None}
    return {
        "hub": {
            "allowNamedServers": True,
            "namedServerLimitPerUser": 0,
            "config": {
                "JupyterHub": {"authenticator_class": "ticket_authenticator.TicketAuthenticator"},
                "TicketAuthenticator": {"secret_file": "/etc/londonsde/ticket-secret/secret",
                                        # on the hub's own volume, so used tickets survive a hub restart
                                        "spent_tickets_file": "/srv/jupyterhub/spent_tickets.sqlite"},
                "KubeSpawner": kubespawner,
            },
            "loadRoles": {
                "user": {"scopes": list(USER_SCOPES)},
                "londonsde-gateway": {"services": ["gateway"], "scopes": list(GATEWAY_SCOPES)},
            },
            # The token itself comes from a Secret (see docs/operators-kubernetes.md).
            "services": {"gateway": {}},
            "extraEnv": {f"LONDONSDE_K8S_{f.name.upper()}": str(getattr(settings, f.name)) for f in fields(settings)},
            "extraConfig": {"londonsde": EXTRA_CONFIG},
            "extraVolumes": [
                {"name": "ticket-secret", "secret": {"secretName": "londonsde-ticket-secret"}},
                {"name": "handover-secret", "secret": {"secretName": "londonsde-handover-secret"}},
            ],
            "extraVolumeMounts": [
                {"name": "ticket-secret", "mountPath": "/etc/londonsde/ticket-secret", "readOnly": True},
                {"name": "handover-secret", "mountPath": posixpath.dirname(settings.handover_secret_file),
                 "readOnly": True},
            ],
            "networkPolicy": {"enabled": True},
        },
        "proxy": {"chp": {"networkPolicy": {"enabled": True}}},
        "singleuser": {
            "image": {"name": settings.image, "tag": settings.image_tag},
            "uid": settings.uid,
            "fsGid": settings.fs_gid,
            "allowPrivilegeEscalation": False,
            "defaultUrl": WELCOME_URL,
            "cmd": "jupyterhub-singleuser",
            # Homes are claimed per server by the pre-spawn hook, not by the chart.
            "storage": {"type": "none"},
            "networkPolicy": {
                "enabled": True,
                "egress": [],
                "egressAllowRules": {
                    "cloudMetadataServer": False,
                    "dnsPortsCloudMetadataServer": False,
                    "dnsPortsKubeSystemNamespace": False,
                    "dnsPortsPrivateIPs": False,
                    "nonPrivateIPs": False,
                    "privateIPs": False,
                },
                "interNamespaceAccessLabels": "ignore",
                "allowedIngressPorts": [],
            },
        },
        "cull": {
            "enabled": settings.cull_idle_seconds > 0,
            "timeout": settings.cull_idle_seconds,
            "every": settings.cull_every_seconds,
            "removeNamedServers": False,
            "users": False,
        },
        "scheduling": {"userScheduler": {"enabled": False}},
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the hub's extra config) as literal blocks, so values.yaml reads as the code it holds."""


_Dumper.add_representer(str, lambda dumper, value: dumper.represent_scalar(
    "tag:yaml.org,2002:str", value, style="|" if "\n" in value else None))


def to_yaml(document: dict[str, Any]) -> str:
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, default_flow_style=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render londonsde Kubernetes settings.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("values", help="Zero-to-JupyterHub values.yaml")
    one = commands.add_parser("workspace", help="KubeSpawner settings for one workspace")
    one.add_argument("--user", required=True)
    one.add_argument("--project", required=True)
    one.add_argument("--extract", required=True)
    one.add_argument("--tier", default="small", choices=sorted(TIERS))
    one.add_argument("--security-tier", default=DEFAULT_SECURITY_TIER, choices=SECURITY_TIERS)
    args = parser.parse_args(argv)
    settings = KubernetesSettings.from_env()
    if args.command == "values":
        sys.stdout.write(to_yaml(render_z2jh_values(settings)))
    else:
        spec = WorkspaceSpec(args.project, args.extract, tier_named(args.tier), security_tier=args.security_tier)
        sys.stdout.write(to_yaml(kubespawner_overrides(spec, args.user, settings)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
