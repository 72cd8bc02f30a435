"""NHS number check digits (modulus 11).

The synthetic generator needs NHS numbers that pass the same validation a real
system applies, so that downstream code is exercised on realistic identifiers.
"""

from __future__ import annotations

import numpy as np

_WEIGHTS = np.arange(10, 1, -1, dtype=np.int64)  # weights 10..2 for the nine body digits


def check_digit(body: str) -> int | None:
    """Return the modulus-11 check digit for a nine-digit body, or None when no valid one exists."""
    if len(body) != 9 or not body.isdigit():
        raise ValueError(f"an NHS number body has nine digits, got {body!r}")
    total = sum(int(d) * w for d, w in zip(body, range(10, 1, -1), strict=True))
    check = 11 - total % 11
    if check == 11:
        return 0
    if check == 10:
        return None
    return check


def is_valid_nhs_number(value: str) -> bool:
    """True when ``value`` is ten digits whose last digit is the modulus-11 check of the first nine."""
    if len(value) != 10 or not value.isdigit():
        return False
    expected = check_digit(value[:9])
    return expected is not None and expected == int(value[9])


def check_digits(bodies: np.ndarray) -> np.ndarray:
    """Vectorised check digits for an (n, 9) array of digits; -1 marks bodies with no valid number."""
    total = bodies.astype(np.int64) @ _WEIGHTS
    check = 11 - total % 11
    check = np.where(check == 11, 0, check)
    return np.where(check == 10, -1, check)
