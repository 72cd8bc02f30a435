"""Intake rules for the bytes a workspace hands over, and the gateway's copy of them.

The gateway never opens a path in a researcher's folder: the workspace's hand-over extension reads the
file (safely, as the workspace's own user) and sends its bytes with the file's name relative to
outputs/ and, for a table, its disclosure-control sidecar. Here the name is checked (plain relative
components, no dotfiles), then the type, the size and the content: a table with too many rows or an
identifier column, or any project pseudonym anywhere in the bytes, the sidecar or the name, is refused
and nothing is stored. Refusals name positions and counts, never content. Accepted files are written,
read-only, into gateway storage with their SHA-256, so a later edit in the workspace changes nothing that
was submitted.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.config import OutputSettings
from gateway.errors import ValidationError
from gateway.outputs import content
from gateway.outputs.content import PseudonymMatcher

CONTENT_TYPES = {
    "csv": "text/csv", "png": "image/png", "svg": "image/svg+xml", "txt": "text/plain",
    "json": "application/json", "md": "text/markdown", "html": "text/html",
}
SIDECAR_SUFFIX = ".sdc.json"  # written by notebooks_template/outputs_helper.py beside each table
MAX_SIDECAR_BYTES = 2 * 1024 * 1024
NAME_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,99}$")
MAX_NAME_PARTS = 4
IDENTIFIER_COLUMN = content.IDENTIFIER_COLUMN


@dataclass(frozen=True)
class Intake:
    """Bytes handed over by a workspace that passed every intake rule."""

    path: str
    data: bytes
    sha256: str
    content_type: str
    sdc_record: dict[str, Any] | None


def _refuse(message: str) -> ValidationError:
    return ValidationError(message, field_errors={"path": [message]})


def extension_of(name: str) -> str:
    last = name.rsplit("/", 1)[-1]
    return last.rsplit(".", 1)[-1].lower() if "." in last else ""


def check_name(name: str) -> str:
    """The file's name relative to outputs/, as plain components (letters, digits, '.', '_', '-', space)."""
    clean = name.strip().replace("\\", "/")
    parts = clean.split("/")
    if not clean or clean.startswith("/") or len(parts) > MAX_NAME_PARTS or len(clean) > 200:
        raise _refuse("Name the file by its path inside your outputs folder, like tables/admissions.csv "
                      f"(at most {MAX_NAME_PARTS} levels and 200 characters).")
    if any(part in {"", ".", ".."} for part in parts):
        raise _refuse("The file's name must be a plain path inside your outputs folder.")
    if any(part.startswith(".") for part in parts):
        raise _refuse("Hidden files and folders (whose name starts with a dot) cannot be requested.")
    if not all(NAME_PART.match(part) for part in parts):
        raise _refuse("File and folder names may hold only letters, digits, spaces, '.', '_' and '-', and must "
                      "start with a letter or digit.")
    return clean


def parse_sidecar(raw: bytes | None, data: bytes) -> dict[str, Any] | None:
    """The disclosure-control sidecar sent with a table, noting whether it was saved for exactly these bytes."""
    if not raw:
        return None
    if len(raw) > MAX_SIDECAR_BYTES:
        raise _refuse(f"The disclosure-control record is larger than {MAX_SIDECAR_BYTES:,} bytes.")
    try:
        sidecar = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _refuse("The disclosure-control record sent with the file is not valid JSON.") from None
    if not isinstance(sidecar, dict) or not isinstance(sidecar.get("record"), dict):
        raise _refuse("The disclosure-control record sent with the file is not one that save_output writes.")
    sidecar["sidecar_sha256_matches"] = sidecar.get("sha256") == hashlib.sha256(data).hexdigest()
    return sidecar


TEXT_EXTENSIONS = content.TEXT_TYPES | {"svg"}  # every type read as text (an SVG is XML)
# control characters a text may hold: tab, line feed, form feed, carriage return
_TEXT_CONTROLS = frozenset("\t\n\f\r")
_BOMS = ((b"\x00\x00\xfe\xff", "utf-32"), (b"\xff\xfe\x00\x00", "utf-32"), (b"\xfe\xff", "utf-16"),
         (b"\xff\xfe", "utf-16"))


def is_text(data: bytes) -> bool:
    """Whether the bytes are text: UTF-8 (a BOM allowed), or UTF-16 or UTF-32 with their BOM or UTF-16 without, with
    no control character but tab, line and page breaks (compressed or other binary data is none of these)."""
    if data.startswith(b"\xef\xbb\xbf") or not any(data.startswith(bom) for bom, _ in _BOMS):
        encodings = ["utf-8-sig", "utf-16-le", "utf-16-be"]
    else:
        encodings = [next(codec for bom, codec in _BOMS if data.startswith(bom))]
    for encoding in encodings:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if not any((ord(c) < 32 and c not in _TEXT_CONTROLS) or 127 <= ord(c) < 160 for c in text):
            return True
    return False


def check_form(name: str, data: bytes, extension: str) -> None:
    """Refuse a file of a text type that is not text, so no compressed or other binary data rides in under a name the
    checks read as text (images have their own rule: ``content.check_image``)."""
    if extension in TEXT_EXTENSIONS and not is_text(data):
        raise _refuse(f"'{name}' is not a text file, though a .{extension} must be: it holds binary data (compressed "
                      "or encoded). Send the file itself, as text.")


def check_content(name: str, data: bytes, extension: str, limits: OutputSettings) -> None:
    """Refuse record-level tables: too many rows, or a column named like a patient identifier; and an image that
    carries more than it draws."""
    if extension == "csv":
        try:
            data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise _refuse(f"'{name}' is not a UTF-8 text CSV file.") from None
    if extension in content.IMAGE_TYPES:  # parsed once: the rule's answer is the text it draws
        try:
            tables = content.drawn_tables(content.check_image(data, extension))
        except content.ImageRefused as exc:
            raise _refuse(f"'{name}' is blocked: {exc}.") from None
    else:
        tables = content.read_contents(data, extension).tables
    for table in tables:
        if len(table.rows) > limits.max_csv_rows:
            raise _refuse(f"'{name}' is blocked: {table.where} has {len(table.rows):,} rows; at most "
                          f"{limits.max_csv_rows:,} can be requested. Aggregate it further.")
        named = content.named_identifier_columns(table)
        if named:
            raise _refuse(f"'{name}' is blocked: in {table.where}, column {', '.join(map(str, named))} is named "
                          "like a patient identifier or pseudonym. Outputs must be aggregate; remove the column.")


def take_bytes(name: str, data: bytes, sidecar: bytes | None, limits: OutputSettings,
               pseudonyms: PseudonymMatcher | None = None) -> Intake:
    """Apply every intake rule to bytes handed over by a workspace; raise a clear ValidationError or return them."""
    clean = check_name(name)
    extension = extension_of(clean)
    if extension not in limits.allowed_extensions:
        raise _refuse(f"'{clean}' is a .{extension or '(no extension)'} file; allowed types are "
                      f"{', '.join(limits.allowed_extensions)}.")
    if len(data) > limits.max_file_bytes:
        raise _refuse(f"'{clean}' is {len(data):,} bytes; the limit is {limits.max_file_bytes:,} bytes.")
    record = parse_sidecar(sidecar, data) if extension == "csv" else None
    if sidecar and record is None and extension != "csv":
        raise _refuse("A disclosure-control record can be sent only with a CSV table.")
    check_content(clean, data, extension, limits)
    if pseudonyms:
        texts = [clean, *content.search_texts(data, extension)]
        if sidecar:
            texts += content.search_texts(sidecar, "json")
        if pseudonyms.count(texts):
            raise _refuse(f"'{clean}' is blocked: it holds one of this project's patient pseudonyms (or a part of "
                          "one). Outputs must not contain record-level identifiers in any form.")
    check_form(clean, data, extension)  # after the search, so a pseudonym is named as the reason when there is one
    return Intake(clean, data, hashlib.sha256(data).hexdigest(), CONTENT_TYPES[extension], record)


# --- gateway storage ----------------------------------------------------------------------------------------

def store_copy(storage_dir: Path, request_id: int, intake: Intake) -> str:
    """Write the submitted bytes, read-only, under storage; returns the stored name (relative to storage)."""
    folder = storage_dir / "requests" / str(request_id)
    folder.mkdir(parents=True, exist_ok=True)
    extension = intake.path.rsplit(".", 1)[-1].lower()
    name = f"{intake.sha256[:16]}-{secrets.token_hex(4)}.{extension}"
    temp = folder / f".tmp-{name}"
    with open(temp, "wb") as fh:
        fh.write(intake.data)
        fh.flush()
        os.fsync(fh.fileno())
    temp.chmod(0o444)
    os.replace(temp, folder / name)
    return f"requests/{request_id}/{name}"


def read_stored(storage_dir: Path, stored_name: str, sha256: str) -> bytes:
    """The submitted bytes, verified against the hash recorded at submission."""
    path = (storage_dir / stored_name).resolve()
    if not path.is_relative_to(storage_dir.resolve()):
        raise ValidationError("The stored file name is not valid.")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise OSError(f"stored output {stored_name} does not match its SHA-256")
    return data
