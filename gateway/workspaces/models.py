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
