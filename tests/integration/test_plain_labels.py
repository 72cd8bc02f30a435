"""Every role's pages, on the demo data, show words, not the code's internal values.

The internal values come from the code (the workflow enums, the roles, the vote and decision values, the
catalogue's dataset and variable roles), never from a hand list, so a new enum member is covered at once.
The walk follows the links each role sees, from their home, a few pages per distinct path shape.
Text inside <code> or the mono class is a technical identifier shown on purpose (a file name, a variable a
researcher selects) and is not checked.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from gateway import demo
from gateway.config import Settings
from gateway.db import unit_of_work
from gateway.models import AuditEvent, User
from gateway.web import labels
from projects.models import Application, Project
from tests.conftest import sign_in_session

SKIP_TAGS = {"script", "style", "code", "title"}
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december")
LOWER_CASE_DATE = re.compile(r"\b\d{1,2} (?:" + "|".join(MONTHS) + r") \d{4}\b")
ISO_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
WHOLE_FLOAT = re.compile(r"(?<![\d.£,])\d+\.0(?![\d%]|\.\d)\b")  # not a version such as 1.0.2
JSON_TEXT = re.compile(r"\{\s*\"")
PAGES_PER_ROLE = 80
PER_SHAPE = 4  # a few of each kind of page (applications in different states), not every one
NOT_PAGES = (".csv", ".pdf", ".zip", ".json", ".txt", "/logout", "/api/", "/static/", "/assets/", "/hub/", "/user/")


class VisibleText(HTMLParser):
    """The text a person sees (and a screen reader reads), and the page's same-site links."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.links: list[str] = []
        self.shown: list[str] = []  # the text without form labels and hints
        self._skipping: list[str] = []
        self._in_form_text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a" and values.get("href"):
            self.links.append(values["href"] or "")
        if tag in {"br", "img", "input", "meta", "link", "hr", "source", "wbr"}:
            return
        classes = (values.get("class") or "").split()
        if self._skipping or tag in SKIP_TAGS or "sde-mono" in classes:
            self._skipping.append(tag)
        elif tag == "label" or "nhsuk-hint" in classes:
            self._in_form_text.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self._skipping and self._skipping[-1] == tag:
            self._skipping.pop()
        elif self._in_form_text and self._in_form_text[-1] == tag:
            self._in_form_text.pop()

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.text.append(data)
            if not self._in_form_text:
                self.shown.append(data)


def internal_values() -> set[str]:
    """Every internal value a page could leak that is not also an ordinary word: the snake_case ones, and
    short codes (dataset names, condition codes) that are not English."""
    return {v for v in labels.internal_values() if "_" in v or v in labels.CODES}


def shape(path: str) -> str:
    return re.sub(r"/\d+", "/N", re.sub(r"/[0-9a-f]{16,}", "/H", path))


def problems_on(path: str, html: str, tokens: set[str]) -> tuple[list[str], list[str]]:
    parser = VisibleText()
    parser.feed(html)
    text = re.sub(r"\s+", " ", " ".join(parser.text))
    shown = re.sub(r"\s+", " ", " ".join(parser.shown))
    found = []
    for token in sorted(tokens):
        match = re.search(r"(?<![\w.-])" + re.escape(token) + r"(?![\w-])", text)
        if match:
            found.append(f"{path}: internal value {token!r} in “…{text[max(match.start() - 40, 0):match.end() + 40]}…”")
    # no form asks for an ISO date any more (dates are typed in Day, Month and Year boxes): labels and hints too
    for pattern, what, where in ((LOWER_CASE_DATE, "lower-case date", shown), (ISO_DATE, "ISO date", text),
                                 (WHOLE_FLOAT, "whole number with .0", shown), (JSON_TEXT, "JSON", shown)):
        match = pattern.search(where)
        if match:
            found.append(f"{path}: {what} in “…{where[max(match.start() - 40, 0):match.end() + 40]}…”")
    return found, parser.links


@pytest.fixture
def demo_app(app: Flask, settings: Settings, session_factory: sessionmaker[Session]) -> Flask:
    with unit_of_work(session_factory) as s:
        demo.seed(s, settings)
    return app


def walk(client: FlaskClient, tokens: set[str]) -> tuple[list[str], int]:
    queue, found, visited = ["/home"], [], 0
    done: set[str] = set()
    shapes: dict[str, int] = {}
    while queue and visited < PAGES_PER_ROLE:
        path = queue.pop(0)
        if path in done or shapes.get(shape(path), 0) >= PER_SHAPE:
            continue
        done.add(path)
        shapes[shape(path)] = shapes.get(shape(path), 0) + 1
        response = client.get(path)
        if response.status_code != 200 or not response.content_type.startswith("text/html"):
            continue
        visited += 1
        problems, links = problems_on(path, response.get_data(as_text=True), tokens)
        found += problems
        for link in links:
            parts = urlsplit(link)
            if parts.netloc or not parts.path.startswith("/") or any(n in parts.path for n in NOT_PAGES):
                continue
            queue.append(parts.path + (f"?{parts.query}" if parts.query else ""))
    return found, visited


def test_no_page_of_any_role_shows_an_internal_value(
        demo_app: Flask, session_factory: sessionmaker[Session]) -> None:
    tokens = internal_values()
    assert {"dac_chair", "under_review", "approve_with_conditions", "copd"} <= tokens
    found: list[str] = []
    for user in demo.DEMO_USERS:
        client = demo_app.test_client()
        sign_in_session(client, session_factory, user.username)
        problems, visited = walk(client, tokens)
        assert visited >= 3, f"{user.username} reached only {visited} pages"
        found += [f"{user.username} {p}" for p in problems]
    assert not found, "\n".join(dict.fromkeys(found))


def test_the_check_sees_a_raw_value_a_lower_case_date_json_and_a_float_count() -> None:
    html = ('<main><p>Role: dac_chair</p><p>on 4 august 2031</p><td>{"a": 1}</td><td>12.0 rows</td>'
            '<code>under_review</code><span class="sde-mono">under_review</span><p>£1,234.00</p></main>')
    found, _links = problems_on("/x", html, {"dac_chair", "under_review"})
    assert len(found) == 4, found


def test_audit_entries_link_what_the_auditor_may_see_and_read_as_words(
        demo_app: Flask, session_factory: sessionmaker[Session]) -> None:
    with unit_of_work(session_factory) as s:
        draft = s.scalars(select(Application).where(Application.state == "draft")).first()
        submitted = s.scalars(select(Application).where(Application.state == "submitted")).first()
        project = s.scalars(select(Project)).first()
        assert draft is not None and submitted is not None and project is not None
        ids = {"draft": draft.id, "submitted": submitted.id, "project": project.id,
               "project_ref": project.reference}
    client = demo_app.test_client()
    sign_in_session(client, session_factory, "auditor")

    def cells(query: str) -> tuple[list[str], list[str]]:
        html = client.get(f"/audit/?{query}").get_data(as_text=True)
        objects = re.findall(r'data-testid="audit-object">(.*?)</td>', html)
        details = re.findall(r'data-testid="audit-details">(.*?)</td>', html)
        return objects, details

    objects, details = cells(f"object_type=project&object_id={ids['project']}&action=project.created")
    assert objects == [f'<a href="/projects/{ids["project"]}">Project {ids["project_ref"]}</a>']
    assert len(details) == 1 and "{" not in details[0] and "Security tier: " in details[0], details
    # the auditor may not open applications (only reviewers, administrators and the team may): the event is
    # there, named in words, without a link to a page that would refuse them
    for key in ("draft", "submitted"):
        objects, details = cells(f"object_type=application&object_id={ids[key]}&action=application.created")
        assert objects == [f"Application {ids[key]}"], objects
        assert "{" not in details[0] and "Reference: LSDE-" in details[0], details


def test_search_by_reference_goes_to_what_one_may_open_and_says_not_found_alike_otherwise(
        demo_app: Flask, session_factory: sessionmaker[Session]) -> None:
    with unit_of_work(session_factory) as s:
        draft = s.scalars(select(Application).where(Application.state == "draft")).first()
        mine = s.scalars(select(Project).join(User, Project.lead_id == User.id)
                         .where(User.username == "researcher")).first()
        assert draft is not None and mine is not None
        draft_ref, draft_id, project_ref, project_id = draft.reference, draft.id, mine.reference, mine.id
        refusals_before = s.scalar(select(func.count()).select_from(AuditEvent)
                                   .where(AuditEvent.action == "access.refused"))
    owner = demo_app.test_client()
    sign_in_session(owner, session_factory, "researcher2")  # the demo draft's applicant
    found = owner.get(f"/search?q={draft_ref.lower()}")  # case and spaces do not matter
    assert found.status_code == 302 and found.headers["Location"] == f"/applications/{draft_id}"
    chair = demo_app.test_client()
    sign_in_session(chair, session_factory, "dacchair")
    assert chair.get(f"/search?q=+{project_ref}+").headers["Location"] == f"/projects/{project_id}"
    # a draft is its team's own: the chair is told exactly what a missing reference tells them
    hidden = chair.get(f"/search?q={draft_ref}")
    missing = chair.get("/search?q=LSDE-1999-9999")
    assert hidden.status_code == missing.status_code == 404
    assert (hidden.get_data(as_text=True).replace(draft_ref, "REF")
            == missing.get_data(as_text=True).replace("LSDE-1999-9999", "REF"))
    assert "nothing with that reference that you can open" in hidden.get_data(as_text=True)
    with unit_of_work(session_factory) as s:
        refused = s.scalars(select(AuditEvent).where(AuditEvent.action == "access.refused")
                            .order_by(AuditEvent.seq)).all()[refusals_before:]
        assert [(e.object_type, e.details["reference"]) for e in refused] == [
            ("search", draft_ref), ("search", "LSDE-1999-9999")]
    assert chair.get("/search").status_code == 200  # the empty box
