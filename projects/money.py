"""Money is integer pence everywhere; these are the only rounding and formatting rules.

Rounding rule: half away from zero, to the whole penny (so 0.5p -> 1p and -0.5p -> -1p), applied to
each unit price after an organisation multiplier, and to VAT once on an invoice's or quote's net total.
"""

from __future__ import annotations

BASIS_POINTS = 10_000  # 100% = 10,000 basis points
# Amounts live in INTEGER columns (at most 2,147,483,647 pence). A budget cap, a manual line and a draft's net total
# are kept to £10m, so that a total with VAT still fits; larger input is refused as invalid, never a database error.
MAX_PENCE = 1_000_000_000

SYMBOLS = {"GBP": "£", "EUR": "€", "USD": "$"}


def divide_round(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded half away from zero, in integers only (no floats)."""
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    sign = -1 if numerator < 0 else 1
    return sign * ((2 * abs(numerator) + denominator) // (2 * denominator))


def apply_basis_points(pence: int, basis_points: int) -> int:
    """``pence`` scaled by ``basis_points`` / 10,000, rounded to the penny."""
    return divide_round(pence * basis_points, BASIS_POINTS)


def vat_on(net_pence: int, vat_basis_points: int) -> int:
    return apply_basis_points(net_pence, vat_basis_points)


def format_money(pence: int, currency: str = "GBP") -> str:
    """1234567 -> '£12,345.67'; negative amounts get a leading minus sign."""
    symbol = SYMBOLS.get(currency, currency + " ")
    sign = "-" if pence < 0 else ""
    pounds, pennies = divmod(abs(pence), 100)
    return f"{sign}{symbol}{pounds:,}.{pennies:02d}"


def format_plain(pence: int) -> str:
    """For CSV: 1234567 -> '12345.67' (no symbol, no separators)."""
    sign = "-" if pence < 0 else ""
    pounds, pennies = divmod(abs(pence), 100)
    return f"{sign}{pounds}.{pennies:02d}"


def format_percent(basis_points: int) -> str:
    whole, part = divmod(basis_points, 100)
    return f"{whole}%" if part == 0 else f"{whole}.{part:02d}".rstrip("0") + "%"


def parse_pounds(text: str) -> int:
    """'£1,234.56', '1234.5' or '12' -> pence; ValueError with a plain message otherwise (no floats involved)."""
    cleaned = text.strip().replace(",", "").removeprefix("£").strip()
    whole, _, part = cleaned.partition(".")
    if not whole.isdigit() or (part and (not part.isdigit() or len(part) > 2)):
        raise ValueError("Enter an amount in pounds, like 1250.00")
    return int(whole) * 100 + int(part.ljust(2, "0") or "0")
