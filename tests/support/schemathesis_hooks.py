"""Hooks for `schemathesis run` against a live gateway (loaded through SCHEMATHESIS_HOOKS by
tests/integration/test_api_live_server.py; they run inside the schemathesis process).

- ``RoleToken``: the bearer token of one account (SDE_ST_USERNAME), minted in the sandbox's database
  (SDE_DATABASE_URL) through the real token service. A fuzzed ``DELETE /tokens/{id}`` may revoke the token in
  use; schemathesis then sees a 401, asks for a fresh token and replays the request.
- ``every_permitted_operation_reached``: a run that only ever got 401 for an operation the role may call
  tested nothing there (a dead token, a deactivated account); that fails the run instead of passing quietly.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import schemathesis

USERNAME = os.environ["SDE_ST_USERNAME"]
PERMITTED = frozenset(json.loads(os.environ["SDE_ST_PERMITTED"]))  # labels such as "GET /me"
_lock = threading.Lock()
_factory: Any = None


def mint_token(username: str) -> str:
    global _factory
    from gateway.db import make_engine, make_session_factory, unit_of_work
    from gateway.identity import accounts, tokens

    with _lock:
        if _factory is None:
            _factory = make_session_factory(make_engine(os.environ["SDE_DATABASE_URL"]))
        with unit_of_work(_factory) as session:
            owner = accounts.find_user(session, username)
            assert owner is not None, username
            _, plain = tokens.create_token(session, "test", owner, "schemathesis", 1)
    return plain


@schemathesis.auth()
class RoleToken:
    def get(self, case: Any, context: Any) -> str:
        return mint_token(USERNAME)

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


@schemathesis.check
class every_permitted_operation_reached:  # named like the built-in checks
    def __init__(self) -> None:
        self.reached: set[str] = set()

    def after_response(self, ctx: Any, response: Any, case: Any) -> None:
        if response.status_code != 401:
            self.reached.add(f"{case.operation.method.upper()} {case.operation.path}")

    def after_run(self, ctx: Any) -> None:
        missing = sorted(PERMITTED - self.reached)
        if missing:
            raise AssertionError(f"{USERNAME} got only 401 (or nothing) from operations it may call: "
                                 + ", ".join(missing))
