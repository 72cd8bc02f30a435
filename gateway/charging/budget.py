"""Budget caps: a project may have a cap (pence, including VAT) set by finance.

Spent = everything charged or accrued: live invoices (issued and paid) minus credit notes, draft invoices,
and usage metered but not yet invoiced (priced on the project's basis, with VAT). At the warning threshold
(80% by default) the lead researcher and finance are emailed once per cap; at 100% new workspace sessions
and output checks are refused (``check_budget`` raises ``BudgetExhausted``, a 409) until finance raises
the cap.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, lazyload

from gateway import audit, outbox
from gateway.charging.models import Invoice, MeterEvent, ProjectBudget
from gateway.charging.pricing import basis_for, priced_lines
from gateway.db import remembered, utcnow
from gateway.errors import Conflict, ValidationError
from gateway.identity.accounts import users_with_roles
from gateway.models import User
from gateway.permissions import Permission, Role, check_permission
from projects.models import Project
from projects.money import MAX_PENCE, format_money, vat_on

WHAT = {"workspace": "new workspace sessions", "output_check": "new output checks"}


class BudgetExhausted(Conflict):
    error = "budget_exhausted"


@dataclass(frozen=True)
class BudgetStatus:
    cap_pence: int | None
    spent_pence: int
    warning_percent: int
    currency: str = "GBP"

    @property
    def percent(self) -> int:
        """Whole per cent used, rounded down (so 100 means the cap is reached)."""
        if not self.cap_pence:
            return 0
        return self.spent_pence * 100 // self.cap_pence

    @property
    def state(self) -> str:
        if self.cap_pence is None:
            return "none"
        if self.spent_pence >= self.cap_pence:
            return "exhausted"
        if self.percent >= self.warning_percent:
            return "warning"
        return "ok"

    @property
    def remaining_pence(self) -> int | None:
        return None if self.cap_pence is None else max(0, self.cap_pence - self.spent_pence)

    def describe(self) -> str:
        if self.cap_pence is None:
            return f"No budget cap; {format_money(self.spent_pence, self.currency)} charged or accrued."
        return (f"{format_money(self.spent_pence, self.currency)} of {format_money(self.cap_pence, self.currency)}"
                f" used ({self.percent}%).")


def _warning_percent() -> int:
    from flask import current_app, has_app_context

    if has_app_context() and "sde_settings" in current_app.extensions:
        return int(current_app.extensions["sde_settings"].charging.budget_warning_percent)
    from gateway.config import load_settings

    return load_settings().charging.budget_warning_percent


def budget_of(session: Session, project: Project) -> ProjectBudget | None:
    """The project's cap, if finance set one (remembered until anything is written: for pages)."""
    return remembered(session, ("budget", project.id), lambda: _budget_row(session, project))


# Read on every project and charges page: built once per process (SQLAlchemy keeps a built statement's cache key).
_BUDGET = select(ProjectBudget).where(ProjectBudget.project_id == bindparam("project_id"))
_INVOICES = (select(Invoice).where(Invoice.project_id == bindparam("project_id")).order_by(Invoice.id)
             .options(lazyload(Invoice.lines)))
_NOT_INVOICED = select(MeterEvent).where(MeterEvent.project_id == bindparam("project_id"),
                                         MeterEvent.invoice_id.is_(None))


def _budget_row(session: Session, project: Project) -> ProjectBudget | None:
    return session.scalar(_BUDGET, {"project_id": project.id})


def _invoices(session: Session, project: Project) -> list[Invoice]:
    return list(session.scalars(_INVOICES, {"project_id": project.id}))


def project_invoices(session: Session, project: Project) -> list[Invoice]:
    """Every invoice and credit note of the project, oldest first, without their lines. Remembered until anything is
    written, like the budget status: a project's charges page needs them for the budget and again for the
    statement."""
    return list(remembered(session, ("invoices", project.id), lambda: tuple(_invoices(session, project))))


def spent_pence(session: Session, project: Project, afresh: bool = False) -> int:
    """Charged and accrued so far. ``afresh``: for a decision, everything read now (nothing a page remembered),
    so usage, an invoice or a quote committed by another transaction since counts."""
    invoiced = 0
    for invoice in _invoices(session, project) if afresh else project_invoices(session, project):
        if invoice.state == "void":
            continue
        invoiced += -invoice.total_pence if invoice.kind == "credit_note" else invoice.total_pence
    pending = list(session.scalars(_NOT_INVOICED, {"project_id": project.id}))
    accrued = 0
    if pending:
        basis = basis_for(session, project, afresh)
        net = sum(line.amount_pence for line in priced_lines(session, project, pending, basis))
        accrued = net + vat_on(net, basis.vat_basis_points)
    return invoiced + accrued


def _status(session: Session, project: Project, budget: ProjectBudget | None, afresh: bool = False) -> BudgetStatus:
    return BudgetStatus(budget.cap_pence if budget else None, spent_pence(session, project, afresh),
                        _warning_percent())


def budget_status(session: Session, project: Project) -> BudgetStatus:
    """For pages: remembered until anything is written (each answer costs up to five queries, and a page may ask for
    it more than once). Decisions use check_budget and evaluate_budget, which read afresh."""
    return remembered(session, ("budget_status", project.id),
                      lambda: _status(session, project, budget_of(session, project)))


def check_budget(session: Session, project: Project, what: str) -> None:
    """Refuse ``what`` ("workspace" or "output_check") when the project's budget is used up. A decision, so nothing
    is taken from what a page remembered. A project without a cap has nothing to use up, so its spend is worked out
    only when it has one (the project page asks this for its workspace card on every view: one statement for most
    projects instead of four or five)."""
    budget = _budget_row(session, project)
    if budget is None:
        return
    status = _status(session, project, budget, afresh=True)
    if status.state == "exhausted":
        raise BudgetExhausted(
            f"The budget for {project.reference} is used up: {status.describe()} "
            f"{WHAT.get(what, 'New ' + what).capitalize()} are refused until finance raises the cap.")


def set_budget(session: Session, actor: User, project: Project, cap_pence: int, reason: str) -> ProjectBudget:
    check_permission(actor, Permission.MANAGE_CHARGES)
    errors: dict[str, list[str]] = {}
    if cap_pence < 1:
        errors["cap"] = ["Enter a cap of at least £0.01."]
    elif cap_pence > MAX_PENCE:
        errors["cap"] = [f"Enter a cap of at most {format_money(MAX_PENCE)}."]
    if not reason.strip():
        errors["reason"] = ["Give a reason (for example the purchase order)."]
    if errors:
        raise ValidationError("The budget could not be set.", field_errors=errors)
    budget = _budget_row(session, project)
    previous = budget.cap_pence if budget else None
    if budget is None:
        budget = ProjectBudget(project_id=project.id, cap_pence=cap_pence, reason=reason.strip(), set_by_id=actor.id,
                               set_at=utcnow())
        session.add(budget)
    else:
        budget.cap_pence, budget.reason, budget.set_by_id, budget.set_at = cap_pence, reason.strip(), actor.id, utcnow()
    session.flush()
    audit.record(session, actor, "budget.set", "project", project.id,
                 {"cap_pence": cap_pence, "previous_cap_pence": previous, "reason": reason.strip()})
    evaluate_budget(session, project)
    return budget


def evaluate_budget(session: Session, project: Project) -> BudgetStatus | None:
    """Send the warning (once per cap) and the exhausted notice; clear 'exhausted' after a raise."""
    budget = _budget_row(session, project)
    if budget is None:
        return None
    status = _status(session, project, budget, afresh=True)
    if status.state in {"warning", "exhausted"} and budget.warned_cap_pence != budget.cap_pence:
        budget.warned_at, budget.warned_cap_pence = utcnow(), budget.cap_pence
        _notify(session, project, f"Budget warning for {project.reference}",
                f"{project.title}: {status.describe()} At 100% new workspace sessions and output checks are "
                "refused until finance raises the cap.", f"budget-warning:{project.id}:{budget.cap_pence}")
        audit.record(session, "system", "budget.warning", "project", project.id,
                     {"cap_pence": budget.cap_pence, "spent_pence": status.spent_pence, "percent": status.percent})
    if status.state == "exhausted" and budget.exhausted_at is None:
        budget.exhausted_at = utcnow()
        _notify(session, project, f"Budget used up for {project.reference}",
                f"{project.title}: {status.describe()} New workspace sessions and output checks are refused "
                "until finance raises the cap.", f"budget-exhausted:{project.id}:{budget.cap_pence}")
        audit.record(session, "system", "budget.exhausted", "project", project.id,
                     {"cap_pence": budget.cap_pence, "spent_pence": status.spent_pence})
    elif status.state != "exhausted" and budget.exhausted_at is not None:
        budget.exhausted_at = None
    session.flush()
    return status


def _notify(session: Session, project: Project, subject: str, body: str, key: str) -> None:
    people = {project.lead.id: project.lead}
    for person in users_with_roles(session, [Role.FINANCE.value]):
        people.setdefault(person.id, person)
    for person in people.values():
        outbox.send_email(session, person.email, subject, body, dedupe_key=f"{key}:{person.id}")
