"""API operation for the output checkers' statistics (the same figures as the dashboard page)."""

from __future__ import annotations

from pydantic import BaseModel

from gateway.outputs import statistics
from gateway.permissions import Permission
from gateway.web.context import db

from .base import api


class RateOut(BaseModel):
    count: int
    total: int
    rate: float | None


class DurationOut(BaseModel):
    n: int
    median_hours: float | None
    p90_hours: float | None


class TurnaroundOut(BaseModel):
    to_first_review: DurationOut
    to_decision: DurationOut


class CheckerOut(BaseModel):
    username: str
    name: str
    votes: int
    agreement: RateOut
    overturned: RateOut
    turnaround: DurationOut


class RuleOut(BaseModel):
    rule: str
    label: str
    file_versions: int
    agreement: RateOut
    approved: RateOut
    automatic_overturned: RateOut


class StatisticsOut(BaseModel):
    reviewed_file_versions: int
    agreement: RateOut
    checker_overturned: RateOut
    automatic_overturned: RateOut
    turnaround: TurnaroundOut
    checkers: list[CheckerOut]
    rules: list[RuleOut]


@api.operation("/output-statistics", "GET", tag="outputs", permission=Permission.REVIEW_OUTPUTS,
               response=StatisticsOut,
               summary="Checker statistics: agreement of blinded reviews, overturn rates, turnaround (checkers)")
def output_statistics() -> StatisticsOut:
    figures, people = statistics.checker_statistics(db())
    return StatisticsOut.model_validate(statistics.as_json(figures, people))
