"""Charging pages: the public tariff, quotes and statements (included on application and project pages),
and for finance the dashboard, the monthly run, invoices, payments, credit notes and budgets."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for

from gateway.charging import budget as budgets
from gateway.charging import charts, invoices, quotes
from gateway.charging.documents import invoice_csv, invoice_pdf
from gateway.charging.invoices import OWNERS, TRANSITIONS
from gateway.charging.models import Invoice
from gateway.charging.tariff import tariff_in_force
from gateway.errors import Conflict, InvalidTransition, ValidationError
from gateway.permissions import Permission, has_permission
from gateway.web.access import public, requires
from gateway.web.context import current_user, db, require_user, run, settings, today
from gateway.web.date_input import month_text
from gateway.web.forms import EmptyForm, InvoiceRunForm
from gateway.web.forms_errors import apply_errors
from gateway.web.recorded import records_download
from projects import applications, lifecycle
from projects.models import Application, Project
from projects.money import format_money, format_percent, parse_pounds
from projects.workflow import AppState

bp = Blueprint("charging", __name__, url_prefix="/charging")


# --- helpers the application and project pages call from their templates (no view changes needed) -----------

@bp.app_template_global("charging_quote")
def charging_quote(application: Application) -> quotes.Quote | None:
    """The live quote (recomputed on every view); None once the application is decided."""
    if application.state in {"approved", "rejected", "withdrawn"}:
        return None
    return quotes.quote_for_application(db(), application, today())


@bp.app_template_global("charging_frozen_quote")
def charging_frozen_quote(application: Application) -> Any:
    """The quote frozen at approval; an application in any other state has none (charging.approval.freeze_quote is
    subscribed to the approval event), so its page does not look one up."""
    if application.state != AppState.APPROVED:
        return None
    return quotes.frozen_quote_of(db(), application.id)


def charging_summary(project: Project) -> dict[str, Any] | None:
    """Statement and budget, for the project's team and finance only (the statement page adds the frozen quotes)."""
    user = current_user()
    if user is None or not invoices.can_see_charges(user, project):
        return None
    session = db()
    return {"statement": invoices.statement(session, user, project),
            "budget": budgets.budget_status(session, project)}


@bp.app_template_filter("money")
def money_filter(pence: int | None, currency: str = "GBP") -> str:
    return "\u2013" if pence is None else format_money(pence, currency)


@bp.app_template_filter("percent_bp")
def percent_filter(basis_points: int) -> str:
    return format_percent(basis_points)


def _messages(exc: ValidationError | Conflict | InvalidTransition) -> list[str]:
    return [m for ms in exc.field_errors.values() for m in ms] or [exc.message]


# --- public --------------------------------------------------------------------------------------------------

@bp.get("/tariff")
@public
def tariff() -> Any:
    return render_template("charging/tariff.html", tariff=tariff_in_force(), settings=settings())


# --- finance ---------------------------------------------------------------------------------------------------

def _recent_months(count: int = 12) -> list[str]:
    day = today().replace(day=1)
    out = []
    for _ in range(count):
        out.append(f"{day.year:04d}-{day.month:02d}")
        day = (day - dt.timedelta(days=1)).replace(day=1)
    return list(reversed(out))


@bp.get("/")
@requires(Permission.MANAGE_CHARGES)
def dashboard() -> Any:
    return _dashboard()


def _dashboard(form: InvoiceRunForm | None = None, errors: list[str] | None = None, status: int = 200) -> Any:
    if form is None:  # last month, in its boxes
        form = InvoiceRunForm(month=(today().replace(day=1) - dt.timedelta(days=1)).replace(day=1))
    months = _recent_months()
    income = charts.income(db(), months)
    by_type = charts.stacked_bars(months, income.by_type, charts.TYPE_LABELS,
                                  title="Income by organisation type, by month (invoices less credit notes)",
                                  chart_id="income-by-type")
    by_project = charts.stacked_bars(months, income.by_project,
                                     title="Income by project, by month (invoices less credit notes)",
                                     chart_id="income-by-project")
    drafts = invoices.list_invoices(db(), require_user(), state="draft")
    unpaid = invoices.list_invoices(db(), require_user(), state="issued")
    return render_template("charging/dashboard.html", income=income, by_type=by_type, by_project=by_project,
                           type_labels=charts.TYPE_LABELS, drafts=drafts, unpaid=unpaid, form=form,
                           errors=errors or []), status


@bp.post("/invoices/run")
@requires(Permission.MANAGE_CHARGES)
def run_invoices() -> Any:
    from gateway.charging.metering import meter_compute_sessions

    form = InvoiceRunForm()
    if not form.validate_on_submit():
        token = getattr(form, "csrf_token", None)  # absent when CSRF is off (tests)
        if token is not None and token.errors:
            token.errors = []
            return _dashboard(form, ["Your form expired; try again."], 400)
        return _dashboard(form, status=422)  # the month's boxes, as typed, the wrong ones marked
    if form.month.data is None:
        form.month.errors = ["Enter the month to invoice."]
        return _dashboard(form, status=422)
    month = month_text(form.month.data)
    try:
        run(meter_compute_sessions)
        result = run(invoices.run_month, require_user(), month, today())
    except ValidationError as exc:
        return _dashboard(form, apply_errors(form, exc), 422)
    flash(result.describe() + ".", "success")
    return redirect(url_for("charging.invoice_list", period=month))


@bp.get("/invoices")
@requires(Permission.MANAGE_CHARGES)
def invoice_list() -> Any:
    state = request.args.get("state") or None
    period = request.args.get("period") or None
    rows = invoices.list_invoices(db(), require_user(), state=state if state in TRANSITIONS else None,
                                  period=period)
    projects = {p.id: p for p in db().query(Project).filter(Project.id.in_({i.project_id for i in rows}))}
    return render_template("charging/invoices.html", invoices=rows, projects=projects, state=state, period=period,
                           states=list(TRANSITIONS))


def _invoice(invoice_id: int) -> tuple[Invoice, Project]:
    invoice = invoices.get_invoice(db(), require_user(), invoice_id)
    project = db().get(Project, invoice.project_id)
    assert project is not None
    return invoice, project


@bp.get("/invoices/<int:invoice_id>")
@requires(Permission.VIEW_PROJECTS)  # finance, or the project's team once issued: decided per invoice
def invoice(invoice_id: int) -> Any:
    return _invoice_page(invoice_id)


def _invoice_page(invoice_id: int, errors: dict[str, list[str]] | None = None,
                  values: dict[str, str] | None = None, status: int = 200) -> Any:
    invoice, project = _invoice(invoice_id)
    credit_notes = db().query(Invoice).filter(Invoice.credits_invoice_id == invoice.id).order_by(Invoice.id).all()
    return render_template("charging/invoice.html", invoice=invoice, project=project, form=EmptyForm(),
                           errors=errors or {}, values=values or {}, owners=OWNERS, transitions=TRANSITIONS,
                           credit_notes=credit_notes, creditable=invoice.net_pence - invoices.credited_net(
                               db(), invoice) if invoice.kind == "invoice" else 0,
                           finance=has_permission(require_user(), Permission.MANAGE_CHARGES)), status


@bp.get("/invoices/<int:invoice_id>.pdf")
@requires(Permission.VIEW_PROJECTS)
@records_download("invoice", "invoice_id")
def invoice_as_pdf(invoice_id: int) -> Any:
    invoice, project = _invoice(invoice_id)
    return Response(invoice_pdf(invoice, project), mimetype="application/pdf", headers={
        "Content-Disposition": f'attachment; filename="{invoice.number}-{project.reference}.pdf"'})


@bp.get("/invoices/<int:invoice_id>.csv")
@requires(Permission.VIEW_PROJECTS)
@records_download("invoice", "invoice_id")
def invoice_as_csv(invoice_id: int) -> Any:
    invoice, project = _invoice(invoice_id)
    return Response(invoice_csv(invoice, project), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{invoice.number}-{project.reference}.csv"'})


def _finance_action(invoice_id: int, success: str, command: Any, *args: Any) -> Any:
    invoice, _ = _invoice(invoice_id)
    values = {k: v for k, v in request.form.items() if k != "csrf_token"}
    if not EmptyForm().validate_on_submit():
        return _invoice_page(invoice_id, {"": ["Your form expired; try again."]}, values, 400)
    try:
        run(command, require_user(), invoice, *args)
    except (ValidationError, Conflict, InvalidTransition) as exc:
        errors = exc.field_errors or {"": [exc.message]}
        return _invoice_page(invoice_id, errors, values, 422 if isinstance(exc, ValidationError) else 409)
    flash(success, "success")
    return redirect(url_for("charging.invoice", invoice_id=invoice_id))


@bp.post("/invoices/<int:invoice_id>/issue")
@requires(Permission.MANAGE_CHARGES)
def issue(invoice_id: int) -> Any:
    return _finance_action(invoice_id, "Issued; the project lead has been emailed.", invoices.issue, today(),
                           settings().charging.invoice_due_days)


@bp.post("/invoices/<int:invoice_id>/payment")
@requires(Permission.MANAGE_CHARGES)
def pay(invoice_id: int) -> Any:
    return _finance_action(invoice_id, "Payment recorded.", invoices.record_payment,
                           request.form.get("reference", ""))


@bp.post("/invoices/<int:invoice_id>/void")
@requires(Permission.MANAGE_CHARGES)
def void(invoice_id: int) -> Any:
    return _finance_action(invoice_id, "Voided.", invoices.void, request.form.get("reason", ""))


def _pence(field: str) -> int | dict[str, list[str]]:
    try:
        return parse_pounds(request.form.get(field, ""))
    except ValueError as exc:
        return {field: [str(exc)]}


@bp.post("/invoices/<int:invoice_id>/credit-notes")
@requires(Permission.MANAGE_CHARGES)
def credit(invoice_id: int) -> Any:
    amount = _pence("amount")
    if isinstance(amount, dict):
        return _invoice_page(invoice_id, amount, dict(request.form), 422)
    return _finance_action(invoice_id, "Credit note issued.", invoices.credit_note, amount,
                           request.form.get("credit_reason", ""), today())


@bp.post("/invoices/<int:invoice_id>/lines")
@requires(Permission.MANAGE_CHARGES)
def add_line(invoice_id: int) -> Any:
    unit = _pence("unit_price")
    quantity = request.form.get("quantity", "").strip()
    if isinstance(unit, dict) or not quantity.isdigit():
        errors = unit if isinstance(unit, dict) else {}
        if not quantity.isdigit():
            errors["quantity"] = ["Enter a whole number of 1 or more."]
        return _invoice_page(invoice_id, errors, dict(request.form), 422)
    return _finance_action(invoice_id, "Line added.", invoices.add_line, request.form.get("description", ""),
                           int(quantity), unit)


@bp.get("/budgets")
@requires(Permission.MANAGE_CHARGES)
def budgets_page() -> Any:
    return _budgets()


def _budgets(errors: dict[int, list[str]] | None = None, values: dict[int, dict[str, str]] | None = None,
             status: int = 200) -> Any:
    session = db()
    rows = [(p, budgets.budget_of(session, p), budgets.budget_status(session, p))
            for p in lifecycle.list_projects(session, require_user())]
    return render_template("charging/budgets.html", rows=rows, form=EmptyForm(), errors=errors or {},
                           values=values or {}), status


@bp.post("/projects/<int:project_id>/budget")
@requires(Permission.MANAGE_CHARGES)
def set_budget(project_id: int) -> Any:
    project = lifecycle.get_project(db(), require_user(), project_id)
    values = {project.id: {"cap": request.form.get("cap", ""), "reason": request.form.get("reason", "")}}
    if not EmptyForm().validate_on_submit():
        return _budgets({project.id: ["Your form expired; try again."]}, values, 400)
    cap = _pence("cap")
    if isinstance(cap, dict):
        return _budgets({project.id: cap["cap"]}, values, 422)
    try:
        run(budgets.set_budget, require_user(), project, cap, request.form.get("reason", ""))
    except ValidationError as exc:
        return _budgets({project.id: _messages(exc)}, values, 422)
    flash(f"Budget for {project.reference} set to {format_money(cap)}.", "success")
    return redirect(url_for("charging.budgets_page"))


# --- the project's team and finance ----------------------------------------------------------------------------

@bp.get("/projects/<int:project_id>/statement")
@requires(Permission.VIEW_PROJECTS)  # the project's team and finance: decided per project
@records_download("project", "project_id")
def statement(project_id: int) -> Any:
    user = require_user()
    project = lifecycle.get_project(db(), user, project_id)
    summary = charging_summary(project)
    if summary is None:
        from gateway.errors import PermissionDenied

        raise PermissionDenied("Only the project's team and finance see its charges.")
    summary["quotes"] = quotes.project_quotes(db(), project)
    return render_template("charging/statement.html", project=project, summary=summary)


@bp.get("/applications/<int:application_id>/quote")
@requires(Permission.VIEW_PROJECTS)  # whoever may see the application
def application_quote(application_id: int) -> Any:
    application = applications.get_application(db(), require_user(), application_id)
    return render_template("charging/quote_page.html", application=application,
                           quote=charging_quote(application), frozen=charging_frozen_quote(application))
