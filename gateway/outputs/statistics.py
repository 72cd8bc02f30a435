"""Checker statistics: how often the two blinded reviews agree, how often decisions are overturned, how long it takes.

The unit is a *reviewed file version*: one version of one output file with at least one counted vote. Definitions
(docs/output-checkers.md repeats them for the people reading the figures):

- A **counted vote** is a checker's vote that was part of a submitted review (the checker submitted a review of the
  request after casting it) in a round whose reviews are no longer blind (both reviews are in, or the round was
  decided). Draft votes and votes still blind to the other checker are never counted, so the page cannot be used to
  learn a colleague's vote early.
- **Agreement**: for each reviewed file version, every pair of counted votes by two different checkers; a pair
  agrees when both approved or both requested changes. The rate is agreeing pairs / pairs.
- **Final outcome** of a file version: *approved* when the request was approved (or released) with this version;
  *not approved* when the request was rejected with it, or when the version was replaced by a new one after it was
  reviewed (the researcher had to change it). Versions still under review, or in a withdrawn request, have none.
- **A checker's decision is overturned** when their counted vote differs from the final outcome (approve against
  not approved, request changes against approved). Rate: overturned votes / counted votes with a final outcome.
- **The automatic verdict is overturned** when people approved a version the automatic checks failed, or did not
  approve one they passed ("review" asks people to decide, so it is never overturned). Rate: overturned / versions
  with a pass or fail verdict and a final outcome. Per rule: over the versions in which that rule flagged a cell.
- **Turnaround**, per submission round: submission to the first submitted review, and submission to the decision
  (approve, return or reject); per checker, submission to their own review, for rounds no longer blind. Median and
  90th percentile, in hours.

Facts come from the workflow tables (votes, reviews) and the audit log (submissions, decisions, automatic checks),
which holds every round even after a resubmission overwrites the request's own columns. The figures are computed by
plain functions over those facts (``compute``), so they are tested without a database too.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.models import AuditEvent, User
from gateway.outputs.models import OutputRequest
from gateway.outputs.workflow import OutputState

REVIEWS_NEEDED = 2
DECISIONS = {"output_request.approved": "approve", "output_request.returned": "return",
             "output_request.rejected": "reject"}
APPROVED, NOT_APPROVED = "approved", "not approved"
NO_RULE = "none"

# the one mapping from a rule's internal name to what people read
RULE_LABELS = {
    "threshold": "Minimum threshold (too few people in a cell)",
    "small_count": "Small count (heuristic)",
    "zeros": "Zero cell",
    "nk_dominance": "Dominance (N-K rule)",
    "p_percent": "Dominance (p% rule)",
    "dof": "Residual degrees of freedom",
    "all_same": "All values the same",
    "missing": "Missing values",
    "negative": "Negative values",
    "unrounded": "Unrounded count (heuristic)",
    "single_person": "Single-person minimum or maximum (heuristic)",
    "mismatch": "Differs from the recomputed table",
    "differencing": "Differencing with a released table",
    "model_threshold": "Model cell below the threshold",
    "separation": "Perfect prediction (separation)",
    NO_RULE: "No rule flagged a cell",
}


def rules_fired(result: dict[str, Any]) -> list[str]:
    """The rules that flagged a cell the checks left unmitigated (a suppressed cell passes): names only, no cell.

    Written to the audit event of each automatic check, so the statistics keep every version's rules.
    """
    return sorted({rule for cell in result.get("cells", []) if cell.get("status") != "pass"
                   for rule in cell.get("rules", [])})


def rule_label(name: str) -> str:
    return RULE_LABELS.get(name, name.replace("_", " ").capitalize())


# --- facts --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Vote:
    checker_id: int
    vote: str  # approve | changes_requested


@dataclass
class FileVersion:
    request_id: int
    path: str
    version: int
    automatic: str | None  # pass | review | fail, or None when not recorded
    rules: frozenset[str]
    outcome: str | None  # approved | not approved | None (none yet)
    votes: list[Vote] = field(default_factory=list)


@dataclass(frozen=True)
class Round:
    request_id: int
    round: int
    submitted_at: dt.datetime
    reviews: tuple[tuple[int, dt.datetime], ...]  # (checker, submitted at)
    decided_at: dt.datetime | None


# --- figures ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rate:
    count: int
    total: int

    @property
    def rate(self) -> float | None:
        return self.count / self.total if self.total else None

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "total": self.total,
                "rate": None if self.rate is None else round(self.rate, 4)}


@dataclass(frozen=True)
class Duration:
    n: int
    median_hours: float | None
    p90_hours: float | None

    @classmethod
    def of(cls, hours: list[float]) -> Duration:
        if not hours:
            return cls(0, None, None)
        ordered = sorted(hours)
        p90 = ordered[0] if len(ordered) == 1 else statistics.quantiles(ordered, n=10, method="inclusive")[8]
        return cls(len(ordered), round(statistics.median(ordered), 2), round(p90, 2))

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "median_hours": self.median_hours, "p90_hours": self.p90_hours}


@dataclass(frozen=True)
class CheckerFigures:
    checker_id: int
    votes: int
    agreement: Rate
    overturned: Rate
    turnaround: Duration


@dataclass(frozen=True)
class RuleFigures:
    rule: str
    versions: int
    agreement: Rate
    approved: Rate  # of the flagged versions with a final outcome, how many people approved anyway
    automatic_overturned: Rate


@dataclass(frozen=True)
class Statistics:
    reviewed_versions: int
    agreement: Rate
    checker_overturned: Rate
    automatic_overturned: Rate
    to_first_review: Duration
    to_decision: Duration
    checkers: list[CheckerFigures]
    rules: list[RuleFigures]


def _pairs(votes: list[Vote]) -> list[tuple[Vote, Vote]]:
    return [(a, b) for i, a in enumerate(votes) for b in votes[i + 1:] if a.checker_id != b.checker_id]


def _agrees(vote: str, outcome: str) -> bool:
    return (vote == "approve") == (outcome == APPROVED)


def _automatic_overturned(version: FileVersion) -> bool | None:
    """True/False when the verdict can be overturned and there is an outcome; None otherwise."""
    if version.outcome is None or version.automatic not in {"pass", "fail"}:
        return None
    return (version.automatic == "fail") == (version.outcome == APPROVED)


def _blind(r: Round) -> bool:
    """A round still waiting for its second review: who reviewed it first is not shown per checker."""
    return len(r.reviews) < REVIEWS_NEEDED and r.decided_at is None


def _hours(start: dt.datetime, end: dt.datetime) -> float:
    return max((end - start).total_seconds(), 0.0) / 3600


def compute(versions: list[FileVersion], rounds: list[Round]) -> Statistics:
    reviewed = [v for v in versions if v.votes]
    pairs = [(v, p) for v in reviewed for p in _pairs(v.votes)]
    agreement = Rate(sum(a.vote == b.vote for _, (a, b) in pairs), len(pairs))
    decided_votes = [(v, vote) for v in reviewed if v.outcome is not None for vote in v.votes]
    checker_overturned = Rate(sum(not _agrees(vote.vote, v.outcome or "") for v, vote in decided_votes),
                              len(decided_votes))
    automatic = [flag for flag in (_automatic_overturned(v) for v in reviewed) if flag is not None]
    automatic_overturned = Rate(sum(automatic), len(automatic))

    first_review = [_hours(r.submitted_at, min(at for _, at in r.reviews)) for r in rounds if r.reviews]
    to_decision = [_hours(r.submitted_at, r.decided_at) for r in rounds if r.decided_at is not None]

    checkers: list[CheckerFigures] = []
    for checker_id in sorted({vote.checker_id for v in reviewed for vote in v.votes}):
        own_pairs = [(a, b) for _, (a, b) in pairs if checker_id in {a.checker_id, b.checker_id}]
        own_decided = [(v, vote) for v, vote in decided_votes if vote.checker_id == checker_id]
        own_rounds = [_hours(r.submitted_at, at) for r in rounds if not _blind(r)
                      for who, at in r.reviews if who == checker_id]
        checkers.append(CheckerFigures(
            checker_id=checker_id,
            votes=sum(vote.checker_id == checker_id for v in reviewed for vote in v.votes),
            agreement=Rate(sum(a.vote == b.vote for a, b in own_pairs), len(own_pairs)),
            overturned=Rate(sum(not _agrees(vote.vote, v.outcome or "") for v, vote in own_decided),
                            len(own_decided)),
            turnaround=Duration.of(own_rounds)))

    by_rule: dict[str, list[FileVersion]] = defaultdict(list)
    for v in reviewed:
        for rule in v.rules or {NO_RULE}:
            by_rule[rule].append(v)
    rules: list[RuleFigures] = []
    for rule, flagged in sorted(by_rule.items(), key=lambda item: (item[0] == NO_RULE, rule_label(item[0]))):
        rule_pairs = [p for v in flagged for p in _pairs(v.votes)]
        with_outcome = [v for v in flagged if v.outcome is not None]
        overturns = [flag for flag in (_automatic_overturned(v) for v in flagged) if flag is not None]
        rules.append(RuleFigures(
            rule=rule, versions=len(flagged),
            agreement=Rate(sum(a.vote == b.vote for a, b in rule_pairs), len(rule_pairs)),
            approved=Rate(sum(v.outcome == APPROVED for v in with_outcome), len(with_outcome)),
            automatic_overturned=Rate(sum(overturns), len(overturns))))
    return Statistics(len(reviewed), agreement, checker_overturned, automatic_overturned,
                      Duration.of(first_review), Duration.of(to_decision), checkers, rules)


# --- gathering the facts ------------------------------------------------------------------------------------

def gather(session: Session) -> tuple[list[FileVersion], list[Round]]:
    """Every submitted request's reviewed file versions and rounds, from the tables and the audit log."""
    requests = list(session.scalars(select(OutputRequest).where(OutputRequest.state != OutputState.PENDING.value)
                                    .order_by(OutputRequest.id)))
    wanted = [*DECISIONS, "output_request.submitted", "output_request.file_checked"]
    events: dict[str, list[AuditEvent]] = defaultdict(list)
    for event in session.scalars(select(AuditEvent).where(AuditEvent.object_type == "output_request",
                                                          AuditEvent.action.in_(wanted)).order_by(AuditEvent.seq)):
        events[str(event.object_id)].append(event)

    versions: list[FileVersion] = []
    rounds: list[Round] = []
    for request in requests:
        own = events.get(str(request.id), [])
        submitted: dict[int, dt.datetime] = {}
        decided: dict[int, dt.datetime] = {}
        checked: dict[tuple[str, int], dict[str, Any]] = {}
        for event in own:
            details = event.details or {}
            if event.action == "output_request.submitted" and isinstance(details.get("round"), int):
                submitted.setdefault(details["round"], event.occurred_at)
            elif event.action in DECISIONS and isinstance(details.get("round"), int):
                decided.setdefault(details["round"], event.occurred_at)
            elif event.action == "output_request.file_checked":
                checked[(str(details.get("path")), int(details.get("version") or 0))] = details
        reviews_by_round: dict[int, list[tuple[int, dt.datetime]]] = defaultdict(list)
        for review in request.reviews:
            reviews_by_round[review.round].append((review.reviewer_id, review.submitted_at))
        for number, at in sorted(submitted.items()):
            rounds.append(Round(request.id, number, at, tuple(sorted(reviews_by_round.get(number, []),
                                                                     key=lambda r: r[1])), decided.get(number)))
        open_rounds = {n for n in submitted if len(reviews_by_round.get(n, [])) < REVIEWS_NEEDED and n not in decided}
        reviews = sorted(request.reviews, key=lambda r: r.submitted_at)
        for item in request.files:
            if item.kind != "output":
                continue
            by_version: dict[int, list[Vote]] = defaultdict(list)
            for vote in item.votes:
                review = next((r for r in reviews if r.reviewer_id == vote.reviewer_id
                               and r.submitted_at >= vote.voted_at), None)
                if review is None or review.round in open_rounds:
                    continue  # a draft, or still blind to the other checker
                by_version[vote.file_version].append(Vote(vote.reviewer_id, vote.vote))
            for version in range(1, item.version + 1):
                details = checked.get((item.path, version), {})
                rules = details.get("rules")
                if rules is None and version == item.version and item.check_result:
                    rules = rules_fired(item.check_result)
                automatic = details.get("status") or (item.check_status if version == item.version else None)
                versions.append(FileVersion(request.id, item.path, version,
                                            automatic if automatic in {"pass", "review", "fail"} else None,
                                            frozenset(rules or ()), _outcome(request, item.version, version),
                                            by_version.get(version, [])))
    return versions, rounds


def _outcome(request: OutputRequest, current: int, version: int) -> str | None:
    if version < current:
        return NOT_APPROVED  # replaced: the researcher had to change it
    if request.state in {OutputState.APPROVED, OutputState.RELEASED}:
        return APPROVED
    if request.state == OutputState.REJECTED:
        return NOT_APPROVED
    return None


def checker_statistics(session: Session) -> tuple[Statistics, dict[int, User]]:
    versions, rounds = gather(session)
    figures = compute(versions, rounds)
    people = {u.id: u for u in session.scalars(select(User).where(
        User.id.in_([c.checker_id for c in figures.checkers])))} if figures.checkers else {}
    return figures, people


def as_json(figures: Statistics, people: dict[int, User]) -> dict[str, Any]:
    def checker_name(checker_id: int) -> tuple[str, str]:
        user = people.get(checker_id)
        return (user.username, user.display_name) if user else (str(checker_id), str(checker_id))

    return {
        "reviewed_file_versions": figures.reviewed_versions,
        "agreement": figures.agreement.to_dict(),
        "checker_overturned": figures.checker_overturned.to_dict(),
        "automatic_overturned": figures.automatic_overturned.to_dict(),
        "turnaround": {"to_first_review": figures.to_first_review.to_dict(),
                       "to_decision": figures.to_decision.to_dict()},
        "checkers": [{"username": checker_name(c.checker_id)[0], "name": checker_name(c.checker_id)[1],
                      "votes": c.votes, "agreement": c.agreement.to_dict(), "overturned": c.overturned.to_dict(),
                      "turnaround": c.turnaround.to_dict()} for c in figures.checkers],
        "rules": [{"rule": r.rule, "label": rule_label(r.rule), "file_versions": r.versions,
                   "agreement": r.agreement.to_dict(), "approved": r.approved.to_dict(),
                   "automatic_overturned": r.automatic_overturned.to_dict()} for r in figures.rules],
    }
