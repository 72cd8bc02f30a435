"""docs/workflows.md, generated from every transition table (applications, projects, output requests, sign-in).

It sits above projects/, gateway.outputs and gateway.identity because it reads all their tables; the tables
themselves import nothing from here.
"""

from __future__ import annotations

from gateway.identity.sessions import SIGN_IN_OWNERS, SIGN_IN_TRANSITIONS, SignInState
from gateway.outputs.workflow import OUTPUT_OWNERS, OUTPUT_TRANSITIONS, OutputState
from projects.workflow import (
    APPLICATION_OWNERS,
    APPLICATION_TRANSITIONS,
    PROJECT_OWNERS,
    PROJECT_TRANSITIONS,
    AppState,
    ProjectState,
    mermaid,
)


def workflows_markdown() -> str:
    """docs/workflows.md, generated: the diagrams and the owner of every state."""
    parts = ["# Workflows", "",
             "Generated from `projects/workflow.py` by `sde docs diagrams`; a test fails if this page is out of date.",
             "Any move not drawn here is refused by the gateway (409) and changes nothing.", "",
             "## Applications", "", "```mermaid", mermaid(APPLICATION_TRANSITIONS, AppState.DRAFT), "```", "",
             "| State | Who acts |", "| --- | --- |"]
    parts += [f"| {state.value} | {owner} |" for state, owner in APPLICATION_OWNERS.items()]
    parts += ["", "## Projects", "", "```mermaid", mermaid(PROJECT_TRANSITIONS, ProjectState.ACTIVE), "```", "",
              "| State | Who acts |", "| --- | --- |"]
    parts += [f"| {state.value} | {owner} |" for state, owner in PROJECT_OWNERS.items()]
    parts += ["", "## Output requests", "", "```mermaid", mermaid(OUTPUT_TRANSITIONS, OutputState.PENDING), "```",
              "", "| State | Who acts |", "| --- | --- |"]
    parts += [f"| {state.value} | {owner} |" for state, owner in OUTPUT_OWNERS.items()]
    parts += ["", "## Signing in", "",
              "Each browser's sign-in is kept on the server and moves only along these arrows; every page serves one "
              "state, and the cookie's key is replaced at each move. See [Signing in](signing-in.md).", "",
              "```mermaid", mermaid(SIGN_IN_TRANSITIONS, SignInState.PASSWORD), "```",
              "", "| State | Who acts |", "| --- | --- |"]
    parts += [f"| {state.value} | {owner} |" for state, owner in SIGN_IN_OWNERS.items()]
    return "\n".join(parts) + "\n"
