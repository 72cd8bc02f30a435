"""What the fewer statements of the project, application and output pages rest on: facts read once per request must
still be right (the current agreement, a memo forgotten after a write, a tariff kept per process, the workspace
button read from the traffic rows)."""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

from gateway import demo
from gateway.charging import budget, tariff
from gateway.charging.models import Invoice, TariffVersion
from gateway.charging.tariff import load_tariff, record_version
from gateway.config import Settings
from gateway.db import unit_of_work, utcnow
from gateway.workspaces.entitlement import workspace_id
from gateway.workspaces.models import WorkspaceSession
from projects import agreements
from projects.models import AgreementAcceptance, Project, ProjectMember
from tests.conftest import sign_in_session
from tests.support import factories as f


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
    with unit_of_work(session_factory) as s:
        demo.seed(s, settings)
    with unit_of_work(session_factory) as s:
        project = s.scalars(select(Project).order_by(Project.id)).first()
        assert project is not None
        before = budget.project_invoices(s, project)
        version = record_version(s, load_tariff())
        s.add(Invoice(project_id=project.id, period="2026-01", currency="GBP", tariff_version_id=version.id,
                      org_type="academic", vat_basis_points=0, created_by="test"))
        s.flush()
        after = budget.project_invoices(s, project)
        assert len(after) == len(before) + 1
        assert after[-1].period == "2026-01"


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
    with unit_of_work(session_factory) as s:
        demo.seed(s, settings)
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
