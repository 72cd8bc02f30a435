"""Verifiable release receipts: a released output on the register with its package SHA-256 and the audit chain's
head at release, a signed receipt per release, and `sde receipt verify` checking it offline (a subprocess)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway import audit
from gateway.config import Settings
from gateway.models import AuditEvent
from gateway.outputs import release as release_mod
from gateway.outputs.models import OutputRequest
from gateway.trust import receipts
from tests.integration.test_outputs import ready_project, released_request

SDE = Path(sys.executable).parent / "sde"


def sde(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SDE), *map(str, args)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


@pytest.fixture
def released(session_factory: sessionmaker[Session], settings: Settings, demo_users: dict[str, int]) -> int:
    project_id = ready_project(session_factory, settings)
    return released_request(session_factory, settings, project_id, "by_region")


def test_release_is_on_the_register_with_its_hash_and_the_audit_head(client: FlaskClient, released: int,
                                                                     session_factory: sessionmaker[Session]) -> None:
    with session_factory() as s:
        request = s.get(OutputRequest, released)
        assert request is not None and request.state == "released"
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "output_request.released",
                                                   AuditEvent.object_id == str(released))).one()
        assert audit.verify(s).ok
        digest, seq, head, name = request.package_sha256, event.seq, event.hash, request.package_name
    entry = next(e for e in client.get("/register.json").json if e["project"]["londonsde"]["releases"])
    (item,) = entry["project"]["londonsde"]["releases"]
    assert item["packageSha256"] == digest
    assert item["auditChainHead"] == {"seq": seq, "hash": head}
    assert item["receipt"].endswith(f"/register/receipts/{name[:-4]}.json")
    assert item["receipt"] in entry["outputs"]
    html = client.get("/register").get_data(as_text=True)
    assert digest in html and head in html and f"/register/receipts/{name[:-4]}.json" in html


def test_sde_receipt_verify_accepts_the_real_package_and_refuses_tampering(
        client: FlaskClient, released: int, session_factory: sessionmaker[Session], settings: Settings,
        tmp_path: Path) -> None:
    with session_factory() as s:
        request = s.get(OutputRequest, released)
        assert request is not None and request.package_name
        name = request.package_name.removesuffix(".zip")
    response = client.get(f"/register/receipts/{name}.json")
    assert response.status_code == 200 and "attachment" in response.headers["Content-Disposition"]
    receipt_file = tmp_path / "receipt.json"
    receipt_file.write_bytes(response.data)
    key_file = tmp_path / "key.pem"
    key_file.write_text(client.get("/register/receipt-key").get_data(as_text=True))
    with session_factory() as s:
        request = s.get(OutputRequest, released)
        assert request is not None
        package = release_mod.package_path(request, settings.outputs_dir)
    # the key is the instance's, private to the service's account
    key_path = receipts.key_path(settings.keys_dir)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600

    ok = sde("receipt", "verify", receipt_file, "--package", package, "--public-key", key_file)
    assert ok.returncode == 0, ok.stderr
    assert "OK: output" in ok.stdout and "the package matches" in ok.stdout
    alone = sde("receipt", "verify", receipt_file)
    assert alone.returncode == 0 and "compare it with the key id the London SDE publishes" in alone.stdout

    # a package with one changed byte in an output file
    tampered = tmp_path / "tampered.zip"
    data = bytearray(package.read_bytes())
    import zipfile

    with zipfile.ZipFile(package) as archive:
        info = archive.getinfo(next(n for n in archive.namelist() if n.startswith("outputs/")))
    data[info.header_offset + 30 + len(info.filename) + 2] ^= 0x01
    tampered.write_bytes(bytes(data))
    refused = sde("receipt", "verify", receipt_file, "--package", tampered, "--public-key", key_file)
    assert refused.returncode == 1 and "REFUSED" in refused.stderr and "SHA-256" in refused.stderr

    # a receipt whose hash was changed to fit another package
    document = json.loads(receipt_file.read_text())
    document["receipt"]["packageSha256"] = "0" * 64
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(document))
    refused = sde("receipt", "verify", forged, "--public-key", key_file)
    assert refused.returncode == 1 and "signature does not match" in refused.stderr

    # a receipt re-signed with somebody else's key: fine on its own key, refused against the published one
    other = receipts.make_receipt(receipts.Ed25519PrivateKey.generate(), {
        k: v for k, v in document["receipt"].items() if k not in {"format", "keyId"}})
    impostor = tmp_path / "impostor.json"
    impostor.write_text(json.dumps(other))
    refused = sde("receipt", "verify", impostor, "--public-key", key_file)
    assert refused.returncode == 1 and "not made with the published key" in refused.stderr

    garbage = tmp_path / "garbage.json"
    garbage.write_text("not json")
    assert sde("receipt", "verify", garbage).returncode != 0


def test_no_receipt_for_an_output_that_was_not_released(client: FlaskClient, released: int,
                                                        session_factory: sessionmaker[Session]) -> None:
    with session_factory() as s:
        request = s.get(OutputRequest, released)
        assert request is not None and request.package_name
        reference = request.project.reference.lower()
    assert client.get(f"/register/receipts/{reference}-output-{released + 1000}.json").status_code == 404
    assert client.get("/register/receipts/..%2f..%2fsecret_key.json").status_code == 404


def test_the_signing_key_is_made_once_private_and_never_through_a_link(tmp_path: Path) -> None:
    first = receipts.signing_key(tmp_path)
    again = receipts.signing_key(tmp_path)
    assert receipts.key_id(first.public_key()) == receipts.key_id(again.public_key())
    path = receipts.key_path(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)
    with pytest.raises(receipts.ReceiptKeyError, match="0600"):
        receipts.signing_key(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target = elsewhere / "stolen.pem"
    target.write_text("x")
    linked = tmp_path / "linked"
    linked.mkdir()
    receipts.key_path(linked).symlink_to(target)
    with pytest.raises(receipts.ReceiptKeyError, match="symbolic link"):
        receipts.signing_key(linked)
    assert target.read_text() == "x"


def test_processes_racing_to_make_the_key_all_get_one_whole_key(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import time
    from concurrent.futures import ThreadPoolExecutor

    real_fdopen = os.fdopen

    def slow_fdopen(fd: int, *args: Any, **kwargs: Any) -> Any:  # widen the window between making a file and
        time.sleep(0.05)                                            # its bytes being in it
        return real_fdopen(fd, *args, **kwargs)

    monkeypatch.setattr(os, "fdopen", slow_fdopen)
    for attempt in range(5):
        folder = tmp_path / f"race{attempt}"
        with ThreadPoolExecutor(8) as pool:
            ids = set(pool.map(lambda f: receipts.key_id(receipts.signing_key(f).public_key()), [folder] * 16))
        assert len(ids) == 1
        assert [p.name for p in folder.iterdir()] == [receipts.KEY_FILE]  # no temporary file left behind


def test_a_forged_host_header_cannot_name_another_site_once_the_address_is_set(
        client: FlaskClient, app: Any, released: int, session_factory: sessionmaker[Session]) -> None:
    with session_factory() as s:
        request = s.get(OutputRequest, released)
        assert request is not None and request.package_name
        url = f"/register/receipts/{request.package_name.removesuffix('.zip')}.json"
    forged = json.loads(client.get(url, headers={"Host": "evil.example"}).data)
    assert forged["receipt"]["issuer"] == "http://evil.example"  # unset: the request's own address
    app.extensions["sde_settings"].public.base_url = "https://sde.london.nhs.example"
    receipt = json.loads(client.get(url, headers={"Host": "evil.example"}).data)
    assert receipt["receipt"]["issuer"] == "https://sde.london.nhs.example"
    entry = next(e for e in client.get("/register.json", headers={"Host": "evil.example"}).json
                 if e["project"]["londonsde"]["releases"])
    assert all(link.startswith("https://sde.london.nhs.example/") for link in entry["outputs"]
               if "receipts" in link)
