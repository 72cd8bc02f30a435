"""Money arithmetic, the tariff file's validation and the quote rules, without a database."""

from __future__ import annotations

import datetime as dt
from fractions import Fraction

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from gateway.charging.quotes import QuoteInputs, anniversaries_between, build_quote, calendar_months
from projects.money import apply_basis_points, divide_round, format_money, parse_pounds, vat_on
from projects.tariff import DEFAULT_TARIFF, TariffError, load_tariff, parse_tariff

TARIFF = load_tariff(DEFAULT_TARIFF)


def reference_round(numerator: int, denominator: int) -> int:
    """Half away from zero, worked out with exact fractions."""
    exact = Fraction(numerator, denominator)
    magnitude = int(abs(exact) + Fraction(1, 2))
    return magnitude if exact >= 0 else -magnitude


@given(st.integers(-10**12, 10**12), st.integers(1, 10**6))
def test_divide_round_is_half_away_from_zero(numerator: int, denominator: int) -> None:
    assert divide_round(numerator, denominator) == reference_round(numerator, denominator)


@given(st.integers(0, 10**10), st.integers(0, 10_000))
def test_vat_is_within_half_a_penny_of_the_exact_figure(net: int, rate: int) -> None:
    vat = vat_on(net, rate)
    assert abs(Fraction(vat) - Fraction(net * rate, 10_000)) <= Fraction(1, 2)


@given(st.integers(-10**9, 10**9))
def test_format_and_parse_round_trip(pence: int) -> None:
    text = format_money(pence)
    assert text.startswith("-£" if pence < 0 else "£")
    assert parse_pounds(text.lstrip("-")) == abs(pence)


@pytest.mark.parametrize("bad", ["", "abc", "1.234", "-5", "1e3", "£"])
def test_parse_pounds_refuses_what_is_not_an_amount(bad: str) -> None:
    with pytest.raises(ValueError, match=r"like 1250\.00"):
        parse_pounds(bad)


def test_rounding_examples() -> None:
    assert divide_round(5, 10) == 1 and divide_round(-5, 10) == -1 and divide_round(4, 10) == 0
    assert apply_basis_points(1100, 15000) == 1650
    assert apply_basis_points(1, 15000) == 2  # 1.5p rounds half up to 2p
    assert format_money(143100) == "£1,431.00"


def inputs(org_type: str | None, commercial: bool = False, team: int = 2, months: int = 12) -> QuoteInputs:
    return QuoteInputs("new", org_type, commercial, team, ("conditions", "patients"), months, "assumed", 0)


NET = 143100 + 2 * 48800 + 43400 + 24 * 47200  # application, 2 datasets, set-up, 2 people x 12 months


@pytest.mark.parametrize(("org_type", "net", "vat"), [
    ("nhs", NET, 0),  # outside the scope of VAT
    ("academic", NET, NET // 5),
    ("charity", NET, NET // 5),
    ("public_sector", NET, NET // 5),
    ("commercial", 214650 + 2 * 73200 + 65100 + 24 * 70800, (214650 + 2 * 73200 + 65100 + 24 * 70800) // 5),
])
def test_quote_arithmetic_for_each_organisation_type(org_type: str, net: int, vat: int) -> None:
    quote = build_quote(TARIFF, inputs(org_type))
    assert quote.net_pence == net
    assert quote.vat_pence == vat
    assert quote.total_pence == net + vat
    assert all(line.amount_pence == line.quantity * line.unit_pence for line in quote.lines)
    assert quote.tariff_version == TARIFF.version_id


def test_commercial_involvement_pays_the_commercial_rule_and_no_organisation_the_default() -> None:
    assert build_quote(TARIFF, inputs("nhs", commercial=True)).org_type == "commercial"
    assert build_quote(TARIFF, inputs(None)).org_type == TARIFF.quote_rules.no_organisation_type


def test_vat_is_rounded_on_the_net_total_not_per_line() -> None:
    data = yaml.safe_load(DEFAULT_TARIFF.read_text())
    data["vat_basis_points"] = 1750  # 17.5%: lines of 1p each would round differently one by one
    data["prices"].update(new_application=3, project_setup=3, data_provision_per_dataset=0,
                          workspace_seat_per_user_month=0)
    tariff = parse_tariff(data)
    quote = build_quote(tariff, inputs("academic"))
    assert quote.net_pence == 6
    assert quote.vat_pence == 1  # 6 x 17.5% = 1.05p -> 1p (per line it would be 0.525 -> 1, twice: 2p)


def test_amendment_quotes_its_fee_new_datasets_and_extension_months() -> None:
    quote = build_quote(TARIFF, QuoteInputs("amendment", "academic", False, 3, ("hospital",), 4, "extension", 1))
    codes = {line.code: (line.quantity, line.unit_pence) for line in quote.lines}
    assert codes == {"amendment": (1, 113800), "data_provision": (1, 48800), "workspace_seats": (12, 47200),
                     "annual_review": (1, 69400)}


def test_months_and_anniversaries() -> None:
    assert calendar_months(dt.date(2026, 11, 21), dt.date(2027, 11, 20)) == 13  # part months count
    assert calendar_months(dt.date(2026, 11, 1), dt.date(2026, 11, 30)) == 1
    assert calendar_months(dt.date(2026, 11, 2), dt.date(2026, 11, 1)) == 0
    assert anniversaries_between(dt.date(2026, 1, 10), dt.date(2026, 1, 10), dt.date(2028, 6, 1)) == 2
    assert anniversaries_between(dt.date(2024, 2, 29), dt.date(2024, 2, 29), dt.date(2025, 3, 1)) == 1


def test_the_tariff_file_is_validated_with_a_clear_message() -> None:
    data = yaml.safe_load(DEFAULT_TARIFF.read_text())
    del data["organisation_rules"]["charity"]
    with pytest.raises(TariffError, match="missing charity"):
        parse_tariff(data)
    data = yaml.safe_load(DEFAULT_TARIFF.read_text())
    data["prices"]["output_check"] = 11.5
    with pytest.raises(TariffError, match=r"prices\.output_check"):
        parse_tariff(data)


def test_any_change_makes_a_new_version() -> None:
    data = yaml.safe_load(DEFAULT_TARIFF.read_text())
    data["prices"]["output_check"] = 1200
    changed = parse_tariff(data)
    assert changed.label == TARIFF.label and changed.version_id != TARIFF.version_id
    assert parse_tariff(yaml.safe_load(DEFAULT_TARIFF.read_text())).version_id == TARIFF.version_id
