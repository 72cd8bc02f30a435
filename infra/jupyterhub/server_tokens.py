"""A workspace server's own hub API token, and what the hub takes from it.

Every single-user server holds a hub API token whose scopes name exactly that server
(``access:servers!server=<user>/<server>``) besides ``users:activity!user=<user>``; a person's browser session
holds ``access:servers!user=<user>`` instead. `token_server` tells them apart; the hand-over forwarder
(handover_handler.py) and the activity endpoint below accept a server's own token only for that server.

JupyterHub's activity endpoint (``POST /hub/api/users/<user>/activity``) can only be limited per user: it asks
for ``users:activity`` on the user named in its URL, which a scope filtered to one server
(``users:activity!server=<user>/<server>``) does not give, and then updates any of that user's servers named in
the body (JupyterHub 6.1: ``scopes.has_scope``, ``apihandlers.users.ActivityAPIHandler``). So a workspace of
project A, holding ``users:activity!user``, could report activity for the same researcher's project B server,
keeping it from being culled (and metered as running). `OwnServerActivityHandler` replaces the hub's handler:
reports naming servers are taken only from the named server's own token (or from a caller allowed activity for
every user).
"""

from __future__ import annotations

from typing import Any

from jupyterhub import apihandlers
from jupyterhub.apihandlers.users import ActivityAPIHandler
from jupyterhub.scopes import Scope, needs_scope
from tornado import web

ACTIVITY_ROUTE = r"/api/users/([^/]+)/activity"


def token_server(handler: Any) -> str | None:
    """``"<user>/<server>"`` when the request comes with a server's own token, else None."""
    user = handler.current_user
    if user is None or not getattr(handler, "_token_authenticated", False) or getattr(user, "kind", "user") != "user":
        return None
    scopes = set(handler.expanded_scopes)
    if "access:servers" in scopes or any(s.startswith("access:servers!user") for s in scopes):
        return None
    servers = {s.split("!server=", 1)[1] for s in scopes if s.startswith("access:servers!server=")}
    if len(servers) != 1:
        return None
    return servers.pop()


class OwnServerActivityHandler(ActivityAPIHandler):
    """The hub's activity endpoint, taking a server's activity only from that server's own token."""

    @needs_scope("users:activity")
    def post(self, user_name: str) -> Any:
        body = self.get_json_body()
        servers = body.get("servers") if isinstance(body, dict) else None
        if servers and self.parsed_scopes.get("users:activity") != Scope.ALL:
            own = token_server(self)
            if not isinstance(servers, dict) or any(own != f"{user_name}/{name}" for name in servers):
                raise web.HTTPError(403, "A workspace server reports activity for itself only.")
        return super().post(user_name)


def install_activity_handler(handlers: list[Any] = apihandlers.default_handlers) -> None:
    """Put `OwnServerActivityHandler` in the hub's own route for activity (before the hub builds its routes).

    Raises if the hub has no such route (a JupyterHub that moved it): the hub must not start without the check.
    """
    found = [i for i, route in enumerate(handlers) if route[0] == ACTIVITY_ROUTE]
    if len(found) != 1 or not issubclass(handlers[found[0]][1], ActivityAPIHandler):
        raise RuntimeError(f"JupyterHub's activity route {ACTIVITY_ROUTE} was not found; cannot limit activity "
                           "reports to a server's own token")
    handlers[found[0]] = (ACTIVITY_ROUTE, OwnServerActivityHandler, *handlers[found[0]][2:])
