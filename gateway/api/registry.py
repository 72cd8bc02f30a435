"""Declare an API operation once; get the Flask route, input validation and its OpenAPI entry.

A small in-house layer (about a page) rather than a framework such as flask-smorest: it reuses
pydantic (already used for settings), keeps the access declaration identical to the pages', and
makes the OpenAPI document complete by construction: an operation cannot exist without its entry.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Annotated, Any

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, BeforeValidator
from pydantic import ValidationError as PydanticValidationError
from pydantic.json_schema import models_json_schema

from gateway.errors import NotFound, ValidationError
from gateway.permissions import Permission
from gateway.web.access import public, requires

_CONVERTER = re.compile(r"<(?:(\w+):)?(\w+)>")
_MAX_ID = 2**31 - 1  # the largest key an INTEGER column holds; a bigger path id would overflow the driver (a 500)


@dataclass
class Operation:
    rule: str
    method: str
    summary: str
    tag: str
    permission: Permission | None
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    response: type[BaseModel] | None
    response_is_list: bool
    status: int
    errors: list[int] = field(default_factory=list)
    form: type[BaseModel] | None = None  # multipart/form-data fields (with ``files``)
    files: tuple[str, ...] = ()
    produces: tuple[str, ...] = ()  # binary response media types, for downloads

    @property
    def openapi_path(self) -> str:
        return _CONVERTER.sub(lambda m: "{" + m.group(2) + "}", self.rule)

    def path_params(self) -> list[tuple[str, str]]:
        return [(m.group(2), m.group(1) or "string") for m in _CONVERTER.finditer(self.rule)]


class ApiRegistry:
    def __init__(self, blueprint: Blueprint) -> None:
        self.blueprint = blueprint
        self.operations: list[Operation] = []

    def operation(self, rule: str, method: str, *, summary: str, tag: str, permission: Permission | None,
                  body: type[BaseModel] | None = None, query: type[BaseModel] | None = None,
                  response: type[BaseModel] | None = None, response_is_list: bool = False,
                  status: int = 200, errors: tuple[int, ...] = (), form: type[BaseModel] | None = None,
                  files: tuple[str, ...] = (), produces: tuple[str, ...] = ()) -> Callable[[Callable[..., Any]], Any]:
        """``form`` and ``files`` describe a multipart upload: the fields are validated with ``form`` and
        passed as ``body``; the view reads the named files from ``request.files``. ``produces`` lists
        the media types of a binary response (the view returns a Response)."""
        op = Operation(rule, method.upper(), summary, tag, permission, body, query, response, response_is_list,
                       status, list(errors), form, files, produces)
        self.operations.append(op)

        def decorate(fn: Callable[..., Any]) -> Any:
            @wraps(fn)
            def view(**path_args: Any) -> Any:
                if any(isinstance(v, int) and v > _MAX_ID for v in path_args.values()):
                    raise NotFound("There is no such object.")
                kwargs: dict[str, Any] = dict(path_args)
                if body is not None:
                    payload = request.get_json(silent=True)
                    if not isinstance(payload, dict):
                        raise ValidationError("The request body must be a JSON object.")
                    kwargs["body"] = _parse(body, payload, json_body=True)
                if form is not None:
                    kwargs["body"] = _parse(form, request.form.to_dict())
                if query is not None:
                    kwargs["query"] = _parse(query, request.args.to_dict())
                result = fn(**kwargs)
                if isinstance(result, Response):
                    return result
                if result is None:
                    return Response(status=204)
                if isinstance(result, list):
                    data: Any = [item.model_dump(mode="json") for item in result]
                else:
                    data = result.model_dump(mode="json")
                return jsonify(data), status

            view = public(view) if permission is None else requires(permission)(view)
            endpoint = f"{fn.__name__}"
            self.blueprint.add_url_rule(rule, endpoint, view, methods=[op.method])
            # Hand back the plain function: other operations may call it and get its model, not a response.
            return fn

        return decorate

    def openapi(self, title: str, version: str) -> dict[str, Any]:
        models: set[type[BaseModel]] = {ErrorBody}
        for op in self.operations:
            models.update(m for m in (op.body, op.response, op.form) if m is not None)
        # Two models may share a class name (each module has its DecisionIn): pydantic names them apart, so
        # every reference uses the name pydantic gave, never __name__.
        refs, top = models_json_schema([(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
                                    ref_template="#/components/schemas/{model}")
        schemas = top.get("$defs", {})
        paths: dict[str, dict[str, Any]] = {}
        for op in self.operations:
            entry: dict[str, Any] = {
                "summary": op.summary,
                "tags": [op.tag],
                "operationId": f"{op.method.lower()}_{op.openapi_path.strip('/').replace('/', '_')}"
                .replace("{", "").replace("}", "").replace("-", "_"),
                "parameters": [],
                "responses": {},
            }
            if op.permission is None:
                entry["security"] = []
            else:
                scope = op.permission.value
                entry["description"] = (f"Requires the `{scope}` permission: the caller's roles must grant it and the "
                                        f"token must carry the `{scope}` scope."
                                        + ("" if op.method == "GET" else " A read-only token is refused."))
                entry["security"] = [{"bearer": [scope]}]  # OpenAPI 3.1: role names for a non-OAuth scheme
            for name, kind in op.path_params():
                entry["parameters"].append({"name": name, "in": "path", "required": True,
                                            "schema": {"type": "integer" if kind == "int" else "string"}})
            if op.query is not None:
                q_schema = op.query.model_json_schema()
                required = set(q_schema.get("required", []))
                for name, prop in q_schema.get("properties", {}).items():
                    entry["parameters"].append({"name": name, "in": "query", "required": name in required,
                                                "schema": _openapi_schema(prop)})
            if op.body is not None:
                entry["requestBody"] = {"required": True, "content": {"application/json": {
                    "schema": {"$ref": refs[(op.body, "validation")]["$ref"]}}}}
            if op.form is not None:
                # One object: the form's fields and the file parts together (an allOf of a closed form schema
                # and the files could never be satisfied).
                form_schema = op.form.model_json_schema(ref_template="#/components/schemas/{model}")
                schemas.update(form_schema.pop("$defs", {}))
                form_schema["properties"] = {**form_schema.get("properties", {}),
                                             **{name: {"type": "string", "format": "binary"} for name in op.files}}
                form_schema["required"] = [*form_schema.get("required", []), *op.files]
                entry["requestBody"] = {"required": True, "content": {"multipart/form-data": {"schema": form_schema}}}
            if op.response is not None:
                ref = {"$ref": refs[(op.response, "validation")]["$ref"]}
                schema = {"type": "array", "items": ref} if op.response_is_list else ref
                entry["responses"][str(op.status)] = {"description": "OK",
                                                      "content": {"application/json": {"schema": schema}}}
            elif op.produces:
                entry["responses"][str(op.status)] = {"description": "The file", "content": {
                    media: {"schema": {"type": "string", "format": "binary"}} for media in op.produces}}
            else:
                entry["responses"][str(op.status)] = {"description": "Done; no content"}
            error_codes = set(op.errors) | {503}  # the database may be unavailable for a moment
            if op.permission is not None:
                error_codes |= {401, 403, 429}  # 429: the per-token rate limit
            if op.body is not None or op.query is not None or op.form is not None:
                error_codes.add(422)
            if op.path_params():
                error_codes.add(404)
            for code in sorted(error_codes):
                entry["responses"][str(code)] = {"description": _ERROR_TEXT.get(code, "Error"), "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
            paths.setdefault(op.openapi_path, {})[op.method.lower()] = entry
        return {
            "openapi": "3.1.0",
            "info": {"title": title, "version": version},
            "servers": [{"url": "/api/v1"}],
            "paths": paths,
            "components": {"schemas": schemas,
                           "securitySchemes": {"bearer": {
                               "type": "http", "scheme": "bearer",
                               "description": "A personal access token (sde_...). Its scopes are permission names; "
                                              "each operation names the one it needs. Read-only ones may only GET."}}},
            "security": [{"bearer": []}],
        }


_ERROR_TEXT = {401: "Missing, invalid, expired or revoked token", 403: "Not allowed",
               404: "Not found", 409: "Conflicts with the current state", 422: "Invalid input",
               429: "Too many requests with this token; the Retry-After header says when to try again",
               503: "Temporarily unavailable (the database cannot be reached); try again shortly"}


class ErrorBody(BaseModel):
    error: str
    detail: Any = None


def _openapi_schema(prop: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in prop.items() if k not in {"title"}}


def _parse(model: type[BaseModel], payload: dict[str, Any], json_body: bool = False) -> BaseModel:
    """A JSON body is validated strictly as JSON (0 is not false, a number is not a date); form fields and
    query parameters arrive as text and are converted."""
    nul = sorted(_fields_with_nul(payload))
    if nul:  # PostgreSQL cannot store a NUL character in text: refuse it here, not with a database error
        raise ValidationError("The request is not valid.",
                              field_errors={name: [NUL_MESSAGE] for name in nul})
    try:
        if json_body:
            return model.model_validate_json(json.dumps(payload), strict=True)
        return model.model_validate(payload)
    except PydanticValidationError as exc:
        fields: dict[str, list[str]] = {}
        for err in exc.errors():
            key = ".".join(str(part) for part in err["loc"]) or "body"
            fields.setdefault(key, []).append(err["msg"])
        raise ValidationError("The request is not valid.", field_errors=fields) from None


def _iso_date(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise ValueError("Enter a date like 2026-11-30.") from None
    return value


# A date in a query string: only ISO text (a bare number would otherwise be read as a Unix time).
QueryDate = Annotated[dt.date, BeforeValidator(_iso_date)]


NUL_MESSAGE = "Remove the NUL character (\\0): text cannot contain it."


def _fields_with_nul(value: Any, name: str = "body") -> set[str]:
    """The names of the fields whose text (at any depth) contains a NUL character."""
    if isinstance(value, str):
        return {name} if "\x00" in value else set()
    if isinstance(value, dict):
        found: set[str] = set()
        for key, item in value.items():
            found |= {name} if "\x00" in str(key) else _fields_with_nul(item, str(key) if name == "body" else
                                                                         f"{name}.{key}")
        return found
    if isinstance(value, list):
        return set().union(*(_fields_with_nul(item, name) for item in value)) if value else set()
    return set()
