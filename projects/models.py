"""Tables for safe people (organisations, accreditation) and safe projects (applications, DAC, projects)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from gateway.db import Base, UTCDateTime, utcnow
from gateway.models import User


def _decided_pair(prefix: str) -> CheckConstraint:
    return CheckConstraint(f"({prefix}_by_id IS NULL) = ({prefix}_at IS NULL)", name=f"{prefix}_pair")


def _cohort_ages() -> tuple[CheckConstraint, ...]:
    """Whole years from 0 to 130 (as the extract specification allows), the minimum not above the maximum."""
    return (
        CheckConstraint("cohort_age_min IS NULL OR (cohort_age_min >= 0 AND cohort_age_min <= 130)",
                        name="cohort_age_min_range"),
        CheckConstraint("cohort_age_max IS NULL OR (cohort_age_max >= 0 AND cohort_age_max <= 130)",
                        name="cohort_age_max_range"),
        CheckConstraint("cohort_age_min IS NULL OR cohort_age_max IS NULL OR cohort_age_min <= cohort_age_max",
                        name="cohort_age_order"),
    )


# --- safe people ---------------------------------------------------------------------------------

class Organisation(Base):
    __tablename__ = "organisations"
    __table_args__ = (
        CheckConstraint("org_type IN ('nhs', 'academic', 'charity', 'public_sector', 'commercial')",
                        name="known_type"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    org_type: Mapped[str] = mapped_column(String(20))
    # a persistent organisation identifier (a ROR URL, https://ror.org/...), shown on the public register
    identifier: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Accreditation(Base):
    """A researcher's accreditation record. Validity is derived (verified and not expired), never stored."""

    __tablename__ = "accreditations"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'verified', 'rejected')", name="known_status"),
        CheckConstraint("level IN ('full', 'provisional')", name="known_level"),
        CheckConstraint("(level = 'provisional') = (supervisor_id IS NOT NULL)", name="supervisor_iff_provisional"),
        CheckConstraint("(status = 'pending') = (decided_by_id IS NULL)", name="decided_iff_not_pending"),
        CheckConstraint("status <> 'rejected' OR decision_reason IS NOT NULL", name="rejection_has_reason"),
        CheckConstraint("expiry_date > training_date", name="expires_after_training"),
        _decided_pair("decided"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    scheme: Mapped[str] = mapped_column(String(200))
    level: Mapped[str] = mapped_column(String(20))
    number: Mapped[str] = mapped_column(String(100))
    training_date: Mapped[dt.date] = mapped_column(Date)
    expiry_date: Mapped[dt.date] = mapped_column(Date)
    supervisor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    certificate_file: Mapped[str | None] = mapped_column(String(200))  # stored name, outside the web root
    certificate_name: Mapped[str | None] = mapped_column(String(200))  # the uploader's file name, for display
    certificate_type: Mapped[str | None] = mapped_column(String(50))
    certificate_sha256: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    decision_reason: Mapped[str | None] = mapped_column(Text)
    reminded_30_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    reminded_7_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    user: Mapped[User] = relationship(foreign_keys=[user_id])
    supervisor: Mapped[User | None] = relationship(foreign_keys=[supervisor_id])


# --- safe projects ---------------------------------------------------------------------------------

class DataAccessAgreement(Base):
    """Versioned terms every applicant accepts; a new version must be accepted again."""

    __tablename__ = "data_access_agreements"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    text: Mapped[str] = mapped_column(Text)
    published_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    published_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class Application(Base):
    __tablename__ = "applications"
    __table_args__ = (
        CheckConstraint("kind IN ('new', 'amendment')", name="known_kind"),
        CheckConstraint("(kind = 'amendment') = (project_id IS NOT NULL)", name="amendment_has_project"),
        CheckConstraint("(agreement_version IS NULL) = (agreement_accepted_at IS NULL)", name="agreement_pair"),
        CheckConstraint("date_from IS NULL OR date_to IS NULL OR date_from <= date_to", name="date_range_order"),
        *_cohort_ages(),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(String(30), unique=True)
    kind: Mapped[str] = mapped_column(String(20), default="new")
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id"), index=True)
    state: Mapped[str] = mapped_column(String(30), default="draft", index=True)
    round: Mapped[int] = mapped_column(Integer, default=1)  # increases at each resubmission; votes are per round
    applicant_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"))
    # safe project
    title: Mapped[str] = mapped_column(String(300), default="")
    lay_summary: Mapped[str] = mapped_column(Text, default="")
    technical_summary: Mapped[str] = mapped_column(Text, default="")
    public_benefit: Mapped[str] = mapped_column(Text, default="")
    funder: Mapped[str] = mapped_column(String(300), default="")
    commercial_involvement: Mapped[bool] = mapped_column(Boolean, default=False)
    commercial_details: Mapped[str] = mapped_column(Text, default="")
    # safe data
    cohort_description: Mapped[str] = mapped_column(Text, default="")
    date_from: Mapped[dt.date | None] = mapped_column(Date)
    date_to: Mapped[dt.date | None] = mapped_column(Date)
    legal_basis_article6: Mapped[str] = mapped_column(String(50), default="")
    legal_basis_article9: Mapped[str] = mapped_column(String(50), default="")
    common_law_basis: Mapped[str] = mapped_column(String(50), default="")
    ethics_reference: Mapped[str] = mapped_column(String(100), default="")
    opt_out_applies: Mapped[bool | None] = mapped_column(Boolean)
    opt_out_reason: Mapped[str] = mapped_column(Text, default="")
    # structured cohort criteria (projects/cohort.py); empty selects everyone in the date range
    cohort_boroughs: Mapped[list[str]] = mapped_column(JSON, default=list)
    cohort_age_min: Mapped[int | None] = mapped_column(Integer)
    cohort_age_max: Mapped[int | None] = mapped_column(Integer)
    cohort_conditions: Mapped[list[str]] = mapped_column(JSON, default=list)
    # How quasi-identifiers are coarsened in the extract (projects.extract_terms.Generalisation); null: its defaults
    generalisation: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # safe settings and outputs
    workspace_size: Mapped[str] = mapped_column(String(20), default="small")
    intended_outputs: Mapped[str] = mapped_column(Text, default="")
    # amendment
    amendment_summary: Mapped[str] = mapped_column(Text, default="")
    requested_end_date: Mapped[dt.date | None] = mapped_column(Date)
    # lifecycle
    agreement_version: Mapped[int | None] = mapped_column(ForeignKey("data_access_agreements.version"))
    agreement_accepted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    submitted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    applicant: Mapped[User] = relationship(foreign_keys=[applicant_id])
    organisation: Mapped[Organisation | None] = relationship()
    members: Mapped[list[ApplicationMember]] = relationship(
        back_populates="application", cascade="all, delete-orphan", lazy="selectin")
    variables: Mapped[list[ApplicationVariable]] = relationship(
        back_populates="application", cascade="all, delete-orphan", lazy="selectin",
        order_by="(ApplicationVariable.dataset, ApplicationVariable.variable)")
    assignments: Mapped[list[ReviewAssignment]] = relationship(
        back_populates="application", cascade="all, delete-orphan", lazy="selectin")
    decisions: Mapped[list[Decision]] = relationship(back_populates="application", order_by="Decision.id")
    # The project an amendment amends (None for a new application): the committee's conflict rule reads its team and
    # former team (projects.dac.automatic_conflict). Loaded only where read; the application page joins it.
    project: Mapped[Project | None] = relationship(foreign_keys=[project_id], viewonly=True)


class ApplicationMember(Base):
    __tablename__ = "application_members"
    __table_args__ = (UniqueConstraint("application_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    project_role: Mapped[str] = mapped_column(String(100), default="analyst")

    application: Mapped[Application] = relationship(back_populates="members")
    user: Mapped[User] = relationship(lazy="joined")


class ApplicationVariable(Base):
    __tablename__ = "application_variables"
    __table_args__ = (UniqueConstraint("application_id", "dataset", "variable"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id"), index=True)
    dataset: Mapped[str] = mapped_column(String(100))
    variable: Mapped[str] = mapped_column(String(100))
    justification: Mapped[str] = mapped_column(Text, default="")

    application: Mapped[Application] = relationship(back_populates="variables")


class ReviewAssignment(Base):
    """A DAC member asked to review one application; conflicts are declared here."""

    __tablename__ = "review_assignments"
    __table_args__ = (
        UniqueConstraint("application_id", "reviewer_id"),
        CheckConstraint("(conflict IS NULL) = (declared_at IS NULL)", name="declared_pair"),
        CheckConstraint("conflict IS NOT TRUE OR conflict_reason IS NOT NULL", name="conflict_has_reason"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id"), index=True)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    assigned_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    assigned_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    conflict: Mapped[bool | None] = mapped_column(Boolean)  # None until declared
    conflict_reason: Mapped[str | None] = mapped_column(Text)
    declared_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    application: Mapped[Application] = relationship(back_populates="assignments")
    reviewer: Mapped[User] = relationship(foreign_keys=[reviewer_id], lazy="joined")
    reviews: Mapped[list[Review]] = relationship(back_populates="assignment", order_by="Review.id",
                                                 lazy="selectin")


class Review(Base):
    """One vote in one round. Earlier rounds' votes are kept (with their comments) but do not count."""

    __tablename__ = "reviews"
    __table_args__ = (
        UniqueConstraint("assignment_id", "round"),
        CheckConstraint("vote IN ('approve', 'approve_with_conditions', 'changes_requested', 'reject')",
                        name="known_vote"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("review_assignments.id"), index=True)
    round: Mapped[int] = mapped_column(Integer)
    vote: Mapped[str] = mapped_column(String(30))
    comment_private: Mapped[str] = mapped_column(Text, default="")
    comment_applicant: Mapped[str] = mapped_column(Text, default="")
    submitted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    assignment: Mapped[ReviewAssignment] = relationship(back_populates="reviews")


class Decision(Base):
    __tablename__ = "decisions"
    __table_args__ = (
        CheckConstraint("outcome IN ('approved', 'rejected', 'changes_requested')", name="known_outcome"),
        CheckConstraint("outcome <> 'approved' OR access_end_date IS NOT NULL", name="approval_has_end_date"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id"), index=True)
    round: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(30))
    conditions: Mapped[str] = mapped_column(Text, default="")
    message_to_applicant: Mapped[str] = mapped_column(Text, default="")
    access_end_date: Mapped[dt.date | None] = mapped_column(Date)
    decided_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    application: Mapped[Application] = relationship(back_populates="decisions")
    decided_by: Mapped[User] = relationship()


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = (
        CheckConstraint("state IN ('active', 'suspended', 'closed', 'expired', 'revoked')", name="known_state"),
        CheckConstraint("start_date <= end_date", name="dates_in_order"),
        CheckConstraint("security_tier IN ('standard', 'high')", name="known_security_tier"),
        *_cohort_ages(),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(String(30), unique=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id", use_alter=True), unique=True)
    state: Mapped[str] = mapped_column(String(20), default="active", index=True)
    title: Mapped[str] = mapped_column(String(300))
    lay_summary: Mapped[str] = mapped_column(Text)
    public_benefit: Mapped[str] = mapped_column(Text)
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"))
    lead_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    legal_basis: Mapped[str] = mapped_column(Text)
    opt_out_applies: Mapped[bool] = mapped_column(Boolean)
    commercial_involvement: Mapped[bool] = mapped_column(Boolean)
    workspace_size: Mapped[str] = mapped_column(String(20))
    # The SECURITY tier (projects.workspace_tiers.SECURITY_TIER_LABELS), chosen by the DAC chair at approval; not the
    # workspace's size tier above. "high": no copy out of JupyterLab, small pastes only, no terminals.
    security_tier: Mapped[str] = mapped_column(String(20), default="standard", server_default="standard")
    date_from: Mapped[dt.date | None] = mapped_column(Date)
    date_to: Mapped[dt.date | None] = mapped_column(Date)
    # the approved cohort criteria, copied from the application and changed only by an approved amendment
    cohort_boroughs: Mapped[list[str]] = mapped_column(JSON, default=list)
    cohort_age_min: Mapped[int | None] = mapped_column(Integer)
    cohort_age_max: Mapped[int | None] = mapped_column(Integer)
    cohort_conditions: Mapped[list[str]] = mapped_column(JSON, default=list)
    # How quasi-identifiers are coarsened in the extract (projects.extract_terms.Generalisation); null: its defaults
    generalisation: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    conditions: Mapped[str] = mapped_column(Text, default="")  # the DAC's conditions of approval
    start_date: Mapped[dt.date] = mapped_column(Date)
    end_date: Mapped[dt.date] = mapped_column(Date)
    approved_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    state_changed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    state_reason: Mapped[str] = mapped_column(Text, default="")

    organisation: Mapped[Organisation | None] = relationship()
    lead: Mapped[User] = relationship(foreign_keys=[lead_id])
    members: Mapped[list[ProjectMember]] = relationship(back_populates="project", cascade="all, delete-orphan",
                                                        lazy="selectin")
    # Read only where a rule asks (the output checks' conflict rule): the pages that ask load it with the project.
    former_members: Mapped[list[ProjectFormerMember]] = relationship(back_populates="project",
                                                                     order_by="ProjectFormerMember.id")
    variables: Mapped[list[ProjectVariable]] = relationship(
        back_populates="project", cascade="all, delete-orphan", lazy="selectin",
        order_by="(ProjectVariable.dataset, ProjectVariable.variable)")


class ProjectMember(Base):
    __tablename__ = "project_members"
    __table_args__ = (UniqueConstraint("project_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    project_role: Mapped[str] = mapped_column(String(100))
    added_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    project: Mapped[Project] = relationship(back_populates="members")
    user: Mapped[User] = relationship(lazy="joined")


class ProjectFormerMember(Base):
    """Someone taken off the project's team: their ProjectMember row goes, this one stays (one per departure, written
    in the same transaction), so the rules remember who has been on the team: an output checker never checks the
    outputs of a project they were on (gateway.outputs.service.review_conflict), and a committee member never reviews
    or decides an amendment of one (projects.dac.automatic_conflict)."""

    __tablename__ = "project_former_members"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    joined_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)  # the ProjectMember row's added_at
    left_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    reason: Mapped[str] = mapped_column(Text)  # e.g. "removed from the project team by amendment LSDE-2026-0004"

    project: Mapped[Project] = relationship(back_populates="former_members")


class ProjectVariable(Base):
    __tablename__ = "project_variables"
    __table_args__ = (UniqueConstraint("project_id", "dataset", "variable"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    dataset: Mapped[str] = mapped_column(String(100))
    variable: Mapped[str] = mapped_column(String(100))

    project: Mapped[Project] = relationship(back_populates="variables")


class AgreementAcceptance(Base):
    """A person's own acceptance of a version of the data access agreement (needed to open a workspace)."""

    __tablename__ = "agreement_acceptances"
    __table_args__ = (UniqueConstraint("user_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    version: Mapped[int] = mapped_column(ForeignKey("data_access_agreements.version"))
    accepted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Publication(Base):
    """A paper, preprint or report from a project, linked by its DOI by a project member; shown on the register."""

    __tablename__ = "publications"
    __table_args__ = (UniqueConstraint("project_id", "doi"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    doi: Mapped[str] = mapped_column(String(200))  # normalised: lower case, "10.xxxx/..." without a resolver prefix
    title: Mapped[str] = mapped_column(String(500))
    added_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    added_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    project: Mapped[Project] = relationship()
