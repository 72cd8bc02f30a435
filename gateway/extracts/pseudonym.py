"""Project-specific pseudonyms and per-patient date shifts, both keyed by the project secret.

A pseudonym is HMAC-SHA-256(project key, NHS number): the same patient gets the same
pseudonym in every version of one project's extract, but a different, unlinkable one in
every other project. Without the key nobody can recompute it, so destroying the key when a
project closes makes re-linking to NHS numbers impossible.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MIN_KEY_BYTES = 32
PSEUDONYM_HEX_CHARS = 32  # 128 bits: collisions are negligible at any population size
MAX_SHIFT_DAYS = 182
_FINGERPRINT_CONTEXT = b"londonsde/key-fingerprint/v1"
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_PSEUDONYM_BYTES = PSEUDONYM_HEX_CHARS // 2


def new_project_key() -> bytes:
    """A fresh random project key (kept by the gateway, destroyed at project close)."""
    return secrets.token_bytes(MIN_KEY_BYTES)


def check_key(key: bytes) -> bytes:
    if not isinstance(key, bytes) or len(key) < MIN_KEY_BYTES:
        raise ValueError(f"a project key is at least {MIN_KEY_BYTES} random bytes")
    return key


def key_fingerprint(key: bytes) -> str:
    """A short value that shows two extracts used the same key without revealing it."""
    return hmac.new(check_key(key), _FINGERPRINT_CONTEXT, hashlib.sha256).hexdigest()[:16]


def _digests(key: bytes, values: Iterable[bytes]) -> np.ndarray:
    """HMAC-SHA-256 (RFC 2104) of each value as an (n, 32) byte matrix.

    The keyed inner and outer SHA-256 states are computed once and copied per value, which is
    about three times faster than hmac.digest for short messages such as NHS numbers.
    """
    check_key(key)
    block = 64
    if len(key) > block:
        key = hashlib.sha256(key).digest()
    padded = key.ljust(block, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in padded))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in padded))

    def one(value: bytes, inner_copy=inner.copy, outer_copy=outer.copy) -> bytes:
        h = inner_copy()
        h.update(value)
        o = outer_copy()
        o.update(h.digest())
        return o.digest()

    joined = b"".join([one(v) for v in values])
    return np.frombuffer(joined, dtype=np.uint8).reshape(-1, 32)


def _hex_array(raw: np.ndarray) -> pa.Array:
    """Lower-case hex of each row of a byte matrix, built directly as an Arrow string array."""
    n, width = raw.shape
    chars = np.empty((n, 2 * width), dtype=np.uint8)
    chars[:, 0::2] = _HEX[raw >> 4]
    chars[:, 1::2] = _HEX[raw & 0x0F]
    offsets = np.arange(0, (n + 1) * 2 * width, 2 * width, dtype=np.int64)
    return pa.Array.from_buffers(pa.large_string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(chars)]).cast(
        pa.string()
    )


def _pseudonyms(raw: np.ndarray) -> pa.Array:
    # The pseudonym is the first 128 bits of the HMAC.
    return _hex_array(np.ascontiguousarray(raw[:, :_PSEUDONYM_BYTES]))


def _shifts(raw: np.ndarray) -> np.ndarray:
    # The shift comes from the next 64 bits, which are never released, so knowing a
    # pseudonym tells nothing about its patient's shift.
    span = 2 * MAX_SHIFT_DAYS
    value = np.ascontiguousarray(raw[:, _PSEUDONYM_BYTES : _PSEUDONYM_BYTES + 8]).view(">u8").ravel() % span
    value = value.astype(np.int32)
    return np.where(value < MAX_SHIFT_DAYS, value - MAX_SHIFT_DAYS, value - MAX_SHIFT_DAYS + 1).astype(np.int32)


def pseudonymise(key: bytes, nhs_numbers: Iterable[str]) -> list[str]:
    """The project pseudonym of each NHS number: HMAC-SHA-256(key, number), first 128 bits in hex."""
    raw = _digests(key, [n.encode("utf-8") for n in nhs_numbers])
    return _pseudonyms(raw).to_pylist()


def pseudonym(key: bytes, nhs_number: str) -> str:
    return pseudonymise(key, [nhs_number])[0]


def date_shifts(key: bytes, nhs_numbers: Iterable[str]) -> np.ndarray:
    """Per-patient day offsets in [-MAX_SHIFT_DAYS, -1] or [1, MAX_SHIFT_DAYS], never zero."""
    return _shifts(_digests(key, [n.encode("utf-8") for n in nhs_numbers]))


def date_shift(key: bytes, nhs_number: str) -> int:
    return int(date_shifts(key, [nhs_number])[0])


def _fixed_width(values: pa.Array) -> tuple[np.ndarray, bool]:
    """UTF-8 bytes of a string array as a NumPy fixed-width array, and whether all had one length.

    When every value has the same length the Arrow buffer is viewed in place, with no Python
    objects; that is the common case for identifiers such as NHS numbers.
    """
    values = values.cast(pa.string())
    n = len(values)
    if n == 0:
        return np.empty(0, dtype="S1"), True
    if values.null_count:
        values = pc.fill_null(values, "")
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)[values.offset : values.offset + n + 1]
    lengths = np.diff(offsets)
    width = int(lengths.max())
    if width > 0 and int(lengths.min()) == width:
        data = values.buffers()[2]
        return np.frombuffer(data, dtype=f"S{width}", count=n, offset=int(offsets[0])), True
    return np.array([s.encode("utf-8") for s in values.to_pylist()], dtype=f"S{max(width, 1)}"), False


def _as_digits(fixed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer value of fixed-width ASCII digit strings, and which rows were all digits."""
    width = fixed.dtype.itemsize
    digits = fixed.view(np.uint8).reshape(len(fixed), width) - np.uint8(48)
    valid = (digits <= 9).all(axis=1)
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return digits.astype(np.int64) @ powers, valid


class PatientLookup:
    """Maps a cohort's NHS numbers to their row in a small table of pseudonyms and shifts.

    Memory grows with the number of patients in the cohort, never with the number of events.
    When every key is a digit string of one length (NHS numbers), lookups compare integers.
    """

    def __init__(self, key: bytes, nhs_numbers: pa.Array | Iterable[str]) -> None:
        values = nhs_numbers if isinstance(nhs_numbers, pa.Array) else pa.array(list(nhs_numbers), pa.string())
        values = values.drop_null()
        fixed, uniform = _fixed_width(values)
        if len(fixed) and (
            pc.any(pc.equal(pc.binary_length(values), 0)).as_py() or pc.any(pc.match_substring(values, "\0")).as_py()
        ):
            raise ValueError("patient keys must be non-empty and free of NUL characters")
        self._width = fixed.dtype.itemsize
        self._ints: np.ndarray | None = None
        ints, digits = _as_digits(fixed) if uniform and len(fixed) and self._width <= 18 else (None, None)
        if ints is not None and digits is not None and digits.all():
            # Equal-length digit strings sort like their numbers: sort integers, not bytes.
            order = np.argsort(ints, kind="stable")
            ints = ints[order]
            first = np.ones(len(ints), dtype=bool)
            first[1:] = ints[1:] != ints[:-1]
            self._ints = ints[first]
            self._sorted = fixed[order][first]
        else:
            self._sorted = np.unique(fixed)  # sorted bytes; for UTF-8 the same order as code points
        self.size = len(self._sorted)
        raw = _digests(key, self._sorted.tolist())
        self.pseudonyms = _pseudonyms(raw)
        self.shifts = _shifts(raw)
        if len(np.unique(raw[:, :_PSEUDONYM_BYTES].copy().view(f"S{_PSEUDONYM_BYTES}"))) != self.size:
            raise RuntimeError("pseudonym collision; refusing to build an extract with merged patients")

    def find(self, values: pa.Array) -> np.ndarray:
        """Row in the lookup for each value, -1 where the patient is not in the cohort."""
        if len(values) == 0 or self.size == 0:
            return np.full(len(values), -1, dtype=np.int64)
        encoded = pc.dictionary_encode(values)
        unique, uniform = _fixed_width(encoded.dictionary)
        if self._ints is not None and uniform and unique.dtype.itemsize == self._width:
            probe, digits = _as_digits(unique)
            pos = np.minimum(np.searchsorted(self._ints, probe), self.size - 1)
            hit = digits & (self._ints[pos] == probe)
        else:
            pos = np.minimum(np.searchsorted(self._sorted, unique), self.size - 1)
            hit = self._sorted[pos] == unique
        if pc.any(pc.match_substring(encoded.dictionary, "\0")).as_py():  # NumPy bytes drop trailing NULs
            hit &= ~pc.match_substring(encoded.dictionary, "\0").to_numpy(zero_copy_only=False)
        unique_rows = np.where(hit, pos, -1)
        indices = pc.fill_null(encoded.indices, 0).to_numpy(zero_copy_only=False)
        rows = unique_rows[indices.astype(np.int64, copy=False)]
        if values.null_count:
            rows = np.where(values.is_null().to_numpy(zero_copy_only=False), -1, rows)
        return rows
