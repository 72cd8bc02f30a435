"""The API blueprint and its operation registry; each area's module registers operations on it."""

from __future__ import annotations

from flask import Blueprint

from .registry import ApiRegistry

bp = Blueprint("api", __name__, url_prefix="/api/v1")
api = ApiRegistry(bp)
VERSION = "1.0.0"
