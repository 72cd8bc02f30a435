"""Route access, declared on each view and enforced in one before-request hook.

Every view carries exactly one declaration: ``@public`` (anyone, signed in or not),
``@sign_in_step("code")`` (a person part-way through signing in, at exactly that step) or
``@requires(Permission.X)``. An undeclared view is
refused, so a forgotten decorator fails closed; the route-by-role test lists every endpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from gateway.permissions import Permission

F = TypeVar("F", bound=Callable[..., Any])

ACCESS_ATTR = "_sde_access"


@dataclass(frozen=True)
class Access:
    kind: str  # "public" | "mid_sign_in" | "hub" | "permission"
    permission: Permission | None = None
    step: str | None = None  # for "mid_sign_in": the one sign-in state the view serves


def public(view: F) -> F:
    setattr(view, ACCESS_ATTR, Access("public"))
    return view


def sign_in_step(step: str) -> Callable[[F], F]:
    """A page of one sign-in step; a session in any other state is sent to its own step's page."""
    def decorate(view: F) -> F:
        setattr(view, ACCESS_ATTR, Access("mid_sign_in", step=step))
        return view
    return decorate


def hub_only(view: F) -> F:
    """Called by the workspace hub only: the hub<->gateway secret is checked before the view runs."""
    setattr(view, ACCESS_ATTR, Access("hub"))
    return view


def requires(permission: Permission) -> Callable[[F], F]:
    def decorate(view: F) -> F:
        setattr(view, ACCESS_ATTR, Access("permission", permission))
        return view
    return decorate


def access_of(view: Callable[..., Any] | None) -> Access | None:
    return getattr(view, ACCESS_ATTR, None)
