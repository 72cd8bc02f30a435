"""The output request state machine: one transition table, with an owner for every state."""

from __future__ import annotations

from enum import StrEnum

from projects.workflow import check_move


class OutputState(StrEnum):
    PENDING = "pending"
    SUBMITTED = "submitted"
    PARTIALLY_REVIEWED = "partially_reviewed"
    REVIEWED = "reviewed"
    RETURNED = "returned"
    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"
    RELEASED = "released"


OUTPUT_TRANSITIONS: dict[tuple[OutputState, OutputState], str] = {
    (OutputState.PENDING, OutputState.SUBMITTED): "submit",
    (OutputState.PENDING, OutputState.WITHDRAWN): "withdraw",
    (OutputState.SUBMITTED, OutputState.PARTIALLY_REVIEWED): "first review",
    (OutputState.SUBMITTED, OutputState.WITHDRAWN): "withdraw",
    (OutputState.SUBMITTED, OutputState.RETURNED): "return early",
    (OutputState.PARTIALLY_REVIEWED, OutputState.REVIEWED): "second review",
    (OutputState.PARTIALLY_REVIEWED, OutputState.WITHDRAWN): "withdraw",
    (OutputState.PARTIALLY_REVIEWED, OutputState.RETURNED): "return early",
    (OutputState.REVIEWED, OutputState.APPROVED): "approve",
    (OutputState.REVIEWED, OutputState.RETURNED): "return",
    (OutputState.REVIEWED, OutputState.REJECTED): "reject",
    (OutputState.REVIEWED, OutputState.WITHDRAWN): "withdraw",
    (OutputState.RETURNED, OutputState.SUBMITTED): "resubmit",
    (OutputState.RETURNED, OutputState.WITHDRAWN): "withdraw",
    (OutputState.APPROVED, OutputState.RELEASED): "release",
}

OUTPUT_OWNERS: dict[OutputState, str] = {
    OutputState.PENDING: "author (add files, describe groups, submit)",
    OutputState.SUBMITTED: "output checkers (automatic checks run first; may return it early)",
    OutputState.PARTIALLY_REVIEWED: "output checkers (a second, independent review; may return it early)",
    OutputState.REVIEWED: "output checkers (approve, return or reject)",
    OutputState.RETURNED: "author (update files, resubmit)",
    OutputState.APPROVED: "the system (builds the release package)",
    OutputState.REJECTED: "final",
    OutputState.WITHDRAWN: "final",
    OutputState.RELEASED: "final",
}

FINAL_OUTPUT_STATES = frozenset(s for s, owner in OUTPUT_OWNERS.items() if owner == "final")
EDITABLE_STATES = frozenset({OutputState.PENDING, OutputState.RETURNED})
REVIEWABLE_STATES = frozenset({OutputState.SUBMITTED, OutputState.PARTIALLY_REVIEWED})
WITHDRAWABLE_STATES = frozenset(s for (s, t) in OUTPUT_TRANSITIONS if t == OutputState.WITHDRAWN)
EARLY_RETURN_STATES = frozenset(s for (s, t), name in OUTPUT_TRANSITIONS.items() if name == "return early")
# a checker's public comment reaches the researchers once the round it was written in has ended in one of these
COMMENTS_OPEN_STATES = frozenset({OutputState.RETURNED, OutputState.APPROVED, OutputState.RELEASED,
                                  OutputState.REJECTED})


EXCEPTION_DECISION_LABELS = {"accept": "accepted", "refuse": "refused"}


def label(state: str) -> str:
    return state.replace("_", " ")


def check_output_move(current: str, target: OutputState) -> None:
    check_move(OUTPUT_TRANSITIONS, current, target, "An output request")
