"""Migration 0023 recovers, from the audit log, who left a project's team before former members were kept."""

from __future__ import annotations

from alembic import command
from sqlalchemy import select

from gateway.db import make_engine, make_session_factory, unit_of_work
from gateway.migrate import alembic_config, upgrade
from gateway.models import AuditEvent
from projects import applications, dac
from projects.models import Application, Project, ProjectFormerMember
from tests.integration.test_outputs import remove_from_team
from tests.support import factories as f


def test_0023_recovers_the_members_removed_before_it_from_the_audit_log(scratch_url: str) -> None:
    engine, factory = f.migrated_with_people(scratch_url, ("researcher", "researcher2"))
    app_id = f.draft(factory)
    with unit_of_work(factory) as s:  # researcher2 on the first team (project.created names usernames)
        applications.add_member(s, f.user(s, "researcher"), s.get(Application, app_id), f.user(s, "researcher2"),
                                "analyst")
    f.submit(factory, app_id)
    f.review_round(factory, app_id, {"dac1": "approve", "dac2": "approve", "laymember": "approve"})
    with unit_of_work(factory) as s:
        dac.decide(s, f.user(s, "dacchair"), s.get(Application, app_id), f.DAC, outcome="approved",
                   conditions="", message="", access_end_date=f.TODAY.replace(year=f.TODAY.year + 1), today=f.TODAY)
        project_id = s.scalars(select(Project.id).where(Project.application_id == app_id)).one()
    remove_from_team(factory, project_id, "researcher2")  # project.amended names the team left, by user id
    with factory() as s:
        kept = [(r.project_id, r.user_id, r.left_at, r.reason) for r in s.scalars(select(ProjectFormerMember))]
        created = s.scalars(select(AuditEvent).where(AuditEvent.action == "project.created")).one().occurred_at
        researcher2 = f.user(s, "researcher2").id
    engine.dispose()
    assert [k[:2] for k in kept] == [(project_id, researcher2)]

    # back to 0022 (before former members were kept), then forward again: the row comes back from the audit log
    command.downgrade(alembic_config(scratch_url), "0022")
    upgrade(scratch_url)
    engine = make_engine(scratch_url)
    with make_session_factory(engine)() as s:
        amended = s.scalars(select(AuditEvent).where(AuditEvent.action == "project.amended")).one()
        [row] = s.scalars(select(ProjectFormerMember)).all()
        assert (row.project_id, row.user_id) == (project_id, researcher2)
        assert (row.joined_at, row.left_at) == (created, amended.occurred_at)
        assert abs((row.left_at - kept[0][2]).total_seconds()) < 5
        assert row.reason == kept[0][3] + " (recovered from the audit log)"
    engine.dispose()
