"""Charging against a real database: quotes frozen at approval, metering once, invoices, credit notes, budgets."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from gateway.charging import budget, invoices, metering, quotes
from gateway.charging.models import FrozenQuote, Invoice, InvoiceLine, MeterEvent, TariffVersion
from gateway.cli import main
from gateway.db import unit_of_work, utcnow
from gateway.errors import Conflict, InvalidTransition, PermissionDenied, ValidationError
from gateway.outbox import OutboxMessage
from gateway.trust import register
from gateway.workspaces.models import WorkspaceSession
from projects.models import Application, Project
from projects.tariff import DEFAULT_TARIFF
from tests.support import factories as f
from tests.support.databases import postgres_only
from tests.support.late import late_session, refused_on

NOW = utcnow()
THIS_MONTH = metering.period_of(NOW)
NEXT_MONTH_START = (NOW.date().replace(day=1) + dt.timedelta(days=32)).replace(day=1)


def months(start: dt.date, end: dt.date) -> int:
    return (end.year - start.year) * 12 + end.month - start.month + 1


@pytest.fixture
def world(session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> sessionmaker[Session]:
    with unit_of_work(session_factory) as s:
        for name in ("researcher", "researcher2"):
            f.accredit(s, name)
    return session_factory


def project_of(s: Session, project_id: int) -> Project:
    project = s.get(Project, project_id)
    assert project is not None
    return project


def run(factory: sessionmaker[Session], month: str = THIS_MONTH) -> invoices.RunResult:
    with unit_of_work(factory) as s:
        return invoices.run_month(s, f.user(s, "finance"), month, NEXT_MONTH_START)


def test_quote_follows_every_edit_then_is_frozen_at_approval(world: sessionmaker[Session]) -> None:
    app_id = f.draft(world, complete=False)
    with unit_of_work(world) as s:
        app = s.get(Application, app_id)
        assert app is not None
        empty = quotes.quote_for_application(s, app, f.TODAY)
        # no variables yet: application fee, set-up, 1 person x 12 assumed months
        assert [line.code for line in empty.lines] == ["new_application", "project_setup", "workspace_seats"]
        assert empty.net_pence == 143100 + 43400 + 12 * 47200
        from projects import applications

        applications.set_variables(s, f.user(s, "researcher"), app, f.catalogue(), f.VARIABLES)
        applications.add_member(s, f.user(s, "researcher"), app, f.user(s, "researcher2"), "analyst")
    with world() as s:
        app = s.get(Application, app_id)
        assert app is not None
        live = quotes.quote_for_application(s, app, f.TODAY)
        provision = next(line for line in live.lines if line.code == "data_provision")
        assert provision.quantity == 2 and "conditions, patients" in provision.description  # two datasets
        seats = next(line for line in live.lines if line.code == "workspace_seats")
        assert seats.quantity == 2 * 12
        assert live.net_pence == 143100 + 2 * 48800 + 43400 + 24 * 47200
        assert live.vat_pence == round(live.net_pence * 0.2)  # 20% VAT on the net total (exact in pence here)
    project_id = f.approved_project(world, title="Frozen quote")
    with world() as s:
        project = project_of(s, project_id)
        frozen = s.scalar(select(FrozenQuote).where(FrozenQuote.project_id == project_id))
        assert frozen is not None
        assert s.get(TariffVersion, frozen.tariff_version_id) is not None
        seat_line = next(line for line in frozen.lines if line.code == "workspace_seats")
        assert seat_line.quantity == months(project.start_date, project.end_date)  # the DAC's dates now
        assert frozen.total_pence == frozen.net_pence + frozen.vat_pence
        fees = s.scalars(select(MeterEvent).where(MeterEvent.project_id == project_id,
                                                  MeterEvent.kind == "fee")).all()
        assert sorted(e.amount_pence for e in fees) == [43400, 97600, 143100]
        assert s.scalar(select(func.count()).select_from(FrozenQuote)) == 1


def test_frozen_quote_rows_cannot_be_changed_in_the_database(world: sessionmaker[Session]) -> None:
    f.approved_project(world)
    with world() as s, pytest.raises(DBAPIError):
        s.execute(text("UPDATE quotes SET net_pence = 1"))
        s.flush()


def test_a_tariff_change_applies_to_new_quotes_only(world: sessionmaker[Session], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    project_id = f.approved_project(world, title="Approved before the change")
    with world() as s:
        before = s.scalar(select(FrozenQuote).where(FrozenQuote.project_id == project_id))
        assert before is not None
        before_version, before_total = before.tariff_version_id, before.total_pence
    changed = yaml.safe_load(DEFAULT_TARIFF.read_text())
    changed["prices"]["new_application"] = 200000
    changed["prices"]["workspace_seat_per_user_month"] = 60000
    tariff_file = tmp_path / "tariff.yaml"
    tariff_file.write_text(yaml.safe_dump(changed))
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"charging": {"tariff_path": str(tariff_file)}}))
    monkeypatch.setenv("SDE_CONFIG", str(config))

    draft_id = f.draft(world, title="Drafted after the change")
    with world() as s:
        app = s.get(Application, draft_id)
        assert app is not None
        new_quote = quotes.quote_for_application(s, app, f.TODAY)
        assert new_quote.tariff_version != before_version
        assert new_quote.lines[0].unit_pence == 200000
        old = s.scalar(select(FrozenQuote).where(FrozenQuote.project_id == project_id))
        assert old is not None and (old.tariff_version_id, old.total_pence) == (before_version, before_total)
    # the approved project's usage is still priced on its frozen version
    with unit_of_work(world) as s:
        metering.record_meter_event(s, project_of(s, project_id), "seat_month", 1, "seat:test:1",
                                    f.user(s, "researcher"))
    result = run(world)
    with world() as s:
        invoice = s.get(Invoice, result.created[0].id)
        assert invoice is not None and invoice.tariff_version_id == before_version
        seats = next(line for line in invoice.lines if line.code == "workspace_seats")
        assert seats.unit_pence == 47200


def test_a_replayed_meter_event_is_recorded_and_billed_once(world: sessionmaker[Session]) -> None:
    project_id = f.approved_project(world)
    for _ in range(3):
        with unit_of_work(world) as s:
            metering.record_meter_event(s, project_of(s, project_id), "output_check", 25, "checks:batch-1",
                                        f.user(s, "researcher"))
    with unit_of_work(world) as s, pytest.raises(Conflict):  # the same key with another quantity is refused
        metering.record_meter_event(s, project_of(s, project_id), "output_check", 26, "checks:batch-1",
                                    f.user(s, "researcher"))
    with world() as s:
        assert s.scalar(select(func.count()).select_from(MeterEvent).where(
            MeterEvent.event_key == "checks:batch-1")) == 1
        from gateway import audit

        audited = audit.search(s, audit.AuditFilter(action="meter.recorded"), limit=None)
        assert [e.details["key"] for e in audited].count("checks:batch-1") == 1
    first = run(world)
    assert len(first.created) == 1
    with world() as s:
        invoice = s.get(Invoice, first.created[0].id)
        assert invoice is not None
        checks = next(line for line in invoice.lines if line.code == "output_checks")
        assert checks.quantity == 25  # no seat recorded this month, so none are included
        assert checks.unit_pence == 1100


def test_included_output_checks_follow_the_seats(world: sessionmaker[Session]) -> None:
    project_id = f.approved_project(world)
    with unit_of_work(world) as s:
        project, person = project_of(s, project_id), f.user(s, "researcher")
        metering.record_meter_event(s, project, "seat_month", 1, "seat:x", person)
        metering.record_meter_event(s, project, "output_check", 18, "checks:a", person)
    run(world)
    with unit_of_work(world) as s:  # late readings in the same month: 18 + 5 = 23, so 3 beyond the 20
        metering.record_meter_event(s, project_of(s, project_id), "output_check", 5, "checks:b",
                                    f.user(s, "researcher"))
    with world() as s:
        basis = invoices.basis_for(s, project_of(s, project_id))
        pending = list(s.scalars(select(MeterEvent).where(MeterEvent.invoice_id.is_(None),
                                                          MeterEvent.project_id == project_id)))
        lines = invoices.priced_lines(s, project_of(s, project_id), pending, basis)
        assert [(line.code, line.quantity) for line in lines] == [("output_checks", 3)]


def test_invoice_run_twice_creates_no_duplicates_and_refuses_open_months(world: sessionmaker[Session]) -> None:
    project_id = f.approved_project(world)
    first = run(world)
    assert [i.project_id for i in first.created] == [project_id]
    again = run(world)
    assert again.created == []
    with world() as s:
        assert s.scalar(select(func.count()).select_from(Invoice)) == 1
        invoice = s.scalars(select(Invoice)).one()
        assert invoice.state == "draft" and invoice.total_pence == invoice.net_pence + invoice.vat_pence
        assert invoice.net_pence == 143100 + 97600 + 43400
        assert s.scalar(select(func.count()).select_from(MeterEvent).where(MeterEvent.invoice_id.is_(None))) == 0
    with unit_of_work(world) as s, pytest.raises(ValidationError):
        invoices.run_month(s, "test", THIS_MONTH, NOW.date())  # the month has not ended


def test_cli_invoices_run_twice_creates_no_duplicates(world: sessionmaker[Session], database_url: str) -> None:
    f.approved_project(world)
    runner = CliRunner()
    month = invoices.previous_month(NOW.date())
    with unit_of_work(world) as s:  # move the fees into last month so the CLI (today's date) can invoice them
        s.execute(text("UPDATE meter_events SET period = :m"), {"m": month})
    outputs = [runner.invoke(main, ["invoices", "run", "--month", month], env={"SDE_DATABASE_URL": database_url})
               for _ in range(2)]
    assert outputs[0].exit_code == 0, outputs[0].output
    assert "1 invoice drafted" in outputs[0].output
    assert outputs[1].exit_code == 0 and "0 invoices drafted" in outputs[1].output
    bad = runner.invoke(main, ["invoices", "run", "--month", "2026-13"], env={"SDE_DATABASE_URL": database_url})
    assert bad.exit_code == 1 and "like 2026-11" in bad.output
    with world() as s:
        assert s.scalar(select(func.count()).select_from(Invoice)) == 1


def test_an_issued_invoice_cannot_be_altered_only_credited(world: sessionmaker[Session]) -> None:
    project_id = f.approved_project(world)
    invoice_id = run(world).created[0].id
    with unit_of_work(world) as s:
        invoice = s.get(Invoice, invoice_id)
        assert invoice is not None
        invoices.add_line(s, f.user(s, "finance"), invoice, "Extra linkage work", 2, 5000)
        assert invoice.net_pence == 143100 + 97600 + 43400 + 10000
        invoices.issue(s, f.user(s, "finance"), invoice, f.TODAY)
    with unit_of_work(world) as s, pytest.raises(Conflict, match="credit note"):
        invoice = s.get(Invoice, invoice_id)
        assert invoice is not None
        invoices.add_line(s, f.user(s, "finance"), invoice, "Sneaky", 1, 100)
    with unit_of_work(world) as s, pytest.raises(InvalidTransition):
        invoice = s.get(Invoice, invoice_id)
        assert invoice is not None
        invoices.issue(s, f.user(s, "finance"), invoice, f.TODAY)
    # the database refuses too, whatever the code path
    for statement in ("UPDATE invoices SET net_pence = 1, total_pence = 1 + vat_pence",
                      "UPDATE invoices SET state = 'draft', issued_at = NULL, issued_by_id = NULL",
                      "UPDATE invoice_lines SET description = 'changed'",
                      "DELETE FROM invoice_lines",
                      f"INSERT INTO invoice_lines (invoice_id, position, code, description, period, quantity, "  # noqa: S608
                      f"unit_pence, amount_pence) VALUES ({invoice_id}, 9, 'x', 'x', '2026-01', 1, 1, 1)"):
        with world() as s, pytest.raises((DBAPIError, IntegrityError)):
            s.execute(text(statement))
            s.commit()
    with unit_of_work(world) as s, pytest.raises(PermissionDenied):
        invoice = s.get(Invoice, invoice_id)
        assert invoice is not None
        invoices.credit_note(s, f.user(s, "researcher"), invoice, 100, "no", f.TODAY)
    with unit_of_work(world) as s:
        invoice = s.get(Invoice, invoice_id)
        assert invoice is not None
        with pytest.raises(ValidationError):
            invoices.credit_note(s, f.user(s, "finance"), invoice, invoice.net_pence + 1, "too much", f.TODAY)
        note = invoices.credit_note(s, f.user(s, "finance"), invoice, 10000, "Linkage was not needed", f.TODAY)
        assert note.state == "issued" and note.vat_pence == 2000 and note.total_pence == 12000
        invoices.record_payment(s, f.user(s, "finance"), invoice, "BACS 4471")
    with world() as s:
        invoice = s.get(Invoice, invoice_id)
        assert invoice is not None and invoice.state == "paid"
        expected = invoice.total_pence - 12000
        assert invoices.charged_by_project(s) == {project_id: expected}
        lead = f.user(s, "researcher")
        st = invoices.statement(s, lead, project_of(s, project_id))
        assert st.charged_pence == expected and [i.kind for i in st.invoices] == ["invoice", "credit_note"]
        row = next(r for r in register.rows(s, f.catalogue()) if r["Project ID"] == project_of(s, project_id).reference)
        whole, pennies = divmod(expected, 100)
        assert row["Invoiced to Date"] == f"£{whole:,}.{pennies:02d}"
    with unit_of_work(world) as s, pytest.raises(InvalidTransition):
        invoice = s.get(Invoice, invoice_id)
        assert invoice is not None
        invoices.void(s, f.user(s, "finance"), invoice, "paid is final")


def test_voiding_a_draft_releases_its_usage_to_the_next_run(world: sessionmaker[Session]) -> None:
    f.approved_project(world)
    first = run(world).created[0].id
    with unit_of_work(world) as s:
        invoice = s.get(Invoice, first)
        assert invoice is not None
        with pytest.raises(ValidationError):
            invoices.void(s, f.user(s, "finance"), invoice, "  ")
        invoices.void(s, f.user(s, "finance"), invoice, "Wrong organisation on the draft")
    second = run(world).created
    assert len(second) == 1 and second[0].id != first
    with world() as s:
        assert s.get(Invoice, second[0].id).net_pence == s.get(Invoice, first).net_pence  # type: ignore[union-attr]
        researcher = f.user(s, "researcher")
        drafts = [i for i in invoices.statement(s, researcher, project_of(s, second[0].project_id)).invoices]
        assert drafts == []  # researchers never see drafts (nor voided drafts' usage twice)


def test_budget_cap_warns_once_refuses_at_100_and_lets_through_after_a_raise(world: sessionmaker[Session]) -> None:
    project_id = f.approved_project(world)
    with world() as s:
        spent = budget.budget_status(s, project_of(s, project_id)).spent_pence
        assert spent == (143100 + 97600 + 43400) * 12 // 10  # the one-off fees with VAT, accrued before invoicing
        budget.check_budget(s, project_of(s, project_id), "workspace")  # no cap: allowed
    with unit_of_work(world) as s, pytest.raises(PermissionDenied):
        budget.set_budget(s, f.user(s, "researcher"), project_of(s, project_id), spent * 2, "mine")
    with unit_of_work(world) as s:
        # 85% used: warned, not refused
        budget.set_budget(s, f.user(s, "finance"), project_of(s, project_id), spent * 100 // 85, "PO 1")
    with world() as s:
        status = budget.budget_status(s, project_of(s, project_id))
        assert status.state == "warning" and status.percent == 85
        budget.check_budget(s, project_of(s, project_id), "workspace")
    with unit_of_work(world) as s:  # two seat-months more (£566.40 each with VAT): past 100%
        for name in ("researcher", "researcher2"):
            metering.record_meter_event(s, project_of(s, project_id), "seat_month", 1, f"seat:cap:{name}",
                                        f.user(s, name))
    with world() as s:
        with pytest.raises(budget.BudgetExhausted, match="until finance raises the cap") as refused:
            budget.check_budget(s, project_of(s, project_id), "workspace")
        assert refused.value.status_code == 409 and isinstance(refused.value, Conflict)
        with pytest.raises(budget.BudgetExhausted, match="output checks"):
            budget.check_budget(s, project_of(s, project_id), "output_check")
        warnings = s.scalars(select(OutboxMessage).where(OutboxMessage.dedupe_key.like("budget-warning:%"))).all()
        recipients = sorted(m.payload["to"] for m in warnings)
        assert recipients == ["finance@demo.londonsde.invalid", "researcher@demo.londonsde.invalid"]
        assert s.scalars(select(OutboxMessage).where(OutboxMessage.dedupe_key.like("budget-exhausted:%"))).all()
    with unit_of_work(world) as s:
        budget.set_budget(s, f.user(s, "finance"), project_of(s, project_id), spent * 10, "PO 2 raises the cap")
    with world() as s:
        budget.check_budget(s, project_of(s, project_id), "workspace")
        assert budget.budget_status(s, project_of(s, project_id)).state == "ok"


def test_closed_workspace_sessions_become_compute_readings_once(world: sessionmaker[Session]) -> None:
    project_id = f.approved_project(world)
    start = NOW - dt.timedelta(hours=3)
    with unit_of_work(world) as s:
        person = f.user(s, "researcher")
        s.add_all([WorkspaceSession(project_id=project_id, user_id=person.id, server_name="p", tier="small",
                                    started_at=start, stopped_at=start + dt.timedelta(minutes=90, seconds=1),
                                    stop_reason="user"),
                   WorkspaceSession(project_id=project_id, user_id=person.id, server_name="p", tier="small",
                                    started_at=start)])  # still running: not metered yet
    for expected in (1, 0):
        with unit_of_work(world) as s:
            assert metering.meter_compute_sessions(s) == expected
    with world() as s:
        event = s.scalars(select(MeterEvent).where(MeterEvent.kind == "compute")).one()
        assert event.quantity == 91 and event.unit == "minute"


def test_daily_job_meters_seats_and_invoices_the_previous_month_once(world: sessionmaker[Session]) -> None:
    from gateway.charging.jobs import daily_charging

    project_id = f.approved_project(world)
    month = invoices.previous_month(NOW.date())
    with unit_of_work(world) as s:
        s.execute(text("UPDATE meter_events SET period = :m"), {"m": month})
    for _ in range(2):
        with unit_of_work(world) as s:
            daily_charging(s, NOW.date())
    with world() as s:
        assert s.scalar(select(func.count()).select_from(Invoice).where(Invoice.period == month)) == 1
        seats = s.scalars(select(MeterEvent).where(MeterEvent.kind == "seat_month")).all()
        assert [(e.project_id, e.period) for e in seats] == [(project_id, THIS_MONTH)]  # the lead, once


def test_invoice_documents(world: sessionmaker[Session]) -> None:
    from gateway.charging.documents import invoice_csv, invoice_pdf

    project_id = f.approved_project(world)
    invoice_id = run(world).created[0].id
    with world() as s:
        invoice, project = s.get(Invoice, invoice_id), project_of(s, project_id)
        assert invoice is not None
        pdf = invoice_pdf(invoice, project)
        assert pdf.startswith(b"%PDF") and b"%%EOF" in pdf[-10:]
        assert project.reference.encode() in pdf
        csv_text = invoice_csv(invoice, project)
        assert project.reference in csv_text and "1431.00" in csv_text and "Total" in csv_text
        assert s.scalar(select(func.count()).select_from(InvoiceLine)) == 3


def test_an_invoice_past_two_to_the_31_pence_is_stored_whole(world: sessionmaker[Session]) -> None:
    """A month of heavy metered use can total more than 2**31 pence (about £21m): money columns are 64-bit."""
    project_id = f.approved_project(world)
    with unit_of_work(world) as s:
        metering.record_meter_event(s, project_of(s, project_id), "output_check", 40_000_000, "checks:huge",
                                    f.user(s, "researcher"))
    [invoice_id] = [i.id for i in run(world).created]
    with world() as s:
        invoice = s.get(Invoice, invoice_id)
        assert invoice is not None and invoice.net_pence > 2**31
        assert invoice.total_pence == invoice.net_pence + invoice.vat_pence
        assert max(line.amount_pence for line in invoice.lines) > 2**31


@postgres_only  # on SQLite a writer holds the whole database from its first statement: no interleaving
def test_a_void_read_before_the_payment_does_not_void_a_paid_invoice(world: sessionmaker[Session]) -> None:
    """Two finance tabs: one records the payment, the other, read while the invoice was issued, voids it after. The
    void is judged on the invoice as committed (paid is final): refused, and the payment stands."""
    f.approved_project(world)
    invoice_id = run(world).created[0].id
    with unit_of_work(world) as s:
        invoice = s.get(Invoice, invoice_id)
        assert invoice is not None
        invoices.issue(s, f.user(s, "finance"), invoice, f.TODAY)
    with late_session(world) as late:
        stale = late.get(Invoice, invoice_id)
        assert stale is not None and stale.state == "issued"
        f.user(late, "finance")
        with unit_of_work(world) as s:
            invoice = s.get(Invoice, invoice_id)
            assert invoice is not None
            invoices.record_payment(s, f.user(s, "finance"), invoice, "BACS 5521")
        refused_on(late, InvalidTransition, lambda: invoices.void(late, f.user(late, "finance"), stale,
                                                                  "raised in error"), match="is paid")
    with world() as s:
        invoice = s.get(Invoice, invoice_id)
        assert invoice is not None and (invoice.state, invoice.payment_reference) == ("paid", "BACS 5521")
