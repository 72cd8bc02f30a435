"""The hub's own handlers, without a hub: where the activity check goes.

Against a real hub: tests/integration/workspaces/test_hub_limits.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from jupyterhub import apihandlers
from jupyterhub.apihandlers.users import ActivityAPIHandler

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "infra" / "jupyterhub"))
from server_tokens import ACTIVITY_ROUTE, OwnServerActivityHandler, install_activity_handler


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
