"""NHS.UK frontend files, served from the npm package the set-up installs (never copied in)."""

from __future__ import annotations

from flask import Blueprint, abort, send_from_directory
from werkzeug.wrappers import Response

from gateway.web.access import public
from gateway.web.context import settings

bp = Blueprint("assets", __name__)


@bp.get("/assets/nhsuk/<path:filename>")
@public
def nhsuk(filename: str) -> Response:
    root = settings().assets_dir
    if not root.is_dir():
        abort(404)
    # send_from_directory refuses paths that escape the folder
    return send_from_directory(root, filename, max_age=3600)
