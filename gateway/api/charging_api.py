"""API operations for charging: the tariff, quotes, statements, budgets, invoices and the monthly run."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from flask import Response
from pydantic import BaseModel, ConfigDict, Field

from gateway.charging import budget as budgets
from gateway.charging import invoices, quotes
from gateway.charging.documents import invoice_csv, invoice_pdf
from gateway.charging.metering import meter_compute_sessions
from gateway.charging.models import FrozenQuote, Invoice
from gateway.charging.tariff import Tariff, tariff_in_force
from gateway.errors import PermissionDenied
from gateway.permissions import Permission
from gateway.web.context import db, require_user, run, settings, today
from gateway.web.recorded import records_download
from projects import applications, lifecycle
from projects.models import Project
from projects.money import MAX_PENCE

from .base import api


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TariffOut(BaseModel):
    version: str
    tariff: dict[str, object]

    @classmethod
    def of(cls, tariff: Tariff) -> TariffOut:
        return cls(version=tariff.version_id, tariff=tariff.canonical())


class QuoteLineOut(BaseModel):
    code: str
    description: str
    quantity: int
    unit_pence: int
    amount_pence: int


class QuoteOut(BaseModel):
    frozen: bool
    tariff_version: str
    currency: str
    org_type: str
    multiplier_basis_points: int
    vat_basis_points: int
    lines: list[QuoteLineOut]
    net_pence: int
    vat_pence: int
    total_pence: int
    frozen_at: dt.datetime | None = None

    @classmethod
    def of_live(cls, q: quotes.Quote) -> QuoteOut:
        return cls(frozen=False, tariff_version=q.tariff_version, currency=q.currency, org_type=q.org_type,
                   multiplier_basis_points=q.multiplier_basis_points, vat_basis_points=q.vat_basis_points,
                   lines=[QuoteLineOut(code=x.code, description=x.description, quantity=x.quantity,
                                       unit_pence=x.unit_pence, amount_pence=x.amount_pence) for x in q.lines],
                   net_pence=q.net_pence, vat_pence=q.vat_pence, total_pence=q.total_pence)

    @classmethod
    def of_frozen(cls, q: FrozenQuote) -> QuoteOut:
        return cls(frozen=True, tariff_version=q.tariff_version_id, currency=q.currency, org_type=q.org_type,
                   multiplier_basis_points=q.multiplier_basis_points, vat_basis_points=q.vat_basis_points,
                   lines=[QuoteLineOut(code=x.code, description=x.description, quantity=x.quantity,
                                       unit_pence=x.unit_pence, amount_pence=x.amount_pence) for x in q.lines],
                   net_pence=q.net_pence, vat_pence=q.vat_pence, total_pence=q.total_pence, frozen_at=q.frozen_at)


class InvoiceLineOut(BaseModel):
    description: str
    period: str
    quantity: int
    unit_pence: int
    amount_pence: int


class InvoiceOut(BaseModel):
    id: int
    number: str
    kind: str
    project_id: int
    period: str
    state: str
    currency: str
    tariff_version: str | None
    vat_basis_points: int
    net_pence: int
    vat_pence: int
    total_pence: int
    credits: str | None
    issued_at: dt.datetime | None
    due_date: dt.date | None
    paid_at: dt.datetime | None
    payment_reference: str | None
    void_reason: str | None
    lines: list[InvoiceLineOut]

    @classmethod
    def of(cls, i: Invoice) -> InvoiceOut:
        return cls(id=i.id, number=i.number, kind=i.kind, project_id=i.project_id, period=i.period, state=i.state,
                   currency=i.currency, tariff_version=i.tariff_version_id, vat_basis_points=i.vat_basis_points,
                   net_pence=i.net_pence, vat_pence=i.vat_pence, total_pence=i.total_pence,
                   credits=i.credits.number if i.credits else None, issued_at=i.issued_at, due_date=i.due_date,
                   paid_at=i.paid_at, payment_reference=i.payment_reference, void_reason=i.void_reason,
                   lines=[InvoiceLineOut(description=x.description, period=x.period, quantity=x.quantity,
                                         unit_pence=x.unit_pence, amount_pence=x.amount_pence) for x in i.lines])


class BudgetOut(BaseModel):
    project_id: int
    cap_pence: int | None
    spent_pence: int
    percent: int
    state: str
    description: str


class StatementOut(BaseModel):
    project_id: int
    charged_pence: int
    paid_pence: int
    outstanding_pence: int
    invoices: list[InvoiceOut]
    quotes: list[QuoteOut]
    budget: BudgetOut


class BudgetIn(Strict):
    cap_pence: int = Field(ge=1, le=MAX_PENCE, description="The cap in pence, including VAT")
    reason: str = Field(min_length=1, max_length=2000)


class RunIn(Strict):
    month: str = Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="The month to invoice, like 2026-11")


class RunOut(BaseModel):
    month: str
    created: list[InvoiceOut]
    already_invoiced: list[str]


class PaymentIn(Strict):
    reference: str = Field(min_length=1, max_length=100)


class VoidIn(Strict):
    reason: str = Field(min_length=1, max_length=2000)


class CreditIn(Strict):
    net_pence: int = Field(ge=1, description="Amount to credit before VAT, in pence")
    reason: str = Field(min_length=1, max_length=2000)


class LineIn(Strict):
    description: str = Field(min_length=1, max_length=300)
    quantity: int = Field(ge=1, le=100000)
    unit_pence: int = Field(ge=1, le=MAX_PENCE)


class InvoiceQuery(Strict):
    state: Literal["draft", "issued", "paid", "void"] | None = None
    period: str | None = Field(default=None, pattern=r"^\d{4}-(0[1-9]|1[0-2])$")
    project_id: int | None = None


def _budget_out(project: Project) -> BudgetOut:
    status = budgets.budget_status(db(), project)
    return BudgetOut(project_id=project.id, cap_pence=status.cap_pence, spent_pence=status.spent_pence,
                     percent=status.percent, state=status.state, description=status.describe())


def _project_for_charges(project_id: int) -> Project:
    user = require_user()
    project = lifecycle.get_project(db(), user, project_id)
    if not invoices.can_see_charges(user, project):
        raise PermissionDenied("Only the project's team and finance see its charges.")
    return project


@api.operation("/tariff", "GET", summary="The tariff in force (no token needed)", tag="charging", permission=None,
               response=TariffOut)
def get_tariff() -> TariffOut:
    return TariffOut.of(tariff_in_force())


@api.operation("/applications/<int:application_id>/quote", "GET",
               summary="The application's quote: live while it can change, frozen once approved", tag="charging",
               permission=Permission.VIEW_PROJECTS, response=QuoteOut)
def get_application_quote(application_id: int) -> QuoteOut:
    application = applications.get_application(db(), require_user(), application_id)
    frozen = quotes.frozen_quote_of(db(), application.id)
    if frozen is not None:
        return QuoteOut.of_frozen(frozen)
    return QuoteOut.of_live(quotes.quote_for_application(db(), application, today()))


@api.operation("/projects/<int:project_id>/statement", "GET",
               summary="The project's charges: invoices, frozen quotes and budget (its team and finance)",
               tag="charging", permission=Permission.VIEW_PROJECTS, response=StatementOut)
@records_download("project", "project_id")
def get_statement(project_id: int) -> StatementOut:
    project = _project_for_charges(project_id)
    st = invoices.statement(db(), require_user(), project)
    invoices.load_lines(db(), st.invoices)
    return StatementOut(project_id=project.id, charged_pence=st.charged_pence, paid_pence=st.paid_pence,
                        outstanding_pence=st.outstanding_pence, invoices=[InvoiceOut.of(i) for i in st.invoices],
                        quotes=[QuoteOut.of_frozen(q) for q in quotes.project_quotes(db(), project)],
                        budget=_budget_out(project))


@api.operation("/projects/<int:project_id>/budget", "GET", summary="The project's budget status", tag="charging",
               permission=Permission.VIEW_PROJECTS, response=BudgetOut)
def get_budget(project_id: int) -> BudgetOut:
    return _budget_out(_project_for_charges(project_id))


@api.operation("/projects/<int:project_id>/budget", "PUT", summary="Set or raise the project's budget cap",
               tag="charging", permission=Permission.MANAGE_CHARGES, body=BudgetIn, response=BudgetOut)
def put_budget(project_id: int, body: BudgetIn) -> BudgetOut:
    project = lifecycle.get_project(db(), require_user(), project_id)
    run(budgets.set_budget, require_user(), project, body.cap_pence, body.reason)
    return _budget_out(project)


@api.operation("/invoices", "GET", summary="Invoices and credit notes (finance)", tag="charging",
               permission=Permission.MANAGE_CHARGES, query=InvoiceQuery, response=InvoiceOut, response_is_list=True)
def list_invoices(query: InvoiceQuery) -> list[InvoiceOut]:
    return [InvoiceOut.of(i) for i in invoices.list_invoices(db(), require_user(), state=query.state,
                                                              period=query.period, project_id=query.project_id)]


@api.operation("/invoices/run", "POST", summary="Draft a month's invoices (idempotent: no duplicates)",
               tag="charging", permission=Permission.MANAGE_CHARGES, body=RunIn, response=RunOut)
def run_invoices(body: RunIn) -> RunOut:
    run(meter_compute_sessions)
    result = run(invoices.run_month, require_user(), body.month, today())
    return RunOut(month=result.month, created=[InvoiceOut.of(i) for i in result.created],
                  already_invoiced=result.already)


@api.operation("/invoices/<int:invoice_id>", "GET", summary="One invoice (finance, or the project's team once issued)",
               tag="charging", permission=Permission.VIEW_PROJECTS, response=InvoiceOut)
def get_invoice(invoice_id: int) -> InvoiceOut:
    return InvoiceOut.of(invoices.get_invoice(db(), require_user(), invoice_id))


def _document(invoice_id: int, kind: str) -> Response:
    invoice = invoices.get_invoice(db(), require_user(), invoice_id)
    project = db().get(Project, invoice.project_id)
    assert project is not None
    name = f"{invoice.number}-{project.reference}.{kind}"
    if kind == "pdf":
        return Response(invoice_pdf(invoice, project), mimetype="application/pdf",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})
    return Response(invoice_csv(invoice, project), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@api.operation("/invoices/<int:invoice_id>/pdf", "GET", summary="The invoice as PDF", tag="charging",
               permission=Permission.VIEW_PROJECTS, produces=("application/pdf",))
@records_download("invoice", "invoice_id")
def get_invoice_pdf(invoice_id: int) -> Response:
    return _document(invoice_id, "pdf")


@api.operation("/invoices/<int:invoice_id>/csv", "GET", summary="The invoice as CSV", tag="charging",
               permission=Permission.VIEW_PROJECTS, produces=("text/csv",))
@records_download("invoice", "invoice_id")
def get_invoice_csv(invoice_id: int) -> Response:
    return _document(invoice_id, "csv")


def _act(invoice_id: int, command: object, *args: object) -> InvoiceOut:
    invoice = invoices.get_invoice(db(), require_user(), invoice_id)
    run(command, require_user(), invoice, *args)  # type: ignore[arg-type]
    return InvoiceOut.of(invoice)


@api.operation("/invoices/<int:invoice_id>/lines", "POST", summary="Add a manual line to a draft",
               tag="charging", permission=Permission.MANAGE_CHARGES, body=LineIn, response=InvoiceOut, status=201,
               errors=(409,))
def add_invoice_line(invoice_id: int, body: LineIn) -> InvoiceOut:
    return _act(invoice_id, invoices.add_line, body.description, body.quantity, body.unit_pence)


@api.operation("/invoices/<int:invoice_id>/issue", "POST", summary="Issue a draft invoice", tag="charging",
               permission=Permission.MANAGE_CHARGES, response=InvoiceOut, errors=(409,))
def issue_invoice(invoice_id: int) -> InvoiceOut:
    return _act(invoice_id, invoices.issue, today(), settings().charging.invoice_due_days)


@api.operation("/invoices/<int:invoice_id>/payment", "POST", summary="Record that an issued invoice is paid",
               tag="charging", permission=Permission.MANAGE_CHARGES, body=PaymentIn, response=InvoiceOut,
               errors=(409,))
def pay_invoice(invoice_id: int, body: PaymentIn) -> InvoiceOut:
    return _act(invoice_id, invoices.record_payment, body.reference)


@api.operation("/invoices/<int:invoice_id>/void", "POST", summary="Void a draft or an issued invoice",
               tag="charging", permission=Permission.MANAGE_CHARGES, body=VoidIn, response=InvoiceOut, errors=(409,))
def void_invoice(invoice_id: int, body: VoidIn) -> InvoiceOut:
    return _act(invoice_id, invoices.void, body.reason)


@api.operation("/invoices/<int:invoice_id>/credit-notes", "POST",
               summary="Credit part or all of an issued invoice (issued invoices are never edited)", tag="charging",
               permission=Permission.MANAGE_CHARGES, body=CreditIn, response=InvoiceOut, status=201, errors=(409,))
def credit_invoice(invoice_id: int, body: CreditIn) -> InvoiceOut:
    invoice = invoices.get_invoice(db(), require_user(), invoice_id)
    note = run(invoices.credit_note, require_user(), invoice, body.net_pence, body.reason, today())
    return InvoiceOut.of(note)
