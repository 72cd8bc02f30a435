"""Certificate uploads: the type comes from the bytes, never from the name or the browser's label."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from projects.certificates import (
    MAX_CERTIFICATE_BYTES,
    PDF,
    PNG,
    CertificateStore,
    CheckedCertificate,
    Upload,
    certificate_problem,
    check_certificate,
    display_name,
    sniff,
)
from projects.demo_people import minimal_pdf, minimal_png

A_PDF = minimal_pdf(["hello"])
A_PNG = minimal_png()


def test_sniff_recognises_real_pdf_and_png_only() -> None:
    assert sniff(A_PDF) == PDF
    assert sniff(A_PNG) == PNG
    assert sniff(b"MZ\x90\x00" + b"\x00" * 100) is None  # a Windows executable
    assert sniff(b"GIF89a" + b"\x00" * 100) is None
    assert sniff(b"\xff\xd8\xff\xe0" + b"\x00" * 100) is None  # JPEG
    assert sniff(b"%PDF-1.7\n no end marker") is None  # truncated PDF
    assert sniff(A_PNG[:8] + b"\x00" * 20) is None  # PNG signature without its header chunk
    assert sniff(b"") is None
    assert sniff(b"<html>%PDF-1.4 %%EOF") is None  # the marker must come first


@pytest.mark.parametrize(("name", "data", "declared", "problem"), [
    ("cert.pdf", A_PDF, "application/pdf", None),
    ("cert.PNG", A_PNG, "image/png", None),
    ("cert.pdf", A_PDF, "application/octet-stream", None),  # an unhelpful label is not a lie
    ("certificate", A_PDF, None, None),  # no extension: the bytes decide
    ("cert.png", A_PDF, "image/png", "named or labelled as a PNG image but its contents are a PDF"),
    ("cert.pdf", A_PDF, "image/png", "named or labelled as a PNG image"),  # the label lies
    ("cert.png", A_PNG, "application/pdf", "named or labelled as a PDF"),
    ("cert.exe", A_PDF, "application/pdf", "its name must end in .pdf"),
    ("setup.pdf", b"MZ\x90\x00" + b"\x00" * 100, "application/pdf", "must be a PDF or PNG file"),
    ("empty.pdf", b"", "application/pdf", "empty"),
    ("big.pdf", A_PDF[:-6] + b" " * MAX_CERTIFICATE_BYTES + b"%%EOF\n", "application/pdf", "smaller than 5 MB"),
])
def test_certificate_problems(name: str, data: bytes, declared: str | None, problem: str | None) -> None:
    found = certificate_problem(Upload(name, data, declared))
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_exactly_the_limit_is_accepted() -> None:
    padded = A_PDF[:-6] + b" " * (MAX_CERTIFICATE_BYTES - len(A_PDF)) + b"%%EOF\n"
    assert len(padded) == MAX_CERTIFICATE_BYTES
    assert certificate_problem(Upload("x.pdf", padded)) is None
    assert certificate_problem(Upload("x.pdf", padded + b"\n")) is not None


@pytest.mark.parametrize(("given", "shown"), [
    ("../../etc/passwd.png", "passwd.png"),
    ("..\\..\\windows\\system32\\evil.pdf", "evil.pdf"),
    ("/absolute/path/cert.pdf", "cert.pdf"),
    ("nul\x00byte.pdf", "nulbyte.pdf"),
    ("line\nbreak.pdf", "linebreak.pdf"),
    ("..", "certificate"),
    ("", "certificate"),
])
def test_display_names_carry_no_path(given: str, shown: str) -> None:
    assert display_name(given) == shown


def test_store_chooses_random_names_and_refuses_foreign_ones(tmp_path: Path) -> None:
    store = CertificateStore(tmp_path / "certificates")
    checked = check_certificate(Upload("../../x.png", A_PNG, "image/png"))
    assert isinstance(checked, CheckedCertificate)
    assert checked.sha256 == hashlib.sha256(A_PNG).hexdigest() and checked.display_name == "x.png"
    first, second = store.save(checked), store.save(checked)
    assert first != second
    assert all(re.fullmatch(r"[0-9a-f]{32}\.png", n) for n in (first, second))
    assert store.read(first) == A_PNG
    assert sorted(p.name for p in (tmp_path / "certificates").iterdir()) == sorted([first, second])
    (tmp_path / "secret.txt").write_text("not a certificate")
    for foreign in ("../secret.txt", "secret.txt", "/etc/passwd", "0" * 32 + ".exe", ""):
        assert store.read(foreign) is None
    assert store.read("0" * 32 + ".png") is None  # well-formed but absent
