"""What the gateway records about extracts: each project's pseudonym key, its builds and its versions.

The files themselves live under the extracts root (see gateway/extracts/storage.py); these rows say which
versions exist, which is live, who released a held one, and how a running build is getting on.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime, utcnow


class ProjectKey(Base):
    """The per-project pseudonym key's fingerprint; the key itself is a 0600 file the gateway holds."""

    __tablename__ = "project_keys"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    destroyed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class ExtractBuild(Base):
    __tablename__ = "extract_builds"
    __table_args__ = (
        CheckConstraint("state IN ('queued', 'running', 'done', 'failed')", name="known_state"),
        CheckConstraint("(state IN ('done', 'failed')) = (finished_at IS NOT NULL)", name="finished_pair"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    state: Mapped[str] = mapped_column(String(20), default="queued")
    reason: Mapped[str] = mapped_column(String(200))
    requested_by: Mapped[str] = mapped_column(String(100))
    rows_done: Mapped[int] = mapped_column(Integer, default=0)
    rows_total: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class ExtractVersion(Base):
    __tablename__ = "extract_versions"
    __table_args__ = (
        UniqueConstraint("project_id", "version"),
        CheckConstraint("status IN ('released', 'held_for_custodian')", name="known_status"),
        CheckConstraint("(released_by_id IS NULL) = (released_at IS NULL)", name="released_pair"),
        CheckConstraint("(release_proposed_by_id IS NULL) = (release_proposed_at IS NULL) "
                        "AND (release_proposed_by_id IS NULL) = (release_proposal_reason IS NULL)",
                        name="proposed_pair"),
        # the two-person rule, held by the database too: whoever proposed a release cannot be who released it
        CheckConstraint("release_proposed_by_id IS NULL OR released_by_id IS NULL "
                        "OR released_by_id <> release_proposed_by_id", name="second_person"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(30))
    rows: Mapped[int] = mapped_column(Integer)
    columns: Mapped[int] = mapped_column(Integer)
    opt_outs_removed: Mapped[int] = mapped_column(Integer)
    share_below_k: Mapped[float] = mapped_column()
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    built_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    released_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))  # a custodian releasing a held one
    released_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    release_reason: Mapped[str | None] = mapped_column(Text)
    # a high-risk version is released by two custodians: one proposes (with a reason), another confirms
    release_proposed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    release_proposed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    release_proposal_reason: Mapped[str | None] = mapped_column(Text)
