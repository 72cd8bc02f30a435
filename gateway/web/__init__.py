"""Pages: thin views that parse a form, call one service and render."""

from __future__ import annotations

import importlib

from flask import Blueprint

# Every page module exposes `bp`; add new modules here.
PAGE_MODULES = (
    "gateway.web.assets",
    "gateway.web.auth",
    "gateway.web.home",
    "gateway.web.account",
    "gateway.web.admin",
    "gateway.web.audit_pages",
    "gateway.web.organisations",
    "gateway.web.accreditation",
    "gateway.web.applications",
    "gateway.web.projects",
    "gateway.web.register",
    "gateway.web.receipts",
    "gateway.web.trust",
    "gateway.web.catalogue",
    "gateway.web.packages",
    "gateway.web.agreements",
    "gateway.web.outputs",
    "gateway.web.output_statistics",
    "gateway.web.handover",
    "gateway.web.charging",
    "gateway.web.search",
)


def blueprints() -> list[Blueprint]:
    return [importlib.import_module(name).bp for name in PAGE_MODULES]
