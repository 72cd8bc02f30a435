from __future__ import annotations

import hashlib
import hmac

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.extracts.pseudonym import (
    MAX_SHIFT_DAYS,
    PSEUDONYM_HEX_CHARS,
    PatientLookup,
    _digests,
    date_shift,
    date_shifts,
    key_fingerprint,
    pseudonym,
    pseudonymise,
)

keys = st.binary(min_size=32, max_size=64)
nhs_numbers = st.text(alphabet="0123456789", min_size=10, max_size=10)


@given(keys, keys, st.lists(nhs_numbers, min_size=1, max_size=20, unique=True))
def test_pseudonyms_agree_within_a_project_and_differ_across_projects(
    key_a: bytes, key_b: bytes, numbers: list[str]
) -> None:
    first = pseudonymise(key_a, numbers)
    assert first == pseudonymise(key_a, numbers)
    assert first == [pseudonym(key_a, n) for n in numbers]
    assert len(set(first)) == len(numbers)
    assert all(len(p) == PSEUDONYM_HEX_CHARS and p not in numbers for p in first)
    if key_a != key_b:
        assert set(first).isdisjoint(pseudonymise(key_b, numbers))
        assert key_fingerprint(key_a) != key_fingerprint(key_b)


@given(keys, st.lists(nhs_numbers, min_size=1, max_size=50))
def test_date_shifts_are_nonzero_bounded_and_stable(key: bytes, numbers: list[str]) -> None:
    shifts = date_shifts(key, numbers)
    assert all(s != 0 and -MAX_SHIFT_DAYS <= s <= MAX_SHIFT_DAYS for s in shifts.tolist())
    assert shifts.tolist() == [date_shift(key, n) for n in numbers]


def test_date_shifts_spread_over_the_whole_range() -> None:
    shifts = date_shifts(b"k" * 32, [f"{i:010d}" for i in range(4000)])
    assert shifts.min() < -MAX_SHIFT_DAYS + 10 and shifts.max() > MAX_SHIFT_DAYS - 10
    assert (shifts > 0).mean() == pytest.approx(0.5, abs=0.05)


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="32"):
        pseudonym(b"short", "9990000018")


@given(
    keys,
    st.lists(
        st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\0"), min_size=1, max_size=12),
        max_size=30,
        unique=True,
    ),
    st.lists(st.one_of(st.none(), st.text(min_size=0, max_size=12)), max_size=60),
)
def test_lookup_finds_exactly_the_cohort(key: bytes, cohort: list[str], probe: list[str | None]) -> None:
    lookup = PatientLookup(key, cohort)
    values = probe + cohort  # some hits guaranteed
    rows = lookup.find(pa.array(values, pa.string()))
    expected_pseudonyms = dict(zip(cohort, pseudonymise(key, cohort), strict=True))
    for value, row in zip(values, rows.tolist(), strict=True):
        if value in expected_pseudonyms:
            assert lookup.pseudonyms[row].as_py() == expected_pseudonyms[value]
        else:
            assert row == -1


@given(
    st.lists(st.text(alphabet="0123456789", min_size=10, max_size=10), min_size=1, max_size=30, unique=True),
    st.lists(st.one_of(st.none(), st.text(alphabet="0123456789a ", min_size=9, max_size=11)), max_size=60),
)
def test_lookup_of_digit_strings_is_exact(cohort: list[str], probe: list[str | None]) -> None:
    """The integer fast path must not confuse '0999...' with '999...' or accept non-digits."""
    lookup = PatientLookup(b"k" * 32, pa.array(cohort))
    values = probe + cohort + ["0" + c[1:] for c in cohort] + [c[:-1] + "a" for c in cohort]
    rows = lookup.find(pa.array(values, pa.string())).tolist()
    expected = dict(zip(cohort, pseudonymise(b"k" * 32, cohort), strict=True))
    for value, row in zip(values, rows, strict=True):
        if value in expected:
            assert lookup.pseudonyms[row].as_py() == expected[value]
        else:
            assert row == -1


@given(st.binary(min_size=32, max_size=100), st.lists(st.binary(max_size=40), max_size=10))
def test_the_fast_hmac_is_standard_hmac_sha256(key: bytes, messages: list[bytes]) -> None:
    fast = _digests(key, messages)
    assert [bytes(row) for row in fast] == [hmac.digest(key, m, "sha256") for m in messages]


def test_pseudonym_is_the_truncated_hmac_of_the_nhs_number() -> None:
    key = bytes(range(32))
    expected = hmac.new(key, b"9990000018", hashlib.sha256).hexdigest()[:PSEUDONYM_HEX_CHARS]
    assert pseudonym(key, "9990000018") == expected


def test_empty_or_nul_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="NUL"):
        PatientLookup(b"k" * 32, ["9990000018", ""])
    with pytest.raises(ValueError, match="NUL"):
        PatientLookup(b"k" * 32, ["abc\0"])


def test_a_pseudonym_collision_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Merging two patients silently would be worse than failing the build."""
    import gateway.extracts.pseudonym as module

    real = module._digests

    def colliding(key: bytes, values: list[bytes]) -> np.ndarray:
        raw = real(key, values).copy()
        raw[:] = raw[0]  # every patient gets the first patient's HMAC
        return raw

    monkeypatch.setattr(module, "_digests", colliding)
    with pytest.raises(RuntimeError, match="collision"):
        PatientLookup(b"k" * 32, ["9990000018", "9990000026"])
    monkeypatch.setattr(module, "_digests", real)
    assert PatientLookup(b"k" * 32, ["9990000018", "9990000026"]).size == 2
