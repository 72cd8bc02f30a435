"""Safe people and safe projects, as a motivated insider tries them: each test here failed on the code before its fix.

- A deactivated account, or one whose researcher role is taken away, kept its running workspace (and could open
  another, holding any other role): the worker's sweep and the entitlement asked only about the project, the team and
  the accreditation.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.config import Settings
from gateway.db import unit_of_work
from gateway.identity import accounts
from gateway.workspaces import service as workspaces
from gateway.workspaces.entitlement import entitlement
from gateway.workspaces.models import WorkspaceSession
from projects.models import Project
from tests.support import factories as f


@pytest.fixture
def world(session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> sessionmaker[Session]:
    with unit_of_work(session_factory) as s:
        for name in ("researcher", "researcher2"):
            f.accredit(s, name)
    return session_factory


def _running_workspace(world: sessionmaker[Session], project_id: int, username: str) -> int:
    with unit_of_work(world) as s:
        person = f.user(s, username)
        ws = WorkspaceSession(project_id=project_id, user_id=person.id, server_name=f"p{project_id}",
                              hub_user=workspaces.hub_username(person), tier="small")
        s.add(ws)
        s.flush()
        return ws.id


@pytest.mark.parametrize("change", ["deactivated", "researcher role removed"])
def test_an_account_cut_off_by_an_administrator_loses_its_running_workspace(
        world: sessionmaker[Session], settings: Settings, change: str) -> None:
    project_id = f.approved_project(world)
    ws_id = _running_workspace(world, project_id, "researcher")
    with unit_of_work(world) as s:
        admin, person = f.user(s, "admin"), f.user(s, "researcher")
        if change == "deactivated":
            accounts.set_active(s, admin, person, False)
        else:  # still on the team and accredited, but no longer a researcher (an auditor now)
            accounts.set_roles(s, admin, person, ["auditor"], reason="moved to the audit team")

    with unit_of_work(world) as s:
        workspaces.sweep(s, f.TODAY)  # the worker's pass, every 30 seconds
    with world() as s:
        ws = s.get(WorkspaceSession, ws_id)
        assert ws is not None and ws.stopped_at is not None, f"the workspace of an account {change} kept running"
        decision = entitlement(s, f.user(s, "researcher"), s.get(Project, project_id), settings.extracts_root)
        assert not decision.ok
        assert any("account" in r or "researcher" in r for r in decision.reasons), decision.reasons
        # the team's other members are untouched
        assert not list(s.scalars(select(WorkspaceSession).where(WorkspaceSession.stopped_at.is_(None),
                                                                 WorkspaceSession.id != ws_id)))
