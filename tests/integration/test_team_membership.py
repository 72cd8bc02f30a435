"""Leaving a project's team ends its workspace (and so its team folder) in the same transaction; a person who is
not on a project's team cannot start its workspace, whatever other project they are on."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.config import Settings
from gateway.db import unit_of_work
from gateway.models import AuditEvent
from gateway.outbox import OutboxMessage
from gateway.workspaces.models import WorkspaceSession
from gateway.workspaces.service import NotEntitled, hub_username, open_workspace
from projects import applications, dac
from projects.models import Application, Project
from tests.support import factories as f


@pytest.fixture
def world(session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> sessionmaker[Session]:
    with unit_of_work(session_factory) as s:
        for name in ("researcher", "researcher2"):
            f.accredit(s, name)
    return session_factory


def _amend_team(world: sessionmaker[Session], project_id: int, add: str | None, remove: str | None) -> None:
    with unit_of_work(world) as s:
        lead = f.user(s, "researcher")
        amendment = applications.start_amendment(s, lead, s.get(Project, project_id))
        if add:
            applications.add_member(s, lead, amendment, f.user(s, add), "analyst")
        if remove:
            applications.remove_member(s, lead, amendment, f.user(s, remove).id)
        applications.update_draft(s, lead, amendment, {"amendment_summary": "Team change."})
        amendment_id = amendment.id
    f.submit(world, amendment_id)
    f.review_round(world, amendment_id, {"dac1": "approve"})
    with unit_of_work(world) as s:
        dac.decide(s, f.user(s, "dacchair"), s.get(Application, amendment_id), f.DAC, outcome="approved",
                   conditions="", message="", access_end_date=None, today=f.TODAY)


def test_a_removed_member_is_stopped_at_once_and_cannot_start_again(world: sessionmaker[Session],
                                                                    settings: Settings) -> None:
    project_id = f.approved_project(world)
    other_id = f.approved_project(world, applicant="researcher2", title="Someone else's study")
    _amend_team(world, project_id, add="researcher2", remove=None)
    with unit_of_work(world) as s:
        for name in ("researcher", "researcher2"):  # both have a server running (as the hub would report)
            s.add(WorkspaceSession(project_id=project_id, user_id=f.user(s, name).id, server_name=f"p{project_id}",
                                   hub_user=hub_username(f.user(s, name)), tier="small"))

    _amend_team(world, project_id, add=None, remove="researcher2")

    with world() as s:
        leaver, stayer = f.user(s, "researcher2"), f.user(s, "researcher")
        sessions = {ws.user_id: ws for ws in s.scalars(select(WorkspaceSession))}
        assert sessions[leaver.id].stopped_at is not None
        assert "removed from the project team" in (sessions[leaver.id].stop_reason or "")
        assert sessions[stayer.id].stopped_at is None
        stops = [m.payload for m in s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "workspace.stop"))]
        assert stops == [{"username": hub_username(leaver), "server": f"p{project_id}"}]
        stopped = s.scalars(select(AuditEvent).where(AuditEvent.action == "workspace.stopped")).one()
        assert stopped.details["user"] == "researcher2"
        leaver_id, stayer_id = leaver.id, stayer.id
    # Their next start is refused by the gateway (the hub never hears of it), and so is a member of one project
    # starting another's workspace.
    with pytest.raises(NotEntitled, match="not on this project's team"):
        open_workspace(world, settings, leaver_id, project_id)
    with pytest.raises(NotEntitled, match="not on this project's team"):
        open_workspace(world, settings, stayer_id, other_id)


def test_a_removed_member_is_remembered_as_a_former_member(world: sessionmaker[Session]) -> None:
    """Their member row goes; a former-member row (when they joined and left, and why) is written in the same
    transaction as the amendment's project.amended event, which names who left. Leaving twice leaves two rows."""
    project_id = f.approved_project(world)
    _amend_team(world, project_id, add="researcher2", remove=None)
    with world() as s:
        project = s.get(Project, project_id)
        assert project is not None and project.former_members == []
        joined = next(m.added_at for m in project.members if m.user.username == "researcher2")

    _amend_team(world, project_id, add=None, remove="researcher2")

    with world() as s:
        project, leaver = s.get(Project, project_id), f.user(s, "researcher2")
        assert project is not None
        assert {m.user_id for m in project.members} == {project.lead_id}
        [former] = project.former_members
        amended = s.scalars(select(AuditEvent).where(AuditEvent.action == "project.amended")
                            .order_by(AuditEvent.seq)).all()[-1]
        assert (former.user_id, former.joined_at) == (leaver.id, joined)
        assert former.left_at >= joined and amended.details["amendment"] in former.reason
        assert amended.details["removed"] == [str(leaver.id)]
        assert amended.details["members"] == [str(project.lead_id)]

    _amend_team(world, project_id, add="researcher2", remove=None)
    _amend_team(world, project_id, add=None, remove="researcher2")
    with world() as s:
        project = s.get(Project, project_id)
        assert project is not None
        assert [r.user_id for r in project.former_members] == [f.user(s, "researcher2").id] * 2
