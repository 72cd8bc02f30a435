"""Load benchmark: the gateway under gunicorn against a bare Flask endpoint served the same way.

Creates a throwaway PostgreSQL database and instance folder, runs `sde init` and `sde demo --seed-only`
into them, then starts two servers with the same layout (gunicorn, gthread, --workers x --threads, by default
what `sde serve` picks: one worker per CPU, at least 2, x 4 threads; SO_REUSEPORT per worker; access log on):
`sde serve` and a bare Flask app answering one short page (the baseline). A second process (this
script with --drive) is the client: aiohttp, one session (cookie jar, keep-alive connection) per simulated
user, closed loop with no think time, loopback only (127.0.0.1).

Phases, each --users concurrent users for --duration seconds or --max-requests requests, whichever first:
baseline (bare endpoint); public register readers (/register); signed-in researchers (/home, /projects/,
their first project's page); output checkers (/outputs/queue); then the three groups mixed. Users sign in
through the real /login form (CSRF token, session cookie) before timing starts; the sign-in rate limits are
raised for the run (every user signs in from 127.0.0.1 at once), everything else is the default configuration.
If `wrk` is installed, it measures the baseline and /register too, as a cross-check that the Python client is
not the limit.

It prints one table: requests/s, p50/p95/p99 latency, errors, and throughput as a ratio of the baseline's.
Targets (issue 18; reported, not asserted): /register >= 50% of the baseline's throughput, researchers' and
checkers' pages >= 25%, p95 < 250 ms for the mixed load, zero errors everywhere.
Everything started is stopped and the database dropped at the end, even on error.

    .venv/bin/python bench/load.py [--users 50] [--duration 10] [--max-requests 20000] [--workers N] [--threads N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support import sandbox as _sandbox  # noqa: E402
from tests.support.sandbox import HOST, PYTHON, SDE, Sandbox, free_port, wait_http  # noqa: E402

ADMIN_URL = os.environ.get("BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
PASSWORD = "demo-password"  # the documented demo password (gateway/demo.py)
# Issue 18's targets, per page group (by the start of its label): the least throughput as a share of the baseline's
# in the same run, and the highest p95 in ms; None: no target of that kind. Every row: zero errors.
TARGETS: dict[str, tuple[float | None, float | None]] = {
    "public": (0.5, None), "researcher": (0.25, None), "checker": (0.25, None), "mixed": (None, 250.0)}


# --- a throwaway database, instance folder and child processes (tests/support/sandbox.py; also bench/faults.py) -

@contextlib.contextmanager
def sandbox(prefix: str, config: dict[str, Any] | None = None) -> Iterator[Sandbox]:
    with _sandbox.sandbox(prefix, ADMIN_URL, config) as box:
        yield box


# --- the baseline server: a bare Flask app under the gateway's own gunicorn settings -----------------------

def bare_app() -> Any:
    from flask import Flask

    app = Flask("baseline")

    @app.get("/")
    def hello() -> str:
        return "<!doctype html><title>baseline</title><p>Hello</p>"

    return app


def serve_baseline(port: int) -> None:
    sys.path.insert(0, str(REPO))
    from gateway.serve import default_threads, default_workers, serve

    serve(bare_app, HOST, port, workers=default_workers(), threads=default_threads())  # SDE_WORKERS, SDE_THREADS


# --- the client (runs in its own process) ------------------------------------------------------------------

@dataclass
class Sample:
    group: str
    seconds: float
    ok: bool


CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
PROJECT_LINK = re.compile(r'href="/projects/(\d+)"')


async def sign_in(session: Any, base: str, username: str) -> None:
    async with session.get(f"{base}/login") as resp:
        match = CSRF.search(await resp.text())
    if match is None:
        raise RuntimeError("no CSRF token on /login")
    form = {"csrf_token": match.group(1), "username": username, "password": PASSWORD}
    async with session.post(f"{base}/login", data=form, allow_redirects=False) as resp:
        if resp.status != 302 or "/login" in resp.headers.get("Location", "/login"):
            raise RuntimeError(f"sign-in of {username} did not complete ({resp.status} -> "
                               f"{resp.headers.get('Location')}); is a second factor required for this role?")


async def user_pages(session: Any, base: str, kind: str, username: str) -> list[str]:
    if kind in ("public", "baseline"):
        return ["/register" if kind == "public" else "/"]
    await sign_in(session, base, username)
    if kind == "checker":
        return ["/outputs/queue"]
    async with session.get(f"{base}/projects/") as resp:
        ids = PROJECT_LINK.findall(await resp.text())
    return ["/home", "/projects/"] + ([f"/projects/{ids[0]}"] if ids else [])


async def run_phase(base: str, mix: list[tuple[str, str]], duration: float, max_requests: int) -> list[Sample]:
    import aiohttp

    samples: list[Sample] = []
    budget = [max_requests]
    # unsafe=True: aiohttp otherwise ignores cookies set by an IP address such as 127.0.0.1
    sessions = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1),
                                      cookie_jar=aiohttp.CookieJar(unsafe=True)) for _ in mix]
    try:
        pages = await asyncio.gather(*(user_pages(s, base, kind, name) for s, (kind, name) in zip(sessions, mix,
                                                                                                   strict=True)))
        for session, urls in zip(sessions, pages, strict=True):  # one untimed request each: connections open
            async with session.get(base + urls[0], allow_redirects=False) as resp:
                await resp.read()
        deadline = time.monotonic() + duration

        async def user(session: Any, kind: str, urls: list[str]) -> None:
            turn = 0
            while time.monotonic() < deadline and budget[0] > 0:
                budget[0] -= 1
                url = urls[turn % len(urls)]
                turn += 1
                start = time.perf_counter()
                try:
                    async with session.get(base + url, allow_redirects=False) as resp:
                        await resp.read()
                        ok = resp.status == 200
                except (TimeoutError, aiohttp.ClientError):
                    ok = False
                samples.append(Sample(kind, time.perf_counter() - start, ok))

        started = time.monotonic()
        await asyncio.gather(*(user(s, kind, urls) for s, (kind, _), urls in zip(sessions, mix, pages, strict=True)))
        elapsed = time.monotonic() - started
    finally:
        for session in sessions:
            await session.close()
    samples.append(Sample("_elapsed", elapsed, True))
    return samples


def drive(spec: dict[str, Any]) -> dict[str, Any]:
    mix = [(kind, name) for kind, name in spec["mix"]]
    samples = asyncio.run(run_phase(spec["base"], mix, spec["duration"], spec["max_requests"]))
    elapsed = next(s.seconds for s in samples if s.group == "_elapsed")
    groups: dict[str, list[Sample]] = {}
    for sample in samples:
        if sample.group != "_elapsed":
            groups.setdefault(sample.group, []).append(sample)
    return {"elapsed": elapsed, "groups": {g: {"latencies": [s.seconds for s in rows],
                                               "errors": sum(not s.ok for s in rows)} for g, rows in groups.items()}}


# --- the driver (this process) ------------------------------------------------------------------------------

@dataclass
class Row:
    label: str
    rps: float
    p50: float | None
    p95: float | None
    p99: float | None
    errors: int
    requests: int
    part: bool = False  # one group's share of a mixed run: no ratio, no verdict


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000


def phase(label: str, base: str, mix: list[tuple[str, str]], args: argparse.Namespace) -> list[Row]:
    spec = {"base": base, "mix": mix, "duration": args.duration, "max_requests": args.max_requests}
    out = subprocess.run([PYTHON, __file__, "--drive", json.dumps(spec)], capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        raise RuntimeError(f"client failed in phase {label}:\n{out.stderr[-2000:]}")
    result = json.loads(out.stdout)
    rows = []
    for group, data in sorted(result["groups"].items()):
        lat = data["latencies"]
        single = len(result["groups"]) == 1
        rows.append(Row(label if single else f"{label} - {group}", len(lat) / result["elapsed"],
                        percentile(lat, 0.5), percentile(lat, 0.95), percentile(lat, 0.99), data["errors"], len(lat),
                        part=not single))
    if len(rows) > 1:
        every = [x for d in result["groups"].values() for x in d["latencies"]]
        rows.append(Row(f"{label} - all", len(every) / result["elapsed"], percentile(every, 0.5),
                        percentile(every, 0.95), percentile(every, 0.99), sum(r.errors for r in rows), len(every)))
    return rows


def wrk(label: str, url: str, args: argparse.Namespace) -> Row | None:
    if shutil.which("wrk") is None:
        return None
    out = subprocess.run(["wrk", "-t2", f"-c{args.users}", f"-d{int(args.duration)}s", "--latency", url],
                         capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors += int(non2xx.group(1)) if non2xx else 0

    def pct(q: str) -> float | None:
        m = re.search(rf"^\s+{q}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return None
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    return Row(label, rps, pct("50"), None, pct("99"), errors, total)


def users_mix(kind: str, n: int) -> list[tuple[str, str]]:
    names = {"baseline": ["-"], "public": ["-"], "researcher": ["researcher", "researcher2"],
             "checker": ["checker1", "checker2"]}[kind]
    return [(kind, names[i % len(names)]) for i in range(n)]


def mixed(n: int) -> list[tuple[str, str]]:
    """40% public readers, 40% researchers, 20% checkers."""
    public, researchers = round(n * 0.4), round(n * 0.4)
    return users_mix("public", public) + users_mix("researcher", researchers) + users_mix("checker",
                                                                                            n - public - researchers)


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def print_table(rows: list[Row], baseline: Row, wrk_baseline: Row | None, args: argparse.Namespace) -> None:
    load = os.getloadavg()[0]
    print(f"\n{args.users} concurrent users, {os.cpu_count()} CPUs shared by client and servers (load average "
          f"{load:.1f} at the end), {args.workers} workers x {args.threads} threads; latency in ms")
    print(f"{'page group':<34} {'req/s':>8} {'p50':>7} {'p95':>7} {'p99':>7} {'errors':>6} {'requests':>8} "
          f"{'x base':>7} {'target':>8}")
    for row in rows:
        ref = wrk_baseline if row.label.endswith("(wrk)") else baseline
        ratio = row.rps / ref.rps if ref.rps else 0.0
        is_base = row is ref or "baseline" in row.label
        mixed_part = row.part
        least, p95 = TARGETS.get(row.label.split(":")[0].split(" ")[0], (None, None))
        met = (row.errors == 0 and (least is None or ratio >= least)
               and (p95 is None or (row.p95 is not None and row.p95 < p95)))
        verdict = "-" if is_base or mixed_part else ("met" if met else "missed")
        print(f"{row.label:<34} {row.rps:>8.0f} {fmt(row.p50):>7} {fmt(row.p95):>7} {fmt(row.p99):>7} "
              f"{row.errors:>6} {row.requests:>8} {'-' if mixed_part else f'{ratio:.2f}':>7} {verdict:>8}")
    print("targets: /register >= 50% of baseline req/s, researchers and checkers >= 25%, mixed p95 < 250 ms, 0 errors "
          "everywhere (mixed rows: share of one run, no ratio; (wrk) rows compare with the wrk baseline; wrk has no "
          "p95, so a wrk row is held to its ratio only)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    parser.add_argument("--max-requests", type=int, default=20000, help="requests per phase at most")
    parser.add_argument("--patients", type=int, default=1000, help="synthetic population of the demo")
    parser.add_argument("--workers", type=int, default=None, help="gunicorn workers, both servers")
    parser.add_argument("--threads", type=int, default=None, help="threads per worker, both servers")
    parser.add_argument("--drive", help=argparse.SUPPRESS)
    parser.add_argument("--baseline-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive:
        print(json.dumps(drive(json.loads(args.drive))))
        return
    if args.baseline_server:
        serve_baseline(args.baseline_server)
        return
    # 50 simulated users sign in from one address within seconds: lift the sign-in rate limits for this run only
    limits = {"sign_in_limit_per_ip": "100000/minute", "sign_in_limit_per_username": "100000/minute"}
    with sandbox("sde_load", {"extracts": {"demo_patients": args.patients}, "security": limits}) as box:
        print(f"database {box.name}, instance {box.workdir}", file=sys.stderr)
        box.run("init")
        box.run("demo", "--seed-only")
        gw_port, base_port = free_port(), free_port()
        from gateway.serve import default_threads, default_workers

        args.workers, args.threads = args.workers or default_workers(), args.threads or default_threads()
        workers = {"SDE_WORKERS": str(args.workers), "SDE_THREADS": str(args.threads)}
        gateway = box.start([*SDE, "serve", "--host", HOST, "--port", str(gw_port)], "gateway.log", workers)
        bare = box.start([PYTHON, __file__, "--baseline-server", str(base_port)], "baseline.log", workers)
        gw, bl = f"http://{HOST}:{gw_port}", f"http://{HOST}:{base_port}"
        wait_http(f"{gw}/register", gateway)
        wait_http(f"{bl}/", bare)
        print("servers up; running phases", file=sys.stderr)
        baseline = phase("baseline: bare Flask /", bl, users_mix("baseline", args.users), args)[0]
        rows = [baseline]
        for label, kind in (("public: /register", "public"), ("researcher: home, projects", "researcher"),
                            ("checker: /outputs/queue", "checker")):
            rows += phase(label, gw, [(k, n) for k, n in users_mix(kind, args.users)], args)
        rows += phase("mixed 40/40/20", gw, mixed(args.users), args)
        wrk_base = wrk("baseline: bare Flask / (wrk)", f"{bl}/", args)
        if wrk_base is not None:
            rows.append(wrk_base)
            register = wrk("public: /register (wrk)", f"{gw}/register", args)
            if register is not None:
                rows.append(register)
        print_table(rows, baseline, wrk_base, args)


if __name__ == "__main__":
    main()
