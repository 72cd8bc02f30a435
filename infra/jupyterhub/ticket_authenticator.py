"""JupyterHub sign-in with a gateway-minted ticket, so researchers never see a second password.

The gateway (which already did password + MFA) sends the browser to
``/hub/login?auth_ticket=<ticket>``. `TicketLoginHandler` verifies the ticket with the shared secret,
refuses it if expired or already used, logs the named user in and redirects to the server named
in the ticket. Anything else at /hub/login (no ticket, form posts) gets 403: there is no password
to try. The ticket format lives in `gateway.workspaces.tickets` (imported, not copied).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jupyterhub.auth import Authenticator
from jupyterhub.handlers.login import LoginHandler
from jupyterhub.utils import url_path_join
from tornado import web
from traitlets import Unicode, default

from gateway.workspaces.tickets import TicketClaims, TicketError, TicketVerifier, load_secret

# The hub's request log masks query parameters whose name contains "auth", so tickets stay out
# of the logs (they are single-use and short-lived anyway).
TICKET_PARAM = "auth_ticket"


class TicketLoginHandler(LoginHandler):
    """Replaces the hub's /login page: a ticket or nothing.

    Refusals use HTTPError's `reason` rather than a log message: tornado logs the full request
    URI with a log message, which would put the (spent) ticket in the log.
    """

    async def get(self) -> None:
        ticket = self.get_argument(TICKET_PARAM, default="")
        if not ticket:
            raise web.HTTPError(403, reason="Open your workspace from the gateway")
        user = await self.login_user(data={"ticket": ticket})
        claims: TicketClaims | None = getattr(self, "ticket_claims", None)
        if user is None or claims is None:
            raise web.HTTPError(403, reason="This workspace link is invalid, expired or already used")
        target = user.server_url(claims.server_name) if claims.server_name else url_path_join(self.hub.base_url, "home")
        self.redirect(target, permanent=False)

    async def post(self) -> None:
        raise web.HTTPError(403, reason="Password sign-in is disabled: open your workspace from the gateway")


class TicketAuthenticator(Authenticator):
    """Accept only tickets signed with the secret in `secret_file` (see tickets.py)."""

    secret_file = Unicode(help="File holding the HMAC secret shared with the gateway (at least 32 bytes).").tag(
        config=True
    )

    @default("allow_all")
    def _allow_all_default(self) -> bool:
        # Whether someone may open a workspace is the gateway's decision (entitlements); a
        # correctly signed, fresh, unused ticket is the proof that it was made.
        return True

    spent_tickets_file = Unicode(
        "", help="SQLite file remembering used tickets across hub restarts (empty: in memory only)."
    ).tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not self.secret_file:
            raise ValueError("TicketAuthenticator.secret_file must be set")
        spent = Path(self.spent_tickets_file) if self.spent_tickets_file else None
        self._verifier = TicketVerifier(load_secret(self.secret_file), spent)

    def get_handlers(self, app: Any) -> list[tuple[str, type]]:
        return [("/login", TicketLoginHandler)]

    async def authenticate(self, handler: Any, data: dict[str, Any] | None) -> str | None:
        ticket = (data or {}).get("ticket")
        if not isinstance(ticket, str) or not ticket:
            return None
        try:
            claims = self._verifier.verify(ticket)
        except TicketError as exc:
            self.log.warning("Refused sign-in ticket: %s", exc)
            return None
        handler.ticket_claims = claims
        return claims.username
