"""Put a service's field errors onto a form, so the page re-renders with every message in place."""

from __future__ import annotations

from flask_wtf import FlaskForm

from gateway.errors import ValidationError


def apply_errors(form: FlaskForm, exc: ValidationError) -> list[str]:
    """Attach errors to matching fields; return the rest (for the error summary) as plain messages."""
    leftovers: list[str] = []
    for field_name, messages in exc.field_errors.items():
        field = getattr(form, field_name, None)
        if field is not None and hasattr(field, "errors"):
            field.errors = list(field.errors or []) + list(messages)
        else:
            leftovers.extend(messages)
    if not exc.field_errors:
        leftovers.append(exc.message)
    return leftovers
