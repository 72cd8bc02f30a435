"""Workspace sessions: when a researcher's server for a project started and stopped (metered as compute)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from gateway.db import Base, UTCDateTime, utcnow
from gateway.models import User


class WorkspaceSession(Base):
    __tablename__ = "workspace_sessions"
    __table_args__ = (
        CheckConstraint("stopped_at IS NULL OR stopped_at >= started_at", name="stops_after_start"),
        CheckConstraint("(stopped_at IS NULL) = (stop_reason IS NULL)", name="stop_pair"),
        CheckConstraint("bytes_to_browser >= 0", name="bytes_to_browser_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    server_name: Mapped[str] = mapped_column(String(100))
    # The hub user the server ran as: `_u<id>` from 0014 on; older rows keep the name they were opened under.
    hub_user: Mapped[str | None] = mapped_column(String(64))
    tier: Mapped[str] = mapped_column(String(20))
    extract_path: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    stopped_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    stop_reason: Mapped[str | None] = mapped_column(String(200))
    # What the server sent to the browser (reported by the workspace; gateway/workspaces/traffic.py), and when the
    # total first passed `workspaces.traffic_alert_bytes` (recorded in the audit log then, once).
    bytes_to_browser: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    traffic_alert_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()


class PackageRequest(Base):
    """A researcher's request for a package in the workspace environment, approved or refused by an administrator.

    States and who acts in them: gateway/workspaces/packages.py (TRANSITIONS) and gateway/permissions.py."""

    __tablename__ = "package_requests"
    __table_args__ = (
        CheckConstraint("state IN ('requested', 'approved', 'refused')", name="package_state"),
        CheckConstraint("ecosystem IN ('python', 'r')", name="package_ecosystem"),
        CheckConstraint("(decided_by_id IS NULL) = (decided_at IS NULL)", name="decided_pair"),
        CheckConstraint("(state = 'requested') = (decided_at IS NULL)", name="decided_when_not_requested"),
        CheckConstraint("state <> 'refused' OR (decision_reason IS NOT NULL AND decision_reason <> '')",
                        name="refusal_has_reason"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    requested_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    ecosystem: Mapped[str] = mapped_column(String(10))
    name: Mapped[str] = mapped_column(String(100))
    version: Mapped[str] = mapped_column(String(50), default="")
    reason: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(20), default="requested", index=True)
    requested_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    decision_reason: Mapped[str | None] = mapped_column(Text)

    requested_by: Mapped[User] = relationship(foreign_keys=[requested_by_id])
    decided_by: Mapped[User | None] = relationship(foreign_keys=[decided_by_id])
