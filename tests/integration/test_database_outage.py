"""PostgreSQL stops under the running gateway, between requests and in the middle of one, and comes back.

The gateway runs as in production (`sde serve`: gunicorn, 2 workers) on a private PostgreSQL server made for
this module (initdb in a temporary folder, its own port), so stopping it touches nothing else. It is stopped
with `pg_ctl stop -m immediate` (as a crash or a cut network would look to the gateway) and started again
while the gateway keeps running.

What a person sees while it is down: pages answer 503 with the NHS-styled "service unavailable" page, the API
answers a JSON 503 ``{error, detail}`` (documented on every operation), and neither shows a stack trace, a
driver name or a connection detail. A request cut off mid-transaction writes nothing. When the database is
back, the same pages and API calls succeed without restarting the gateway (the pool checks connections before
use), `sde worker` is still running, and the audit chain verifies.

To stop the database at a known moment inside a request, the test holds a lock that the request needs (the
projects table for a page, the audit head row for a write) and stops PostgreSQL once the request's backend is
waiting for it; the write has by then inserted its row in its open transaction.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
import requests

from tests.support.sandbox import (
    DEMO_PASSWORD,
    SDE,
    PrivatePostgres,
    Sandbox,
    child_pids,
    libpq_url,
    private_postgres,
    sandbox,
)

LEAKS = ("Traceback", "OperationalError", "psycopg", "sqlalchemy", "postgresql", "pg_hba", "5432")


@dataclass
class Outage:
    pg: PrivatePostgres
    box: Sandbox
    server: subprocess.Popen[bytes]  # `sde serve`
    worker: subprocess.Popen[bytes]  # `sde worker`, one pass a second
    base: str
    browser: requests.Session  # signed in as the researcher
    api: dict[str, str]  # the researcher's bearer token
    project: str  # a project reference the researcher sees on /projects/

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(libpq_url(self.box.database_url), autocommit=True) as conn:
            return conn.execute(query, params).fetchall()  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def outage() -> Iterator[Outage]:
    with private_postgres() as pg, sandbox("sde_outage", pg.url, {"extracts": {"demo_patients": 200}}) as box:
        box.run("init")
        box.run("demo", "--seed-only")
        token = box.run("token", "create", "researcher", "--name", "outage test").stdout.strip()
        server, base = box.serve(workers=2)
        worker = box.start([*SDE, "worker", "--interval", "1"], "worker.log")
        browser = requests.Session()
        form = browser.get(f"{base}/login", timeout=10).text
        csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', form)
        assert csrf is not None
        signed_in = browser.post(f"{base}/login", data={"csrf_token": csrf.group(1), "username": "researcher",
                                                        "password": DEMO_PASSWORD}, allow_redirects=False, timeout=10)
        assert signed_in.status_code == 302 and "/login" not in signed_in.headers["Location"]
        projects = browser.get(f"{base}/projects/", allow_redirects=False, timeout=10)
        reference = re.search(r"P-\d{4}-\d{4}", projects.text)
        assert projects.status_code == 200 and reference is not None
        world = Outage(pg, box, server, worker, base, browser, {"Authorization": f"Bearer {token}"},
                       reference.group(0))
        try:
            yield world
        finally:
            if not pg.running():
                pg.start()
        assert server.poll() is None, "the gateway exited"
        verify = box.run("audit", "verify", check=False)
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert "Traceback" not in box.log(), box.log()[-4000:]
        assert worker.poll() is None, box.log("worker.log")[-4000:]


def page(world: Outage, path: str = "/projects/") -> requests.Response:
    return world.browser.get(world.base + path, allow_redirects=False, timeout=30)


def me(world: Outage) -> requests.Response:
    return requests.get(f"{world.base}/api/v1/me", headers=world.api, timeout=30)


def new_token(world: Outage, name: str) -> requests.Response:
    return requests.post(f"{world.base}/api/v1/tokens", headers=world.api, json={"name": name}, timeout=30)


def assert_working(world: Outage) -> None:
    """The page and the API answer normally (several times, so both gunicorn workers are likely asked)."""
    for _ in range(4):
        shown = page(world)
        assert shown.status_code == 200 and world.project in shown.text, shown.text[:500]
        assert me(world).json()["username"] == "researcher"


def assert_unavailable_page(response: requests.Response, world: Outage) -> None:
    assert response.status_code == 503
    assert "Sorry, the service is unavailable" in response.text
    assert "nhsuk-header" in response.text and "/static/" in response.text  # the service's own styled page
    assert "Nothing you entered has been partly saved" in response.text
    assert response.headers.get("Retry-After")
    for leak in (*LEAKS, str(world.pg.port), world.box.name):
        assert leak not in response.text, leak


def assert_unavailable_json(response: requests.Response, world: Outage) -> None:
    assert response.status_code == 503
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"error": "service_unavailable",
                               "detail": "The database is unavailable; try again shortly."}
    assert response.headers.get("Retry-After")
    for leak in (*LEAKS, str(world.pg.port), world.box.name):
        assert leak not in response.text, leak


def gunicorn_workers(world: Outage) -> set[int]:
    return child_pids(world.server.pid)


def tokens_named(world: Outage, name: str) -> int:
    return int(world.sql("SELECT count(*) FROM api_tokens WHERE name = %s", name)[0][0])


def audit_events(world: Outage) -> int:
    return int(world.sql("SELECT count(*) FROM audit_events")[0][0])


def cut_off_mid_request(world: Outage, lock: str, request: Callable[[], requests.Response]) -> requests.Response:
    """Send ``request`` while ``lock`` is held, stop PostgreSQL once the request waits for the lock, return the
    answer the request got."""
    answers: list[requests.Response] = []
    with psycopg.connect(libpq_url(world.box.database_url)) as holder:
        holder.execute(lock)  # type: ignore[arg-type]
        waiter = threading.Thread(target=lambda: answers.append(request()))
        waiter.start()
        deadline = time.monotonic() + 30
        # Asked on a separate autocommit connection: inside the holder's transaction PostgreSQL shows
        # pg_stat_activity as it was at the transaction's first look, so a wait begun later is never seen.
        while not world.sql("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                            "AND wait_event_type = 'Lock'")[0][0]:
            assert time.monotonic() < deadline, "the request never reached the lock"
            time.sleep(0.05)
        world.pg.stop("immediate")
        waiter.join(timeout=60)
        with contextlib.suppress(psycopg.Error):  # its server is gone
            holder.close()
    assert answers, "the request got no answer"
    return answers[0]


def restart(world: Outage) -> None:
    """Start PostgreSQL again if the test stopped it (a failure before the stop must show, not pg_ctl's complaint)."""
    if not world.pg.running():
        world.pg.start()


def test_while_the_database_is_down_pages_and_api_answer_503_and_recover(outage: Outage) -> None:
    assert_working(outage)
    document = requests.get(f"{outage.base}/api/v1/openapi.json", timeout=10).json()
    for path, method in (("/me", "get"), ("/tokens", "post")):  # the 503 below is a documented answer
        assert document["paths"][path][method]["responses"]["503"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorBody"}
    workers = gunicorn_workers(outage)
    events, tokens = audit_events(outage), tokens_named(outage, "while down")
    outage.pg.stop("immediate")
    try:
        for _ in range(2):  # a pooled connection found dead, then a connection refused
            assert_unavailable_page(page(outage), outage)
            assert_unavailable_page(page(outage, "/register"), outage)  # public, no sign-in involved
            assert_unavailable_json(me(outage), outage)
            assert_unavailable_json(new_token(outage, "while down"), outage)
        deadline = time.monotonic() + 30  # the worker meets the outage on its next pass, and stays up
        while "database unavailable" not in outage.box.log("worker.log") and outage.worker.poll() is None:
            assert time.monotonic() < deadline, outage.box.log("worker.log")[-2000:]
            time.sleep(0.1)
        assert outage.worker.poll() is None, outage.box.log("worker.log")[-4000:]
    finally:
        restart(outage)
    assert_working(outage)  # no restart: the same gateway process answers again
    assert outage.server.poll() is None and gunicorn_workers(outage) == workers  # nothing was restarted
    assert (audit_events(outage), tokens_named(outage, "while down")) == (events, tokens)


def test_a_page_cut_off_mid_query_answers_503_and_the_next_one_works(outage: Outage) -> None:
    assert_working(outage)
    try:
        answer = cut_off_mid_request(outage, "LOCK TABLE projects IN ACCESS EXCLUSIVE MODE", lambda: page(outage))
        assert_unavailable_page(answer, outage)
    finally:
        restart(outage)
    assert_working(outage)


def test_a_write_cut_off_mid_transaction_leaves_nothing_half_written(outage: Outage) -> None:
    """The token row is inserted, then the request waits for the audit head: the crash loses both, never one."""
    events = audit_events(outage)
    try:
        answer = cut_off_mid_request(outage, "SELECT * FROM audit_head WHERE id = 1 FOR UPDATE",
                                     lambda: new_token(outage, "mid-request"))
        assert_unavailable_json(answer, outage)
    finally:
        restart(outage)
    assert tokens_named(outage, "mid-request") == 0
    assert audit_events(outage) == events
    verify = outage.box.run("audit", "verify", check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    created = new_token(outage, "after the restart")  # the same write succeeds once the database is back
    assert created.status_code == 201 and tokens_named(outage, "after the restart") == 1
    assert audit_events(outage) == events + 1
    assert_working(outage)
