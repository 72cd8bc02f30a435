"""Safe people against a real database: organisations, recording, verifying, certificates, reminders."""

from __future__ import annotations

import datetime as dt
import io
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from gateway import audit
from gateway.cli import main as cli_main
from gateway.db import unit_of_work
from gateway.errors import InvalidTransition, PermissionDenied, ValidationError
from gateway.identity import accounts, tokens
from gateway.models import AuditEvent, User
from gateway.outbox import OutboxMessage
from projects import accreditation as service
from projects import organisations
from projects.accreditation import AccreditationInput
from projects.accreditation_rules import AccreditationRequired, check_accredited, is_valid, today, valid_accreditation
from projects.certificates import MAX_CERTIFICATE_BYTES, CertificateStore, Upload
from projects.demo_people import DemoCertificateStore, minimal_pdf, minimal_png, seed_people
from projects.models import Accreditation, Organisation
from tests.conftest import sign_in_session
from tests.integration.test_pages import csrf_from
from tests.support.databases import postgres_only
from tests.support.date_boxes import as_page
from tests.support.late import late_session, refused_on

ONS = service.SCHEMES[0]
PDF = minimal_pdf(["Test certificate"])
PNG = minimal_png()
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 200


# --- helpers shared with the route walk ----------------------------------------------------------

def store_of(app: Flask) -> CertificateStore:
    return CertificateStore(app.extensions["sde_settings"].instance_dir / "certificates")


def valid_input(**changes: Any) -> AccreditationInput:
    values: dict[str, Any] = {"scheme": ONS, "level": "full", "number": "AR-12345",
                              "training_date": today() - dt.timedelta(days=30),
                              "expiry_date": today() + dt.timedelta(days=3 * 365)}
    values.update(changes)
    return AccreditationInput(**values)


def record_pending(factory: sessionmaker[Session], app: Flask, username: str, **changes: Any) -> int:
    with unit_of_work(factory) as s:
        researcher = accounts.find_user(s, username)
        assert researcher is not None
        created = service.record_accreditation(s, researcher, store_of(app), valid_input(**changes),
                                               Upload("certificate.png", PNG, "image/png"))
        return created.id


def accreditation_form(**changes: Any) -> dict[str, Any]:
    """Form fields and a certificate, as a browser or API client posts them."""
    form: dict[str, Any] = {"scheme": ONS, "level": "full", "number": "AR-777",
                            "training_date": (today() - dt.timedelta(days=20)).isoformat(),
                            "expiry_date": (today() + dt.timedelta(days=700)).isoformat(),
                            "certificate": (io.BytesIO(PDF), "my certificate.pdf", "application/pdf")}
    form.update(changes)
    return form


# --- fixtures ------------------------------------------------------------------------------------

@pytest.fixture
def store(app: Flask) -> CertificateStore:
    return store_of(app)


@pytest.fixture
def people(session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> sessionmaker[Session]:
    """Demo users, with researcher and researcher2 at one university."""
    with unit_of_work(session_factory) as s:
        imperial = organisations.create_organisation(s, "test", "Imperial College London", "academic")
        for username in ("researcher", "researcher2"):
            user = accounts.find_user(s, username)
            assert user is not None
            organisations.assign_user(s, "test", user, imperial)
    return session_factory


def user(s: Session, username: str) -> User:
    found = accounts.find_user(s, username)
    assert found is not None
    return found


def verify(factory: sessionmaker[Session], accreditation_id: int, officer: str = "accreditor",
           on: dt.date | None = None) -> None:
    with unit_of_work(factory) as s:
        service.verify_accreditation(s, user(s, officer), s.get(Accreditation, accreditation_id), on=on)


def actions(s: Session, object_id: int) -> list[str]:
    return list(s.scalars(select(AuditEvent.action).where(AuditEvent.object_type == "accreditation",
                                                          AuditEvent.object_id == str(object_id))
                          .order_by(AuditEvent.seq)))


def auth(factory: sessionmaker[Session], username: str) -> dict[str, str]:
    with unit_of_work(factory) as s:
        _, plain = tokens.create_token(s, "test", user(s, username), "test")
    return {"Authorization": f"Bearer {plain}"}


# --- the lifecycle -------------------------------------------------------------------------------

def test_record_then_verify_makes_the_researcher_accredited(app: Flask, people: sessionmaker[Session]) -> None:
    with people() as s, pytest.raises(AccreditationRequired, match="does not hold a valid accreditation"):
        check_accredited(s, user(s, "researcher"), "apply for a project")
    record_id = record_pending(people, app, "researcher")
    with people() as s:
        record = s.get(Accreditation, record_id)
        assert record is not None and record.status == "pending" and not is_valid(record)
        with pytest.raises(AccreditationRequired):
            check_accredited(s, user(s, "researcher"), "apply for a project")
    verify(people, record_id)
    with people() as s:
        found = check_accredited(s, user(s, "researcher"), "apply for a project")
        assert found.id == record_id
        assert service.status_text(found).startswith("Valid until ")
        assert found.decided_by_id == user(s, "accreditor").id and found.decided_at is not None
        assert actions(s, record_id) == ["accreditation.recorded", "accreditation.verified"]
        assert audit.verify(s).ok


def test_officers_are_emailed_and_the_researcher_hears_the_decision(app: Flask, people: sessionmaker[Session]) -> None:
    record_id = record_pending(people, app, "researcher")
    verify(people, record_id)
    with people() as s:
        mail = [(m.payload["to"], m.payload["subject"]) for m in s.scalars(select(OutboxMessage))]
    assert ("accreditor@demo.londonsde.invalid", "An accreditation is waiting for verification") in mail
    assert ("researcher@demo.londonsde.invalid", "Your accreditation has been verified") in mail


def test_reject_needs_a_reason_and_decisions_are_final(app: Flask, people: sessionmaker[Session]) -> None:
    record_id = record_pending(people, app, "researcher")
    with unit_of_work(people) as s, pytest.raises(ValidationError) as refused:
        service.reject_accreditation(s, user(s, "accreditor"), s.get(Accreditation, record_id), "   ")
    assert "reason" in refused.value.field_errors
    with unit_of_work(people) as s:
        record = s.get(Accreditation, record_id)
        assert record is not None and record.status == "pending"
        service.reject_accreditation(s, user(s, "accreditor"), record, "The number does not match the certificate.")
    with people() as s:
        record = s.get(Accreditation, record_id)
        assert record is not None and record.status == "rejected"
        assert record.decision_reason == "The number does not match the certificate."
        assert service.status_text(record) == "Rejected"
    with pytest.raises(InvalidTransition, match="final"):
        verify(people, record_id)
    with unit_of_work(people) as s, pytest.raises(InvalidTransition):
        service.reject_accreditation(s, user(s, "accreditor"), s.get(Accreditation, record_id), "again")
    with people() as s:
        assert actions(s, record_id) == ["accreditation.recorded", "accreditation.rejected"]
        assert audit.verify(s).ok


def test_nobody_verifies_their_own_record_and_researchers_verify_nothing(
        app: Flask, people: sessionmaker[Session]) -> None:
    with unit_of_work(people) as s:
        accounts.create_local_user(s, "test", username="dualrole", display_name="Dual Role",
                                   password="a-long-password-9", roles=["researcher", "accreditation_officer"])
    own_id = record_pending(people, app, "dualrole")
    with pytest.raises(PermissionDenied, match="own accreditation"):
        verify(people, own_id, officer="dualrole")
    with unit_of_work(people) as s, pytest.raises(PermissionDenied, match="own accreditation"):
        service.reject_accreditation(s, user(s, "dualrole"), s.get(Accreditation, own_id), "self")
    with pytest.raises(PermissionDenied, match="Only accreditation officers"):
        verify(people, own_id, officer="researcher2")
    verify(people, own_id, officer="accreditor")  # another officer may
    other_id = record_pending(people, app, "researcher")
    verify(people, other_id, officer="dualrole")  # and the dual-role officer may verify someone else's
    with people() as s:
        assert {a.status for a in s.scalars(select(Accreditation))} == {"verified"}


def test_provisional_needs_a_supervisor_with_a_valid_full_accreditation_at_the_same_organisation(
        app: Flask, people: sessionmaker[Session]) -> None:
    def provisional(username: str, supervisor: str, on: dt.date | None = None) -> str | int:
        try:
            with unit_of_work(people) as s:
                return service.record_accreditation(
                    s, user(s, username), store_of(app), valid_input(level="provisional",
                                                                     supervisor_username=supervisor),
                    Upload("c.png", PNG), on=on).id
        except ValidationError as exc:
            return " ".join(exc.field_errors["supervisor"])

    assert provisional("researcher2", "") == "Enter the username of your supervisor."
    assert "no active account" in str(provisional("researcher2", "nosuchperson"))
    assert provisional("researcher2", "researcher2") == "You cannot supervise yourself."
    assert "does not hold a valid full accreditation" in str(provisional("researcher2", "researcher"))
    full_id = record_pending(people, app, "researcher", expiry_date=today() + dt.timedelta(days=100))
    assert "does not hold a valid full" in str(provisional("researcher2", "researcher"))  # pending is not enough
    verify(people, full_id)
    with unit_of_work(people) as s:
        gla = organisations.create_organisation(s, "test", "Greater London Authority", "public_sector")
        outsider = accounts.create_local_user(s, "test", username="outsider", display_name="Out Sider",
                                              password="a-long-password-8", roles=["researcher"])
        organisations.assign_user(s, "test", outsider, gla)
        accounts.create_local_user(s, "test", username="homeless", display_name="No Org",
                                   password="a-long-password-7", roles=["researcher"])
    assert "is not at your organisation" in str(provisional("outsider", "researcher"))
    assert "do not belong to an organisation" in str(provisional("homeless", "researcher"))
    later = today() + dt.timedelta(days=101)  # the supervisor's accreditation has expired by then
    assert "does not hold a valid full" in str(provisional("researcher2", "researcher", on=later))
    accepted = provisional("researcher2", "researcher")
    assert isinstance(accepted, int)
    verify(people, accepted)
    # a provisional accreditation does not make its holder a supervisor
    with unit_of_work(people) as s:
        third = accounts.create_local_user(s, "test", username="third", display_name="Third Person",
                                           password="a-long-password-6", roles=["researcher"])
        organisations.assign_user(s, "test", third, s.get(Organisation, user(s, "researcher").organisation_id))
    assert "does not hold a valid full" in str(provisional("third", "researcher2"))
    with people() as s:
        record = s.get(Accreditation, accepted)
        assert record is not None and record.supervisor_id == user(s, "researcher").id
        assert [u.username for u in service.eligible_supervisors(s, user(s, "third"))] == ["researcher"]


def test_provisional_counts_only_while_its_supervision_holds(app: Flask, people: sessionmaker[Session]) -> None:
    """The supervisor is checked when the record is made, and again every day it is relied on: a supervisor whose
    full accreditation ends, who leaves the organisation or whose account is deactivated no longer supervises, so the
    provisional record stops counting (workspaces, applications and metering all ask ``valid_accreditation``)."""
    full_id = record_pending(people, app, "researcher", expiry_date=today() + dt.timedelta(days=100))
    verify(people, full_id)
    provisional_id = record_pending(people, app, "researcher2", level="provisional", supervisor_username="researcher",
                                    expiry_date=today() + dt.timedelta(days=700))
    verify(people, provisional_id)
    later = today() + dt.timedelta(days=101)  # the supervisor's full accreditation has ended by then

    def counts(on: dt.date | None = None) -> bool:
        with people() as s:
            record = s.get(Accreditation, provisional_id)
            assert record is not None
            valid = valid_accreditation(s, user(s, "researcher2"), on) is not None
            assert is_valid(record, on) == valid  # the record's page and the rule agree
            if not valid:
                assert service.status_text(record, on).startswith("Not valid: ")
            return valid

    assert counts() and not counts(later)
    with unit_of_work(people) as s:  # the supervisor moves to another organisation
        elsewhere = organisations.create_organisation(s, "test", "Greater London Authority", "public_sector")
        organisations.assign_user(s, "test", user(s, "researcher"), elsewhere)
    assert not counts()
    with people() as s:
        assert "is no longer at" in service.status_text(s.get(Accreditation, provisional_id))
    with unit_of_work(people) as s:  # back, then deactivated
        organisations.assign_user(s, "test", user(s, "researcher"),
                                  s.get(Organisation, user(s, "researcher2").organisation_id))
    assert counts()
    with unit_of_work(people) as s:
        accounts.set_active(s, user(s, "admin"), user(s, "researcher"), False)
    assert not counts()
    with people() as s, pytest.raises(AccreditationRequired):
        check_accredited(s, user(s, "researcher2"), "work on a project")


def test_expired_is_invalid_without_anything_being_stored(app: Flask, people: sessionmaker[Session]) -> None:
    expiry = today() + dt.timedelta(days=10)
    record_id = record_pending(people, app, "researcher", expiry_date=expiry)
    verify(people, record_id)
    with people() as s:
        record = s.get(Accreditation, record_id)
        assert record is not None and record.status == "verified"
        assert is_valid(record, expiry) and not is_valid(record, expiry + dt.timedelta(days=1))
        assert service.status_text(record, expiry + dt.timedelta(days=1)).startswith("Expired on ")
        check_accredited(s, user(s, "researcher"), "work on a project", on=expiry)
        with pytest.raises(AccreditationRequired):
            check_accredited(s, user(s, "researcher"), "work on a project", on=expiry + dt.timedelta(days=1))
    # an officer cannot verify a record that has expired while waiting
    waiting = record_pending(people, app, "researcher2", expiry_date=expiry)
    with pytest.raises(InvalidTransition, match="expired"):
        verify(people, waiting, on=expiry + dt.timedelta(days=1))


def test_recording_checks_every_field_at_once(app: Flask, people: sessionmaker[Session]) -> None:
    with unit_of_work(people) as s, pytest.raises(ValidationError) as refused:
        service.record_accreditation(
            s, user(s, "researcher"), store_of(app),
            AccreditationInput(scheme="Other", other_scheme=" ", level="gold", number="", training_date=None,
                               expiry_date=today() - dt.timedelta(days=1)), None)
    assert set(refused.value.field_errors) == {"other_scheme", "level", "number", "training_date", "expiry_date",
                                               "certificate"}
    with unit_of_work(people) as s:
        other = service.record_accreditation(s, user(s, "researcher"), store_of(app),
                                             valid_input(scheme="Other", other_scheme="  MRC  Data  Course "),
                                             Upload("c.pdf", PDF))
        assert other.scheme == "MRC Data Course"
        with pytest.raises(PermissionDenied):
            service.record_accreditation(s, user(s, "accreditor"), store_of(app), valid_input(), Upload("c.pdf", PDF))


# --- uploads through the page --------------------------------------------------------------------

def _post_record(client: FlaskClient, **changes: Any) -> Any:
    token = csrf_from(client.get("/accreditation/new").get_data(as_text=True))
    form = as_page(accreditation_form(**changes), ("training_date", "expiry_date"))
    return client.post("/accreditation/new", data={"csrf_token": token, **form},
                       content_type="multipart/form-data")


def _stored_files(store: CertificateStore) -> list[Path]:
    return sorted(store.directory.glob("*")) if store.directory.exists() else []


@pytest.mark.parametrize(("filename", "data", "content_type", "message"), [
    ("certificate.png", PDF, "image/png", "named or labelled as a PNG image but its contents are a PDF"),
    ("certificate.pdf", PNG, "application/pdf", "named or labelled as a PDF but its contents are a PNG image"),
    ("setup.exe.pdf", EXE, "application/pdf", "must be a PDF or PNG file"),
    ("setup.pdf", EXE, "application/octet-stream", "must be a PDF or PNG file"),
    ("big.pdf", PDF[:-6] + b" " * MAX_CERTIFICATE_BYTES + b"%%EOF\n", "application/pdf", "smaller than 5 MB"),
    ("empty.pdf", b"", "application/pdf", "The selected file is empty."),
], ids=["pdf-as-png", "png-as-pdf", "exe-as-pdf", "exe-octet", "oversize", "empty"])
def test_upload_refuses_what_is_not_really_a_pdf_or_png(
        client: FlaskClient, people: sessionmaker[Session], store: CertificateStore,
        filename: str, data: bytes, content_type: str, message: str) -> None:
    sign_in_session(client, people, "researcher")
    response = _post_record(client, number="KEEP-ME-1",
                            certificate=(io.BytesIO(data), filename, content_type))
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "There is a problem" in html and message in html.replace("&#39;", "'")
    assert 'value="KEEP-ME-1"' in html
    with people() as s:
        assert s.scalar(select(func.count()).select_from(Accreditation)) == 0
    assert _stored_files(store) == []


def test_form_shows_every_problem_and_keeps_the_input(client: FlaskClient, people: sessionmaker[Session]) -> None:
    sign_in_session(client, people, "researcher")
    response = _post_record(client, number="", training_date=("14", "March", "2026"), expiry_date="2020-01-01",
                            level="provisional", supervisor="nobody-here")
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    for message in ("Enter the accreditation or certificate number.", "Date of training must be a real date.",
                    "The expiry date is in the past", "no active account with the username",
                    "Select your certificate again"):
        assert message in html.replace("&#39;", "'"), message
    assert 'value="March"' in html and 'value="nobody-here"' in html
    # only the month box is marked; the day and year kept as typed
    assert re.search(r'nhsuk-input--error"\s+id="training_date-month"', html)
    assert not re.search(r'nhsuk-input--error"\s+id="training_date-(day|year)"', html)
    assert 'name="training_date-day" type="text" inputmode="numeric" value="14"' in html
    assert 'href="#training_date-month"' in html  # the summary's link goes to the box at fault
    assert re.search(r'nhsuk-input--error"\s+id="expiry_date-day"', html)  # a rule on the whole date marks all
    assert re.search(r'value="provisional"\s+checked', html)


def test_path_traversal_file_names_do_not_reach_the_file_system(
        client: FlaskClient, people: sessionmaker[Session], store: CertificateStore, tmp_path: Path) -> None:
    sign_in_session(client, people, "researcher")
    evil = "../../../../" + str(tmp_path / "escaped.png").lstrip("/")
    response = _post_record(client, certificate=(io.BytesIO(PNG), evil, "image/png"))
    assert response.status_code == 302, response.get_data(as_text=True)
    record_id = int(response.headers["Location"].rsplit("/", 1)[1])
    with people() as s:
        record = s.get(Accreditation, record_id)
        assert record is not None
        assert re.fullmatch(r"[0-9a-f]{32}\.png", record.certificate_file or "")
        assert record.certificate_name == "escaped.png" and record.certificate_type == "image/png"
    assert not (tmp_path / "escaped.png").exists()
    assert [p.name for p in _stored_files(store)] == [record.certificate_file]
    assert (store.directory / record.certificate_file).read_bytes() == PNG
    page = client.get(f"/accreditation/{record_id}").get_data(as_text=True)
    assert "Waiting for verification" in page and "escaped.png" in page


def test_certificate_and_record_are_shown_to_the_owner_and_officers_only(
        client: FlaskClient, app: Flask, people: sessionmaker[Session]) -> None:
    record_id = record_pending(people, app, "researcher")
    # anyone else gets what a missing record gives: 404, so record ids cannot be probed
    for username, expected in (("researcher", 200), ("accreditor", 200), ("researcher2", 404), ("dac1", 404),
                               ("admin", 404)):
        sign_in_session(client, people, username)
        certificate = client.get(f"/accreditation/{record_id}/certificate")
        assert certificate.status_code == expected, username
        assert client.get(f"/accreditation/{record_id}").status_code == expected, username
        if expected == 200:
            assert certificate.data == PNG and certificate.mimetype == "image/png"
            assert "attachment" in certificate.headers["Content-Disposition"]
            assert "sandbox" in certificate.headers["Content-Security-Policy"]
        else:
            assert certificate.data != PNG
        api = client.get(f"/api/v1/accreditations/{record_id}/certificate", headers=auth(people, username))
        assert api.status_code == expected, username
    sign_in_session(client, people, "accreditor")
    assert client.get("/accreditation/999999").status_code == 404
    assert client.get("/accreditation/999999/certificate").status_code == 404


# --- officer pages -------------------------------------------------------------------------------

def test_officer_queue_verify_and_reject_pages(client: FlaskClient, app: Flask, people: sessionmaker[Session]) -> None:
    first = record_pending(people, app, "researcher", number="FIRST-1")
    second = record_pending(people, app, "researcher2", number="SECOND-2")
    sign_in_session(client, people, "accreditor")
    queue = client.get("/accreditation/queue").get_data(as_text=True)
    assert "Dr Amara Okafor" in queue and "Dr Tom Brennan" in queue
    page = client.get(f"/accreditation/{first}").get_data(as_text=True)
    token = csrf_from(page)
    assert "Verify accreditation" in page
    assert client.post(f"/accreditation/{first}/verify", data={"csrf_token": token}).status_code == 302
    refused = client.post(f"/accreditation/{second}/reject", data={"csrf_token": token, "reason": " "})
    assert refused.status_code == 422
    assert "Explain to the researcher why" in refused.get_data(as_text=True)
    rejected = client.post(f"/accreditation/{second}/reject", data={"csrf_token": token, "reason": "Blurred scan"})
    assert rejected.status_code == 302
    again = client.post(f"/accreditation/{first}/verify", data={"csrf_token": token})
    assert again.status_code == 409
    assert "accreditation-queue-empty" in client.get("/accreditation/queue").get_data(as_text=True)
    assert "Blurred scan" in client.get(f"/accreditation/{second}").get_data(as_text=True)
    sign_in_session(client, people, "researcher")
    mine = client.get("/accreditation/").get_data(as_text=True)
    assert "Valid until" in mine and "You are accredited" in mine
    with people() as s:
        assert actions(s, first) == ["accreditation.recorded", "accreditation.verified"]
        assert actions(s, second) == ["accreditation.recorded", "accreditation.rejected"]
        assert audit.verify(s).ok


# --- the API -------------------------------------------------------------------------------------

def test_api_records_with_an_upload_and_officers_decide(client: FlaskClient, people: sessionmaker[Session]) -> None:
    researcher, officer = auth(people, "researcher"), auth(people, "accreditor")
    created = client.post("/api/v1/accreditations", headers=researcher, data=accreditation_form(),
                          content_type="multipart/form-data")
    assert created.status_code == 201, created.json
    body = created.json
    assert body["status"] == "pending" and body["valid"] is False and body["certificate_type"] == "application/pdf"
    assert body["certificate_name"] == "my certificate.pdf" and len(body["certificate_sha256"]) == 64
    missing = client.post("/api/v1/accreditations", headers=researcher,
                          data={k: v for k, v in accreditation_form().items() if k != "certificate"},
                          content_type="multipart/form-data")
    assert missing.status_code == 422 and "certificate" in missing.json["detail"]["fields"]
    bad_level = client.post("/api/v1/accreditations", headers=researcher, data=accreditation_form(level="gold"),
                            content_type="multipart/form-data")
    assert bad_level.status_code == 422 and "level" in bad_level.json["detail"]["fields"]
    queue = client.get("/api/v1/accreditations", headers=officer).json
    assert [a["id"] for a in queue] == [body["id"]]
    assert client.get("/api/v1/accreditations?status=bogus", headers=officer).status_code == 422
    no_reason = client.post(f"/api/v1/accreditations/{body['id']}/reject", headers=officer, json={"reason": ""})
    assert no_reason.status_code == 422
    verified = client.post(f"/api/v1/accreditations/{body['id']}/verify", headers=officer)
    assert verified.status_code == 200 and verified.json["valid"] is True
    assert verified.json["status_text"].startswith("Valid until")
    assert client.post(f"/api/v1/accreditations/{body['id']}/verify", headers=officer).status_code == 409
    assert client.get("/api/v1/me/accreditations", headers=researcher).json[0]["status"] == "verified"
    assert client.get(f"/api/v1/accreditations/{body['id']}", headers=auth(people, "researcher2")).status_code == 404
    assert client.get("/api/v1/accreditations/424242", headers=officer).status_code == 404
    assert client.get("/api/v1/accreditations?status=verified", headers=officer).json[0]["id"] == body["id"]


def test_openapi_describes_the_upload_and_the_download(client: FlaskClient) -> None:
    doc = client.get("/api/v1/openapi.json").json
    upload = doc["paths"]["/accreditations"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert upload["properties"]["certificate"] == {"type": "string", "format": "binary"}
    assert {"certificate", "number", "expiry_date"} <= set(upload["required"])
    download = doc["paths"]["/accreditations/{accreditation_id}/certificate"]["get"]["responses"]["200"]
    assert set(download["content"]) == {"application/pdf", "image/png"}


# --- organisations -------------------------------------------------------------------------------

def test_organisations_are_created_and_people_assigned_with_audit(
        client: FlaskClient, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    sign_in_session(client, session_factory, "admin")
    token = csrf_from(client.get("/admin/organisations/new").get_data(as_text=True))
    bad = client.post("/admin/organisations/new", data={"csrf_token": token, "name": "Keep This Name"})
    assert bad.status_code == 422 and "Choose the type of organisation." in bad.get_data(as_text=True)
    assert 'value="Keep This Name"' in bad.get_data(as_text=True)
    made = client.post("/admin/organisations/new", data={"csrf_token": token, "name": "Asthma + Lung UK",
                                                         "org_type": "charity"})
    assert made.status_code == 302
    org_id = int(made.headers["Location"].rsplit("/", 1)[1])
    again = client.post("/admin/organisations/new", data={"csrf_token": token, "name": "asthma + lung uk",
                                                          "org_type": "charity"})
    assert again.status_code == 422 and "already exists" in again.get_data(as_text=True)
    added = client.post(f"/admin/organisations/{org_id}/members",
                        data={"csrf_token": token, "user_id": str(demo_users["dac1"])})
    assert added.status_code == 302
    assert "Dr Kwame Mensah" in client.get(f"/admin/organisations/{org_id}").get_data(as_text=True)
    assert client.post(f"/admin/organisations/{org_id}/members", data={"csrf_token": token}).status_code == 422
    removed = client.post(f"/admin/organisations/{org_id}/members/{demo_users['dac1']}/remove",
                          data={"csrf_token": token})
    assert removed.status_code == 302
    admin = auth(session_factory, "admin")
    api_made = client.post("/api/v1/organisations", headers=admin, json={"name": "Thames Analytics Ltd",
                                                                         "org_type": "commercial"})
    assert api_made.status_code == 201
    assert client.post("/api/v1/organisations", headers=admin,
                       json={"name": "X", "org_type": "pirate"}).status_code == 422
    moved = client.put(f"/api/v1/users/{demo_users['researcher']}/organisation", headers=admin,
                       json={"organisation_id": api_made.json["id"]})
    assert moved.status_code == 200 and moved.json["organisation_id"] == api_made.json["id"]
    assert client.put(f"/api/v1/users/{demo_users['researcher']}/organisation", headers=admin,
                      json={"organisation_id": 987654}).status_code == 404
    assert [o["name"] for o in client.get("/api/v1/organisations", headers=admin).json] == [
        "Asthma + Lung UK", "Thames Analytics Ltd"]
    with session_factory() as s:
        assert user(s, "dac1").organisation_id is None
        logged = list(s.scalars(select(AuditEvent.action).where(AuditEvent.action.in_(
            ["organisation.created", "user.organisation_changed"])).order_by(AuditEvent.seq)))
        assert logged == ["organisation.created", "user.organisation_changed", "user.organisation_changed",
                          "organisation.created", "user.organisation_changed"]
        assert audit.verify(s).ok


# --- reminders -----------------------------------------------------------------------------------

def _expiry_mail(s: Session) -> list[str]:
    keys = s.scalars(select(OutboxMessage.dedupe_key).where(OutboxMessage.dedupe_key.contains("-expiry-")))
    return sorted(k or "" for k in keys)


def test_expiry_reminders_go_once_per_threshold(app: Flask, people: sessionmaker[Session]) -> None:
    day = today()
    in_30 = record_pending(people, app, "researcher", expiry_date=day + dt.timedelta(days=30))
    in_5 = record_pending(people, app, "researcher2", expiry_date=day + dt.timedelta(days=5))
    renewed = record_pending(people, app, "researcher2", expiry_date=day + dt.timedelta(days=400), number="NEW")
    with unit_of_work(people) as s:
        accounts.create_local_user(s, "test", username="late", display_name="Late Person",
                                   password="a-long-password-5", email="late@example.invalid", roles=["researcher"])
    in_3 = record_pending(people, app, "late", expiry_date=day + dt.timedelta(days=3))
    for record_id in (in_30, in_5, renewed, in_3):
        verify(people, record_id)
    for _ in range(2):
        with unit_of_work(people) as s:
            service.send_expiry_reminders(s, day)
    with people() as s:
        # researcher2 already renewed, so the record expiring in 5 days needs no reminder; a record first seen
        # inside 7 days gets only the 7-day reminder
        assert _expiry_mail(s) == sorted([f"accreditation-{in_30}-expiry-30", f"accreditation-{in_3}-expiry-7"])
        first, late = s.get(Accreditation, in_30), s.get(Accreditation, in_3)
        assert first is not None and first.reminded_30_at is not None and first.reminded_7_at is None
        assert late is not None and late.reminded_30_at is not None and late.reminded_7_at is not None
    for _ in range(2):
        with unit_of_work(people) as s:
            service.send_expiry_reminders(s, day + dt.timedelta(days=23))  # 7 days before in_30 expires
    with people() as s:
        assert _expiry_mail(s) == sorted([f"accreditation-{in_30}-expiry-30", f"accreditation-{in_30}-expiry-7",
                                          f"accreditation-{in_3}-expiry-7"])
        mail = s.scalar(select(OutboxMessage).where(OutboxMessage.dedupe_key == f"accreditation-{in_30}-expiry-7"))
        assert mail is not None and mail.payload["to"] == "researcher@demo.londonsde.invalid"
        assert mail.payload["subject"] == "Your accreditation expires in 7 days"
        reminders = s.scalars(select(AuditEvent).where(AuditEvent.action == "accreditation.expiry_reminder_sent"))
        assert sorted((e.object_id, e.details["threshold_days"]) for e in reminders) == sorted(
            [(str(in_30), 30), (str(in_30), 7), (str(in_3), 7)])
        assert audit.verify(s).ok


def test_cli_remind_queues_reminders_and_is_idempotent(app: Flask, people: sessionmaker[Session],
                                                       database_url: str) -> None:
    record_id = record_pending(people, app, "researcher", expiry_date=today() + dt.timedelta(days=7))
    verify(people, record_id)
    runner = CliRunner()
    env = {"SDE_DATABASE_URL": database_url}
    first = runner.invoke(cli_main, ["accreditation", "remind"], env=env)
    assert first.exit_code == 0, first.output
    assert "Expiry reminders queued" in first.output and first.output.strip().endswith(": 1")
    again = runner.invoke(cli_main, ["accreditation", "remind"], env=env)
    assert again.exit_code == 0 and again.output.strip().endswith(": 0")
    with people() as s:
        assert _expiry_mail(s) == [f"accreditation-{record_id}-expiry-7"]


def test_scheduled_jobs_include_the_reminders() -> None:
    from projects.scheduled import JOBS

    assert service.send_expiry_reminders in JOBS


# --- demo data -----------------------------------------------------------------------------------

def test_demo_people_seed_through_the_services_and_is_idempotent(
        session_factory: sessionmaker[Session], demo_users: dict[str, int], app: Flask) -> None:
    store = DemoCertificateStore(store_of(app).directory)
    with unit_of_work(session_factory) as s:
        created = seed_people(s, store)
    assert "organisation Imperial College London" in created and "accreditation DEMO-UKDS-2001" in created
    with unit_of_work(session_factory) as s:
        assert seed_people(s, store) == []
    with session_factory() as s:
        assert {o.org_type for o in s.scalars(select(Organisation))} == set(organisations.ORG_TYPES)
        imperial = organisations.find_organisation(s, "Imperial College London")
        assert imperial is not None
        assert {u.username for u in organisations.members(s, imperial)} == {"researcher", "researcher2"}
        assert user(s, "laymember").organisation_id is None
        for username in ("researcher", "researcher2"):
            assert check_accredited(s, user(s, username), "apply").level == "full"
        records = {a.number: a for a in s.scalars(select(Accreditation))}
        expired = records["DEMO-UKDS-2001"]
        assert expired.status == "verified" and not is_valid(expired)
        assert records["DEMO-UKDS-1002"].status == "pending"
        officer = user(s, "accreditor")
        assert all(a.decided_by_id == officer.id for a in records.values() if a.status != "pending")
        assert len(_stored_files(store)) == len(records)
        assert all(store.read(a.certificate_file or "") is not None for a in records.values())
        assert audit.verify(s).ok


def test_a_certificate_whose_record_is_not_saved_is_not_kept(app: Flask, people: sessionmaker[Session],
                                                             store: CertificateStore) -> None:
    kept = _stored_files(store)
    with people() as s:
        researcher = accounts.find_user(s, "researcher")
        assert researcher is not None
        service.record_accreditation(s, researcher, store, valid_input(),
                                     Upload("certificate.png", minimal_png(), "image/png"))
        assert len(_stored_files(store)) == len(kept) + 1  # written while the transaction is open
        s.rollback()  # e.g. the commit failed
    assert _stored_files(store) == kept
    record_pending(people, app, "researcher")  # a committed record keeps its file
    assert len(_stored_files(store)) == len(kept) + 1


def test_the_worker_sweeps_certificate_files_no_record_refers_to(app: Flask, people: sessionmaker[Session],
                                                                  store: CertificateStore) -> None:
    import os
    import time

    from gateway.worker import sweep_certificates

    record_pending(people, app, "researcher")
    (referenced,) = _stored_files(store)
    old_orphan = store.directory / ("a" * 32 + ".pdf")  # a crash between writing the file and the commit
    new_orphan = store.directory / ("b" * 32 + ".pdf")  # an upload whose transaction may still be open
    stranger = store.directory / "notes.txt"  # not a name the store makes: never touched
    for path in (old_orphan, new_orphan, stranger):
        path.write_bytes(b"x")
    two_hours_ago = time.time() - 7200
    for path in (referenced, old_orphan, stranger):
        os.utime(path, (two_hours_ago, two_hours_ago))
    removed = sweep_certificates(app.extensions["sde_settings"], people)
    assert removed == [old_orphan.name]
    assert sorted(p.name for p in _stored_files(store)) == sorted([referenced.name, new_orphan.name, "notes.txt"])


@postgres_only  # on SQLite a writer holds the whole database from its first statement: no interleaving
def test_a_rejection_read_before_the_verification_does_not_overturn_it(app: Flask,
                                                                       people: sessionmaker[Session]) -> None:
    """An officer's two tabs (or two officers): one verifies, the other, read while the record was pending, rejects
    after. A decision is final, and the second is judged on the record as committed: refused, the first stands."""
    accreditation_id = record_pending(people, app, "researcher")
    with late_session(people) as late:
        stale = late.get(Accreditation, accreditation_id)
        assert stale is not None and stale.status == "pending"
        officer = user(late, "accreditor")
        verify(people, accreditation_id)
        refused_on(late, InvalidTransition, lambda: service.reject_accreditation(
            late, officer, stale, "The certificate looks altered."), match="already been verified")
    with people() as s:
        found = s.get(Accreditation, accreditation_id)
        assert found is not None and found.status == "verified"
        assert actions(s, accreditation_id)[-1] == "accreditation.verified"
