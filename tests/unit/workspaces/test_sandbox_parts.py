"""Pure parts of the sandbox spawner: uid allocation, firewall rules, home layout."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from gateway.workspaces.spec import SpecError, workspace_home

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "infra" / "jupyterhub"))
from sandbox_spawner import UidMap, exited, nft_ruleset


def test_uids_are_stable_distinct_and_bounded(tmp_path: Path) -> None:
    uids = UidMap(tmp_path / "uids.json", base=30000, count=2)
    alice, bob = uids.uid_for("alice"), uids.uid_for("bob")
    assert (alice, bob) == (30000, 30001)
    assert UidMap(tmp_path / "uids.json", base=30000, count=2).uid_for("alice") == alice
    with pytest.raises(RuntimeError, match="exhausted"):
        uids.uid_for("carol")


def test_uid_map_refuses_odd_names(tmp_path: Path) -> None:
    with pytest.raises(SpecError):
        UidMap(tmp_path / "uids.json", base=30000, count=5).uid_for("../root")


def test_firewall_admits_only_the_hub_port_from_the_bridge() -> None:
    rules = nft_ruleset("londonsde_br", "br", "10.9.0.1", 8081)
    accepts = [line.strip() for line in rules.splitlines() if line.strip().endswith("accept")]
    assert accepts == [
        'iifname "br" ct state established,related accept',
        'iifname "br" ip daddr 10.9.0.1 tcp dport 8081 ct state new accept',
    ]
    assert 'iifname "br" counter drop' in rules  # everything else from sandboxes
    assert 'oifname "br" counter drop' in rules  # nothing routed into them


def test_homes_live_under_the_project() -> None:
    assert workspace_home("/srv/homes", "alice", "p1") == Path("/srv/homes/p1/alice")
    with pytest.raises(SpecError):
        workspace_home("/srv/homes", "alice", "../p1")


def test_a_zombie_workspace_process_counts_as_exited() -> None:
    """After a hub crash a killed workspace may stay a zombie until init reaps it; signal 0 still reaches a zombie,
    so the restarted hub took it for running and left its sandbox in place (a CI run caught it)."""
    import os
    import signal
    import subprocess
    import time

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert not exited(child.pid)
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while not exited(child.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(child.pid, 0)  # a zombie, not reaped: signal 0 still succeeds
        assert exited(child.pid)
    finally:
        child.wait()
    assert exited(child.pid)
