"""Accreditation certificates: what an upload really is, and where it is kept.

The type is decided from the file's own bytes (its "magic number"), never from its name or the
content type the browser sent. A name or content type that claims something else is treated as a
sign of a mistake or a trick and refused. Files are stored outside the web root under a random
name chosen here, so nothing the uploader sends reaches the file system path.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

MAX_CERTIFICATE_BYTES = 5 * 1024 * 1024
PDF = "application/pdf"
PNG = "image/png"
EXTENSIONS = {PDF: ".pdf", PNG: ".png"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_STORED_NAME = re.compile(r"^[0-9a-f]{32}\.(pdf|png)$")


@dataclass(frozen=True)
class Upload:
    """A file as received: its bytes (at most the limit plus one, so oversize is detectable) and its claims."""

    filename: str
    data: bytes
    content_type: str | None = None


@dataclass(frozen=True)
class CheckedCertificate:
    content_type: str
    sha256: str
    display_name: str
    data: bytes


def sniff(data: bytes) -> str | None:
    """The type the bytes really are: PDF or PNG, or None for anything else."""
    if data.startswith(_PNG_SIGNATURE) and data[12:16] == b"IHDR":
        return PNG
    if re.match(rb"%PDF-[12]\.\d", data[:8]) and b"%%EOF" in data[-1024:]:
        return PDF
    return None


def display_name(filename: str) -> str:
    """The uploader's file name without any folders, for showing on pages (never used as a path)."""
    base = PureWindowsPath(PurePosixPath(filename.replace("\x00", "")).name).name
    cleaned = "".join(ch for ch in base if ch.isprintable()).strip()
    return cleaned[:200] if cleaned.strip(".") else "certificate"


def _claimed_types(upload: Upload) -> set[str]:
    claims: set[str] = set()
    suffix = PurePosixPath(display_name(upload.filename)).suffix.lower()
    for kind, extension in EXTENSIONS.items():
        if suffix == extension:
            claims.add(kind)
    declared = (upload.content_type or "").split(";")[0].strip().lower()
    if declared in EXTENSIONS:
        claims.add(declared)
    return claims


def certificate_problem(upload: Upload) -> str | None:
    """Why this upload cannot be accepted as a certificate, or None if it can."""
    if not upload.data:
        return "The selected file is empty."
    if len(upload.data) > MAX_CERTIFICATE_BYTES:
        return "The certificate must be smaller than 5 MB."
    actual = sniff(upload.data)
    if actual is None:
        return "The certificate must be a PDF or PNG file."
    name = display_name(upload.filename)
    wrong = _claimed_types(upload) - {actual}
    if wrong:
        return (f"The file '{name}' is named or labelled as {_label(wrong.pop())} but its contents are "
                f"{_label(actual)}. Upload the original certificate file.")
    suffix = PurePosixPath(name).suffix.lower()
    if suffix and suffix != EXTENSIONS[actual]:
        return f"The file '{name}' is {_label(actual)}; its name must end in {EXTENSIONS[actual]}."
    return None


def _label(kind: str) -> str:
    return "a PDF" if kind == PDF else "a PNG image"


def check_certificate(upload: Upload) -> CheckedCertificate | str:
    """The accepted certificate, or the message explaining why it is refused."""
    problem = certificate_problem(upload)
    if problem is not None:
        return problem
    kind = sniff(upload.data)
    assert kind is not None
    return CheckedCertificate(content_type=kind, sha256=hashlib.sha256(upload.data).hexdigest(),
                              display_name=display_name(upload.filename), data=upload.data)


class CertificateStore:
    """A folder outside the web root holding certificates under random server-chosen names."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def save(self, certificate: CheckedCertificate) -> str:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        name = secrets.token_hex(16) + EXTENSIONS[certificate.content_type]
        path = self.directory / name
        with path.open("xb") as handle:  # never overwrite
            handle.write(certificate.data)
        path.chmod(0o600)
        return name

    def path_of(self, stored_name: str) -> Path | None:
        if not _STORED_NAME.match(stored_name):
            return None
        path = self.directory / stored_name
        return path if path.is_file() else None

    def read(self, stored_name: str) -> bytes | None:
        path = self.path_of(stored_name)
        return path.read_bytes() if path is not None else None

    def discard(self, stored_name: str) -> None:
        """Remove a file whose record was never saved (its transaction rolled back)."""
        path = self.path_of(stored_name)
        if path is not None:
            path.unlink(missing_ok=True)

    def sweep_orphans(self, referenced: set[str], older_than: dt.timedelta) -> list[str]:
        """Delete stored files no record refers to, left by a crash between saving a file and committing its
        record. Only files older than ``older_than`` go, so an upload still in its transaction is safe."""
        if not self.directory.is_dir():
            return []
        cutoff = time.time() - older_than.total_seconds()
        removed = []
        for path in sorted(self.directory.iterdir()):
            if (_STORED_NAME.match(path.name) and path.name not in referenced and path.is_file()
                    and path.stat().st_mtime < cutoff):
                path.unlink(missing_ok=True)
                removed.append(path.name)
        return removed
