"""Output request tables: requests, groups, files (copied into gateway storage), votes, reviews, comments."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from gateway.db import Base, UTCDateTime, utcnow
from gateway.models import User
from projects.models import Project


class OutputRequest(Base):
    __tablename__ = "output_requests"
    __table_args__ = (
        CheckConstraint("state IN ('pending', 'submitted', 'partially_reviewed', 'reviewed', 'returned', "
                        "'approved', 'rejected', 'withdrawn', 'released')", name="known_state"),
        CheckConstraint("(decided_by_id IS NULL) = (decided_at IS NULL)", name="decided_pair"),
        CheckConstraint("(released_at IS NULL) = (package_sha256 IS NULL)", name="released_pair"),
        CheckConstraint("state != 'released' OR released_at IS NOT NULL", name="released_has_package"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(30), default="pending", index=True)
    round: Mapped[int] = mapped_column(Integer, default=1)  # increases at each resubmission
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    submitted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    released_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    package_name: Mapped[str | None] = mapped_column(String(200))
    package_sha256: Mapped[str | None] = mapped_column(String(64))

    project: Mapped[Project] = relationship()
    author: Mapped[User] = relationship(foreign_keys=[author_id])
    decided_by: Mapped[User | None] = relationship(foreign_keys=[decided_by_id])
    groups: Mapped[list[OutputGroup]] = relationship(back_populates="request", cascade="all, delete-orphan",
                                                     order_by="OutputGroup.id", lazy="selectin")
    files: Mapped[list[OutputFile]] = relationship(back_populates="request", cascade="all, delete-orphan",
                                                   order_by="OutputFile.id", lazy="selectin")
    reviews: Mapped[list[OutputReview]] = relationship(back_populates="request", cascade="all, delete-orphan",
                                                       order_by="OutputReview.id", lazy="selectin")
    comments: Mapped[list[OutputComment]] = relationship(back_populates="request", cascade="all, delete-orphan",
                                                         order_by="OutputComment.id", lazy="selectin")
    exceptions: Mapped[list[OutputException]] = relationship(back_populates="request", cascade="all, delete-orphan",
                                                             order_by="OutputException.id", lazy="selectin")


class OutputGroup(Base):
    """Files that belong together, with the context a checker needs and the controls applied."""

    __tablename__ = "output_groups"
    __table_args__ = (UniqueConstraint("request_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("output_requests.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    context: Mapped[str] = mapped_column(Text, default="")  # what it shows, the population, the variables
    controls: Mapped[str] = mapped_column(Text, default="")  # the disclosure controls applied

    request: Mapped[OutputRequest] = relationship(back_populates="groups")


class OutputFile(Base):
    """One file as submitted: a copy in gateway storage with its hash; a new version replaces it on resubmission."""

    __tablename__ = "output_files"
    __table_args__ = (
        UniqueConstraint("request_id", "path"),
        CheckConstraint("kind IN ('output', 'supporting')", name="known_kind"),
        CheckConstraint("check_status IN ('pending', 'pass', 'review', 'fail')", name="known_check_status"),
        CheckConstraint("(checked_at IS NULL) = (check_status = 'pending')", name="checked_pair"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("output_requests.id"), index=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("output_groups.id"), index=True)
    path: Mapped[str] = mapped_column(String(300))  # relative to the workspace's outputs/ folder
    kind: Mapped[str] = mapped_column(String(20))
    version: Mapped[int] = mapped_column(Integer, default=1)
    stored_name: Mapped[str] = mapped_column(String(300))  # under the gateway's outputs storage
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str] = mapped_column(String(100))
    sdc_record: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # the disclosure-control sidecar, if saved so
    check_status: Mapped[str] = mapped_column(String(20), default="pending")
    check_result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    checked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    added_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    request: Mapped[OutputRequest] = relationship(back_populates="files")
    group: Mapped[OutputGroup] = relationship()
    votes: Mapped[list[OutputVote]] = relationship(back_populates="file", cascade="all, delete-orphan",
                                                   order_by="OutputVote.id", lazy="selectin")

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def extension(self) -> str:
        return self.path.rsplit(".", 1)[-1].lower() if "." in self.path else ""


class OutputVote(Base):
    """A checker's vote on one version of one file; a new version of the file starts with no votes."""

    __tablename__ = "output_votes"
    __table_args__ = (
        UniqueConstraint("file_id", "reviewer_id", "file_version"),
        CheckConstraint("vote IN ('approve', 'changes_requested')", name="known_vote"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    file_id: Mapped[int] = mapped_column(ForeignKey("output_files.id"), index=True)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    file_version: Mapped[int] = mapped_column(Integer)
    vote: Mapped[str] = mapped_column(String(30))
    voted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    file: Mapped[OutputFile] = relationship(back_populates="votes")
    reviewer: Mapped[User] = relationship(lazy="joined")


class OutputReview(Base):
    """A checker's submitted review of one round; two independent ones are needed."""

    __tablename__ = "output_reviews"
    __table_args__ = (UniqueConstraint("request_id", "reviewer_id", "round"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("output_requests.id"), index=True)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    round: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(30))  # approve (every output file approved) or changes_requested
    submitted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    request: Mapped[OutputRequest] = relationship(back_populates="reviews")
    reviewer: Mapped[User] = relationship(lazy="joined")


class OutputComment(Base):
    __tablename__ = "output_comments"
    __table_args__ = (CheckConstraint("visibility IN ('private', 'public')", name="known_visibility"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("output_requests.id"), index=True)
    file_id: Mapped[int | None] = mapped_column(ForeignKey("output_files.id"), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    round: Mapped[int] = mapped_column(Integer)
    visibility: Mapped[str] = mapped_column(String(10))  # private: checkers only; public: the researchers too
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # a private comment its checker made public: who and when (both or neither)
    published_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    request: Mapped[OutputRequest] = relationship(back_populates="comments")
    author: Mapped[User] = relationship(lazy="joined")


class OutputException(Base):
    """A researcher's request to release a file whose automatic check failed, as ACRO and SACRO users know it.

    Bound to the exact bytes: ``file_sha256`` is the file's hash when it was asked for, so a new version of the
    file (different bytes) is not covered. Each checker accepts or refuses it with a reason (one decision each).
    """

    __tablename__ = "output_exceptions"
    __table_args__ = (UniqueConstraint("file_id", "file_sha256"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("output_requests.id"), index=True)
    file_id: Mapped[int] = mapped_column(ForeignKey("output_files.id", ondelete="CASCADE"), index=True)
    file_sha256: Mapped[str] = mapped_column(String(64))
    justification: Mapped[str] = mapped_column(Text)
    requested_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    requested_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    request: Mapped[OutputRequest] = relationship(back_populates="exceptions")
    file: Mapped[OutputFile] = relationship()
    requested_by: Mapped[User] = relationship(lazy="joined")
    decisions: Mapped[list[OutputExceptionDecision]] = relationship(
        back_populates="exception", cascade="all, delete-orphan", order_by="OutputExceptionDecision.id",
        lazy="selectin")

    @property
    def justification_sha256(self) -> str:
        """The digest of the words as they are now: a checker's answer names the words it answers, since they can be
        reworded until a checker has answered."""
        return hashlib.sha256(self.justification.encode()).hexdigest()


class OutputExceptionDecision(Base):
    """One checker's answer to an exception: accept or refuse, always with a reason."""

    __tablename__ = "output_exception_decisions"
    __table_args__ = (
        UniqueConstraint("exception_id", "checker_id"),
        CheckConstraint("decision IN ('accept', 'refuse')", name="known_decision"),
        CheckConstraint("length(reason) > 0", name="has_reason"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    exception_id: Mapped[int] = mapped_column(ForeignKey("output_exceptions.id", ondelete="CASCADE"), index=True)
    checker_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    decision: Mapped[str] = mapped_column(String(10))
    reason: Mapped[str] = mapped_column(Text)
    decided_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    exception: Mapped[OutputException] = relationship(back_populates="decisions")
    checker: Mapped[User] = relationship(lazy="joined")
