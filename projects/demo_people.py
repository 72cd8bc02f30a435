"""Demo data for safe people: organisations, who belongs where, and accreditations in every state.

Everything goes through the real services (researchers record, the accreditation officer decides),
so the demo shows exactly what the rules allow. Running it again creates nothing new.
"""

from __future__ import annotations

import datetime as dt
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.identity.accounts import find_user
from gateway.models import User
from projects import accreditation as accreditation_service
from projects import organisations
from projects.accreditation import AccreditationInput
from projects.accreditation_rules import today
from projects.certificates import EXTENSIONS, CertificateStore, CheckedCertificate, Upload
from projects.models import Accreditation

SEEDER = "demo-seed"
ONS = "ONS Accredited Researcher (Digital Economy Act)"
UKDS = "UK Data Service Safe Researcher Training"

DEMO_ORGANISATIONS: tuple[tuple[str, str], ...] = (
    ("Imperial College London", "academic"),
    ("Guy's and St Thomas' NHS Foundation Trust", "nhs"),
    ("Asthma + Lung UK", "charity"),
    ("Greater London Authority", "public_sector"),
    ("Thames Analytics Ltd", "commercial"),
)

DEMO_MEMBERSHIP: dict[str, str] = {
    "researcher": "Imperial College London",
    "researcher2": "Imperial College London",
    "dacchair": "Guy's and St Thomas' NHS Foundation Trust",
    "dac1": "Asthma + Lung UK",
    "dac2": "Greater London Authority",
    # laymember: a member of the public, at no organisation
}


@dataclass(frozen=True)
class DemoAccreditation:
    username: str
    scheme: str
    number: str
    trained_days_ago: int
    valid_days: int
    verify: bool

    def dates(self, on: dt.date) -> tuple[dt.date, dt.date]:
        training = on - dt.timedelta(days=self.trained_days_ago)
        return training, training + dt.timedelta(days=self.valid_days)


FIVE_YEARS = 5 * 365
DEMO_ACCREDITATIONS: tuple[DemoAccreditation, ...] = (
    DemoAccreditation("researcher", ONS, "DEMO-ONS-1001", 120, FIVE_YEARS, verify=True),
    # researcher2's first accreditation lapsed 40 days ago; the renewal after it is current
    DemoAccreditation("researcher2", UKDS, "DEMO-UKDS-2001", 3 * 365 + 40, 3 * 365, verify=True),
    DemoAccreditation("researcher2", ONS, "DEMO-ONS-2002", 30, FIVE_YEARS, verify=True),
    # a second scheme for researcher, waiting in the accreditation officer's queue
    DemoAccreditation("researcher", UKDS, "DEMO-UKDS-1002", 10, 3 * 365, verify=False),
)


class DemoCertificateStore(CertificateStore):
    """Demo certificates are generated here, not uploaded: name them by content so re-seeding (and every
    test that seeds) reuses the same few files instead of piling up copies."""

    def save(self, certificate: CheckedCertificate) -> str:
        name = certificate.sha256[:32] + EXTENSIONS[certificate.content_type]
        if self.path_of(name) is None:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            path = self.directory / name
            path.write_bytes(certificate.data)
            path.chmod(0o600)
        return name


def seed_people(session: Session, store: CertificateStore | None = None, on: dt.date | None = None,
                pending: bool = True) -> list[str]:
    """Create the missing demo organisations, memberships and accreditations; returns what was created.

    Certificates go to ``<instance_dir>/certificates`` of the loaded settings unless a store is given
    (pass ``DemoCertificateStore(settings.instance_dir / "certificates")`` where the settings are at hand).
    ``pending=False`` leaves out the accreditation still waiting for an officer: the demo with history records
    it days before today, as a queue holds it, not on the history's first day.
    """
    if store is None:
        from gateway.config import load_settings

        store = DemoCertificateStore(load_settings().instance_dir / "certificates")
    day = on or today()
    created: list[str] = []
    for name, org_type in DEMO_ORGANISATIONS:
        if organisations.find_organisation(session, name) is None:
            organisations.create_organisation(session, SEEDER, name, org_type)
            created.append(f"organisation {name}")
    for username, org_name in DEMO_MEMBERSHIP.items():
        user = find_user(session, username)
        organisation = organisations.find_organisation(session, org_name)
        if user is not None and organisation is not None and user.organisation_id is None:
            organisations.assign_user(session, SEEDER, user, organisation)
            created.append(f"{username} at {org_name}")
    officer = find_user(session, "accreditor")
    for demo in DEMO_ACCREDITATIONS:
        researcher = find_user(session, demo.username)
        if researcher is None or officer is None or _exists(session, researcher, demo.number) or \
                (not pending and not demo.verify):
            continue
        _seed_accreditation(session, store, researcher, officer, demo, day)
        created.append(f"accreditation {demo.number}")
    return created


def _exists(session: Session, user: User, number: str) -> bool:
    return session.scalar(select(Accreditation.id).where(Accreditation.user_id == user.id,
                                                         Accreditation.number == number)) is not None


def _seed_accreditation(session: Session, store: CertificateStore, researcher: User, officer: User,
                        demo: DemoAccreditation, on: dt.date) -> None:
    training, expiry = demo.dates(on)
    recorded_on = min(on, training + dt.timedelta(days=7))  # as it was then, for records now expired
    data = AccreditationInput(scheme=demo.scheme, level="full", number=demo.number, training_date=training,
                              expiry_date=expiry)
    certificate = Upload(f"{demo.number}.pdf", demo_certificate_pdf(researcher.display_name, demo.scheme,
                                                                    demo.number, expiry), "application/pdf")
    record = accreditation_service.record_accreditation(session, researcher, store, data, certificate,
                                                        on=recorded_on)
    if demo.verify:
        accreditation_service.verify_accreditation(session, officer, record, on=recorded_on)


# --- small, valid certificate files (no external tools) -----------------------------------------

def _pdf_text(value: str) -> str:
    ascii_only = value.encode("ascii", "replace").decode()
    return ascii_only.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def minimal_pdf(lines: list[str]) -> bytes:
    """A one-page PDF showing ``lines`` in Helvetica, with a correct cross-reference table."""
    text = " ".join(f"({_pdf_text(line)}) Tj 0 -24 Td" for line in lines)
    stream = f"BT /F1 16 Tf 72 760 Td {text} ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def demo_certificate_pdf(name: str, scheme: str, number: str, expiry: dt.date) -> bytes:
    return minimal_pdf(["DEMONSTRATION CERTIFICATE - NOT A REAL ACCREDITATION", scheme, name,
                        f"Number: {number}", f"Expires: {expiry.isoformat()}"])


def minimal_png(width: int = 8, height: int = 8, rgb: tuple[int, int, int] = (0, 94, 184)) -> bytes:
    """A small solid-colour PNG (NHS blue by default)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row * height))
            + chunk(b"IEND", b""))


def write_demo_files(directory: Path) -> tuple[Path, Path]:
    """A demo PDF and PNG certificate on disk, for trying the upload form by hand."""
    directory.mkdir(parents=True, exist_ok=True)
    pdf = directory / "demo-certificate.pdf"
    png = directory / "demo-certificate.png"
    pdf.write_bytes(demo_certificate_pdf("Demo Researcher", ONS, "DEMO-0000", today() + dt.timedelta(days=365)))
    png.write_bytes(minimal_png())
    return pdf, png
