"""API operations for the catalogue, applications, the DAC, projects, the agreement and the register."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.errors import NotFound
from gateway.identity.accounts import find_user, get_user
from gateway.permissions import Permission
from gateway.trust import register
from gateway.web.context import catalogue, db, require_user, run, settings, today
from gateway.web.recorded import records_download
from projects import agreements, applications, cohort, dac, lifecycle
from projects.applications import EDITABLE_FIELDS, VariableChoice
from projects.cohort import MAX_AGE
from projects.models import Application, Project, Review

from .base import api


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VariableOut(BaseModel):
    name: str
    description: str
    type: str
    sensitivity: str


class DatasetOut(BaseModel):
    name: str
    title: str
    description: str
    variables: list[VariableOut]


class MemberOut(BaseModel):
    user_id: int
    username: str
    display_name: str
    project_role: str


class ChosenVariable(BaseModel):
    dataset: str = Field(max_length=100)
    variable: str = Field(max_length=100)
    justification: str = Field(default="", max_length=2000)


class DecisionOut(BaseModel):
    round: int
    outcome: str
    conditions: str
    message_to_applicant: str
    access_end_date: dt.date | None
    decided_at: dt.datetime


class ApplicationOut(BaseModel):
    id: int
    reference: str
    kind: str
    state: str
    round: int
    project_id: int | None
    applicant: str
    title: str
    lay_summary: str
    technical_summary: str
    public_benefit: str
    funder: str
    commercial_involvement: bool
    commercial_details: str
    cohort_description: str
    date_from: dt.date | None
    date_to: dt.date | None
    legal_basis_article6: str
    legal_basis_article9: str
    common_law_basis: str
    ethics_reference: str
    opt_out_applies: bool | None
    opt_out_reason: str
    cohort_boroughs: list[str] = Field(description="Only patients living in these boroughs; empty: every borough")
    cohort_age_min: int | None = Field(description="Youngest age (whole years on the last day of the date range)")
    cohort_age_max: int | None = Field(description="Oldest age (whole years on the last day of the date range)")
    cohort_conditions: list[str] = Field(
        description="Only patients with at least one of these conditions by the end of the date range; empty: any")
    workspace_size: str
    intended_outputs: str
    amendment_summary: str
    requested_end_date: dt.date | None
    generalisation: dict[str, Any] | None = Field(description="How identifying details are coarsened; null: the "
                                                              "defaults")
    members: list[MemberOut]
    variables: list[ChosenVariable]
    decisions: list[DecisionOut]
    submission_problems: dict[str, list[str]] | None = Field(
        default=None, description="For the applicant while editable: what still stops submission")

    @classmethod
    def of(cls, a: Application, problems: dict[str, list[str]] | None = None) -> ApplicationOut:
        data: dict[str, Any] = {f: getattr(a, f) for f in EDITABLE_FIELDS}
        return cls(id=a.id, reference=a.reference, kind=a.kind, state=a.state, round=a.round, project_id=a.project_id,
                   applicant=a.applicant.username, generalisation=a.generalisation, **data,
                   members=[MemberOut(user_id=m.user_id, username=m.user.username, display_name=m.user.display_name,
                                      project_role=m.project_role) for m in a.members],
                   variables=[ChosenVariable(dataset=v.dataset, variable=v.variable, justification=v.justification)
                              for v in a.variables],
                   decisions=[DecisionOut(round=d.round, outcome=d.outcome, conditions=d.conditions,
                                          message_to_applicant=d.message_to_applicant,
                                          access_end_date=d.access_end_date, decided_at=d.decided_at)
                              for d in a.decisions],
                   submission_problems=problems)


class ApplicationCreate(Strict):
    title: str = Field(min_length=1, max_length=300)


class ApplicationPatch(Strict):
    title: str | None = Field(default=None, max_length=300)
    lay_summary: str | None = Field(default=None, max_length=5000)
    technical_summary: str | None = Field(default=None, max_length=20000)
    public_benefit: str | None = Field(default=None, max_length=5000)
    funder: str | None = Field(default=None, max_length=300)
    commercial_involvement: bool | None = None
    commercial_details: str | None = Field(default=None, max_length=5000)
    cohort_description: str | None = Field(default=None, max_length=5000)
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    legal_basis_article6: str | None = Field(default=None, max_length=50)
    legal_basis_article9: str | None = Field(default=None, max_length=50)
    common_law_basis: str | None = Field(default=None, max_length=50)
    ethics_reference: str | None = Field(default=None, max_length=100)
    opt_out_applies: bool | None = None
    opt_out_reason: str | None = Field(default=None, max_length=5000)
    # The catalogue's values are checked by the service (422 naming any unknown one); null or [] selects everyone.
    cohort_boroughs: list[Annotated[str, Field(max_length=100)]] | None = Field(
        default=None, max_length=100, description="Boroughs from the catalogue's borough variable")
    cohort_age_min: int | None = Field(default=None, ge=0, le=MAX_AGE, description="Whole years; null for no limit")
    cohort_age_max: int | None = Field(default=None, ge=0, le=MAX_AGE, description="Whole years; null for no limit")
    cohort_conditions: list[Annotated[str, Field(max_length=100)]] | None = Field(
        default=None, max_length=100, description="Conditions from the catalogue's condition variable")
    workspace_size: str | None = Field(default=None, max_length=20)
    intended_outputs: str | None = Field(default=None, max_length=5000)
    amendment_summary: str | None = Field(default=None, max_length=5000)
    requested_end_date: dt.date | None = None


class VariablesIn(Strict):
    variables: list[ChosenVariable] = Field(max_length=500)


class MemberIn(Strict):
    username: str = Field(min_length=1, max_length=64)
    project_role: str = Field(default="analyst", max_length=100)


class SubmitIn(Strict):
    accept_agreement_version: int = Field(ge=1, description="The version of the data access agreement you accept")


class ReviewersIn(Strict):
    reviewer_ids: list[int] = Field(min_length=1, max_length=20)


class ConflictIn(Strict):
    conflict: bool
    reason: str = Field(default="", max_length=2000)


ROUND_HELP = ("The round you read (the application's `round`). If the application has been returned and resubmitted "
              "since, nothing is recorded and the answer is 409; without it, the current round is acted on")


class ReviewIn(Strict):
    vote: Literal["approve", "approve_with_conditions", "changes_requested", "reject"]
    comment_applicant: str = Field(default="", max_length=5000)
    comment_private: str = Field(default="", max_length=5000)
    round: int | None = Field(default=None, ge=1, description=ROUND_HELP)


class ReviewOut(BaseModel):
    round: int
    reviewer: str
    vote: str
    comment_applicant: str
    comment_private: str
    submitted_at: dt.datetime

    @classmethod
    def of(cls, r: Review) -> ReviewOut:
        return cls(round=r.round, reviewer=r.assignment.reviewer.username, vote=r.vote,
                   comment_applicant=r.comment_applicant, comment_private=r.comment_private,
                   submitted_at=r.submitted_at)


class ReviewsOut(BaseModel):
    recused: bool
    quorum: str = Field(description="The quorum rule, with the count of votes for the chair (and for everyone once "
                                    "the round is decided)")
    quorum_met: bool | None = Field(description="null while the count is blinded for you")
    reviews: list[ReviewOut]


class DecisionIn(Strict):
    outcome: Literal["approved", "rejected", "changes_requested"]
    conditions: str = Field(default="", max_length=5000)
    message: str = Field(default="", max_length=5000)
    access_end_date: dt.date | None = None
    security_tier: Literal["standard", "high"] | None = Field(
        default=None, description="The new project's security tier when approving (standard if omitted); "
        "an amendment keeps the project's tier")
    round: int | None = Field(default=None, ge=1, description=ROUND_HELP)


class ProjectOut(BaseModel):
    id: int
    reference: str
    state: str
    title: str
    lead: str
    start_date: dt.date
    end_date: dt.date
    conditions: str
    legal_basis: str
    opt_out_applies: bool
    workspace_size: str
    security_tier: Literal["standard", "high"]
    date_from: dt.date | None
    date_to: dt.date | None
    cohort_boroughs: list[str]
    cohort_age_min: int | None
    cohort_age_max: int | None
    cohort_conditions: list[str]
    members: list[MemberOut]
    variables: list[str]

    @classmethod
    def of(cls, p: Project) -> ProjectOut:
        return cls(id=p.id, reference=p.reference, state=p.state, title=p.title, lead=p.lead.username,
                   start_date=p.start_date, end_date=p.end_date, conditions=p.conditions, legal_basis=p.legal_basis,
                   opt_out_applies=p.opt_out_applies, workspace_size=p.workspace_size,
                   security_tier=p.security_tier, date_from=p.date_from,
                   date_to=p.date_to, **cohort.copied(p),
                   members=[MemberOut(user_id=m.user_id, username=m.user.username, display_name=m.user.display_name,
                                      project_role=m.project_role) for m in p.members],
                   variables=[f"{v.dataset}.{v.variable}" for v in p.variables])


class ReasonIn(Strict):
    reason: str = Field(min_length=1, max_length=2000)


class AgreementOut(BaseModel):
    version: int
    text: str
    published_at: dt.datetime


class AgreementIn(Strict):
    text: str = Field(min_length=1, max_length=20000)


class RegisterOut(BaseModel):
    columns: list[str]
    rows: list[dict[str, str]]


def _application(application_id: int) -> Application:
    return applications.get_application(db(), require_user(), application_id)


def _application_out(application: Application) -> ApplicationOut:
    user = require_user()
    problems = (applications.submission_problems(db(), application, catalogue(), settings().dac, today())
                if applications.can_edit_application(user, application) else None)
    return ApplicationOut.of(application, problems)


@api.operation("/catalogue", "GET", summary="The data catalogue: datasets and variables", tag="catalogue",
               permission=Permission.USE_ACCOUNT, response=DatasetOut, response_is_list=True)
def list_catalogue() -> list[DatasetOut]:
    return [DatasetOut(name=d.name, title=d.title, description=d.description,
                       variables=[VariableOut(name=v.name, description=v.description, type=v.type.value,
                                              sensitivity=v.sensitivity.value) for v in d.variables])
            for d in catalogue().datasets]


@api.operation("/applications", "GET", summary="Applications you can see", tag="applications",
               permission=Permission.VIEW_PROJECTS, response=ApplicationOut, response_is_list=True)
def list_applications() -> list[ApplicationOut]:
    return [ApplicationOut.of(a) for a in applications.list_applications(db(), require_user())]


@api.operation("/applications", "POST", summary="Start a draft application", tag="applications",
               permission=Permission.APPLY, body=ApplicationCreate, response=ApplicationOut, status=201,
               errors=(409,))
def create_application(body: ApplicationCreate) -> ApplicationOut:
    return _application_out(run(applications.create_draft, require_user(), body.title))


@api.operation("/applications/<int:application_id>", "GET", summary="One application", tag="applications",
               permission=Permission.VIEW_PROJECTS, response=ApplicationOut)
def get_application(application_id: int) -> ApplicationOut:
    return _application_out(_application(application_id))


@api.operation("/applications/<int:application_id>", "PATCH", summary="Save fields of a draft (partial is fine)",
               tag="applications", permission=Permission.APPLY, body=ApplicationPatch, response=ApplicationOut,
               errors=(409,))
def patch_application(application_id: int, body: ApplicationPatch) -> ApplicationOut:
    application = _application(application_id)
    run(applications.update_draft, require_user(), application, body.model_dump(exclude_unset=True), catalogue())
    return _application_out(application)


@api.operation("/applications/<int:application_id>/variables", "PUT", summary="Replace the chosen variables",
               tag="applications", permission=Permission.APPLY, body=VariablesIn, response=ApplicationOut,
               errors=(409,))
def put_variables(application_id: int, body: VariablesIn) -> ApplicationOut:
    application = _application(application_id)
    run(applications.set_variables, require_user(), application, catalogue(),
        [VariableChoice(v.dataset, v.variable, v.justification) for v in body.variables])
    return _application_out(application)


@api.operation("/applications/<int:application_id>/members", "POST", summary="Add an accredited team member",
               tag="applications", permission=Permission.APPLY, body=MemberIn, response=ApplicationOut,
               errors=(409,))
def add_member(application_id: int, body: MemberIn) -> ApplicationOut:
    application = _application(application_id)
    member = find_user(db(), body.username)
    if member is None:
        raise NotFound(f"There is no account called '{body.username}'.")
    run(applications.add_member, require_user(), application, member, body.project_role)
    return _application_out(application)


@api.operation("/applications/<int:application_id>/members/<int:user_id>", "DELETE", summary="Remove a team member",
               tag="applications", permission=Permission.APPLY, response=ApplicationOut, errors=(409,))
def remove_member(application_id: int, user_id: int) -> ApplicationOut:
    application = _application(application_id)
    run(applications.remove_member, require_user(), application, user_id)
    return _application_out(application)


@api.operation("/applications/<int:application_id>/submit", "POST", summary="Submit (or resubmit) to the DAC",
               tag="applications", permission=Permission.APPLY, body=SubmitIn, response=ApplicationOut, errors=(409,))
def submit_application(application_id: int, body: SubmitIn) -> ApplicationOut:
    application = _application(application_id)
    run(applications.submit, require_user(), application, catalogue(), settings().dac, body.accept_agreement_version,
        today())
    return _application_out(application)


@api.operation("/applications/<int:application_id>/withdraw", "POST", summary="Withdraw the application",
               tag="applications", permission=Permission.APPLY, response=ApplicationOut, errors=(409,))
def withdraw_application(application_id: int) -> ApplicationOut:
    application = _application(application_id)
    run(applications.withdraw, require_user(), application)
    return _application_out(application)


@api.operation("/applications/<int:application_id>/reviewers", "POST", summary="Assign DAC reviewers",
               tag="dac", permission=Permission.CHAIR_DAC, body=ReviewersIn, response=ApplicationOut, errors=(409,))
def assign_reviewers(application_id: int, body: ReviewersIn) -> ApplicationOut:
    application = _application(application_id)
    run(dac.assign_reviewers, require_user(), application, [get_user(db(), uid) for uid in body.reviewer_ids])
    return _application_out(application)


@api.operation("/applications/<int:application_id>/conflict", "POST", summary="Declare a conflict of interest",
               tag="dac", permission=Permission.REVIEW_APPLICATIONS, body=ConflictIn, response=ReviewsOut,
               errors=(409,))
def declare_conflict(application_id: int, body: ConflictIn) -> ReviewsOut:
    application = _application(application_id)
    run(dac.declare_conflict, require_user(), application, body.conflict, body.reason)
    return get_reviews_of(application)


@api.operation("/applications/<int:application_id>/reviews", "GET",
               summary="The votes you may see now (your own until the chair decides; none if recused)", tag="dac",
               permission=Permission.REVIEW_APPLICATIONS, response=ReviewsOut)
def get_reviews(application_id: int) -> ReviewsOut:
    return get_reviews_of(_application(application_id))


def get_reviews_of(application: Application) -> ReviewsOut:
    user = require_user()
    status = dac.quorum(application, settings().dac)
    shown = dac.count_visible(user, application)
    return ReviewsOut(recused=dac.is_recused(user, application),
                      quorum=status.describe() if shown else status.describe_blinded(),
                      quorum_met=status.met if shown else None,
                      reviews=[ReviewOut.of(r) for r in dac.visible_reviews(user, application)])


@api.operation("/applications/<int:application_id>/reviews", "POST", summary="Cast your vote", tag="dac",
               permission=Permission.REVIEW_APPLICATIONS, body=ReviewIn, response=ReviewsOut, status=201,
               errors=(409,))
def post_review(application_id: int, body: ReviewIn) -> ReviewsOut:
    application = _application(application_id)
    run(dac.submit_review, require_user(), application, body.vote, body.comment_private, body.comment_applicant,
        body.round)
    return get_reviews_of(application)


@api.operation("/applications/<int:application_id>/decision", "POST", summary="Record the DAC's decision",
               tag="dac", permission=Permission.CHAIR_DAC, body=DecisionIn, response=ApplicationOut, errors=(409,))
def post_decision(application_id: int, body: DecisionIn) -> ApplicationOut:
    application = _application(application_id)
    run(dac.decide, require_user(), application, settings().dac, outcome=body.outcome, conditions=body.conditions,
        message=body.message, access_end_date=body.access_end_date, today=today(), security_tier=body.security_tier,
        round_seen=body.round)
    return _application_out(application)


class RiskReportOut(BaseModel):
    k: int
    quasi_identifiers: list[str]
    share_below_k: str = Field(description="Exact for the committee; rounded for the applying team")
    records: str
    smallest_class: int | None = Field(description="The committee only")
    unique_records: int | None = Field(description="The committee only")
    main_drivers: list[str]


class GeneralisationIn(Strict):
    date_of_birth: Literal["month", "year", "age_band"] = "year"
    age_band_years: Literal[5, 10] = 5
    event_dates: Literal["month", "shift"] = "month"
    lsoa: Literal["borough", "keep"] = "borough"
    area_code: Literal["keep", "postcode_area"] = "keep"
    imd_decile: Literal["keep", "quintile"] = "keep"


class SuggestionOut(BaseModel):
    target: str
    changes: list[str]
    generalisation: GeneralisationIn
    drop: list[str]
    report: RiskReportOut


class RiskPreviewOut(BaseModel):
    available: bool
    message: str | None = None
    exact: bool
    patients: str | None = None
    held: bool | None = None
    high_risk: bool | None = None
    generalisation: list[str] = Field(default_factory=list, description="How the identifying details are coarsened")
    report: RiskReportOut | None = None
    suggestions: list[SuggestionOut] = Field(default_factory=list)


class ApplySuggestionIn(Strict):
    generalisation: GeneralisationIn
    drop: list[Annotated[str, Field(max_length=200)]] = Field(default_factory=list, max_length=50)


def _risk_report_out(report: Any, exact: bool) -> RiskReportOut:
    from gateway.extracts import preview

    share = f"{100 * report.share_below_k:.1f}%" if exact else preview.rounded_share(report.share_below_k)
    return RiskReportOut(k=report.k, quasi_identifiers=report.quasi_identifiers, share_below_k=share,
                         records=str(report.records) if exact else preview.rounded_count(report.records),
                         smallest_class=report.smallest_class if exact else None,
                         unique_records=report.unique_records if exact else None,
                         main_drivers=[d.column for d in report.drivers[:3]] if report.flagged else [])


@api.operation("/applications/<int:application_id>/risk", "GET",
               summary="The re-identification risk of what the application asks for (a dry run of the build; "
                       "exact figures for the committee, rounded for the applying team)",
               tag="applications", permission=Permission.VIEW_PROJECTS, response=RiskPreviewOut, errors=(409,))
def get_risk_preview(application_id: int) -> RiskPreviewOut:
    from gateway.errors import Conflict
    from gateway.extracts import preview
    from gateway.web.applications import risk_for

    result, exact = risk_for(require_user(), _application(application_id))
    if result is None:
        raise Conflict("No risk preview is shown for this application now (decided, or not yet submitted).")
    if isinstance(result, preview.Unavailable):
        return RiskPreviewOut(available=False, message=result.message, exact=exact)
    return RiskPreviewOut(
        available=True, exact=exact, held=result.held, high_risk=result.high_risk,
        patients=str(result.cohort.patients_released) if exact else preview.rounded_count(
            result.cohort.patients_released),
        generalisation=preview.describe(result.generalisation, result.dimensions),
        report=_risk_report_out(result.report, exact),
        suggestions=[SuggestionOut(target=s.target, changes=list(s.changes), drop=list(s.drop),
                                   generalisation=GeneralisationIn(**s.generalisation.model_dump(mode="json")),
                                   report=_risk_report_out(s.report, exact)) for s in result.suggestions])


@api.operation("/applications/<int:application_id>/risk/apply", "POST",
               summary="Apply a risk preview's suggestion to your draft (coarser details, perhaps fewer variables)",
               tag="applications", permission=Permission.APPLY, body=ApplySuggestionIn, response=ApplicationOut,
               errors=(409,))
def apply_risk_suggestion(application_id: int, body: ApplySuggestionIn) -> ApplicationOut:
    application = _application(application_id)
    run(applications.apply_generalisation, require_user(), application, body.generalisation.model_dump(), body.drop)
    return _application_out(application)


@api.operation("/projects", "GET", summary="Projects you can see", tag="projects",
               permission=Permission.VIEW_PROJECTS, response=ProjectOut, response_is_list=True)
def list_projects() -> list[ProjectOut]:
    return [ProjectOut.of(p) for p in lifecycle.list_projects(db(), require_user())]


@api.operation("/projects/<int:project_id>", "GET", summary="One project", tag="projects",
               permission=Permission.VIEW_PROJECTS, response=ProjectOut)
def get_project(project_id: int) -> ProjectOut:
    return ProjectOut.of(lifecycle.get_project(db(), require_user(), project_id))


def _change(project_id: int, action: str, reason: str) -> ProjectOut:
    project = lifecycle.get_project(db(), require_user(), project_id)
    commands = {"suspend": lifecycle.suspend, "reinstate": lifecycle.reinstate, "revoke": lifecycle.revoke,
                "close": lifecycle.close}
    run(commands[action], require_user(), project, reason)
    return ProjectOut.of(project)


@api.operation("/projects/<int:project_id>/suspend", "POST", summary="Suspend a project (administrator)",
               tag="projects", permission=Permission.MANAGE_PROJECTS, body=ReasonIn, response=ProjectOut,
               errors=(409,))
def suspend_project(project_id: int, body: ReasonIn) -> ProjectOut:
    return _change(project_id, "suspend", body.reason)


@api.operation("/projects/<int:project_id>/reinstate", "POST", summary="Reinstate a suspended project",
               tag="projects", permission=Permission.MANAGE_PROJECTS, body=ReasonIn, response=ProjectOut,
               errors=(409,))
def reinstate_project(project_id: int, body: ReasonIn) -> ProjectOut:
    return _change(project_id, "reinstate", body.reason)


@api.operation("/projects/<int:project_id>/revoke", "POST", summary="Revoke a project's access", tag="projects",
               permission=Permission.MANAGE_PROJECTS, body=ReasonIn, response=ProjectOut, errors=(409,))
def revoke_project(project_id: int, body: ReasonIn) -> ProjectOut:
    return _change(project_id, "revoke", body.reason)


@api.operation("/projects/<int:project_id>/security-tier", "POST",
               summary="Raise an active project to the high security tier (administrator; its workspaces stop)",
               tag="projects", permission=Permission.MANAGE_PROJECTS, body=ReasonIn, response=ProjectOut,
               errors=(409,))
def raise_security_tier(project_id: int, body: ReasonIn) -> ProjectOut:
    project = lifecycle.get_project(db(), require_user(), project_id)
    run(lifecycle.raise_security_tier, require_user(), project, body.reason)
    return ProjectOut.of(project)


@api.operation("/projects/<int:project_id>/close", "POST", summary="Close a project (lead or administrator)",
               tag="projects", permission=Permission.VIEW_PROJECTS, body=ReasonIn, response=ProjectOut,
               errors=(409,))
def close_project(project_id: int, body: ReasonIn) -> ProjectOut:
    return _change(project_id, "close", body.reason)


@api.operation("/projects/<int:project_id>/amendments", "POST", summary="Start an amendment (project lead)",
               tag="projects", permission=Permission.APPLY, response=ApplicationOut, status=201, errors=(409,))
def start_amendment(project_id: int) -> ApplicationOut:
    project = lifecycle.get_project(db(), require_user(), project_id)
    return _application_out(run(applications.start_amendment, require_user(), project))


@api.operation("/agreement", "GET", summary="The current data access agreement", tag="applications",
               permission=Permission.USE_ACCOUNT, response=AgreementOut, errors=(404,))
def get_agreement() -> AgreementOut:
    agreement = agreements.current(db())
    if agreement is None:
        raise NotFound("No agreement has been published yet.")
    return AgreementOut(version=agreement.version, text=agreement.text, published_at=agreement.published_at)


@api.operation("/agreement", "POST", summary="Publish a new version of the agreement (every running workspace stops "
               "until its person accepts it)", tag="applications",
               permission=Permission.MANAGE_AGREEMENTS, body=AgreementIn, response=AgreementOut, status=201)
def publish_agreement(body: AgreementIn) -> AgreementOut:
    agreement = run(agreements.publish, require_user(), body.text)
    return AgreementOut(version=agreement.version, text=agreement.text, published_at=agreement.published_at)


@api.operation("/register", "GET", summary="The public register of approved projects (no token needed)",
               tag="register", permission=None, response=RegisterOut)
@records_download("register")
def get_register() -> RegisterOut:
    return RegisterOut(columns=register.COLUMNS, rows=register.rows(db(), catalogue()))


class WorkspaceOut(BaseModel):
    login_url: str = Field(description="Open this in the browser within 30 seconds to sign in to the workspace")


@api.operation("/projects/<int:project_id>/workspace", "POST",
               summary="Start or reuse your workspace for the project; returns a one-time sign-in link",
               tag="workspaces", permission=Permission.VIEW_PROJECTS, response=WorkspaceOut, errors=(503,))
def open_workspace(project_id: int) -> WorkspaceOut:
    from flask import current_app

    from gateway.web.context import end_transaction
    from gateway.workspaces import service

    user_id = require_user().id
    lifecycle.get_project(db(), require_user(), project_id)  # 404 / 403 before any work
    end_transaction()
    return WorkspaceOut(login_url=service.open_workspace(current_app.extensions["sde_sessionmaker"], settings(),
                                                         user_id, project_id))


class AcceptIn(Strict):
    version: int = Field(ge=1)


@api.operation("/agreement/accept", "POST", summary="Accept the current data access agreement", tag="applications",
               permission=Permission.USE_ACCOUNT, body=AcceptIn, response=AgreementOut)
def accept_agreement(body: AcceptIn) -> AgreementOut:
    run(agreements.accept, require_user(), body.version)
    return get_agreement()


class ExtractVersionOut(BaseModel):
    version: int
    status: str
    live: bool
    rows: int
    columns: int
    opt_outs_removed: int
    share_below_k: float
    built_at: dt.datetime
    released_at: dt.datetime | None
    needs_second_person: bool = Field(description="High risk: one custodian proposes the release, another confirms")
    release_proposed_by: str | None = Field(description="The custodian who proposed releasing this (held) version")
    release_proposed_at: dt.datetime | None
    manifest: dict[str, Any]


class ExtractsOut(BaseModel):
    live_version: int | None
    build_state: str | None
    build_progress: float | None = Field(description="0 to 1 while a build runs")
    versions: list[ExtractVersionOut]


def _extracts_out(project: Project) -> ExtractsOut:
    from gateway.extracts import service as extracts

    live = extracts.live_version(settings(), project)
    build = extracts.latest_build(db(), project)
    return ExtractsOut(
        live_version=live, build_state=build.state if build else None,
        build_progress=(build.rows_done / build.rows_total) if build and build.rows_total else None,
        versions=[ExtractVersionOut(version=v.version, status=v.status, live=v.version == live, rows=v.rows,
                                    columns=v.columns, opt_outs_removed=v.opt_outs_removed,
                                    share_below_k=v.share_below_k, built_at=v.built_at, released_at=v.released_at,
                                    needs_second_person=v.status == "held_for_custodian"
                                    and extracts.needs_second_person(settings(), v),
                                    release_proposed_by=_username(v.release_proposed_by_id),
                                    release_proposed_at=v.release_proposed_at, manifest=v.manifest)
                  for v in extracts.versions(db(), project)])


def _username(user_id: int | None) -> str | None:
    from gateway.models import User

    user = db().get(User, user_id) if user_id is not None else None
    return user.username if user else None


@api.operation("/projects/<int:project_id>/extracts", "GET", summary="The project's extract versions and build",
               tag="extracts", permission=Permission.VIEW_PROJECTS, response=ExtractsOut)
@records_download("project", "project_id")  # it carries every version's manifest: another door to them
def list_extracts(project_id: int) -> ExtractsOut:
    return _extracts_out(lifecycle.get_project(db(), require_user(), project_id))


@api.operation("/projects/<int:project_id>/extracts", "POST", summary="Build a new extract version (custodian)",
               tag="extracts", permission=Permission.RELEASE_EXTRACTS, response=ExtractsOut, status=202,
               errors=(409,))
def refresh_extract(project_id: int) -> ExtractsOut:
    from gateway.extracts import service as extracts

    project = lifecycle.get_project(db(), require_user(), project_id)
    run(extracts.refresh, require_user(), project)
    return _extracts_out(project)


@api.operation("/projects/<int:project_id>/extracts/<int:version>/release", "POST",
               summary="Release the newest version held for the custodian, with a reason (it becomes live). A "
                       "high-risk version needs two custodians: the first call proposes, a different custodian's "
                       "call confirms", tag="extracts",
               permission=Permission.RELEASE_EXTRACTS, body=ReasonIn, response=ExtractsOut, errors=(409,))
def release_extract(project_id: int, version: int, body: ReasonIn) -> ExtractsOut:
    from gateway.extracts import service as extracts

    project = lifecycle.get_project(db(), require_user(), project_id)
    run(extracts.release_held, settings(), require_user(), project, version, body.reason)
    return _extracts_out(project)
