"""The SQL statements the key signed-in pages send, pinned on the demo data, so a page that starts loading row by row
(a lazy relationship read in a loop, a list read twice) fails here. Counted, never timed: bench/pages.py times them.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from gateway import demo
from gateway.config import Settings
from gateway.db import unit_of_work
from tests.conftest import sign_in_session

# (user, page or (list page, link pattern)) -> the most statements the request may send, with what it must show
BUDGETS: list[tuple[str, str | tuple[str, str], int, str]] = [
    ("researcher", "/home", 6, "Welcome, Dr Amara Okafor"),
    ("researcher", "/projects/", 3, "Approved projects you can see"),
    ("researcher", ("/projects/", r"/projects/\d+"), 23, "Workspace sessions"),
    ("researcher", "/applications/", 3, "Your team&#39;s applications"),
    ("researcher", "/outputs/", 4, "output requests"),
    ("checker1", "/home", 2, "Welcome, Ali Hassan"),
    ("checker1", "/outputs/queue", 2, "Output checking"),
    ("dacchair", "/home", 5, "Welcome, Prof. Helen Marsh"),
    ("dacchair", "/applications/", 3, "Applications for the data access committee"),
    ("dacchair", ("/applications/", r"/applications/\d+"), 11, "Variables requested"),
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
        client.get(page)  # per-process caches (templates, compiled statements) are filled by the first request
        statements.sent.clear()
        response = client.get(page)
        assert response.status_code == 200, (username, page, response.status_code)
        assert shows in response.get_data(as_text=True), (username, page, shows)
        measured[(username, page)], allowed[(username, page)] = len(statements.sent), budget
    over = {key: (n, allowed[key]) for key, n in measured.items() if n > allowed[key]}
    assert not over, f"pages sending more statements than pinned (sent, pinned): {over}"
