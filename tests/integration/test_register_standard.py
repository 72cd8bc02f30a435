"""The public register as a standard: /register.json as HDR UK Data Use Schema 1.0.0 records (the official schema,
kept verbatim in tests/data), /register/hdruk-gateway.json in the HDR UK Gateway's upload fields, charges from the
services' own quotes and invoices, released outputs with signed receipts, publications."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.charging import invoices, metering, quotes
from gateway.charging.models import Invoice
from gateway.db import unit_of_work, utcnow
from gateway.errors import PermissionDenied, ValidationError
from gateway.models import AuditEvent
from gateway.trust.register import COLUMNS
from projects import publications
from projects.models import Organisation, Project, Publication
from projects.money import format_money
from tests.conftest import sign_in_session
from tests.support import factories as f

DATA = Path(__file__).resolve().parents[1] / "data"
SCHEMA = json.loads((DATA / "hdruk_gateway_data_use_upload.schema.json").read_text())
FIELDS = set(SCHEMA["items"]["properties"])
GATEWAY_JSON = "/register/hdruk-gateway.json"
# The official HDR UK Data Use Schema 1.0.0, verbatim (source in tests/data/README.md).
OFFICIAL = json.loads((DATA / "hdruk_data_use_schema_1.0.0.json").read_text())


def validator() -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(SCHEMA)
    cls.check_schema(SCHEMA)
    return cls(SCHEMA, format_checker=cls.FORMAT_CHECKER)


def corrected_official() -> dict[str, Any]:
    """The official schema with its one erratum mended: it requires "projects" and "settings" but names the
    properties "project" and "setting" and forbids other keys, so as published no record can pass."""
    assert set(OFFICIAL["required"]) - set(OFFICIAL["properties"]) == {"projects", "settings"}
    return {**OFFICIAL, "required": ["people", "project", "data", "setting"]}


def official_validator() -> jsonschema.protocols.Validator:
    schema = corrected_official()
    cls = jsonschema.validators.validator_for(schema)
    assert cls is jsonschema.Draft7Validator
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def assert_official(record: dict[str, Any]) -> None:
    """Valid, and with no misspelt key where the schema leaves objects open (one extension: project.londonsde)."""
    official_validator().validate(record)
    properties = OFFICIAL["properties"]
    for part in ("people", "project", "data", "setting"):
        allowed = set(properties[part]["properties"]) | ({"londonsde"} if part == "project" else set())
        assert set(record[part]) <= allowed, (part, set(record[part]) - allowed)
    assert set(record["people"]["organisation"]) <= set(OFFICIAL["definitions"]["organisation"]["properties"])
    assert set(record["people"]["applicant"]) <= set(OFFICIAL["definitions"]["applicant"]["properties"])


def test_register_json_is_official_data_use_schema_1_0_0_with_every_known_field(
        client: FlaskClient, world: sessionmaker[Session]) -> None:
    assert OFFICIAL["version"] == "1.0.0" and OFFICIAL["title"] == "HDR UK Data Use Schema"
    f.approved_project(world, title="Asthma and deprivation")
    (record,) = client.get("/register.json").json
    assert_official(record)
    with pytest.raises(jsonschema.ValidationError, match="'projects' is a required property"):
        jsonschema.Draft7Validator(OFFICIAL).validate(record)  # the erratum, as published
    people, project, data, setting = record["people"], record["project"], record["data"], record["setting"]
    assert people["organisation"] == {"name": "Queen Mary University of London",
                                      "identifier": "https://ror.org/026zzn846", "sector": "Academic Institute"}
    with world() as s:
        lead = f.user(s, "researcher").display_name
    assert lead == "Dr Amara Okafor (researcher)" and people["applicant"]["names"][0] == "Dr Amara Okafor researcher"
    assert people["fundersAndSponsors"] == ["NIHR"] and people["subLicence"] is False
    assert "accredited" not in people  # DEA accreditation is not something the gateway knows: left out
    assert project["title"] == "Asthma and deprivation"
    assert project["identifier"] == f"http://localhost/register#{project['londonsde']['reference']}"
    assert project["technicalSummary"].startswith("Cohort study of asthma exacerbations")
    assert project["approvalCommittees"] == ["London SDE Data Access Committee (with lay members)",
                                             "Research ethics committee: REC 24/LO/0001"]
    assert "requestCategory" not in project  # not asked on the application: left out, not guessed
    assert data["legalBasis"].startswith("The processing is necessary for the performance of a task carried out")
    assert data["lawfulConditions"].startswith("Processing is necessary for archiving purposes")
    assert data["dutyOfConfidentiality"] == "Section 251 of the NHS Act 2006"
    assert data["optOut"] is True and data["sensitivityLevel"] == "De-Personalised"
    assert data["requestFrequency"] == "One-off" and data["linkage"]
    with world() as s:
        variables = s.scalars(select(Project)).one().variables
        assert [v.rsplit(": ", 1)[1] for v in data["confidentialDataDescription"]] == [v.variable for v in variables]
    assert setting["accessType"] == "Trusted Research Environment" and setting["privacyEnhancements"]
    assert record["outputs"] == []
    assert project["londonsde"]["status"] == "active" and project["londonsde"]["charges"]["currency"] == "GBP"


def test_the_official_schema_test_can_fail(client: FlaskClient, world: sessionmaker[Session]) -> None:
    """What a careless mapping would write is refused: the old vocabularies, free text, a stray key."""
    f.approved_project(world)
    (record,) = client.get("/register.json").json
    bad_parts = (("data", "optOut", "Yes"), ("data", "legalBasis", "UK GDPR Article 6(1)(e)"),
                 ("setting", "accessType", "TRE"), ("project", "startDate", "4 August 2031"),
                 ("data", "dutyOfConfidentiality", "Section 251 NHS Act 2006"), ("project", "title", "x" * 256))
    for part, field, bad in bad_parts:
        with pytest.raises(jsonschema.ValidationError):
            official_validator().validate({**record, part: {**record[part], field: bad}})
    with pytest.raises(jsonschema.ValidationError):
        official_validator().validate({**record, "londonsde": {}})  # the top level is closed
    with pytest.raises(AssertionError):
        assert_official({**record, "data": {**record["data"], "optout": True}})  # a misspelt key


def test_names_and_long_texts_are_fitted_to_the_schema_and_kept_whole_elsewhere(
        client: FlaskClient, world: sessionmaker[Session]) -> None:
    project_id = f.approved_project(world)
    long_summary = ("Asthma admissions in London boroughs, studied over ten years. " * 80).strip()
    with unit_of_work(world) as s:
        f.user(s, "researcher").display_name = "Dr Siobh\u00e1n O'Brien-Smith"
        project = s.get(Project, project_id)
        assert project is not None
        project.lay_summary = long_summary
    (record,) = client.get("/register.json").json
    assert_official(record)
    assert record["people"]["applicant"]["names"][0] == "Dr Siobhan O Brien Smith"
    lay = record["project"]["laySummary"]
    assert len(lay) <= 3000 and lay.endswith("\u2026") and long_summary.startswith(lay[:-1])
    (row,) = csv.DictReader(io.StringIO(client.get("/register.csv").get_data(as_text=True)))
    assert row["Lay Summary"] == long_summary and row["Applicant Name(s)"].startswith("Dr Siobh\u00e1n O'Brien-Smith")


@pytest.fixture
def world(session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> sessionmaker[Session]:
    with unit_of_work(session_factory) as s:
        f.accredit(s, "researcher")
        org = f.organisation(s, "Queen Mary University of London")
        org.identifier = "https://ror.org/026zzn846"
        f.user(s, "researcher").organisation_id = org.id
    return session_factory


def test_gateway_upload_json_validates_against_the_transcribed_fields_with_every_known_field(
        client: FlaskClient, world: sessionmaker[Session]) -> None:
    f.approved_project(world, title="Asthma and deprivation")
    data = client.get(GATEWAY_JSON).json
    validator().validate(data)
    assert len(data) == 1
    entry = data[0]
    assert set(entry) - {"londonsde"} <= FIELDS, set(entry) - FIELDS  # a misspelt field name fails here
    assert entry["projectTitle"] == "Asthma and deprivation" and entry["projectIdText"].startswith("P")
    # the three legal bases kept apart, each in the schema's own words
    assert entry["legalBasisForDataArticle6"].startswith("(e) processing is necessary for the performance of a task")
    assert entry["legalBasisForDataArticle9"].startswith("(j) processing is necessary for archiving purposes")
    assert entry["dutyOfConfidentiality"] == "Section 251 NHS Act 2006"
    assert entry["nationalDataOptOut"] == "Yes"
    assert entry["fundersAndSponsors"] == ["NIHR"]
    assert entry["organisationName"] == "Queen Mary University of London"
    assert entry["organisationId"] == "https://ror.org/026zzn846"
    assert entry["organisationSector"] == "Academic Institute"
    with world() as s:
        lead = f.user(s, "researcher").display_name
    assert entry["applicantNames"][0] == lead
    assert entry["technicalSummary"].startswith("Cohort study of asthma exacerbations")
    assert entry["otherApprovalCommittees"] == ["London SDE Data Access Committee (with lay members)",
                                                "Research ethics committee: REC 24/LO/0001"]
    assert entry["accessType"] == "TRE" and entry["dataSensitivityLevel"] == "De-Personalised"
    assert "Variables approved:" in entry["confidentialDataDescription"]
    assert entry["datasetLinkageDescription"]  # patients and conditions: two linked datasets
    assert entry["privacyEnhancements"] and entry["researchOutputs"] == []


def test_the_schema_test_can_fail(client: FlaskClient, world: sessionmaker[Session]) -> None:
    """What the old register wrote (a merged legal basis, a free-text opt-out) is refused by the schema."""
    f.approved_project(world)
    entry = client.get(GATEWAY_JSON).json[0]
    for field, bad in (("nationalDataOptOut", True), ("legalBasisForDataArticle6", "UK GDPR Article 6(1)(e)"),
                       ("accessType", "trusted research environment"), ("projectStartDate", "4 August 2031"),
                       ("organisationId", "not a url")):
        with pytest.raises(jsonschema.ValidationError):
            validator().validate([{**entry, field: bad}])


def test_html_and_csv_keep_readable_titles_and_the_bases_apart(client: FlaskClient,
                                                               world: sessionmaker[Session]) -> None:
    f.approved_project(world, title="=HYPERLINK(\"http://evil\") asthma")
    rows = list(csv.DictReader(io.StringIO(client.get("/register.csv").get_data(as_text=True))))
    assert list(rows[0]) == COLUMNS
    row = rows[0]
    assert row["Project Title"].startswith("'=")  # formula-safe through gateway/csv_safe.py
    assert row["Legal Basis (Article 6)"] == "UK GDPR Article 6(1)(e) (public task)"
    assert row["Lawful Condition (Article 9)"] == "UK GDPR Article 9(2)(j) (research and statistics)"
    assert row["Common Law Duty of Confidentiality"].startswith("Section 251 support")
    assert row["Funders / Sponsors"] == "NIHR" and row["Organisation ID"] == "https://ror.org/026zzn846"
    html = client.get("/register").get_data(as_text=True)
    for title in ("Legal Basis (Article 6)", "Lawful Condition (Article 9)", "Agreed Quote", "Invoiced to Date",
                  "Funders / Sponsors", "Applicant Name(s)"):
        assert title in html
    assert 'href="https://ror.org/026zzn846"' in html and 'href="/charging/tariff"' in html


def test_register_charges_are_the_agreed_quote_and_what_was_invoiced(client: FlaskClient,
                                                                     world: sessionmaker[Session]) -> None:
    project_id = f.approved_project(world)
    with world() as s:
        project = s.get(Project, project_id)
        assert project is not None
        quote = quotes.price_basis(s, project)
        assert quote is not None and quote.total_pence > 0
        agreed = quote.total_pence
    entry = client.get("/register.json").json[0]["project"]["londonsde"]["charges"]
    assert entry["agreedQuotePence"] == agreed and entry["invoicedToDatePence"] == 0
    assert entry["agreedQuote"] == format_money(agreed)

    now = utcnow()
    month = metering.period_of(now)
    next_month = (now.date().replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    with unit_of_work(world) as s:
        created = invoices.run_month(s, f.user(s, "finance"), month, next_month).created
        assert len(created) == 1
        invoice_id = created[0].id
    # a draft invoice is not invoiced yet
    assert client.get("/register.json").json[0]["project"]["londonsde"]["charges"]["invoicedToDatePence"] == 0
    with unit_of_work(world) as s:
        invoice = s.get(Invoice, invoice_id)
        assert invoice is not None
        invoices.issue(s, f.user(s, "finance"), invoice, f.TODAY)
        issued = invoice.total_pence
        note = invoices.credit_note(s, f.user(s, "finance"), invoice, 1000, "Goodwill", f.TODAY)
        credited = note.total_pence
    assert issued > credited > 0
    charges = client.get("/register.json").json[0]["project"]["londonsde"]["charges"]
    assert client.get(GATEWAY_JSON).json[0]["londonsde"]["charges"] == charges
    assert charges["invoicedToDatePence"] == issued - credited
    assert charges["agreedQuotePence"] == agreed
    row = next(csv.DictReader(io.StringIO(client.get("/register.csv").get_data(as_text=True))))
    assert row["Agreed Quote"] == format_money(agreed)
    assert row["Invoiced to Date"] == format_money(issued - credited)
    html = client.get("/register").get_data(as_text=True)
    assert format_money(agreed) in html and format_money(issued - credited) in html


def test_publications_are_linked_by_members_with_a_valid_doi_and_audited(client: FlaskClient,
                                                                        world: sessionmaker[Session]) -> None:
    project_id = f.approved_project(world)
    with unit_of_work(world) as s:
        project = s.get(Project, project_id)
        assert project is not None
        publications.link_publication(s, f.user(s, "researcher"), project, "https://doi.org/10.1136/BMJ.N1234",
                                      "Asthma admissions and deprivation in London")
    for doi, title, field in (("not-a-doi", "T", "doi"), ("10.12/x", "T", "doi"), ("10.1136/bmj.n1234", "T", "doi"),
                              ("10.1000/xyz", "  ", "title"), ("10.1000/a b", "T", "doi")):
        with unit_of_work(world) as s, pytest.raises(ValidationError) as caught:
            project = s.get(Project, project_id)
            assert project is not None
            publications.link_publication(s, f.user(s, "researcher"), project, doi, title)
        assert field in caught.value.field_errors, (doi, title)
    for outsider in ("researcher2", "dacchair", "admin"):
        with unit_of_work(world) as s, pytest.raises(PermissionDenied):
            project = s.get(Project, project_id)
            assert project is not None
            publications.link_publication(s, f.user(s, outsider), project, "10.1000/other", "Other")
    with world() as s:
        assert [p.doi for p in s.scalars(select(Publication))] == ["10.1136/bmj.n1234"]
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "publication.linked")).one()
        assert event.details["doi"] == "10.1136/bmj.n1234" and event.actor_label == "researcher"
    entry = client.get(GATEWAY_JSON).json[0]
    assert entry["researchOutputs"] == ["https://doi.org/10.1136/bmj.n1234"]
    validator().validate([entry])
    record = client.get("/register.json").json[0]
    assert record["outputs"] == ["https://doi.org/10.1136/bmj.n1234"]
    assert_official(record)
    html = client.get("/register").get_data(as_text=True)
    assert 'href="https://doi.org/10.1136/bmj.n1234"' in html

    # the page: a bad DOI re-renders with its message (422); a good one is linked; another member's client cannot
    from tests.integration.test_pages import csrf_from

    sign_in_session(client, world, "researcher")
    token = csrf_from(client.get(f"/projects/{project_id}/outputs").get_data(as_text=True))
    bad = client.post(f"/projects/{project_id}/publications", data={"csrf_token": token, "doi": "nonsense",
                                                                      "title": "A title"})
    # the outputs and publications page again, keeping what was typed
    again = bad.get_data(as_text=True)
    assert bad.status_code == 422 and "Enter a DOI" in again and 'value="A title"' in again
    assert re.search(r'aria-current="page"><span class="nhsuk-contents-list__current">Outputs and publications<', again)
    good = client.post(f"/projects/{project_id}/publications", data={"csrf_token": token, "doi": "doi:10.1000/182",
                                                                       "title": "The DOI handbook"})
    assert good.status_code == 302 and good.headers["Location"] == f"/projects/{project_id}/outputs"
    assert "The DOI handbook" in client.get(good.headers["Location"]).get_data(as_text=True)
    sign_in_session(client, world, "dacchair")
    token = csrf_from(client.get(f"/projects/{project_id}/outputs").get_data(as_text=True))
    refused = client.post(f"/projects/{project_id}/publications", data={"csrf_token": token, "doi": "10.1000/183",
                                                                          "title": "Not theirs"})
    assert refused.status_code == 403
    with world() as s:
        assert sorted(p.doi for p in s.scalars(select(Publication))) == ["10.1000/182", "10.1136/bmj.n1234"]


def test_organisation_identifier_absent_is_left_out_not_guessed(client: FlaskClient,
                                                                 world: sessionmaker[Session]) -> None:
    f.approved_project(world)
    with unit_of_work(world) as s:
        for org in s.scalars(select(Organisation)):
            org.identifier = None
    entry = client.get(GATEWAY_JSON).json[0]
    assert "organisationId" not in entry
    validator().validate([entry])
    record = client.get("/register.json").json[0]
    assert "identifier" not in record["people"]["organisation"]
    assert_official(record)


def test_an_administrator_records_the_ror_identifier_checked_for_form(world: sessionmaker[Session]) -> None:
    from projects import organisations

    with unit_of_work(world) as s:
        org = organisations.create_organisation(s, f.user(s, "admin"), "Health Charity", "charity", "ror.org/02wnqcb97")
        assert org.identifier == "https://ror.org/02wnqcb97"
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "organisation.created",
                                                   AuditEvent.object_id == str(org.id))).one()
        assert event.details["identifier"] == "https://ror.org/02wnqcb97"
    for bad in ("https://example.org/02wnqcb97", "ror.org/12wnqcb97", "https://ror.org/02wnqcb9", "javascript:x"):
        with unit_of_work(world) as s, pytest.raises(ValidationError) as caught:
            organisations.create_organisation(s, f.user(s, "admin"), f"Other {bad}", "charity", bad)
        assert "identifier" in caught.value.field_errors
