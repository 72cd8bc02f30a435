"""Charging tables: tariff versions, frozen quotes, meter events, invoices (and credit notes), budgets.

Money is integer pence. Frozen quotes and tariff versions are append-only in the database; an issued
invoice's amounts and lines are refused by triggers as well as by the service (see migration 0004).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, Date, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from gateway.db import Base, UTCDateTime, utcnow
from gateway.models import User

METER_KINDS = ("seat_month", "output_check", "extract_refresh", "compute", "fee")
INVOICE_STATES = ("draft", "issued", "paid", "void")
# Money: 64-bit, because a month of heavy use summed over many lines can pass 2**31 pence (migration 0021).
# SQLite's INTEGER is already 64-bit, so the type there stays INTEGER and its tables need no rebuild.
Pence = BigInteger().with_variant(Integer(), "sqlite")


def _pair(prefix: str) -> CheckConstraint:
    return CheckConstraint(f"({prefix}_by_id IS NULL) = ({prefix}_at IS NULL)", name=f"{prefix}_pair")


class TariffVersion(Base):
    __tablename__ = "tariff_versions"

    id: Mapped[str] = mapped_column(String(80), primary_key=True)  # "<label>+<sha256[:12]>"
    label: Mapped[str] = mapped_column(String(40))
    sha256: Mapped[str] = mapped_column(String(64))
    content: Mapped[dict[str, Any]] = mapped_column(JSON)
    first_used_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class FrozenQuote(Base):
    """The quote an application carried when it was approved: the project's price basis from then on."""

    __tablename__ = "quotes"
    __table_args__ = (
        CheckConstraint("total_pence = net_pence + vat_pence", name="total_adds_up"),
        CheckConstraint("net_pence >= 0 AND vat_pence >= 0", name="not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id"), unique=True)
    tariff_version_id: Mapped[str] = mapped_column(ForeignKey("tariff_versions.id"))
    org_type: Mapped[str] = mapped_column(String(20))
    multiplier_basis_points: Mapped[int] = mapped_column(Integer)
    vat_basis_points: Mapped[int] = mapped_column(Integer)  # 0 when the organisation rule has no VAT
    currency: Mapped[str] = mapped_column(String(3))
    net_pence: Mapped[int] = mapped_column(Pence)
    vat_pence: Mapped[int] = mapped_column(Pence)
    total_pence: Mapped[int] = mapped_column(Pence)
    frozen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    frozen_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    lines: Mapped[list[FrozenQuoteLine]] = relationship(order_by="FrozenQuoteLine.position", lazy="selectin")


class FrozenQuoteLine(Base):
    __tablename__ = "quote_lines"
    __table_args__ = (CheckConstraint("amount_pence = quantity * unit_pence", name="line_adds_up"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    quote_id: Mapped[int] = mapped_column(ForeignKey("quotes.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    code: Mapped[str] = mapped_column(String(40))
    description: Mapped[str] = mapped_column(String(300))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_pence: Mapped[int] = mapped_column(Pence)
    amount_pence: Mapped[int] = mapped_column(Pence)


class MeterEvent(Base):
    """One meter reading, recorded once: ``event_key`` is unique, so a replayed reading is ignored."""

    __tablename__ = "meter_events"
    __table_args__ = (
        CheckConstraint("kind IN ('seat_month', 'output_check', 'extract_refresh', 'compute', 'fee')",
                        name="known_kind"),
        CheckConstraint("quantity >= 0", name="quantity_not_negative"),
        CheckConstraint("(kind = 'fee') = (amount_pence IS NOT NULL)", name="fee_has_amount"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    event_key: Mapped[str] = mapped_column(String(200), unique=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(20))
    quantity: Mapped[int] = mapped_column(Integer)
    unit: Mapped[str] = mapped_column(String(20))
    period: Mapped[str] = mapped_column(String(7), index=True)  # YYYY-MM of occurred_at (UTC)
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    description: Mapped[str] = mapped_column(String(300), default="")
    amount_pence: Mapped[int | None] = mapped_column(Pence)  # fees are priced when their quote is frozen
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoices.id"), index=True)

    user: Mapped[User | None] = relationship()


class Invoice(Base):
    """A monthly invoice for one project, or a credit note against an issued invoice."""

    __tablename__ = "invoices"
    __table_args__ = (
        CheckConstraint("kind IN ('invoice', 'credit_note')", name="known_kind"),
        CheckConstraint("state IN ('draft', 'issued', 'paid', 'void')", name="known_state"),
        CheckConstraint("(kind = 'credit_note') = (credits_invoice_id IS NOT NULL)", name="credit_has_invoice"),
        CheckConstraint("total_pence = net_pence + vat_pence", name="total_adds_up"),
        CheckConstraint("net_pence >= 0 AND vat_pence >= 0", name="not_negative"),
        CheckConstraint("state IN ('draft', 'void') OR issued_at IS NOT NULL", name="issued_has_date"),
        CheckConstraint("(state = 'paid') = (paid_at IS NOT NULL)", name="paid_iff_paid_at"),
        CheckConstraint("(state = 'void') = (voided_at IS NOT NULL)", name="void_iff_voided_at"),
        CheckConstraint("voided_at IS NULL OR void_reason IS NOT NULL", name="void_has_reason"),
        _pair("issued"),
        _pair("paid"),
        _pair("voided"),
        Index("ix_invoices_one_live_per_month", "project_id", "period", unique=True,
              postgresql_where=text("kind = 'invoice' AND state <> 'void'"),
              sqlite_where=text("kind = 'invoice' AND state <> 'void'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), default="invoice")
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    period: Mapped[str] = mapped_column(String(7), index=True)
    state: Mapped[str] = mapped_column(String(20), default="draft", index=True)
    currency: Mapped[str] = mapped_column(String(3))
    tariff_version_id: Mapped[str | None] = mapped_column(ForeignKey("tariff_versions.id"))
    org_type: Mapped[str] = mapped_column(String(20))
    vat_basis_points: Mapped[int] = mapped_column(Integer)
    net_pence: Mapped[int] = mapped_column(Pence, default=0)
    vat_pence: Mapped[int] = mapped_column(Pence, default=0)
    total_pence: Mapped[int] = mapped_column(Pence, default=0)
    credits_invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoices.id"), index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(100))
    issued_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    issued_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    due_date: Mapped[dt.date | None] = mapped_column(Date)
    paid_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    paid_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    payment_reference: Mapped[str | None] = mapped_column(String(100))
    voided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    voided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    void_reason: Mapped[str | None] = mapped_column(Text)

    lines: Mapped[list[InvoiceLine]] = relationship(order_by="InvoiceLine.position", lazy="selectin",
                                                    back_populates="invoice")
    credits: Mapped[Invoice | None] = relationship(remote_side=[id], foreign_keys=[credits_invoice_id])

    @property
    def number(self) -> str:
        return f"{'INV' if self.kind == 'invoice' else 'CN'}-{self.id:06d}"

    @property
    def is_credit_note(self) -> bool:
        return self.kind == "credit_note"


class InvoiceLine(Base):
    __tablename__ = "invoice_lines"
    __table_args__ = (CheckConstraint("amount_pence = quantity * unit_pence", name="line_adds_up"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    code: Mapped[str] = mapped_column(String(40))
    description: Mapped[str] = mapped_column(String(300))
    period: Mapped[str] = mapped_column(String(7))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_pence: Mapped[int] = mapped_column(Pence)
    amount_pence: Mapped[int] = mapped_column(Pence)

    invoice: Mapped[Invoice] = relationship(back_populates="lines")


class ProjectBudget(Base):
    """A project's spending cap (pence, including VAT). Warnings go once per cap level."""

    __tablename__ = "project_budgets"
    __table_args__ = (
        CheckConstraint("cap_pence > 0", name="cap_positive"),
        CheckConstraint("(warned_at IS NULL) = (warned_cap_pence IS NULL)", name="warned_pair"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), unique=True)
    cap_pence: Mapped[int] = mapped_column(Pence)
    reason: Mapped[str] = mapped_column(Text, default="")
    set_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    set_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    warned_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    warned_cap_pence: Mapped[int | None] = mapped_column(Pence)
    exhausted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
