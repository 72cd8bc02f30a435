"""Reading is recorded too: every download and every refused request for an object, in the audit log.

A download changes nothing, so no service records it; a refusal rolls its request back. Both are still what an
information-governance review asks about ("who took the package?", "who tried ids that are not theirs?"). They
are written here, in one place each:

* ``@records_download(kind, id_arg)`` on a view: after the view has built its response, and before a byte of it
  is sent, an ``access.downloaded`` event is committed. If it cannot be recorded the download is not served.
* ``record_refusal`` (an after-request hook): a 403 or 404 answered to a signed-in person on a route whose URL
  names an object writes an ``access.refused`` event. The request's own transaction is ended first (a refusal
  changes nothing) and the event gets a short transaction of its own; if that fails the refusal still stands
  and is logged, so a 404 never turns into a 500 and the answer is the same whether the object exists or not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Response, current_app, g, request
from pydantic import BaseModel
from sqlalchemy import inspect

from gateway import audit
from gateway.db import unit_of_work
from gateway.models import User
from gateway.web.context import end_transaction

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

DOWNLOADED = "access.downloaded"
REFUSED = "access.refused"

# URL arguments that name an object, and the object type each names (the first in the URL is the event's object).
OBJECT_ARGS = {
    "project_id": "project", "application_id": "application", "request_id": "output_request",
    "invoice_id": "invoice", "accreditation_id": "accreditation", "user_id": "user", "token_id": "api_token",
    "organisation_id": "organisation", "version": "extract_version", "file_id": "output_file",
    "group_id": "output_group", "comment_id": "output_comment", "package_request_id": "package_request",
}


def _record(action: str, object_type: str, object_id: Any, details: dict[str, Any],
            actor: audit.Person | int) -> None:
    """One event in its own transaction, by the signed-in person (``_signed_in``, taken before any rollback)."""
    with unit_of_work(current_app.extensions["sde_sessionmaker"]) as session:
        by = actor if isinstance(actor, audit.Person) else session.get(User, actor)
        audit.record(session, by, action, object_type, object_id, details)


def _signed_in() -> audit.Person | int:
    """The signed-in person as loaded for this request, without a database read: their id, and their username while
    it is still loaded (only the id once a rollback has expired it; the event's transaction then reads the name). A
    read on the request's session after its rollback would open a new transaction there (on SQLite a writer's lock)
    before the event's own could begin."""
    state = inspect(g.user)
    identity = state.identity
    assert identity is not None
    username = state.dict.get("username")
    return int(identity[0]) if username is None else audit.Person(int(identity[0]), username)


def _where() -> dict[str, Any]:
    details: dict[str, Any] = {"method": request.method, "path": request.path, "endpoint": request.endpoint}
    if request.query_string:
        details["query"] = request.query_string.decode("utf-8", "replace")[:500]
    if request.path.startswith("/api/"):
        details["via"] = "api"
    return details


def records_download(kind: str, id_arg: str | None = None) -> Callable[[F], F]:
    """Record a successful download of ``kind`` (the object named by the URL argument ``id_arg``)."""
    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            result = view(*args, **kwargs)
            response = result if isinstance(result, Response) else None
            status = response.status_code if response is not None else 200
            if g.get("user") is None or request.method == "HEAD" or not 200 <= status < 300:
                return result
            details = {**_where(), "ids": {k: v for k, v in kwargs.items() if k in OBJECT_ARGS}}
            if response is not None:
                disposition = response.headers.get("Content-Disposition", "")
                if "filename=" in disposition:
                    details["filename"] = disposition.split("filename=", 1)[1].strip('"')[:200]
                if response.content_length is not None:
                    details["bytes"] = response.content_length
                if "Digest" in response.headers:
                    details["digest"] = response.headers["Digest"][:100]
            elif isinstance(result, BaseModel | list):
                details["format"] = "json"
            _record(DOWNLOADED, kind, kwargs.get(id_arg) if id_arg else None, details, _signed_in())
            return result
        wrapper.records_download = kind  # type: ignore[attr-defined]  # copied up by later @wraps; tests look for it
        return wrapper  # type: ignore[return-value]
    return decorate


def record_refusal(response: Response) -> Response:
    """After every request: a refused request for an object, by somebody signed in, is recorded."""
    if response.status_code not in (403, 404) or g.get("user") is None:
        return response
    ids = {k: v for k, v in (request.view_args or {}).items() if k in OBJECT_ARGS}
    if not ids:
        return response
    first = next(iter(ids))
    details = {**_where(), "status": response.status_code, "ids": ids}
    if response.is_json:
        details["error"] = str((response.get_json(silent=True) or {}).get("error", ""))[:100]
    try:
        actor = _signed_in()
        end_transaction()  # the request is refused: nothing of its own transaction is kept
        _record(REFUSED, OBJECT_ARGS[first], ids[first], details, actor)
    except Exception:  # the refusal stands either way; never turn it into a server error
        log.exception("could not record a refused request")
    return response


def record_refused_search(query: str) -> None:
    """A reference searched for that matches nothing this person may open: recorded like a refused object URL, so
    trying references in the search box shows up in the same place as trying ids in links."""
    try:
        actor = _signed_in()
        end_transaction()
        _record(REFUSED, "search", None, {**_where(), "status": 404, "reference": query}, actor)
    except Exception:  # the answer stands either way
        log.exception("could not record a refused search")
