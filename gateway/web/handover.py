"""The hub's door into the gateway for files a workspace hands over (see gateway/outputs/handover.py).

Called only by the JupyterHub, never by a browser: the route's access rule (``hub_only``) demands the
hub<->gateway secret, and each call names the hub user and server and carries the workspace credential.
Answers are JSON; a refused file is recorded in the audit log and nothing of it is stored.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, request

from gateway.db import unit_of_work
from gateway.errors import DomainError, ValidationError
from gateway.outputs import handover
from gateway.web.access import hub_only
from gateway.web.context import db, run, settings
from gateway.workspaces import traffic

bp = Blueprint("handover", __name__, url_prefix="/api/internal/workspace-handover/v1")

MAX_BODY_BYTES = 64 * 1024 * 1024


@bp.before_request
def _hand_over_bodies() -> None:
    """A file comes as base64 in JSON (a third larger), up to the hub's 64 MiB: more than the app's limit for other
    requests (MAX_CONTENT_LENGTH), which Flask would apply first and answer 413. The body is read only in the
    views, after ``hub_only`` has checked the hub's secret."""
    request.max_content_length = MAX_BODY_BYTES


def _context(check: Any = handover.context_for) -> tuple[handover.HandoverContext, dict[str, Any]]:
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise ValidationError("The hand-over is too large.")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ValidationError("Send a JSON object.")
    credential = body.get("credential")
    if not isinstance(credential, str):
        raise handover.CredentialError("The workspace credential is missing.")
    context = check(db(), settings(), credential, request.headers.get(handover.HUB_USER_HEADER, ""),
                    request.headers.get(handover.HUB_SERVER_HEADER, ""))
    return context, body


@bp.post("/drafts")
@hub_only
def drafts() -> Any:
    context, _ = _context()
    return jsonify({"project": context.project.reference, "requests": handover.drafts(db(), context)})


@bp.post("/files")
@hub_only
def files() -> Any:
    context, body = _context()
    user_id, project_id = context.user.id, context.project.id
    try:
        item = run(handover.submit, settings(), context, body)
    except DomainError as exc:
        messages = [m for ms in exc.field_errors.values() for m in ms] or [exc.message]
        with unit_of_work(current_app.extensions["sde_sessionmaker"]) as s:
            handover.record_refusal(s, settings(), user_id, project_id, body.get("request_id"), body.get("name"),
                                    " ".join(messages))
        raise
    return jsonify({"request_id": item.request_id, "name": item.path, "version": item.version, "sha256": item.sha256,
                    "size": item.size, "kind": item.kind, "group": item.group.name}), 201


@bp.post("/traffic")
@hub_only
def traffic_report() -> Any:
    """A workspace server's bytes to the browser since its last report (gateway/workspaces/traffic.py).

    Accepted for a session the gateway has already stopped too: the server's last report comes as it stops.
    """
    context, body = _context(handover.credential_session)
    result = run(traffic.record_traffic, settings(), context.workspace, traffic.parse_report(body))
    return jsonify({"session": result.session_id, "bytes_to_browser": result.bytes_to_browser})
