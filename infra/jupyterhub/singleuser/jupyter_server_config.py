"""Server settings for every londonsde workspace (installed into the venv's etc/jupyter)."""

# ruff: noqa: F821  (`c` is injected by jupyter_server)

import os
import sys

import londonsde_security_tier  # infra/jupyterhub/labextension/londonsde_security_tier.py

c.ServerApp.jpserver_extensions = {
    # Refuse /files/ (raw download) and /nbconvert/ (export) server-side.
    "londonsde_lockdown": True,
    # The contents API serves notebooks and text only (size limit, no base64, no copies of /data), refuses
    # uploads, and counts every byte sent to the browser for the gateway (singleuser/londonsde_egress.py).
    "londonsde_egress": True,
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
# Kernel specs and lab extensions only from the read-only environment, never from the home: the server serves a
# kernel spec's files (/kernelspecs/<name>/<file>) and a lab extension's (/lab/extensions/..., themes, licences) to
# the browser as they are, so a folder the researcher could write there would be a download door for any file.
# (KernelSpecManager.kernel_dirs is not configurable: londonsde_egress sets it when it loads.)
c.KernelSpecManager.allowed_kernelspecs = {"python3", "ir"}  # Python and R (IRkernel, infra/jupyterhub/r)
_labextensions = [os.path.join(sys.prefix, "share", "jupyter", "labextensions")]
c.LabServerApp.labextensions_path = _labextensions
c.LabApp.labextensions_path = _labextensions
