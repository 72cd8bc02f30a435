"""What the fewer statements of the project, application and output pages rest on: facts read once per request must
still be right (the current agreement, a memo forgotten after a write, a tariff kept per process, the workspace
button read from the traffic rows)."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session, sessionmaker

from gateway import demo
from gateway.charging import budget, quotes, tariff
from gateway.charging.models import FrozenQuote, Invoice, MeterEvent, TariffVersion
from gateway.charging.tariff import load_tariff, record_version
from gateway.config import Settings
from gateway.db import remembered, unit_of_work, utcnow
from gateway.models import User
from gateway.permissions import Role
from gateway.workspaces.entitlement import workspace_id
from gateway.workspaces.models import WorkspaceSession
from projects import agreements
from projects.models import AgreementAcceptance, Application, Project, ProjectMember
from projects.money import MAX_PENCE
from tests.conftest import sign_in_session
from tests.support import factories as f
from tests.support.databases import postgres_only


def _seed(factory: sessionmaker[Session], settings: Settings) -> None:
    with unit_of_work(factory) as s:
        demo.seed(s, settings)


def _first_project(s: Session) -> Project:
    project = s.scalars(select(Project).order_by(Project.id)).first()
    assert project is not None
    return project


def test_current_and_accepted_answers_for_the_current_version_only(session_factory: sessionmaker[Session],
                                                                    demo_users: dict[str, int]) -> None:
    with unit_of_work(session_factory) as s:
        person = f.user(s, "researcher")
        assert agreements.current_and_accepted(s, person) == (None, False)
        first = agreements.publish(s, "system", agreements.DEFAULT_TEXT)
        assert agreements.current_and_accepted(s, person) == (first, False)
        agreements.accept(s, person, first.version)
        assert agreements.current_and_accepted(s, person) == (first, True)
        assert agreements.current_and_accepted(s, f.user(s, "researcher2")) == (first, False)
        second = agreements.publish(s, "system", agreements.DEFAULT_TEXT + "6. A new term.\n")
        assert agreements.current_and_accepted(s, person) == (second, False)  # accepting an old one is not enough


def test_project_invoices_are_read_again_after_a_write(session_factory: sessionmaker[Session],
                                                       settings: Settings) -> None:
    _seed(session_factory, settings)
    with unit_of_work(session_factory) as s:
        project = _first_project(s)
        before = budget.project_invoices(s, project)
        version = record_version(s, load_tariff())
        s.add(Invoice(project_id=project.id, period="2026-01", currency="GBP", tariff_version_id=version.id,
                      org_type="academic", vat_basis_points=0, created_by="test"))
        s.flush()
        after = budget.project_invoices(s, project)
        assert len(after) == len(before) + 1
        assert after[-1].period == "2026-01"


def test_a_remembered_read_is_forgotten_after_any_write(session_factory: sessionmaker[Session],
                                                        demo_users: dict[str, int]) -> None:
    """A pending change, a flush, an UPDATE statement and the end of the transaction each forget what was read."""
    reads: list[int] = []

    def read() -> int:
        reads.append(len(reads) + 1)
        return reads[-1]

    with unit_of_work(session_factory) as s:
        assert remembered(s, "k", read) == 1
        assert remembered(s, "k", read) == 1  # kept: nothing written
        person = f.user(s, "researcher")
        person.display_name = "Renamed"  # a pending change: read again, not kept past it
        assert remembered(s, "k", read) == 2
        s.flush()
        assert remembered(s, "k", read) == 3
        assert remembered(s, "k", read) == 3
        s.execute(update(User).where(User.id == -1).values(display_name="nobody"))
        assert remembered(s, "k", read) == 4
    with session_factory() as s:
        assert remembered(s, "k", read) == 5  # another transaction: read again


def test_the_price_basis_and_quotes_are_read_again_after_a_quote_is_frozen(
        session_factory: sessionmaker[Session], settings: Settings) -> None:
    _seed(session_factory, settings)
    with unit_of_work(session_factory) as s:
        project = next(p for p in s.scalars(select(Project).order_by(Project.id)) if quotes.project_quotes(s, p))
        before = quotes.project_quotes(s, project)
        assert quotes.price_basis(s, project) is before[-1]
        latest = before[-1]
        unquoted = s.scalar(select(Application.id).where(Application.id.not_in(select(FrozenQuote.application_id))))
        assert unquoted is not None  # a quote names one application; any not yet quoted will do here
        s.add(FrozenQuote(project_id=project.id, application_id=unquoted,
                          tariff_version_id=latest.tariff_version_id, org_type="commercial",
                          multiplier_basis_points=latest.multiplier_basis_points,
                          vat_basis_points=latest.vat_basis_points, currency=latest.currency, net_pence=0,
                          vat_pence=0, total_pence=0, frozen_by_id=latest.frozen_by_id))
        s.flush()
        after = quotes.project_quotes(s, project)
        assert len(after) == len(before) + 1
        basis = quotes.price_basis(s, project)
        assert basis is after[-1] and basis.org_type == "commercial"


def test_a_budget_set_in_the_transaction_is_the_one_checked(session_factory: sessionmaker[Session],
                                                            settings: Settings) -> None:
    _seed(session_factory, settings)
    with unit_of_work(session_factory) as s:
        project = _first_project(s)
        finance = next(u for u in s.scalars(select(User)) if Role.FINANCE in u.roles)
        budget.set_budget(s, finance, project, 10_000_000, "first cap")
        assert budget.budget_status(s, project).cap_pence == 10_000_000
        budget.set_budget(s, finance, project, 1, "cut to a penny")
        assert budget.budget_of(s, project) is not None and budget.budget_status(s, project).cap_pence == 1
        with pytest.raises(budget.BudgetExhausted):
            budget.check_budget(s, project, "workspace")


@postgres_only
def test_a_budget_decision_counts_usage_committed_meanwhile(session_factory: sessionmaker[Session],
                                                            settings: Settings) -> None:
    """What a page remembers is not what a decision uses: usage another transaction commits between two checks in
    one transaction is counted by the second (an attack found in review, when check_budget used the page memo)."""
    _seed(session_factory, settings)
    with unit_of_work(session_factory) as s:
        project = _first_project(s)
        finance = next(u for u in s.scalars(select(User)) if Role.FINANCE in u.roles)
        budget.set_budget(s, finance, project, MAX_PENCE, "room to spare")
    with unit_of_work(session_factory) as s:
        project = _first_project(s)
        assert budget.budget_status(s, project).state != "exhausted"  # a page's view, remembered
        budget.check_budget(s, project, "output_check")  # allowed
        with unit_of_work(session_factory) as other:
            now = utcnow()
            other.add(MeterEvent(event_key="test:big-fee", project_id=project.id, user_id=None, kind="fee",
                                 quantity=1, unit="item", period=f"{now.year:04d}-{now.month:02d}", occurred_at=now,
                                 recorded_at=now, description="big fee", amount_pence=2 * MAX_PENCE))
        with pytest.raises(budget.BudgetExhausted):
            budget.check_budget(s, project, "output_check")


@postgres_only
def test_a_budget_decision_prices_usage_on_a_quote_frozen_meanwhile(session_factory: sessionmaker[Session],
                                                                    settings: Settings) -> None:
    """The price basis a decision uses is read afresh too: a page that remembered the project's quotes must not
    let a later check in the same transaction price usage on the basis it saw before a new quote was frozen."""
    _seed(session_factory, settings)
    with unit_of_work(session_factory) as s:
        project = next(p for p in s.scalars(select(Project).order_by(Project.id)) if quotes.project_quotes(s, p))
        project_id, now = project.id, utcnow()
        s.add(MeterEvent(event_key="test:seats", project_id=project.id, user_id=None, kind="seat_month",
                         quantity=50, unit="seat", period=f"{now.year:04d}-{now.month:02d}", occurred_at=now,
                         recorded_at=now, description="seats"))
    with unit_of_work(session_factory) as s:
        project = s.get_one(Project, project_id)
        finance = next(u for u in s.scalars(select(User)) if Role.FINANCE in u.roles)
        cap = budget.spent_pence(s, project, afresh=True) + 1
        budget.set_budget(s, finance, project, cap, "just above what is spent")
    with unit_of_work(session_factory) as s:
        project = s.get_one(Project, project_id)
        assert budget.budget_status(s, project).state != "exhausted"  # a page's view: the quotes remembered
        budget.check_budget(s, project, "workspace")  # allowed
        with unit_of_work(session_factory) as other:  # a dearer quote frozen meanwhile (an amendment approved)
            latest = quotes.project_quotes(other, other.get_one(Project, project_id))[-1]
            unquoted = other.scalar(select(Application.id).where(
                Application.id.not_in(select(FrozenQuote.application_id))))
            assert unquoted is not None
            other.add(FrozenQuote(project_id=project_id, application_id=unquoted,
                                  tariff_version_id=latest.tariff_version_id, org_type=latest.org_type,
                                  multiplier_basis_points=latest.multiplier_basis_points * 10,
                                  vat_basis_points=latest.vat_basis_points, currency=latest.currency, net_pence=0,
                                  vat_pence=0, total_pence=0, frozen_by_id=latest.frozen_by_id))
        with session_factory() as fresh:  # read from scratch, the quote has used the budget up
            assert budget.spent_pence(fresh, fresh.get_one(Project, project_id), afresh=True) > cap
        with pytest.raises(budget.BudgetExhausted):
            budget.check_budget(s, project, "workspace")


def test_a_stored_tariff_is_read_once_per_process(app: Flask, session_factory: sessionmaker[Session]) -> None:
    engine = app.extensions["sde_engine"]
    sent: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda _c, _cur, statement, *_: sent.append(statement))
    with unit_of_work(session_factory) as s:
        version = record_version(s, load_tariff()).id
    tariff._STORED.pop(version, None)
    with session_factory() as s:
        sent.clear()
        first = tariff.stored_tariff(s, version)
        assert any("tariff_versions" in statement for statement in sent)
        sent.clear()
        assert tariff.stored_tariff(s, version) == first
        assert not any("tariff_versions" in statement for statement in sent)


def test_a_version_whose_content_does_not_match_its_id_is_not_kept(session_factory: sessionmaker[Session]) -> None:
    real = load_tariff()
    with unit_of_work(session_factory) as s:
        s.add(TariffVersion(id="forged+000000000000", label=real.label, sha256="0" * 64, content=real.canonical(),
                            first_used_at=utcnow()))
    with session_factory() as s:
        assert tariff.stored_tariff(s, "forged+000000000000") == real
    assert "forged+000000000000" not in tariff._STORED


def test_the_workspace_button_follows_the_persons_own_open_session(app: Flask, settings: Settings,
                                                                   session_factory: sessionmaker[Session]) -> None:
    _seed(session_factory, settings)
    with unit_of_work(session_factory) as s:
        person = f.user(s, "researcher")
        project = s.scalars(select(Project).where(Project.members.any(ProjectMember.user_id == person.id))
                            .order_by(Project.id)).first()
        assert project is not None
        f.accredit(s, "researcher")
        latest = agreements.current(s)
        assert latest is not None
        if s.scalar(select(AgreementAcceptance).where(AgreementAcceptance.user_id == person.id,
                                                      AgreementAcceptance.version == latest.version)) is None:
            agreements.accept(s, person, latest.version)
        project_id, person_id, reference = project.id, person.id, workspace_id(project)
        other = next(m.user_id for m in project.members if m.user_id != person_id) if len(project.members) > 1 \
            else f.user(s, "admin").id
    live = Path(settings.extracts_root) / reference
    (live / "v1").mkdir(parents=True)
    (live / "current").symlink_to(live / "v1")
    client = app.test_client()
    sign_in_session(client, session_factory, "researcher")

    def button() -> str:
        page = client.get(f"/projects/{project_id}").get_data(as_text=True)
        assert "You cannot open a workspace" not in page, page[page.find("workspace-reasons"):][:400]
        return "Return to workspace" if "Return to workspace" in page else "Open workspace"

    assert button() == "Open workspace"
    with unit_of_work(session_factory) as s:  # someone else's open session is not this person's workspace
        s.add(WorkspaceSession(project_id=project_id, user_id=other, server_name="other", tier="standard"))
    assert button() == "Open workspace"
    with unit_of_work(session_factory) as s:
        mine = WorkspaceSession(project_id=project_id, user_id=person_id, server_name="mine", tier="standard")
        s.add(mine)
    assert button() == "Return to workspace"
    with unit_of_work(session_factory) as s:
        for ws in s.scalars(select(WorkspaceSession).where(WorkspaceSession.user_id == person_id)):
            ws.stopped_at, ws.stop_reason = utcnow(), "stopped by the test"
    assert button() == "Open workspace"
