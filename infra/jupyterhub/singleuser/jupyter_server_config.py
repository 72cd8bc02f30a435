"""Server settings for every londonsde workspace (installed into the venv's etc/jupyter)."""

# ruff: noqa: F821  (`c` is injected by jupyter_server)

import londonsde_security_tier  # infra/jupyterhub/labextension/londonsde_security_tier.py

c.ServerApp.jpserver_extensions = {
    # Refuse /files/ (raw download) and /nbconvert/ (export) server-side.
    "londonsde_lockdown": True,
    # Hand chosen files in outputs/ over to the gateway through the hub (read safely, as this user).
    "londonsde_handover": True,
    # Language servers: none installed, and the scan slows every start.
    "jupyter_lsp": False,
    # The project's security tier into JupyterLab's page config (the front-end extension reads it).
    "londonsde_security_tier": True,
}
# No terminals in the high security tier (LONDONSDE_SECURITY_TIER, set by the spawner; anything but "standard" is high).
c.ServerApp.terminals_enabled = londonsde_security_tier.terminals_enabled()
# Hidden files (e.g. .ssh, .local) are not shown or served.
c.ContentsManager.allow_hidden = False
# Nothing to check online from inside a sandbox without a route out.
c.LabApp.news_url = None
# The disabled plugins (see page_config.json) cannot be re-enabled from the UI.
c.LabApp.lock_all_plugins = True
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"
# Kernels that stay idle are shut down, so idle culling of the server can follow.
c.MappingKernelManager.cull_idle_timeout = 3600
c.MappingKernelManager.cull_interval = 300
