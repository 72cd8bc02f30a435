"""Object-level access: a researcher of project A against every object of project B, on the pages and the API.

Every route whose URL carries an object id has its row in MATRIX; a new one fails the coverage test until it is
added. For each row, `researcher` (lead of project A) asks for project B's object and for an id that exists
nowhere, with the route's own method (a valid CSRF token on pages, a plausible body on the API, so the refusal
is the rule's and not the input check's), and must be refused without any change to the database or the
files. The same route on project A's own object must then work for who may use it, so a refusal cannot come
from a broken test. The rule for the status: an object you may not see at all (an application, an output
request, an invoice, an accreditation, a token, a project) answers 404 exactly as a missing id does, so ids
cannot be probed; a route your roles do not reach answers 403 before anything is looked up. Further tests cover
the rules about one person and one object: a DAC member recused from or not assigned to an application, an output
checker on the project's own team, finance on invoices, and a member removed from a project's team.

The world is built once per backend through the real services (it takes a few seconds); the refusals change
nothing, which each test proves, and the positive checks use fresh objects wherever they would use one up.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, url_for
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.test import TestResponse

from gateway import demo
from gateway.app import create_app
from gateway.charging import invoices
from gateway.charging.metering import period_of, record_meter_event
from gateway.config import ExtractSettings, SecuritySettings, Settings
from gateway.db import unit_of_work
from gateway.extracts import service as extracts
from gateway.extracts.models import ExtractVersion
from gateway.identity import accounts, tokens
from gateway.model_registry import metadata
from gateway.models import AuditEvent
from gateway.outputs import service as outputs
from gateway.outputs.models import OutputRequest
from gateway.workspaces import packages
from gateway.workspaces.entitlement import workspace_id
from gateway.workspaces.models import WorkspaceSession
from projects import agreements, applications, dac, lifecycle, organisations
from projects.models import Application, Project
from projects.workflow import ProjectState
from tests.conftest import sign_in_session
from tests.integration.test_accreditation import record_pending
from tests.integration.test_outputs import act, outputs_of, review_all, work
from tests.integration.test_pages import csrf_from
from tests.support import databases
from tests.support import factories as f
from tests.support.handover import hand_over

MISSING = 987_654  # an id that no table reaches in this world
SECRET = "kestrel"  # in every title of project B's objects: no refusal may show it

CSV = "region,count\nNorth,40\nSouth,35\n"
CSV_SECOND = "region,count\nNorth,45\nSouth,30\n"

# URL arguments that are not object ids; every other argument must be covered by the matrix.
NOT_IDS = {"filename", "name", "action"}
# Which of a side's objects an argument names, unless a row says otherwise.
DEFAULT_OBJECT = {
    "application_id": "draft", "user_id": "user", "project_id": "project", "version": "version",
    "request_id": "pending", "file_id": "pending_file", "invoice_id": "invoice", "token_id": "token",
    "accreditation_id": "accreditation", "organisation_id": "organisation", "group_id": "pending_group",
    "comment_id": "comment", "package_request_id": "package_request",
}
# Columns that a refused request may still touch: using a token records when it was last used.
VOLATILE = {("api_tokens", "last_used_at")}
# Sign-in bookkeeping: a browser for a new username is signed in (a row here) the first time a test uses it.
VOLATILE_TABLES = {"web_sessions"}
# A refused request is recorded (access.refused): the tests count those events instead of comparing the log.
AUDIT_TABLES = {"audit_events", "audit_head"}


Body = dict[str, Any] | Callable[[dict[str, int]], dict[str, Any]] | None


@dataclass(frozen=True)
class Case:
    """How one id-bearing route is exercised.

    refused: what researcher A gets for project B's object; missing: for an id that exists nowhere (the same
    unless the object is public). actor/ok: who proves the route works on project A's object, and how it
    answers; fresh names a World builder of a new A-side object for a positive check that uses one up;
    changes: the positive check must write an audit event. mixed: arguments that take another value while the
    rest stay A's (an A request with B's file): the actor must get 404.
    """

    refused: int
    missing: int | None = None
    actor: str = "researcher"
    ok: tuple[int, ...] = (200,)
    fresh: str | None = None
    changes: bool = False
    body: Body = None
    objects: dict[str, str] = field(default_factory=dict)
    mixed: tuple[tuple[str, str], ...] = ()
    check: Callable[[TestResponse], None] | None = None


def _workspace_was_reached(response: TestResponse) -> None:
    """Past the lookup and the entitlement: only the hub (not running in this test) stops it."""
    if response.request.path.startswith("/api/"):
        assert response.json["error"] == "workspace_unavailable", response.json
    else:
        messages = [m for _, m in getattr(response, "flashes", [])]
        assert any("not set up" in m for m in messages), messages


def _refused_by_state(response: TestResponse) -> None:
    """Reached the service, which refused because of the object's state (shown on the page it returns to)."""
    assert [m for category, m in getattr(response, "flashes", []) if category == "error"], "no refusal shown"


PAGE = (302,)
API = (200, 201, 202, 204)
HIDDEN, ROLE = 404, 403  # not yours (answers like missing) / not your role

MATRIX: dict[tuple[str, str], Case] = {
    # --- tokens and accreditation records: their owner's (and the officers') only ---------------------------
    ("account.revoke_token", "POST"): Case(HIDDEN, ok=PAGE, fresh="token", changes=True),
    ("api.revoke_token", "DELETE"): Case(HIDDEN, ok=API, fresh="token", changes=True),
    ("accreditation.detail", "GET"): Case(HIDDEN),
    ("accreditation.certificate", "GET"): Case(HIDDEN),
    ("accreditation.verify", "POST"): Case(ROLE, actor="accreditor", ok=PAGE, fresh="accreditation", changes=True),
    ("accreditation.reject", "POST"): Case(ROLE, actor="accreditor", ok=PAGE, fresh="accreditation", changes=True,
                                           body={"reason": "The certificate is for somebody else."}),
    ("api.get_accreditation", "GET"): Case(HIDDEN),
    ("api.get_accreditation_certificate", "GET"): Case(HIDDEN),
    ("api.verify_accreditation", "POST"): Case(ROLE, actor="accreditor", ok=API, fresh="accreditation",
                                               changes=True),
    ("api.reject_accreditation", "POST"): Case(ROLE, actor="accreditor", ok=API, fresh="accreditation", changes=True,
                                               body={"reason": "The certificate is for somebody else."}),
    # --- people and organisations: administrators only ------------------------------------------------------
    ("admin.user", "GET"): Case(ROLE, actor="admin"),
    ("admin.set_roles", "POST"): Case(ROLE, actor="admin", ok=PAGE, fresh="user", changes=True,
                                      body={"roles": ["researcher", "auditor"], "reason": "Audit duties",
                                            "confirm": "y"}),
    ("admin.unlock", "POST"): Case(ROLE, actor="admin", ok=PAGE, fresh="user"),
    ("admin.reset_second_factor", "POST"): Case(ROLE, actor="admin", ok=PAGE, fresh="user"),
    ("admin.deactivate", "POST"): Case(ROLE, actor="admin", ok=PAGE, fresh="user", changes=True),
    ("admin.activate", "POST"): Case(ROLE, actor="admin", ok=PAGE, fresh="inactive_user", changes=True),
    ("api.get_user", "GET"): Case(ROLE, actor="admin"),
    ("api.set_roles", "PUT"): Case(ROLE, actor="admin", ok=API, fresh="user", changes=True,
                                   body={"roles": ["researcher", "auditor"], "reason": "Audit duties"}),
    ("api.set_active", "PUT"): Case(ROLE, actor="admin", ok=API, fresh="user", changes=True,
                                    body={"is_active": False}),
    ("api.set_user_organisation", "PUT"): Case(ROLE, actor="admin", ok=API, fresh="user", changes=True,
                                               body=lambda ids: {"organisation_id": ids["organisation"]}),
    ("api.unlock_user", "POST"): Case(ROLE, actor="admin", ok=API, fresh="user"),
    ("api.reset_second_factor", "DELETE"): Case(ROLE, actor="admin", ok=API, fresh="user"),
    # package requests: administrators decide them (a researcher is refused by role before any lookup)
    ("packages.decide", "POST"): Case(ROLE, actor="admin", ok=PAGE, fresh="package_request", changes=True,
                                      body=lambda ids: {f"r{ids['package_request']}-decision": "approve"}),
    ("api.approve_package_request", "POST"): Case(ROLE, actor="admin", ok=API, fresh="package_request",
                                                  changes=True, body={}),
    ("api.refuse_package_request", "POST"): Case(ROLE, actor="admin", ok=API, fresh="package_request",
                                                 changes=True, body={"reason": "Not needed."}),
    ("organisations.detail", "GET"): Case(ROLE, actor="admin"),
    ("organisations.add_member", "POST"): Case(ROLE, actor="admin", ok=PAGE, fresh="user", changes=True,
                                               body=lambda ids: {"user_id": str(ids["user"])}),
    ("organisations.remove_member", "POST"): Case(ROLE, actor="admin", ok=PAGE, fresh="organisation_member",
                                                  changes=True),
    # --- applications: the team's, and (once submitted) the DAC's and administrators' ----------------------
    ("applications.view", "GET"): Case(HIDDEN),
    ("applications.edit", "GET"): Case(HIDDEN),
    ("applications.edit", "POST"): Case(HIDDEN, ok=PAGE, fresh="draft", changes=True,
                                        body={"lay_summary": "Changed by the object-access test."}),
    ("applications.variables", "GET"): Case(HIDDEN),
    ("applications.variables", "POST"): Case(HIDDEN, ok=PAGE, fresh="draft", changes=True,
                                             body={"var": "patients.sex", "just-patients.sex": "sex differences"}),
    ("applications.add_member", "POST"): Case(HIDDEN, ok=PAGE, fresh="draft", changes=True,
                                              body={"username": "aide", "project_role": "analyst"}),
    ("applications.remove_member", "POST"): Case(HIDDEN, ok=PAGE, fresh="draft_with_member", changes=True,
                                                 objects={"user_id": "member"}, mixed=(("user_id", "B"),)),
    ("applications.submit", "GET"): Case(HIDDEN),
    ("applications.submit", "POST"): Case(HIDDEN, ok=PAGE, fresh="draft", changes=True,
                                          body={"accept": "y", "agreement_version": "1"}),
    ("applications.withdraw", "POST"): Case(HIDDEN, ok=PAGE, fresh="draft", changes=True),
    ("applications.assign", "POST"): Case(ROLE, actor="dacchair", ok=PAGE, fresh="submitted", changes=True,
                                          objects={"application_id": "review"},
                                          body=lambda ids: {"reviewers": [str(ids["dac2"])]}),
    ("applications.conflict", "POST"): Case(ROLE, actor="laymember", ok=PAGE, fresh="assigned", changes=True,
                                            objects={"application_id": "review"}, body={"conflict": "no"}),
    ("applications.review", "POST"): Case(ROLE, actor="laymember", ok=PAGE, fresh="declared", changes=True,
                                          objects={"application_id": "review"},
                                          body={"vote": "approve", "round": "1"}),
    ("applications.decide", "POST"): Case(ROLE, actor="dacchair", ok=PAGE, fresh="quorate", changes=True,
                                          objects={"application_id": "review"},
                                          body={"outcome": "rejected", "message": "Not this time.", "round": "1"}),
    ("charging.application_quote", "GET"): Case(HIDDEN),
    ("api.get_application", "GET"): Case(HIDDEN),
    ("api.patch_application", "PATCH"): Case(HIDDEN, ok=API, fresh="draft", changes=True,
                                             body={"lay_summary": "Changed by the object-access test."}),
    ("api.put_variables", "PUT"): Case(HIDDEN, ok=API, fresh="draft", changes=True, body={
        "variables": [{"dataset": "patients", "variable": "sex", "justification": "sex differences"}]}),
    ("api.add_member", "POST"): Case(HIDDEN, ok=API, fresh="draft", changes=True, body={"username": "aide"}),
    ("api.remove_member", "DELETE"): Case(HIDDEN, ok=API, fresh="draft_with_member", changes=True,
                                          objects={"user_id": "member"}, mixed=(("user_id", "B"),)),
    ("api.submit_application", "POST"): Case(HIDDEN, ok=API, fresh="draft", changes=True,
                                             body={"accept_agreement_version": 1}),
    ("api.withdraw_application", "POST"): Case(HIDDEN, ok=API, fresh="draft", changes=True),
    ("api.assign_reviewers", "POST"): Case(ROLE, actor="dacchair", ok=API, fresh="submitted", changes=True,
                                           objects={"application_id": "review"},
                                           body=lambda ids: {"reviewer_ids": [ids["dac2"]]}),
    ("api.declare_conflict", "POST"): Case(ROLE, actor="laymember", ok=API, fresh="assigned", changes=True,
                                           objects={"application_id": "review"}, body={"conflict": False}),
    ("api.get_reviews", "GET"): Case(ROLE, actor="laymember", objects={"application_id": "review"}),
    ("api.post_review", "POST"): Case(ROLE, actor="laymember", ok=API, fresh="declared", changes=True,
                                      objects={"application_id": "review"}, body={"vote": "approve"}),
    ("api.post_decision", "POST"): Case(ROLE, actor="dacchair", ok=API, fresh="quorate", changes=True,
                                        objects={"application_id": "review"},
                                        body={"outcome": "rejected", "message": "Not this time."}),
    ("api.get_application_quote", "GET"): Case(HIDDEN),
    ("applications.apply_suggestion", "POST"): Case(HIDDEN, ok=PAGE, fresh="draft", changes=True,
                                                    body={"date_of_birth": "year", "age_band_years": "10"}),
    ("api.get_risk_preview", "GET"): Case(HIDDEN),
    ("api.apply_risk_suggestion", "POST"): Case(HIDDEN, ok=API, fresh="draft", changes=True,
                                                body={"generalisation": {"date_of_birth": "age_band"}}),
    # --- projects: somebody else's answers 404 like a missing one (finding 11; it used to be 403) ------------
    ("projects.view", "GET"): Case(HIDDEN),
    ("projects.data", "GET"): Case(HIDDEN),
    ("projects.sessions", "GET"): Case(HIDDEN),
    ("projects.outputs", "GET"): Case(HIDDEN),
    ("projects.change_state", "POST"): Case(HIDDEN, ok=PAGE, fresh="project", changes=True,
                                            body={"reason": "The study is finished."}),  # action=close, the lead's
    ("projects.amend", "POST"): Case(HIDDEN, ok=PAGE, fresh="project", changes=True),
    ("projects.raise_security_tier", "POST"): Case(ROLE, actor="admin", ok=PAGE, fresh="project", changes=True,
                                                   body={"reason": "Linked to a rare-disease registry"}),
    ("projects.link_publication", "POST"): Case(HIDDEN, ok=PAGE, changes=True,
                                                body={"doi": "10.1000/walk.1", "title": "A paper from the project"}),
    ("projects.open_workspace", "POST"): Case(HIDDEN, ok=PAGE, check=_workspace_was_reached),
    ("projects.refresh_extract", "POST"): Case(ROLE, actor="admin", ok=PAGE, fresh="idle_project", changes=True),
    ("projects.release_extract", "POST"): Case(ROLE, actor="admin", ok=PAGE, check=_refused_by_state,  # none held
                                               body={"reason": "Reviewed", "confirm": "y"}),
    ("projects.confirm_release", "GET"): Case(ROLE, actor="admin"),
    ("projects.risk_report", "GET"): Case(HIDDEN, mixed=(("version", "missing"),)),
    ("projects.confirm_revoke", "GET"): Case(ROLE, actor="admin"),
    ("projects.extract_manifest", "GET"): Case(HIDDEN, mixed=(("version", "missing"),)),
    ("outputs.new", "GET"): Case(HIDDEN),
    ("outputs.new", "POST"): Case(HIDDEN, ok=PAGE, changes=True, body={"title": "New outputs"}),
    ("charging.statement", "GET"): Case(HIDDEN),
    ("charging.set_budget", "POST"): Case(ROLE, actor="finance", ok=PAGE, fresh="project", changes=True,
                                          body={"cap": "60000", "reason": "Purchase order 7"}),
    ("api.get_project", "GET"): Case(HIDDEN),
    ("api.suspend_project", "POST"): Case(ROLE, actor="admin", ok=API, fresh="project", changes=True,
                                          body={"reason": "Audit finding"}),
    ("api.reinstate_project", "POST"): Case(ROLE, actor="admin", ok=API, fresh="suspended_project", changes=True,
                                            body={"reason": "Finding closed"}),
    ("api.revoke_project", "POST"): Case(ROLE, actor="admin", ok=API, fresh="project", changes=True,
                                         body={"reason": "Breach of conditions"}),
    ("api.raise_security_tier", "POST"): Case(ROLE, actor="admin", ok=API, fresh="project", changes=True,
                                              body={"reason": "Linked to a rare-disease registry"}),
    ("api.close_project", "POST"): Case(HIDDEN, ok=API, fresh="project", changes=True,
                                        body={"reason": "The study is finished."}),
    ("api.start_amendment", "POST"): Case(HIDDEN, ok=API, fresh="project", changes=True),
    ("api.list_extracts", "GET"): Case(HIDDEN),
    ("api.refresh_extract", "POST"): Case(ROLE, actor="admin", ok=API, fresh="idle_project", changes=True),
    ("api.release_extract", "POST"): Case(ROLE, actor="admin", ok=(409,),  # nothing held: refused by state
                                          body={"reason": "Reviewed"}),
    ("api.open_workspace", "POST"): Case(HIDDEN, ok=(503,), check=_workspace_was_reached),
    ("api.create_output_request", "POST"): Case(HIDDEN, ok=API, changes=True, body={"title": "New outputs"}),
    ("api.get_statement", "GET"): Case(HIDDEN),
    ("api.get_budget", "GET"): Case(HIDDEN),
    ("api.put_budget", "PUT"): Case(ROLE, actor="finance", ok=API, fresh="project", changes=True,
                                    body={"cap_pence": 5_000_000, "reason": "Purchase order 8"}),
    # --- output requests: the project's team, and output checkers (never on their own team's) ----------------
    ("outputs.view", "GET"): Case(HIDDEN),
    ("outputs.save_group", "POST"): Case(HIDDEN, ok=PAGE, fresh="pending", changes=True,
                                         body={"name": "Second group", "context": "What", "controls": "How"}),
    ("outputs.remove_file", "POST"): Case(HIDDEN, ok=PAGE, fresh="pending", changes=True,
                                          mixed=(("file_id", "B"),)),
    ("outputs.submit", "POST"): Case(HIDDEN, ok=PAGE, fresh="pending", changes=True),
    ("outputs.withdraw", "POST"): Case(HIDDEN, ok=PAGE, fresh="pending", changes=True),
    ("outputs.comment", "POST"): Case(HIDDEN, ok=PAGE, changes=True,
                                      body={"text": "A question for the checkers.", "visibility": "public",
                                            "round": "1"}),
    ("outputs.vote", "POST"): Case(ROLE, actor="checker1", ok=PAGE, fresh="submitted_request", changes=True,
                                   objects={"request_id": "submitted", "file_id": "submitted_file"},
                                   body={"vote": "approve", "round": "1"}, mixed=(("file_id", "B"),)),
    ("outputs.submit_review", "POST"): Case(ROLE, actor="checker1", ok=PAGE, fresh="voted_request", changes=True,
                                            objects={"request_id": "submitted"}, body={"round": "1"}),
    ("outputs.decide", "POST"): Case(ROLE, actor="checker1", ok=PAGE, fresh="reviewed_request", changes=True,
                                     objects={"request_id": "submitted"}, body={"outcome": "approve", "round": "1"}),
    ("outputs.preview", "GET"): Case(ROLE, actor="checker1",
                                     objects={"request_id": "submitted", "file_id": "submitted_file"},
                                     mixed=(("file_id", "B"),)),
    ("outputs.package", "GET"): Case(HIDDEN, objects={"request_id": "released"}),
    ("api.get_output_request", "GET"): Case(HIDDEN),
    ("api.add_output_group", "POST"): Case(HIDDEN, ok=API, fresh="pending", changes=True,
                                           body={"name": "Second group", "context": "What", "controls": "How"}),
    ("api.submit_output_request", "POST"): Case(HIDDEN, ok=API, fresh="pending", changes=True),
    ("api.withdraw_output_request", "POST"): Case(HIDDEN, ok=API, fresh="pending", changes=True),
    ("api.vote_output_file", "PUT"): Case(ROLE, actor="checker1", ok=API, fresh="submitted_request", changes=True,
                                          objects={"request_id": "submitted", "file_id": "submitted_file"},
                                          body={"vote": "approve"}, mixed=(("file_id", "B"),)),
    ("api.submit_output_review", "POST"): Case(ROLE, actor="checker1", ok=API, fresh="voted_request", changes=True,
                                               objects={"request_id": "submitted"}),
    ("api.decide_output_request", "POST"): Case(ROLE, actor="checker1", ok=API, fresh="reviewed_request",
                                                changes=True, objects={"request_id": "submitted"},
                                                body={"outcome": "approve"}),
    ("api.get_output_package", "GET"): Case(HIDDEN, objects={"request_id": "released"}),
    # the checker workflow (issue 14): exceptions, early return, group votes, comments made public
    ("outputs.request_exception", "POST"): Case(HIDDEN, ok=PAGE, fresh="failing_request", changes=True,
                                                objects={"request_id": "submitted", "file_id": "submitted_file"},
                                                body={"justification": "A published national figure: no new "
                                                                       "information."}, mixed=(("file_id", "B"),)),
    ("outputs.decide_exception", "POST"): Case(ROLE, actor="checker1", ok=PAGE, fresh="excepted_request",
                                               changes=True,
                                               objects={"request_id": "submitted", "file_id": "submitted_file"},
                                               body={"decision": "accept", "reason": "Checked the source.",
                                                     "round": "1", "justification_sha256": hashlib.sha256(
                                                         b"A published national figure: no new information.")
                                                     .hexdigest()},
                                               mixed=(("file_id", "B"),)),
    ("outputs.return_early", "POST"): Case(ROLE, actor="checker1", ok=PAGE, fresh="submitted_request", changes=True,
                                           objects={"request_id": "submitted"},
                                           body={"comment": "Label the axes.", "round": "1"}),
    ("outputs.vote_group", "POST"): Case(ROLE, actor="checker1", ok=PAGE, fresh="submitted_request", changes=True,
                                         objects={"request_id": "submitted", "group_id": "submitted_group"},
                                         body={"vote": "changes_requested", "round": "1"},
                                         mixed=(("group_id", "B"),)),
    ("outputs.publish_comment", "POST"): Case(ROLE, actor="checker1", ok=PAGE, fresh="private_comment",
                                              changes=True, objects={"request_id": "submitted"},
                                              mixed=(("comment_id", "B"),)),
    ("api.request_output_exception", "POST"): Case(
        HIDDEN, ok=API, fresh="failing_request", changes=True,
        objects={"request_id": "submitted", "file_id": "submitted_file"},
        body={"justification": "A published national figure: no new information."}, mixed=(("file_id", "B"),)),
    ("api.decide_output_exception", "PUT"): Case(
        ROLE, actor="checker1", ok=API, fresh="excepted_request", changes=True,
        objects={"request_id": "submitted", "file_id": "submitted_file"},
        body={"decision": "accept", "reason": "Checked the source."}, mixed=(("file_id", "B"),)),
    ("api.return_output_request", "POST"): Case(ROLE, actor="checker1", ok=API, fresh="submitted_request",
                                                changes=True, objects={"request_id": "submitted"},
                                                body={"comment": "Label the axes."}),
    ("api.vote_output_group", "PUT"): Case(ROLE, actor="checker1", ok=API, fresh="submitted_request", changes=True,
                                           objects={"request_id": "submitted", "group_id": "submitted_group"},
                                           body={"vote": "changes_requested"}, mixed=(("group_id", "B"),)),
    ("api.publish_output_comment", "POST"): Case(ROLE, actor="checker1", ok=API, fresh="private_comment",
                                                 changes=True, objects={"request_id": "submitted"},
                                                 mixed=(("comment_id", "B"),)),
    # --- invoices: finance, and the project's team once issued ----------------------------------------------
    ("charging.invoice", "GET"): Case(HIDDEN),
    ("charging.invoice_as_pdf", "GET"): Case(HIDDEN),
    ("charging.invoice_as_csv", "GET"): Case(HIDDEN),
    ("charging.issue", "POST"): Case(ROLE, actor="finance", ok=PAGE, fresh="draft_invoice", changes=True),
    ("charging.pay", "POST"): Case(ROLE, actor="finance", ok=PAGE, fresh="issued_invoice", changes=True,
                                   body={"reference": "BACS 1"}),
    ("charging.void", "POST"): Case(ROLE, actor="finance", ok=PAGE, fresh="draft_invoice", changes=True,
                                    body={"reason": "Raised in error"}),
    ("charging.credit", "POST"): Case(ROLE, actor="finance", ok=PAGE, fresh="issued_invoice", changes=True,
                                      body={"amount": "1.00", "credit_reason": "Goodwill"}),
    ("charging.add_line", "POST"): Case(ROLE, actor="finance", ok=PAGE, fresh="draft_invoice", changes=True,
                                        body={"description": "Extra support", "quantity": "1", "unit_price": "1.00"}),
    ("api.get_invoice", "GET"): Case(HIDDEN),
    ("api.get_invoice_pdf", "GET"): Case(HIDDEN),
    ("api.get_invoice_csv", "GET"): Case(HIDDEN),
    ("api.add_invoice_line", "POST"): Case(ROLE, actor="finance", ok=API, fresh="draft_invoice", changes=True,
                                           body={"description": "Extra support", "quantity": 1, "unit_pence": 100}),
    ("api.issue_invoice", "POST"): Case(ROLE, actor="finance", ok=API, fresh="draft_invoice", changes=True),
    ("api.pay_invoice", "POST"): Case(ROLE, actor="finance", ok=API, fresh="issued_invoice", changes=True,
                                      body={"reference": "BACS 2"}),
    ("api.void_invoice", "POST"): Case(ROLE, actor="finance", ok=API, fresh="draft_invoice", changes=True,
                                       body={"reason": "Raised in error"}),
    ("api.credit_invoice", "POST"): Case(ROLE, actor="finance", ok=API, fresh="issued_invoice", changes=True,
                                         body={"net_pence": 100, "reason": "Goodwill"}),
}


# --- the world: two projects with different teams, every kind of object on each side -------------------------

def _approve(factory: sessionmaker[Session], app_id: int, applicant: str, *, amendment: bool = False) -> int:
    """Submit, review and approve through the real services; returns the project's id."""
    f.submit(factory, app_id, applicant)
    votes = {"dac1": "approve"} if amendment else {"dac1": "approve", "dac2": "approve", "laymember": "approve"}
    f.review_round(factory, app_id, votes)
    with unit_of_work(factory) as s:
        application = s.get(Application, app_id)
        assert application is not None
        dac.decide(s, f.user(s, "dacchair"), application, f.DAC, outcome="approved", conditions="", message="",
                   access_end_date=None if amendment else f.TODAY + dt.timedelta(days=365), today=f.TODAY)
        return application.project_id if amendment else s.scalars(
            select(Project.id).where(Project.application_id == app_id)).one()


class World:
    def __init__(self, app: Flask) -> None:
        self.app = app
        self.settings: Settings = app.extensions["sde_settings"]
        self.factory: sessionmaker[Session] = app.extensions["sde_sessionmaker"]
        self.objects: dict[str, dict[str, int]] = {"A": {}, "B": {}}
        self.people: dict[str, int] = {}
        self.bearer: dict[str, str] = {}
        self._clients: dict[str, tuple[FlaskClient, str]] = {}
        self._serial = itertools.count(1)
        self._months = itertools.count(3)  # fresh invoices each get a month of their own, from three months on

    # -- building --

    def build(self) -> None:
        a, b = self.objects["A"], self.objects["B"]
        with unit_of_work(self.factory) as s:
            demo.seed_users(s, "test")
            agreements.ensure_default(s, "test")
            for username, roles in (("dualrole", ["researcher", "output_checker"]), ("exmember", ["researcher"]),
                                    ("aide", ["researcher"]), ("bhelper", ["researcher"])):
                accounts.create_local_user(s, "test", username=username, display_name=username.title(),
                                           password="unused-password-1", roles=roles,
                                           password_hash=demo.demo_password_hash())
            for username in ("researcher", "researcher2", "dualrole", "exmember", "aide", "bhelper"):
                f.accredit(s, username)
            admin = f.user(s, "admin")
            a["organisation"] = organisations.create_organisation(s, admin, "Organisation A", "academic").id
            org_b = organisations.create_organisation(s, admin, f"Organisation B {SECRET}", "charity")
            organisations.assign_user(s, admin, f.user(s, "researcher2"), org_b)
            b["organisation"] = org_b.id
        with self.factory() as s:
            self.people = {u.username: u.id for u in accounts.list_users(s, f.user(s, "admin"))}
        a["user"], b["user"] = self.people["aide"], self.people["researcher2"]

        # Project A: `researcher` leads, `dualrole` (also an output checker) is on the team.
        a["approved"] = f.draft(self.factory, "researcher", "Asthma in A")
        self._add_member(a["approved"], "researcher", "dualrole")
        a["project"] = _approve(self.factory, a["approved"], "researcher")
        # Project B: `researcher2` leads, `exmember` is on the team (until the amendment below).
        b["approved"] = f.draft(self.factory, "researcher2", f"Kidney outcomes {SECRET}")
        self._add_member(b["approved"], "researcher2", "exmember")
        b["project"] = _approve(self.factory, b["approved"], "researcher2")
        self._run_builds()
        a["version"] = b["version"] = 1

        # This month's invoices, issued: each team may see its own.
        with unit_of_work(self.factory) as s:
            finance, today = f.user(s, "finance"), dt.date.today()
            run = invoices.run_month(s, finance, period_of(today), today.replace(day=1) + dt.timedelta(days=32))
            for invoice in run.created:
                invoices.issue(s, finance, invoice, today)
            issued = {i.project_id: i.id for i in run.created}
        a["invoice"], b["invoice"] = issued[a["project"]], issued[b["project"]]

        # Output requests on each side: pending, submitted (checked by the worker) and released.
        for side, author in (("A", "researcher"), ("B", "researcher2")):
            o, project = self.objects[side], self.objects[side]["project"]
            tag = SECRET if side == "B" else "A"
            pending = self.new_request(author, project, f"Pending {tag}")
            o["pending"], o["pending_file"], o["pending_group"] = pending
            o["submitted"], o["submitted_file"], o["submitted_group"] = self.new_request(author, project,
                                                                                         f"Submitted {tag}", "submit")
            o["released"], _, _ = self.new_request(author, project, f"Released {tag}", "release")
        with unit_of_work(self.factory) as s:  # a comment on B's request, by its author
            request = s.get(OutputRequest, b["submitted"])
            assert request is not None
            b["comment"] = outputs.add_comment(s, f.user(s, "researcher2"), request, f"About {SECRET}", "public").id
            request = s.get(OutputRequest, a["pending"])
            assert request is not None
            a["comment"] = outputs.add_comment(s, f.user(s, "researcher"), request, "About A", "public").id
        b["exmember_request"], _, _ = self.new_request("exmember", b["project"], f"Ex-member's {SECRET}")
        a["package_request"] = self.fresh_package_request()["package_request"]
        with unit_of_work(self.factory) as s:
            b["package_request"] = packages.request_package(s, f.user(s, "researcher2"), "python", "kestrel-b", "",
                                                            f"For {SECRET}").id

        # The checks above were metered: next month's invoices are drafts, which only finance sees.
        with unit_of_work(self.factory) as s:
            today = dt.date.today()
            later = today.replace(day=1) + dt.timedelta(days=63)
            run = invoices.run_month(s, f.user(s, "finance"), period_of(later.replace(day=1) - dt.timedelta(days=1)),
                                     later)
            drafts = {i.project_id: i.id for i in run.created}
        a["draft_invoice"], b["draft_invoice"] = drafts[a["project"]], drafts[b["project"]]

        # B's amendment takes `exmember` off the team.
        with unit_of_work(self.factory) as s:
            project = s.get(Project, b["project"])
            assert project is not None
            lead = f.user(s, "researcher2")
            amendment = applications.start_amendment(s, lead, project)
            applications.update_draft(s, lead, amendment, {"amendment_summary": f"Tom leaves {SECRET}."})
            applications.remove_member(s, lead, amendment, self.people["exmember"])
            b["amendment"] = amendment.id
        _approve(self.factory, b["amendment"], "researcher2", amendment=True)

        # Applications: a draft each (B's with a second member), and one under review each. On B's, dac1 declared
        # a conflict (recused) and the lay member has voted; dac2 and the chair are not assigned.
        a["draft"] = f.draft(self.factory, "researcher", "Draft A")
        self._add_member(a["draft"], "researcher", "aide")
        b["draft"] = f.draft(self.factory, "researcher2", f"Draft {SECRET}")
        self._add_member(b["draft"], "researcher2", "bhelper")
        a["member"], b["member"] = self.people["aide"], self.people["bhelper"]
        a["review"] = self.fresh_assigned()["review"]
        b["review"] = f.draft(self.factory, "researcher2", f"Under review {SECRET}")
        f.submit(self.factory, b["review"], "researcher2")
        with unit_of_work(self.factory) as s:
            application = s.get(Application, b["review"])
            assert application is not None
            dac.assign_reviewers(s, f.user(s, "dacchair"), application, [f.user(s, "dac1"), f.user(s, "laymember")])
            dac.declare_conflict(s, f.user(s, "dac1"), application, True, "I co-supervise the applicant.")
            dac.declare_conflict(s, f.user(s, "laymember"), application, False, "")
            dac.submit_review(s, f.user(s, "laymember"), application, "approve", f"lay note {SECRET}", "")

        # Accreditation records with their certificates, tokens, a workspace session.
        a["accreditation"] = record_pending(self.factory, self.app, "researcher")
        b["accreditation"] = record_pending(self.factory, self.app, "researcher2")
        with unit_of_work(self.factory) as s:
            for username in ("researcher", "researcher2", "dualrole", "exmember", "checker1", "checker2", "dac1",
                             "dac2", "dacchair", "laymember", "finance", "admin", "accreditor", "auditor"):
                _, self.bearer[username] = tokens.create_token(s, "test", f.user(s, username), "object walk")
            b["token"] = tokens.create_token(s, "test", f.user(s, "researcher2"), f"spare {SECRET}")[0].id
            project_b = s.get(Project, b["project"])
            assert project_b is not None
            # A row, not a spawn: the hub does not run in this test (its own tests start real servers).
            s.add(WorkspaceSession(project_id=project_b.id, user_id=self.people["researcher2"],
                                   server_name=workspace_id(project_b), tier="small"))
        a["token"] = self.fresh_token()["token"]
        a["dac2"] = b["dac2"] = self.people["dac2"]

    def _add_member(self, app_id: int, lead: str, member: str) -> None:
        with unit_of_work(self.factory) as s:
            application = s.get(Application, app_id)
            assert application is not None
            applications.add_member(s, f.user(s, lead), application, f.user(s, member), "analyst")

    def _run_builds(self) -> None:
        """Build what is queued; a version held for the custodian (a small population) is released by the admin
        (none of a closed or revoked project: nothing can be released into those)."""
        extracts.run_queued_builds(self.settings, self.factory)
        with self.factory() as s:
            held = [(v.project_id, v.version) for v in s.scalars(select(ExtractVersion).join(
                Project, Project.id == ExtractVersion.project_id).where(
                ExtractVersion.status == "held_for_custodian", ExtractVersion.released_at.is_(None),
                Project.state.not_in([ProjectState.CLOSED, ProjectState.REVOKED])))]
        for project_id, version in held:
            f.release_extract(self.settings, self.factory, project_id, version)

    def new_request(self, author: str, project_id: int, title: str, stage: str = "pending",
                    content: str = CSV) -> tuple[int, int, int]:
        """An output request with one group and one CSV: (request, file, group), taken to `stage`."""
        folder = outputs_of(self.settings, self.factory, author, project_id)
        (folder / "counts.csv").write_text(content)
        (folder / "second.csv").write_text(CSV_SECOND)
        with unit_of_work(self.factory) as s:
            project = s.get(Project, project_id)
            assert project is not None
            actor = f.user(s, author)
            request = outputs.create_request(s, actor, project, title)
            group = outputs.save_group(s, actor, request, "Counts by region", "Patients by region, whole extract.",
                                       "Every cell is 10 or more.")
            ids = (request.id, 0, group.id)
        ids = (ids[0], hand_over(self.factory, self.settings, ids[0], folder, "counts.csv", ids[2], "output", author),
               ids[2])
        if stage != "pending":
            act(self.factory, ids[0], author, outputs.submit, self.settings)
            work(self.factory, self.settings)
        if stage in {"voted", "reviewed", "release"}:
            with unit_of_work(self.factory) as s:
                request = s.get(OutputRequest, ids[0])
                assert request is not None
                outputs.vote(s, f.user(s, "checker1"), request, request.files[0], "approve")
        if stage in {"reviewed", "release"}:
            review_all(self.factory, ids[0], "checker1", "approve")
            review_all(self.factory, ids[0], "checker2", "approve")
        if stage == "release":
            act(self.factory, ids[0], "checker1", outputs.decide, "approve", "")
            work(self.factory, self.settings)
        return ids

    # -- fresh A-side objects, for positive checks that use one up --

    def fresh_package_request(self) -> dict[str, int]:
        with unit_of_work(self.factory) as s:
            return {"package_request": packages.request_package(s, f.user(s, "researcher"), "python",
                                                                f"fresh-{next(self._serial)}", "", "For A").id}

    def fresh_token(self) -> dict[str, int]:
        with unit_of_work(self.factory) as s:
            return {"token": tokens.create_token(s, "test", f.user(s, "researcher"), "to revoke")[0].id}

    def fresh_accreditation(self) -> dict[str, int]:
        return {"accreditation": record_pending(self.factory, self.app, "researcher")}

    def fresh_user(self, active: bool = True) -> dict[str, int]:
        with unit_of_work(self.factory) as s:
            person = accounts.create_local_user(s, "test", username=f"fresh{next(self._serial)}",
                                                display_name="Fresh Person", password="unused-password-1",
                                                roles=["researcher"], password_hash=demo.demo_password_hash())
            if not active:
                accounts.set_active(s, f.user(s, "admin"), person, False)
            return {"user": person.id}

    def fresh_inactive_user(self) -> dict[str, int]:
        return self.fresh_user(active=False)

    def fresh_organisation_member(self) -> dict[str, int]:
        ids = self.fresh_user()
        with unit_of_work(self.factory) as s:
            admin = f.user(s, "admin")
            organisation = organisations.create_organisation(s, admin, f"Fresh {next(self._serial)}", "academic")
            person = accounts.get_user(s, ids["user"])
            organisations.assign_user(s, admin, person, organisation)
            return {"user": person.id, "organisation": organisation.id}

    def fresh_draft(self) -> dict[str, int]:
        return {"draft": f.draft(self.factory, "researcher", f"Fresh draft {next(self._serial)}")}

    def fresh_draft_with_member(self) -> dict[str, int]:
        ids = self.fresh_draft()
        self._add_member(ids["draft"], "researcher", "aide")
        return {**ids, "member": self.people["aide"]}

    def fresh_submitted(self) -> dict[str, int]:
        app_id = self.fresh_draft()["draft"]
        f.submit(self.factory, app_id)
        return {"review": app_id}

    def fresh_assigned(self) -> dict[str, int]:
        ids = self.fresh_submitted()
        with unit_of_work(self.factory) as s:
            application = s.get(Application, ids["review"])
            assert application is not None
            dac.assign_reviewers(s, f.user(s, "dacchair"), application, [f.user(s, "laymember")])
        return ids

    def fresh_declared(self) -> dict[str, int]:
        ids = self.fresh_assigned()
        with unit_of_work(self.factory) as s:
            application = s.get(Application, ids["review"])
            assert application is not None
            dac.declare_conflict(s, f.user(s, "laymember"), application, False, "")
        return ids

    def fresh_quorate(self) -> dict[str, int]:
        ids = self.fresh_submitted()
        f.review_round(self.factory, ids["review"], {"dac1": "approve", "dac2": "approve", "laymember": "approve"})
        return ids

    def fresh_project(self) -> dict[str, int]:
        app_id = f.draft(self.factory, "researcher", f"Fresh project {next(self._serial)}")
        return {"project": _approve(self.factory, app_id, "researcher")}

    def fresh_suspended_project(self) -> dict[str, int]:
        ids = self.fresh_project()
        with unit_of_work(self.factory) as s:
            project = s.get(Project, ids["project"])
            assert project is not None
            lifecycle.suspend(s, f.user(s, "admin"), project, "Audit finding")
        return ids

    def fresh_idle_project(self) -> dict[str, int]:
        """Project A with no build waiting, so the custodian may ask for a new one."""
        self._run_builds()
        return {}

    def fresh_pending(self) -> dict[str, int]:
        request, item, group = self.new_request("researcher", self.objects["A"]["project"], "Fresh outputs")
        # the notebook writes the file again, so that updating the request's copy has something to take
        (outputs_of(self.settings, self.factory, "researcher", self.objects["A"]["project"]) / "counts.csv") \
            .write_text(CSV_SECOND)
        return {"pending": request, "pending_file": item, "pending_group": group}

    def fresh_submitted_request(self) -> dict[str, int]:
        request, item, group = self.new_request("researcher", self.objects["A"]["project"], "Fresh outputs",
                                                "submit")
        return {"submitted": request, "submitted_file": item, "submitted_group": group}

    def fresh_failing_request(self) -> dict[str, int]:
        """A submitted request whose one file fails its automatic check (a count of 3)."""
        request, item, group = self.new_request("researcher", self.objects["A"]["project"], "Failing outputs",
                                                "submit", content="region,count\nNorth,40\nSouth,3\n")
        with self.factory() as s:
            stored = s.get(OutputRequest, request)
            assert stored is not None and stored.files[0].check_status == "fail"
        return {"submitted": request, "submitted_file": item, "submitted_group": group}

    def fresh_excepted_request(self) -> dict[str, int]:
        ids = self.fresh_failing_request()
        with unit_of_work(self.factory) as s:
            request = s.get(OutputRequest, ids["submitted"])
            assert request is not None
            outputs.request_exception(s, f.user(s, "researcher"), request, request.files[0],
                                      "A published national figure: no new information.", self.settings)
        return ids

    def fresh_private_comment(self) -> dict[str, int]:
        ids = self.fresh_submitted_request()
        with unit_of_work(self.factory) as s:
            request = s.get(OutputRequest, ids["submitted"])
            assert request is not None
            comment = outputs.add_comment(s, f.user(s, "checker1"), request, "Between checkers.", "private")
            return {**ids, "comment": comment.id}

    def fresh_voted_request(self) -> dict[str, int]:
        request, item, _ = self.new_request("researcher", self.objects["A"]["project"], "Fresh outputs", "voted")
        return {"submitted": request, "submitted_file": item}

    def fresh_reviewed_request(self) -> dict[str, int]:
        request, item, _ = self.new_request("researcher", self.objects["A"]["project"], "Fresh outputs",
                                            "reviewed")
        return {"submitted": request, "submitted_file": item}

    def fresh_draft_invoice(self) -> dict[str, int]:
        """A fee in a month of its own for project A, invoiced as a draft."""
        first = (dt.date.today().replace(day=1) + dt.timedelta(days=31 * next(self._months))).replace(day=1)
        with unit_of_work(self.factory) as s:
            project = s.get(Project, self.objects["A"]["project"])
            assert project is not None
            key = f"object-walk-fee-{first.isoformat()}"
            record_meter_event(s, project, "fee", 1, key, occurred_at=dt.datetime.combine(first, dt.time(12), dt.UTC),
                               description="Support", amount_pence=1000)
            run = invoices.run_month(s, f.user(s, "finance"), period_of(first), first + dt.timedelta(days=40))
            return {"invoice": next(i.id for i in run.created if i.project_id == project.id)}

    def fresh_issued_invoice(self) -> dict[str, int]:
        ids = self.fresh_draft_invoice()
        with unit_of_work(self.factory) as s:
            invoice = invoices.get_invoice(s, f.user(s, "finance"), ids["invoice"])
            invoices.issue(s, f.user(s, "finance"), invoice, dt.date.today())
        return ids

    # -- asking --

    def values(self, endpoint: str, case: Case, side: str, overrides: dict[str, int] | None = None,
               mixed: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
        """The URL's arguments: each id names one of the side's objects, or none at all ('missing')."""
        rule = next(r for r in self.app.url_map.iter_rules() if r.endpoint == endpoint)
        values: dict[str, Any] = {}
        swapped = dict(mixed)
        for arg in rule.arguments:
            if arg == "action":
                values[arg] = "close"
                continue
            key = case.objects.get(arg, DEFAULT_OBJECT[arg])
            where = swapped.get(arg, side)
            if where == "missing":
                values[arg] = MISSING
            elif where == "A":
                values[arg] = {**self.objects["A"], **(overrides or {})}[key]
            else:
                values[arg] = self.objects[where][key]
        return values

    def url(self, endpoint: str, values: dict[str, Any]) -> str:
        with self.app.test_request_context():
            return url_for(endpoint, **values)

    def client(self, username: str) -> tuple[FlaskClient, str]:
        """A signed-in browser with its CSRF token (kept for the module: the token lives in its session)."""
        if username not in self._clients:
            browser = self.app.test_client()
            sign_in_session(browser, self.factory, username)
            self._clients[username] = browser, csrf_from(browser.get("/account/").get_data(as_text=True))
        return self._clients[username]

    def call(self, endpoint: str, method: str, case: Case, username: str, values: dict[str, Any],
             ids: dict[str, int]) -> TestResponse:
        url = self.url(endpoint, values)
        body = case.body(ids) if callable(case.body) else case.body
        return self.api(username, method, url, body) if endpoint.startswith("api.") else \
            self.page(username, method, url, body)

    def api(self, username: str, method: str, url: str, body: dict[str, Any] | None = None) -> TestResponse:
        kwargs: dict[str, Any] = {"headers": {"Authorization": f"Bearer {self.bearer[username]}"}}
        if body is not None:
            kwargs["json"] = body
        response = self.app.test_client().open(url, method=method, **kwargs)
        response.get_data()
        response.close()
        return response

    def page(self, username: str, method: str, url: str, form: dict[str, Any] | None = None) -> TestResponse:
        """A page as a signed-in browser sees it; a POST carries the session's CSRF token."""
        browser, token = self.client(username)
        data = None if method == "GET" else {"csrf_token": token, **(form or {})}
        response = browser.open(url, method=method, data=data)
        with browser.session_transaction() as session:
            response.flashes = session.pop("_flashes", [])  # type: ignore[attr-defined]
        response.get_data()
        response.close()
        return response

    def audit_count(self) -> int:
        with self.factory() as s:
            return s.scalar(select(func.count()).select_from(AuditEvent)) or 0

    def audit_events_after(self, seq: int) -> list[AuditEvent]:
        with self.factory() as s:
            return list(s.scalars(select(AuditEvent).where(AuditEvent.seq > seq).order_by(AuditEvent.seq)))

    def audit_head(self) -> int:
        with self.factory() as s:
            return s.scalar(select(func.max(AuditEvent.seq))) or 0

    def snapshot(self) -> dict[str, str]:
        """Every table's rows (less the volatile columns, and less the audit log, where a refusal is recorded: each
        test checks what it gained) and every file the gateway keeps, as digests."""
        state: dict[str, str] = {}
        with self.factory() as s:
            for table in metadata.sorted_tables:
                if table.name in VOLATILE_TABLES | AUDIT_TABLES:
                    continue
                columns = [c for c in table.columns if (table.name, c.name) not in VOLATILE]
                rows = sorted(repr(tuple(row)) for row in s.execute(select(*columns)))
                state[table.name] = f"{len(rows)} rows {hashlib.sha256(chr(10).join(rows).encode()).hexdigest()}"
        root: Path = self.settings.instance_dir
        files = sorted(f"{p.relative_to(root)} {p.stat().st_size} {p.stat().st_mtime_ns}"
                       for p in root.rglob("*") if p.is_file())
        state["files"] = f"{len(files)} files {hashlib.sha256(chr(10).join(files).encode()).hexdigest()}"
        return state


@pytest.fixture(scope="module", params=databases.backends())
def world(request: pytest.FixtureRequest, sqlite_template: databases.SqliteTemplate,
          postgres_db: databases.PostgresDatabase | None, tmp_path_factory: pytest.TempPathFactory,
          synthetic_source: Path) -> Iterator[World]:
    """Built once per backend; the refusals change nothing (each test checks) so the tests can share it."""
    directory = tmp_path_factory.mktemp(f"objects-{request.param}")
    if request.param == "postgresql":
        assert postgres_db is not None
        url = postgres_db.reset()
    else:
        url = sqlite_template.fresh(directory)
    settings = Settings(env="test", instance_dir=directory / "instance", database_url=url,
                        secret_key="test-secret-key", security=SecuritySettings(token_limit="100000/minute"),
                        extracts=ExtractSettings(source_dir=synthetic_source))
    app = create_app(settings)
    built = World(app)
    built.build()
    yield built
    app.extensions["sde_engine"].dispose()


def _id_routes(app: Flask) -> set[tuple[str, str]]:
    return {(rule.endpoint, method) for rule in app.url_map.iter_rules() if set(rule.arguments) - NOT_IDS
            for method in rule.methods or () if method not in {"HEAD", "OPTIONS"}}


def _expect(response: TestResponse, status: int, where: str) -> None:
    assert response.status_code == status, f"{where}: {response.status_code}"
    if response.request.path.startswith("/api/"):
        # a role's refusal may name the token's scope, which only ever holds the owner's permissions
        expected = {403: {"forbidden", "insufficient_scope"}, 404: {"not_found"}}[status]
        assert response.json["error"] in expected, f"{where}: {response.json}"
    assert SECRET not in response.get_data(as_text=True), f"{where} shows project B's data"


def _is_api(endpoint: str) -> bool:
    return endpoint.startswith("api.")


# --- the matrix --------------------------------------------------------------------------------------------------

def test_every_route_with_an_object_id_is_in_the_matrix(world: World) -> None:
    routes = _id_routes(world.app)
    assert routes - set(MATRIX) == set(), "a route whose URL carries an id needs its row in MATRIX"
    assert set(MATRIX) - routes == set(), "MATRIX lists routes that no longer exist"


@pytest.mark.parametrize("route", sorted(MATRIX), ids=lambda r: f"{r[1]} {r[0]}")
def test_a_researcher_of_project_a_is_refused_project_b_objects_and_changes_nothing(
        world: World, route: tuple[str, str]) -> None:
    endpoint, method = route
    case = MATRIX[route]
    before, head = world.snapshot(), world.audit_head()
    theirs = world.call(endpoint, method, case, "researcher", world.values(endpoint, case, "B"), world.objects["B"])
    nowhere = world.call(endpoint, method, case, "researcher", world.values(endpoint, case, "missing"),
                         world.objects["A"])
    _expect(theirs, case.refused, f"{method} {endpoint} on B's object")
    _expect(nowhere, case.refused if case.missing is None else case.missing, f"{method} {endpoint} on no object")
    if case.refused == HIDDEN and _is_api(endpoint):
        assert theirs.json == nowhere.json, "someone else's object must answer exactly like a missing one"
    for swapped in case.mixed:  # the second id is looked up inside the first object, not on its own
        values = world.values(endpoint, case, "A", mixed=(swapped,))
        _expect(world.call(endpoint, method, case, case.actor, values, world.objects["A"]), HIDDEN,
                f"{method} {endpoint} by {case.actor} with {swapped}")
    assert world.snapshot() == before
    # each refusal is in the audit log, by who asked, with the answer they got; and nothing else is
    recorded = [(e.action, e.actor_label, e.details["endpoint"], e.details["status"])
                for e in world.audit_events_after(head)]
    expected = [("access.refused", "researcher", endpoint, case.refused),
                ("access.refused", "researcher", endpoint, case.refused if case.missing is None else case.missing),
                *[("access.refused", case.actor, endpoint, HIDDEN)] * len(case.mixed)]
    assert recorded == expected


@pytest.mark.parametrize("route", sorted(MATRIX), ids=lambda r: f"{r[1]} {r[0]}")
def test_the_route_works_on_project_a_objects_for_who_may_use_it(world: World, route: tuple[str, str]) -> None:
    """Proves the refusals above are the rules' doing: the same request works on A's own object."""
    endpoint, method = route
    case = MATRIX[route]
    overrides = getattr(world, f"fresh_{case.fresh}")() if case.fresh else {}
    ids = {**world.objects["A"], **overrides}
    before = world.audit_count()
    response = world.call(endpoint, method, case, case.actor, world.values(endpoint, case, "A", overrides), ids)
    where = f"{method} {endpoint} by {case.actor}: {response.status_code}"
    assert response.status_code in case.ok, f"{where} {response.get_data(as_text=True)[:300]}"
    if response.status_code == 302:
        assert "/login" not in response.headers["Location"], where
        errors = [m for category, m in getattr(response, "flashes", []) if category == "error"]
        if case.check is None:
            assert errors == [], f"{where} {errors}"
    if case.changes:
        assert world.audit_count() > before, f"{where} recorded nothing"
    if case.check is not None:
        case.check(response)


# --- the rules about one person and one object ------------------------------------------------------------------

def test_a_dac_member_not_assigned_or_recused_sees_no_votes_and_cannot_vote(world: World) -> None:
    """On B's application under review: dac1 declared a conflict, dac2 and the chair are not assigned, the lay
    member has voted (with a private note)."""
    review, draft = world.objects["B"]["review"], world.objects["B"]["draft"]
    before = world.snapshot()
    for username in ("dac2", "dac1"):  # not assigned; recused
        seen = world.api(username, "GET", f"/api/v1/applications/{review}/reviews")
        assert seen.status_code == 200 and seen.json["reviews"] == [], (username, seen.json)
        assert seen.json["recused"] is (username == "dac1")
        page = world.page(username, "GET", f"/applications/{review}")
        assert page.status_code == 200 and "lay note" not in page.get_data(as_text=True), username
        _expect_refused(world.page(username, "POST", f"/applications/{review}/review", {"vote": "approve"}), 403)
        _expect_refused(world.api(username, "POST", f"/api/v1/applications/{review}/reviews", {"vote": "approve"}),
                        403)
        # a draft is the applying team's alone, the committee included
        _expect_refused(world.page(username, "GET", f"/applications/{draft}"), 404)
        _expect_refused(world.api(username, "GET", f"/api/v1/applications/{draft}"), 404)
    _expect_refused(world.api("dac2", "POST", f"/api/v1/applications/{review}/conflict", {"conflict": False}), 403)
    _expect_refused(world.page("dac2", "POST", f"/applications/{review}/conflict", {"conflict": "no"}), 403)
    assert world.snapshot() == before
    # the chair, not assigned and not conflicted, reads the votes; so does the lay member who cast one
    for username in ("dacchair", "laymember"):
        seen = world.api(username, "GET", f"/api/v1/applications/{review}/reviews")
        assert [(r["reviewer"], r["vote"]) for r in seen.json["reviews"]] == [("laymember", "approve")], username
    assert "lay note" in world.page("dacchair", "GET", f"/applications/{review}").get_data(as_text=True)


def test_an_output_checker_on_the_projects_team_may_see_but_never_check_its_requests(world: World) -> None:
    """`dualrole` is a researcher on project A's team and also an output checker."""
    mine, item = world.objects["A"]["submitted"], world.objects["A"]["submitted_file"]
    before = world.snapshot()
    assert world.page("dualrole", "GET", f"/outputs/{mine}").status_code == 200  # a member sees the request
    assert world.api("dualrole", "GET", f"/api/v1/output-requests/{mine}").status_code == 200
    _expect_refused(world.page("dualrole", "GET", f"/outputs/{mine}/files/{item}/preview"), 403)
    _expect_refused(world.page("dualrole", "POST", f"/outputs/{mine}/files/{item}/vote", {"vote": "approve"}), 403)
    _expect_refused(world.api("dualrole", "PUT", f"/api/v1/output-requests/{mine}/files/{item}/vote",
                              {"vote": "approve"}), 403)
    _expect_refused(world.page("dualrole", "POST", f"/outputs/{mine}/review"), 403)
    _expect_refused(world.api("dualrole", "POST", f"/api/v1/output-requests/{mine}/reviews"), 403)
    _expect_refused(world.page("dualrole", "POST", f"/outputs/{mine}/decide", {"outcome": "approve"}), 403)
    _expect_refused(world.api("dualrole", "POST", f"/api/v1/output-requests/{mine}/decision",
                              {"outcome": "approve"}), 403)
    assert world.snapshot() == before
    # the same person checks another project's request
    theirs, their_item = world.objects["B"]["submitted"], world.objects["B"]["submitted_file"]
    assert world.page("dualrole", "GET", f"/outputs/{theirs}/files/{their_item}/preview").status_code == 200
    assert world.api("dualrole", "PUT", f"/api/v1/output-requests/{theirs}/files/{their_item}/vote",
                     {"vote": "approve"}).status_code == 204


def test_finance_sees_every_invoice_and_a_team_only_its_issued_ones(world: World) -> None:
    a, b = world.objects["A"], world.objects["B"]
    before = world.snapshot()
    for invoice in (a["invoice"], b["invoice"], a["draft_invoice"]):
        for url in (f"/charging/invoices/{invoice}", f"/charging/invoices/{invoice}.pdf",
                    f"/charging/invoices/{invoice}.csv"):
            assert world.page("finance", "GET", url).status_code == 200, url
        for url in (f"/api/v1/invoices/{invoice}", f"/api/v1/invoices/{invoice}/pdf",
                    f"/api/v1/invoices/{invoice}/csv"):
            assert world.api("finance", "GET", url).status_code == 200, url
    assert world.page("researcher", "GET", f"/charging/invoices/{a['invoice']}").status_code == 200
    # a draft is not the team's to see yet; another team's invoice never is; nor any other staff's
    for username, invoice in (("researcher", a["draft_invoice"]), ("researcher2", a["invoice"]),
                              ("auditor", b["invoice"]), ("dacchair", b["invoice"])):
        _expect_refused(world.page(username, "GET", f"/charging/invoices/{invoice}"), 404)
        _expect_refused(world.api(username, "GET", f"/api/v1/invoices/{invoice}"), 404)
    # finance sees the project and its charges, but not what its researchers are doing
    for page in ("", "/data", "/outputs"):
        assert world.page("finance", "GET", f"/projects/{b['project']}{page}").status_code == 200, page
    _expect_refused(world.page("finance", "GET", f"/projects/{b['project']}/sessions"), 403)
    assert world.api("finance", "GET", f"/api/v1/projects/{b['project']}/statement").status_code == 200
    _expect_refused(world.api("auditor", "GET", f"/api/v1/projects/{b['project']}/statement"), 403)
    _expect_refused(world.page("finance", "GET", f"/outputs/{b['pending']}"), 404)
    _expect_refused(world.api("finance", "GET", f"/api/v1/output-requests/{b['pending']}"), 404)
    for application in (b["draft"], b["review"]):
        _expect_refused(world.page("finance", "GET", f"/applications/{application}"), 404)
        _expect_refused(world.api("finance", "GET", f"/api/v1/applications/{application}"), 404)
    assert world.snapshot() == before


def test_a_member_removed_from_the_team_reaches_nothing_of_the_project(world: World) -> None:
    """`exmember` was on project B's team, wrote an output request there, and was removed by an amendment."""
    b = world.objects["B"]
    project, own_request = b["project"], b["exmember_request"]
    assert world.api("researcher2", "GET", f"/api/v1/output-requests/{own_request}").status_code == 200
    before = world.snapshot()
    for url in (f"/projects/{project}", f"/projects/{project}/data", f"/projects/{project}/sessions",
                f"/projects/{project}/outputs", f"/projects/{project}/extracts/1/manifest.json",
                f"/charging/projects/{project}/statement", f"/outputs/projects/{project}/new"):
        _expect_refused(world.page("exmember", "GET", url), 404)
    for url in (f"/api/v1/projects/{project}", f"/api/v1/projects/{project}/extracts",
                f"/api/v1/projects/{project}/statement"):
        _expect_refused(world.api("exmember", "GET", url), 404)
    _expect_refused(world.page("exmember", "POST", f"/projects/{project}/workspace"), 404)
    _expect_refused(world.api("exmember", "POST", f"/api/v1/projects/{project}/workspace"), 404)
    _expect_refused(world.api("exmember", "POST", f"/api/v1/projects/{project}/output-requests", {"title": "Mine"}),
                    404)
    for request in (own_request, b["pending"]):  # their own request too: access ended with the membership
        _expect_refused(world.page("exmember", "GET", f"/outputs/{request}"), 404)
        _expect_refused(world.api("exmember", "GET", f"/api/v1/output-requests/{request}"), 404)
        _expect_refused(world.page("exmember", "POST", f"/outputs/{request}/withdraw"), 404)
    _expect_refused(world.api("exmember", "GET", f"/api/v1/invoices/{b['invoice']}"), 404)
    _expect_refused(world.api("exmember", "GET", f"/api/v1/applications/{b['amendment']}"), 404)
    assert world.snapshot() == before
    # Deliberate: the original application names them, so it stays readable as their own record of what was asked.
    assert world.api("exmember", "GET", f"/api/v1/applications/{b['approved']}").status_code == 200


def test_a_project_data_page_lists_only_the_amendments_its_viewer_may_open(world: World) -> None:
    project = world.fresh_project()["project"]
    with unit_of_work(world.factory) as s:
        found = s.get(Project, project)
        assert found is not None
        draft = applications.start_amendment(s, f.user(s, "researcher"), found).reference
    with world.factory() as s:
        approved = s.get(Application, world.objects["B"]["amendment"])
        assert approved is not None
        approved_reference = approved.reference
    assert draft in world.page("researcher", "GET", f"/projects/{project}/data").get_data(as_text=True)
    for username in ("dac1", "finance", "admin"):  # staff see the project, not its team's draft
        assert draft not in world.page(username, "GET", f"/projects/{project}/data").get_data(as_text=True), username
    assert approved_reference in world.page("dac1", "GET", f"/projects/{world.objects['B']['project']}/data") \
        .get_data(as_text=True)


def _expect_refused(response: TestResponse, status: int) -> None:
    _expect(response, status, f"{response.request.method} {response.request.path}")
