"""Homes that say what is waiting: each role's counts and links, reached through the real services, gone once done,
most urgent first, and never wider than the page they link to (blinding, recusal, a checker's own projects)."""

from __future__ import annotations

import datetime as dt
import re

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.charging import invoices, metering
from gateway.config import Settings
from gateway.db import unit_of_work, utcnow
from gateway.extracts import service as extracts
from gateway.identity import accounts
from gateway.outputs import service as outputs
from projects import accreditation, dac, lifecycle
from projects.models import Application, Project
from tests.conftest import sign_in_session
from tests.integration.test_accreditation import record_pending
from tests.integration.test_checker_statistics import submitted
from tests.integration.test_outputs import act, ready_project, review_all
from tests.support import factories as f

NOW = utcnow()


def waiting(client: FlaskClient, factory: sessionmaker[Session], username: str) -> list[tuple[str, int, str]]:
    """The "Waiting for you" list as a person reads it: (kind, count, link) in page order."""
    sign_in_session(client, factory, username)
    response = client.get("/home")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    section = html.split('data-testid="waiting"', 1)[1].split("</section>", 1)[0]
    return [(kind, int(count), href) for kind, href, count in re.findall(
        r'<li data-kind="([a-z_]+)">.*?<a href="([^"]+)"><span data-count>(\d+)</span>', section)]


def kinds(client: FlaskClient, factory: sessionmaker[Session], username: str) -> dict[str, int]:
    return {kind: count for kind, count, _ in waiting(client, factory, username)}


def application(s: Session, app_id: int) -> Application:
    found = s.get(Application, app_id)
    assert found is not None
    return found


def test_dac_chair_and_members_see_their_own_part_only(client: FlaskClient, session_factory: sessionmaker[Session],
                                                       demo_users: dict[str, int]) -> None:
    with unit_of_work(session_factory) as s:
        f.accredit(s, "researcher")
    app_id = f.draft(session_factory)
    assert kinds(client, session_factory, "dacchair") == {}  # a draft is the team's own business
    f.submit(session_factory, app_id)
    assert kinds(client, session_factory, "dacchair") == {"applications_to_assign": 1}
    assert kinds(client, session_factory, "dac1") == {}
    with unit_of_work(session_factory) as s:
        dac.assign_reviewers(s, f.user(s, "dacchair"), application(s, app_id),
                             [f.user(s, n) for n in ("dac1", "dac2", "laymember")])
    assert kinds(client, session_factory, "dacchair") == {"applications_to_decide": 1}
    for name in ("dac1", "dac2", "laymember"):
        assert waiting(client, session_factory, name) == [("votes_owed", 1, "/applications/")]
    # dac1 votes; dac2 declares a conflict and is recused: neither owes a vote any more, the lay member still does
    with unit_of_work(session_factory) as s:
        app, dac1 = application(s, app_id), f.user(s, "dac1")
        dac.declare_conflict(s, dac1, app, False, "")
        dac.submit_review(s, dac1, app, "approve", "", "")
    with unit_of_work(session_factory) as s:
        dac.declare_conflict(s, f.user(s, "dac2"), application(s, app_id), True, "I advised the applicants.")
    assert kinds(client, session_factory, "dac1") == {}
    assert kinds(client, session_factory, "dac2") == {}
    sign_in_session(client, session_factory, "laymember")
    section = client.get("/home").get_data(as_text=True).split('data-testid="waiting"')[1].split("</section>")[0]
    # the whole of what the lay member reads: their own vote owed, nothing about how many others have voted
    assert " ".join(re.sub(r"<[^>]+>", " ", section.split(">", 1)[1]).split()) == (
        "Waiting for you Most urgent first. 1 application needs your vote")
    # with dac2 recused the chair joins the reviewers for quorum: now both a vote owed and a decision to make
    with unit_of_work(session_factory) as s:
        dac.assign_reviewers(s, f.user(s, "dacchair"), application(s, app_id), [f.user(s, "dacchair")])
    assert [k for k, _, _ in waiting(client, session_factory, "dacchair")] == ["votes_owed", "applications_to_decide"]
    with unit_of_work(session_factory) as s:
        app = application(s, app_id)
        for name in ("laymember", "dacchair"):
            dac.declare_conflict(s, f.user(s, name), app, False, "")
            dac.submit_review(s, f.user(s, name), app, "approve", "", "")
    assert kinds(client, session_factory, "dacchair") == {"applications_to_decide": 1}
    with unit_of_work(session_factory) as s:
        app = application(s, app_id)
        dac.decide(s, f.user(s, "dacchair"), app, f.DAC, outcome="changes_requested", conditions="",
                   message="Say more about the cohort.", access_end_date=None, today=f.TODAY)
    assert kinds(client, session_factory, "dacchair") == {}
    assert kinds(client, session_factory, "laymember") == {}
    # the applicant now has it back
    assert waiting(client, session_factory, "researcher") == [("applications_returned", 1, "/applications/")]
    assert kinds(client, session_factory, "researcher2") == {}  # not their application


def test_dac_chair_recused_counts_nothing(client: FlaskClient, session_factory: sessionmaker[Session],
                                          demo_users: dict[str, int]) -> None:
    """The chair works at the applying organisation: recused, so the application is not theirs to assign."""
    with unit_of_work(session_factory) as s:
        f.accredit(s, "researcher")
        org = f.organisation(s, "Chair's university")
        f.user(s, "researcher").organisation_id = org.id
        f.user(s, "dacchair").organisation_id = org.id
    f.submit(session_factory, f.draft(session_factory))
    assert kinds(client, session_factory, "dacchair") == {}


def test_accreditation_officer_sees_pending_until_verified(app: Flask, client: FlaskClient,
                                                           session_factory: sessionmaker[Session],
                                                           demo_users: dict[str, int]) -> None:
    assert kinds(client, session_factory, "accreditor") == {}
    first = record_pending(session_factory, app, "researcher")
    record_pending(session_factory, app, "researcher2", number="AR-2")
    assert waiting(client, session_factory, "accreditor") == [("accreditations_to_verify", 2, "/accreditation/queue")]
    assert kinds(client, session_factory, "researcher") == {}
    with unit_of_work(session_factory) as s:
        officer = f.user(s, "accreditor")
        accreditation.verify_accreditation(s, officer, accreditation.get_accreditation(s, officer, first))
    assert kinds(client, session_factory, "accreditor") == {"accreditations_to_verify": 1}


def test_checkers_count_only_what_they_may_check_and_researchers_their_returns(
        client: FlaskClient, session_factory: sessionmaker[Session], settings: Settings,
        demo_users: dict[str, int]) -> None:
    project_id = ready_project(session_factory, settings)
    request_id = submitted(session_factory, settings, project_id, "table", suppress=True)
    assert waiting(client, session_factory, "checker1") == [("outputs_to_check", 1, "/outputs/queue")]
    # dualrole is an output checker on the project's own team: never counts it
    assert kinds(client, session_factory, "dualrole") == {}
    review_all(session_factory, request_id, "checker1", "changes_requested")
    assert kinds(client, session_factory, "checker1") == {}  # reviewed by me: not waiting for me
    assert kinds(client, session_factory, "checker2") == {"outputs_to_check": 1}
    review_all(session_factory, request_id, "checker2", "changes_requested")
    assert kinds(client, session_factory, "checker1") == {"outputs_to_decide": 1}
    assert kinds(client, session_factory, "checker2") == {"outputs_to_decide": 1}
    assert kinds(client, session_factory, "researcher") == {}
    act(session_factory, request_id, "checker2", outputs.decide, "return", "Round the counts.")
    assert kinds(client, session_factory, "checker1") == {}
    assert waiting(client, session_factory, "researcher") == [("outputs_returned", 1, "/outputs/")]
    assert kinds(client, session_factory, "dualrole") == {}  # on the team, but not the request's author


def test_custodians_see_held_extracts_and_the_two_person_rule(
        client: FlaskClient, session_factory: sessionmaker[Session], settings: Settings,
        demo_users: dict[str, int]) -> None:
    with unit_of_work(session_factory) as s:
        f.accredit(s, "researcher")
    project_id = f.approved_project(session_factory)
    settings.extracts.k = 1000  # every class is smaller: held, and high risk (two custodians)
    extracts.run_queued_builds(settings, session_factory)
    for name in ("admin", "custodian"):
        assert waiting(client, session_factory, name) == [("extracts_held", 1, "/projects/")]
    assert kinds(client, session_factory, "researcher") == {}
    with unit_of_work(session_factory) as s:
        assert extracts.release_held(s, settings, f.user(s, "admin"), s.get(Project, project_id), 1,
                                     "Risk report reviewed.") == "proposed"
    assert kinds(client, session_factory, "admin") == {}  # the second custodian's turn, never the proposer's
    assert kinds(client, session_factory, "custodian") == {"extracts_held": 1}
    with unit_of_work(session_factory) as s:
        extracts.release_held(s, settings, f.user(s, "custodian"), s.get(Project, project_id), 1, "Agreed.")
    assert kinds(client, session_factory, "custodian") == {}


def test_a_closed_projects_held_extract_waits_for_nobody(
        client: FlaskClient, session_factory: sessionmaker[Session], settings: Settings,
        demo_users: dict[str, int]) -> None:
    with unit_of_work(session_factory) as s:
        f.accredit(s, "researcher")
    project_id = f.approved_project(session_factory)
    settings.extracts.k = 1000
    extracts.run_queued_builds(settings, session_factory)
    assert kinds(client, session_factory, "admin") == {"extracts_held": 1}
    with unit_of_work(session_factory) as s:
        lifecycle.close(s, f.user(s, "researcher"), s.get(Project, project_id), "Finished.")
    assert kinds(client, session_factory, "admin") == {}


def test_finance_sees_draft_invoices_until_issued(client: FlaskClient, session_factory: sessionmaker[Session],
                                                  demo_users: dict[str, int]) -> None:
    with unit_of_work(session_factory) as s:
        f.accredit(s, "researcher")
    f.approved_project(session_factory)
    assert kinds(client, session_factory, "finance") == {}
    next_month = (NOW.date().replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    with unit_of_work(session_factory) as s:
        [draft] = invoices.run_month(s, f.user(s, "finance"), metering.period_of(NOW), next_month).created
    assert waiting(client, session_factory, "finance") == [("invoices_to_issue", 1, "/charging/invoices?state=draft")]
    with unit_of_work(session_factory) as s:
        invoices.issue(s, f.user(s, "finance"), invoices.get_invoice(s, f.user(s, "finance"), draft.id), next_month)
    assert kinds(client, session_factory, "finance") == {}


def ending_project(factory: sessionmaker[Session], days: int, title: str = "Ending soon") -> int:
    app_id = f.draft(factory, title=title)
    f.submit(factory, app_id)
    f.review_round(factory, app_id, {"dac1": "approve", "dac2": "approve", "laymember": "approve"})
    with unit_of_work(factory) as s:
        dac.decide(s, f.user(s, "dacchair"), application(s, app_id), f.DAC, outcome="approved", conditions="",
                   message="", access_end_date=f.TODAY + dt.timedelta(days=days), today=f.TODAY)
    with factory() as s:
        return s.scalars(select(Project.id).where(Project.application_id == app_id)).one()


def test_projects_near_expiry_for_the_lead_and_administrators_urgent_first(
        client: FlaskClient, session_factory: sessionmaker[Session], settings: Settings,
        demo_users: dict[str, int]) -> None:
    with unit_of_work(session_factory) as s:
        f.accredit(s, "researcher")
    f.approved_project(session_factory)  # a year to run: not near expiry
    ending_project(session_factory, 20)
    assert waiting(client, session_factory, "researcher") == [("projects_near_expiry", 1, "/projects/")]
    assert kinds(client, session_factory, "researcher2") == {}
    settings.extracts.k = 1000
    extracts.run_queued_builds(settings, session_factory)  # held versions for both projects
    # twenty days left: the held extracts come first
    assert [k for k, _, _ in waiting(client, session_factory, "admin")] == ["extracts_held", "projects_near_expiry"]
    soon = ending_project(session_factory, 5, "Ending this week")
    # five days left: urgent, ahead of everything else, and marked in words as well as colour
    assert waiting(client, session_factory, "admin")[0] == ("projects_near_expiry", 2, "/projects/")
    assert "Urgent</strong>" in client.get("/home").get_data(as_text=True)
    with unit_of_work(session_factory) as s:
        lifecycle.close(s, f.user(s, "researcher"), s.get(Project, soon), "Finished early.")
    assert waiting(client, session_factory, "researcher") == [("projects_near_expiry", 1, "/projects/")]
    assert "Urgent</strong>" not in client.get("/home").get_data(as_text=True)


def test_two_roles_see_both_in_urgency_order(app: Flask, client: FlaskClient, session_factory: sessionmaker[Session],
                                             demo_users: dict[str, int]) -> None:
    with unit_of_work(session_factory) as s:
        accounts.create_local_user(s, "test", username="twohats", display_name="Two Hats", password="a-long-pass-99",
                                   roles=["finance", "accreditation_officer"])
        f.accredit(s, "researcher")
    f.approved_project(session_factory)
    record_pending(session_factory, app, "researcher2")
    next_month = (NOW.date().replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    with unit_of_work(session_factory) as s:
        invoices.run_month(s, f.user(s, "twohats"), metering.period_of(NOW), next_month)
    assert waiting(client, session_factory, "twohats") == [
        ("accreditations_to_verify", 1, "/accreditation/queue"), ("invoices_to_issue", 1,
                                                                  "/charging/invoices?state=draft")]
    html = client.get("/home").get_data(as_text=True)
    assert "1 accreditation to verify" in re.sub(r"<[^>]+>", "", html)
    assert "Nothing is waiting for you" not in html
    sign_in_session(client, session_factory, "auditor")
    assert "Nothing is waiting for you" in client.get("/home").get_data(as_text=True)
