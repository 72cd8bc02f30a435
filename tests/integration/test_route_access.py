"""Every route (pages and API) walked with every role and with nobody signed in.

The table below is the specification of who may reach what. A route that is registered but not
listed here fails the test, so every new route must be added with its expected access.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from gateway.db import unit_of_work
from gateway.identity import accounts, tokens
from gateway.permissions import Role
from projects import organisations
from tests.conftest import sign_in_session

ALL = frozenset(Role)
DAC = frozenset({Role.DAC_MEMBER, Role.DAC_CHAIR, Role.LAY_MEMBER})
PUBLIC = "public"
MID_SIGN_IN = "mid_sign_in"
HUB = "hub"  # called by the workspace hub with the hub<->gateway secret: 401 for everyone else

# (endpoint, method) -> roles allowed, PUBLIC or MID_SIGN_IN
ROUTES: dict[tuple[str, str], frozenset[Role] | str] = {
    ("home.root", "GET"): PUBLIC,
    ("home.index", "GET"): ALL,
    ("assets.nhsuk", "GET"): PUBLIC,
    ("static", "GET"): PUBLIC,
    ("auth.login", "GET"): PUBLIC,
    ("auth.login", "POST"): PUBLIC,
    ("auth.logout", "POST"): PUBLIC,
    ("auth.second_factor", "GET"): MID_SIGN_IN,
    ("auth.second_factor", "POST"): MID_SIGN_IN,
    ("auth.verify", "GET"): MID_SIGN_IN,
    ("auth.verify", "POST"): MID_SIGN_IN,
    ("auth.send_link", "POST"): MID_SIGN_IN,
    ("auth.enrol", "GET"): MID_SIGN_IN,
    ("auth.enrol", "POST"): MID_SIGN_IN,
    ("auth.new_password", "GET"): MID_SIGN_IN,
    ("auth.new_password", "POST"): MID_SIGN_IN,
    ("search.find", "GET"): ALL,
    ("account.index", "GET"): ALL,
    ("account.second_factor", "GET"): ALL,
    ("account.second_factor", "POST"): ALL,
    ("account.verify_link", "POST"): ALL,
    ("account.send_link", "POST"): ALL,
    ("account.change_password", "GET"): ALL,
    ("account.change_password", "POST"): ALL,
    ("account.create_token", "POST"): ALL,
    ("account.revoke_token", "POST"): ALL,
    ("account.sign_out_everywhere", "POST"): ALL,
    ("admin.users", "GET"): frozenset({Role.ADMIN}),
    ("admin.create_user", "GET"): frozenset({Role.ADMIN}),
    ("admin.create_user", "POST"): frozenset({Role.ADMIN}),
    ("admin.user", "GET"): frozenset({Role.ADMIN}),
    ("admin.set_roles", "POST"): frozenset({Role.ADMIN}),
    ("admin.unlock", "POST"): frozenset({Role.ADMIN}),
    ("admin.reset_second_factor", "POST"): frozenset({Role.ADMIN}),
    ("admin.deactivate", "POST"): frozenset({Role.ADMIN}),
    ("admin.activate", "POST"): frozenset({Role.ADMIN}),
    ("admin.security_policy", "GET"): frozenset({Role.ADMIN}),
    ("admin.security_policy", "POST"): frozenset({Role.ADMIN}),
    ("admin.confirm_security_policy", "POST"): frozenset({Role.ADMIN}),
    ("audit.events", "GET"): frozenset({Role.AUDITOR}),
    ("audit.export_csv", "GET"): frozenset({Role.AUDITOR}),
    ("audit.verify", "GET"): frozenset({Role.AUDITOR}),
    ("audit.verify_anchors", "POST"): frozenset({Role.AUDITOR}),
    ("audit.refusals", "GET"): frozenset({Role.AUDITOR}),
    ("audit.workspace_sessions", "GET"): frozenset({Role.AUDITOR}),
    ("api.openapi", "GET"): PUBLIC,
    ("api.me", "GET"): ALL,
    ("api.list_tokens", "GET"): ALL,
    ("api.create_token", "POST"): ALL,
    ("api.revoke_token", "DELETE"): ALL,
    ("api.list_users", "GET"): frozenset({Role.ADMIN}),
    ("api.create_user", "POST"): frozenset({Role.ADMIN}),
    ("api.get_user", "GET"): frozenset({Role.ADMIN}),
    ("api.set_roles", "PUT"): frozenset({Role.ADMIN}),
    ("api.set_active", "PUT"): frozenset({Role.ADMIN}),
    ("api.unlock_user", "POST"): frozenset({Role.ADMIN}),
    ("api.reset_second_factor", "DELETE"): frozenset({Role.ADMIN}),
    ("api.get_totp_policy", "GET"): frozenset({Role.ADMIN}),
    ("api.put_totp_policy", "PUT"): frozenset({Role.ADMIN}),
    ("api.audit_events", "GET"): frozenset({Role.AUDITOR}),
    ("api.audit_verify", "GET"): frozenset({Role.AUDITOR}),
    # safe people: organisations and accreditation
    ("organisations.index", "GET"): frozenset({Role.ADMIN}),
    ("organisations.create", "GET"): frozenset({Role.ADMIN}),
    ("organisations.create", "POST"): frozenset({Role.ADMIN}),
    ("organisations.detail", "GET"): frozenset({Role.ADMIN}),
    ("organisations.add_member", "POST"): frozenset({Role.ADMIN}),
    ("organisations.remove_member", "POST"): frozenset({Role.ADMIN}),
    ("accreditation.index", "GET"): frozenset({Role.RESEARCHER}),
    ("accreditation.record", "GET"): frozenset({Role.RESEARCHER}),
    ("accreditation.record", "POST"): frozenset({Role.RESEARCHER}),
    ("accreditation.queue", "GET"): frozenset({Role.ACCREDITATION_OFFICER}),
    # per record: its owner (the walk's sample belongs to `researcher`) and accreditation officers
    ("accreditation.detail", "GET"): frozenset({Role.RESEARCHER, Role.ACCREDITATION_OFFICER}),
    ("accreditation.certificate", "GET"): frozenset({Role.RESEARCHER, Role.ACCREDITATION_OFFICER}),
    ("accreditation.verify", "POST"): frozenset({Role.ACCREDITATION_OFFICER}),
    ("accreditation.reject", "POST"): frozenset({Role.ACCREDITATION_OFFICER}),
    ("api.list_organisations", "GET"): frozenset({Role.ADMIN}),
    ("api.create_organisation", "POST"): frozenset({Role.ADMIN}),
    ("api.set_user_organisation", "PUT"): frozenset({Role.ADMIN}),
    ("api.list_my_accreditations", "GET"): frozenset({Role.RESEARCHER}),
    ("api.list_accreditation_queue", "GET"): frozenset({Role.ACCREDITATION_OFFICER}),
    ("api.create_accreditation", "POST"): frozenset({Role.RESEARCHER}),
    ("api.get_accreditation", "GET"): frozenset({Role.RESEARCHER, Role.ACCREDITATION_OFFICER}),
    ("api.get_accreditation_certificate", "GET"): frozenset({Role.RESEARCHER, Role.ACCREDITATION_OFFICER}),
    ("api.verify_accreditation", "POST"): frozenset({Role.ACCREDITATION_OFFICER}),
    ("api.reject_accreditation", "POST"): frozenset({Role.ACCREDITATION_OFFICER}),
    # safe projects. The sample application is `researcher`'s, under review by dac1, dacchair and laymember;
    # the sample project is led by `researcher`. Object rules decide the rest (a 409 means the route let you in
    # and the state refused).
    ("catalogue.index", "GET"): PUBLIC,  # metadata only: datasets, variables, sensitivity
    ("catalogue.dataset", "GET"): PUBLIC,
    ("agreements.current", "GET"): ALL,
    ("agreements.publish", "GET"): frozenset({Role.ADMIN}),
    ("agreements.publish", "POST"): frozenset({Role.ADMIN}),
    ("applications.index", "GET"): ALL,
    ("applications.new", "GET"): frozenset({Role.RESEARCHER}),
    ("applications.new", "POST"): frozenset({Role.RESEARCHER}),
    ("applications.view", "GET"): DAC | {Role.RESEARCHER, Role.ADMIN},
    ("applications.edit", "GET"): frozenset({Role.RESEARCHER}),
    ("applications.edit", "POST"): frozenset({Role.RESEARCHER}),
    ("applications.variables", "GET"): frozenset({Role.RESEARCHER}),
    ("applications.variables", "POST"): frozenset({Role.RESEARCHER}),
    ("applications.add_member", "POST"): frozenset({Role.RESEARCHER}),
    ("applications.remove_member", "POST"): frozenset({Role.RESEARCHER}),
    ("applications.submit", "GET"): frozenset({Role.RESEARCHER}),
    ("applications.submit", "POST"): frozenset({Role.RESEARCHER}),
    ("applications.withdraw", "POST"): frozenset({Role.RESEARCHER}),
    ("applications.apply_suggestion", "POST"): frozenset({Role.RESEARCHER}),
    ("api.get_risk_preview", "GET"): DAC | {Role.RESEARCHER, Role.ADMIN},
    ("api.apply_risk_suggestion", "POST"): frozenset({Role.RESEARCHER}),
    ("applications.assign", "POST"): frozenset({Role.DAC_CHAIR}),
    ("applications.conflict", "POST"): DAC,
    ("applications.review", "POST"): DAC,
    ("applications.decide", "POST"): frozenset({Role.DAC_CHAIR}),
    ("projects.index", "GET"): ALL,
    ("projects.view", "GET"): ALL,  # its lead, and every staff role
    ("projects.data", "GET"): ALL,
    ("projects.outputs", "GET"): ALL,
    # its team and those who oversee projects (administrators, auditors) see its workspace sessions
    ("projects.sessions", "GET"): frozenset({Role.RESEARCHER, Role.ADMIN, Role.AUDITOR}),
    ("projects.change_state", "POST"): frozenset({Role.ADMIN}),  # walked with action=suspend
    ("projects.amend", "POST"): frozenset({Role.RESEARCHER}),
    ("projects.raise_security_tier", "POST"): frozenset({Role.ADMIN}),
    ("register.page", "GET"): PUBLIC,
    ("register.as_csv", "GET"): PUBLIC,
    ("register.as_json", "GET"): PUBLIC,
    ("register.as_gateway_upload", "GET"): PUBLIC,
    # a released output's signed receipt, by the package's public name as the register lists it (404 otherwise)
    ("receipts.receipt", "GET"): PUBLIC,
    ("receipts.public_key", "GET"): PUBLIC,
    ("trust.incidents_page", "GET"): PUBLIC,
    ("trust.involvement", "GET"): PUBLIC,
    ("trust.record_incident", "GET"): frozenset({Role.ADMIN}),
    ("trust.record_incident", "POST"): frozenset({Role.ADMIN}),
    ("projects.link_publication", "POST"): frozenset({Role.RESEARCHER}),  # members of the project only
    ("api.list_catalogue", "GET"): ALL,
    ("api.list_applications", "GET"): ALL,
    ("api.create_application", "POST"): frozenset({Role.RESEARCHER}),
    ("api.get_application", "GET"): DAC | {Role.RESEARCHER, Role.ADMIN},
    ("api.patch_application", "PATCH"): frozenset({Role.RESEARCHER}),
    ("api.put_variables", "PUT"): frozenset({Role.RESEARCHER}),
    ("api.add_member", "POST"): frozenset({Role.RESEARCHER}),
    ("api.remove_member", "DELETE"): frozenset({Role.RESEARCHER}),
    ("api.submit_application", "POST"): frozenset({Role.RESEARCHER}),
    ("api.withdraw_application", "POST"): frozenset({Role.RESEARCHER}),
    ("api.assign_reviewers", "POST"): frozenset({Role.DAC_CHAIR}),
    ("api.declare_conflict", "POST"): DAC,
    ("api.get_reviews", "GET"): DAC,
    ("api.post_review", "POST"): DAC,
    ("api.post_decision", "POST"): frozenset({Role.DAC_CHAIR}),
    ("api.list_projects", "GET"): ALL,
    ("api.get_project", "GET"): ALL,
    ("api.suspend_project", "POST"): frozenset({Role.ADMIN}),
    ("api.reinstate_project", "POST"): frozenset({Role.ADMIN}),
    ("api.revoke_project", "POST"): frozenset({Role.ADMIN}),
    ("api.raise_security_tier", "POST"): frozenset({Role.ADMIN}),
    ("api.close_project", "POST"): frozenset({Role.RESEARCHER, Role.ADMIN}),
    ("api.start_amendment", "POST"): frozenset({Role.RESEARCHER}),
    ("api.get_agreement", "GET"): ALL,
    ("api.publish_agreement", "POST"): frozenset({Role.ADMIN}),
    ("api.get_register", "GET"): PUBLIC,
    # charging. The sample invoice is the sample project's, issued; finance does everything, the project's
    # team (its lead is `researcher`) sees what was issued to it.
    ("charging.tariff", "GET"): PUBLIC,
    ("charging.dashboard", "GET"): frozenset({Role.FINANCE}),
    ("charging.run_invoices", "POST"): frozenset({Role.FINANCE}),
    ("charging.invoice_list", "GET"): frozenset({Role.FINANCE}),
    ("charging.invoice", "GET"): frozenset({Role.RESEARCHER, Role.FINANCE}),
    ("charging.invoice_as_pdf", "GET"): frozenset({Role.RESEARCHER, Role.FINANCE}),
    ("charging.invoice_as_csv", "GET"): frozenset({Role.RESEARCHER, Role.FINANCE}),
    ("charging.issue", "POST"): frozenset({Role.FINANCE}),
    ("charging.pay", "POST"): frozenset({Role.FINANCE}),
    ("charging.void", "POST"): frozenset({Role.FINANCE}),
    ("charging.credit", "POST"): frozenset({Role.FINANCE}),
    ("charging.add_line", "POST"): frozenset({Role.FINANCE}),
    ("charging.budgets_page", "GET"): frozenset({Role.FINANCE}),
    ("charging.set_budget", "POST"): frozenset({Role.FINANCE}),
    ("charging.statement", "GET"): frozenset({Role.RESEARCHER, Role.FINANCE}),
    ("charging.application_quote", "GET"): DAC | {Role.RESEARCHER, Role.ADMIN},
    ("api.get_tariff", "GET"): PUBLIC,
    ("api.get_application_quote", "GET"): DAC | {Role.RESEARCHER, Role.ADMIN},
    ("api.get_statement", "GET"): frozenset({Role.RESEARCHER, Role.FINANCE}),
    ("api.get_budget", "GET"): frozenset({Role.RESEARCHER, Role.FINANCE}),
    ("api.put_budget", "PUT"): frozenset({Role.FINANCE}),
    ("api.list_invoices", "GET"): frozenset({Role.FINANCE}),
    ("api.run_invoices", "POST"): frozenset({Role.FINANCE}),
    ("api.get_invoice", "GET"): frozenset({Role.RESEARCHER, Role.FINANCE}),
    ("api.get_invoice_pdf", "GET"): frozenset({Role.RESEARCHER, Role.FINANCE}),
    ("api.get_invoice_csv", "GET"): frozenset({Role.RESEARCHER, Role.FINANCE}),
    ("api.add_invoice_line", "POST"): frozenset({Role.FINANCE}),
    ("api.issue_invoice", "POST"): frozenset({Role.FINANCE}),
    ("api.pay_invoice", "POST"): frozenset({Role.FINANCE}),
    ("api.void_invoice", "POST"): frozenset({Role.FINANCE}),
    ("api.credit_invoice", "POST"): frozenset({Role.FINANCE}),
    ("agreements.accept", "POST"): ALL,
    ("api.accept_agreement", "POST"): ALL,
    # workspaces: the route admits every signed-in user; the derived entitlement refuses all but the team
    ("projects.open_workspace", "POST"): ALL,
    ("api.open_workspace", "POST"): ALL,
    # safe outputs. The sample request is `researcher`'s (pending) on the walk project: its members and output
    # checkers may see it; the author edits it; checkers review it (a pending request refuses votes: 409).
    ("outputs.index", "GET"): ALL,
    ("outputs.queue", "GET"): frozenset({Role.OUTPUT_CHECKER}),
    ("outputs.new", "GET"): frozenset({Role.RESEARCHER}),
    ("outputs.new", "POST"): frozenset({Role.RESEARCHER}),
    ("outputs.view", "GET"): frozenset({Role.RESEARCHER, Role.OUTPUT_CHECKER}),
    ("outputs.save_group", "POST"): frozenset({Role.RESEARCHER}),
    ("outputs.remove_file", "POST"): frozenset({Role.RESEARCHER}),
    ("outputs.submit", "POST"): frozenset({Role.RESEARCHER}),
    ("outputs.withdraw", "POST"): frozenset({Role.RESEARCHER}),
    ("outputs.vote", "POST"): frozenset({Role.OUTPUT_CHECKER}),
    ("outputs.comment", "POST"): frozenset({Role.RESEARCHER, Role.OUTPUT_CHECKER}),
    ("outputs.submit_review", "POST"): frozenset({Role.OUTPUT_CHECKER}),
    ("outputs.decide", "POST"): frozenset({Role.OUTPUT_CHECKER}),
    ("outputs.preview", "GET"): frozenset({Role.OUTPUT_CHECKER}),
    ("outputs.request_exception", "POST"): frozenset({Role.RESEARCHER}),
    ("outputs.decide_exception", "POST"): frozenset({Role.OUTPUT_CHECKER}),
    ("outputs.return_early", "POST"): frozenset({Role.OUTPUT_CHECKER}),
    ("outputs.vote_group", "POST"): frozenset({Role.OUTPUT_CHECKER}),
    ("outputs.publish_comment", "POST"): frozenset({Role.OUTPUT_CHECKER}),
    ("api.request_output_exception", "POST"): frozenset({Role.RESEARCHER}),
    ("api.decide_output_exception", "PUT"): frozenset({Role.OUTPUT_CHECKER}),
    ("api.return_output_request", "POST"): frozenset({Role.OUTPUT_CHECKER}),
    ("api.vote_output_group", "PUT"): frozenset({Role.OUTPUT_CHECKER}),
    ("api.publish_output_comment", "POST"): frozenset({Role.OUTPUT_CHECKER}),
    ("outputs.package", "GET"): frozenset({Role.RESEARCHER, Role.OUTPUT_CHECKER}),
    ("output_statistics.index", "GET"): frozenset({Role.OUTPUT_CHECKER}),
    ("api.list_output_requests", "GET"): ALL,
    ("api.output_queue", "GET"): frozenset({Role.OUTPUT_CHECKER}),
    ("api.output_statistics", "GET"): frozenset({Role.OUTPUT_CHECKER}),
    ("api.create_output_request", "POST"): frozenset({Role.RESEARCHER}),
    ("api.get_output_request", "GET"): frozenset({Role.RESEARCHER, Role.OUTPUT_CHECKER}),
    ("api.add_output_group", "POST"): frozenset({Role.RESEARCHER}),
    # the workspace hub's door for outputs a workspace hands over: its secret only, never a person's session or token
    ("handover.drafts", "POST"): "hub",
    ("handover.files", "POST"): "hub",
    ("handover.traffic_report", "POST"): "hub",
    ("api.submit_output_request", "POST"): frozenset({Role.RESEARCHER}),
    ("api.withdraw_output_request", "POST"): frozenset({Role.RESEARCHER}),
    ("api.vote_output_file", "PUT"): frozenset({Role.OUTPUT_CHECKER}),
    ("api.submit_output_review", "POST"): frozenset({Role.OUTPUT_CHECKER}),
    ("api.decide_output_request", "POST"): frozenset({Role.OUTPUT_CHECKER}),
    ("api.get_output_package", "GET"): frozenset({Role.RESEARCHER, Role.OUTPUT_CHECKER}),
    # extracts: everyone who can see the project sees its versions; the custodian (admin) builds and releases
    ("projects.refresh_extract", "POST"): frozenset({Role.ADMIN}),
    ("projects.release_extract", "POST"): frozenset({Role.ADMIN}),
    ("projects.confirm_release", "GET"): frozenset({Role.ADMIN}),
    ("projects.confirm_revoke", "GET"): frozenset({Role.ADMIN}),
    ("projects.extract_manifest", "GET"): ALL,
    ("projects.risk_report", "GET"): ALL,
    ("api.list_extracts", "GET"): ALL,
    ("api.refresh_extract", "POST"): frozenset({Role.ADMIN}),
    ("api.release_extract", "POST"): frozenset({Role.ADMIN}),
    # software in the workspace: the list is public; researchers ask for packages, administrators decide (the
    # sample request is a fresh waiting one of `researcher`'s for each call)
    ("packages.software", "GET"): PUBLIC,
    ("packages.index", "GET"): frozenset({Role.RESEARCHER}),
    ("packages.index", "POST"): frozenset({Role.RESEARCHER}),
    ("packages.queue", "GET"): frozenset({Role.ADMIN}),
    ("packages.decide", "POST"): frozenset({Role.ADMIN}),
    ("api.get_software", "GET"): PUBLIC,
    ("api.list_my_package_requests", "GET"): frozenset({Role.RESEARCHER}),
    ("api.create_package_request", "POST"): frozenset({Role.RESEARCHER}),
    ("api.list_package_requests", "GET"): frozenset({Role.ADMIN}),
    ("api.approve_package_request", "POST"): frozenset({Role.ADMIN}),
    ("api.refuse_package_request", "POST"): frozenset({Role.ADMIN}),
}

# API routes where an admitted role may still be refused by the derived entitlement (403 not_entitled).
ENTITLEMENT_DEPENDENT = {"api.open_workspace"}

# API routes whose sample object is in a state that refuses the command (409) for an allowed role: the walk
# checks access here; the state rules have their own tests.
STATE_DEPENDENT = {
    "api.patch_application", "api.put_variables", "api.add_member", "api.remove_member", "api.submit_application",
    "api.post_review", "api.post_decision", "api.apply_risk_suggestion",
    "api.reinstate_project", "api.close_project", "api.release_extract",
}

STATE_DEPENDENT |= {"api.issue_invoice", "api.add_invoice_line"}  # the sample invoice is already issued
# the sample output request is pending: votes, reviews, decisions and the package are refused (409)
STATE_DEPENDENT |= {"api.request_output_exception", "api.decide_output_exception", "api.return_output_request",
                    "api.vote_output_group"}
STATE_DEPENDENT |= {"api.vote_output_file", "api.submit_output_review", "api.decide_output_request",
                    "api.get_output_package"}

# Routes whose sample object is private (not on the register): a role that passes the route's permission but may
# not see the object gets 404, exactly as for an id that does not exist, so ids cannot be probed. (Every object
# route, for a researcher of another project, is walked in test_object_access.py.)
HIDDEN_OBJECTS = {
    "accreditation.detail", "accreditation.certificate", "api.get_accreditation", "api.get_accreditation_certificate",
    "applications.view", "api.get_application", "api.get_risk_preview", "charging.application_quote",
    "api.get_application_quote",
    "charging.invoice", "charging.invoice_as_pdf", "charging.invoice_as_csv", "api.get_invoice",
    "api.get_invoice_pdf", "api.get_invoice_csv", "outputs.view", "outputs.comment", "outputs.package",
    "api.get_output_request", "api.get_output_package",
}


def _reaches_route(app: Flask, endpoint: str, role: Role) -> bool:
    """Whether the role holds the permission the route declares (so that the object rule decides)."""
    from gateway.permissions import ROLE_PERMISSIONS
    from gateway.web.access import access_of

    access = access_of(app.view_functions[endpoint])
    return access is not None and access.permission in ROLE_PERMISSIONS[role]


# Valid bodies, so that an allowed role gets a real success rather than a 422.
JSON_BODIES: dict[str, Any] = {
    "api.create_token": {"name": "walk", "days": 1},
    "api.create_user": {"username": "walkuser{n}", "display_name": "Walk User", "password": "a-long-password-1"},
    "api.set_roles": {"roles": ["researcher"], "reason": "walk"},
    "api.set_active": {"is_active": True},
    "api.put_totp_policy": {"totp_required": []},
    "api.create_organisation": {"name": "Walk Organisation {n}", "org_type": "charity"},
    "api.set_user_organisation": {"organisation_id": None},
    "api.reject_accreditation": {"reason": "The certificate does not match the record."},
    "api.create_application": {"title": "Walk application {n}"},
    "api.patch_application": {"lay_summary": "Changed"},
    "api.put_variables": {"variables": [{"dataset": "patients", "variable": "sex", "justification": "why"}]},
    "api.add_member": {"username": "researcher2"},
    "api.submit_application": {"accept_agreement_version": 1},
    "api.assign_reviewers": lambda w: {"reviewer_ids": [w.user_id("dac2")]},
    "api.declare_conflict": {"conflict": False},
    "api.post_review": {"vote": "approve"},
    "api.post_decision": {"outcome": "approved", "access_end_date": "2030-01-01"},
    "api.suspend_project": {"reason": "walk"},
    "api.reinstate_project": {"reason": "walk"},
    "api.revoke_project": {"reason": "walk"},
    "api.raise_security_tier": {"reason": "walk"},
    "api.close_project": {"reason": "walk"},
    "api.publish_agreement": {"text": "A newer agreement for the route walk, long enough."},
    "api.put_budget": {"cap_pence": 5000000, "reason": "walk"},
    "api.release_extract": {"reason": "walk"},
    "api.apply_risk_suggestion": {"generalisation": {"date_of_birth": "year"}},
    "api.run_invoices": lambda w: {"month": w.last_month()},
    "api.add_invoice_line": {"description": "walk", "quantity": 1, "unit_pence": 100},
    "api.pay_invoice": {"reference": "walk"},
    "api.void_invoice": {"reason": "walk"},
    "api.credit_invoice": {"net_pence": 100, "reason": "walk"},
    "api.accept_agreement": {"version": 1},
}
JSON_BODIES |= {
    "api.create_output_request": {"title": "Walk outputs {n}"},
    "api.add_output_group": {"name": "Walk group {n}", "context": "what", "controls": "how"},
    "api.vote_output_file": {"vote": "approve"},
    "api.decide_output_request": {"outcome": "approve"},
    "api.request_output_exception": {"justification": "A published national figure: nothing new."},
    "api.decide_output_exception": {"decision": "accept", "reason": "walk"},
    "api.return_output_request": {"comment": "walk"},
    "api.vote_output_group": {"vote": "changes_requested"},
    "api.create_package_request": {"ecosystem": "python", "name": "walk-package-{n}", "reason": "walk"},
    "api.approve_package_request": {},
    "api.refuse_package_request": {"reason": "walk"},
}


def multipart_body(endpoint: str) -> dict[str, Any] | None:
    """A valid upload for the multipart operations (a fresh file object per request)."""
    if endpoint != "api.create_accreditation":
        return None
    from tests.integration.test_accreditation import accreditation_form

    return accreditation_form()

# One demo account holding exactly one role each.
ROLE_USER = {
    Role.RESEARCHER: "researcher", Role.ACCREDITATION_OFFICER: "accreditor", Role.DAC_MEMBER: "dac1",
    Role.DAC_CHAIR: "dacchair", Role.LAY_MEMBER: "laymember", Role.OUTPUT_CHECKER: "checker1",
    Role.FINANCE: "finance", Role.ADMIN: "admin", Role.AUDITOR: "auditor",
}


@pytest.fixture
def backend() -> str:
    """Access rules do not depend on the database: walk once, on PostgreSQL when configured (as in CI)."""
    from tests.support.databases import backends

    return backends()[-1]


def registered_routes(app: Flask) -> set[tuple[str, str]]:
    return {(rule.endpoint, method) for rule in app.url_map.iter_rules()
            for method in rule.methods or () if method not in {"HEAD", "OPTIONS"}}


def test_every_registered_route_is_in_the_table(app: Flask) -> None:
    registered = registered_routes(app)
    assert registered - set(ROUTES) == set(), "new routes need an entry in ROUTES"
    assert set(ROUTES) - registered == set(), "ROUTES lists routes that no longer exist"


def test_demo_role_users_hold_the_role_they_stand_for(demo_users: dict[str, int],
                                                      session_factory: sessionmaker[Session]) -> None:
    with session_factory() as s:
        for role, username in ROLE_USER.items():
            user = accounts.find_user(s, username)
            assert user is not None and role.value in user.roles


class Walker:
    def __init__(self, app: Flask, factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
        self.app = app
        self.factory = factory
        with unit_of_work(factory) as s:
            target = accounts.create_local_user(s, "test", username="walktarget", display_name="Walk Target",
                                                password="a-long-password-2", roles=["researcher"])
            self.target_id = target.id
            self.organisation_id = organisations.create_organisation(s, "test", "Walk Organisation", "academic").id
            from projects import agreements
            from tests.support import factories as f

            f.accredit(s, "researcher")
            agreements.ensure_default(s, "test")
            self.bearer: dict[str, str] = {}
            for username in ROLE_USER.values():
                owner = accounts.find_user(s, username)
                assert owner is not None
                _, self.bearer[username] = tokens.create_token(s, "test", owner, "walk")
        self.counter = 0

    def own_token_id(self, username: str) -> int:
        with unit_of_work(self.factory) as s:
            owner = accounts.find_user(s, username)
            assert owner is not None
            token, _ = tokens.create_token(s, "test", owner, "to-revoke")
            return token.id

    def pending_accreditation_id(self) -> int:
        from tests.integration.test_accreditation import record_pending

        return record_pending(self.factory, self.app, "researcher")

    def user_id(self, username: str) -> int:
        with self.factory() as s:
            found = accounts.find_user(s, username)
            assert found is not None
            return found.id

    def sample_application_id(self) -> int:
        if not hasattr(self, "_application_id"):
            from tests.support import factories as f

            self._application_id = f.draft(self.factory)
            f.submit(self.factory, self._application_id)
            with unit_of_work(self.factory) as s:
                from projects import dac
                from projects.models import Application
                app = s.get(Application, self._application_id)
                assert app is not None
                dac.assign_reviewers(s, f.user(s, "dacchair"), app,
                                     [f.user(s, n) for n in ("dac1", "dacchair", "laymember")])
        return self._application_id

    def sample_project_id(self) -> int:
        from tests.support import factories as f

        if not hasattr(self, "_project_id"):
            from gateway.extracts.service import run_queued_builds

            self._project_id = f.approved_project(self.factory, title="Walk project")
            run_queued_builds(self.app.extensions["sde_settings"], self.factory)  # version 1 exists
        return self._project_id

    def last_month(self) -> str:
        import datetime as dt

        from gateway.charging.invoices import previous_month

        return previous_month(dt.datetime.now(dt.UTC).date())

    def sample_invoice_id(self) -> int:
        """The sample project's invoice for this month's fees, issued by finance."""
        if not hasattr(self, "_invoice_id"):
            import datetime as dt

            from gateway.charging import invoices
            from gateway.charging.metering import period_of
            from tests.support import factories as f

            self.sample_project_id()
            now = dt.datetime.now(dt.UTC).date()
            with unit_of_work(self.factory) as s:
                finance = f.user(s, "finance")
                result = invoices.run_month(s, finance, period_of(now), now.replace(day=1) + dt.timedelta(days=32))
                invoices.issue(s, finance, result.created[0], now)
                self._invoice_id = result.created[0].id
        return self._invoice_id

    def sample_output(self) -> tuple[int, int, int]:
        """`researcher`'s pending output request on the walk project: (request, its file, its group)."""
        if not hasattr(self, "_output"):
            from tests.integration.test_outputs import sample_request

            request_id, file_id = sample_request(self.factory, self.app.extensions["sde_settings"],
                                                 self.sample_project_id())
            with self.factory() as s:
                from gateway.outputs.models import OutputRequest

                request = s.get(OutputRequest, request_id)
                assert request is not None
                self._output = (request_id, file_id, request.groups[0].id)
        return self._output

    def sample_comment_id(self) -> int:
        """A private comment by `checker1` (the output checker of the walk) on the sample request."""
        if not hasattr(self, "_comment_id"):
            from gateway.outputs import service
            from gateway.outputs.models import OutputRequest
            from tests.support import factories as f

            with unit_of_work(self.factory) as s:
                request = s.get(OutputRequest, self.sample_output()[0])
                assert request is not None
                self._comment_id = service.add_comment(s, f.user(s, "checker1"), request, "walk", "private").id
        return self._comment_id

    def waiting_package_request_id(self) -> int:
        from gateway.workspaces import packages
        from tests.support import factories as f

        self.counter += 1
        with unit_of_work(self.factory) as s:
            return packages.request_package(s, f.user(s, "researcher"), "python", f"walk-wanted-{self.counter}", "",
                                            "walk").id

    def url(self, endpoint: str, username: str | None) -> str:
        rule = next(r for r in self.app.url_map.iter_rules() if r.endpoint == endpoint)
        values: dict[str, Any] = {}
        for arg in rule.arguments:
            if arg == "user_id":
                values[arg] = self.target_id
            elif arg == "token_id":
                values[arg] = self.own_token_id(username or "admin")
            elif arg == "organisation_id":
                values[arg] = self.organisation_id
            elif arg == "accreditation_id":  # a fresh pending record owned by `researcher`, so decisions succeed
                values[arg] = self.pending_accreditation_id()
            elif arg == "application_id":
                values[arg] = self.sample_application_id()
            elif arg == "project_id":
                values[arg] = self.sample_project_id()
            elif arg == "invoice_id":
                values[arg] = self.sample_invoice_id()
            elif arg == "version":
                values[arg] = 1
            elif arg == "request_id":
                values[arg] = self.sample_output()[0]
            elif arg == "file_id":
                values[arg] = self.sample_output()[1]
            elif arg == "group_id":
                values[arg] = self.sample_output()[2]
            elif arg == "comment_id":
                values[arg] = self.sample_comment_id()
            elif arg == "package_request_id":
                values[arg] = self.waiting_package_request_id()
            elif arg == "action":
                values[arg] = "suspend"
            elif arg == "name":
                values[arg] = "patients"
            elif arg == "filename":
                values[arg] = "nhsuk-frontend.min.css" if endpoint == "assets.nhsuk" else "css/app.css"
        with self.app.test_request_context():
            from flask import url_for
            return url_for(endpoint, **values)

    def request(self, endpoint: str, method: str, username: str | None, bearer: bool | None = None) -> Any:
        client: FlaskClient = self.app.test_client()
        url = self.url(endpoint, username)
        kwargs: dict[str, Any] = {}
        if bearer if bearer is not None else endpoint.startswith("api."):
            if username:
                kwargs["headers"] = {"Authorization": f"Bearer {self.bearer[username]}"}
            if endpoint in JSON_BODIES:
                self.counter += 1
                template = JSON_BODIES[endpoint]
                template = template(self) if callable(template) else template
                body = {k: (v.format(n=self.counter) if isinstance(v, str) else v) for k, v in template.items()}
                kwargs["json"] = body
            elif (form := multipart_body(endpoint)) is not None:
                kwargs["data"] = form
        elif username:
            sign_in_session(client, self.factory, username)
        response = client.open(url, method=method, **kwargs)
        response.get_data()
        response.close()  # ends streamed responses, so their database session is released
        return response


@pytest.fixture
def walker(app: Flask, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> Walker:
    app.config["WTF_CSRF_ENABLED"] = False  # this test is about access; CSRF has its own tests
    return Walker(app, session_factory, demo_users)


def _redirects_to_login(response: Any) -> bool:
    return response.status_code in (302, 303) and "/login" in response.headers.get("Location", "")


@pytest.mark.parametrize("route", sorted(ROUTES), ids=lambda r: f"{r[1]} {r[0]}")
def test_route_access_for_every_role_and_anonymous(route: tuple[str, str], walker: Walker) -> None:
    endpoint, method = route
    expected = ROUTES[route]
    is_api = endpoint.startswith("api.")
    anonymous = walker.request(endpoint, method, None)
    if expected == HUB:
        for username in (None, *ROLE_USER.values()):
            for bearer in (False, True):
                response = walker.request(endpoint, method, username, bearer=bearer)
                assert response.status_code == 401 and response.json["error"] == "unauthenticated", (username, bearer)
        return
    if expected == PUBLIC:
        assert anonymous.status_code not in (401, 403), anonymous.status_code
    elif expected == MID_SIGN_IN or not is_api:
        assert _redirects_to_login(anonymous), (anonymous.status_code, anonymous.headers.get("Location"))
    else:
        assert anonymous.status_code == 401
        assert anonymous.json["error"] == "unauthenticated"

    for role, username in ROLE_USER.items():
        response = walker.request(endpoint, method, username)
        where = f"{method} {endpoint} as {role.value}: {response.status_code}"
        if expected == PUBLIC:
            assert response.status_code not in (401, 403), where
        elif expected == MID_SIGN_IN:
            assert _redirects_to_login(response), where  # only for people part-way through signing in
        elif role in expected and endpoint in ENTITLEMENT_DEPENDENT and response.status_code == 403:
            assert response.json["error"] == "not_entitled", where
        elif role in expected:
            assert response.status_code not in (401, 403, 404, 405, 500), where
            if is_api:
                assert response.status_code < 300 or (endpoint in STATE_DEPENDENT and response.status_code == 409), \
                    where
        else:
            hidden = endpoint in HIDDEN_OBJECTS and _reaches_route(walker.app, endpoint, role)
            assert response.status_code == (404 if hidden else 403), where
            if is_api:
                assert response.json["error"] == ("not_found" if hidden else "forbidden")


@pytest.mark.parametrize(("state", "page"), [("verify", "/login/verify"), ("enrol", "/login/enrol"),
                                             ("code", "/login/code"), ("new_password", "/login/new-password")])
def test_mid_sign_in_pages_serve_a_person_part_way_through(walker: Walker, state: str, page: str) -> None:
    client = walker.app.test_client()
    sign_in_session(client, walker.factory, "finance" if state == "code" else "researcher", state)
    assert client.get(page).status_code == 200
    # but not the rest of the service, nor another step's page
    assert client.get("/home").headers["Location"].endswith(page)
    for other in {"/login/verify", "/login/enrol", "/login/code", "/login/new-password"} - {page}:
        assert client.get(other).headers["Location"].endswith(page)
