"""Safe people and safe projects, as a motivated insider tries them: each test here failed on the code before its fix.

- A deactivated account, or one whose researcher role is taken away, kept its running workspace (and could open
  another, holding any other role): the worker's sweep and the entitlement asked only about the project, the team and
  the accreditation.
- Directory (LDAP) accounts were matched by username alone and read their groups only at a sign-in: a username the
  organisation recycled signed the newcomer in as the old account (accreditation, projects, tokens included), a
  renamed username made a second account for the same person, and an API token kept a role the directory took away,
  or kept working for a person deleted from the directory.
- A provisional accreditation's supervisor was checked when the record was made, never again: verified later, or
  used later, after the supervisor left the organisation, lapsed or was deactivated, it still counted.
- A reviewer's vote counted towards the quorum after they were deactivated or taken off the committee.
- An administrator could change their own organisation, and so their recusals as a committee member.
- The lead could close a project suspended for an investigation (the owner table says only administrators act on a
  suspended project).
- A project's state change was checked against the state its request had read: a closed project could be
  suspended (then reinstated) by an administrator's page read before the close.
- An amendment was approved into a project already revoked or closed.
- A token could make a token outliving it: a leaked token renewed itself for ever.
- A demonstration database brought into production kept its accounts with the published password: `sde check` (and
  so `sde serve`) said nothing.

Left open, marked xfail(strict): one administrator alone can make an account with an oversight role and sign in as it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.config import LdapSettings, SecuritySettings, Settings
from gateway.db import unit_of_work
from gateway.identity import accounts, signin
from gateway.identity.ldap_directory import LdapDirectory
from gateway.models import AuditEvent
from gateway.workspaces import service as workspaces
from gateway.workspaces.entitlement import entitlement
from gateway.workspaces.models import WorkspaceSession
from projects.models import Project
from tests.support import factories as f
from tests.support.databases import postgres_only

SECURITY = SecuritySettings()


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


# --- directory (LDAP) accounts --------------------------------------------------------------------------------------

def _directory_person(url: str, uid: str, password: str, groups: tuple[str, ...] = ("sde-researchers",)) -> str:
    """Add a person to the test directory (a new entry: a new entryUUID) and to ``groups``; returns the DN."""
    from ldap3 import HASHED_SALTED_SHA, MODIFY_ADD, Connection, Server
    from ldap3.utils.hashed import hashed

    from tests.support.ldap_server import GROUPS, PEOPLE, ROOT_DN, ROOT_PW

    dn = f"uid={uid},{PEOPLE}"
    conn = Connection(Server(url), ROOT_DN, ROOT_PW, auto_bind=True)
    assert conn.add(dn, ["inetOrgPerson"], {"uid": uid, "cn": f"{uid} Person", "sn": "Person",
                                            "mail": f"{uid}@example.nhs.uk",
                                            "userPassword": hashed(HASHED_SALTED_SHA, password)}), conn.result
    for group in groups:
        assert conn.modify(f"cn={group},{GROUPS}", {"member": [(MODIFY_ADD, [dn])]}), conn.result
    conn.unbind()
    return dn


def _directory_forget(url: str, dn: str, groups: tuple[str, ...] = ("sde-researchers",)) -> None:
    from ldap3 import MODIFY_DELETE, Connection, Server

    from tests.support.ldap_server import GROUPS, ROOT_DN, ROOT_PW

    conn = Connection(Server(url), ROOT_DN, ROOT_PW, auto_bind=True)
    for group in groups:
        conn.modify(f"cn={group},{GROUPS}", {"member": [(MODIFY_DELETE, [dn])]})
    assert conn.delete(dn), conn.result
    conn.unbind()


def _unique(stem: str) -> str:
    import uuid

    return f"{stem}{uuid.uuid4().hex[:8]}"  # the directory is shared by every test of the session


@pytest.mark.ldap
def test_a_recycled_directory_username_does_not_inherit_the_old_account(
        session_factory: sessionmaker[Session], demo_users: dict[str, int], slapd: Any,
        ldap_settings: LdapSettings) -> None:
    """Dora leaves: her directory entry is deleted. Months later the organisation gives her username to a new
    starter (a new entry, same uid, same DN). The gateway matched accounts by username alone, so the newcomer signed in
    as Dora's account: her verified accreditation, her projects, her tokens. The directory's own id for the entry
    (entryUUID) now binds the account to the entry it was made from."""
    directory = LdapDirectory(ldap_settings)
    uid = _unique("dora")
    dn = _directory_person(slapd.url, uid, "dora-first-password")
    with unit_of_work(session_factory) as s:
        assert signin.sign_in_with_password(s, SECURITY, directory, uid, "dora-first-password").ok
    with unit_of_work(session_factory) as s:
        f.accredit(s, uid)

    _directory_forget(slapd.url, dn)
    _directory_person(slapd.url, uid, "newcomer-password")  # the same name, somebody else

    with unit_of_work(session_factory) as s:
        outcome = signin.sign_in_with_password(s, SECURITY, directory, uid, "newcomer-password")
    assert not outcome.ok, "a new directory entry with a recycled username signed in as the old account"
    with session_factory() as s:
        refused = s.scalars(select(AuditEvent).where(AuditEvent.action == "auth.refused_directory_entry_changed")).all()
        assert len(refused) == 1 and refused[0].details["username"] == uid


@pytest.mark.ldap
def test_a_directory_group_taken_away_takes_the_role_from_live_tokens(
        settings: Settings, demo_users: dict[str, int], slapd: Any, ldap_settings: LdapSettings) -> None:
    """Erin is on the committee through the directory's sde-dac group and has a token for a script. The organisation
    takes her off the group, then deletes her entry when she leaves. Roles were read from the groups only at a
    sign-in, which a token never makes: her token went on voting as a committee member, for up to a year. The
    worker now reads every directory account's groups on each pass, and deactivates an account whose entry is gone."""
    from gateway.app import create_app
    from gateway.identity import tokens
    from gateway.worker import run_once

    with_directory = settings.model_copy(update={"ldap": ldap_settings})
    app = create_app(with_directory)
    factory = app.extensions["sde_sessionmaker"]
    try:
        directory = LdapDirectory(ldap_settings)
        uid = _unique("erin")
        dn = _directory_person(slapd.url, uid, "erin-password", groups=("sde-researchers", "sde-dac"))
        with unit_of_work(factory) as s:
            assert signin.sign_in_with_password(s, SECURITY, directory, uid, "erin-password").ok
            _, plain = tokens.create_token(s, f.user(s, uid), f.user(s, uid), "committee script", days=300)
        client = app.test_client()
        me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {plain}"}).get_json()
        assert "review_applications" in me["permissions"]

        from ldap3 import MODIFY_DELETE, Connection, Server

        from tests.support.ldap_server import GROUPS, ROOT_DN, ROOT_PW

        conn = Connection(Server(slapd.url), ROOT_DN, ROOT_PW, auto_bind=True)
        assert conn.modify(f"cn=sde-dac,{GROUPS}", {"member": [(MODIFY_DELETE, [dn])]}), conn.result
        conn.unbind()
        run_once(with_directory, factory)  # the worker's pass
        me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {plain}"}).get_json()
        assert "review_applications" not in me["permissions"], "the token kept a role the directory took away"
        assert "apply" in me["permissions"]  # still a researcher

        _directory_forget(slapd.url, dn)
        run_once(with_directory, factory)
        answer = client.get("/api/v1/me", headers={"Authorization": f"Bearer {plain}"})
        assert answer.status_code == 401, "the token of a person gone from the directory kept working"
        with factory() as s:
            gone = f.user(s, uid)
            assert not gone.is_active
            actions = [e.action for e in s.scalars(select(AuditEvent).where(AuditEvent.object_type == "user",
                                                                            AuditEvent.object_id == str(gone.id)))]
            assert "user.roles_changed" in actions and "user.deactivated" in actions
    finally:
        app.extensions["sde_engine"].dispose()


@pytest.mark.ldap
def test_one_directory_entry_never_holds_two_accounts(session_factory: sessionmaker[Session],
                                                      demo_users: dict[str, int],
                                                      slapd: Any, ldap_settings: LdapSettings) -> None:
    """The directory renames Fred's username: a second gateway account for the same entry (the same person) would be
    a second reviewer, a second output checker. Refused, and recorded."""
    from ldap3 import Connection, Server

    from tests.support.ldap_server import ROOT_DN, ROOT_PW

    directory = LdapDirectory(ldap_settings)
    uid = _unique("fred")
    dn = _directory_person(slapd.url, uid, "fred-password")
    with unit_of_work(session_factory) as s:
        assert signin.sign_in_with_password(s, SECURITY, directory, uid, "fred-password").ok
    conn = Connection(Server(slapd.url), ROOT_DN, ROOT_PW, auto_bind=True)
    assert conn.modify_dn(dn, f"uid={uid}x"), conn.result
    conn.unbind()
    with unit_of_work(session_factory) as s:
        assert not signin.sign_in_with_password(s, SECURITY, directory, f"{uid}x", "fred-password").ok
    with session_factory() as s:
        assert accounts.find_user(s, f"{uid}x") is None
        assert s.scalars(select(AuditEvent).where(AuditEvent.action == "auth.refused_directory_entry_taken")).one()


@pytest.mark.ldap
def test_a_directory_without_the_entry_id_attribute_still_signs_people_in(
        session_factory: sessionmaker[Session], demo_users: dict[str, int], ldap_settings: LdapSettings) -> None:
    """Asked for an attribute its schema lacks (Active Directory has no entryUUID, OpenLDAP no objectGUID), a directory
    refuses the whole search: the account is then bound to the entry's DN instead."""
    directory = LdapDirectory(ldap_settings.model_copy(update={"entry_id_attribute": "objectGUID"}))
    with unit_of_work(session_factory) as s:
        assert signin.sign_in_with_password(s, SECURITY, directory, "alice", "alice-ldap-password").ok
    with session_factory() as s:
        assert f.user(s, "alice").directory_entry_id == "dn:uid=alice,ou=people,dc=londonsde,dc=test"


# --- provisional (supervised) accreditation -------------------------------------------------------------------------

@pytest.mark.parametrize("supervisor_change", ["moves to another organisation", "is deactivated",
                                               "lets their accreditation lapse"])
def test_a_provisional_accreditation_counts_only_while_it_is_supervised(
        app: Any, session_factory: sessionmaker[Session], demo_users: dict[str, int], supervisor_change: str) -> None:
    """accreditation.md: a provisional accreditation needs a supervisor at the same organisation holding a valid full
    accreditation. That was checked when the record was made, never again: once the supervisor left (or lapsed, or
    was deactivated) the officer could still verify it, and a verified one went on counting, unsupervised."""
    import datetime as dt

    from gateway.errors import DomainError
    from projects import accreditation as service
    from projects import organisations
    from projects.accreditation_rules import valid_accreditation
    from projects.models import Accreditation
    from tests.integration.test_accreditation import record_pending, valid_input  # noqa: F401 - the shared helpers

    with unit_of_work(session_factory) as s:
        imperial = organisations.create_organisation(s, "test", "Imperial College London", "academic")
        elsewhere = organisations.create_organisation(s, "test", "King's College London", "academic")
        for name in ("researcher", "researcher2"):
            organisations.assign_user(s, "test", f.user(s, name), imperial)
        f.accredit(s, "researcher", expiry=f.TODAY + dt.timedelta(days=60))  # the supervisor: full
        elsewhere_id = elsewhere.id
    waiting = record_pending(session_factory, app, "researcher2", level="provisional",
                             supervisor_username="researcher")
    verified = record_pending(session_factory, app, "researcher2", level="provisional",
                              supervisor_username="researcher", number="AR-2")
    with unit_of_work(session_factory) as s:
        service.verify_accreditation(s, f.user(s, "accreditor"), s.get(Accreditation, verified))
    with session_factory() as s:
        assert valid_accreditation(s, f.user(s, "researcher2")) is not None  # supervised: it counts

    day = f.TODAY
    with unit_of_work(session_factory) as s:
        supervisor = f.user(s, "researcher")
        if supervisor_change == "moves to another organisation":
            organisations.assign_user(s, "test", supervisor, s.get(type(imperial), elsewhere_id))
        elif supervisor_change == "is deactivated":
            accounts.set_active(s, f.user(s, "admin"), supervisor, False)
        else:
            day = f.TODAY + dt.timedelta(days=61)  # past the supervisor's expiry, within the provisional's

    with session_factory() as s:
        assert valid_accreditation(s, f.user(s, "researcher2"), day) is None, \
            f"a provisional accreditation counted after its supervisor {supervisor_change}"
    with pytest.raises(DomainError, match="supervisor"), unit_of_work(session_factory) as s:
        service.verify_accreditation(s, f.user(s, "accreditor"), s.get(Accreditation, waiting), on=day)


# --- the committee's quorum ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("change", ["deactivated", "taken off the committee"])
def test_a_vote_counts_towards_the_quorum_only_while_its_reviewer_is_on_the_committee(
        session_factory: sessionmaker[Session], demo_users: dict[str, int], change: str) -> None:
    """dac.md: a decision needs 3 votes from non-recused members. A reviewer the administrators deactivate, or take off
    the committee (for an interest found out after they voted, say), is no longer a member, but their vote went on
    counting: the chair could decide on it. (The lay vote already counted only while its reviewer held the lay role.)"""
    from gateway.errors import Conflict
    from projects import dac
    from projects.models import Application

    app_id = f.awaiting_decision(session_factory)
    with unit_of_work(session_factory) as s:
        admin, reviewer = f.user(s, "admin"), f.user(s, "dac2")
        if change == "deactivated":
            accounts.set_active(s, admin, reviewer, False)
        else:
            accounts.set_roles(s, admin, reviewer, [], reason="left the committee: undeclared interest found")
    with pytest.raises(Conflict, match="No quorum"), unit_of_work(session_factory) as s:
        dac.decide(s, f.user(s, "dacchair"), s.get(Application, app_id), f.DAC, outcome="approved", conditions="",
                   message="", access_end_date=f.TODAY + dt.timedelta(days=200), today=f.TODAY)
    # another member's vote makes it up
    with unit_of_work(session_factory) as s:
        dac.assign_reviewers(s, f.user(s, "dacchair"), s.get(Application, app_id), [f.user(s, "dacchair")])
    with unit_of_work(session_factory) as s:
        chair, application = f.user(s, "dacchair"), s.get(Application, app_id)
        dac.declare_conflict(s, chair, application, False, "")
        dac.submit_review(s, chair, application, "approve", "", "")
    with unit_of_work(session_factory) as s:
        dac.decide(s, f.user(s, "dacchair"), s.get(Application, app_id), f.DAC, outcome="approved", conditions="",
                   message="", access_end_date=f.TODAY + dt.timedelta(days=200), today=f.TODAY)


@pytest.mark.parametrize("route", ["service", "api"])
def test_an_administrator_cannot_move_themselves_out_of_a_conflict(
        app: Any, session_factory: sessionmaker[Session], demo_users: dict[str, int], route: str) -> None:
    """Who works where decides who is recused (dac.md: people at the applying organisation cannot review, vote or
    decide) and who may supervise a provisional accreditation. Administrators cannot change their own roles, but
    could change their own organisation: an administrator who also sits on the committee moved themselves out of
    their colleague's organisation and was no longer recused."""
    from gateway.errors import PermissionDenied
    from gateway.identity import tokens
    from projects import dac, organisations
    from projects.models import Application

    with unit_of_work(session_factory) as s:
        home = organisations.create_organisation(s, "test", "Imperial College London", "academic")
        away = organisations.create_organisation(s, "test", "King's College London", "academic")
        organisations.assign_user(s, "test", f.user(s, "researcher"), home)
        f.accredit(s, "researcher")
        admin = f.user(s, "admin")
        admin.role_grants.append(accounts.UserRole(role="dac_member"))  # a second hat, given by another admin
        organisations.assign_user(s, "test", admin, home)
        away_id = away.id
    app_id = f.draft(session_factory)
    with session_factory() as s:
        assert dac.is_recused(f.user(s, "admin"), s.get(Application, app_id))
    if route == "service":
        with pytest.raises(PermissionDenied), unit_of_work(session_factory) as s:
            organisations.assign_user(s, f.user(s, "admin"), f.user(s, "admin"), s.get(type(home), away_id))
    else:
        with unit_of_work(session_factory) as s:
            _, plain = tokens.create_token(s, f.user(s, "admin"), f.user(s, "admin"), "orgs", days=1)
        answer = app.test_client().put(f"/api/v1/users/{demo_users['admin']}/organisation",
                                       json={"organisation_id": away_id}, headers={"Authorization": f"Bearer {plain}"})
        assert answer.status_code == 403
    with session_factory() as s:
        assert dac.is_recused(f.user(s, "admin"), s.get(Application, app_id))


# --- a project under suspension -------------------------------------------------------------------------------------

@pytest.mark.parametrize("route", ["service", "api"])
def test_the_lead_cannot_close_a_project_suspended_for_an_investigation(
        app: Any, world: sessionmaker[Session], route: str) -> None:
    """workflows.md: a suspended project belongs to the administrators (reinstate, revoke, close); the lead closes an
    active one. The rule let the lead close any project: a lead under investigation closed their suspended project,
    so the register says "Closed" instead of the "Revoked" the investigation might decide, and the project's
    pseudonym key was destroyed on the lead's word."""
    from gateway.errors import PermissionDenied
    from gateway.identity import tokens
    from projects import lifecycle
    from projects.workflow import ProjectState

    project_id = f.approved_project(world)
    with unit_of_work(world) as s:
        lifecycle.suspend(s, f.user(s, "admin"), s.get(Project, project_id), "Investigation of a possible breach")
    if route == "service":
        with pytest.raises(PermissionDenied), unit_of_work(world) as s:
            lifecycle.close(s, f.user(s, "researcher"), s.get(Project, project_id), "We have finished")
    else:
        with unit_of_work(world) as s:
            _, plain = tokens.create_token(s, f.user(s, "researcher"), f.user(s, "researcher"), "close", days=1)
        answer = app.test_client().post(f"/api/v1/projects/{project_id}/close", json={"reason": "We have finished"},
                                        headers={"Authorization": f"Bearer {plain}"})
        assert answer.status_code == 403, answer.get_json()
    with world() as s:
        project = s.get(Project, project_id)
        assert project.state == ProjectState.SUSPENDED
        assert "close" not in lifecycle.available_actions(f.user(s, "researcher"), project)
        assert "close" in lifecycle.available_actions(f.user(s, "admin"), project)


@postgres_only  # on SQLite a writer holds the whole database from its first statement: no interleaving
def test_a_project_state_change_is_judged_on_the_state_as_committed(world: sessionmaker[Session]) -> None:
    """Two people at once (or two tabs): the lead closes the project while an administrator, on a page read before,
    suspends it. Each change was checked against the state its request had read, and the later write won: a closed
    project (final, its pseudonym key destroyed) became suspended, and could then be reinstated to active. And a
    lead's close from a page read before a suspension closed the suspended project."""
    from gateway.errors import DomainError
    from projects import lifecycle
    from projects.workflow import ProjectState
    from tests.support.late import late_session, refused_on

    project_id = f.approved_project(world)
    with late_session(world) as late:
        stale, admin = late.get(Project, project_id), f.user(late, "admin")
        assert stale is not None and stale.state == ProjectState.ACTIVE
        with unit_of_work(world) as s:
            lifecycle.close(s, f.user(s, "researcher"), s.get(Project, project_id), "Finished early")
        refused_on(late, DomainError, lambda: lifecycle.suspend(late, admin, stale, "Investigation"))
    with world() as s:
        assert s.get(Project, project_id).state == ProjectState.CLOSED

    other_id = f.approved_project(world, title="Another study")
    with late_session(world) as late:
        stale, lead = late.get(Project, other_id), f.user(late, "researcher")
        with unit_of_work(world) as s:
            lifecycle.suspend(s, f.user(s, "admin"), s.get(Project, other_id), "Investigation")
        refused_on(late, DomainError, lambda: lifecycle.close(late, lead, stale, "Finished early"))
    with world() as s:
        assert s.get(Project, other_id).state == ProjectState.SUSPENDED


@pytest.mark.parametrize("ended", ["revoke", "close"])
def test_an_amendment_cannot_change_a_project_that_was_revoked_or_closed(
        session_factory: sessionmaker[Session], demo_users: dict[str, int], ended: str) -> None:
    """An amendment submitted before the project was revoked (or closed) was still approved into it: a final project
    took a new team, new variables, a new end date and lay summary, and the public register showed them. Only a
    refusal can be recorded now."""
    from gateway.errors import DomainError
    from projects import applications, dac, lifecycle
    from projects.models import Application
    from projects.workflow import ProjectState

    project_id, amendment_id = f.amendment(session_factory, summary="Add a colleague, extend by a year.")
    with unit_of_work(session_factory) as s:
        f.accredit(s, "researcher2")
        lead, amendment = f.user(s, "researcher"), s.get(Application, amendment_id)
        applications.add_member(s, lead, amendment, f.user(s, "researcher2"), "analyst")
        applications.update_draft(s, lead, amendment, {"lay_summary": "A new purpose altogether.",
                                                       "requested_end_date": f.TODAY + dt.timedelta(days=700)})
    f.submit(session_factory, amendment_id)
    f.review_round(session_factory, amendment_id, {"dac1": "approve"})
    with unit_of_work(session_factory) as s:
        command = lifecycle.revoke if ended == "revoke" else lifecycle.close
        command(s, f.user(s, "admin"), s.get(Project, project_id), "Breach of the data access agreement")
    with pytest.raises(DomainError), unit_of_work(session_factory) as s:
        dac.decide(s, f.user(s, "dacchair"), s.get(Application, amendment_id), f.DAC, outcome="approved",
                   conditions="", message="", access_end_date=None, today=f.TODAY)
    with session_factory() as s:
        project = s.get(Project, project_id)
        assert project.state in (ProjectState.REVOKED, ProjectState.CLOSED)
        assert project.lay_summary != "A new purpose altogether."
        assert {m.user.username for m in project.members} == {"researcher"}
    with unit_of_work(session_factory) as s:  # a rejection can still close the amendment
        dac.decide(s, f.user(s, "dacchair"), s.get(Application, amendment_id), f.DAC, outcome="rejected",
                   conditions="", message="The project's access has ended.", access_end_date=None, today=f.TODAY)


# --- tokens that make tokens ----------------------------------------------------------------------------------------

def test_a_token_cannot_outlive_the_token_that_made_it(app: Any, session_factory: sessionmaker[Session],
                                                        demo_users: dict[str, int]) -> None:
    """tokens.py: every token expires, so a leaked one stops working within a year at most. But a token may make
    another (signing-in.md), and nothing bounded the new one's expiry by its maker's: a leaked token with a day left
    made itself a 366-day successor, and that one the next, for ever, out of sight of the one revocation the owner
    would make."""

    from gateway.identity import tokens
    from gateway.models import ApiToken

    with unit_of_work(session_factory) as s:
        owner = f.user(s, "researcher")
        leaked, plain = tokens.create_token(s, owner, owner, "laptop script", days=2)
        leaked_expiry = leaked.expires_at
    client = app.test_client()
    headers = {"Authorization": f"Bearer {plain}"}
    longer = client.post("/api/v1/tokens", json={"name": "successor", "days": 366}, headers=headers)
    assert longer.status_code == 201  # made, but expiring with its maker (a refusal made every default fail)
    shorter = client.post("/api/v1/tokens", json={"name": "helper", "days": 1}, headers=headers)
    assert shorter.status_code == 201
    with session_factory() as s:
        successor = s.get(ApiToken, longer.get_json()["id"])
        assert successor is not None and successor.expires_at <= leaked_expiry, "a token made a token that outlives it"
        made = s.get(ApiToken, shorter.get_json()["id"])
        assert made is not None and made.expires_at < leaked_expiry
    grandchild = client.post("/api/v1/tokens", json={"name": "grandchild", "days": 1},
                             headers={"Authorization": f"Bearer {longer.get_json()['token']}"})
    assert grandchild.status_code == 201
    # revoking the leaked token revokes what it made, and what they made (found by the attack on today's changes:
    # its children kept working after the owner revoked it)
    with unit_of_work(session_factory) as s:
        owner = f.user(s, "researcher")
        tokens.revoke_token(s, owner, tokens.get_token(s, owner, leaked.id))
    for made_token in (longer, shorter, grandchild):
        answer = client.get("/api/v1/me", headers={"Authorization": f"Bearer {made_token.get_json()['token']}"})
        assert answer.status_code == 401, "a token made by a revoked token kept working"
    # the account page (a browser session, no token) still makes tokens of any length up to the limit
    with unit_of_work(session_factory) as s:
        owner = f.user(s, "researcher")
        assert tokens.create_token(s, owner, owner, "from the page", days=366)[0].expires_at > leaked_expiry


# --- demonstration accounts in a live service -----------------------------------------------------------------------

def test_demonstration_accounts_stop_a_production_start(settings: Settings, session_factory: sessionmaker[Session],
                                                        demo_users: dict[str, int]) -> None:
    """operators.md: production refuses demo data. `sde demo` and the seeding refuse it, but a demonstration database
    brought into production (the trial instance promoted, or copied with `sde db copy`) kept its accounts, whose
    password is published: anyone could sign in as `admin` or `auditor` and, the second factor being set up on first
    use, enrol their own phone. `sde check` (and so `sde serve`) now refuses production while an active demonstration
    account exists."""
    from gateway import deploy_check
    from tests.integration.test_deploy_check import codes, ctx, production

    found = deploy_check.check_demo_accounts(ctx(production(settings), session_factory))
    assert codes(found) == {"demo-accounts": deploy_check.Severity.ERROR}
    assert "admin" in found[0].message
    assert deploy_check.check_demo_accounts(ctx(settings, session_factory)) == []  # the demonstration itself: fine
    assert deploy_check.check_demo_accounts in deploy_check.DATABASE_CHECKS
    with unit_of_work(session_factory) as s:
        admin = f.user(s, "admin")
        for name in demo_users:
            if name != "admin":
                accounts.set_active(s, admin, f.user(s, name), False)
    with unit_of_work(session_factory) as s:  # the last one, by another route (there is no self-deactivation)
        s.get(type(admin), demo_users["admin"]).is_active = False
    assert deploy_check.check_demo_accounts(ctx(production(settings), session_factory)) == []


# --- an administrator's own accounts (left open: a design decision, see the reason) --------------------------------

@pytest.mark.xfail(strict=True, reason=(
    "Not fixed: administrators.md says an administrator cannot grant themselves oversight powers, and that no form "
    "lets one both choose someone's password and reset their second factor, because they could then act as that "
    "person alone (an output checker making one of the two checks). But an administrator creates local accounts with "
    "any roles and chooses the first password; the second factor is set up by whoever signs in first. So one "
    "administrator alone makes an auditor, an output checker or a lay member and signs in as it. Closing it needs a "
    "two-person rule for accounts with oversight roles (a second administrator, or the operator's `sde user create`) "
    "or a first password the administrator never sees; the first-hour set-up (docs/operators.md) depends on the "
    "current behaviour, so the choice is the product owner's."))
def test_an_administrator_alone_cannot_make_and_become_an_auditor(
        app: Any, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    from gateway.errors import PermissionDenied
    from gateway.identity.sessions import SignInState

    with unit_of_work(session_factory) as s:
        admin = f.user(s, "admin")
        try:
            accounts.create_local_user(s, admin, username="puppet", display_name="Pat Puppet",
                                       password="amber-walnut-meadow-93", roles=["auditor"])
        except PermissionDenied:
            return  # refused: the hole is closed
    with unit_of_work(session_factory) as s:
        outcome = signin.sign_in_with_password(s, SECURITY, None, "puppet", "amber-walnut-meadow-93")
        assert outcome.state is SignInState.NEW_PASSWORD and outcome.session is not None
        done = signin.set_first_password(s, SECURITY, outcome.session, "quiet-harbour-lantern-57",
                                         "quiet-harbour-lantern-57")
        assert done.state is SignInState.SIGNED_IN
        from gateway.permissions import Permission, has_permission

        assert not has_permission(f.user(s, "puppet"), Permission.VIEW_AUDIT_LOG), \
            "one administrator made an auditor and signed in as it"


@pytest.mark.ldap
def test_a_directory_that_seems_to_have_lost_everyone_deactivates_nobody(
        session_factory: sessionmaker[Session], demo_users: dict[str, int], slapd: Any,
        ldap_settings: LdapSettings) -> None:
    """The worker's sync deactivates an account whose entry is gone. A base DN renamed or mistyped (LDAP result 32),
    an empty replica or a service account that can no longer see people read as everyone gone: every directory
    account was deactivated in one pass and its sessions ended (found by the attack on today's changes). A missing
    base is now the directory unavailable, and more than a few entries missing at once changes nothing."""
    from gateway.identity.accounts import sync_directory_accounts
    from gateway.identity.ldap_directory import DirectoryImplausible, DirectoryUnavailable

    directory = LdapDirectory(ldap_settings)
    people = {(uid := _unique("leaver")): _directory_person(slapd.url, uid, "leaver-password") for _ in range(5)}
    with unit_of_work(session_factory) as s:
        for uid in people:
            assert signin.sign_in_with_password(s, SECURITY, directory, uid, "leaver-password").ok

    def active() -> int:
        with session_factory() as s:
            return sum(f.user(s, uid).is_active for uid in people)

    nowhere = LdapDirectory(ldap_settings.model_copy(update={"user_base": "ou=renamed,dc=example,dc=org"}))
    with pytest.raises(DirectoryUnavailable), unit_of_work(session_factory) as s:
        sync_directory_accounts(s, nowhere)
    assert active() == 5
    for dn in people.values():
        _directory_forget(slapd.url, dn)
    with pytest.raises(DirectoryImplausible), unit_of_work(session_factory) as s:
        sync_directory_accounts(s, directory)
    assert active() == 5, "five accounts deactivated in one pass on the directory's word"


@pytest.mark.ldap
def test_a_set_up_link_is_not_sent_to_a_directory_address_just_changed(
        session_factory: sessionmaker[Session], demo_users: dict[str, int], slapd: Any,
        ldap_settings: LdapSettings) -> None:
    """The emailed link guards against a phished directory password; but many directories let a person edit their
    own mail attribute, so the phisher set it to their own address, signed in and received the link (found by the
    attack on today's changes). A sign-in that finds a new address takes it, tells the old one, and sends no set-up
    link to it for a week: the service desk's code is the way in meanwhile."""
    from ldap3 import MODIFY_REPLACE, Connection, Server

    from gateway.identity.enrolment import EMAIL_HOLD
    from gateway.models import EnrolmentCode
    from gateway.outbox import OutboxMessage
    from tests.support.ldap_server import ROOT_DN, ROOT_PW

    directory = LdapDirectory(ldap_settings)
    uid = _unique("phished")
    dn = _directory_person(slapd.url, uid, "phished-password")
    with unit_of_work(session_factory) as s:  # the owner signed in once (a researcher needs no factor here)
        assert signin.sign_in_with_password(s, SECURITY, directory, uid, "phished-password").ok
    conn = Connection(Server(slapd.url), ROOT_DN, ROOT_PW, auto_bind=True)
    assert conn.modify(dn, {"mail": [(MODIFY_REPLACE, ["attacker@elsewhere.example"])]}), conn.result
    conn.unbind()
    with unit_of_work(session_factory) as s:
        outcome = signin.sign_in_with_password(s, SECURITY, directory, uid, "phished-password", totp_by_default=True)
        assert outcome.state is not None and outcome.state.value == "verify"
        user = f.user(s, uid)
        assert user.email == "attacker@elsewhere.example" and user.email_changed_at is not None
    with session_factory() as s:
        assert s.scalars(select(EnrolmentCode).where(EnrolmentCode.user_id == user.id)).all() == [], \
            "a set-up link went to the address the phisher wrote"
        mailed = [m.payload["to"] for m in s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "email"))]
        assert f"{uid}@example.nhs.uk" in mailed and "attacker@elsewhere.example" not in mailed
        user = f.user(s, uid)
        user.email_changed_at -= EMAIL_HOLD  # a week later the address is the person's own
        s.commit()
    with unit_of_work(session_factory) as s:
        assert signin.sign_in_with_password(s, SECURITY, directory, uid, "phished-password",
                                            totp_by_default=True).state is not None
    with session_factory() as s:
        assert len(s.scalars(select(EnrolmentCode).where(EnrolmentCode.user_id == user.id)).all()) == 1
