"""The data access committee: reviewer assignment, conflicts of interest, blinded votes, quorum, decisions.

A member of the applying team or organisation is conflicted automatically, and so, for an amendment, is anyone on
the team of the project it amends (whether or not the amendment keeps them on it) or ever taken off that team;
anyone may also declare a conflict. A conflicted member is recused: they cannot see the reviews, vote or decide.
Nobody ever decides their own application.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import BindParameter, ColumnElement, false, or_
from sqlalchemy.orm import Session

from gateway import audit
from gateway.config import DacSettings
from gateway.db import utcnow
from gateway.errors import Conflict, InvalidTransition, PermissionDenied, ValidationError
from gateway.identity.accounts import users_with_roles
from gateway.models import User
from gateway.permissions import Permission, Role, check_permission, has_permission, sits_on_committee
from projects import dates, events
from projects.applications import is_team_member, lock_afresh, max_term_months, team_member_clause
from projects.dates import latest_access_end
from projects.lifecycle import is_member, on_team_ever_clause, was_member
from projects.models import Application, Decision, Project, Review, ReviewAssignment
from projects.workflow import AppState, check_application_move, check_round
from projects.workspace_tiers import DEFAULT_SECURITY_TIER, SECURITY_TIER_LABELS, SECURITY_TIERS

VOTES = ("approve", "approve_with_conditions", "changes_requested", "reject")
OUTCOMES = {"approved": AppState.APPROVED, "rejected": AppState.REJECTED,
            "changes_requested": AppState.CHANGES_REQUESTED}


def automatic_conflict(user: User, application: Application) -> str | None:
    """Why this person is recused from the application whatever they declare, or None. An amendment's own team can
    leave out someone on the project's team (the amendment takes them off it), and the project's former members are
    on neither: both have a stake in the project the amendment changes."""
    if is_team_member(user, application):
        return "is on the applying team"
    if user.organisation_id is not None and user.organisation_id == application.organisation_id:
        return "works at the applying organisation"
    project = application.project  # an amendment's; None for a new application
    if project is not None:
        if is_member(user, project):
            return "is on the team of the project it amends"
        if was_member(user, project):
            return "was on the team of the project it amends"
    return None


def assignment_of(user: User, application: Application) -> ReviewAssignment | None:
    return next((a for a in application.assignments if a.reviewer_id == user.id), None)


def is_recused(user: User, application: Application) -> bool:
    assignment = assignment_of(user, application)
    return automatic_conflict(user, application) is not None or bool(assignment and assignment.conflict)


def own_assignment_clause(user_id: int | BindParameter[int]) -> ColumnElement[bool]:
    """``assignment_of(user, application) is not None`` in the database, as a condition on Application."""
    return Application.assignments.any(ReviewAssignment.reviewer_id == user_id)


def is_recused_clause(user_id: int | BindParameter[int],
                      organisation_id: int | BindParameter[int] | None) -> ColumnElement[bool]:
    """``is_recused`` in the database: on the applying team, at the applying organisation (``organisation_id``, the
    person's, None if they have none), on or ever on the team of the project an amendment amends, or a declared
    conflict on the person's own assignment (tests/integration/test_rules_in_sql.py holds the two together)."""
    same_organisation = Application.organisation_id == organisation_id if organisation_id is not None else false()
    amended_project = Application.project.has(on_team_ever_clause(user_id))
    declared = Application.assignments.any((ReviewAssignment.reviewer_id == user_id)
                                           & ReviewAssignment.conflict.is_(True))
    return or_(team_member_clause(user_id), same_organisation, amended_project, declared)


def _check_not_recused(user: User, application: Application, doing: str) -> None:
    reason = automatic_conflict(user, application)
    if reason:
        raise PermissionDenied(f"You cannot {doing}: you {reason}, so you are recused.")
    assignment = assignment_of(user, application)
    if assignment and assignment.conflict:
        raise PermissionDenied(f"You cannot {doing}: you declared a conflict of interest and are recused.")


def is_lay(user: User) -> bool:
    return Role.LAY_MEMBER.value in user.roles


# --- assignment and conflicts ------------------------------------------------------------------------

# the states in which the chair may assign reviewers
ASSIGNABLE_STATES = frozenset({AppState.SUBMITTED, AppState.UNDER_REVIEW})


def assign_reviewers(session: Session, actor: User, application: Application, reviewers: list[User]) -> None:
    """Ask DAC members to review; the first assignment (or a resubmission) opens the review."""
    check_permission(actor, Permission.CHAIR_DAC)
    lock_afresh(session, application)  # a withdrawal (or the chair's own conflict) committed meanwhile is seen
    _check_not_recused(actor, application, "assign reviewers")
    if application.state not in ASSIGNABLE_STATES:
        raise InvalidTransition("Reviewers can be assigned only to a submitted application or one under review.")
    errors: list[str] = []
    for reviewer in reviewers:
        if not has_permission(reviewer, Permission.REVIEW_APPLICATIONS):
            errors.append(f"{reviewer.display_name} is not a member of the data access committee.")
        elif (reason := automatic_conflict(reviewer, application)) is not None:
            errors.append(f"{reviewer.display_name} {reason} and cannot review it.")
    if errors:
        raise ValidationError("The reviewers could not be assigned.", field_errors={"reviewers": errors})
    added = []
    for reviewer in reviewers:
        if assignment_of(reviewer, application) is None:
            application.assignments.append(ReviewAssignment(reviewer_id=reviewer.id, assigned_by_id=actor.id))
            added.append(reviewer)
    if not application.assignments:
        raise ValidationError("The reviewers could not be assigned.",
                              field_errors={"reviewers": ["Choose at least one reviewer."]})
    session.flush()
    if application.state == AppState.SUBMITTED:
        check_application_move(application.state, AppState.UNDER_REVIEW)
        application.state = AppState.UNDER_REVIEW
    audit.record(session, actor, "application.reviewers_assigned", "application", application.id,
                 {"added": [r.username for r in added], "round": application.round})
    events.emit(session, events.ReviewersAssigned(application, tuple(added)))  # the new reviewers are emailed


def declare_conflict(session: Session, actor: User, application: Application, conflict: bool,
                     reason: str) -> None:
    """Under the application's lock, as votes and decisions are: a vote or a decision being made now either commits
    first or sees the declaration (a recused member never votes or decides on a page read before it). Only while
    the application is under review."""
    lock_afresh(session, application)
    assignment = assignment_of(actor, application)
    if assignment is None:
        raise PermissionDenied("You are not a reviewer of this application.")
    if assignment.conflict:
        raise Conflict("You have declared a conflict of interest; it stands for this application.")
    if application.state != AppState.UNDER_REVIEW:
        # after a decision, a declaration would recuse the reviewer from the round decided, and its quorum with them
        raise InvalidTransition("Conflicts of interest are declared while the application is under review; it is "
                                f"{application.state.replace('_', ' ')}.")
    reason = reason.strip()
    if conflict and not reason:
        raise ValidationError("Your declaration could not be saved.",
                              field_errors={"conflict_reason": ["Describe the conflict of interest."]})
    assignment.conflict = conflict
    assignment.conflict_reason = reason if conflict else None
    assignment.declared_at = utcnow()
    audit.record(session, actor, "review.conflict_declared" if conflict else "review.no_conflict_declared",
                 "application", application.id, {"reason": reason} if conflict else {})


# --- votes ----------------------------------------------------------------------------------------------

def _fresh_under_lock(session: Session, application: Application, actor: User, doing: str, round_seen: int | None,
                      again: str) -> None:
    """Lock the application's row and forget what was read of it, so the recusal, round, state and votes checked next
    are as committed (a conflict declared, a resubmission, a decision or a vote committed since the page was read is
    seen; one in flight waits). A recused ``actor`` is refused first (403, whatever page they sent it from); then a
    form rendered for another round: a vote or a decision from a page opened before the application was returned and
    resubmitted would count in a round its sender never read."""
    lock_afresh(session, application)
    _check_not_recused(actor, application, doing)
    check_round("This application", application.round, round_seen, again)


def current_reviews(application: Application) -> list[Review]:
    return [r for a in application.assignments for r in a.reviews if r.round == application.round]


def submit_review(session: Session, actor: User, application: Application, vote: str, comment_private: str,
                  comment_applicant: str, round_seen: int | None = None) -> Review:
    """``round_seen``: the round the reviewer's page showed (None when the caller does not say); another is
    refused."""
    if assignment_of(actor, application) is None:
        raise PermissionDenied("You are not a reviewer of this application.")
    _fresh_under_lock(session, application, actor, "vote", round_seen, "vote")
    if application.state != AppState.UNDER_REVIEW:
        raise InvalidTransition("Votes can be cast only while the application is under review.")
    assignment = assignment_of(actor, application)
    assert assignment is not None  # assignments are never removed
    if assignment.conflict is None:
        raise Conflict("Declare whether you have a conflict of interest before you vote.")
    if vote not in VOTES:
        raise ValidationError("Your review could not be saved.", field_errors={"vote": ["Choose a vote."]})
    if vote != "approve" and not comment_applicant.strip() and not comment_private.strip():
        raise ValidationError("Your review could not be saved.",
                              field_errors={"comment_applicant": ["Explain your vote."]})
    if any(r.round == application.round for r in assignment.reviews):
        raise Conflict("You have already voted in this round.")
    review = Review(round=application.round, vote=vote, comment_private=comment_private.strip(),
                    comment_applicant=comment_applicant.strip())
    assignment.reviews.append(review)
    session.flush()
    audit.record(session, actor, "review.submitted", "application", application.id,
                 {"round": application.round, "vote": vote})
    return review


def round_decided(application: Application) -> bool:
    """The current round's votes are in the committee's record once the chair has decided it."""
    return application.state not in {AppState.SUBMITTED, AppState.UNDER_REVIEW}


def chair_follows_count(user: User, application: Application) -> bool:
    return has_permission(user, Permission.CHAIR_DAC) and not is_recused(user, application)


def visible_reviews(user: User, application: Application) -> list[Review]:
    """Reviews this person may read now. Blinded: before the chair decides the round, a reviewer sees only their
    own vote (not the others', nor how many there are); the chair sees them once they have no vote of their own
    to cast. After the decision they are the committee's record."""
    if is_recused(user, application) or not has_permission(user, Permission.REVIEW_APPLICATIONS):
        return []
    own = assignment_of(user, application)
    voted_now = bool(own and any(r.round == application.round for r in own.reviews))
    chair_unblinded = has_permission(user, Permission.CHAIR_DAC) and (own is None or voted_now)
    decided = round_decided(application)
    shown = []
    for assignment in application.assignments:
        for review in assignment.reviews:
            earlier_round = review.round < application.round
            if earlier_round or decided or chair_unblinded or assignment is own:
                shown.append(review)
    return shown


def count_visible(user: User, application: Application) -> bool:
    """How many votes are in: the chair's to follow; anyone else on the committee learns it with the decision."""
    if is_recused(user, application) or not has_permission(user, Permission.REVIEW_APPLICATIONS):
        return False
    return chair_follows_count(user, application) or round_decided(application)


@dataclass(frozen=True)
class Quorum:
    votes: int
    lay_votes: int
    needed: int
    lay_needed: int

    @property
    def met(self) -> bool:
        return self.votes >= self.needed and self.lay_votes >= self.lay_needed

    def describe(self) -> str:
        return (f"{self.votes} of {self.needed} votes needed, including {self.lay_votes} of "
                f"{self.lay_needed} from a lay member")

    def describe_blinded(self) -> str:
        """The rule without the count, for a reviewer before the decision."""
        return (f"{self.needed} vote{'s' if self.needed != 1 else ''} needed, including {self.lay_needed} from a "
                "lay member; how many are in is shown once the chair decides")


def quorum(application: Application, dac: DacSettings) -> Quorum:
    # votes of members not recused, and still on the committee: a reviewer deactivated or taken off it since they
    # voted is no longer a member, and their vote no longer makes the quorum
    counted = [r for r in current_reviews(application)
               if not r.assignment.conflict and automatic_conflict(r.assignment.reviewer, application) is None
               and sits_on_committee(r.assignment.reviewer)]
    amendment = application.kind == "amendment"
    return Quorum(
        votes=len(counted),
        lay_votes=sum(1 for r in counted if is_lay(r.assignment.reviewer)),
        needed=dac.amendment_quorum if amendment else dac.quorum,
        lay_needed=dac.amendment_lay_votes if amendment else dac.lay_votes,
    )


# --- decisions --------------------------------------------------------------------------------------------

def decide(session: Session, actor: User, application: Application, dac: DacSettings, *, outcome: str,
           conditions: str, message: str, access_end_date: dt.date | None, today: dt.date,
           security_tier: str | None = None, round_seen: int | None = None) -> Decision:
    """Record the chair's decision. Approving a new application also sets the project's security tier
    (`standard` when not given); an amendment keeps the project's tier, and naming a different one is refused.
    ``round_seen`` is the round the chair's page showed (None when the caller does not say): another is refused."""
    from projects import lifecycle

    check_permission(actor, Permission.CHAIR_DAC)
    _fresh_under_lock(session, application, actor, "decide this application", round_seen, "decide")
    target = OUTCOMES.get(outcome)
    if target is None:
        raise ValidationError("The decision could not be recorded.", field_errors={"outcome": ["Choose a decision."]})
    check_application_move(application.state, target)
    status = quorum(application, dac)
    if not status.met:
        raise Conflict(f"No quorum yet: {status.describe()}.")
    if target is AppState.APPROVED and application.kind == "amendment":
        lifecycle.check_amendable(session, application)
    errors: dict[str, list[str]] = {}
    if target is AppState.APPROVED and application.kind == "new":
        latest = latest_access_end(today, max_term_months())
        if access_end_date is None:
            errors["access_end_date"] = ["Enter the date access ends."]
        elif access_end_date <= today:
            errors["access_end_date"] = ["Access must end in the future."]
        elif access_end_date > latest:
            errors["access_end_date"] = [f"Access can be given for the tariff's maximum term at most: enter a date "
                                         f"on or before {dates.long(latest)}."]
    if target is not AppState.APPROVED and not message.strip():
        errors["message"] = ["Tell the applicant what to change, or why the application is rejected."]
    tier = _security_tier_for(session, application, target, security_tier, errors)
    if errors:
        raise ValidationError("The decision could not be recorded.", field_errors=errors)
    decision = Decision(application_id=application.id, round=application.round, outcome=outcome,
                        conditions=conditions.strip(), message_to_applicant=message.strip(),
                        access_end_date=access_end_date if application.kind == "new" else
                        (application.requested_end_date or _project_end(session, application)),
                        decided_by_id=actor.id)
    session.add(decision)
    application.state = target
    session.flush()
    details: dict[str, object] = {"round": application.round, "quorum": status.describe(),
                                  "conditions": decision.conditions, "access_end_date": decision.access_end_date}
    if tier is not None:
        details["security_tier"] = tier
    audit.record(session, actor, f"application.{outcome}", "application", application.id, details)
    if target is AppState.APPROVED:
        if application.kind == "new":
            assert tier is not None
            project = lifecycle.create_project(session, actor, application, decision, today, security_tier=tier)
        else:
            project = lifecycle.apply_amendment(session, actor, application, decision, today)
        # charging freezes the quote with its tariff version (gateway.wiring)
        events.emit(session, events.ApplicationApproved(application, project, actor, today))
    events.emit(session, events.ApplicationDecided(application, decision))  # the applicant is emailed
    return decision


def _security_tier_for(session: Session, application: Application, target: AppState, chosen: str | None,
                       errors: dict[str, list[str]]) -> str | None:
    """The tier a new project gets (None when no project is made), or an error on the form's field."""
    if chosen is not None and chosen not in SECURITY_TIERS:
        errors["security_tier"] = ["Choose the security tier: " + " or ".join(SECURITY_TIER_LABELS.values()) + "."]
        return None
    if target is not AppState.APPROVED:
        return None
    if application.kind == "new":
        return chosen or DEFAULT_SECURITY_TIER
    project = session.get(Project, application.project_id) if application.project_id else None
    if chosen is not None and project is not None and chosen != project.security_tier:
        errors["security_tier"] = ["An amendment keeps the project's security tier "
                                   f"({SECURITY_TIER_LABELS[project.security_tier]}); an administrator can raise it."]
    return None


def _project_end(session: Session, application: Application) -> dt.date | None:
    from projects.models import Project

    project = session.get(Project, application.project_id) if application.project_id else None
    return project.end_date if project else None


def reviewers_available(session: Session, application: Application) -> list[tuple[User, str | None]]:
    """DAC members the chair could assign, each with the reason they are conflicted (if any)."""
    users = users_with_roles(session, [Role.DAC_MEMBER.value, Role.LAY_MEMBER.value, Role.DAC_CHAIR.value])
    return [(u, automatic_conflict(u, application)) for u in users]
