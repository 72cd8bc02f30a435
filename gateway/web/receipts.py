"""Signed receipts of released outputs and the public key that checks them. No sign-in needed."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, abort, request

from gateway.trust import receipts, register
from gateway.web.access import public
from gateway.web.context import db, settings

bp = Blueprint("receipts", __name__, url_prefix="/register")


def public_base_url() -> str:
    """The configured public address, else the address this request came to."""
    return (settings().public.base_url or request.url_root).rstrip("/")


@bp.get("/receipts/<name>.json")
@public
def receipt(name: str) -> Any:
    """By the package's public name (as on the register), like the register's own references: a release is public."""
    found = next((r for r in register.releases(db()) if r.package_name == f"{name}.zip"), None)
    if found is None:
        abort(404)
    document = receipts.make_receipt(receipts.signing_key(settings().keys_dir),
                                     receipts.receipt_body(found, public_base_url()))
    return Response(json.dumps(document, indent=2, sort_keys=True) + "\n", mimetype="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{name}-receipt.json"'})


@bp.get("/receipt-key")
@public
def public_key() -> Any:
    key = receipts.signing_key(settings().keys_dir)
    text = receipts.public_key_pem(key) + f"# key id (SHA-256 of the raw key): {receipts.key_id(key.public_key())}\n"
    return Response(text, mimetype="text/plain")
