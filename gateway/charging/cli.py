"""``sde tariff show`` and ``sde invoices run --month YYYY-MM``."""

from __future__ import annotations

import datetime as dt
import sys

import click

from gateway.config import load_settings
from gateway.db import make_engine, make_session_factory, unit_of_work
from gateway.errors import DomainError
from projects.money import format_money, format_percent
from projects.tariff import TariffError, load_tariff

PRICE_LABELS = {
    "new_application": "New application",
    "amendment": "Amendment, renewal or extension",
    "annual_review": "Annual review",
    "data_provision_per_dataset": "Data provision, per dataset",
    "project_setup": "Project set-up",
    "workspace_seat_per_user_month": "Workspace seat, per user per month",
    "output_check": "Each further output check",
    "compute_hour": "Compute, per hour",
}


@click.group("tariff")
def tariff_group() -> None:
    """The published tariff."""


@tariff_group.command("show")
def tariff_show() -> None:
    """Print the tariff in force (from the file named by the settings)."""
    settings = load_settings()
    try:
        tariff = load_tariff(settings.charging.tariff_path)
    except TariffError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    click.echo(f"{tariff.name}")
    click.echo(f"Version {tariff.version_id}, in force from {tariff.effective_from.isoformat()}; "
               f"currency {tariff.currency}; VAT {format_percent(tariff.vat_basis_points)}")
    click.echo(f"File: {settings.charging.tariff_path}")
    click.echo("")
    prices = tariff.prices.model_dump()
    for key, label in PRICE_LABELS.items():
        click.echo(f"  {label:<40} {format_money(prices[key], tariff.currency):>12}")
    click.echo(f"  {'Output checks included per seat-month':<40} {tariff.prices.output_checks_included_per_seat:>12}")
    click.echo("")
    click.echo("Organisation rules (multiplier on every price; VAT):")
    for org_type, rule in tariff.organisation_rules.items():
        click.echo(f"  {rule.label:<40} {format_percent(rule.multiplier_basis_points):>7}  "
                   f"{'VAT' if rule.vat else 'no VAT'}  [{org_type}]")
    click.echo(f"\nWhile a new application's end date is unknown, seats are quoted for "
               f"{tariff.quote_rules.default_duration_months} months.")


@click.group("invoices")
def invoices_group() -> None:
    """Monthly invoices."""


@invoices_group.command("run")
@click.option("--month", required=True, help="The month to invoice, like 2026-11 (it must have ended).")
def invoices_run(month: str) -> None:
    """Draft this month's invoices from metered usage. Running it again creates no duplicates."""
    from gateway.charging.invoices import run_month
    from gateway.charging.metering import meter_compute_sessions
    from gateway.identity.operator import cli_actor

    settings = load_settings()
    factory = make_session_factory(make_engine(settings.resolved_database_url))
    today = dt.datetime.now(dt.UTC).date()
    try:
        with unit_of_work(factory) as session:
            meter_compute_sessions(session)
            result = run_month(session, cli_actor(), month, today)
            lines = [f"  {i.number}  {i.period}  {format_money(i.total_pence, i.currency):>12}  project {i.project_id}"
                     for i in result.created]
            summary = result.describe()
    except DomainError as exc:
        click.echo(f"Error: {exc.message}", err=True)
        sys.exit(1)
    click.echo(summary)
    for line in lines:
        click.echo(line)
