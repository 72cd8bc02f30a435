from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from gateway.extracts.nhs import check_digit, check_digits, is_valid_nhs_number

bodies = st.text(alphabet="0123456789", min_size=9, max_size=9)


def test_check_digit_worked_examples() -> None:
    # 9*10 + 9*9 + 9*8 + 1*2 = 245; 245 mod 11 = 3; 11 - 3 = 8
    assert check_digit("999000001") == 8
    assert is_valid_nhs_number("9990000018")
    # 9*10 + 9*9 + 9*8 = 243; 243 mod 11 = 1; 11 - 1 = 10, which no NHS number may have
    assert check_digit("999000000") is None


@given(bodies)
def test_a_number_with_its_check_digit_is_valid(body: str) -> None:
    check = check_digit(body)
    if check is None:
        assert not any(is_valid_nhs_number(body + str(d)) for d in range(10))
    else:
        assert is_valid_nhs_number(body + str(check))
        assert sum(is_valid_nhs_number(body + str(d)) for d in range(10)) == 1


@given(bodies, st.integers(0, 9), st.integers(1, 9))
def test_any_single_digit_error_is_detected(body: str, position: int, delta: int) -> None:
    check = check_digit(body)
    if check is None:
        return
    number = body + str(check)
    wrong = number[:position] + str((int(number[position]) + delta) % 10) + number[position + 1 :]
    assert not is_valid_nhs_number(wrong)


@given(st.lists(bodies, min_size=1, max_size=30))
def test_vectorised_check_digits_agree(body_list: list[str]) -> None:
    digits = np.array([[int(c) for c in b] for b in body_list])
    expected = [-1 if check_digit(b) is None else check_digit(b) for b in body_list]
    assert check_digits(digits).tolist() == expected


def test_malformed_numbers_are_invalid() -> None:
    assert not is_valid_nhs_number("999000001")
    assert not is_valid_nhs_number("99900000188")
    assert not is_valid_nhs_number("999000001X")
