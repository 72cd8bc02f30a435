"""Pricing metered usage: the project's price basis (its latest frozen quote) applied to meter events.

Line rules (per invoice, per month of usage):
* fees: as frozen (already priced with the organisation rule);
* workspace seats: seat-months x seat price;
* output checks: each user's checks in a month beyond ``output_checks_included_per_seat`` x their seats
  that month, at the output-check price (the first ones in a month are the included ones);
* compute: the month's minutes rounded up to whole hours, at the compute-hour price;
* extract refreshes: datasets refreshed x the data-provision price.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.charging.models import MeterEvent
from gateway.charging.quotes import effective_org_type, price_basis
from gateway.charging.tariff import Tariff, stored_tariff, tariff_in_force
from projects.models import Project
from projects.money import apply_basis_points


@dataclass(frozen=True)
class PriceBasis:
    tariff: Tariff
    tariff_version: str
    org_type: str
    multiplier_basis_points: int
    vat_basis_points: int

    def unit(self, base_pence: int) -> int:
        return apply_basis_points(base_pence, self.multiplier_basis_points)


def basis_for(session: Session, project: Project, afresh: bool = True) -> PriceBasis:
    """How the project's usage is priced. Read afresh unless a page says otherwise (``afresh=False``): invoices,
    fees and budget decisions price on the quote in force now."""
    quote = price_basis(session, project, afresh)
    if quote is not None:
        return PriceBasis(stored_tariff(session, quote.tariff_version_id), quote.tariff_version_id, quote.org_type,
                          quote.multiplier_basis_points, quote.vat_basis_points)
    # a project approved before charging existed: the tariff in force and its organisation rule
    tariff = tariff_in_force()
    org_type = effective_org_type(tariff, project.organisation.org_type if project.organisation else None,
                                  project.commercial_involvement)
    rule = tariff.rule_for(org_type)
    return PriceBasis(tariff, tariff.version_id, org_type, rule.multiplier_basis_points,
                      tariff.vat_basis_points if rule.vat else 0)


@dataclass(frozen=True)
class LineDraft:
    code: str
    description: str
    period: str
    quantity: int
    unit_pence: int

    @property
    def amount_pence(self) -> int:
        return self.quantity * self.unit_pence


def priced_lines(session: Session, project: Project, events: list[MeterEvent], basis: PriceBasis) -> list[LineDraft]:
    """Lines for a batch of not-yet-invoiced events, in a stable order (period, then kind)."""
    prices = basis.tariff.prices
    lines: list[LineDraft] = []
    by_period: dict[str, list[MeterEvent]] = defaultdict(list)
    for event in sorted(events, key=lambda e: (e.period, e.id or 0)):
        by_period[event.period].append(event)
    for period, batch in sorted(by_period.items()):
        for fee in (e for e in batch if e.kind == "fee" and e.quantity > 0):
            assert fee.amount_pence is not None
            lines.append(LineDraft("fee", fee.description or "Fee", period, fee.quantity,
                                   fee.amount_pence // fee.quantity))
        seats = sum(e.quantity for e in batch if e.kind == "seat_month")
        if seats:
            lines.append(LineDraft("workspace_seats", f"Workspace seats, {period}", period, seats,
                                   basis.unit(prices.workspace_seat_per_user_month)))
        checks = _chargeable_checks(session, project, period, [e for e in batch if e.kind == "output_check"],
                                    prices.output_checks_included_per_seat)
        if checks:
            lines.append(LineDraft("output_checks", f"Output checks beyond those included in seats, {period}",
                                   period, checks, basis.unit(prices.output_check)))
        minutes = sum(e.quantity for e in batch if e.kind == "compute")
        if minutes:
            lines.append(LineDraft("compute", f"Compute, {period} ({minutes} minutes, rounded up to hours)",
                                   period, math.ceil(minutes / 60), basis.unit(prices.compute_hour)))
        refreshed = sum(e.quantity for e in batch if e.kind == "extract_refresh")
        if refreshed:
            lines.append(LineDraft("extract_refresh", f"Extract refresh: datasets re-provided, {period}", period,
                                   refreshed, basis.unit(prices.data_provision_per_dataset)))
    return lines


def _chargeable_checks(session: Session, project: Project, period: str, batch: list[MeterEvent],
                       included_per_seat: int) -> int:
    """Checks in this batch beyond each user's allowance, counting checks invoiced earlier in the month first."""
    if not batch:
        return 0
    in_batch: dict[int | None, int] = defaultdict(int)
    for event in batch:
        in_batch[event.user_id] += event.quantity
    chargeable = 0
    for user_id, n_batch in in_batch.items():
        same_user = MeterEvent.user_id.is_(None) if user_id is None else MeterEvent.user_id == user_id

        def total(kind: str, _same_user: object = same_user) -> int:
            return int(session.scalar(select(func.coalesce(func.sum(MeterEvent.quantity), 0)).where(
                MeterEvent.project_id == project.id, MeterEvent.period == period, MeterEvent.kind == kind,
                _same_user)) or 0)

        allowance = included_per_seat * total("seat_month")
        n_all = total("output_check")
        chargeable += max(0, n_all - allowance) - max(0, n_all - n_batch - allowance)
    return chargeable
