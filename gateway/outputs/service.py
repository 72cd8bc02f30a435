"""Output request commands. Each takes the session and the acting user, checks the rules, changes state
through the transition table and records the audit event in the same transaction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, Select, bindparam, func, select
from sqlalchemy.orm import Session, joinedload, lazyload, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from gateway import audit, outbox
from gateway.config import Settings
from gateway.db import utcnow
from gateway.errors import Conflict, NotFound, PermissionDenied, ValidationError
from gateway.models import User
from gateway.outputs import files as intake
from gateway.outputs.content import PseudonymMatcher, matcher_for_extracts
from gateway.outputs.models import (
    OutputComment,
    OutputException,
    OutputExceptionDecision,
    OutputFile,
    OutputGroup,
    OutputRequest,
    OutputReview,
    OutputVote,
)
from gateway.outputs.workflow import (
    COMMENTS_OPEN_STATES,
    EARLY_RETURN_STATES,
    EDITABLE_STATES,
    REVIEWABLE_STATES,
    WITHDRAWABLE_STATES,
    OutputState,
    check_output_move,
    label,
)
from gateway.permissions import ROLE_PERMISSIONS, Permission, has_permission
from projects.accreditation_rules import check_accredited
from projects.lifecycle import is_member, on_team_ever_clause, was_member
from projects.models import Project, ProjectMember
from projects.workflow import ProjectState, check_round

REVIEWS_NEEDED = 2
VOTES = ("approve", "changes_requested")
KINDS = ("output", "supporting")
EXCEPTION_DECISIONS = ("accept", "refuse")
# the states in which a researcher may ask for an exception on a file whose automatic check failed
EXCEPTION_STATES = frozenset({OutputState.SUBMITTED, OutputState.PARTIALLY_REVIEWED, OutputState.RETURNED})
# the project states in which nothing of the project's leaves: suspended (during an investigation) or revoked
HOLDING_PROJECT_STATES = frozenset({ProjectState.SUSPENDED, ProjectState.REVOKED})


# --- adapters to the other parts ------------------------------------------------------------------------------

def check_budget(session: Session, project: Project) -> None:
    """Refuse a new output check when the project's budget is used up (charging raises a 409)."""
    from gateway.charging.budget import check_budget as charging_check_budget

    charging_check_budget(session, project, "output_check")


def meter_check(session: Session, request: OutputRequest, actor: User) -> None:
    """One output request checked in one round: a meter reading for charging (recorded once per round)."""
    from gateway.charging.metering import record_meter_event

    record_meter_event(session, request.project, "output_check", 1, f"output_check:{request.id}:{request.round}",
                       user=request.author, description=f"Output request {request.id}, round {request.round}",
                       actor=actor)


def differencing_since_checks(session: Session, request: OutputRequest) -> list[str]:
    """Tables approved or released since this request was checked that it conflicts with (the ledger's view)."""
    from gateway.outputs.ledger import approval_conflicts

    return approval_conflicts(session, request)


def extract_dir(settings: Settings, project: Project) -> Path | None:
    from gateway.workspaces.entitlement import current_extract

    return current_extract(settings.extracts_root, project)


def project_pseudonyms(settings: Settings, project: Project) -> PseudonymMatcher:
    """Every pseudonym in every extract version built for the project, ready to search any output for: a running
    workspace keeps the version it started with and a home keeps files made from earlier ones, so a pseudonym a
    rebuild dropped (a changed cohort, a new opt-out) is still one of the project's."""
    from gateway.extracts import storage
    from gateway.workspaces.entitlement import workspace_id

    name = workspace_id(project)  # the live version ("current") is one of these
    return matcher_for_extracts([storage.version_dir(settings.extracts_root, name, v)
                                 for v in storage.list_versions(settings.extracts_root, name)])


# --- who may do what ---------------------------------------------------------------------------------------

def can_view(user: User, request: OutputRequest) -> bool:
    return is_member(user, request.project) or has_permission(user, Permission.REVIEW_OUTPUTS)


def review_conflict(user: User, request: OutputRequest) -> str | None:
    if request.author_id == user.id:
        return "you wrote this request"
    if is_member(user, request.project):
        return "you are on this project's team"
    if was_member(user, request.project):
        return "you were on this project's team"
    return None


def no_review_conflict_clause(user_id: int | BindParameter[int]) -> ColumnElement[bool]:
    """``review_conflict(user, request) is None`` in the database, as a condition on OutputRequest: not its author,
    and neither on its project's team nor ever taken off it (tests/integration/test_rules_in_sql.py holds the two
    together)."""
    return (OutputRequest.author_id != user_id) & ~OutputRequest.project.has(on_team_ever_clause(user_id))


def checker_counts(user_id: int | BindParameter[int]) -> Select[tuple[int, int]]:
    """The checker's queue counted in the database, by the queue's own rule (no_review_conflict_clause): (requests
    awaiting review with no review of theirs this round, requests with both reviews in awaiting a decision)."""
    open_to_them = no_review_conflict_clause(user_id)
    reviewed_by_them = OutputRequest.reviews.any((OutputReview.reviewer_id == user_id)
                                                 & (OutputReview.round == OutputRequest.round))
    to_check = select(func.count()).select_from(OutputRequest).where(
        OutputRequest.state.in_([s.value for s in REVIEWABLE_STATES]), open_to_them, ~reviewed_by_them)
    to_decide = select(func.count()).select_from(OutputRequest).where(
        OutputRequest.state == OutputState.REVIEWED.value, open_to_them)
    return select(to_check.scalar_subquery(), to_decide.scalar_subquery())


def can_review(user: User, request: OutputRequest) -> bool:
    return has_permission(user, Permission.REVIEW_OUTPUTS) and review_conflict(user, request) is None


def check_can_review(user: User, request: OutputRequest) -> None:
    if not has_permission(user, Permission.REVIEW_OUTPUTS):
        raise PermissionDenied("Only output checkers can review output requests.")
    reason = review_conflict(user, request)
    if reason:
        raise PermissionDenied(f"You cannot check this request: {reason}.")


def check_can_request(session: Session, user: User, project: Project) -> None:
    """A member of an active project, accredited today, with budget left."""
    if not has_permission(user, Permission.REQUEST_OUTPUTS) or not is_member(user, project):
        raise PermissionDenied("Only members of the project can request outputs from it.")
    if project.state != ProjectState.ACTIVE:
        raise Conflict(f"Project {project.reference} is {project.state}: outputs cannot be requested.")
    check_accredited(session, user, "request outputs")
    check_budget(session, project)


def check_project_releases(project: Project) -> None:
    """Nothing is approved for release from a suspended or revoked project (the checkers may still return or reject
    its requests); the worker holds an approved request's release the same way (gateway/outputs/release.py)."""
    if project.state in HOLDING_PROJECT_STATES:
        raise Conflict(f"Project {project.reference} is {project.state}: no output can be approved for release from "
                       "it. Return or reject the request, or decide once the project is reinstated.")


def check_author(user: User, request: OutputRequest) -> None:
    if request.author_id != user.id:
        raise PermissionDenied("Only the author of the request can change it.")


def _check_editable(session: Session, request: OutputRequest) -> None:
    """Under the request's lock, on its state as committed: a tab read while the request was returned must not change
    its files or groups after another tab submitted it."""
    _fresh_under_lock(session, request)
    if request.state not in EDITABLE_STATES:
        raise Conflict(f"The request is {label(request.state)}; files and groups can change only while it is "
                       "pending or returned.")


def _changed_meanwhile(now: str) -> Conflict:
    return Conflict(f"The request changed while you were working on it (it is now {label(now)}); reload the page "
                    "and try again.")


def _move(session: Session, actor: User | str, request: OutputRequest, target: OutputState,
          details: dict[str, Any] | None = None) -> None:
    # Re-read the state under a row lock: two people acting at once each decided on what they read, and the second
    # must not move the request from a state it has already left (read committed would let both writes through).
    stored = session.scalar(select(OutputRequest.state).where(OutputRequest.id == request.id).with_for_update())
    if stored is not None and stored != request.state:
        raise _changed_meanwhile(stored)
    check_output_move(request.state, target)
    previous = request.state
    request.state = target
    session.flush()
    audit.record(session, actor, f"output_request.{target.value}", "output_request", request.id,
                 {"from": previous, "round": request.round, **(details or {})})


# --- reading ----------------------------------------------------------------------------------------------

# The request page in five statements: the request with its project, team, former team and groups (few rows each:
# joined); its files with their votes; its reviews; its comments; its exceptions with their decisions. Nobody's role
# grants: the page decides only about the person viewing it (their roles came with their session).
_PAGE = (joinedload(OutputRequest.project).lazyload(Project.variables),
         joinedload(OutputRequest.project).joinedload(Project.members).joinedload(ProjectMember.user)
         .lazyload(User.role_grants),
         joinedload(OutputRequest.project).joinedload(Project.former_members),
         joinedload(OutputRequest.groups),
         selectinload(OutputRequest.files).joinedload(OutputFile.votes).joinedload(OutputVote.reviewer)
         .lazyload(User.role_grants),
         selectinload(OutputRequest.reviews).joinedload(OutputReview.reviewer).lazyload(User.role_grants),
         selectinload(OutputRequest.comments).joinedload(OutputComment.author).lazyload(User.role_grants),
         selectinload(OutputRequest.exceptions).joinedload(OutputException.requested_by).lazyload(User.role_grants),
         selectinload(OutputRequest.exceptions).joinedload(OutputException.decisions)
         .joinedload(OutputExceptionDecision.checker).lazyload(User.role_grants))


def get_request(session: Session, user: User, request_id: int) -> OutputRequest:
    request = session.get(OutputRequest, request_id, options=_PAGE)
    if request is None or not can_view(user, request):
        raise NotFound("No such output request.")  # not yours answers exactly like not there
    return request


# The request page's reads, each a statement built once per process (SQLAlchemy keeps a built statement's cache key,
# so a request pays only for the round trip and the rows), and each read only when the person viewing sees what it
# holds: the request with its author, groups and its project's team and former team (the rows, not the people: the
# rules need only who is or was on it); its files, with their votes for an output checker who may review it (nobody
# else sees votes); its comments; its reviews for that checker. Exceptions are read when the page shows one (a
# failing file).
_WITHOUT_GRANTS = lazyload(User.role_grants)
_PAGE_REQUEST = select(OutputRequest).where(OutputRequest.id == bindparam("request_id")).options(
    joinedload(OutputRequest.project).lazyload(Project.variables),
    joinedload(OutputRequest.project).joinedload(Project.members).lazyload(ProjectMember.user),
    joinedload(OutputRequest.project).joinedload(Project.former_members),
    joinedload(OutputRequest.author).options(_WITHOUT_GRANTS),
    joinedload(OutputRequest.groups),
    lazyload(OutputRequest.files), lazyload(OutputRequest.reviews), lazyload(OutputRequest.comments),
    lazyload(OutputRequest.exceptions).joinedload(OutputException.requested_by).options(_WITHOUT_GRANTS),
    lazyload(OutputRequest.exceptions).joinedload(OutputException.decisions)
    .joinedload(OutputExceptionDecision.checker).options(_WITHOUT_GRANTS))
_PAGE_FILES = (select(OutputFile).where(OutputFile.request_id == bindparam("request_id")).order_by(OutputFile.id)
               .options(lazyload(OutputFile.votes)))
_PAGE_FILES_VOTES = (select(OutputFile).where(OutputFile.request_id == bindparam("request_id"))
                     .order_by(OutputFile.id)
                     .options(joinedload(OutputFile.votes).joinedload(OutputVote.reviewer).options(_WITHOUT_GRANTS)))
_PAGE_REVIEWS = (select(OutputReview).where(OutputReview.request_id == bindparam("request_id"))
                 .order_by(OutputReview.id).options(joinedload(OutputReview.reviewer).options(_WITHOUT_GRANTS)))
_PAGE_COMMENTS = (select(OutputComment).where(OutputComment.request_id == bindparam("request_id"))
                  .order_by(OutputComment.id).options(joinedload(OutputComment.author).options(_WITHOUT_GRANTS)))


def request_page(session: Session, user: User, request_id: int) -> OutputRequest:
    """The request as get_request gives it, by the same rule, with what its page shows to this person read."""
    key = {"request_id": request_id}
    request = session.execute(_PAGE_REQUEST, key).unique().scalar_one_or_none()
    if request is None or not can_view(user, request):
        raise NotFound("No such output request.")  # not yours answers exactly like not there
    checker = can_review(user, request)
    set_committed_value(request, "files",
                        list(session.scalars(_PAGE_FILES_VOTES if checker else _PAGE_FILES, key).unique()))
    set_committed_value(request, "comments", list(session.scalars(_PAGE_COMMENTS, key).unique()))
    if checker:
        set_committed_value(request, "reviews", list(session.scalars(_PAGE_REVIEWS, key).unique()))
    return request


def get_file(request: OutputRequest, file_id: int) -> OutputFile:
    found = next((f for f in request.files if f.id == file_id), None)
    if found is None:
        raise NotFound("No such file in this request.")
    return found


# What a list of requests shows (number, project, title, state) needs none of their contents.
_WITHOUT_CONTENTS = (lazyload(OutputRequest.groups), lazyload(OutputRequest.files), lazyload(OutputRequest.reviews),
                     lazyload(OutputRequest.comments), lazyload(OutputRequest.exceptions))


# The database narrows the rows by the same rule (is_member still decides each one); each row's project comes joined
# (one per request) and the projects' teams in one more query, not one each. Built once per process (SQLAlchemy
# keeps a built statement's cache key).
_REQUESTS_FOR = (select(OutputRequest).order_by(OutputRequest.id.desc())
                 .where(OutputRequest.project.has(Project.members.any(ProjectMember.user_id == bindparam("user_id"))))
                 .options(joinedload(OutputRequest.project).lazyload(Project.variables),
                          joinedload(OutputRequest.project).selectinload(Project.members)
                          .joinedload(ProjectMember.user).lazyload(User.role_grants)))


def requests_for(session: Session, user: User) -> list[OutputRequest]:
    """The requests of the projects this person belongs to, newest first (a page listing them, which shows none of
    their contents and has read the person's projects already, uses requests_of)."""
    rows = session.scalars(_REQUESTS_FOR, {"user_id": user.id})
    return [r for r in rows if is_member(user, r.project)]


# The requests of projects already read with their teams: each request's project is found among them, not read again.
_REQUESTS_OF = (select(OutputRequest).where(OutputRequest.project_id.in_(bindparam("project_ids", expanding=True)))
                .order_by(OutputRequest.id.desc()).options(*_WITHOUT_CONTENTS))


def requests_of(session: Session, user: User, projects: list[Project]) -> list[OutputRequest]:
    """requests_for, when the caller has read this person's projects (with their teams) already: the requests of
    those of them this person belongs to, newest first, without their contents; is_member decides each one."""
    ids = [p.id for p in projects if is_member(user, p)]
    if not ids:
        return []
    rows = session.scalars(_REQUESTS_OF, {"project_ids": ids})
    return [r for r in rows if is_member(user, r.project)]


def returned_to_count(user_id: int | BindParameter[int]) -> Select[tuple[int]]:
    """The statement counting the requests of this person's that are returned to them: authored by them, on a project
    they are still a member of (the rule requests_for applies)."""
    return select(func.count()).select_from(OutputRequest).where(
        OutputRequest.author_id == user_id, OutputRequest.state == OutputState.RETURNED,
        OutputRequest.project.has(Project.members.any(ProjectMember.user_id == user_id)))


# Requests awaiting review or a decision, oldest first, in a fixed number of statements however many wait: the
# requests with their projects and the projects' former teams (joined: a few rows each), the projects' teams (the rows:
# the conflict rule needs only who is on them), then for the queue and home pages only the files (names and automatic
# verdicts) and the reviews (how many, and whose): nothing else of a request, nor anybody's account. The API's queue
# gives each request whole, each relationship read for every request at once. Built once per process.
_AWAITING = (select(OutputRequest)
             .where(OutputRequest.state.in_([OutputState.SUBMITTED.value, OutputState.PARTIALLY_REVIEWED.value,
                                             OutputState.REVIEWED.value]))
             .order_by(OutputRequest.submitted_at, OutputRequest.id))
_AWAITING_PROJECTS = (joinedload(OutputRequest.project).lazyload(Project.variables),
                      joinedload(OutputRequest.project).joinedload(Project.former_members),
                      joinedload(OutputRequest.project).selectinload(Project.members).lazyload(ProjectMember.user))
_AWAITING_CHECKS = _AWAITING.options(
    *_AWAITING_PROJECTS, selectinload(OutputRequest.files).lazyload(OutputFile.votes),
    selectinload(OutputRequest.reviews).lazyload(OutputReview.reviewer), lazyload(OutputRequest.groups),
    lazyload(OutputRequest.comments), lazyload(OutputRequest.exceptions), lazyload(OutputRequest.author))
_AWAITING_CHECKS_WHOLE = _AWAITING.options(*_AWAITING_PROJECTS)


def queue(session: Session, user: User, whole: bool = False) -> list[OutputRequest]:
    """The checker's queue: requests awaiting review or a decision that this checker may check, oldest first.
    ``whole``: with all of each request (the API's answer), not only what the queue page and the home page show."""
    rows = session.scalars(_AWAITING_CHECKS_WHOLE if whole else _AWAITING_CHECKS).unique()
    return [r for r in rows if can_review(user, r)]


def released_for_project(session: Session, project: Project) -> list[OutputRequest]:
    """The released requests themselves (the project page lists their titles, dates and hashes), none of their
    files, votes or comments, which are read only if a caller asks."""
    return list(session.scalars(select(OutputRequest).where(
        OutputRequest.project_id == project.id, OutputRequest.state == OutputState.RELEASED)
        .order_by(OutputRequest.released_at).options(lazyload("*"))))


# --- the author's commands ------------------------------------------------------------------------------------

def create_request(session: Session, actor: User, project: Project, title: str) -> OutputRequest:
    check_can_request(session, actor, project)
    title = title.strip()
    if not title:
        raise ValidationError("The request could not be created.", field_errors={"title": ["Give the request a title."]})  # noqa: E501
    request = OutputRequest(project_id=project.id, author_id=actor.id, title=title[:200], state=OutputState.PENDING)
    session.add(request)
    session.flush()
    audit.record(session, actor, "output_request.created", "output_request", request.id,
                 {"project": project.reference, "title": request.title})
    return request


def save_group(session: Session, actor: User, request: OutputRequest, name: str, context: str, controls: str,
               group_id: int | None = None) -> OutputGroup:
    check_author(actor, request)
    _check_editable(session, request)
    name = name.strip()
    errors: dict[str, list[str]] = {}
    if not name:
        errors["name"] = ["Name the group, for example 'Admissions by region'."]
    if any(g.name == name and g.id != group_id for g in request.groups):
        errors["name"] = [f"There is already a group called '{name}'."]
    if errors:
        raise ValidationError("The group could not be saved.", field_errors=errors)
    if group_id is None:
        group = OutputGroup(name=name[:100], context=context.strip(), controls=controls.strip())
        request.groups.append(group)
    else:
        group = next((g for g in request.groups if g.id == group_id), None)  # type: ignore[assignment]
        if group is None:
            raise NotFound("No such group in this request.")
        group.name, group.context, group.controls = name[:100], context.strip(), controls.strip()
    session.flush()
    audit.record(session, actor, "output_request.group_saved", "output_request", request.id,
                 {"group": group.name, "has_context": bool(group.context), "has_controls": bool(group.controls)})
    return group


def add_file_bytes(session: Session, actor: User, request: OutputRequest, settings: Settings, name: str,
                   data: bytes, sidecar: bytes | None = None, group_id: int | None = None, kind: str | None = None,
                   source: str = "workspace") -> OutputFile:
    """Store bytes handed over from the author's workspace in the request: the one way a file enters a request.

    A name not yet in the request is added to the chosen group (as an output unless ``kind`` says supporting); a
    name already there becomes its next version (its votes start afresh; its group and kind stay unless given),
    unless the bytes and record are unchanged. The stored copy is what is checked.
    """
    check_author(actor, request)
    _check_editable(session, request)
    check_can_request(session, actor, request.project)
    name = intake.check_name(name)
    existing = next((f for f in request.files if f.path == name), None)
    errors: dict[str, list[str]] = {}
    group = next((g for g in request.groups if g.id == group_id), None) if group_id is not None else None
    if existing is None:
        kind = "output" if kind is None else kind
        if group is None:
            errors["group_id"] = ["Choose the group the file belongs to (add a group first)."]
        if kind not in KINDS:
            errors["kind"] = ["Choose whether the file is an output to release or supporting material for the "
                              "checkers."]
        if len(request.files) >= settings.outputs.max_files_per_request:
            errors["path"] = [f"A request holds at most {settings.outputs.max_files_per_request} files."]
    elif group_id is not None and group is None:
        errors["group_id"] = ["No such group in this request."]
    elif kind is not None and kind not in KINDS:
        errors["kind"] = ["Choose output or supporting."]
    if errors:
        raise ValidationError("The file could not be added.", field_errors=errors)
    taken = intake.take_bytes(name, data, sidecar, settings.outputs, project_pseudonyms(settings, request.project))
    if existing is not None:
        if taken.sha256 == existing.sha256 and taken.sdc_record == existing.sdc_record:
            raise Conflict(f"'{existing.path}' is already in this request with exactly this content.")
        existing.stored_name = intake.store_copy(settings.outputs_dir, request.id, taken)
        existing.version += 1
        existing.sha256, existing.size, existing.content_type, existing.sdc_record = (
            taken.sha256, len(taken.data), taken.content_type, taken.sdc_record)
        if group is not None:
            existing.group_id = group.id
        if kind is not None:
            existing.kind = kind
        existing.check_status, existing.check_result, existing.checked_at = "pending", None, None
        session.flush()
        audit.record(session, actor, "output_request.file_updated", "output_request", request.id,
                     {"path": existing.path, "version": existing.version, "sha256": existing.sha256,
                      "size": existing.size, "source": source})
        return existing
    assert group is not None and kind is not None
    stored = intake.store_copy(settings.outputs_dir, request.id, taken)
    item = OutputFile(group_id=group.id, path=taken.path, kind=kind, version=1, stored_name=stored, sha256=taken.sha256,
                      size=len(taken.data), content_type=taken.content_type, sdc_record=taken.sdc_record,
                      check_status="pending")
    request.files.append(item)
    session.flush()
    audit.record(session, actor, "output_request.file_added", "output_request", request.id,
                 {"path": item.path, "kind": kind, "group": group.name, "sha256": item.sha256, "size": item.size,
                  "has_sdc_record": item.sdc_record is not None, "source": source})
    return item


def drafts_for(session: Session, user: User, project: Project) -> list[OutputRequest]:
    """The author's requests on a project that can still take files (what a workspace may hand files to)."""
    return list(session.scalars(select(OutputRequest).where(
        OutputRequest.project_id == project.id, OutputRequest.author_id == user.id,
        OutputRequest.state.in_([s.value for s in EDITABLE_STATES])).order_by(OutputRequest.id)))


def remove_file(session: Session, actor: User, request: OutputRequest, item: OutputFile) -> None:
    check_author(actor, request)
    _check_editable(session, request)
    for exception in [e for e in request.exceptions if e.file_id == item.id]:
        request.exceptions.remove(exception)
    request.files.remove(item)
    session.flush()
    audit.record(session, actor, "output_request.file_removed", "output_request", request.id, {"path": item.path})


def submission_problems(request: OutputRequest) -> list[str]:
    problems: list[str] = []
    if not any(f.kind == "output" for f in request.files):
        problems.append("Add at least one output file.")
    used = {f.group_id for f in request.files}
    for group in request.groups:
        if group.id not in used:
            problems.append(f"Group '{group.name}' has no files: add some or it will not be checked.")
            continue
        if not group.context.strip():
            problems.append(f"Describe the context of group '{group.name}': what it shows, the population and the "
                            "variables.")
        if not group.controls.strip():
            problems.append(f"Describe the disclosure controls applied in group '{group.name}'.")
    return problems


def submit(session: Session, actor: User, request: OutputRequest, settings: Settings) -> None:
    """Send the request to the checkers (a returned request starts a new round); the automatic checks follow.

    The title and the groups' names, descriptions and controls leave in the release package's manifest, so they pass
    the pseudonym search here, as the files did when handed over (they can change only until it is submitted)."""
    check_author(actor, request)
    check_output_move(request.state, OutputState.SUBMITTED)
    check_can_request(session, actor, request.project)
    problems = submission_problems(request)
    if problems:
        raise ValidationError("The request cannot be submitted yet.", field_errors={"request": problems})
    words = [request.title, *(text for g in request.groups for text in (g.name, g.context, g.controls))]
    check_no_pseudonym(settings, request, "request", "\n".join(words), "The request cannot be submitted",
                       "The request's title, or a group's name, description or controls,")
    resubmission = request.state == OutputState.RETURNED
    if resubmission:
        request.round += 1
    request.submitted_at = utcnow()
    request.decided_by_id, request.decided_at = None, None
    _move(session, actor, request, OutputState.SUBMITTED,
          {"files": {f.path: f.sha256 for f in request.files}, "resubmission": resubmission})
    outbox.enqueue(session, "outputs.check", {"request_id": request.id, "round": request.round},
                   dedupe_key=f"outputs.check:{request.id}:{request.round}")
    notify_checkers(session, request, "resubmitted" if resubmission else "submitted")


def checkers_for(session: Session, request: OutputRequest) -> list[User]:
    """Every active output checker who may check this request (never its author or a member of its team)."""
    from gateway.identity.accounts import users_with_roles

    roles = [role.value for role, granted in ROLE_PERMISSIONS.items() if Permission.REVIEW_OUTPUTS in granted]
    return [u for u in users_with_roles(session, roles) if can_review(u, request)]


def notify_checkers(session: Session, request: OutputRequest, what: str) -> None:
    """An email (through the outbox) to each checker who may check the request; no file content, only where to look."""
    for checker in checkers_for(session, request):
        outbox.send_email(session, checker.email, f"Output request {request.id} {what} for checking",
                          f"Output request '{request.title}' for {request.project.reference} was {what} "
                          f"(round {request.round}). Open the output checking queue in the London SDE gateway to "
                          "review it.",
                          dedupe_key=f"output-{what}:{request.id}:{request.round}:{checker.id}")


def withdraw(session: Session, actor: User, request: OutputRequest) -> None:
    if request.author_id != actor.id:
        raise PermissionDenied("Only the author can withdraw an output request.")
    if request.state not in WITHDRAWABLE_STATES:
        raise Conflict(f"A request that is {label(request.state)} cannot be withdrawn.")
    _move(session, actor, request, OutputState.WITHDRAWN)


# --- the checkers' commands -----------------------------------------------------------------------------------

def own_review(user: User, request: OutputRequest) -> OutputReview | None:
    return next((r for r in request.reviews if r.reviewer_id == user.id and r.round == request.round), None)


def round_reviews(request: OutputRequest) -> list[OutputReview]:
    return [r for r in request.reviews if r.round == request.round]


def current_votes(item: OutputFile) -> list[OutputVote]:
    return [v for v in item.votes if v.file_version == item.version]


def _fresh_under_lock(session: Session, request: OutputRequest) -> None:
    """Lock the request's row and forget what was read of it before, so the checks that follow see what others
    committed meanwhile (one checker's vote in one tab racing their review submitted in another; a checker's answer
    to an exception, changed in place, racing the other's approval). Rows loaded before are expired one by one: a
    reloaded collection hands back the objects already in the session as they were read."""
    session.flush()
    session.execute(select(OutputRequest.id).where(OutputRequest.id == request.id).with_for_update())
    read_before = [*request.reviews, *request.files, *(v for item in request.files for v in item.votes),
                   *request.exceptions, *(d for e in request.exceptions for d in e.decisions)]
    for row in read_before:
        session.expire(row)
    session.expire(request)


def _check_round(request: OutputRequest, round_seen: int | None, again: str) -> None:
    """A checker's form acts on the round it was rendered for: one opened before the request was returned and
    resubmitted would vote, review or decide on a round its checker never saw (call after _fresh_under_lock)."""
    check_round("This request", request.round, round_seen, again)


def vote(session: Session, actor: User, request: OutputRequest, item: OutputFile, choice: str,
         round_seen: int | None = None) -> OutputVote:
    """``round_seen``: the round the checker's page showed (None when the caller does not say); another is refused."""
    check_can_review(actor, request)
    _fresh_under_lock(session, request)
    _check_round(request, round_seen, "vote")
    if request.state not in REVIEWABLE_STATES:
        raise Conflict(f"Votes can be cast only while the request awaits review; it is {label(request.state)}.")
    if own_review(actor, request) is not None:
        raise Conflict("You have already submitted your review of this round.")
    if len(round_reviews(request)) >= REVIEWS_NEEDED:
        raise Conflict("This round already has its two reviews.")
    if choice not in VOTES:
        raise ValidationError("Your vote could not be saved.", field_errors={"vote": ["Choose approve or request "
                                                                                      "changes."]})
    existing = next((v for v in current_votes(item) if v.reviewer_id == actor.id), None)
    if existing is None:
        existing = OutputVote(reviewer_id=actor.id, file_version=item.version, vote=choice)
        item.votes.append(existing)
    else:
        existing.vote, existing.voted_at = choice, utcnow()
    session.flush()
    audit.record(session, actor, "output_request.vote", "output_request", request.id,
                 {"path": item.path, "version": item.version, "vote": choice})
    return existing


def add_comment(session: Session, actor: User, request: OutputRequest, text: str, visibility: str,
                item: OutputFile | None = None, round_seen: int | None = None) -> OutputComment:
    """A comment on the round the writer's page showed (``round_seen``; None when the caller does not say): one
    written about round 1's files and sent after the request came back as round 2 would be filed under round 2."""
    _fresh_under_lock(session, request)
    _check_round(request, round_seen, "comment")
    text = text.strip()
    if not text:
        raise ValidationError("The comment could not be saved.", field_errors={"text": ["Write a comment."]})
    if visibility not in {"private", "public"}:
        raise ValidationError("The comment could not be saved.", field_errors={"visibility": ["Choose who sees it."]})
    if can_review(actor, request):
        if own_review(actor, request) is not None and request.state in REVIEWABLE_STATES:
            raise Conflict("You have already submitted your review of this round.")
    elif is_member(actor, request.project):
        if visibility != "public":
            raise PermissionDenied("Only output checkers can write private comments.")
    else:
        raise PermissionDenied("You cannot comment on this request.")
    if request.state in {OutputState.RELEASED, OutputState.REJECTED, OutputState.WITHDRAWN}:
        raise Conflict(f"The request is {label(request.state)}; it takes no more comments.")
    return _new_comment(session, actor, request, text, visibility, item)


def _new_comment(session: Session, actor: User, request: OutputRequest, text: str, visibility: str,
                 item: OutputFile | None = None) -> OutputComment:
    comment = OutputComment(file_id=item.id if item else None, author_id=actor.id, round=request.round,
                            visibility=visibility, text=text)
    request.comments.append(comment)
    session.flush()
    audit.record(session, actor, "output_request.comment", "output_request", request.id,
                 {"visibility": visibility, "path": item.path if item else None})
    return comment


def submit_review(session: Session, actor: User, request: OutputRequest,
                  round_seen: int | None = None) -> OutputReview:
    """Submit this checker's votes for the round; the second review unblinds both."""
    check_can_review(actor, request)
    _fresh_under_lock(session, request)
    _check_round(request, round_seen, "review it")
    if request.state not in REVIEWABLE_STATES:
        raise Conflict(f"The request is {label(request.state)}; it is not awaiting review.")
    if own_review(actor, request) is not None:
        raise Conflict("You have already submitted your review of this round.")
    outputs = [f for f in request.files if f.kind == "output"]
    mine = {f.id: next((v.vote for v in current_votes(f) if v.reviewer_id == actor.id), None) for f in outputs}
    missing = [f.path for f in outputs if mine[f.id] is None]
    if missing:
        raise ValidationError("Your review could not be submitted.",
                              field_errors={"votes": [f"Vote on '{p}' first." for p in missing]})
    outcome = "approve" if all(v == "approve" for v in mine.values()) else "changes_requested"
    review = OutputReview(reviewer_id=actor.id, round=request.round, outcome=outcome)
    request.reviews.append(review)
    session.flush()
    target = OutputState.PARTIALLY_REVIEWED if len(round_reviews(request)) == 1 else OutputState.REVIEWED
    _move(session, actor, request, target, {"review_outcome": outcome})
    return review


def approval_problems(request: OutputRequest) -> list[str]:
    problems: list[str] = []
    reviews = round_reviews(request)
    if len(reviews) < REVIEWS_NEEDED:
        problems.append(f"Two independent reviews are needed; {len(reviews)} submitted.")
    reviewers = {r.reviewer_id for r in reviews}
    for item in request.files:
        if item.kind != "output":
            continue
        votes = {v.reviewer_id: v.vote for v in current_votes(item) if v.reviewer_id in reviewers}
        if len(votes) < REVIEWS_NEEDED or any(v != "approve" for v in votes.values()):
            problems.append(f"'{item.path}' is not approved by both checkers.")
        problem = automatic_check_problem(request, item, reviewers)
        if problem:
            problems.append(problem)
    return problems


# --- exceptions: a failing file released only on a justified request both checkers accept ---------------------

def current_exception(request: OutputRequest, item: OutputFile) -> OutputException | None:
    """The exception asked for these exact bytes; one asked for an earlier version does not cover this one."""
    return next((e for e in request.exceptions if e.file_id == item.id and e.file_sha256 == item.sha256), None)


def exception_decisions(exception: OutputException, reviewers: set[int]) -> dict[int, OutputExceptionDecision]:
    return {d.checker_id: d for d in exception.decisions if d.checker_id in reviewers}


def automatic_check_problem(request: OutputRequest, item: OutputFile, reviewers: set[int]) -> str | None:
    """Why the automatic verdict stops this file's approval (None when it does not).

    A file whose check failed needs an exception for its current bytes, accepted by both checkers of the round.
    """
    if item.check_status == "pending":
        return f"'{item.path}' has not been through the automatic checks yet."
    if item.check_status != "fail":
        return None
    exception = current_exception(request, item)
    if exception is None:
        return (f"'{item.path}' failed its automatic check and has no exception: the researcher must ask for one "
                "with a justification, and both checkers must accept it with a reason (or return the request).")
    decisions = exception_decisions(exception, reviewers)
    refused = [d.checker.display_name for d in decisions.values() if d.decision == "refuse"]
    if refused:
        return f"The exception for '{item.path}' was refused by {', '.join(refused)}."
    accepted = sum(1 for d in decisions.values() if d.decision == "accept")
    if len(reviewers) < REVIEWS_NEEDED or accepted < REVIEWS_NEEDED:
        return (f"'{item.path}' failed its automatic check; its exception is accepted by {accepted} of the "
                f"{REVIEWS_NEEDED} checkers who reviewed this round.")
    return None


def check_no_pseudonym(settings: Settings, request: OutputRequest, field: str, text: str,
                       refused: str = "The text could not be saved", holder: str = "It") -> None:
    """Text that leaves in the release package passes the same pseudonym search as every file's bytes."""
    if project_pseudonyms(settings, request.project).count([text]):
        raise ValidationError(f"{refused}: it holds a patient pseudonym.", field_errors={field: [
            f"{holder} holds one of this project's patient pseudonyms (or a part of one); it would leave in the "
            "release package. Remove it."]})


def request_exception(session: Session, actor: User, request: OutputRequest, item: OutputFile,
                      justification: str, settings: Settings) -> OutputException:
    """The author asks for a failing file to be released anyway, with a justification the checkers weigh.

    The exception is bound to the file's bytes now (its SHA-256); sending a new version needs a new exception.
    It can be reworded until a checker has answered it.
    """
    check_author(actor, request)
    _fresh_under_lock(session, request)  # a checker's answer committed meanwhile is seen: no rewording after it
    if request.state not in EXCEPTION_STATES:
        raise Conflict(f"The request is {label(request.state)}; exceptions can be asked for while it is submitted, "
                       "under review or returned.")
    if item.kind != "output":
        raise Conflict(f"'{item.path}' is supporting material; it is never released, so it needs no exception.")
    if item.check_status != "fail":
        raise Conflict(f"'{item.path}' did not fail its automatic check; only a failing file needs an exception.")
    text = justification.strip()
    if len(text) < 20:
        raise ValidationError("The exception could not be saved.", field_errors={"justification": [
            "Explain why this output is safe to release although its check failed (at least 20 characters)."]})
    check_no_pseudonym(settings, request, "justification", text)
    existing = current_exception(request, item)
    if existing is not None:
        if existing.decisions:
            raise Conflict(f"The exception for '{item.path}' has already been answered by a checker; it cannot be "
                           "changed.")
        existing.justification = text[:10000]
        exception = existing
    else:
        exception = OutputException(file_id=item.id, file_sha256=item.sha256, justification=text[:10000],
                                    requested_by_id=actor.id)
        request.exceptions.append(exception)
    session.flush()
    audit.record(session, actor, "output_request.exception_requested", "output_request", request.id,
                 {"path": item.path, "version": item.version, "sha256": item.sha256,
                  "justification": exception.justification, "updated": existing is not None})
    return exception


def decide_exception(session: Session, actor: User, request: OutputRequest, item: OutputFile, decision: str,
                     reason: str, settings: Settings, round_seen: int | None = None,
                     justification_seen: str | None = None) -> OutputExceptionDecision:
    """A checker accepts or refuses the exception on a file, always with a reason (one answer each, changeable
    until the request is decided).

    ``justification_seen`` is the SHA-256 of the words the checker's page showed (None when the caller does not
    say): the author may reword the exception until a checker has answered, and an answer to the earlier words is
    refused."""
    check_can_review(actor, request)
    _fresh_under_lock(session, request)  # a decision made meanwhile is seen, and one in flight waits for this
    _check_round(request, round_seen, "answer the exception")
    if request.state not in {*REVIEWABLE_STATES, OutputState.REVIEWED}:
        raise Conflict(f"The request is {label(request.state)}; exceptions are answered while it is being checked.")
    if request.state == OutputState.REVIEWED and actor.id not in {r.reviewer_id for r in round_reviews(request)}:
        raise Conflict("Only the two checkers who reviewed this round can answer its exceptions now.")
    exception = current_exception(request, item)
    if exception is None:
        raise Conflict(f"No exception has been asked for on '{item.path}' as it is now.")
    if justification_seen is not None and justification_seen != exception.justification_sha256:
        raise Conflict(f"The exception on '{item.path}' has been reworded since you opened it. Nothing was recorded; "
                       "read it as it is now and answer again.")
    errors: dict[str, list[str]] = {}
    if decision not in EXCEPTION_DECISIONS:
        errors["decision"] = ["Choose accept or refuse."]
    if not reason.strip():
        errors["reason"] = ["Give your reason: it is recorded in the audit log and, for an accepted exception, "
                            "in the release manifest."]
    if errors:
        raise ValidationError("Your answer to the exception could not be saved.", field_errors=errors)
    check_no_pseudonym(settings, request, "reason", reason)
    answer = next((d for d in exception.decisions if d.checker_id == actor.id), None)
    if answer is None:
        answer = OutputExceptionDecision(checker_id=actor.id, decision=decision, reason=reason.strip()[:10000])
        exception.decisions.append(answer)
    else:
        answer.decision, answer.reason, answer.decided_at = decision, reason.strip()[:10000], utcnow()
    session.flush()
    audit.record(session, actor, "output_request.exception_decided", "output_request", request.id,
                 {"path": item.path, "sha256": exception.file_sha256, "decision": decision, "reason": answer.reason})
    return answer


def visible_exception_decisions(user: User, request: OutputRequest,
                                exception: OutputException) -> list[OutputExceptionDecision]:
    """Checkers see their own answer, and the other's once both reviews are in; researchers once the round ends."""
    if can_review(user, request):
        return [d for d in exception.decisions if unblinded(user, request) or d.checker_id == user.id]
    if is_member(user, request.project) and request.state in COMMENTS_OPEN_STATES:
        return list(exception.decisions)
    return []


# --- returning early, group votes, comments made public -------------------------------------------------------

def return_early(session: Session, actor: User, request: OutputRequest, comment: str,
                 round_seen: int | None = None) -> None:
    """A checker sends the request back before both reviews are in, telling the researcher what to change."""
    check_can_review(actor, request)
    _fresh_under_lock(session, request)
    _check_round(request, round_seen, "decide")
    if request.state not in EARLY_RETURN_STATES:
        raise Conflict(f"Only a request awaiting review can be returned early; it is {label(request.state)}.")
    if not comment.strip():
        raise ValidationError("Explain what to change.", field_errors={
            "comment": ["Write a comment telling the researcher what to change before it comes back."]})
    _new_comment(session, actor, request, comment.strip(), "public")
    _move(session, actor, request, OutputState.RETURNED,
          {"outcome": "return", "early": True, "reviews": len(round_reviews(request))})
    outbox.send_email(session, request.author.email, f"Output request {request.id}: returned",
                      f"Your output request '{request.title}' for {request.project.reference} was returned by an "
                      f"output checker before review was complete.\n\n{comment.strip()}",
                      dedupe_key=f"output-returned-early:{request.id}:{request.round}")


def vote_group(session: Session, actor: User, request: OutputRequest, group: OutputGroup, choice: str,
               comment: str = "", round_seen: int | None = None) -> list[OutputVote]:
    """One vote on every output file of a group (typically "request changes"), with an optional comment."""
    check_can_review(actor, request)
    _fresh_under_lock(session, request)  # the group's files as they are in the round the form was rendered for
    _check_round(request, round_seen, "vote")
    outputs = [f for f in request.files if f.group_id == group.id and f.kind == "output"]
    if not outputs:
        raise Conflict(f"Group '{group.name}' has no output files to vote on.")
    cast = [vote(session, actor, request, item, choice, round_seen) for item in outputs]
    if comment.strip():
        add_comment(session, actor, request, f"On group '{group.name}': {comment.strip()}", "public")
    return cast


def get_group(request: OutputRequest, group_id: int) -> OutputGroup:
    found = next((g for g in request.groups if g.id == group_id), None)
    if found is None:
        raise NotFound("No such group in this request.")
    return found


def get_comment(user: User, request: OutputRequest, comment_id: int) -> OutputComment:
    found = next((c for c in visible_comments(user, request) if c.id == comment_id), None)
    if found is None:
        raise NotFound("No such comment on this request.")
    return found


def publish_comment(session: Session, actor: User, request: OutputRequest, comment: OutputComment) -> None:
    """The checker who wrote a private comment makes it public (the researchers see it once the round ends)."""
    check_can_review(actor, request)
    if comment.author_id != actor.id:
        raise PermissionDenied("Only the checker who wrote a comment can make it public.")
    if comment.visibility != "private":
        raise Conflict("This comment is already public.")
    if request.state == OutputState.WITHDRAWN:
        raise Conflict("The request is withdrawn; its comments no longer change.")
    comment.visibility, comment.published_at = "public", utcnow()
    session.flush()
    audit.record(session, actor, "output_request.comment_published", "output_request", request.id,
                 {"comment": comment.id, "round": comment.round})


def decide(session: Session, actor: User, request: OutputRequest, outcome: str, comment: str,
           round_seen: int | None = None) -> None:
    """After two reviews: approve (both approved every output), return with a public comment, or reject.

    ``round_seen`` is the round the checker's page showed (None when the caller does not say): a decision form left
    open in round 1 must not return or reject round 2, which its checker never read."""
    check_can_review(actor, request)
    seen = request.state
    _fresh_under_lock(session, request)  # what approval checks (votes, exceptions and their answers) as committed
    _check_round(request, round_seen, "decide")
    if request.state != seen:
        raise _changed_meanwhile(request.state)
    if request.state != OutputState.REVIEWED:
        raise Conflict(f"A decision needs two submitted reviews; the request is {label(request.state)}.")
    targets = {"approve": OutputState.APPROVED, "return": OutputState.RETURNED, "reject": OutputState.REJECTED}
    if outcome not in targets:
        raise ValidationError("Choose approve, return or reject.", field_errors={"outcome": ["Choose an outcome."]})
    if outcome == "approve":
        check_project_releases(request.project)
        problems = approval_problems(request) + differencing_since_checks(session, request)
        if problems:
            raise Conflict(" ".join(problems))
    elif not comment.strip():
        raise ValidationError("Explain your decision.", field_errors={
            "comment": ["Write a public comment telling the researcher what to change, or why it is rejected."]})
    if comment.strip():
        add_comment(session, actor, request, comment, "public")
    request.decided_by_id, request.decided_at = actor.id, utcnow()
    meter_check(session, request, actor)
    _move(session, actor, request, targets[outcome], {"outcome": outcome})
    if outcome == "approve":
        outbox.enqueue(session, "outputs.release", {"request_id": request.id},
                       dedupe_key=f"outputs.release:{request.id}")
    outbox.send_email(session, request.author.email, f"Output request {request.id}: {label(targets[outcome])}",
                      f"Your output request '{request.title}' for {request.project.reference} is "
                      f"{label(targets[outcome])}." + (f"\n\n{comment.strip()}" if comment.strip() else ""),
                      dedupe_key=f"output-decision:{request.id}:{request.round}")


# --- what each person may see ---------------------------------------------------------------------------------

def unblinded(user: User, request: OutputRequest) -> bool:
    """Checkers see each other's votes and comments of the current round only once both reviews are in."""
    return request.state not in REVIEWABLE_STATES


def visible_votes(user: User, request: OutputRequest, item: OutputFile) -> list[OutputVote]:
    if not has_permission(user, Permission.REVIEW_OUTPUTS) or not can_review(user, request):
        return []
    open_to_all = unblinded(user, request)
    return [v for v in current_votes(item) if open_to_all or v.reviewer_id == user.id]


def visible_comments(user: User, request: OutputRequest) -> list[OutputComment]:
    """Checkers: everything, except the other checker's comments of the current round until both reviews are in.
    Researchers: their team's comments, and a checker's public comment once its round has ended (the request was
    returned, approved, released or rejected); private comments never, unless their checker makes them public."""
    checker = can_review(user, request)
    shown: list[OutputComment] = []
    for c in request.comments:
        if c.author_id == user.id:
            shown.append(c)
            continue
        by_checker = c.author.id != request.author_id and not is_member(c.author, request.project)
        if checker:
            current_blind = c.round == request.round and not unblinded(user, request)
            if not (current_blind and by_checker):
                shown.append(c)
        elif c.visibility == "public":
            round_over = c.round < request.round or request.state in COMMENTS_OPEN_STATES
            if not by_checker or round_over:
                shown.append(c)
    return shown
