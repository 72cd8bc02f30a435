"""Schemathesis walks every documented API operation as a few roles: no 5xx, and every answer is documented.

The cases come from the app's own OpenAPI document (/api/v1/openapi.json), are sent in-process through
the WSGI transport and are checked against that document: status code listed, content type listed,
body matching the response schema. Valid (positive) and invalid (negative) inputs are both generated.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy.orm import Session, sessionmaker

from gateway.api.base import api
from gateway.db import unit_of_work
from gateway.identity import accounts, tokens
from gateway.permissions import ROLE_PERMISSIONS, Role

ROLES = ("auditor", "researcher", "admin")
EXAMPLES_PER_OPERATION = 4
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _token(session_factory: sessionmaker[Session], username: str) -> str:
    with unit_of_work(session_factory) as s:
        owner = accounts.find_user(s, username)
        assert owner is not None
        _, plain = tokens.create_token(s, "test", owner, "conformance", 30)
    return plain


def _auth(session_factory: sessionmaker[Session], username: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {_token(session_factory, username)}"}


def _load_schema(app: Flask) -> Any:
    """The app's own document, bound to the app for WSGI calls."""
    doc = app.test_client().get("/api/v1/openapi.json").json
    assert doc is not None
    schema = schemathesis.openapi.from_dict(doc)
    schema.app = app
    return schema


def _fuzz(operation: Any, mode: GenerationMode, headers: dict[str, str], examples: int) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    run()


@pytest.mark.parametrize("username", ROLES)
def test_every_operation_answers_as_documented(app: Flask, session_factory: sessionmaker[Session],
                                               demo_users: dict[str, int], username: str) -> None:
    schema = _load_schema(app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 40
    allowed = ROLE_PERMISSIONS[Role(username)]
    permission = {(op.method, op.openapi_path): op.permission for op in api.operations}
    for operation in operations:
        required = permission[(operation.method.upper(), operation.path)]
        if required is not None and required not in allowed:
            # Refused before any input is read: one call checks the documented 403.
            _fuzz(operation, GenerationMode.POSITIVE, _auth(session_factory, username), 1)
            continue
        has_input = any(len(part) for part in (operation.path_parameters, operation.query, operation.body))
        modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if has_input else (GenerationMode.POSITIVE,)
        for mode in modes:
            # A fresh token each time: a fuzzed DELETE /tokens/{id} may have revoked the last one.
            _fuzz(operation, mode, _auth(session_factory, username), EXAMPLES_PER_OPERATION)


def test_checks_catch_an_undocumented_answer(app: Flask, session_factory: sessionmaker[Session],
                                             demo_users: dict[str, int]) -> None:
    """The harness itself can fail: a 500 and an undocumented status are both reported."""
    schema = _load_schema(app)
    operation = schema["/me"]["GET"]
    headers = _auth(session_factory, "researcher")
    case = operation.Case()
    response = case.call(headers=headers)
    case.validate_response(response, checks=CHECKS)  # the real answer conforms
    for status in (500, 409):
        response.status_code = status
        with pytest.raises(FailureGroup):
            case.validate_response(response, checks=CHECKS)

