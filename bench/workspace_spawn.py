"""Benchmark: time from the gateway's spawn request to a ready workspace, sandboxed vs plain.

Starts two real hubs in the same run, one with the sandbox spawner and one with the plain
LocalProcessSpawner baseline (same single-user venv, same uid switch, same home preparation; no
namespaces, cgroups or bubblewrap), and spawns through the REST API exactly as the gateway does
(`HubClient.start_server` then `wait_until_ready`). Spawns alternate between the two hubs so
machine noise hits both alike; each hub gets one untimed warm-up spawn first.

    sudo .venv/bin/python bench/workspace_spawn.py [--runs 5]

Needs root, bubblewrap, nftables, cgroup v1 and the single-user env
(infra/jupyterhub/build_singleuser_env.sh). Target: sandbox median <= 1.5x baseline.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "infra" / "jupyterhub")]

from devhub import DevHub, default_singleuser_prefix, missing_facilities  # noqa: E402

from gateway.workspaces.hub import HubClient  # noqa: E402
from gateway.workspaces.spec import TIERS, WorkspaceSpec  # noqa: E402

TARGET_RATIO = 1.5


def spawn_once(hub: DevHub, client: HubClient, user: str, spec: WorkspaceSpec) -> float:
    """Seconds from the spawn request to a ready server; the server is stopped afterwards."""
    started = time.perf_counter()
    client.start_server(user, spec)
    client.wait_until_ready(user, spec.project_id, timeout=120, interval=0.05)
    elapsed = time.perf_counter() - started
    client.stop_server(user, spec.project_id)
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    missing = missing_facilities(default_singleuser_prefix())
    if missing:
        print("cannot run: " + "; ".join(missing), file=sys.stderr)
        return 2

    timings: dict[str, list[float]] = {"sandbox": [], "local": []}
    with DevHub(spawner="sandbox") as sandbox_hub, DevHub(spawner="local") as local_hub:
        hubs = {"sandbox": sandbox_hub, "local": local_hub}
        clients = {name: HubClient(h.url, h.gateway_token, timeout=60) for name, h in hubs.items()}
        specs = {}
        for name, hub in hubs.items():
            extract = hub.make_extract("bench", {"manifest.json": '{"project_id": "bench", "tables": []}'})
            specs[name] = WorkspaceSpec("bench", str(extract), TIERS["small"])
            clients[name].ensure_user("researcher")
            spawn_once(hub, clients[name], "researcher", specs[name])  # warm-up, not counted
        for _ in range(args.runs):
            for name in ("sandbox", "local"):
                timings[name].append(spawn_once(hubs[name], clients[name], "researcher", specs[name]))

    medians = {name: statistics.median(values) for name, values in timings.items()}
    ratio = medians["sandbox"] / medians["local"]
    print(f"{'spawner':<26}{'runs':>6}{'median s':>11}{'min s':>9}{'max s':>9}")
    rows = (("sandbox (SandboxSpawner)", "sandbox"), ("baseline (LocalProcess)", "local"))
    for label, name in rows:
        values = timings[name]
        print(f"{label:<26}{len(values):>6}{medians[name]:>11.3f}{min(values):>9.3f}{max(values):>9.3f}")
    verdict = "within" if ratio <= TARGET_RATIO else "OVER"
    print(f"{'ratio sandbox/baseline':<26}{'':>6}{ratio:>11.2f}   ({verdict} target {TARGET_RATIO}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
