"""Outputs handed over by a workspace: who may send what, checked before any byte is stored.

The gateway never reads a researcher's folder. A workspace sends the chosen file's bytes through the hub:

1. When the gateway opens a workspace it mints a *workspace credential* (``mint_credential``): the workspace
   session, the person, the project and an expiry, signed with a key derived from the gateway's secret key
   (the hub never holds that key, so it cannot forge one). The credential travels in the spawn options and
   reaches the single-user server as ``LONDONSDE_HANDOVER_CREDENTIAL``.
2. The workspace's hand-over extension reads the file safely (as the workspace's own user) and posts it,
   with the credential, to the hub, authenticated by the server's own hub API token. The hub knows which
   user and which server that token belongs to; it forwards the call here with the hub<->gateway secret
   and those two names.
3. Here (``context_for``) the hub secret, the credential's signature and expiry, the workspace session
   (still open, this person, this project) and the hub's names must all agree, and the person must still
   be allowed to request outputs and have accepted the current data access agreement. The only things a
   workspace can then do are list the person's own draft requests on that project and add a file to one of
   them (``submit``), through the same intake rules as every file: a refused file is not stored. The bytes
   can be read afterwards only by output checkers and, once two of them approve, in the release package;
   nothing sent here is ever shown back to the sandbox or to the researcher except its name, size, hash and
   verdict.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from gateway import audit
from gateway.config import Settings
from gateway.errors import AuthenticationFailed, NotFound, PermissionDenied, ValidationError
from gateway.models import User
from gateway.outputs import files as intake
from gateway.outputs import service
from gateway.outputs.models import OutputFile, OutputRequest
from gateway.workspaces.entitlement import NOT_ACCEPTED, has_accepted_current_agreement, workspace_id
from gateway.workspaces.models import WorkspaceSession
from projects.models import Project

VERSION = "h1"
SECRET_FILE = "handover-secret"  # noqa: S105 - a file name; in the hub's state folder, shared by the hub and the gateway
HUB_SECRET_HEADER = "X-Londonsde-Hub-Secret"  # noqa: S105 - a header name
HUB_USER_HEADER = "X-Londonsde-Hub-User"
HUB_SERVER_HEADER = "X-Londonsde-Hub-Server"
DEFAULT_TTL_SECONDS = 12 * 3600
_KEY_CONTEXT = b"londonsde workspace hand-over credential v1"


class CredentialError(AuthenticationFailed):
    error = "bad_credential"


@dataclass(frozen=True)
class Claims:
    session_id: int
    user_id: int
    project_id: int
    expires_at: int


@dataclass(frozen=True)
class HandoverContext:
    user: User
    project: Project
    workspace: WorkspaceSession


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise CredentialError("The workspace credential is malformed.") from exc


def _key(settings: Settings) -> bytes:
    return hmac.new(settings.resolved_secret_key().encode("utf-8"), _KEY_CONTEXT, hashlib.sha256).digest()


def mint_credential(settings: Settings, session_id: int, user_id: int, project_id: int,
                    ttl_seconds: int = DEFAULT_TTL_SECONDS, now: float | None = None) -> str:
    """A credential letting one workspace session hand files over for its person and project until it expires."""
    claims = {"s": session_id, "u": user_id, "p": project_id, "exp": int((now or time.time()) + ttl_seconds)}
    payload = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode("utf-8"))
    signed = f"{VERSION}.{payload}"
    return f"{signed}.{_b64(hmac.new(_key(settings), signed.encode('ascii'), hashlib.sha256).digest())}"


def verify_credential(settings: Settings, credential: str, now: float | None = None) -> Claims:
    parts = credential.split(".") if isinstance(credential, str) else []
    if len(parts) != 3 or parts[0] != VERSION:
        raise CredentialError("The workspace credential is malformed.")
    signed = f"{parts[0]}.{parts[1]}"
    expected = hmac.new(_key(settings), signed.encode("ascii", errors="replace"), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, _unb64(parts[2])):
        raise CredentialError("The workspace credential is not valid.")
    try:
        raw = json.loads(_unb64(parts[1]))
        claims = Claims(int(raw["s"]), int(raw["u"]), int(raw["p"]), int(raw["exp"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise CredentialError("The workspace credential is malformed.") from exc
    if claims.expires_at <= (now or time.time()):
        raise CredentialError("The workspace credential has expired: stop the workspace and open it again from "
                              "the gateway.")
    return claims


def hub_secret(settings: Settings) -> str | None:
    try:
        secret = (settings.hub_state_dir / SECRET_FILE).read_text().strip()
    except OSError:
        return None
    return secret if len(secret) >= 32 else None


def hub_secret_ok(settings: Settings, presented: str | None) -> bool:
    """Whether a call carries the hub<->gateway secret (compared in constant time)."""
    secret = hub_secret(settings)
    return bool(secret and presented) and hmac.compare_digest(secret.encode(), (presented or "").encode())


def context_for(session: Session, settings: Settings, credential: str, hub_user: str, hub_server: str,
                now: float | None = None) -> HandoverContext:
    """The person, project and workspace session a hand-over call acts for, once everything agrees."""
    context = credential_session(session, settings, credential, hub_user, hub_server, now, require_open=True)
    service.check_can_request(session, context.user, context.project)
    if not has_accepted_current_agreement(session, context.user):
        # a new version stops the person's workspaces when it is published; one still running hands nothing over
        raise PermissionDenied(f"{NOT_ACCEPTED} Accept it in the gateway, then open the workspace again.")
    return context


def credential_session(session: Session, settings: Settings, credential: str, hub_user: str, hub_server: str,
                       now: float | None = None, require_open: bool = False) -> HandoverContext:
    """The workspace session a credential names, once signature, expiry, session, person and hub names agree.

    Without ``require_open`` the session may have ended (a server's last traffic report arrives after the gateway
    stopped it); hand-overs, which act for the person, require it open and check what the person may do.
    """
    from gateway.workspaces.service import hub_username, session_hub_user

    claims = verify_credential(settings, credential, now)
    workspace = session.get(WorkspaceSession, claims.session_id)
    if workspace is None or (require_open and workspace.stopped_at is not None):
        raise CredentialError("This workspace session has ended: open the workspace again from the gateway.")
    if workspace.user_id != claims.user_id or workspace.project_id != claims.project_id:
        raise CredentialError("The workspace credential does not match its session.")
    user = session.get(User, claims.user_id)
    project = session.get(Project, claims.project_id)
    if user is None or project is None or not user.is_active:
        raise CredentialError("The workspace credential names nobody who can hand files over.")
    if (hub_username(user) != hub_user or session_hub_user(workspace) != hub_user
            or workspace_id(project) != hub_server or workspace.server_name != hub_server):
        raise CredentialError("The workspace credential belongs to another workspace.")
    return HandoverContext(user, project, workspace)


def drafts(session: Session, context: HandoverContext) -> list[dict[str, Any]]:
    """The person's requests on this project that can take files, with their groups and files (names only)."""
    return [{
        "id": r.id, "title": r.title, "state": r.state,
        "groups": [{"id": g.id, "name": g.name} for g in r.groups],
        "files": [{"name": f.path, "version": f.version, "sha256": f.sha256, "kind": f.kind} for f in r.files],
    } for r in service.drafts_for(session, context.user, context.project)]


def _decode(value: Any, field: str) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError("The hand-over could not be read.", field_errors={field: ["Send base64 text."]})
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError("The hand-over could not be read.", field_errors={field: ["Not base64."]}) from None


def submit(session: Session, settings: Settings, context: HandoverContext, body: dict[str, Any]) -> OutputFile:
    """Add (or add a new version of) one file in one of the person's draft requests on this project."""
    request = session.get(OutputRequest, body.get("request_id")) if isinstance(body.get("request_id"), int) else None
    if request is None or request.project_id != context.project.id or request.author_id != context.user.id:
        raise NotFound("No such output request of yours on this project.")
    group_id = body.get("group_id")
    if isinstance(body.get("group"), str):  # a group may be named instead of numbered
        group_id = next((g.id for g in request.groups if g.name == body["group"].strip()), -1)
    if group_id is not None and not isinstance(group_id, int):
        raise ValidationError("The hand-over could not be read.", field_errors={"group_id": ["Give a group id."]})
    kind = body.get("kind")
    if kind is not None and not isinstance(kind, str):
        raise ValidationError("The hand-over could not be read.", field_errors={"kind": ["output or supporting"]})
    name = body.get("name")
    if not isinstance(name, str):
        raise ValidationError("The hand-over could not be read.", field_errors={"name": ["Name the file."]})
    data = _decode(body.get("data"), "data")
    if data is None:
        raise ValidationError("The hand-over could not be read.", field_errors={"data": ["Send the file's bytes."]})
    sidecar = _decode(body.get("sidecar"), "sidecar")
    return service.add_file_bytes(session, context.user, request, settings, name, data, sidecar, group_id, kind,
                                  source=f"workspace hand-over ({context.workspace.server_name})")


def record_refusal(session: Session, settings: Settings, user_id: int, project_id: int, request_id: Any, name: Any,
                   message: str) -> None:
    """A refused hand-over is kept in the audit log (what was tried, never the bytes), in its own transaction.

    The name is the researcher's text and the log is read outside the workspace: it is kept only when it is a plain
    file name holding none of the project's pseudonyms (as an accepted file's name is); otherwise only its SHA-256,
    and the refusal's words, which quote the name, say "the file" instead.
    """
    user = session.get(User, user_id)
    project = session.get(Project, project_id)
    assert user is not None and project is not None
    text = name if isinstance(name, str) else ""
    try:
        plain = intake.check_name(text) == text and not service.project_pseudonyms(settings, project).count([text])
    except ValidationError:
        plain = False
    reason = message
    if not plain:
        for form in filter(None, {text, text.strip(), text.strip().replace("\\", "/")}):
            reason = reason.replace(f"'{form}'", "the file").replace(form, "the file")
    audit.record(session, user, "output_request.handover_refused", "project", project_id,
                 {"request_id": request_id if isinstance(request_id, int) else None,
                  "name": text if plain else None,
                  "name_sha256": hashlib.sha256(text.encode()).hexdigest() if text and not plain else None,
                  "reason": reason[:500]})


def secret_path(state_dir: Path) -> Path:
    return state_dir / SECRET_FILE
