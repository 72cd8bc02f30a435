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
_SHIFT_CONTEXT = b"londonsde/date-shift/v1"
_FINGERPRINT_CONTEXT = b"londonsde/key-fingerprint/v1"


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


def pseudonym(key: bytes, nhs_number: str) -> str:
    return hmac.digest(check_key(key), nhs_number.encode("utf-8"), "sha256").hex()[:PSEUDONYM_HEX_CHARS]


def pseudonymise(key: bytes, nhs_numbers: Iterable[str]) -> list[str]:
    check_key(key)
    return [hmac.digest(key, n.encode("utf-8"), "sha256").hex()[:PSEUDONYM_HEX_CHARS] for n in nhs_numbers]


def _shift_key(key: bytes) -> bytes:
    # A sub-key, so the shift reveals nothing about the pseudonym and vice versa.
    return hmac.digest(check_key(key), _SHIFT_CONTEXT, "sha256")


def date_shifts(key: bytes, nhs_numbers: Iterable[str]) -> np.ndarray:
    """Per-patient day offsets in [-MAX_SHIFT_DAYS, -1] or [1, MAX_SHIFT_DAYS], never zero."""
    sub = _shift_key(key)
    span = 2 * MAX_SHIFT_DAYS
    raw = np.fromiter(
        (
            int.from_bytes(hmac.digest(sub, n.encode("utf-8"), "sha256")[:8], "big") % span
            for n in nhs_numbers
        ),
        dtype=np.int32,
    )
    return np.where(raw < MAX_SHIFT_DAYS, raw - MAX_SHIFT_DAYS, raw - MAX_SHIFT_DAYS + 1).astype(np.int32)


def date_shift(key: bytes, nhs_number: str) -> int:
    return int(date_shifts(key, [nhs_number])[0])


def _fixed_width(values: pa.Array) -> np.ndarray:
    """UTF-8 bytes of a string array as a NumPy fixed-width array, without Python objects when possible."""
    values = values.cast(pa.string())
    n = len(values)
    if n == 0:
        return np.empty(0, dtype="S1")
    if values.null_count:
        values = pc.fill_null(values, "")
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)[values.offset : values.offset + n + 1]
    lengths = np.diff(offsets)
    width = int(lengths.max()) or 1
    if int(lengths.min()) == width:
        data = values.buffers()[2]
        return np.frombuffer(data, dtype=f"S{width}", count=n, offset=int(offsets[0]))
    return np.array([s.encode("utf-8") for s in values.to_pylist()], dtype=f"S{width}")


class PatientLookup:
    """Maps a cohort's NHS numbers to their row in a small table of pseudonyms and shifts.

    Memory grows with the number of patients in the cohort, never with the number of events.
    """

    def __init__(self, key: bytes, nhs_numbers: Iterable[str]) -> None:
        keys = sorted(set(nhs_numbers), key=lambda k: k.encode("utf-8"))
        self.size = len(keys)
        encoded = [k.encode("utf-8") for k in keys]
        self._sorted = np.array(encoded, dtype=f"S{max((len(k) for k in encoded), default=1)}")
        self.pseudonyms = pa.array(pseudonymise(key, keys), type=pa.string())
        self.shifts = date_shifts(key, keys)
        if len(set(self.pseudonyms.to_pylist())) != self.size:
            raise RuntimeError("pseudonym collision; refusing to build an extract with merged patients")

    def find(self, values: pa.Array) -> np.ndarray:
        """Row in the lookup for each value, -1 where the patient is not in the cohort."""
        if len(values) == 0 or self.size == 0:
            return np.full(len(values), -1, dtype=np.int64)
        encoded = pc.dictionary_encode(values)
        unique = _fixed_width(encoded.dictionary)
        pos = np.searchsorted(self._sorted, unique)
        pos = np.minimum(pos, self.size - 1)
        hit = self._sorted[pos] == unique
        unique_rows = np.where(hit, pos, -1)
        indices = pc.fill_null(encoded.indices, 0).to_numpy(zero_copy_only=False)
        rows = unique_rows[indices.astype(np.int64, copy=False)]
        if values.null_count:
            rows = np.where(values.is_null().to_numpy(zero_copy_only=False), -1, rows)
        return rows
