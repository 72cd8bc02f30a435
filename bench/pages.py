"""Page benchmark: each signed-in page timed in-process against a bare Flask handler in the same process.

Creates a throwaway PostgreSQL database and instance folder, runs `sde init` and `sde demo --seed-only` into them
(as `sde demo` does), then builds the real app in this process (create_app, the demo's settings) and calls its pages
through Flask's test client, signed in as the demo researcher, output checker and DAC chair. A bare Flask app
answering one short page, called the same way, is the baseline. The demo's checkers' queue is empty, so one request
is added to it first (researcher2's, submitted with a group and no files), for the queue, the checkers' home and the
checker's view of a waiting request to show something. For each page it prints the median and p90 time,
the SQL statements the request ran (a SQLAlchemy `before_cursor_execute` listener on the app's engine), and the
ratio to the baseline's median. A second table times the parts of the request frame on their own (session and
user load, the signed cookie, the rate limiter's check, the permission checks of the menu, the CSRF token, the
security headers, rendering the bare layout).

Targets: every signed-in page <= 5 ms median and <= 6 SQL statements; `/register` (signed out, cached) <= 1.5x
the baseline. The statements that append an audit event (the head reserved, then the event and the head's new
hash: one statement on PostgreSQL) are counted apart, in the "audit" column, and not against the 6: a page that
records who viewed it (the charges statement, an `access.downloaded` event, as information governance asks) writes
those whatever it reads, and the chain needs them. Every other statement, write or read, counts. Prints PASS/FAIL
per target and exits 1 if any failed. A bench, not a test: timings depend on the machine (report `uptime` next to
the figures).

    .venv/bin/python bench/pages.py [--rounds 300] [--patients 1000]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support import sandbox as _sandbox  # noqa: E402

ADMIN_URL = os.environ.get("BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
PASSWORD = "demo-password"  # the documented demo password (gateway/demo.py)
TARGET_MS, TARGET_SQL, TARGET_REGISTER_RATIO = 5.0, 6, 1.5

CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
# gateway.audit.record's statements: the head reserved, then the event and the head's new hash (on PostgreSQL one
# statement, the event appended in a WITH clause)
AUDIT_WRITE = re.compile(
    r"\s*(UPDATE audit_head |INSERT INTO audit_events |WITH appended AS\s*\(INSERT INTO audit_events )")


@dataclass
class Row:
    label: str
    median_ms: float
    p90_ms: float
    statements: int  # not counting audit_writes
    status: int
    audit_writes: int = 0


def bare_app() -> Any:
    """The same bare Flask app bench/load.py serves as its baseline."""
    from bench.load import bare_app as load_baseline

    return load_baseline()


class StatementCounter:
    """Counts the SQL statements sent on an engine (every cursor execute, whatever the ORM cached)."""

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.count = 0
        self.audit = 0  # of which appending an audit event
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.count += 1
        self.audit += bool(AUDIT_WRITE.match(statement))


def timed(call: Callable[[], Any], rounds: int) -> list[float]:
    for _ in range(min(20, rounds)):  # warm: templates compiled, statements cached, connections open
        call()
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        out.append((time.perf_counter() - start) * 1000)
    return out


def sign_in(client: Any, username: str) -> None:
    """Through the real /login form (CSRF token, password, session cookie); the demo roles need no second factor."""
    match = CSRF.search(client.get("/login").get_data(as_text=True))
    if match is None:
        raise RuntimeError("no CSRF token on /login")
    resp = client.post("/login", data={"csrf_token": match.group(1), "username": username, "password": PASSWORD})
    if resp.status_code != 302 or "/login" in resp.headers.get("Location", "/login"):
        raise RuntimeError(f"sign-in of {username} did not complete ({resp.status_code})")


def first_link(client: Any, page: str, pattern: str) -> str | None:
    found = re.search(rf'href="({pattern})"', client.get(page).get_data(as_text=True))
    return found.group(1) if found else None


def page_row(label: str, client: Any, url: str, counter: StatementCounter, rounds: int) -> Row:
    resp = client.get(url)
    before, audit_before = counter.count, counter.audit
    resp = client.get(url)
    audit = counter.audit - audit_before
    statements = counter.count - before - audit
    times = timed(lambda: client.get(url), rounds)
    return Row(label, statistics.median(times), statistics.quantiles(times, n=10)[-1], statements, resp.status_code,
               audit)


def frame_rows(app: Any, client: Any, rounds: int) -> list[tuple[str, float]]:
    """The parts of a signed-in request, each on its own, inside one request context carrying the cookie."""
    from flask import g, render_template, request, session
    from flask_wtf.csrf import generate_csrf

    from gateway import app as app_module
    from gateway.identity.sessions import live_session
    from gateway.permissions import Permission, has_permission
    from gateway.web.context import close_db, db

    cookie = client.get_cookie("sde_session")
    assert cookie is not None
    headers = {"Cookie": f"sde_session={cookie.value}"}
    parts: list[tuple[str, float]] = []
    with app.test_request_context("/home", headers=headers):
        app.preprocess_request()  # identified as the real hook does it
        user = g.user
        key = session["sid"]

        def load_session() -> None:
            db().expunge_all()
            live_session(db(), key)
            db().rollback()

        parts.append(("session, user and roles (live_session)", statistics.median(timed(load_session, rounds))))
        cookies = app.session_interface
        parts.append(("session cookie (open and save)", statistics.median(timed(
            lambda: cookies.save_session(app, cookies.open_session(app, request), app.response_class("x")),
            rounds))))
        # the limiter's check as registered, with gateway/ratelimit.py's request filter
        limiter = next(iter(app.extensions["limiter"]))
        check = next(f for f in app.before_request_funcs[None]
                     if getattr(f, "__wrapped__", f) == limiter._check_request_limit)
        parts.append(("rate limiter (a page no limit applies to)", statistics.median(timed(check, rounds))))
        parts.append(("permission checks (every permission once)", statistics.median(timed(
            lambda: [has_permission(user, p) for p in Permission], rounds))))

        def csrf() -> None:
            g.pop("csrf_token", None)
            generate_csrf()

        parts.append(("CSRF token (generate_csrf)", statistics.median(timed(csrf, rounds))))
        response = app.response_class("x")
        parts.append(("security headers (after_request)", statistics.median(timed(
            lambda: app_module._security_headers(response), rounds))))
        # compiled once, as Flask keeps every page's template: render_template_string would compile it each time
        layout = app.jinja_env.from_string('{% extends "base.html" %}')
        parts.append(("layout render (base.html, empty page)", statistics.median(timed(
            lambda: render_template(layout), rounds))))
        close_db()
    return parts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=300, help="timed requests per page")
    parser.add_argument("--patients", type=int, default=1000, help="synthetic population of the demo")
    args = parser.parse_args()
    with _sandbox.sandbox("sde_pages", ADMIN_URL, {"extracts": {"demo_patients": args.patients}}) as box:
        print(f"database {box.name}, instance {box.workdir}", file=sys.stderr)
        box.run("init")
        box.run("demo", "--seed-only")
        os.environ.update({k: v for k, v in box.env.items() if k.startswith("SDE_")})
        from gateway.app import create_app
        from gateway.config import load_settings

        app = create_app(load_settings())
        try:
            return run(app, args)
        finally:
            app.extensions["sde_engine"].dispose()


WAITING_TITLE = "Bench: a request awaiting its checks"


def add_waiting_request(app: Any) -> None:
    """The demo's queue is empty, so the checkers' queue and home would be timed with nothing to show: researcher2
    starts a request on their project, with a group, and it is set to submitted (no files: the bench has no
    workspace to hand them over from)."""
    from sqlalchemy import select, update

    from gateway.db import unit_of_work, utcnow
    from gateway.models import User
    from gateway.outputs import service as outputs
    from gateway.outputs.models import OutputRequest
    from projects.models import Project, ProjectMember

    with unit_of_work(app.extensions["sde_sessionmaker"]) as s:
        author = s.scalar(select(User).where(User.username == "researcher2"))
        assert author is not None
        project = s.scalar(select(Project).where(Project.members.any(ProjectMember.user_id == author.id)))
        assert project is not None
        request = outputs.create_request(s, author, project, WAITING_TITLE)
        outputs.save_group(s, author, request, "Counts", "Patients by borough.", "Small counts suppressed.")
        s.flush()
        s.execute(update(OutputRequest).where(OutputRequest.id == request.id)
                  .values(state="submitted", submitted_at=utcnow()))


def run(app: Any, args: argparse.Namespace) -> int:
    add_waiting_request(app)
    counter = StatementCounter(app.extensions["sde_engine"])
    bare = bare_app().test_client()
    base_times = timed(lambda: bare.get("/"), args.rounds)
    baseline = Row("baseline: bare Flask /", statistics.median(base_times),
                   statistics.quantiles(base_times, n=10)[-1], 0, 200)
    rows: list[tuple[Row, bool]] = []  # (row, signed in)
    public = app.test_client()
    rows.append((page_row("public: /register", public, "/register", counter, args.rounds), False))

    # a project's sub-pages, reached through its navigation (which links only those the person may open)
    data, sessions, outputs, charges = (("/projects/", r"/projects/\d+", link) for link in (
        r"/projects/\d+/data", r"/projects/\d+/sessions", r"/projects/\d+/outputs",
        r"/charging/projects/\d+/statement"))
    # each page: where to start and the links to follow from there (the first link matching each pattern)
    paths: dict[str, list[tuple[str, ...]]] = {
        "researcher": [("/home",), ("/projects/",), ("/projects/", r"/projects/\d+"), data, sessions, outputs, charges,
                       ("/applications/",), ("/applications/", r"/applications/\d+"),
                       ("/outputs/",), ("/outputs/", r"/outputs/\d+")],
        # the demo's released output request is researcher2's, on their project
        "researcher2": [("/home",), ("/outputs/",), ("/outputs/", r"/outputs/\d+"), ("/projects/", r"/projects/\d+"),
                        outputs],
        "checker1": [("/home",), ("/outputs/queue",), ("/outputs/queue", r"/outputs/\d+"),
                     ("/projects/", r"/projects/\d+"), data, outputs, (*outputs, r"/outputs/\d+")],
        "dacchair": [("/home",), ("/applications/",), ("/applications/", r"/applications/\d+"),
                     ("/projects/", r"/projects/\d+"), data, outputs],
        "dac1": [("/home",), ("/applications/", r"/applications/\d+")],
    }
    frame_client = None
    for username, pages in paths.items():
        client = app.test_client()
        sign_in(client, username)
        frame_client = frame_client or client
        for start, *patterns in pages:
            url: str | None = start
            for pattern in patterns:
                page, url = url, first_link(client, url, pattern)
                if url is None:
                    print(f"note: no link matching {pattern} on {page} for {username}", file=sys.stderr)
                    break
            if url is None:
                continue
            rows.append((page_row(f"{username}: {url}", client, url, counter, args.rounds), True))
    parts = frame_rows(app, frame_client, args.rounds)

    failed = 0
    print(f"\nin-process, PostgreSQL, {args.rounds} timed requests per page, load average "
          f"{os.getloadavg()[0]:.2f}; times in ms")
    print(f"{'page':<42} {'median':>7} {'p90':>7} {'SQL':>4} {'audit':>5} {'x base':>7} {'status':>6}  verdict")
    print(f"{baseline.label:<42} {baseline.median_ms:>7.2f} {baseline.p90_ms:>7.2f} {'-':>4} {'-':>5} {'1.00':>7} "
          f"{baseline.status:>6}  -")
    for row, signed_in in rows:
        ratio = row.median_ms / baseline.median_ms
        if signed_in:
            ok = row.median_ms <= TARGET_MS and row.statements <= TARGET_SQL and row.status == 200
            why = f"<= {TARGET_MS:g} ms, <= {TARGET_SQL} SQL"
        else:
            ok = ratio <= TARGET_REGISTER_RATIO and row.status == 200
            why = f"<= {TARGET_REGISTER_RATIO:g}x base"
        failed += not ok
        print(f"{row.label:<42} {row.median_ms:>7.2f} {row.p90_ms:>7.2f} {row.statements:>4} {row.audit_writes:>5} "
              f"{ratio:>7.2f} "
              f"{row.status:>6}  {'PASS' if ok else 'FAIL'} ({why})")
    print("\nrequest frame, part by part (median ms, one signed-in researcher)")
    for label, ms in parts:
        print(f"  {label:<46} {ms:>7.3f}")
    print(f"\n{'all targets met' if not failed else f'{failed} target(s) missed'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
