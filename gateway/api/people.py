"""Safe people in the API: organisations, membership and accreditation. Same services as the pages."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any, Literal

from flask import request, send_file
from pydantic import BaseModel, ConfigDict, Field

from gateway.identity import accounts
from gateway.permissions import Permission
from gateway.web.accreditation import certificate_store, upload_from
from gateway.web.context import db, require_user, run
from gateway.web.recorded import records_download
from projects import accreditation as service
from projects import organisations
from projects.accreditation_rules import is_valid
from projects.models import Accreditation, Organisation

from .base import api

OrgType = Literal["nhs", "academic", "charity", "public_sector", "commercial"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OrganisationOut(BaseModel):
    id: int
    name: str
    org_type: str
    created_at: dt.datetime

    @classmethod
    def of(cls, organisation: Organisation) -> OrganisationOut:
        return cls(id=organisation.id, name=organisation.name, org_type=organisation.org_type,
                   created_at=organisation.created_at)


class OrganisationCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    org_type: OrgType


class UserOrganisationIn(Strict):
    organisation_id: int | None = Field(description="The organisation, or null to clear it")


class UserOrganisationOut(BaseModel):
    user_id: int
    username: str
    organisation_id: int | None


class AccreditationOut(BaseModel):
    id: int
    user_id: int
    username: str
    scheme: str
    level: str
    number: str
    training_date: dt.date
    expiry_date: dt.date
    supervisor_username: str | None
    status: str = Field(description="pending, verified or rejected")
    valid: bool = Field(description="Verified and not expired today (derived)")
    status_text: str
    certificate_name: str | None
    certificate_type: str | None
    certificate_sha256: str | None
    decided_at: dt.datetime | None
    decision_reason: str | None
    created_at: dt.datetime

    @classmethod
    def of(cls, a: Accreditation) -> AccreditationOut:
        return cls(id=a.id, user_id=a.user_id, username=a.user.username, scheme=a.scheme, level=a.level,
                   number=a.number, training_date=a.training_date, expiry_date=a.expiry_date,
                   supervisor_username=a.supervisor.username if a.supervisor else None, status=a.status,
                   valid=is_valid(a), status_text=service.status_text(a), certificate_name=a.certificate_name,
                   certificate_type=a.certificate_type, certificate_sha256=a.certificate_sha256,
                   decided_at=a.decided_at, decision_reason=a.decision_reason, created_at=a.created_at)


class AccreditationForm(Strict):
    scheme: str = Field(max_length=200, description=f"One of {', '.join(service.SCHEMES)} or 'Other'")
    other_scheme: str = Field(default="", max_length=200, description="The scheme's name when scheme is 'Other'")
    level: Literal["full", "provisional"]
    number: str = Field(max_length=100)
    training_date: dt.date
    expiry_date: dt.date
    supervisor: str = Field(default="", max_length=64, description="Supervisor's username (provisional only)")


class QueueQuery(Strict):
    status: Literal["pending", "verified", "rejected", "all"] = "pending"


class RejectIn(Strict):
    reason: str = Field(max_length=2000)


@api.operation("/organisations", "GET", summary="All organisations", tag="people",
               permission=Permission.MANAGE_ORGANISATIONS, response=OrganisationOut, response_is_list=True)
def list_organisations() -> list[OrganisationOut]:
    return [OrganisationOut.of(o) for o in organisations.list_organisations(db(), require_user())]


@api.operation("/organisations", "POST", summary="Create an organisation", tag="people",
               permission=Permission.MANAGE_ORGANISATIONS, body=OrganisationCreate, response=OrganisationOut,
               status=201)
def create_organisation(body: OrganisationCreate) -> OrganisationOut:
    return OrganisationOut.of(run(organisations.create_organisation, require_user(), body.name, body.org_type))


@api.operation("/users/<int:user_id>/organisation", "PUT", summary="Set or clear the organisation a person is at",
               tag="people", permission=Permission.MANAGE_ORGANISATIONS, body=UserOrganisationIn,
               response=UserOrganisationOut)
def set_user_organisation(user_id: int, body: UserOrganisationIn) -> UserOrganisationOut:
    person = accounts.get_user(db(), user_id)
    organisation = (organisations.get_organisation(db(), body.organisation_id)
                    if body.organisation_id is not None else None)
    run(organisations.assign_user, require_user(), person, organisation)
    return UserOrganisationOut(user_id=person.id, username=person.username, organisation_id=person.organisation_id)


@api.operation("/me/accreditations", "GET", summary="Your accreditation records, newest first", tag="accreditation",
               permission=Permission.RECORD_ACCREDITATION, response=AccreditationOut, response_is_list=True)
def list_my_accreditations() -> list[AccreditationOut]:
    return [AccreditationOut.of(a) for a in service.list_mine(db(), require_user())]


@api.operation("/accreditations", "GET", summary="The accreditation officer's queue (pending by default)",
               tag="accreditation", permission=Permission.VERIFY_ACCREDITATION, query=QueueQuery,
               response=AccreditationOut, response_is_list=True)
def list_accreditation_queue(query: QueueQuery) -> list[AccreditationOut]:
    status = None if query.status == "all" else query.status
    return [AccreditationOut.of(a) for a in service.list_for_officer(db(), require_user(), status)]


@api.operation("/accreditations", "POST", summary="Record an accreditation with its certificate (PDF or PNG, < 5 MB)",
               tag="accreditation", permission=Permission.RECORD_ACCREDITATION, form=AccreditationForm,
               files=("certificate",), response=AccreditationOut, status=201)
def create_accreditation(body: AccreditationForm) -> AccreditationOut:
    data = service.AccreditationInput(scheme=body.scheme, other_scheme=body.other_scheme, level=body.level,
                                      number=body.number, training_date=body.training_date,
                                      expiry_date=body.expiry_date, supervisor_username=body.supervisor)
    created = run(service.record_accreditation, require_user(), certificate_store(), data,
                  upload_from(request.files.get("certificate")))
    return AccreditationOut.of(created)


@api.operation("/accreditations/<int:accreditation_id>", "GET", summary="One accreditation (owner or officer)",
               tag="accreditation", permission=Permission.USE_ACCOUNT, response=AccreditationOut)
def get_accreditation(accreditation_id: int) -> AccreditationOut:
    return AccreditationOut.of(service.get_accreditation(db(), require_user(), accreditation_id))


@api.operation("/accreditations/<int:accreditation_id>/certificate", "GET",
               summary="Download the certificate (owner or officer)", tag="accreditation",
               permission=Permission.USE_ACCOUNT, produces=("application/pdf", "image/png"))
@records_download("accreditation", "accreditation_id")
def get_accreditation_certificate(accreditation_id: int) -> Any:
    user = require_user()
    accreditation = service.get_accreditation(db(), user, accreditation_id)
    data, content_type, name = service.read_certificate(db(), user, certificate_store(), accreditation)
    response = send_file(io.BytesIO(data), mimetype=content_type, as_attachment=True, download_name=name)
    response.headers["Content-Security-Policy"] = "sandbox; default-src 'none'"
    return response


@api.operation("/accreditations/<int:accreditation_id>/verify", "POST", summary="Verify a pending accreditation",
               tag="accreditation", permission=Permission.VERIFY_ACCREDITATION, response=AccreditationOut,
               errors=(409,))
def verify_accreditation(accreditation_id: int) -> AccreditationOut:
    user = require_user()
    accreditation = service.get_accreditation(db(), user, accreditation_id)
    run(service.verify_accreditation, user, accreditation)
    return AccreditationOut.of(accreditation)


@api.operation("/accreditations/<int:accreditation_id>/reject", "POST",
               summary="Reject a pending accreditation (a reason is required)", tag="accreditation",
               permission=Permission.VERIFY_ACCREDITATION, body=RejectIn, response=AccreditationOut, errors=(409,))
def reject_accreditation(accreditation_id: int, body: RejectIn) -> AccreditationOut:
    user = require_user()
    accreditation = service.get_accreditation(db(), user, accreditation_id)
    run(service.reject_accreditation, user, accreditation, body.reason)
    return AccreditationOut.of(accreditation)
