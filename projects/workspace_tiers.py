"""The workspace tiers a project is approved with: the size tiers an application asks for and the security tiers
the DAC chooses. The domain owns them; gateway.workspaces.spec turns them into spawn options and limits.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SizeTier:
    name: str
    memory_bytes: int
    cpus: float
    max_pids: int
    disk_bytes: int  # the home's quota (sandbox: an ext4 image of this size; Kubernetes: the volume request)
    description: str


GIB = 1024**3

TIERS: dict[str, SizeTier] = {
    "small": SizeTier("small", 2 * GIB, 1.0, 512, 10 * GIB, "2 GiB memory, 1 CPU, 10 GiB disk"),
    "medium": SizeTier("medium", 8 * GIB, 2.0, 1024, 50 * GIB, "8 GiB memory, 2 CPUs, 50 GiB disk"),
    "large": SizeTier("large", 32 * GIB, 4.0, 2048, 200 * GIB, "32 GiB memory, 4 CPUs, 200 GiB disk"),
}
DEFAULT_TIER = "small"

# The project's SECURITY tier (not the size tier above): chosen by the DAC at approval (projects.security_tier),
# passed to the workspace as LONDONSDE_SECURITY_TIER. "high" disables terminals and loads the JupyterLab extension
# that blocks copy out and large pastes (infra/jupyterhub/labextension). The one mapping of labels shown to people.
SECURITY_TIER_LABELS: dict[str, str] = {
    "standard": "Standard",
    "high": "High: no copy out, no terminals",
}
SECURITY_TIERS = tuple(SECURITY_TIER_LABELS)
DEFAULT_SECURITY_TIER = "standard"
