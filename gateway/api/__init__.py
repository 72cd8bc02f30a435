"""The JSON API under /api/v1: bearer tokens, pydantic schemas, a generated OpenAPI document."""

from __future__ import annotations

import importlib

# Each module registers its operations on gateway.api.base.api when imported; add new modules here.
OPERATION_MODULES = ("gateway.api.v1", "gateway.api.people", "gateway.api.projects_api", "gateway.api.charging_api",
                     "gateway.api.outputs_api", "gateway.api.statistics_api", "gateway.api.packages_api")


def load_operations() -> None:
    for name in OPERATION_MODULES:
        importlib.import_module(name)
