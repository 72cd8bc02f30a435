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
_LOOKUP_CHUNK = 32_768


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


def _hex_chars(raw: np.ndarray) -> np.ndarray:
    """Lower-case hex digits of each row of a byte matrix, as an (n, 2 * width) byte matrix."""
    n, width = raw.shape
    chars = np.empty((n, 2 * width), dtype=np.uint8)
    chars[:, 0::2] = _HEX[raw >> 4]
    chars[:, 1::2] = _HEX[raw & 0x0F]
    return chars


def _string_array(chars: np.ndarray) -> pa.Array:
    """An Arrow string array over the rows of a byte matrix, without Python objects."""
    n, width = chars.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int64)
    if offsets[-1] < 2**31:
        return pa.Array.from_buffers(
            pa.string(), n, [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(chars)]
        )
    large = pa.Array.from_buffers(pa.large_string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(chars)])
    return large.cast(pa.string())


def _pseudonyms(raw: np.ndarray) -> pa.Array:
    # The pseudonym is the first 128 bits of the HMAC.
    return _string_array(_hex_chars(raw[:, :_PSEUDONYM_BYTES]))


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
    chars = fixed.view(np.uint8).reshape(len(fixed), width)
    value = np.zeros(len(fixed), dtype=np.int64)
    valid = np.ones(len(fixed), dtype=bool)
    for j in range(width):  # column by column: no (n, width) int64 temporary
        digit = chars[:, j] - np.uint8(48)
        valid &= digit <= 9
        value = value * 10 + digit
    return value, valid


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
        # In chunks, so the transient Python objects stay few whatever the cohort size.
        chars = np.empty((self.size, PSEUDONYM_HEX_CHARS), dtype=np.uint8)
        self.shifts = np.empty(self.size, dtype=np.int32)
        heads = np.empty(self.size, dtype=np.uint64)  # first 64 bits of each pseudonym
        for start in range(0, self.size, _LOOKUP_CHUNK):
            raw = _digests(key, self._sorted[start : start + _LOOKUP_CHUNK].tolist())
            chars[start : start + len(raw)] = _hex_chars(raw[:, :_PSEUDONYM_BYTES])
            self.shifts[start : start + len(raw)] = _shifts(raw)
            heads[start : start + len(raw)] = np.ascontiguousarray(raw[:, :8]).view(np.uint64).ravel()
        if self._collides(heads, chars):
            raise RuntimeError("pseudonym collision; refusing to build an extract with merged patients")
        self.pseudonyms = _string_array(chars)
        self._cache: tuple[pa.Array, np.ndarray] | None = None

    def _collides(self, heads: np.ndarray, chars: np.ndarray) -> bool:
        """Whether two patients share a pseudonym (checked on 64 bits first, which is fast)."""
        head = np.sort(heads)
        if not (head[1:] == head[:-1]).any():
            return False
        full = np.ascontiguousarray(chars).view(f"S{PSEUDONYM_HEX_CHARS}").ravel()
        return len(np.unique(full)) != self.size

    def find(self, values: pa.Array) -> np.ndarray:
        """Row in the lookup for each value, -1 where the patient is not in the cohort.

        Dictionary-encoded input (as Parquet gives when asked) is looked up once per dictionary
        entry; otherwise the values are dictionary-encoded first.
        """
        if len(values) == 0 or self.size == 0:
            return np.full(len(values), -1, dtype=np.int64)
        encoded = values if isinstance(values, pa.DictionaryArray) else pc.dictionary_encode(values)
        unique_rows = self._rows_of_dictionary(encoded.dictionary)
        indices = pc.fill_null(encoded.indices, 0).to_numpy(zero_copy_only=False)
        rows = unique_rows[indices.astype(np.int64, copy=False)]
        if values.null_count:
            rows = np.where(values.is_null().to_numpy(zero_copy_only=False), -1, rows)
        return rows

    def _rows_of_dictionary(self, dictionary: pa.Array) -> np.ndarray:
        # Parquet hands every batch of a row group its own copy of the row group's dictionary:
        # compare contents (a memcmp) and look each dictionary up only once.
        if self._cache is not None and self._cache[0].equals(dictionary):
            return self._cache[1]
        rows = self._lookup_unique(dictionary)
        self._cache = (dictionary, rows)
        return rows

    def _lookup_unique(self, unique_values: pa.Array) -> np.ndarray:
        unique, uniform = _fixed_width(unique_values)
        if len(unique) == 0:
            return np.empty(0, dtype=np.int64)
        if self._ints is not None and uniform and unique.dtype.itemsize == self._width:
            probe, digits = _as_digits(unique)
            order = np.argsort(probe)  # sorted needles walk the table in order: far fewer cache misses
            pos = np.empty(len(probe), dtype=np.int64)
            pos[order] = np.searchsorted(self._ints, probe[order])
            pos = np.minimum(pos, self.size - 1)
            hit = digits & (self._ints[pos] == probe)
        else:
            pos = np.minimum(np.searchsorted(self._sorted, unique), self.size - 1)
            hit = self._sorted[pos] == unique
        nul = pc.match_substring(unique_values.cast(pa.string()), "\0")
        if pc.any(nul).as_py():  # NumPy bytes drop trailing NULs, so such values never match
            hit &= ~pc.fill_null(nul, False).to_numpy(zero_copy_only=False)
        return np.where(hit, pos, -1).astype(np.int64)
