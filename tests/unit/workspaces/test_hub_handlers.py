"""The hub's own handlers, without a hub: the hand-overs it holds at once, and where the activity check goes.

Against a real hub: tests/integration/workspaces/test_hub_limits.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from jupyterhub import apihandlers
from jupyterhub.apihandlers.users import ActivityAPIHandler

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "infra" / "jupyterhub"))
from handover_handler import InFlight, body_seconds
from server_tokens import ACTIVITY_ROUTE, OwnServerActivityHandler, install_activity_handler


def test_one_hand_over_of_each_kind_per_server_and_a_cap_on_all_of_them() -> None:
    held = InFlight(limit=100, per_person=100)
    assert held.claim("_u1/p1", "files", 60) is None
    assert "still being handed over" in (held.claim("_u1/p1", "files", 1) or "")  # the same server, same kind
    assert held.claim("_u1/p1", "traffic", 10) is None  # its traffic report is not held up by its file
    assert held.claim("_u1/p2", "files", 30) is None  # another server: 100 bytes in all
    assert "busy" in (held.claim("_u2/p3", "files", 1) or "")  # past the cap, whoever asks
    held.release("_u1/p1", "files")
    held.release("_u1/p1", "files")  # releasing twice (the request finished, then its connection closed) is safe
    assert held.held == {("_u1/p1", "traffic"): 10, ("_u1/p2", "files"): 30}
    assert held.claim("_u2/p3", "files", 59) is None and held.claim("_u1/p1", "files", 1) is None  # 100: at the cap


def test_one_persons_workspaces_cannot_take_the_whole_hub() -> None:
    """A researcher with several projects open sending large files from each holds at most their share; the next
    person's hand-over still goes through."""
    held = InFlight(limit=100, per_person=40)
    assert held.claim("_u1/p1", "files", 30) is None
    assert "Your other workspaces" in (held.claim("_u1/p2", "files", 20) or "")  # 50 from _u1: past their share
    assert held.claim("_u1/p2", "traffic", 10) is None  # 40: at their share
    assert held.claim("_u10/p1", "files", 40) is None  # another person (a name sharing the prefix is not the same)
    assert held.claim("_u2/p1", "files", 20) is None  # 100 in all
    assert "busy" in (held.claim("_u3/p1", "files", 1) or "")


def test_a_slow_sender_holds_its_claim_for_seconds_not_minutes() -> None:
    assert body_seconds(64 * 1024) < 11
    assert body_seconds(64 * 1024 * 1024) <= 30  # the largest file, at the slowest rate allowed


def test_the_activity_check_takes_the_hubs_own_route_or_the_hub_does_not_start() -> None:
    routes = list(apihandlers.default_handlers)
    if any(route[1] is OwnServerActivityHandler for route in routes):  # the config was loaded in this process
        routes = [(p, ActivityAPIHandler, *rest) if h is OwnServerActivityHandler else (p, h, *rest)
                  for p, h, *rest in routes]
    install_activity_handler(routes)
    assert [route[1] for route in routes if route[0] == ACTIVITY_ROUTE] == [OwnServerActivityHandler]
    assert not any(route[1] is ActivityAPIHandler for route in routes)
    assert len(routes) == len(apihandlers.default_handlers)
    moved = [route for route in routes if route[0] != ACTIVITY_ROUTE]
    with pytest.raises(RuntimeError, match="activity route"):
        install_activity_handler(moved)
