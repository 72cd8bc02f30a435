"""`schemathesis run` against the gateway as production runs it: `sde serve` (gunicorn, 2 workers) on PostgreSQL.

The throwaway database is made by `sde init` and filled by `sde demo --seed-only` (projects, applications,
extracts, output requests), so many generated ids hit real objects. The schema is the live server's own
/api/v1/openapi.json. Every check schemathesis has runs (`--checks all`: server errors, status codes, content
types, response schemas and headers, negative input rejected, valid input accepted, undeclared methods,
ignored auth, use after free, ...), plus `every_permitted_operation_reached` from the hooks
(tests/support/schemathesis_hooks.py, which also mints each role's token).

One run per role, each with its own token. Valid input may be refused with 422: the document lists 422 for
rules no JSON Schema can say (a date relative to today, a password's strength, a variable missing from the
catalogue, a scope the caller does not hold, an application not yet complete). The unresolvable-reference,
regex and rate-limit warnings fail a run (the per-token limit is raised so fuzzing is not throttled; 429 is
documented). The administrator runs last and alone (it may deactivate the other accounts). It and the
researcher, who between them reach most operations, run every phase (examples, coverage, fuzzing, stateful);
the coverage phase (boundary values, undeclared methods, missing parameters) hardly depends on the role, so
the other roles run the fuzzing and stateful phases only, with two examples per operation. The accounts that
cannot change each other run three at a time. The module takes about 80 s on two idle cores.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from gateway.api import load_operations
from gateway.api.base import api
from gateway.demo import DEMO_USERS
from gateway.permissions import ROLE_PERMISSIONS
from tests.support import databases
from tests.support.sandbox import REPO, Sandbox, sandbox

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")
EVERY_PHASE, FUZZ = "examples,coverage,fuzzing,stateful", "fuzzing,stateful"
# (account, phases, examples per operation); these accounts cannot change each other, so they run side by side
ROLES = [("researcher", EVERY_PHASE, 3), ("auditor", FUZZ, 2), ("finance", FUZZ, 2), ("dac1", FUZZ, 2),
         ("checker1", FUZZ, 2)]
CONFIG = """
[warnings]
fail-on = ["unresolvable_reference", "unsupported_regex", "missing_deserializer", "rate_limited"]

[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429"]
"""


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[Sandbox, str]]:
    postgres = databases.postgres_server_url()
    if postgres is None:
        pytest.skip("needs PostgreSQL: set SDE_TEST_DATABASE_URL (`make test` does)")
    config = {"extracts": {"demo_patients": 200}, "security": {"token_limit": "100000/minute"}}
    with sandbox("sde_live_api", postgres, config) as box:
        box.run("init")
        box.run("demo", "--seed-only")
        server, base = box.serve(workers=2)
        yield box, base
        box.kill(server, signal.SIGINT)  # gunicorn's quick shutdown: no wait for idle keep-alive connections
        assert "Traceback" not in box.log(), box.log()[-4000:]  # nothing failed unseen on the server side


def permitted(username: str) -> list[str]:
    """The operations this demo account's roles may call, as schemathesis labels them ("GET /me")."""
    load_operations()
    roles = next(u.roles for u in DEMO_USERS if u.username == username)
    allowed = set().union(*(ROLE_PERMISSIONS[r] for r in roles))
    return sorted(f"{op.method} {op.openapi_path}" for op in api.operations
                  if op.permission is None or op.permission in allowed)


def schemathesis_run(box: Sandbox, workdir: Path, location: str, username: str, *args: str) -> tuple[int, str]:
    workdir.mkdir(exist_ok=True)
    (workdir / "schemathesis.toml").write_text(CONFIG)
    env = {**box.env, "SCHEMATHESIS_HOOKS": "tests.support.schemathesis_hooks", "SDE_ST_USERNAME": username,
           "SDE_ST_PERMITTED": json.dumps(permitted(username)), "PYTHONPATH": str(REPO)}
    done = subprocess.run([SCHEMATHESIS, "--config-file", str(workdir / "schemathesis.toml"), "run", location,
                           "--checks", "all", "--seed", "20261121", "--no-color", *args],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=240)
    return done.returncode, done.stdout + done.stderr


def test_the_run_fails_when_an_answer_departs_from_the_document(live: tuple[Sandbox, str], tmp_path: Path) -> None:
    """The same harness against a document that promises what the server does not do: /me with a field it never
    sends, and /users without the 403 the auditor gets. Both must be reported (schemathesis exits 1)."""
    box, base = live
    doc: dict[str, Any] = requests.get(f"{base}/api/v1/openapi.json", timeout=10).json()
    doc["components"]["schemas"]["MeOut"]["required"].append("favourite_colour")
    del doc["paths"]["/users"]["get"]["responses"]["403"]
    (tmp_path / "broken.json").write_text(json.dumps(doc))
    code, output = schemathesis_run(box, tmp_path, str(tmp_path / "broken.json"), "auditor", "--url", f"{base}/api/v1",
                                    "--phases", "fuzzing", "--max-examples", "2",
                                    "--include-path", "/me", "--include-path", "/users")
    assert code == 1, output[-5000:]
    assert "favourite_colour" in output and "Response violates schema" in output, output[-5000:]
    assert "Undocumented status code" in output and "Received: 403" in output, output[-5000:]


def problems(code: int, output: str) -> str | None:
    """Why a run does not count as clean (None when it is): a failure, or an operation left untested."""
    tested = re.search(r"Tested: (\d+)", output)
    if code != 0 or tested is None or int(tested.group(1)) != len(api.operations):
        return output[-12000:]
    return None


def test_schemathesis_run_as_each_role_finds_nothing(live: tuple[Sandbox, str], tmp_path: Path) -> None:
    box, base = live
    location = f"{base}/api/v1/openapi.json"
    with ThreadPoolExecutor(max_workers=3) as pool:
        runs = {name: pool.submit(schemathesis_run, box, tmp_path / name, location, name, "--workers", "1",
                                  "--phases", phases, "--max-examples", str(examples))
                for name, phases, examples in ROLES}
    found = {name: problems(*run.result()) for name, run in runs.items()}
    assert not any(found.values()), "\n\n".join(f"=== {n} ===\n{out}" for n, out in found.items() if out)


def test_schemathesis_run_as_the_administrator_finds_nothing(live: tuple[Sandbox, str], tmp_path: Path) -> None:
    """Last and alone: the administrator may deactivate the other accounts or change their roles."""
    box, base = live
    code, output = schemathesis_run(box, tmp_path, f"{base}/api/v1/openapi.json", "admin", "--workers", "2",
                                    "--phases", EVERY_PHASE, "--max-examples", "3")
    assert problems(code, output) is None, output[-15000:]
