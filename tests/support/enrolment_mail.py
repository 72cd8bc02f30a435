"""Reading the one-time set-up link (or code) the gateway emails before an authenticator is set up, from the outbox,
the way the tests read every other email; and following it as a person would."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.test import TestResponse

from gateway.identity import accounts
from gateway.outbox import OutboxMessage

CODE_RE = re.compile(r"\b([2-9A-Z]{4}-[2-9A-Z]{4}-[2-9A-Z]{4}-[2-9A-Z]{4})\b")
LINK_RE = re.compile(r"(https?://\S+\?code=[2-9A-Z]+)")


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or \
        re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def mails_to(factory: sessionmaker[Session], username: str) -> list[str]:
    """The bodies of the emails queued for the person, oldest first."""
    with factory() as s:
        user = accounts.find_user(s, username)
        assert user is not None and user.email
        return [m.payload["body"] for m in s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "email")
                                                     .order_by(OutboxMessage.id)) if m.payload["to"] == user.email]


def newest_link(factory: sessionmaker[Session], username: str) -> str:
    mails = mails_to(factory, username)
    assert mails, f"no email to {username}"
    found = LINK_RE.search(mails[-1])
    assert found, mails[-1]
    return found.group(1)


def newest_code(factory: sessionmaker[Session], username: str) -> str:
    mails = mails_to(factory, username)
    assert mails, f"no email to {username}"
    found = CODE_RE.search(mails[-1])
    assert found, mails[-1]
    return found.group(1)


def follow(client: FlaskClient, link: str) -> TestResponse:
    """Open the emailed link, then press Continue on the page it shows (the code is filled in from the link)."""
    parts = urlsplit(link)
    page = client.get(f"{parts.path}?{parts.query}")
    if page.status_code != 200:
        return page
    html = page.get_data(as_text=True)
    action = re.search(r'<form method="post" action="([^"]+)" novalidate>', html)
    value = re.search(r'name="code"[^>]*value="([^"]*)"', html) or re.search(r'value="([^"]*)"[^>]*name="code"', html)
    assert action and value, "the link's page shows no form with the code"
    return client.post(action.group(1), data={"csrf_token": _csrf(html), "code": value.group(1)})


def prove_email(client: FlaskClient, factory: sessionmaker[Session], username: str) -> None:
    """Signed in without an authenticator: ask for the link on the account page and follow it."""
    page = client.get("/account/second-factor").get_data(as_text=True)
    client.post("/account/second-factor/send", data={"csrf_token": _csrf(page)})
    response = follow(client, newest_link(factory, username))
    assert response.headers.get("Location", "").endswith("/account/second-factor"), response.status_code
