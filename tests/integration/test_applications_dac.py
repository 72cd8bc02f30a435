"""Applications and the DAC against a real database: validation, quorum, conflicts, blinding, transitions."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway import audit
from gateway.db import unit_of_work
from gateway.errors import Conflict, DomainError, InvalidTransition, PermissionDenied, ValidationError
from gateway.models import AuditEvent
from gateway.trust import register
from projects import applications, dac, lifecycle
from projects.accreditation_rules import AccreditationRequired
from projects.models import Application, Project
from projects.workflow import (
    APPLICATION_OWNERS,
    APPLICATION_TRANSITIONS,
    PROJECT_OWNERS,
    PROJECT_TRANSITIONS,
    AppState,
    ProjectState,
)
from tests.support import factories as f
from tests.support.databases import postgres_only
from tests.support.late import late_session, refused_on


@pytest.fixture
def world(session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> sessionmaker[Session]:
    with unit_of_work(session_factory) as s:
        for name in ("researcher", "researcher2"):
            f.accredit(s, name)
    return session_factory


def app_state(factory: sessionmaker[Session], app_id: int) -> str:
    with factory() as s:
        app = s.get(Application, app_id)
        assert app is not None
        return app.state


def test_every_state_has_an_owner_and_is_reachable() -> None:
    assert set(APPLICATION_OWNERS) == set(AppState)
    assert set(PROJECT_OWNERS) == set(ProjectState)
    reachable = {AppState.DRAFT} | {t for (_, t) in APPLICATION_TRANSITIONS}
    assert reachable == set(AppState)
    assert {ProjectState.ACTIVE} | {t for (_, t) in PROJECT_TRANSITIONS} == set(ProjectState)
    for state, owner in APPLICATION_OWNERS.items():
        leaves = any(s == state for (s, _) in APPLICATION_TRANSITIONS)
        assert leaves == (owner != "final"), state


def test_draft_saves_partial_data_and_submit_lists_every_problem(world: sessionmaker[Session]) -> None:
    app_id = f.draft(world, complete=False)
    with unit_of_work(world) as s:
        app = s.get(Application, app_id)
        assert app is not None
        applications.update_draft(s, f.user(s, "researcher"), app, {"lay_summary": "Only this so far"})
    with pytest.raises(ValidationError) as err:
        f.submit(world, app_id)
    fields = err.value.field_errors
    for field in ("technical_summary", "public_benefit", "date_from", "legal_basis_article6", "legal_basis_article9",
                  "common_law_basis", "opt_out_applies", "variables", "intended_outputs"):
        assert field in fields, field
    assert "lay_summary" not in fields
    assert app_state(world, app_id) == "draft"


def test_bad_formats_are_refused_and_nothing_is_saved(world: sessionmaker[Session]) -> None:
    app_id = f.draft(world, complete=False)
    with pytest.raises(ValidationError) as err, unit_of_work(world) as s:
        app = s.get(Application, app_id)
        assert app is not None
        applications.update_draft(s, f.user(s, "researcher"), app,
                                  {"date_from": "31/01/2020", "workspace_size": "huge", "lay_summary": "kept?"})
    assert set(err.value.field_errors) == {"date_from", "workspace_size"}
    with world() as s:
        assert s.get(Application, app_id).lay_summary == ""  # type: ignore[union-attr]


def test_quasi_identifiers_need_justification_and_identifiers_are_refused(world: sessionmaker[Session]) -> None:
    app_id = f.draft(world)
    with unit_of_work(world) as s:
        app = s.get(Application, app_id)
        actor = f.user(s, "researcher")
        with pytest.raises(ValidationError, match="variables"):
            applications.set_variables(s, actor, app, f.catalogue(), [applications.VariableChoice("patients",
                                                                                                 "nhs_number")])
        applications.set_variables(s, actor, app, f.catalogue(), [applications.VariableChoice("patients",
                                                                                             "imd_decile")])
    with pytest.raises(ValidationError) as err:
        f.submit(world, app_id)
    assert any("imd_decile" in m for m in err.value.field_errors["variables"])


def test_expired_accreditation_blocks_starting_adding_and_submitting(world: sessionmaker[Session]) -> None:
    with unit_of_work(world) as s:
        f.accredit(s, "checker1", expiry=f.TODAY - dt.timedelta(days=1))
    app_id = f.draft(world)
    with pytest.raises(AccreditationRequired), unit_of_work(world) as s:
        app = s.get(Application, app_id)
        from gateway.identity.accounts import create_local_user
        expired = create_local_user(s, "test", username="lapsed", display_name="Lapsed Researcher",
                                    password="a-long-password-9", roles=["researcher"])
        f.accredit(s, "lapsed", expiry=f.TODAY - dt.timedelta(days=1))
        applications.add_member(s, f.user(s, "researcher"), app, expired, "analyst")
    # the applicant's own accreditation lapses before submission
    with unit_of_work(world) as s:
        from projects.models import Accreditation
        for acc in s.scalars(select(Accreditation).where(Accreditation.user_id == f.user(s, "researcher").id)):
            acc.expiry_date = f.TODAY - dt.timedelta(days=1)
    with pytest.raises(AccreditationRequired):
        f.submit(world, app_id)
    assert app_state(world, app_id) == "draft"


def test_full_review_and_approval_creates_project_on_register(world: sessionmaker[Session]) -> None:
    project_id = f.approved_project(world)
    with world() as s:
        project = s.get(Project, project_id)
        assert project is not None and project.state == "active"
        assert {m.user.username for m in project.members} == {"researcher"}
        rows = register.rows(s, f.catalogue())
        assert [r["Project ID"] for r in rows] == [project.reference]
        assert rows[0]["National Data Opt-Out Applied"] == "Yes"
        assert audit.verify(s).ok


def test_no_decision_without_quorum_or_without_a_lay_vote(world: sessionmaker[Session]) -> None:
    app_id = f.draft(world)
    f.submit(world, app_id)
    f.review_round(world, app_id, {"dac1": "approve", "dac2": "approve"})
    decide = dict(outcome="approved", conditions="", message="", access_end_date=f.TODAY + dt.timedelta(days=30),
                  today=f.TODAY)
    with pytest.raises(Conflict, match="No quorum"), unit_of_work(world) as s:
        dac.decide(s, f.user(s, "dacchair"), s.get(Application, app_id), f.DAC, **decide)
    # a third non-lay vote is still not enough: the lay vote is missing
    f.review_round(world, app_id, {"dacchair": "approve"})
    with pytest.raises(Conflict, match="lay member"), unit_of_work(world) as s:
        dac.decide(s, f.user(s, "dacchair"), s.get(Application, app_id), f.DAC, **decide)
    assert app_state(world, app_id) == "under_review"
    f.review_round(world, app_id, {"laymember": "approve_with_conditions"})
    with unit_of_work(world) as s:
        dac.decide(s, f.user(s, "dacchair"), s.get(Application, app_id), f.DAC, **decide)
    assert app_state(world, app_id) == "approved"


def test_conflicted_member_is_recused(world: sessionmaker[Session]) -> None:
    app_id = f.draft(world)
    f.submit(world, app_id)
    with unit_of_work(world) as s:
        app = s.get(Application, app_id)
        dac.assign_reviewers(s, f.user(s, "dacchair"), app, [f.user(s, n) for n in ("dac1", "dac2", "laymember")])
        dac.declare_conflict(s, f.user(s, "dac2"), app, True, "I supervise the applicant's PhD student")
    f.review_round(world, app_id, {"dac1": "approve"})
    with world() as s:
        app = s.get(Application, app_id)
        dac2 = f.user(s, "dac2")
        assert dac.is_recused(dac2, app)
        assert dac.visible_reviews(dac2, app) == []
        with pytest.raises(PermissionDenied, match="recused"):
            dac.submit_review(s, dac2, app, "approve", "", "")
        with pytest.raises(Conflict):
            dac.declare_conflict(s, dac2, app, False, "")  # a declared conflict stands


def test_a_conflict_is_declared_while_the_review_is_open_not_after_the_decision(world: sessionmaker[Session]) -> None:
    """A reviewer declaring a conflict after the chair decided would recuse them from the decided round: their vote
    would drop out of the quorum the decision was made on. Declarations are made while the application is under
    review."""
    app_id = f.awaiting_decision(world)
    _chair_decides(world, app_id, "approved", access_end_date=f.TODAY + dt.timedelta(days=365))
    with unit_of_work(world) as s, pytest.raises(InvalidTransition, match="under review"):
        dac.declare_conflict(s, f.user(s, "dac1"), s.get(Application, app_id), True, "I now advise the team.")
    with world() as s:
        app = s.get(Application, app_id)
        assert app is not None and not dac.is_recused(f.user(s, "dac1"), app)


def test_team_members_and_colleagues_are_conflicted_automatically(world: sessionmaker[Session]) -> None:
    with unit_of_work(world) as s:
        org = f.organisation(s, "Imperial College London")
        f.user(s, "researcher").organisation_id = org.id
        f.user(s, "dac1").organisation_id = org.id
    app_id = f.draft(world)
    f.submit(world, app_id)
    with pytest.raises(ValidationError, match="reviewers") as err, unit_of_work(world) as s:
        dac.assign_reviewers(s, f.user(s, "dacchair"), s.get(Application, app_id), [f.user(s, "dac1")])
    assert "works at the applying organisation" in err.value.field_errors["reviewers"][0]


def test_nobody_decides_their_own_application(world: sessionmaker[Session]) -> None:
    with unit_of_work(world) as s:
        from gateway.models import UserRole
        chair = f.user(s, "dacchair")
        chair.role_grants.append(UserRole(role="researcher"))
        f.accredit(s, "dacchair")
    app_id = f.draft(world, applicant="dacchair")
    f.submit(world, app_id, applicant="dacchair")
    with pytest.raises(PermissionDenied, match="applying team"), unit_of_work(world) as s:
        dac.assign_reviewers(s, f.user(s, "dacchair"), s.get(Application, app_id), [f.user(s, "dac1")])


def test_votes_are_blinded_until_the_decision(world: sessionmaker[Session]) -> None:
    app_id = f.draft(world)
    f.submit(world, app_id)
    with unit_of_work(world) as s:
        app = s.get(Application, app_id)
        dac.assign_reviewers(s, f.user(s, "dacchair"), app, [f.user(s, n) for n in ("dac1", "dac2", "laymember")])
    f.review_round(world, app_id, {"dac1": "reject"})
    with world() as s:
        app = s.get(Application, app_id)
        assert dac.visible_reviews(f.user(s, "dac2"), app) == []
        assert len(dac.visible_reviews(f.user(s, "dac1"), app)) == 1
        assert len(dac.visible_reviews(f.user(s, "dacchair"), app)) == 1  # the chair, not reviewing, sees all
    f.review_round(world, app_id, {"dac2": "approve"})
    with world() as s:  # voting shows your own vote only; the others wait for the decision
        assert len(dac.visible_reviews(f.user(s, "dac2"), s.get(Application, app_id))) == 1


def test_changes_requested_then_resubmit_resets_votes_and_keeps_comments(world: sessionmaker[Session]) -> None:
    app_id = f.draft(world)
    f.submit(world, app_id)
    f.review_round(world, app_id, {"dac1": "changes_requested", "dac2": "approve", "laymember": "approve"})
    with unit_of_work(world) as s:
        dac.decide(s, f.user(s, "dacchair"), s.get(Application, app_id), f.DAC, outcome="changes_requested",
                   conditions="", message="Narrow the cohort.", access_end_date=None, today=f.TODAY)
    assert app_state(world, app_id) == "changes_requested"
    with unit_of_work(world) as s:
        app = s.get(Application, app_id)
        applications.update_draft(s, f.user(s, "researcher"), app, {"cohort_description": "Children aged 5-11."})
    f.submit(world, app_id)
    with world() as s:
        app = s.get(Application, app_id)
        assert app.round == 2 and app.state == "submitted"
        assert dac.current_reviews(app) == []
        assert dac.quorum(app, f.DAC).votes == 0
        assert len(dac.visible_reviews(f.user(s, "dacchair"), app)) == 3  # earlier round kept
    f.review_round(world, app_id, {"dac1": "approve", "dac2": "approve", "laymember": "approve"})
    with world() as s:
        assert dac.quorum(s.get(Application, app_id), f.DAC).met


@pytest.mark.parametrize("command", ["submit", "withdraw", "assign", "vote", "decide"])
def test_transitions_not_in_the_table_are_refused_and_change_nothing(world: sessionmaker[Session],
                                                                    command: str) -> None:
    app_id = f.draft(world)
    f.submit(world, app_id)
    with unit_of_work(world) as s:
        app = s.get(Application, app_id)
        applications.withdraw(s, f.user(s, "researcher"), app)
    with world() as s:
        events_before = audit.verify(s).checked
    with pytest.raises(DomainError) as err, unit_of_work(world) as s:
        app = s.get(Application, app_id)
        if command == "submit":
            applications.submit(s, f.user(s, "researcher"), app, f.catalogue(), f.DAC, 1, f.TODAY)
        elif command == "withdraw":
            applications.withdraw(s, f.user(s, "researcher"), app)
        elif command == "assign":
            dac.assign_reviewers(s, f.user(s, "dacchair"), app, [f.user(s, "dac1")])
        elif command == "vote":
            dac.submit_review(s, f.user(s, "dac1"), app, "approve", "", "")
        else:
            dac.decide(s, f.user(s, "dacchair"), app, f.DAC, outcome="approved", conditions="", message="",
                       access_end_date=f.TODAY + dt.timedelta(days=9), today=f.TODAY)
    assert err.value.status_code in (403, 409)
    assert isinstance(err.value, (InvalidTransition, Conflict, PermissionDenied))
    with world() as s:
        assert app_state(world, app_id) == "withdrawn"
        assert audit.verify(s).checked == events_before


def test_project_lifecycle_suspend_reinstate_expire_and_amend(world: sessionmaker[Session]) -> None:
    project_id = f.approved_project(world)
    with unit_of_work(world) as s:
        project, admin = s.get(Project, project_id), f.user(s, "admin")
        with pytest.raises(PermissionDenied):
            lifecycle.suspend(s, f.user(s, "researcher"), project, "no")
        lifecycle.suspend(s, admin, project, "Data breach investigation")
        with pytest.raises(InvalidTransition):
            lifecycle.suspend(s, admin, project, "again")
        lifecycle.reinstate(s, admin, project, "Investigation closed")
    with unit_of_work(world) as s:
        assert lifecycle.expire_due(s, f.TODAY + dt.timedelta(days=400)) == [s.get(Project, project_id).reference]
    # an amendment adds researcher2 and extends the end date: the expired project becomes active again
    with unit_of_work(world) as s:
        project = s.get(Project, project_id)
        amendment = applications.start_amendment(s, f.user(s, "researcher"), project)
        applications.add_member(s, f.user(s, "researcher"), amendment, f.user(s, "researcher2"), "analyst")
        assert amendment.date_to == project.date_to and amendment.lay_summary == project.lay_summary  # pre-filled
        applications.update_draft(s, f.user(s, "researcher"), amendment, {
            "amendment_summary": "Add a second analyst, extend, and a year more of data.",
            "requested_end_date": (f.TODAY + dt.timedelta(days=800)).isoformat(),
            "date_to": (project.date_to + dt.timedelta(days=365)).isoformat(),
            "lay_summary": project.lay_summary + " Now also one more year."})
        amendment_id, old_date_to, old_summary = amendment.id, project.date_to, project.lay_summary
    f.submit(world, amendment_id)
    f.review_round(world, amendment_id, {"dac1": "approve"})  # amendments: shorter review (quorum 1)
    with unit_of_work(world) as s:
        dac.decide(s, f.user(s, "dacchair"), s.get(Application, amendment_id), f.DAC, outcome="approved",
                   conditions="", message="", access_end_date=None, today=f.TODAY + dt.timedelta(days=401))
    with world() as s:
        project = s.get(Project, project_id)
        assert project.state == "active"
        assert {m.user.username for m in project.members} == {"researcher", "researcher2"}
        assert project.end_date == f.TODAY + dt.timedelta(days=800)
        # what the committee approved in the amendment is now the project's (register, extract spec)
        assert project.date_to == old_date_to + dt.timedelta(days=365)
        assert project.lay_summary == old_summary + " Now also one more year."
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "project.amended")).one()
        assert set(event.details["changed"]) == {"date_to", "lay_summary"}


def test_rejected_applications_never_reach_the_register(world: sessionmaker[Session]) -> None:
    app_id = f.draft(world)
    f.submit(world, app_id)
    f.review_round(world, app_id, {"dac1": "reject", "dac2": "reject", "laymember": "reject"})
    with unit_of_work(world) as s:
        dac.decide(s, f.user(s, "dacchair"), s.get(Application, app_id), f.DAC, outcome="rejected", conditions="",
                   message="No public benefit shown.", access_end_date=None, today=f.TODAY)
    with world() as s:
        assert register.rows(s, f.catalogue()) == []
        assert s.scalars(select(Project)).all() == []


@postgres_only  # on SQLite a writer holds the whole database from its first statement: no interleaving
def test_a_decision_read_in_round_1_is_refused_once_round_2_is_quorate(world: sessionmaker[Session]) -> None:
    """The chair's session read the application in round 1, quorate; before it writes, the application is sent back,
    resubmitted and voted on again. The round is read afresh under the application's lock, not the round 1 the
    session still holds, and nothing is decided."""
    app_id = f.awaiting_decision(world)
    with late_session(world) as late:
        application = _read_by(late, app_id, "dacchair")
        _chair_decides(world, app_id, "changes_requested", "Narrow the cohort.")
        f.submit(world, app_id)
        f.review_round(world, app_id, {"dac1": "approve", "dac2": "approve", "laymember": "approve"})
        refused_on(late, Conflict, lambda: dac.decide(
            late, f.user(late, "dacchair"), application, f.DAC, outcome="rejected", conditions="",
            message="The cohort is too wide.", access_end_date=None, today=f.TODAY, round_seen=1),
            match="resubmitted since you opened it")
    with world() as s:
        found = s.get(Application, app_id)
        assert found is not None
        assert (found.round, found.state, [d.round for d in found.decisions]) == (2, AppState.UNDER_REVIEW, [1])


def _chair_decides(factory: sessionmaker[Session], app_id: int, outcome: str, message: str = "",
                   access_end_date: dt.date | None = None) -> None:
    """The chair's decision, committed (while a late session holds what it read before)."""
    with unit_of_work(factory) as s:
        found = s.get(Application, app_id)
        assert found is not None
        dac.decide(s, f.user(s, "dacchair"), found, f.DAC, outcome=outcome, conditions="", message=message,
                   access_end_date=access_end_date, today=f.TODAY)


def _read_by(late: Session, app_id: int, username: str) -> Application:
    """The application (with its team, variables and votes) and ``username``, as a page read them."""
    application = late.get(Application, app_id)
    assert application is not None
    _ = application.members, application.variables, [a.reviews for a in application.assignments]
    f.user(late, username)
    return application


@postgres_only  # on SQLite a writer holds the whole database from its first statement: no interleaving
def test_a_withdrawal_read_before_the_approval_does_not_withdraw_an_approved_application(
        world: sessionmaker[Session]) -> None:
    """The applicant withdraws from a page read while the application was under review; the chair approved it
    meanwhile. The withdrawal is judged on the state as committed, under the application's lock: refused, and the
    approved application (whose project exists) is not marked withdrawn."""
    app_id = f.awaiting_decision(world)
    with late_session(world) as late:
        application = _read_by(late, app_id, "researcher")
        _chair_decides(world, app_id, "approved", access_end_date=f.TODAY + dt.timedelta(days=365))
        refused_on(late, InvalidTransition,
                   lambda: applications.withdraw(late, f.user(late, "researcher"), application))
    assert app_state(world, app_id) == AppState.APPROVED


@postgres_only
def test_a_draft_saved_from_a_tab_read_before_submission_changes_nothing(world: sessionmaker[Session]) -> None:
    """One tab submits the application; another, read while it was a draft, saves a new title after. The committee
    must review what was submitted: the late save is refused on the state as committed."""
    app_id = f.draft(world)
    with late_session(world) as late:
        application = _read_by(late, app_id, "researcher")
        f.submit(world, app_id)
        refused_on(late, Conflict, lambda: applications.update_draft(
            late, f.user(late, "researcher"), application, {"title": "Something else"}),
            match="cannot be changed now: it is submitted")
    with world() as s:
        found = s.get(Application, app_id)
        assert found is not None and found.title == "Asthma and deprivation" and found.state == AppState.SUBMITTED


@postgres_only
def test_reviewers_assigned_from_a_page_read_before_the_withdrawal_do_not_reopen_it(
        world: sessionmaker[Session]) -> None:
    """The chair assigns reviewers from a page read while the application was submitted; the applicant withdrew it
    meanwhile. Assigning is refused on the state as committed: a withdrawn application does not go under review."""
    app_id = f.draft(world)
    f.submit(world, app_id)
    with late_session(world) as late:
        application = _read_by(late, app_id, "dacchair")
        with unit_of_work(world) as s:
            found = s.get(Application, app_id)
            assert found is not None
            applications.withdraw(s, f.user(s, "researcher"), found)
        refused_on(late, InvalidTransition, lambda: dac.assign_reviewers(
            late, f.user(late, "dacchair"), application, [f.user(late, "dac1")]))
    assert app_state(world, app_id) == AppState.WITHDRAWN


def _reviewer_without_conflict(factory: sessionmaker[Session], app_id: int, username: str) -> None:
    """The chair assigns ``username`` to review, and they declare no conflict."""
    with unit_of_work(factory) as s:
        found = s.get(Application, app_id)
        assert found is not None
        dac.assign_reviewers(s, f.user(s, "dacchair"), found, [f.user(s, username)])
    _declare_conflict(factory, app_id, username, False)


def _declare_conflict(factory: sessionmaker[Session], app_id: int, username: str, conflict: bool) -> None:
    with unit_of_work(factory) as s:
        found = s.get(Application, app_id)
        assert found is not None
        reason = "My department runs the study." if conflict else ""
        dac.declare_conflict(s, f.user(s, username), found, conflict, reason)


@postgres_only  # on SQLite a writer holds the whole database from its first statement: no interleaving
def test_a_chair_who_declared_a_conflict_in_another_tab_cannot_decide_from_a_page_read_before(
        world: sessionmaker[Session]) -> None:
    """The chair, also a reviewer, declared no conflict; the decision page stays open in one tab while, in another,
    the chair declares a conflict after all (recused). The decision sent from the first tab is judged on the
    declaration as committed, under the application's lock: refused, and nothing is decided."""
    app_id = f.awaiting_decision(world)
    _reviewer_without_conflict(world, app_id, "dacchair")
    with late_session(world) as late:
        application = _read_by(late, app_id, "dacchair")
        _declare_conflict(world, app_id, "dacchair", True)
        refused_on(late, PermissionDenied, lambda: dac.decide(
            late, f.user(late, "dacchair"), application, f.DAC, outcome="approved", conditions="", message="",
            access_end_date=f.TODAY + dt.timedelta(days=365), today=f.TODAY, round_seen=1), match="recused")
    assert app_state(world, app_id) == AppState.UNDER_REVIEW


@postgres_only
def test_a_reviewer_who_declared_a_conflict_in_another_tab_cannot_vote_from_a_page_read_before(
        world: sessionmaker[Session]) -> None:
    """A reviewer declared no conflict and opened the vote form; in another tab they declare a conflict. The vote sent
    from the first tab is refused on the declaration as committed: a recused member's vote is never recorded."""
    with unit_of_work(world) as s:
        f.accredit(s, "researcher")
    app_id = f.draft(world)
    f.submit(world, app_id)
    _reviewer_without_conflict(world, app_id, "dac1")
    with late_session(world) as late:
        application = _read_by(late, app_id, "dac1")
        _declare_conflict(world, app_id, "dac1", True)
        refused_on(late, PermissionDenied, lambda: dac.submit_review(
            late, f.user(late, "dac1"), application, "approve", "", "", round_seen=1), match="recused")
    with world() as s:
        found = s.get(Application, app_id)
        assert found is not None and [r for a in found.assignments for r in a.reviews] == []
