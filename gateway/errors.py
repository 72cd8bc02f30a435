"""Domain errors raised by services; the web and API layers turn them into responses."""

from __future__ import annotations


class DomainError(Exception):
    """Base class: a rule of the gateway refused the request."""

    status_code = 400
    error = "bad_request"

    def __init__(self, message: str, *, field_errors: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field_errors = field_errors or {}


class PermissionDenied(DomainError):
    status_code = 403
    error = "forbidden"


class NotFound(DomainError):
    status_code = 404
    error = "not_found"


class ValidationError(DomainError):
    status_code = 422
    error = "validation_error"


class InvalidTransition(DomainError):
    status_code = 409
    error = "invalid_transition"


class Conflict(DomainError):
    status_code = 409
    error = "conflict"


class AuthenticationFailed(DomainError):
    status_code = 401
    error = "unauthenticated"
