"""Intake rules for files taken from a workspace's outputs/ folder, and the gateway's copy of them.

A file is named by its path relative to outputs/; the path is resolved and must stay inside the folder
(no ``..``, no symbolic link leading out). Dotfiles, unknown types and oversize files are refused. A CSV
is refused when it has too many rows, a column that looks like a patient identifier or pseudonym, or a
value equal to one of the project's pseudonyms. Accepted files are copied, read-only, into gateway
storage with their SHA-256, so a later edit in the workspace changes nothing that was submitted.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.config import OutputSettings
from gateway.errors import ValidationError

CONTENT_TYPES = {
    "csv": "text/csv", "png": "image/png", "svg": "image/svg+xml", "txt": "text/plain",
    "json": "application/json", "md": "text/markdown", "html": "text/html",
}
SIDECAR_SUFFIX = ".sdc.json"  # written by notebooks_template/outputs_helper.py beside each table
IDENTIFIER_COLUMN = re.compile(
    r"^(nhs[\s_-]*(number|no|num)?|pseudo[\s_-]*id|pseudonym\w*|patient[\s_-]*(id|identifier|number)|"
    r"person[\s_-]*id|subject[\s_-]*id|mrn|hospital[\s_-]*number|chi[\s_-]*(number|no)?|date[\s_-]*of[\s_-]*birth|"
    r"dob|postcode|full[\s_-]*name|forename|surname|address)$", re.IGNORECASE)


@dataclass(frozen=True)
class WorkspaceFile:
    path: str  # relative to outputs/, with '/' separators
    size: int

    @property
    def extension(self) -> str:
        return self.path.rsplit(".", 1)[-1].lower() if "." in self.path.rsplit("/", 1)[-1] else ""


@dataclass(frozen=True)
class Intake:
    """A file read from the workspace that passed every intake rule."""

    path: str
    data: bytes
    sha256: str
    content_type: str
    sdc_record: dict[str, Any] | None


def _refuse(message: str) -> ValidationError:
    return ValidationError(message, field_errors={"path": [message]})


def resolve_inside(outputs_dir: Path, relative: str) -> Path:
    """The file ``relative`` names, refusing anything that resolves outside ``outputs_dir``."""
    relative = relative.strip().replace("\\", "/")
    if not relative or relative.startswith("/"):
        raise _refuse("Give the file's path inside your outputs folder, like tables/admissions.csv.")
    parts = relative.split("/")
    if any(part in {"", ".", ".."} for part in parts):
        raise _refuse(f"'{relative}' is not a plain path inside your outputs folder.")
    if any(part.startswith(".") for part in parts):
        raise _refuse(f"'{relative}' is a hidden file or folder (its name starts with a dot); these cannot be "
                      "requested.")
    root = outputs_dir.resolve()
    target = (root / relative).resolve()
    if not target.is_relative_to(root) or target == root:
        raise _refuse(f"'{relative}' leads outside your outputs folder.")
    if not target.is_file():
        raise _refuse(f"There is no file '{relative}' in your outputs folder.")
    return target


def list_workspace_files(outputs_dir: Path, limits: OutputSettings) -> list[WorkspaceFile]:
    """Files a request could include (visible, allowed type, inside the folder); sidecars are listed with
    their tables, not on their own."""
    root = outputs_dir.resolve()
    if not root.is_dir():
        return []
    found: list[WorkspaceFile] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or name.endswith(SIDECAR_SUFFIX):
                continue
            full = Path(dirpath) / name
            if not full.resolve().is_relative_to(root):
                continue
            relative = full.relative_to(root).as_posix()
            item = WorkspaceFile(relative, full.stat().st_size)
            if item.extension in limits.allowed_extensions:
                found.append(item)
    return found


def _check_csv(text: str, name: str, limits: OutputSettings, pseudonyms: frozenset[str]) -> None:
    rows = list(csv.reader(io.StringIO(text)))
    if len(rows) - 1 > limits.max_csv_rows:
        raise _refuse(f"'{name}' has {len(rows) - 1:,} rows; at most {limits.max_csv_rows:,} can be requested. "
                      "Aggregate it further.")
    header = rows[0] if rows else []
    flagged = [col for col in header if IDENTIFIER_COLUMN.match(col.strip())]
    if flagged:
        raise _refuse(f"'{name}' is blocked: column {', '.join(repr(c) for c in flagged)} looks like a patient "
                      "identifier or pseudonym. Outputs must be aggregate; remove the column.")
    if pseudonyms:
        for number, row in enumerate(rows, start=1):
            hits = [value for value in row if value.strip() in pseudonyms]
            if hits:
                raise _refuse(f"'{name}' is blocked: row {number} holds a value that is one of this project's "
                              "patient pseudonyms. Outputs must not contain record-level identifiers.")


def read_sidecar(target: Path, data: bytes) -> dict[str, Any] | None:
    """The disclosure-control sidecar of a table, when the notebook saved one for exactly these bytes."""
    sidecar = target.with_name(target.stem + SIDECAR_SUFFIX)
    if target.suffix.lower() != ".csv" or not sidecar.is_file() or sidecar.is_symlink():
        return None
    try:
        content = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(content, dict) or not isinstance(content.get("record"), dict):
        return None
    content["sidecar_sha256_matches"] = content.get("sha256") == hashlib.sha256(data).hexdigest()
    return content


def take(outputs_dir: Path, relative: str, limits: OutputSettings, pseudonyms: Iterable[str] = ()) -> Intake:
    """Apply every intake rule to one workspace file; return its bytes, or raise a clear ValidationError."""
    target = resolve_inside(outputs_dir, relative)
    clean = target.relative_to(outputs_dir.resolve()).as_posix()
    extension = target.suffix.lower().lstrip(".")
    if extension not in limits.allowed_extensions:
        raise _refuse(f"'{clean}' is a .{extension or '(no extension)'} file; allowed types are "
                      f"{', '.join(limits.allowed_extensions)}.")
    size = target.stat().st_size
    if size > limits.max_file_bytes:
        raise _refuse(f"'{clean}' is {size:,} bytes; the limit is {limits.max_file_bytes:,} bytes.")
    with open(target, "rb") as fh:
        data = fh.read(limits.max_file_bytes + 1)
    if len(data) > limits.max_file_bytes:
        raise _refuse(f"'{clean}' is larger than the limit of {limits.max_file_bytes:,} bytes.")
    if extension == "csv":
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise _refuse(f"'{clean}' is not a UTF-8 text CSV file.") from None
        _check_csv(text, clean, limits, frozenset(pseudonyms))
    return Intake(clean, data, hashlib.sha256(data).hexdigest(), CONTENT_TYPES[extension], read_sidecar(target, data))


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
