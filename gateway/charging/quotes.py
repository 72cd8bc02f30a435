"""Quotes: what an application will cost under the tariff, recomputed from its current data every time.

Rules (also in docs/charging.md):
* a new application pays the new-application fee and project set-up; an amendment pays the amendment fee;
* data provision is charged per dataset: for a new application every dataset its variables come from, for
  an amendment only datasets the project does not already have;
* workspace seats = team size x months. Months are calendar months of access, a part month counting as a
  whole one (the same rule the seat-month meter uses). While a new application's end date is unknown the
  tariff's ``default_duration_months`` is assumed; at approval the DAC's end date is used. An amendment
  quotes the months its requested end date adds after the project's current end month;
* an annual review is quoted for each anniversary of the start that falls before the end of access;
* the organisation rule's multiplier is applied to each unit price, rounded half away from zero to the
  penny; a line is quantity x unit price; VAT is charged once on the net total (rounded the same way)
  when the organisation rule says VAT applies. A project with commercial involvement is charged the
  commercial rule.

At approval the quote is frozen into the project with its tariff version (``gateway.charging.approval``); one-off lines
become fee meter events, invoiced in the next monthly run. Later tariff changes apply to new quotes only.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, joinedload, lazyload

from gateway.charging.models import FrozenQuote
from gateway.charging.tariff import Tariff, tariff_in_force
from gateway.db import remembered
from projects.models import Application, Project
from projects.money import apply_basis_points, format_money, vat_on

ONCE, METERED, ANNUAL = "once", "metered", "anniversary"


@dataclass(frozen=True)
class QuoteLine:
    code: str
    description: str
    quantity: int
    unit_pence: int
    billing: str = ONCE  # once (invoiced after approval), metered (monthly from readings), anniversary

    @property
    def amount_pence(self) -> int:
        return self.quantity * self.unit_pence


@dataclass(frozen=True)
class Quote:
    tariff_version: str
    currency: str
    org_type: str
    org_label: str
    multiplier_basis_points: int
    vat_basis_points: int  # 0 when the organisation rule has no VAT
    lines: tuple[QuoteLine, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def net_pence(self) -> int:
        return sum(line.amount_pence for line in self.lines)

    @property
    def vat_pence(self) -> int:
        return vat_on(self.net_pence, self.vat_basis_points)

    @property
    def total_pence(self) -> int:
        return self.net_pence + self.vat_pence


@dataclass(frozen=True)
class QuoteInputs:
    kind: str  # "new" | "amendment"
    org_type: str | None
    commercial: bool
    team_size: int
    datasets: tuple[str, ...]
    months: int
    months_note: str
    annual_reviews: int = 0


def month_index(day: dt.date) -> int:
    return day.year * 12 + day.month - 1


def calendar_months(start: dt.date, end: dt.date) -> int:
    """Calendar months from ``start`` to ``end`` inclusive, a part month counting as one (0 if end < start)."""
    return max(0, month_index(end) - month_index(start) + 1) if end >= start else 0


def _anniversary(start: dt.date, years: int) -> dt.date:
    try:
        return start.replace(year=start.year + years)
    except ValueError:  # 29 February
        return start.replace(year=start.year + years, day=28)


def anniversaries_between(start: dt.date, after: dt.date, before: dt.date) -> int:
    """Anniversaries of ``start`` strictly after ``after`` and strictly before ``before``."""
    count, years = 0, 1
    while (day := _anniversary(start, years)) < before:
        if day > after:
            count += 1
        years += 1
    return count


def effective_org_type(tariff: Tariff, org_type: str | None, commercial: bool) -> str:
    if commercial:
        return "commercial"
    return org_type or tariff.quote_rules.no_organisation_type


def unit_price(tariff: Tariff, org_type: str, base_pence: int) -> int:
    return apply_basis_points(base_pence, tariff.rule_for(org_type).multiplier_basis_points)


def build_quote(tariff: Tariff, inputs: QuoteInputs) -> Quote:
    """The pure arithmetic: same inputs and tariff, same quote."""
    org_type = effective_org_type(tariff, inputs.org_type, inputs.commercial)
    rule = tariff.rule_for(org_type)
    p = tariff.prices

    def price(base: int) -> int:
        return unit_price(tariff, org_type, base)

    lines: list[QuoteLine] = []
    if inputs.kind == "new":
        lines.append(QuoteLine("new_application", "New data access application", 1, price(p.new_application)))
    else:
        lines.append(QuoteLine("amendment", "Amendment, renewal or extension", 1, price(p.amendment)))
    if inputs.datasets:
        lines.append(QuoteLine("data_provision", "Data provision: " + ", ".join(inputs.datasets),
                               len(inputs.datasets), price(p.data_provision_per_dataset)))
    if inputs.kind == "new":
        lines.append(QuoteLine("project_setup", "Project set-up", 1, price(p.project_setup)))
    seats = inputs.team_size * inputs.months
    if seats:
        lines.append(QuoteLine(
            "workspace_seats", f"Workspace seats: {inputs.team_size} "
            f"{'person' if inputs.team_size == 1 else 'people'} x {inputs.months} month{'s' * (inputs.months != 1)}"
            f" ({inputs.months_note}); includes {p.output_checks_included_per_seat} output checks per seat",
            seats, price(p.workspace_seat_per_user_month), METERED))
    if inputs.annual_reviews:
        lines.append(QuoteLine("annual_review", "Annual review", inputs.annual_reviews, price(p.annual_review),
                               ANNUAL))
    notes = [f"Each output check beyond those included costs {format_money(price(p.output_check), tariff.currency)}; "
             f"compute costs {format_money(price(p.compute_hour), tariff.currency)} an hour."]
    if inputs.commercial and inputs.org_type != "commercial":
        notes.append("Commercial involvement: the commercial rule applies.")
    return Quote(tariff_version=tariff.version_id, currency=tariff.currency, org_type=org_type,
                 org_label=rule.label, multiplier_basis_points=rule.multiplier_basis_points,
                 vat_basis_points=tariff.vat_basis_points if rule.vat else 0, lines=tuple(lines), notes=tuple(notes))


def _datasets(application: Application) -> set[str]:
    return {v.dataset for v in application.variables}


def _long(day: dt.date) -> str:
    """A date in a quote line as pages show dates: "4 August 2031"."""
    return f"{day.day} {day:%B %Y}"


def inputs_for(session: Session, tariff: Tariff, application: Application, today: dt.date,
               access_end: dt.date | None = None) -> QuoteInputs:
    """What the quote depends on, read from the application as it is now."""
    org_type = application.organisation.org_type if application.organisation else None
    team = max(1, len(application.members))
    if application.kind == "amendment":
        project = session.get(Project, application.project_id)
        assert project is not None
        have = {v.dataset for v in project.variables}
        new_end = application.requested_end_date
        months = max(0, month_index(new_end) - month_index(project.end_date)) if new_end else 0
        reviews = anniversaries_between(project.start_date, project.end_date, new_end) if new_end else 0
        note = f"extension to {_long(new_end)}" if new_end else "no extension requested"
        return QuoteInputs("amendment", org_type, application.commercial_involvement, team,
                           tuple(sorted(_datasets(application) - have)), months, note, reviews)
    if access_end is None:
        months = tariff.quote_rules.default_duration_months
        note = f"assumed: the committee sets the end date; {months} months until then"
        reviews = max(0, (months - 1) // 12)
    else:
        months = calendar_months(today, access_end)
        note = f"{_long(today)} to {_long(access_end)}"
        reviews = anniversaries_between(today, today, access_end)
    return QuoteInputs("new", org_type, application.commercial_involvement, team,
                       tuple(sorted(_datasets(application))), months, note, reviews)


def quote_for_application(session: Session, application: Application, today: dt.date,
                          tariff: Tariff | None = None) -> Quote:
    """The live quote shown while drafting and to the DAC: computed afresh from the current data."""
    tariff = tariff or tariff_in_force()
    return build_quote(tariff, inputs_for(session, tariff, application, today))


# built once per process: the application page asks on every view (SQLAlchemy keeps a built statement's cache key)
_FROZEN_QUOTE = (select(FrozenQuote).where(FrozenQuote.application_id == bindparam("application_id"))
                 .options(joinedload(FrozenQuote.lines)))  # its lines, same query


def frozen_quote_of(session: Session, application_id: int) -> FrozenQuote | None:
    return session.scalars(_FROZEN_QUOTE, {"application_id": application_id}).unique().one_or_none()


def project_quotes(session: Session, project: Project) -> list[FrozenQuote]:
    """The project's frozen quotes with their lines, oldest first, in one statement (a project has a few). Remembered
    until anything is written: the charges page shows them and prices accrued usage on the latest."""
    return list(remembered(session, ("quotes", project.id), lambda: tuple(session.scalars(
        _PROJECT_QUOTES, {"project_id": project.id}).unique())))


_PROJECT_QUOTES = (select(FrozenQuote).where(FrozenQuote.project_id == bindparam("project_id"))
                   .order_by(FrozenQuote.id).options(joinedload(FrozenQuote.lines)))  # built once per process


def price_basis(session: Session, project: Project, afresh: bool = False) -> FrozenQuote | None:
    """The quote whose tariff version and organisation rule price the project's metered usage (the latest).
    ``afresh``: for a decision or a charge, read now, not taken from what a page remembered (a quote frozen by
    another transaction since counts)."""
    if afresh:
        return session.scalar(select(FrozenQuote).where(FrozenQuote.project_id == project.id)
                              .order_by(FrozenQuote.id.desc()).limit(1)
                              .options(lazyload(FrozenQuote.lines)))  # the basis needs the quote's terms only
    frozen = project_quotes(session, project)
    return frozen[-1] if frozen else None
