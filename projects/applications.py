"""Applications for data access: drafting, the team, the variables, submission and withdrawal.

Drafts save with partial data; submission checks everything and reports every problem at once.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, bindparam, false, func, or_, select
from sqlalchemy.orm import Session, joinedload, lazyload, load_only, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from gateway import audit
from gateway.config import DacSettings
from gateway.db import utcnow
from gateway.errors import Conflict, NotFound, PermissionDenied, ValidationError
from gateway.models import User
from gateway.permissions import Permission, check_permission, has_permission
from projects import agreements, cohort, dates, events, tariff
from projects.accreditation_rules import check_accredited, valid_accreditation
from projects.catalogue import Catalogue, lookup, needs_justification, requestable
from projects.models import (
    Application,
    ApplicationMember,
    ApplicationVariable,
    Project,
    ProjectMember,
    ReviewAssignment,
)
from projects.workflow import AppState, check_application_move
from projects.workspace_tiers import TIERS

EDITABLE_STATES = {AppState.DRAFT, AppState.CHANGES_REQUESTED}
WORKSPACE_SIZES = tuple(TIERS)

ARTICLE6 = {
    "6(1)(a)": "consent", "6(1)(c)": "legal obligation", "6(1)(e)": "public task",
    "6(1)(f)": "legitimate interests",
}
ARTICLE9 = {
    "9(2)(a)": "explicit consent", "9(2)(g)": "substantial public interest",
    "9(2)(h)": "health or social care", "9(2)(i)": "public health", "9(2)(j)": "research and statistics",
}
COMMON_LAW = {
    "consent": "consent", "s251": "section 251 support (Confidentiality Advisory Group)",
    "anonymised": "not confidential: anonymised in line with the ICO code", "statutory": "statutory gateway",
}

TEXT_FIELDS = ("title", "lay_summary", "technical_summary", "public_benefit", "funder", "commercial_details",
               "cohort_description", "legal_basis_article6", "legal_basis_article9", "common_law_basis",
               "ethics_reference", "opt_out_reason", "workspace_size", "intended_outputs", "amendment_summary")
OTHER_FIELDS = ("commercial_involvement", "date_from", "date_to", "opt_out_applies", "requested_end_date")
EDITABLE_FIELDS = TEXT_FIELDS + OTHER_FIELDS + cohort.COHORT_FIELDS

LIMITS = {"title": 300, "funder": 300, "ethics_reference": 100}


def max_term_months() -> int:
    """The tariff's maximum term: no approval or extension gives access further ahead than this."""
    return tariff.max_term_months()


def _next_reference(session: Session, prefix: str) -> str:
    year = utcnow().year
    count = session.scalar(select(func.count()).select_from(Application)
                           .where(Application.reference.like(f"{prefix}-{year}-%"))) or 0
    return f"{prefix}-{year}-{count + 1:04d}"


# --- visibility and ownership -------------------------------------------------------------------

def is_team_member(user: User, application: Application) -> bool:
    return user.id == application.applicant_id or any(m.user_id == user.id for m in application.members)


def sees_submitted_applications(user: User) -> bool:
    """The committee and project managers may see every application once it is submitted, not only their team's."""
    return has_permission(user, Permission.REVIEW_APPLICATIONS) or has_permission(user, Permission.MANAGE_PROJECTS)


def can_view_application(user: User, application: Application) -> bool:
    if is_team_member(user, application):
        return True
    if application.state == AppState.DRAFT:
        return False  # a draft is the team's own business
    return sees_submitted_applications(user)


# The same two rules as SQL conditions on Application, for pages that count rows instead of loading them. Each must
# select exactly the rows its Python twin accepts (tests/integration/test_rules_in_sql.py holds them together). They
# take the person's id as a value or as a bound parameter, so a statement built from them can be built once per
# process; what the person's roles decide is passed in, worked out in Python.

def team_member_clause(user_id: int | BindParameter[int]) -> ColumnElement[bool]:
    """``is_team_member`` in the database: the applicant or a named member."""
    return or_(Application.applicant_id == user_id, Application.members.any(ApplicationMember.user_id == user_id))


def can_view_application_clause(user_id: int | BindParameter[int], sees_submitted: bool) -> ColumnElement[bool]:
    """``can_view_application`` in the database; ``sees_submitted`` is ``sees_submitted_applications(user)``."""
    return or_(team_member_clause(user_id), Application.state != AppState.DRAFT.value if sees_submitted else false())


def can_edit_application(user: User, application: Application) -> bool:
    return user.id == application.applicant_id and application.state in EDITABLE_STATES


def lock_afresh(session: Session, application: Application) -> None:
    """Lock the application's row and forget what was read of it, so what is checked next (its state, round, team,
    assignments and votes) is as committed: a submission, withdrawal, decision or vote committed since this session
    read it is seen, and one in flight waits. Every command that moves or changes an application calls it before
    checking: two tabs, or the applicant and the chair, each acted on what they had read, and the later write
    overwrote the earlier (an approved application marked withdrawn, a submitted one edited)."""
    session.flush()
    session.execute(select(Application.id).where(Application.id == application.id).with_for_update())
    for row in [*application.assignments, *(r for a in application.assignments for r in a.reviews)]:
        session.expire(row)
    session.expire(application)


def check_can_edit_application(user: User, application: Application, session: Session | None = None) -> None:
    """The applicant, while the application is a draft or returned for changes. With ``session`` (a command about
    to change it), judged on the application as committed, under its lock."""
    if user.id != application.applicant_id:
        raise PermissionDenied("Only the applicant can change this application.")
    if session is not None:
        lock_afresh(session, application)
    if application.state not in EDITABLE_STATES:
        raise Conflict("This application cannot be changed now: it is "
                       f"{application.state.replace('_', ' ')}.")


# An amendment's project with its team and former team, the rows only (the committee's conflict rule reads them:
# projects.dac.automatic_conflict), joined to the application (None, and no rows, for a new application).
_AMENDED_PROJECT = joinedload(Application.project).options(
    joinedload(Project.members).lazyload(ProjectMember.user), joinedload(Project.former_members),
    lazyload(Project.variables))

# The application page in four statements: the application with its organisation, team (without the role grants of
# the people named), decisions and amended project (few rows each: joined); its variables; its reviewers with their
# roles (the lay vote of the quorum) and their votes, joined to the assignments.
_PAGE = (joinedload(Application.organisation),
         joinedload(Application.members).joinedload(ApplicationMember.user).lazyload(User.role_grants),
         joinedload(Application.decisions), _AMENDED_PROJECT,
         selectinload(Application.assignments).joinedload(ReviewAssignment.reviewer)
         .joinedload(User.role_grants),
         selectinload(Application.assignments).joinedload(ReviewAssignment.reviews))


def get_application(session: Session, user: User, application_id: int) -> Application:
    application = session.get(Application, application_id, options=_PAGE)
    if application is None or not can_view_application(user, application):
        raise NotFound("No such application.")  # not yours answers exactly like not there: ids cannot be probed
    return application


# The application page's three statements as in _PAGE, each built once per process (SQLAlchemy keeps a built
# statement's cache key; a selectin load builds its statement on every request): the application with its
# organisation, team and decisions; its variables; its reviewers (with their roles) and their votes, in the order
# they were assigned. The reviewers are read up front for anyone but the team, and for the team once a round is
# decided (the reviewers' comments to the applicant); otherwise on first use, in one statement.
_ASSIGNMENTS = (joinedload(ReviewAssignment.reviewer).joinedload(User.role_grants),
                joinedload(ReviewAssignment.reviews))
_PAGE_APPLICATION = select(Application).where(Application.id == bindparam("application_id")).options(
    joinedload(Application.organisation),
    joinedload(Application.members).joinedload(ApplicationMember.user).lazyload(User.role_grants),
    joinedload(Application.decisions), _AMENDED_PROJECT,
    lazyload(Application.variables), lazyload(Application.assignments).options(*_ASSIGNMENTS))
_PAGE_VARIABLES = (select(ApplicationVariable)
                   .where(ApplicationVariable.application_id == bindparam("application_id"))
                   .order_by(ApplicationVariable.dataset, ApplicationVariable.variable))
_PAGE_ASSIGNMENTS = (select(ReviewAssignment).where(ReviewAssignment.application_id == bindparam("application_id"))
                     .order_by(ReviewAssignment.id).options(*_ASSIGNMENTS))


def application_page(session: Session, user: User, application_id: int) -> Application:
    """The application as get_application gives it, by the same rule, for its page (read at the start of a request)."""
    key = {"application_id": application_id}
    application = session.execute(_PAGE_APPLICATION, key).unique().scalar_one_or_none()
    if application is None or not can_view_application(user, application):
        raise NotFound("No such application.")  # not yours answers exactly like not there: ids cannot be probed
    set_committed_value(application, "variables", list(session.scalars(_PAGE_VARIABLES, key)))
    if not is_team_member(user, application) or application.decisions:
        set_committed_value(application, "assignments", list(session.scalars(_PAGE_ASSIGNMENTS, key).unique()))
    return application


def amendments_of(session: Session, user: User, project: Project) -> list[Application]:
    """The project's amendments this person may open, newest first (a draft stays its team's own business). The
    teams come in the same statement (who may open each; a project has a few amendments of a few people each), and
    only the columns the list shows and the rule reads are loaded: any other is refused rather than read row by row."""
    rows = session.scalars(_AMENDMENTS, {"project_id": project.id}).unique()
    return [a for a in rows if can_view_application(user, a)]


_AMENDMENTS = (select(Application).where(Application.project_id == bindparam("project_id"))
               .order_by(Application.id.desc())
               .options(load_only(Application.id, Application.reference, Application.state, Application.applicant_id,
                                  raiseload=True),
                        joinedload(Application.members).load_only(ApplicationMember.user_id, raiseload=True)
                        .lazyload(ApplicationMember.user),
                        lazyload(Application.variables), lazyload(Application.assignments)))  # once per process


# A list needs each application's team (who may see it, conflicts) and, for the committee's counts, its reviewers'
# votes; never the variables, nor the role grants of the people named (both read only if a caller asks).
_LIST = (lazyload(Application.variables),
         selectinload(Application.members).joinedload(ApplicationMember.user).lazyload(User.role_grants))
_WITH_REVIEWS = (selectinload(Application.assignments).joinedload(ReviewAssignment.reviewer)
                 .lazyload(User.role_grants),
                 selectinload(Application.assignments).selectinload(ReviewAssignment.reviews))


def list_applications(session: Session, user: User, with_reviews: bool = True) -> list[Application]:
    """What this person may see: their team's applications, and for the DAC every submitted one. Without
    ``with_reviews`` the reviewers and votes are not read up front (a list page that shows neither)."""
    query = select(Application).order_by(Application.id.desc()).options(
        *_LIST, *(_WITH_REVIEWS if with_reviews else (lazyload(Application.assignments),)))
    if not sees_submitted_applications(user):
        # the same rule narrowed in the database: without those permissions only the team's own are visible
        query = query.where(team_member_clause(user.id))
    return [a for a in session.scalars(query) if can_view_application(user, a)]


# --- drafting ---------------------------------------------------------------------------------------

def create_draft(session: Session, actor: User, title: str) -> Application:
    check_permission(actor, Permission.APPLY)
    title = title.strip()
    if not title or len(title) > LIMITS["title"]:
        raise ValidationError("The application could not be started.",
                              field_errors={"title": ["Enter a title of up to 300 characters."]})
    check_accredited(session, actor, "start an application")
    application = Application(reference=_next_reference(session, "LSDE"), applicant_id=actor.id,
                              organisation_id=actor.organisation_id, title=title)
    application.members = [ApplicationMember(user_id=actor.id, project_role="lead")]
    session.add(application)
    session.flush()
    audit.record(session, actor, "application.created", "application", application.id,
                 {"reference": application.reference, "kind": "new"})
    return application


def _coerce(field: str, value: Any, errors: dict[str, list[str]]) -> Any:
    if field in TEXT_FIELDS:
        text = "" if value is None else str(value).strip()
        if field in LIMITS and len(text) > LIMITS[field]:
            errors[field] = [f"Use {LIMITS[field]} characters or fewer."]
        if field == "workspace_size" and text and text not in WORKSPACE_SIZES:
            errors[field] = ["Choose small, medium or large."]
        if field == "legal_basis_article6" and text and text not in ARTICLE6:
            errors[field] = ["Choose a lawful basis under Article 6."]
        if field == "legal_basis_article9" and text and text not in ARTICLE9:
            errors[field] = ["Choose a condition under Article 9."]
        if field == "common_law_basis" and text and text not in COMMON_LAW:
            errors[field] = ["Choose how the common law duty of confidentiality is met."]
        return text
    if field in {"date_from", "date_to", "requested_end_date"}:
        if value in (None, ""):
            return None
        if isinstance(value, dt.date):
            day, problem = value, dates.outside(value)
        else:
            day, problem = dates.parse(str(value))
        if problem:
            errors[field] = [problem]
            return None
        if field == "requested_end_date" and day is not None:
            latest = dates.latest_access_end(utcnow().date(), max_term_months())
            if day > latest:
                errors[field] = [f"An extension can reach the tariff's maximum term at most: enter a date on or "
                                 f"before {dates.long(latest)}."]
                return None
        return day
    if field in {"commercial_involvement", "opt_out_applies"}:
        if value in (None, ""):
            return None if field == "opt_out_applies" else False
        if isinstance(value, bool):
            return value
        if str(value).lower() in {"yes", "true", "1"}:
            return True
        if str(value).lower() in {"no", "false", "0"}:
            return False
        errors[field] = ["Choose yes or no."]
        return None
    raise ValidationError(f"Unknown field {field}.")


def update_draft(session: Session, actor: User, application: Application, changes: dict[str, Any],
                 catalogue: Catalogue | None = None) -> list[str]:
    """Save whatever is given (partial is fine); only the format of each value is checked here, and the cohort
    criteria against the catalogue (which must then be given), so nothing unselectable is ever stored."""
    check_can_edit_application(actor, application, session)
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise ValidationError("The application could not be saved.",
                              field_errors={f: ["This field cannot be changed."] for f in sorted(unknown)})
    errors: dict[str, list[str]] = {}
    values = {field: _coerce(field, value, errors) for field, value in changes.items()
              if field not in cohort.COHORT_FIELDS}
    if any(field in changes for field in cohort.COHORT_FIELDS):
        if catalogue is None:
            raise TypeError("update_draft needs the catalogue to check cohort criteria")
        values.update(cohort.clean(changes, application, catalogue, errors))
    start = values.get("date_from", application.date_from)
    end = values.get("date_to", application.date_to)
    if not errors and start is not None and end is not None and start > end:  # the database refuses it too
        errors["date_to" if "date_to" in values else "date_from"] = [
            "The end of the date range must not be before its start."]
    if errors:
        raise ValidationError("The application could not be saved.", field_errors=errors)
    changed = [f for f, v in values.items() if getattr(application, f) != v]
    for field in changed:
        setattr(application, field, values[field])
    if changed:
        application.updated_at = utcnow()
        audit.record(session, actor, "application.updated", "application", application.id, {"fields": changed})
    return changed


@dataclass(frozen=True)
class VariableChoice:
    dataset: str
    variable: str
    justification: str = ""


def set_variables(session: Session, actor: User, application: Application, catalogue: Catalogue,
                  choices: list[VariableChoice]) -> None:
    check_can_edit_application(actor, application, session)
    errors: dict[str, list[str]] = {}
    for choice in choices:
        found = lookup(catalogue, choice.dataset, choice.variable)
        key = f"{choice.dataset}.{choice.variable}"
        if found is None:
            errors[key] = [f"{key} is not in the data catalogue."]
        elif not requestable(found[1]):
            errors[key] = [f"{key} directly identifies people and is never released."]
    if errors:
        raise ValidationError("The variables could not be saved.", field_errors=errors)
    wanted = {(c.dataset, c.variable): c.justification.strip() for c in choices}
    existing = {(v.dataset, v.variable): v for v in application.variables}
    for key, row in existing.items():
        if key not in wanted:
            application.variables.remove(row)
        else:
            row.justification = wanted[key]
    for key, justification in wanted.items():
        if key not in existing:
            application.variables.append(ApplicationVariable(dataset=key[0], variable=key[1],
                                                             justification=justification))
    session.flush()
    audit.record(session, actor, "application.variables_set", "application", application.id,
                 {"variables": sorted(f"{d}.{v}" for d, v in wanted)})


def apply_generalisation(session: Session, actor: User, application: Application, generalisation: dict[str, Any],
                         drop: list[str]) -> None:
    """The applicant takes a risk preview's suggestion in one step: coarser quasi-identifiers and, if it says so,
    fewer variables. Checked like any edit of the draft; the audit event says what changed."""
    from projects.extract_terms import Generalisation

    check_can_edit_application(actor, application, session)
    try:
        chosen = Generalisation(**generalisation)
    except (TypeError, ValueError):
        raise ValidationError("The suggestion could not be applied.",
                              field_errors={"generalisation": ["This is not a generalisation the gateway knows."]}
                              ) from None
    from projects.extract_terms import LEVELS, level_of

    current = Generalisation(**(application.generalisation or {}))
    finer = [dimension for dimension in LEVELS if level_of(chosen, dimension) < level_of(current, dimension)]
    if finer or chosen.event_dates != current.event_dates:
        # a suggestion only ever coarsens: asking for more detail is an edit the committee must see as one
        raise ValidationError("The suggestion could not be applied.",
                              field_errors={"generalisation": ["A suggestion can only make details coarser."]})
    have = {f"{v.dataset}.{v.variable}": v for v in application.variables}
    unknown = sorted(set(drop) - set(have))
    if unknown:
        raise ValidationError("The suggestion could not be applied.",
                              field_errors={"drop": [f"{name} is not among the chosen variables." for name in unknown]})
    if len(drop) >= len(have):
        raise ValidationError("The suggestion could not be applied.",
                              field_errors={"drop": ["At least one variable must remain."]})
    before = application.generalisation
    application.generalisation = chosen.model_dump(mode="json")
    for name in sorted(set(drop)):
        application.variables.remove(have[name])
    application.updated_at = utcnow()
    session.flush()
    audit.record(session, actor, "application.generalisation_applied", "application", application.id,
                 {"before": before, "generalisation": application.generalisation, "dropped": sorted(set(drop))})


def add_member(session: Session, actor: User, application: Application, member: User, project_role: str) -> None:
    check_can_edit_application(actor, application, session)
    project_role = project_role.strip() or "analyst"
    if any(m.user_id == member.id for m in application.members):
        raise Conflict(f"{member.display_name} is already on the team.")
    if not has_permission(member, Permission.APPLY):
        raise ValidationError("The team member could not be added.",
                              field_errors={"username": [f"{member.display_name} is not a researcher."]})
    check_accredited(session, member, "be added to an application")
    application.members.append(ApplicationMember(user_id=member.id, project_role=project_role[:100]))
    session.flush()
    audit.record(session, actor, "application.member_added", "application", application.id,
                 {"member": member.username, "project_role": project_role})


def remove_member(session: Session, actor: User, application: Application, member_user_id: int) -> None:
    check_can_edit_application(actor, application, session)
    if member_user_id == application.applicant_id:
        raise Conflict("The applicant cannot be removed from their own application.")
    row = next((m for m in application.members if m.user_id == member_user_id), None)
    if row is None:
        raise NotFound("That person is not on the team.")
    application.members.remove(row)
    session.flush()
    audit.record(session, actor, "application.member_removed", "application", application.id,
                 {"member": row.user.username})


# --- submission -------------------------------------------------------------------------------------

def _words(text: str) -> int:
    return len(re.findall(r"\S+", text))


def submission_problems(session: Session, application: Application, catalogue: Catalogue,
                        dac: DacSettings, today: dt.date) -> dict[str, list[str]]:
    """Every reason the application cannot be submitted yet, by field, all at once."""
    p: dict[str, list[str]] = {}

    def need(field: str, message: str) -> None:
        p.setdefault(field, []).append(message)

    a = application
    if a.kind == "amendment":
        if not a.amendment_summary:
            need("amendment_summary", "Say what the amendment changes and why.")
        if a.requested_end_date and a.requested_end_date <= today:
            need("requested_end_date", "The new end date must be in the future.")
        elif a.requested_end_date and a.requested_end_date > dates.latest_access_end(today, max_term_months()):
            need("requested_end_date", "The new end date is beyond the tariff's maximum term.")
    else:
        if not a.title:
            need("title", "Enter a title.")
        if not a.lay_summary:
            need("lay_summary", "Enter a lay summary in plain English.")
        elif _words(a.lay_summary) > dac.lay_summary_max_words:
            need("lay_summary", f"Keep the lay summary to {dac.lay_summary_max_words} words or fewer "
                                f"(it has {_words(a.lay_summary)}).")
        if not a.technical_summary:
            need("technical_summary", "Enter a technical summary.")
        if not a.public_benefit:
            need("public_benefit", "Explain the public benefit.")
        if a.commercial_involvement and not a.commercial_details:
            need("commercial_details", "Describe the commercial involvement.")
        if not a.cohort_description:
            need("cohort_description", "Describe the cohort.")
        if a.date_from is None:
            need("date_from", "Enter the start of the date range.")
        if a.date_to is None:
            need("date_to", "Enter the end of the date range.")
        if a.date_from and a.date_to and a.date_from > a.date_to:
            need("date_to", "The end of the date range must be after its start.")
        if not a.legal_basis_article6:
            need("legal_basis_article6", "Choose a lawful basis under UK GDPR Article 6.")
        if not a.legal_basis_article9:
            need("legal_basis_article9", "Choose a condition under UK GDPR Article 9.")
        if not a.common_law_basis:
            need("common_law_basis", "Say how the common law duty of confidentiality is met.")
        if not a.ethics_reference:
            need("ethics_reference", "Enter the ethics approval reference (or 'not required' with the reason "
                                     "in the technical summary).")
        if a.opt_out_applies is None:
            need("opt_out_applies", "Say whether the national data opt-out applies.")
        elif not a.opt_out_reason:
            need("opt_out_reason", "Give the reason the national data opt-out does or does not apply.")
        if a.workspace_size not in WORKSPACE_SIZES:
            need("workspace_size", "Choose a workspace size.")
        if not a.intended_outputs:
            need("intended_outputs", "Describe the outputs you intend to take out.")
    if not a.variables:
        need("variables", "Choose the datasets and the exact variables you need.")
    for row in a.variables:
        found = lookup(catalogue, row.dataset, row.variable)
        if found is None:
            need("variables", f"{row.dataset}.{row.variable} is no longer in the catalogue.")
        elif needs_justification(found[1]) and not row.justification:
            need("variables", f"Justify why you need {row.dataset}.{row.variable}: it can help identify people.")
    for field, messages in cohort.stale(a, catalogue).items():
        for message in messages:
            need(field, message)
    for member in a.members:
        if valid_accreditation(session, member.user, today) is None:
            need("members", f"{member.user.display_name} does not hold a valid accreditation.")
    return p


def submit(session: Session, actor: User, application: Application, catalogue: Catalogue, dac: DacSettings,
           accepted_agreement_version: int | None, today: dt.date) -> None:
    check_can_edit_application(actor, application, session)
    check_accredited(session, actor, "submit an application", today)
    check_application_move(application.state, AppState.SUBMITTED)
    problems = submission_problems(session, application, catalogue, dac, today)
    agreement = agreements.current(session)
    if agreement is None:
        problems.setdefault("agreement", []).append("No data access agreement is published yet.")
    elif accepted_agreement_version != agreement.version:
        problems.setdefault("agreement", []).append(
            f"Read and accept the data access agreement (version {agreement.version}).")
    if problems:
        raise ValidationError("The application cannot be submitted yet.", field_errors=problems)
    assert agreement is not None
    resubmission = application.state == AppState.CHANGES_REQUESTED
    if resubmission:
        application.round += 1  # earlier votes stay on record but no longer count
    application.state = AppState.SUBMITTED
    application.submitted_at = utcnow()
    application.agreement_version = agreement.version
    application.agreement_accepted_at = utcnow()
    agreements.accept(session, actor, agreement.version)
    audit.record(session, actor, "application.resubmitted" if resubmission else "application.submitted",
                 "application", application.id, {"round": application.round,
                                                 "agreement_version": agreement.version})
    events.emit(session, events.ApplicationSubmitted(application))  # the chairs are emailed


def withdraw(session: Session, actor: User, application: Application) -> None:
    if actor.id != application.applicant_id:
        raise PermissionDenied("Only the applicant can withdraw this application.")
    lock_afresh(session, application)
    check_application_move(application.state, AppState.WITHDRAWN)
    previous = application.state
    application.state = AppState.WITHDRAWN
    audit.record(session, actor, "application.withdrawn", "application", application.id, {"from": previous})


# --- amendments ---------------------------------------------------------------------------------------

def start_amendment(session: Session, actor: User, project: Project) -> Application:
    """A new application of kind 'amendment', seeded with the project's current team and variables."""
    from projects.workflow import ProjectState

    if actor.id != project.lead_id:
        raise PermissionDenied("Only the project lead can ask for an amendment.")
    if project.state not in {ProjectState.ACTIVE, ProjectState.EXPIRED}:
        raise Conflict(f"A {project.state} project cannot be amended.")
    open_amendment = session.scalar(select(Application).where(
        Application.project_id == project.id,
        Application.state.in_([s.value for s in (AppState.DRAFT, AppState.SUBMITTED, AppState.UNDER_REVIEW,
                                                 AppState.CHANGES_REQUESTED)])))
    if open_amendment is not None:
        raise Conflict(f"Amendment {open_amendment.reference} is already open for this project.")
    check_accredited(session, actor, "ask for an amendment")
    original = session.get(Application, project.application_id)
    assert original is not None
    amendment = Application(
        reference=_next_reference(session, "AMD"), kind="amendment", project_id=project.id,
        applicant_id=actor.id, organisation_id=project.organisation_id, title=project.title,
        lay_summary=project.lay_summary, technical_summary=original.technical_summary,
        public_benefit=project.public_benefit, funder=original.funder,
        commercial_involvement=project.commercial_involvement, commercial_details=original.commercial_details,
        cohort_description=original.cohort_description, date_from=project.date_from, date_to=project.date_to,
        legal_basis_article6=original.legal_basis_article6, legal_basis_article9=original.legal_basis_article9,
        common_law_basis=original.common_law_basis, ethics_reference=original.ethics_reference,
        opt_out_applies=project.opt_out_applies, opt_out_reason=original.opt_out_reason,
        workspace_size=project.workspace_size, intended_outputs=original.intended_outputs,
        generalisation=project.generalisation, **cohort.copied(project))
    amendment.members = [ApplicationMember(user_id=m.user_id, project_role=m.project_role) for m in project.members]
    justifications = {(v.dataset, v.variable): v.justification for v in original.variables}
    amendment.variables = [ApplicationVariable(dataset=v.dataset, variable=v.variable,
                                               justification=justifications.get((v.dataset, v.variable), ""))
                           for v in project.variables]
    session.add(amendment)
    session.flush()
    audit.record(session, actor, "application.created", "application", amendment.id,
                 {"reference": amendment.reference, "kind": "amendment", "project": project.reference})
    return amendment
