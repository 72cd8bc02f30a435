"""Bytes a workspace server sent to the researcher's browser: kept per workspace session, alerted past a threshold.

Each single-user server counts what it writes to browser connections (infra/jupyterhub/singleuser/
londonsde_egress.py) and reports the bytes not yet reported, every few seconds and when it stops, through the hub
with its workspace credential (the same credential and checks as the output hand-over, gateway/outputs/handover.py).
Reports only ever add: the total is increased in one SQL statement, so reports arriving together are all counted,
and the audit event ``workspace.traffic_threshold_passed`` is recorded once per session, by whichever report first
finds the total at or past ``workspaces.traffic_alert_bytes`` (a guarded UPDATE sets ``traffic_alert_at`` once).

The count is made inside the researcher's own server process, so it measures what an honest server sent; a
researcher who tampers with their own server could under-report (docs/workspaces.md says so). What can stop a
person reading a screen is not software; the count is there so that heavy traffic is seen and looked into.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from gateway import audit
from gateway.config import Settings
from gateway.db import utcnow
from gateway.errors import ValidationError
from gateway.models import User
from gateway.permissions import Permission, has_permission
from gateway.workspaces.models import WorkspaceSession
from projects.lifecycle import is_member
from projects.models import Project

# One report may carry at most this many bytes (a server reports every 30 s by default; 64 GiB in 30 s is beyond
# any browser connection). Larger or negative numbers are refused.
MAX_REPORT_BYTES = 64 * 1024**3
THRESHOLD_EVENT = "workspace.traffic_threshold_passed"

# Labels shown to people for the traffic columns (the one mapping; templates use these, never the field names).
LABELS: dict[str, str] = {
    "bytes_to_browser": "Bytes to browser",
    "traffic_alert_at": "Past the traffic alert",
    "started_at": "Started",
    "stopped_at": "Stopped",
    "user": "Researcher",
    "project": "Project",
    "open": "Still open",
}


@dataclass(frozen=True)
class TrafficResult:
    session_id: int
    bytes_to_browser: int
    alerted: bool  # this report passed the threshold (and recorded the audit event)


def parse_report(body: dict[str, Any]) -> int:
    value = body.get("bytes")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > MAX_REPORT_BYTES:
        raise ValidationError("The traffic report could not be read.",
                              field_errors={"bytes": [f"A whole number of bytes from 0 to {MAX_REPORT_BYTES}."]})
    return value


def record_traffic(session: Session, settings: Settings, workspace: WorkspaceSession, count: int) -> TrafficResult:
    """Add ``count`` bytes to the session's total; record the threshold event the first time it is passed."""
    total = session.execute(
        update(WorkspaceSession).where(WorkspaceSession.id == workspace.id)
        .values(bytes_to_browser=WorkspaceSession.bytes_to_browser + count)
        .returning(WorkspaceSession.bytes_to_browser)
        .execution_options(synchronize_session=False)).scalar_one()
    threshold = settings.workspaces.traffic_alert_bytes
    alerted = False
    if total >= threshold:
        claimed = session.execute(
            update(WorkspaceSession)
            .where(WorkspaceSession.id == workspace.id, WorkspaceSession.traffic_alert_at.is_(None))
            .values(traffic_alert_at=utcnow()).execution_options(synchronize_session=False))
        if claimed.rowcount == 1:
            alerted = True
            user = session.get(User, workspace.user_id)
            assert user is not None
            audit.record(session, user, THRESHOLD_EVENT, "project", workspace.project_id,
                         {"workspace_session": workspace.id, "server": workspace.server_name,
                          "bytes_to_browser": total, "threshold": threshold})
    session.expire(workspace)
    return TrafficResult(workspace.id, total, alerted)


@dataclass(frozen=True)
class SessionTraffic:
    id: int
    user: str
    project_id: int
    project: str
    started_at: Any
    stopped_at: Any
    bytes_to_browser: int
    traffic_alert_at: Any
    user_id: int = 0


def sessions_of(session: Session, project: Project | None = None, limit: int = 200) -> list[SessionTraffic]:
    """Workspace sessions, newest first, with their traffic (one project's, or every project's for auditors)."""
    query = (select(WorkspaceSession, User.username, Project.reference)
             .join(User, User.id == WorkspaceSession.user_id)
             .join(Project, Project.id == WorkspaceSession.project_id)
             .order_by(WorkspaceSession.started_at.desc(), WorkspaceSession.id.desc()).limit(limit))
    if project is not None:
        query = query.where(WorkspaceSession.project_id == project.id)
    return [SessionTraffic(ws.id, username, ws.project_id, reference, ws.started_at, ws.stopped_at,
                           ws.bytes_to_browser, ws.traffic_alert_at, ws.user_id)
            for ws, username, reference in session.execute(query)]


def can_see_traffic(user: User, project: Project) -> bool:
    """Who sees a project's workspace sessions and their traffic: its members, and those who oversee projects."""
    return (is_member(user, project) or has_permission(user, Permission.MANAGE_PROJECTS)
            or has_permission(user, Permission.VIEW_AUDIT_LOG))


def human_bytes(count: int) -> str:
    """1536 -> '1.5 KB' (decimal units, as disks and networks are sold); exact bytes are in the title attribute."""
    value = float(count)
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{count} bytes"  # pragma: no cover
