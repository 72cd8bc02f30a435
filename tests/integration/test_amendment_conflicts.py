"""An amendment is judged by people with no stake in the project it amends. Whoever is on the project's team now
(including someone the amendment itself takes off it) and whoever was ever on it is recused from the amendment, as
the applying team is: they cannot be assigned, vote, see the votes, follow the count or decide, their votes do not
count towards the quorum, and their home page does not count the amendment as waiting for them; on every route (the
service, the web page, the API).

The committee member here, dac2, is also an accredited researcher (one account may hold both roles) and the chair's
deputy (dac_chair too), so one person exercises every path a recusal is judged on.
"""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.db import unit_of_work
from gateway.errors import PermissionDenied, ValidationError
from gateway.home import waiting_for
from gateway.identity import accounts, tokens
from projects import applications, dac
from projects.models import Application, Project, ProjectFormerMember, Review, ReviewAssignment
from tests.conftest import sign_in_session
from tests.support import factories as f

ON_TEAM = "is on the team of the project it amends"
WAS_ON_TEAM = "was on the team of the project it amends"


@pytest.fixture
def world(session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> sessionmaker[Session]:
    with unit_of_work(session_factory) as s:
        f.accredit(s, "researcher")
        dac2 = f.user(s, "dac2")
        accounts.set_roles(s, f.user(s, "admin"), dac2, [*dac2.roles, "researcher", "dac_chair"],
                           "Deputy chair who also does research.")
        f.accredit(s, "dac2")
    return session_factory


def amend(world: sessionmaker[Session], project_id: int, summary: str, add: tuple[str, ...] = (),
          remove: tuple[str, ...] = ()) -> int:
    """The lead's amendment, with these changes to the team, submitted to the committee."""
    with unit_of_work(world) as s:
        lead = f.user(s, "researcher")
        amendment = applications.start_amendment(s, lead, s.get(Project, project_id))
        for name in add:
            applications.add_member(s, lead, amendment, f.user(s, name), "analyst")
        for name in remove:
            applications.remove_member(s, lead, amendment, f.user(s, name).id)
        applications.update_draft(s, lead, amendment, {"amendment_summary": summary})
        amendment_id = amendment.id
    f.submit(world, amendment_id)
    return amendment_id


def approve(world: sessionmaker[Session], amendment_id: int) -> None:
    f.review_round(world, amendment_id, {"laymember": "approve"})
    with unit_of_work(world) as s:
        dac.decide(s, f.user(s, "dacchair"), s.get(Application, amendment_id), f.DAC, outcome="approved",
                   conditions="", message="", access_end_date=None, today=f.TODAY)


@pytest.fixture
def on_team(world: sessionmaker[Session]) -> tuple[int, int]:
    """dac2 joined the project's team by an approved amendment; a second amendment, under review now, takes them
    off it again (so they are not on the amendment's own team): (project id, amendment id)."""
    project_id = f.approved_project(world)
    approve(world, amend(world, project_id, "dac2 joins the team.", add=("dac2",)))
    return project_id, amend(world, project_id, "dac2 leaves the team.", remove=("dac2",))


def test_a_project_member_the_amendment_takes_off_the_team_cannot_be_assigned_or_assign(
        world: sessionmaker[Session], on_team: tuple[int, int]) -> None:
    _, amendment_id = on_team
    with world() as s:
        amendment = s.get(Application, amendment_id)
        assert amendment is not None and not applications.is_team_member(f.user(s, "dac2"), amendment)
        assert dac.automatic_conflict(f.user(s, "dac2"), amendment) == ON_TEAM
        assert dac.is_recused(f.user(s, "dac2"), amendment)
        shown = {u.username: reason for u, reason in dac.reviewers_available(s, amendment)}
        assert shown["dac2"] == ON_TEAM and shown["dac1"] is None
    with pytest.raises(ValidationError) as refused, unit_of_work(world) as s:
        dac.assign_reviewers(s, f.user(s, "dacchair"), s.get(Application, amendment_id), [f.user(s, "dac2")])
    assert ON_TEAM in refused.value.field_errors["reviewers"][0]
    with pytest.raises(PermissionDenied, match="recused"), unit_of_work(world) as s:  # as the deputy chair
        dac.assign_reviewers(s, f.user(s, "dac2"), s.get(Application, amendment_id), [f.user(s, "dac1")])
    with world() as s:
        assert not s.get(Application, amendment_id).assignments  # type: ignore[union-attr]


def test_a_project_member_cannot_vote_count_or_decide_on_the_amendment(world: sessionmaker[Session],
                                                                       on_team: tuple[int, int]) -> None:
    """An assignment made before this rule existed (an upgrade keeps the rows) gives them no vote either."""
    _, amendment_id = on_team
    f.review_round(world, amendment_id, {"laymember": "approve"})
    with unit_of_work(world) as s:
        s.add(ReviewAssignment(application_id=amendment_id, reviewer_id=f.user(s, "dac2").id,
                               assigned_by_id=f.user(s, "dacchair").id))
    with unit_of_work(world) as s:
        dac.declare_conflict(s, f.user(s, "dac2"), s.get(Application, amendment_id), False, "")
    with pytest.raises(PermissionDenied, match="recused"), unit_of_work(world) as s:
        dac.submit_review(s, f.user(s, "dac2"), s.get(Application, amendment_id), "approve", "", "")
    with world() as s:
        amendment = s.get(Application, amendment_id)
        dac2 = f.user(s, "dac2")
        assert amendment is not None
        assert dac.visible_reviews(dac2, amendment) == [] and not dac.count_visible(dac2, amendment)
        assert not dac.chair_follows_count(dac2, amendment)
        assert {i.kind for i in waiting_for(s, dac2, f.TODAY)}.isdisjoint({"applications_to_decide", "votes_owed"})
        assert {i.kind: i.count for i in waiting_for(s, f.user(s, "dacchair"), f.TODAY)}["applications_to_decide"] == 1
    with pytest.raises(PermissionDenied, match="recused"), unit_of_work(world) as s:
        dac.decide(s, f.user(s, "dac2"), s.get(Application, amendment_id), f.DAC, outcome="approved",
                   conditions="", message="", access_end_date=None, today=f.TODAY)
    with unit_of_work(world) as s:  # a vote of theirs written straight into the table does not count either
        assignment = s.scalars(select(ReviewAssignment).where(ReviewAssignment.application_id == amendment_id,
                                                              ReviewAssignment.reviewer_id == f.user(s, "dac2").id)
                               ).one()
        s.add(Review(assignment_id=assignment.id, round=1, vote="reject", comment_private="Keep me on."))
    with world() as s:
        amendment = s.get(Application, amendment_id)
        assert amendment is not None and amendment.state == "under_review"
        assert dac.quorum(amendment, f.DAC).votes == 1


def test_a_former_member_is_recused_from_every_later_amendment(world: sessionmaker[Session],
                                                              on_team: tuple[int, int]) -> None:
    project_id, leaving = on_team
    approve(world, leaving)
    later = amend(world, project_id, "A longer follow-up.")
    with world() as s:
        project = s.get(Project, project_id)
        assert project is not None
        assert [fm.user_id for fm in project.former_members] == [f.user(s, "dac2").id]
        amendment = s.get(Application, later)
        assert amendment is not None
        assert dac.automatic_conflict(f.user(s, "dac2"), amendment) == WAS_ON_TEAM
    with pytest.raises(ValidationError) as refused, unit_of_work(world) as s:
        dac.assign_reviewers(s, f.user(s, "dacchair"), s.get(Application, later), [f.user(s, "dac2")])
    assert WAS_ON_TEAM in refused.value.field_errors["reviewers"][0]
    f.review_round(world, later, {"laymember": "approve"})
    with pytest.raises(PermissionDenied, match="recused"), unit_of_work(world) as s:
        dac.decide(s, f.user(s, "dac2"), s.get(Application, later), f.DAC, outcome="approved",
                   conditions="", message="", access_end_date=None, today=f.TODAY)


def test_the_page_and_the_api_say_recused(client: FlaskClient, world: sessionmaker[Session],
                                          on_team: tuple[int, int]) -> None:
    _, amendment_id = on_team
    f.review_round(world, amendment_id, {"laymember": "approve"})
    sign_in_session(client, world, "dac2")
    page = client.get(f"/applications/{amendment_id}").get_data(as_text=True)
    assert 'data-testid="recused"' in page and ON_TEAM in page
    assert 'data-testid="quorum"' not in page
    with unit_of_work(world) as s:
        _, plain = tokens.create_token(s, "test", f.user(s, "dac2"), "recusal test", 30)
    headers = {"Authorization": f"Bearer {plain}"}
    reviews = client.get(f"/api/v1/applications/{amendment_id}/reviews", headers=headers)
    assert reviews.status_code == 200 and reviews.json["recused"] is True and reviews.json["reviews"] == []
    decided = client.post(f"/api/v1/applications/{amendment_id}/decision", headers=headers,
                          json={"outcome": "approved", "conditions": "", "message": ""})
    assert decided.status_code == 403, decided.json
    with world() as s:
        assert s.get(Application, amendment_id).state == "under_review"  # type: ignore[union-attr]
        assert not s.scalars(select(Review).join(ReviewAssignment).where(
            ReviewAssignment.application_id == amendment_id, ReviewAssignment.reviewer_id == f.user(s, "dac2").id)
                             ).all()
        assert s.scalars(select(ProjectFormerMember)).all() == []


def test_the_api_neither_assigns_them_nor_takes_their_vote(client: FlaskClient, world: sessionmaker[Session],
                                                          on_team: tuple[int, int]) -> None:
    """The API routes call the same services: the chair cannot assign a member of the project's team, and such a
    member's vote (on an assignment kept from before this rule) is refused with 403, not counted."""
    _, amendment_id = on_team
    with unit_of_work(world) as s:
        dac2_id = f.user(s, "dac2").id
        _, chair = tokens.create_token(s, "test", f.user(s, "dacchair"), "recusal test", 30)
        _, member = tokens.create_token(s, "test", f.user(s, "dac2"), "recusal test", 30)
    assigned = client.post(f"/api/v1/applications/{amendment_id}/reviewers",
                           headers={"Authorization": f"Bearer {chair}"}, json={"reviewer_ids": [dac2_id]})
    assert assigned.status_code == 422 and ON_TEAM in str(assigned.json), assigned.json
    f.review_round(world, amendment_id, {"laymember": "approve"})
    with unit_of_work(world) as s:
        s.add(ReviewAssignment(application_id=amendment_id, reviewer_id=dac2_id,
                               assigned_by_id=f.user(s, "dacchair").id))
    voted = client.post(f"/api/v1/applications/{amendment_id}/reviews", headers={"Authorization": f"Bearer {member}"},
                        json={"vote": "reject", "comment_private": "Keep me on the team."})
    assert voted.status_code == 403, voted.json
    with world() as s:
        amendment = s.get(Application, amendment_id)
        assert amendment is not None and dac.quorum(amendment, f.DAC).votes == 1
