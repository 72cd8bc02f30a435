"""Signed release receipts: a reader can check, offline, that a package came from a release this service approved.

A receipt names the project, the output request, the package's file name and SHA-256, when it was released and
the audit chain's head right after the release was recorded (the release event's sequence number and hash), and
carries an Ed25519 signature (``cryptography``) over the canonical JSON of all that. The signing key lives in the
instance folder's ``keys`` folder, backed up with the project keys (mode 0600, created on first use without
following links); its public half is published at
``/register/receipt-key`` and on the register. ``sde receipt verify`` checks a receipt, and optionally a package,
without the gateway.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import json
import os
import secrets
import stat
import zipfile
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

FORMAT = "londonsde-release-receipt/1"
KEY_FILE = "receipt_signing_key.pem"


class ReceiptKeyError(RuntimeError):
    pass


def key_path(folder: Path) -> Path:
    return folder / KEY_FILE


def _read_key(path: Path) -> Ed25519PrivateKey:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ReceiptKeyError(f"{path} is not a regular file")
        if stat.S_IMODE(info.st_mode) & 0o077:
            raise ReceiptKeyError(f"{path} can be read by other accounts (mode {stat.S_IMODE(info.st_mode):o}); "
                                  "it must be 0600")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read()
    finally:
        os.close(fd)
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ReceiptKeyError(f"{path} is not an Ed25519 key")
    return key


def signing_key(folder: Path) -> Ed25519PrivateKey:
    """The instance's receipt key, made on first use (0600, O_EXCL: two processes never make two keys)."""
    path = key_path(folder)
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ReceiptKeyError(f"{path} is a symbolic link; refusing it") from None
        raise
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Written in full under a private temporary name, then linked into place: a reader never sees half a key, and
    # when two processes race the link fails for the second, which then uses the first one's key.
    temp = folder / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(8)}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileExistsError):  # another process linked its key first: use theirs
            os.link(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return _read_key(path)


def public_key_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def key_id(public: Ed25519PublicKey) -> str:
    """The SHA-256 of the raw public key, in hex: what a reader compares with the published key."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def make_receipt(key: Ed25519PrivateKey, body: dict[str, Any]) -> dict[str, Any]:
    signed = {"format": FORMAT, **body, "keyId": key_id(key.public_key())}
    return {"receipt": signed, "signature": base64.b64encode(key.sign(canonical(signed))).decode(),
            "publicKey": public_key_pem(key)}


def receipt_body(release: Any, issuer: str) -> dict[str, Any]:
    """What a receipt says about one release (``gateway.trust.register.Release``)."""
    return {
        "issuer": issuer,
        "project": release.project_reference,
        "outputRequest": release.request_id,
        "releasedAt": release.released_at.isoformat(),
        "package": release.package_name,
        "packageSha256": release.package_sha256,
        "auditChainHead": {"seq": release.audit_seq, "hash": release.audit_hash},
    }


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def verify(document: Any, package: bytes | None = None,
           trusted_key: Ed25519PublicKey | None = None) -> tuple[list[str], dict[str, Any]]:
    """Problems with a receipt (empty: it verifies) and what it says.

    With ``trusted_key`` (the key published by the service) the signature must be by that key; without it, by the
    key the receipt carries, whose id the caller must compare with the published one (the CLI says so).
    With ``package``, the package's SHA-256 must be the receipt's and its files must match its own manifest.
    """
    problems: list[str] = []
    if not isinstance(document, dict) or not isinstance(document.get("receipt"), dict):
        return ["this is not a release receipt"], {}
    body: dict[str, Any] = document["receipt"]
    if body.get("format") != FORMAT:
        problems.append(f"unknown receipt format {body.get('format')!r}")
    try:
        carried = load_public_key(str(document.get("publicKey", "")).encode())
    except (ValueError, TypeError):
        return [*problems, "the receipt's public key cannot be read"], body
    key = trusted_key or carried
    if trusted_key is not None and key_id(trusted_key) != key_id(carried):
        problems.append("the receipt was not made with the published key")
    if body.get("keyId") != key_id(key):
        problems.append("the receipt's key id does not match the key")
    try:
        key.verify(base64.b64decode(str(document.get("signature", "")), validate=True), canonical(body))
    except (InvalidSignature, ValueError):
        problems.append("the signature does not match the receipt: it was changed or not signed by this key")
    if package is not None:
        digest = hashlib.sha256(package).hexdigest()
        if digest != body.get("packageSha256"):
            problems.append(f"the package's SHA-256 is {digest}, the receipt says {body.get('packageSha256')}")
        problems += _package_problems(package)
    return problems, body


def _package_problems(package: bytes) -> list[str]:
    import io

    try:
        with zipfile.ZipFile(io.BytesIO(package)) as archive:
            manifest = json.loads(archive.read("manifest.json"))
            problems = []
            for entry in manifest.get("files", []):
                try:
                    data = archive.read(entry["path"])
                except KeyError:
                    problems.append(f"{entry['path']} is missing from the package")
                    continue
                if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
                    problems.append(f"{entry['path']} does not match the SHA-256 in the package's manifest")
            return problems
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        return [f"the package cannot be read: {exc}"]
