"""API operations for the software in the workspace and package requests (the same services as the pages)."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field

from gateway.permissions import Permission
from gateway.web.context import db, require_user, run
from gateway.workspaces import packages
from gateway.workspaces.models import PackageRequest

from .base import api


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PackageOut(BaseModel):
    name: str
    version: str


class SoftwareOut(BaseModel):
    python: list[PackageOut]
    r: list[PackageOut]


class PackageRequestIn(Strict):
    ecosystem: str = Field(max_length=10, description="python or r")
    name: str = Field(max_length=100)
    version: str = Field(default="", max_length=50)
    reason: str = Field(max_length=packages.MAX_REASON)


class RefuseIn(Strict):
    reason: str = Field(max_length=packages.MAX_REASON)


class ApproveIn(Strict):
    reason: str = Field(default="", max_length=packages.MAX_REASON)


class PackageRequestOut(BaseModel):
    id: int
    ecosystem: str
    name: str
    version: str
    reason: str
    state: str
    state_label: str
    requested_by: str
    requested_at: dt.datetime
    decided_at: dt.datetime | None
    decision_reason: str | None

    @classmethod
    def of(cls, r: PackageRequest) -> PackageRequestOut:
        return cls(id=r.id, ecosystem=r.ecosystem, name=r.name, version=r.version, reason=r.reason, state=r.state,
                   state_label=packages.STATE_LABELS[r.state], requested_by=r.requested_by.username,
                   requested_at=r.requested_at, decided_at=r.decided_at, decision_reason=r.decision_reason)


@api.operation("/software", "GET", summary="The software in every workspace, with versions (no token needed)",
               tag="workspaces", permission=None, response=SoftwareOut)
def get_software() -> SoftwareOut:
    listed = packages.approved_software()
    return SoftwareOut(**{eco: [PackageOut(name=p.name, version=p.version) for p in found]
                          for eco, found in listed.items()})


@api.operation("/me/package-requests", "GET", summary="Your package requests, newest first", tag="workspaces",
               permission=Permission.REQUEST_PACKAGES, response=PackageRequestOut, response_is_list=True)
def list_my_package_requests() -> list[PackageRequestOut]:
    return [PackageRequestOut.of(r) for r in packages.my_requests(db(), require_user())]


@api.operation("/package-requests", "POST", summary="Ask for a package in the workspace", tag="workspaces",
               permission=Permission.REQUEST_PACKAGES, body=PackageRequestIn, response=PackageRequestOut, status=201,
               errors=(409,))
def create_package_request(body: PackageRequestIn) -> PackageRequestOut:
    made = run(packages.request_package, require_user(), body.ecosystem, body.name, body.version, body.reason)
    return PackageRequestOut.of(made)


@api.operation("/package-requests", "GET", summary="Every package request, waiting ones first (administrators)",
               tag="workspaces", permission=Permission.MANAGE_PACKAGES, response=PackageRequestOut,
               response_is_list=True)
def list_package_requests() -> list[PackageRequestOut]:
    return [PackageRequestOut.of(r) for r in packages.queue(db(), require_user())]


@api.operation("/package-requests/<int:package_request_id>/approve", "POST", summary="Approve a package request",
               tag="workspaces", permission=Permission.MANAGE_PACKAGES, body=ApproveIn, response=PackageRequestOut,
               errors=(409,))
def approve_package_request(package_request_id: int, body: ApproveIn) -> PackageRequestOut:
    user = require_user()
    found = packages.get_request(db(), user, package_request_id)
    return PackageRequestOut.of(run(packages.decide, user, found, True, body.reason))


@api.operation("/package-requests/<int:package_request_id>/refuse", "POST",
               summary="Refuse a package request (a reason is required)", tag="workspaces",
               permission=Permission.MANAGE_PACKAGES, body=RefuseIn, response=PackageRequestOut, errors=(409,))
def refuse_package_request(package_request_id: int, body: RefuseIn) -> PackageRequestOut:
    user = require_user()
    found = packages.get_request(db(), user, package_request_id)
    return PackageRequestOut.of(run(packages.decide, user, found, False, body.reason))
