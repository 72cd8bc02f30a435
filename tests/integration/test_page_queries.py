"""The SQL statements the key signed-in pages send, pinned on the demo data, so a page that starts loading row by row
(a lazy relationship read in a loop, a list read twice) fails here. Counted, never timed: bench/pages.py times them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

from gateway import demo
from gateway.config import Settings
from gateway.db import unit_of_work
from gateway.models import User
from gateway.outputs import service as outputs
from gateway.outputs.models import OutputRequest
from projects import dac, lifecycle
from projects.models import Application, Project, ProjectMember
from tests.conftest import sign_in_session

# (user, page, or (list page, link pattern), or how to find it in the database) -> the most statements the request may
# send, with what it must show. The request frame (session, user and roles) is the first statement of every page.
Page = str | tuple[str, str] | Callable[[Session], str]
OUTPUT_TITLE = "Pinned statements: a pending request"


def _under_review(s: Session) -> str:
    """The application under review (dac1 has voted, dac2 and the lay member not yet): the page with the vote form."""
    found = s.scalar(select(Application.id).where(Application.state == "under_review").order_by(Application.id))
    assert found is not None
    return f"/applications/{found}"


def _output_request(s: Session) -> str:
    found = s.scalar(select(OutputRequest.id).where(OutputRequest.title == OUTPUT_TITLE))
    assert found is not None
    return f"/outputs/{found}"


def _project_of_output(page: str = "") -> Callable[[Session], str]:
    """A page of the project of the pending request (researcher2's, with the demo's released output)."""
    def find(s: Session) -> str:
        found = s.scalar(select(OutputRequest.project_id).where(OutputRequest.title == OUTPUT_TITLE))
        assert found is not None
        return f"/projects/{found}{page}"
    return find


def _project_led_by(username: str, page: str = "") -> Callable[[Session], str]:
    def find(s: Session) -> str:
        found = s.scalar(select(Project.id).join(User, User.id == Project.lead_id).where(User.username == username)
                         .order_by(Project.id))
        assert found is not None
        return f"/projects/{found}{page}"
    return find


def _charges_of_project_led_by(username: str) -> Callable[[Session], str]:
    """The project's charges page (the charging statement), which records each view as an access.downloaded event."""
    def find(s: Session) -> str:
        return _project_led_by(username)(s).replace("/projects/", "/charging/projects/") + "/statement"
    return find


TEAM, DATA, TRAFFIC = 'data-testid="project-team"', "<h2>Data extract</h2>", 'data-testid="workspace-traffic"'
PUBLICATIONS = "<h2 id=\"publications\">Publications</h2>"


BUDGETS: list[tuple[str, Page, int, str]] = [
    ("researcher", "/home", 2, "Welcome, Dr Amara Okafor"),
    ("researcher", "/projects/", 3, "Approved projects you can see"),
    ("researcher", ("/projects/", r"/projects/\d+"), 5, 'data-testid="workspace-card"'),
    ("researcher", _project_led_by("researcher", "/data"), 6, DATA),
    ("researcher", _project_led_by("researcher", "/sessions"), 3, TRAFFIC),
    ("researcher", _project_led_by("researcher", "/outputs"), 4, PUBLICATIONS),
    # 6 reads (session, project, budget, invoices, usage not yet invoiced, quotes with their lines, which also give
    # the price basis), then the view recorded in its own transaction: the audit head's two updates, the event's insert
    ("researcher", _charges_of_project_led_by("researcher"), 9, 'data-testid="charges-summary"'),
    ("researcher", "/applications/", 3, "Your team&#39;s applications"),
    ("researcher", ("/applications/", r"/applications/\d+"), 3, "Variables requested"),
    ("researcher", "/outputs/", 4, "output requests"),
    ("researcher2", "/home", 2, "Welcome, Dr Tom Brennan"),
    ("researcher2", "/outputs/", 4, OUTPUT_TITLE),
    ("researcher2", _output_request, 4, OUTPUT_TITLE),
    ("researcher2", _project_of_output(), 5, 'data-testid="workspace-card"'),
    ("researcher2", _project_of_output("/outputs"), 4, PUBLICATIONS),
    ("checker1", "/home", 2, "Welcome, Ali Hassan"),
    ("checker1", "/outputs/queue", 2, "Output checking"),
    ("checker1", _output_request, 5, OUTPUT_TITLE),
    ("checker1", _project_of_output(), 2, TEAM),
    ("checker1", _project_of_output("/data"), 6, DATA),
    ("checker1", _project_of_output("/outputs"), 4, PUBLICATIONS),
    ("dacchair", "/home", 2, "Welcome, Prof. Helen Marsh"),
    ("dacchair", "/applications/", 3, "Applications for the data access committee"),
    ("dacchair", ("/applications/", r"/applications/\d+"), 4, "Variables requested"),
    ("dacchair", _under_review, 5, "Variables requested"),
    ("dacchair", ("/projects/", r"/projects/\d+"), 2, TEAM),
    ("dacchair", _project_led_by("researcher", "/data"), 6, DATA),
    ("dacchair", _project_led_by("researcher", "/outputs"), 3, PUBLICATIONS),
    ("dac2", "/home", 2, "Welcome, Dr Sofia Rossi"),
    ("dac2", _under_review, 4, "Submit vote"),
    ("laymember", _under_review, 4, 'data-testid="conflict-form"'),
]
class Statements:
    """Every statement sent on the engine; SQLite's BEGIN (issued by the app's own hook) is not a query."""

    def __init__(self, engine: Any) -> None:
        self.sent: list[str] = []
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.lstrip().upper().startswith("BEGIN"):
            self.sent.append(statement)


def test_key_pages_send_a_pinned_number_of_statements(app: Flask, settings: Settings,
                                                      session_factory: sessionmaker[Session]) -> None:
    with unit_of_work(session_factory) as s:
        demo.seed(s, settings)
    with unit_of_work(session_factory) as s:  # a request being written, so the output pages have one to show
        author = s.scalar(select(User).where(User.username == "researcher2"))
        project = s.scalar(select(Project).where(Project.members.any(ProjectMember.user_id == author.id)))
        assert author is not None and project is not None
        request = outputs.create_request(s, author, project, OUTPUT_TITLE)
        outputs.save_group(s, author, request, "Counts by borough", "Patients by borough.", "Small counts suppressed.")
        # dac2 declares no conflict, so their page of the application under review is the one with the vote form
        reviewer = s.scalar(select(User).where(User.username == "dac2"))
        under_review = s.scalar(select(Application).where(Application.state == "under_review"))
        assert reviewer is not None and under_review is not None
        dac.declare_conflict(s, reviewer, under_review, False, "")
    statements = Statements(app.extensions["sde_engine"])
    clients: dict[str, FlaskClient] = {}
    measured, allowed = {}, {}
    for username, page, budget, shows in BUDGETS:
        if username not in clients:
            clients[username] = app.test_client()
            sign_in_session(clients[username], session_factory, username)
        client = clients[username]
        if isinstance(page, tuple):
            listing, pattern = page
            found = re.search(rf'href="({pattern})"', client.get(listing).get_data(as_text=True))
            assert found is not None, f"{username} sees no link matching {pattern} on {listing}"
            page = found.group(1)
        elif callable(page):
            with session_factory() as s:
                page = page(s)
        client.get(page)  # per-process caches (templates, compiled statements) are filled by the first request
        statements.sent.clear()
        response = client.get(page)
        assert response.status_code == 200, (username, page, response.status_code)
        assert shows in response.get_data(as_text=True), (username, page, shows)
        measured[(username, page)], allowed[(username, page)] = len(statements.sent), budget
    over = {key: (n, allowed[key]) for key, n in measured.items() if n > allowed[key]}
    assert not over, f"pages sending more statements than pinned (sent, pinned): {over}"


def test_a_project_data_page_sends_as_many_statements_with_amendments_as_without(
        app: Flask, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    """The amendments come with their teams in one statement, however many there are and whoever sees them."""
    from projects import applications
    from tests.support import factories as f

    with unit_of_work(session_factory) as s:
        f.accredit(s, "researcher")
    project_id = f.approved_project(session_factory)
    statements = Statements(app.extensions["sde_engine"])

    def sent(username: str) -> tuple[int, str]:
        client = app.test_client()
        sign_in_session(client, session_factory, username)
        client.get(f"/projects/{project_id}/data")
        statements.sent.clear()
        page = client.get(f"/projects/{project_id}/data").get_data(as_text=True)
        return len(statements.sent), page

    without = {username: sent(username)[0] for username in ("researcher", "dacchair")}
    with unit_of_work(session_factory) as s:  # one decided amendment and one draft, each with the project's team
        project = s.get(Project, project_id)
        assert project is not None
        first = applications.start_amendment(s, f.user(s, "researcher"), project)
        applications.withdraw(s, f.user(s, "researcher"), first)
        draft = applications.start_amendment(s, f.user(s, "researcher"), project)
        references = (first.reference, draft.reference)
    for username, shows in (("researcher", references), ("dacchair", references[:1])):
        count, page = sent(username)
        assert count == without[username], username
        assert [r for r in references if r in page] == list(shows), username


def test_the_checkers_queue_and_home_send_as_many_statements_however_many_requests_wait(
        app: Flask, settings: Settings, session_factory: sessionmaker[Session]) -> None:
    """The demo's queue is empty; a queue with requests from two projects must be read in a fixed number of
    statements, not one per request or per relationship of each, and the checker's home page only counts it."""
    from sqlalchemy import update

    from gateway.db import utcnow

    with unit_of_work(session_factory) as s:
        demo.seed(s, settings)
    statements = Statements(app.extensions["sde_engine"])
    client = app.test_client()
    sign_in_session(client, session_factory, "checker1")

    def sent(page: str) -> int:
        client.get(page)
        statements.sent.clear()
        response = client.get(page)
        assert response.status_code == 200
        return len(statements.sent)

    empty = {page: sent(page) for page in ("/outputs/queue", "/home")}
    with unit_of_work(session_factory) as s:  # requests waiting on two projects (set straight to submitted)
        for username in ("researcher", "researcher2", "researcher2"):
            author = s.scalar(select(User).where(User.username == username))
            assert author is not None
            project = s.scalar(select(Project).where(Project.members.any(ProjectMember.user_id == author.id)))
            assert project is not None
            request = outputs.create_request(s, author, project, f"Waiting from {username}")
            outputs.save_group(s, author, request, "Counts", "Patients by borough.", "Small counts suppressed.")
            s.flush()
            s.execute(update(OutputRequest).where(OutputRequest.id == request.id)
                      .values(state="submitted", submitted_at=utcnow()))
    assert "Waiting from researcher2" in client.get("/outputs/queue").get_data(as_text=True)
    waiting = {page: sent(page) for page in ("/outputs/queue", "/home")}
    sent_last = [q[:60] for q in statements.sent]
    # the queue reads its rows in a fixed number of statements; the home page only counts them (no more than empty)
    assert waiting["/outputs/queue"] <= 5 and waiting["/home"] == empty["/home"], (empty, waiting, sent_last)


def test_an_amendments_page_sends_one_statement_more_than_a_new_applications(
        app: Flask, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    """The committee's conflict rule reads the amended project's team and former team: they come with the amendment
    in its page's first statement, not one statement per relationship (9 statements before, for the project, its team
    and its variables read one by one)."""
    from projects import applications
    from tests.support import factories as f

    with unit_of_work(session_factory) as s:
        for name in ("researcher", "researcher2"):
            f.accredit(s, name)
    project_id = f.approved_project(session_factory)
    with unit_of_work(session_factory) as s:  # researcher2 joins the team and then leaves it: one former member
        project = s.get(Project, project_id)
        assert project is not None
        project.members.append(ProjectMember(user_id=f.user(s, "researcher2").id, project_role="analyst"))
        s.flush()
        lifecycle.remove_members(s, project, {f.user(s, "researcher2").id}, "left")
        amendment = applications.start_amendment(s, f.user(s, "researcher"), project)
        applications.update_draft(s, f.user(s, "researcher"), amendment, {"amendment_summary": "Longer."})
        amendment_id = amendment.id
    f.submit(session_factory, amendment_id)
    f.review_round(session_factory, amendment_id, {"dac1": "approve"})
    new_id = f.draft(session_factory, applicant="researcher2", title="Another study")
    f.submit(session_factory, new_id, applicant="researcher2")
    f.review_round(session_factory, new_id, {"dac1": "approve"})
    statements = Statements(app.extensions["sde_engine"])
    for username in ("dacchair", "dac1"):
        client = app.test_client()
        sign_in_session(client, session_factory, username)
        counts = {}
        for application_id in (new_id, amendment_id):
            client.get(f"/applications/{application_id}")
            statements.sent.clear()
            assert client.get(f"/applications/{application_id}").status_code == 200
            counts[application_id] = len(statements.sent)
        # one more: the quote prices the datasets the amendment adds to the project's (it reads the project's variables)
        assert counts[amendment_id] <= counts[new_id] + 1, (username, counts, [q[:300] for q in statements.sent])
