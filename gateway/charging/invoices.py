"""Monthly invoices, credit notes and payments.

Workflow (one transition table; finance owns every state):
    draft --issue--> issued --pay--> paid
    draft --void-->  void            (its usage is released and invoiced again by the next run)
    issued --void--> void            (the usage stays billed to it; nothing is owed on it)

An issued invoice is never edited: a correction is a credit note against it. The service refuses, and
the database refuses too (triggers in migration 0004).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from gateway import audit, outbox
from gateway.audit import Actor
from gateway.charging.budget import project_invoices
from gateway.charging.models import Invoice, InvoiceLine, MeterEvent
from gateway.charging.pricing import basis_for, priced_lines
from gateway.charging.tariff import record_version
from gateway.db import utcnow
from gateway.errors import Conflict, InvalidTransition, NotFound, ValidationError
from gateway.models import User
from gateway.permissions import Permission, check_permission, has_permission
from projects.lifecycle import is_member
from projects.models import Project
from projects.money import MAX_PENCE, format_money, vat_on

TRANSITIONS: dict[str, set[str]] = {"draft": {"issued", "void"}, "issued": {"paid", "void"}, "paid": set(),
                                    "void": set()}
OWNERS = {"draft": "Finance", "issued": "Finance (awaiting payment)", "paid": "Nobody (settled)",
          "void": "Nobody (cancelled)"}
MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
LIVE = ("issued", "paid")


def parse_month(month: str) -> tuple[dt.date, dt.date]:
    """'2026-11' -> (first day, first day of the next month); a clear error otherwise."""
    match = MONTH.match(month.strip())
    if not match:
        message = "Enter the month like 2026-11."
        raise ValidationError(message, field_errors={"month": [message]})
    year, number = int(match.group(1)), int(match.group(2))
    try:
        start = dt.date(year, number, 1)
        end = dt.date(year + number // 12, number % 12 + 1, 1)
    except ValueError:  # year 0000, or 9999-12 (whose next month has no date)
        message = "Enter a month between 0001-01 and 9999-11."
        raise ValidationError(message, field_errors={"month": [message]}) from None
    return start, end


def previous_month(day: dt.date) -> str:
    last = day.replace(day=1) - dt.timedelta(days=1)
    return f"{last.year:04d}-{last.month:02d}"


def _check_move(session: Session, invoice: Invoice, target: str) -> None:
    """Judged on the invoice as committed, under its row lock: two finance tabs each acted on what they had read, and
    a void read before a payment reached the database's guard as an error instead of this message."""
    session.flush()
    session.refresh(invoice, with_for_update=True)
    if target not in TRANSITIONS[invoice.state]:
        if invoice.state != "draft":
            raise InvalidTransition(f"{invoice.number} is {invoice.state}; it cannot become {target}. "
                                    "Issued invoices cannot be altered: issue a credit note instead.")
        raise InvalidTransition(f"{invoice.number} is {invoice.state}; it cannot become {target}.")


# --- who sees what ----------------------------------------------------------------------------------------

def can_see_charges(user: User, project: Project) -> bool:
    """A project's charges (its statement, budget and quotes) are for its team and finance."""
    return is_member(user, project) or has_permission(user, Permission.MANAGE_CHARGES)


def can_view_invoice(user: User, invoice: Invoice, project: Project) -> bool:
    """Finance sees every invoice; a project's team sees what was issued to it (never drafts or voided drafts)."""
    if has_permission(user, Permission.MANAGE_CHARGES):
        return True
    return invoice.issued_at is not None and is_member(user, project)


def get_invoice(session: Session, user: User, invoice_id: int) -> Invoice:
    invoice = session.get(Invoice, invoice_id)
    project = session.get(Project, invoice.project_id) if invoice is not None else None
    if invoice is None or project is None or not can_view_invoice(user, invoice, project):
        raise NotFound("No such invoice.")  # not yours (or a draft you may not see) answers like not there
    return invoice


def list_invoices(session: Session, user: User, *, state: str | None = None, period: str | None = None,
                  project_id: int | None = None) -> list[Invoice]:
    check_permission(user, Permission.MANAGE_CHARGES)
    query = select(Invoice).order_by(Invoice.id.desc())
    if state:
        query = query.where(Invoice.state == state)
    if period:
        query = query.where(Invoice.period == period)
    if project_id:
        query = query.where(Invoice.project_id == project_id)
    return list(session.scalars(query))


# --- the monthly run --------------------------------------------------------------------------------------

@dataclass
class RunResult:
    month: str
    created: list[Invoice] = field(default_factory=list)
    already: list[str] = field(default_factory=list)  # project references that already had this month's invoice

    def describe(self) -> str:
        return (f"{self.month}: {len(self.created)} invoice{'s' * (len(self.created) != 1)} drafted"
                + (f", {len(self.already)} already invoiced" if self.already else ""))


def run_month(session: Session, actor: Actor, month: str, today: dt.date) -> RunResult:
    """Draft one invoice per project for ``month`` from its not-yet-invoiced usage up to that month's end.

    Running it again finds each project's live invoice for the month and creates nothing (no duplicates).
    """
    if isinstance(actor, User):
        check_permission(actor, Permission.MANAGE_CHARGES)
    _, month_end = parse_month(month)
    if month_end > today:
        raise ValidationError(f"{month} has not ended yet; invoice it from {month_end.isoformat()}.",
                              field_errors={"month": ["Choose a month that has ended."]})
    result = RunResult(month=month)
    project_ids = sorted(set(session.scalars(select(MeterEvent.project_id).where(
        MeterEvent.invoice_id.is_(None), MeterEvent.period <= month))))
    for project_id in project_ids:
        project = session.get(Project, project_id)
        assert project is not None
        if _live_invoice(session, project.id, month) is not None:
            result.already.append(project.reference)
            continue
        invoice = _draft_for(session, actor, project, month)
        if invoice is not None:
            result.created.append(invoice)
    from gateway.charging.budget import evaluate_budget

    for invoice in result.created:
        project = session.get(Project, invoice.project_id)
        assert project is not None
        evaluate_budget(session, project)
    return result


def _live_invoice(session: Session, project_id: int, month: str) -> Invoice | None:
    return session.scalar(select(Invoice).where(Invoice.project_id == project_id, Invoice.period == month,
                                                Invoice.kind == "invoice", Invoice.state != "void"))


def _draft_for(session: Session, actor: Actor, project: Project, month: str) -> Invoice | None:
    events = list(session.scalars(select(MeterEvent).where(
        MeterEvent.project_id == project.id, MeterEvent.invoice_id.is_(None), MeterEvent.period <= month)
        .order_by(MeterEvent.id)))
    basis = basis_for(session, project)
    lines = priced_lines(session, project, events, basis)
    if not lines:
        return None
    record_version(session, basis.tariff)
    invoice = Invoice(kind="invoice", project_id=project.id, period=month, state="draft",
                      currency=basis.tariff.currency, tariff_version_id=basis.tariff_version,
                      org_type=basis.org_type, vat_basis_points=basis.vat_basis_points,
                      created_by=actor.username if isinstance(actor, User) else (actor or "system"))
    session.add(invoice)
    session.flush()
    for position, line in enumerate(lines, start=1):
        session.add(InvoiceLine(invoice_id=invoice.id, position=position, code=line.code,
                                description=line.description[:300], period=line.period, quantity=line.quantity,
                                unit_pence=line.unit_pence, amount_pence=line.amount_pence))
    _set_totals(invoice, sum(line.amount_pence for line in lines))
    for event in events:
        event.invoice_id = invoice.id
    session.flush()
    session.refresh(invoice)
    audit.record(session, actor, "invoice.drafted", "invoice", invoice.id,
                 {"project": project.reference, "period": month, "lines": len(lines), "events": len(events),
                  "net_pence": invoice.net_pence, "vat_pence": invoice.vat_pence,
                  "total_pence": invoice.total_pence, "tariff_version": basis.tariff_version})
    return invoice


def _set_totals(invoice: Invoice, net: int) -> None:
    invoice.net_pence = net
    invoice.vat_pence = vat_on(net, invoice.vat_basis_points)
    invoice.total_pence = invoice.net_pence + invoice.vat_pence


# --- finance actions --------------------------------------------------------------------------------------

def check_editable(invoice: Invoice) -> None:
    if invoice.state != "draft":
        raise Conflict(f"{invoice.number} is {invoice.state}: issued invoices cannot be altered. "
                       "Issue a credit note instead.")


def add_line(session: Session, actor: User, invoice: Invoice, description: str, quantity: int,
             unit_pence: int) -> InvoiceLine:
    """Add a manual charge to a draft (for example a service agreed outside the tariff)."""
    check_permission(actor, Permission.MANAGE_CHARGES)
    check_editable(invoice)
    errors: dict[str, list[str]] = {}
    if not description.strip():
        errors["description"] = ["Describe the charge."]
    if quantity < 1:
        errors["quantity"] = ["Enter a quantity of 1 or more."]
    if unit_pence < 1:
        errors["unit_pence"] = ["Enter a price of at least 1 penny."]
    if not errors and invoice.net_pence + quantity * unit_pence > MAX_PENCE:
        errors["unit_pence"] = [f"The invoice's net total would exceed {format_money(MAX_PENCE)}."]
    if errors:
        raise ValidationError("The line could not be added.", field_errors=errors)
    line = InvoiceLine(invoice_id=invoice.id, position=len(invoice.lines) + 1, code="manual",
                       description=description.strip()[:300], period=invoice.period, quantity=quantity,
                       unit_pence=unit_pence, amount_pence=quantity * unit_pence)
    session.add(line)
    _set_totals(invoice, invoice.net_pence + line.amount_pence)
    session.flush()
    session.refresh(invoice)
    audit.record(session, actor, "invoice.line_added", "invoice", invoice.id,
                 {"description": line.description, "quantity": quantity, "unit_pence": unit_pence})
    return line


def issue(session: Session, actor: User, invoice: Invoice, today: dt.date, due_days: int = 30) -> Invoice:
    check_permission(actor, Permission.MANAGE_CHARGES)
    _check_move(session, invoice, "issued")
    invoice.state = "issued"
    invoice.issued_at = utcnow()
    invoice.issued_by_id = actor.id
    invoice.due_date = today + dt.timedelta(days=due_days)
    session.flush()
    audit.record(session, actor, "invoice.issued", "invoice", invoice.id,
                 {"number": invoice.number, "total_pence": invoice.total_pence, "due_date": invoice.due_date})
    project = session.get(Project, invoice.project_id)
    assert project is not None
    what = "Credit note" if invoice.is_credit_note else "Invoice"
    outbox.send_email(session, project.lead.email, f"{what} {invoice.number} for {project.reference}",
                      f"{what} {invoice.number} for {project.title} ({invoice.period}): "
                      f"{format_money(invoice.total_pence, invoice.currency)} including VAT."
                      + (f" Due by {invoice.due_date.isoformat()}." if not invoice.is_credit_note else "")
                      + " It is on the project's page.", dedupe_key=f"invoice-issued:{invoice.id}")
    return invoice


def record_payment(session: Session, actor: User, invoice: Invoice, reference: str) -> Invoice:
    check_permission(actor, Permission.MANAGE_CHARGES)
    if invoice.is_credit_note:
        raise Conflict("A credit note is not paid; it reduces what is owed.")
    reference = reference.strip()
    if not reference:
        raise ValidationError("The payment could not be recorded.",
                              field_errors={"reference": ["Enter the payment reference (for example the remittance)."]})
    _check_move(session, invoice, "paid")
    invoice.state = "paid"
    invoice.paid_at = utcnow()
    invoice.paid_by_id = actor.id
    invoice.payment_reference = reference[:100]
    session.flush()
    audit.record(session, actor, "invoice.paid", "invoice", invoice.id,
                 {"number": invoice.number, "reference": invoice.payment_reference,
                  "total_pence": invoice.total_pence})
    return invoice


def void(session: Session, actor: User, invoice: Invoice, reason: str) -> Invoice:
    check_permission(actor, Permission.MANAGE_CHARGES)
    reason = reason.strip()
    if not reason:
        raise ValidationError("The invoice could not be voided.", field_errors={"reason": ["Give a reason."]})
    _check_move(session, invoice, "void")
    released = 0
    if invoice.state == "draft":
        for event in session.scalars(select(MeterEvent).where(MeterEvent.invoice_id == invoice.id)):
            event.invoice_id = None
            released += 1
    previous = invoice.state
    invoice.state = "void"
    invoice.voided_at = utcnow()
    invoice.voided_by_id = actor.id
    invoice.void_reason = reason
    session.flush()
    audit.record(session, actor, "invoice.voided", "invoice", invoice.id,
                 {"number": invoice.number, "from": previous, "reason": reason, "usage_released": released})
    return invoice


def credited_net(session: Session, invoice: Invoice) -> int:
    return int(session.scalar(select(func.coalesce(func.sum(Invoice.net_pence), 0)).where(
        Invoice.credits_invoice_id == invoice.id, Invoice.state != "void")) or 0)


def credit_note(session: Session, actor: User, invoice: Invoice, net_pence: int, reason: str,
                today: dt.date) -> Invoice:
    """Credit part or all of an issued (or paid) invoice; VAT is credited at the invoice's rate."""
    check_permission(actor, Permission.MANAGE_CHARGES)
    if invoice.is_credit_note:
        raise Conflict("Credit notes are raised against invoices, not other credit notes.")
    if invoice.state not in LIVE:
        raise Conflict(f"{invoice.number} is {invoice.state}: only issued or paid invoices are credited. "
                       + ("Change the draft or void it instead." if invoice.state == "draft" else ""))
    remaining = invoice.net_pence - credited_net(session, invoice)
    errors: dict[str, list[str]] = {}
    if not reason.strip():
        errors["reason"] = ["Give the reason for the credit."]
    if net_pence < 1 or net_pence > remaining:
        errors["amount"] = [f"Enter an amount from £0.01 to {format_money(remaining, invoice.currency)} "
                            "(what is left to credit, before VAT)."]
    if errors:
        raise ValidationError("The credit note could not be raised.", field_errors=errors)
    note = Invoice(kind="credit_note", project_id=invoice.project_id, period=invoice.period, state="draft",
                   currency=invoice.currency, tariff_version_id=invoice.tariff_version_id, org_type=invoice.org_type,
                   vat_basis_points=invoice.vat_basis_points, credits_invoice_id=invoice.id,
                   reason=reason.strip(), created_by=actor.username)
    session.add(note)
    session.flush()
    session.add(InvoiceLine(invoice_id=note.id, position=1, code="credit",
                            description=f"Credit against {invoice.number}: {reason.strip()}"[:300],
                            period=invoice.period, quantity=1, unit_pence=net_pence, amount_pence=net_pence))
    _set_totals(note, net_pence)
    session.flush()
    session.refresh(note)
    audit.record(session, actor, "invoice.credit_note", "invoice", note.id,
                 {"credits": invoice.number, "net_pence": net_pence, "reason": reason.strip()})
    return issue(session, actor, note, today, due_days=0)


# --- statements and totals --------------------------------------------------------------------------------

def signed_total(invoice: Invoice) -> int:
    return -invoice.total_pence if invoice.is_credit_note else invoice.total_pence


def charged_by_project(session: Session) -> dict[int, int]:
    """Total charged per project: issued and paid invoices minus issued credit notes (pence, with VAT)."""
    totals: dict[int, int] = {}
    for project_id, kind, total in session.execute(
            select(Invoice.project_id, Invoice.kind, func.sum(Invoice.total_pence))
            .where(Invoice.state.in_(LIVE)).group_by(Invoice.project_id, Invoice.kind)):
        totals[project_id] = totals.get(project_id, 0) + (-int(total) if kind == "credit_note" else int(total))
    return totals


def load_lines(session: Session, rows: list[Invoice]) -> None:
    """Read the lines of these invoices (loaded without them) in one statement, not one per invoice."""
    if rows:
        session.scalars(select(Invoice).where(Invoice.id.in_([i.id for i in rows]))
                        .options(selectinload(Invoice.lines))).all()


@dataclass(frozen=True)
class Statement:
    invoices: list[Invoice]
    charged_pence: int
    paid_pence: int
    outstanding_pence: int
    currency: str


def statement(session: Session, user: User, project: Project) -> Statement:
    """What a project has been charged: the invoices and credit notes this person may see, and the totals."""
    rows = [i for i in project_invoices(session, project) if can_view_invoice(user, i, project)]
    live = [i for i in rows if i.state in LIVE]
    charged = sum(signed_total(i) for i in live)
    paid = sum(i.total_pence for i in live if i.state == "paid" and not i.is_credit_note)
    unpaid = sum(i.total_pence for i in live if i.state == "issued" and not i.is_credit_note)
    credited_unpaid = sum(i.total_pence for i in live if i.is_credit_note and i.credits is not None
                          and i.credits.state == "issued")
    currency = rows[0].currency if rows else "GBP"
    return Statement(rows, charged, paid, max(0, unpaid - credited_unpaid), currency)
