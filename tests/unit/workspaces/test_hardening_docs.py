"""The operator guide and the researcher's limits table say what the code does."""

from __future__ import annotations

import sys
from pathlib import Path

from gateway.workspaces.spec import GIB, TIERS

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "infra" / "jupyterhub"))
from sandbox_seccomp import CLONE_NAMESPACE_FLAGS, DENIED, filter_bpf  # noqa: E402

OPERATORS = (REPO / "docs" / "operators.md").read_text()
WORKSPACES = (REPO / "docs" / "workspaces.md").read_text()


def test_every_refused_call_is_listed_for_operators() -> None:
    for name in [*DENIED, *CLONE_NAMESPACE_FLAGS]:
        assert f"`{name}`" in OPERATORS, name


def test_disk_sizes_in_the_limits_table_are_the_tiers() -> None:
    for tier in TIERS.values():
        assert f"| {tier.name} |" in WORKSPACES
        row = next(line for line in WORKSPACES.splitlines() if line.startswith(f"| {tier.name} |"))
        assert row.rstrip().endswith(f"| {tier.disk_bytes // GIB} GiB |"), row
        assert f"{tier.name} {tier.disk_bytes // GIB} GiB" in OPERATORS


def test_the_filter_compiles() -> None:
    program = filter_bpf()
    assert len(program) % 8 == 0 and len(program) > 8 * len(DENIED)  # one 8-byte BPF instruction at least per call
