"""JupyterHub configuration for londonsde workspaces.

Run (as root, from the repo's virtualenv):

    LONDONSDE_HUB_STATE_DIR=/var/lib/londonsde/hub \\
    .venv/bin/jupyterhub -f infra/jupyterhub/jupyterhub_config.py

All settings come from `hub_settings.load_settings()` (LONDONSDE_HUB_* environment variables or
the JSON file in LONDONSDE_HUB_SETTINGS_FILE); see docs/workspaces.md for the list.
"""

# ruff: noqa: F821  (`c` is injected by JupyterHub when it executes this file)

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for entry in (str(HERE), str(HERE.parents[1])):
    if entry not in sys.path:
        sys.path.insert(0, entry)

from handover_handler import handlers as handover_handlers  # noqa: E402
from handover_handler import limit_request_bodies  # noqa: E402
from hub_settings import claim_host_resources, load_settings, read_or_create_secret  # noqa: E402
from server_tokens import install_activity_handler  # noqa: E402
from ticket_authenticator import TicketAuthenticator  # noqa: E402

from gateway.workspaces.hub import GATEWAY_SCOPES  # noqa: E402
from gateway.workspaces.spec import WELCOME_URL, spec_from_user_options  # noqa: E402

os.umask(0o077)  # whatever the hub writes (its database, secrets, logs) is the hub's alone
settings = load_settings()
settings.state_dir.mkdir(parents=True, exist_ok=True)
os.chmod(settings.state_dir, 0o700)
if settings.spawner != "kubernetes":  # uids, bridge, subnet and ports of this host: refuse another's
    claim_host_resources(settings)

# -- where the hub keeps things (never the current directory) ---------------------------------
c.JupyterHub.db_url = settings.database_url
c.JupyterHub.cookie_secret_file = str(settings.cookie_secret_file)
c.JupyterHub.pid_file = str(settings.state_dir / "jupyterhub.pid")
c.JupyterHub.data_files_path = str(Path(sys.prefix) / "share" / "jupyterhub")
c.JupyterHub.log_level = settings.log_level

# -- proxy: configurable-http-proxy started and stopped by the hub ----------------------------
c.JupyterHub.bind_url = f"http://{settings.public_ip}:{settings.public_port}{settings.base_url}"
c.ConfigurableHTTPProxy.command = [str(settings.chp_path)]
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{settings.proxy_api_port}"
c.ConfigurableHTTPProxy.auth_token = read_or_create_secret(settings.proxy_token_file)
c.ConfigurableHTTPProxy.pid_file = str(settings.state_dir / "proxy.pid")
c.ConfigurableHTTPProxy.should_start = True
c.JupyterHub.cleanup_servers = settings.cleanup_servers
c.JupyterHub.cleanup_proxy = settings.cleanup_servers

# -- sign-in: gateway-minted tickets only ------------------------------------------------------
c.JupyterHub.authenticator_class = TicketAuthenticator
c.TicketAuthenticator.secret_file = str(settings.ticket_secret_path)
c.TicketAuthenticator.spent_tickets_file = str(settings.state_dir / "spent_tickets.sqlite")
read_or_create_secret(settings.ticket_secret_path)

# -- roles: only the gateway spawns ------------------------------------------------------------
c.JupyterHub.allow_named_servers = True
c.JupyterHub.named_server_limit_per_user = 0
c.JupyterHub.load_roles = [
    {
        # Replaces the default `user` role ("self"), which would let researchers start, stop and
        # configure servers. They may use their running servers and see their own model;
        # users:activity!user keeps activity reports (and hence idle culling) working. JupyterHub cannot
        # narrow it to one server, so the hub's activity endpoint is replaced (below) by one that takes a
        # server's activity only from that server's own token.
        # The hub warns at start that this role lacks 'self': that is the point (docs/operators.md).
        "name": "user",
        "scopes": ["access:servers!user", "read:users!user", "read:servers!user", "users:activity!user"],
    },
    {"name": "londonsde-gateway", "services": ["gateway"], "scopes": list(GATEWAY_SCOPES)},
]
c.JupyterHub.services = [{"name": "gateway", "api_token": read_or_create_secret(settings.gateway_token_path)}]
install_activity_handler()  # server_tokens.py: project A's server cannot keep project B's from being culled

# -- outputs: a workspace hands files over through the hub to the gateway (handover_handler.py) ------------
c.JupyterHub.extra_handlers = handover_handlers(settings.gateway_url,
                                                read_or_create_secret(settings.handover_secret_path))
# Any request body the hub reads is at most 1 MiB, refused from its headers (Tornado's default is 100 MB, held in
# the memory of the hub, which every workspace depends on); the hand-over raises it for its own, checked, requests.
limit_request_bodies()

if settings.cull_idle_seconds > 0:
    c.JupyterHub.services.append(
        {
            "name": "idle-culler",
            "command": [
                sys.executable,
                "-m",
                "jupyterhub_idle_culler",
                f"--timeout={settings.cull_idle_seconds}",
                f"--cull-every={settings.cull_every_seconds}",
                "--remove-named-servers=false",
            ],
        }
    )
    c.JupyterHub.load_roles.append(
        {
            "name": "idle-culler",
            "services": ["idle-culler"],
            "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        }
    )

# -- the single-user servers -------------------------------------------------------------------
def check_user_options(spawner, user_options):
    """The gateway's spawn request (project_id, extract_path, tier, ...), checked when it arrives: a malformed one
    is refused with HTTP 400 before anything starts. The spawner reads the options again when it starts (and
    checks the extract against its root). Declaring the hook also tells the hub the options are handled."""
    spec_from_user_options(dict(user_options or {}), spawner.name)


c.Spawner.apply_user_options = check_user_options
c.Spawner.cmd = [str(settings.singleuser_prefix / "bin" / "jupyterhub-singleuser")]
c.Spawner.default_url = WELCOME_URL  # the first open lands in the welcome notebook
c.Spawner.start_timeout = settings.start_timeout
c.Spawner.http_timeout = settings.start_timeout
# Browser egress policy and traffic reports, read by the server's londonsde_egress extension.
c.Spawner.environment = {
    "LONDONSDE_CONTENTS_MAX_BYTES": str(settings.contents_max_bytes),
    "LONDONSDE_TRAFFIC_REPORT_SECONDS": str(settings.traffic_report_seconds),
}
c.LocalProcessSpawner.term_timeout = 5
c.LocalProcessSpawner.interrupt_timeout = 5

workspace_traits = {
    "extracts_root": str(settings.extracts_root),
    "homes_root": str(settings.homes_root),
    "notebooks_template": str(settings.notebooks_template),
    "state_dir": str(settings.state_dir),
    "uid_base": settings.uid_base,
    "uid_count": settings.uid_count,
    "singleuser_prefix": str(settings.singleuser_prefix),
}
for trait, value in workspace_traits.items():
    setattr(c.WorkspaceSpawnerBase, trait, value)

if settings.spawner == "sandbox":
    import home_quota
    from sandbox_spawner import SandboxSpawner, ensure_bridge

    # Homes keep their files in loop-mounted images; after a reboot, mount them again (as they were before it).
    home_quota.mount_all(settings.homes_root)

    # The hub API listens on the bridge so sandboxes (with no other route) can report to it.
    bridge_ip = ensure_bridge(settings.bridge, settings.subnet, settings.hub_port)
    c.JupyterHub.hub_bind_url = f"http://{bridge_ip}:{settings.hub_port}"
    c.JupyterHub.spawner_class = SandboxSpawner
    c.SandboxSpawner.bridge = settings.bridge
    c.SandboxSpawner.subnet = settings.subnet
    c.SandboxSpawner.hub_api_port = settings.hub_port
    c.SandboxSpawner.runtime_root = str(settings.runtime_root)
elif settings.spawner == "local":
    from sandbox_spawner import PlainLocalSpawner

    c.JupyterHub.hub_bind_url = f"http://{settings.hub_ip}:{settings.hub_port}"
    c.JupyterHub.spawner_class = PlainLocalSpawner
else:  # kubernetes: rendered from the same project data; see docs/operators-kubernetes.md
    from gateway.workspaces.kubernetes import KubernetesSettings, apply_hub_config, spawner_pre_spawn_hook

    kube = KubernetesSettings.from_env()
    c.JupyterHub.hub_bind_url = f"http://0.0.0.0:{settings.hub_port}"
    c.JupyterHub.hub_connect_ip = os.environ.get("LONDONSDE_HUB_CONNECT_IP", "hub")
    c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
    apply_hub_config(c, kube)
    c.KubeSpawner.pre_spawn_hook = spawner_pre_spawn_hook(kube)
