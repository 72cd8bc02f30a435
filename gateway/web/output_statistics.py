"""The output checkers' dashboard: agreement between blinded reviews, overturn rates and turnaround."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template

from gateway.outputs import statistics
from gateway.permissions import Permission
from gateway.web.access import requires
from gateway.web.context import db

bp = Blueprint("output_statistics", __name__, url_prefix="/outputs/statistics")


@bp.get("/")
@requires(Permission.REVIEW_OUTPUTS)
def index() -> Any:
    figures, people = statistics.checker_statistics(db())
    return render_template("outputs/statistics.html", figures=figures, people=people,
                           rule_label=statistics.rule_label)
