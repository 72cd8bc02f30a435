"""API operations for output requests: the researcher's requests and the output checkers' review."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.models import User
from gateway.outputs import service
from gateway.outputs.models import OutputFile, OutputRequest
from gateway.permissions import Permission
from gateway.web.context import db, require_user, run, settings
from gateway.web.outputs import package_response
from gateway.web.recorded import records_download
from projects import lifecycle

from .base import api


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExceptionDecisionOut(BaseModel):
    checker: str
    decision: str
    reason: str
    decided_at: dt.datetime


class OutputExceptionOut(BaseModel):
    sha256: str = Field(description="The file's SHA-256 the exception was asked for; another version is not covered")
    justification: str
    justification_sha256: str = Field(description="The SHA-256 of the justification's UTF-8 text; send it with your "
                                                   "answer to answer these words")
    requested_by: str
    requested_at: dt.datetime
    decisions: list[ExceptionDecisionOut] = Field(description="Those you may see: checkers their own until both "
                                                              "reviews are in; researchers once the round ends")


class OutputFileOut(BaseModel):
    id: int
    path: str
    kind: str
    group: str
    version: int
    sha256: str
    size: int
    check_status: str
    exception: OutputExceptionOut | None


class OutputGroupOut(BaseModel):
    id: int
    name: str
    context: str
    controls: str


class OutputRequestOut(BaseModel):
    id: int
    project: str
    author: str
    title: str
    state: str
    round: int
    submitted_at: dt.datetime | None
    released_at: dt.datetime | None
    package_sha256: str | None
    groups: list[OutputGroupOut]
    files: list[OutputFileOut]
    submission_problems: list[str]

    @classmethod
    def of(cls, r: OutputRequest, user: User) -> OutputRequestOut:
        return cls(id=r.id, project=r.project.reference, author=r.author.username, title=r.title, state=r.state,
                   round=r.round, submitted_at=r.submitted_at, released_at=r.released_at,
                   package_sha256=r.package_sha256,
                   groups=[OutputGroupOut(id=g.id, name=g.name, context=g.context, controls=g.controls)
                           for g in r.groups],
                   files=[OutputFileOut(id=f.id, path=f.path, kind=f.kind, group=f.group.name, version=f.version,
                                        sha256=f.sha256, size=f.size, check_status=f.check_status,
                                        exception=_exception_out(r, f, user)) for f in r.files],
                   submission_problems=service.submission_problems(r) if r.author_id == user.id else [])


def _exception_out(r: OutputRequest, item: OutputFile, user: User) -> OutputExceptionOut | None:
    found = service.current_exception(r, item)
    if found is None:
        return None
    return OutputExceptionOut(
        sha256=found.file_sha256, justification=found.justification,
        justification_sha256=found.justification_sha256, requested_by=found.requested_by.username,
        requested_at=found.requested_at,
        decisions=[ExceptionDecisionOut(checker=d.checker.username, decision=d.decision, reason=d.reason,
                                        decided_at=d.decided_at)
                   for d in service.visible_exception_decisions(user, r, found)])


class OutputRequestCreate(Strict):
    title: str = Field(min_length=1, max_length=200)


class GroupIn(Strict):
    name: str = Field(min_length=1, max_length=100)
    context: str = Field(default="", max_length=10000, description="What it shows, the population, the variables")
    controls: str = Field(default="", max_length=10000, description="The disclosure controls applied")


ROUND_HELP = ("The round you read (the request's `round`). If the request has been returned and resubmitted since, "
              "nothing is recorded and the answer is 409; without it, the current round is acted on")


class RoundQuery(Strict):
    round: int | None = Field(default=None, ge=1, description=ROUND_HELP)


class VoteIn(Strict):
    vote: Literal["approve", "changes_requested"]
    round: int | None = Field(default=None, ge=1, description=ROUND_HELP)


class DecisionIn(Strict):
    outcome: Literal["approve", "return", "reject"]
    comment: str = Field(default="", max_length=10000, description="Public; needed to return or reject")
    round: int | None = Field(default=None, ge=1, description=ROUND_HELP)


class ExceptionIn(Strict):
    justification: str = Field(min_length=1, max_length=10000,
                               description="Why the failing file is safe to release; read by both checkers")


class ExceptionDecisionIn(Strict):
    decision: Literal["accept", "refuse"]
    reason: str = Field(min_length=1, max_length=10000, description="Recorded in the audit log and the manifest")
    round: int | None = Field(default=None, ge=1, description=ROUND_HELP)
    justification_sha256: str | None = Field(
        default=None, pattern="^[0-9a-f]{64}$",
        description="The `justification_sha256` of the exception you read. The author may reword it until a checker "
                    "has answered; if the words have changed since, nothing is recorded and the answer is 409")


class GroupVoteIn(Strict):
    vote: Literal["approve", "changes_requested"]
    comment: str = Field(default="", max_length=10000, description="Public once the round ends; optional")
    round: int | None = Field(default=None, ge=1, description=ROUND_HELP)


class ReturnIn(Strict):
    comment: str = Field(min_length=1, max_length=10000, description="Public: what the researcher should change")
    round: int | None = Field(default=None, ge=1, description=ROUND_HELP)


def _load(request_id: int) -> OutputRequest:
    return service.get_request(db(), require_user(), request_id)


def _out(r: OutputRequest) -> OutputRequestOut:
    return OutputRequestOut.of(r, require_user())


@api.operation("/output-requests", "GET", summary="Output requests of your projects", tag="outputs",
               permission=Permission.VIEW_PROJECTS, response=OutputRequestOut, response_is_list=True)
def list_output_requests() -> list[OutputRequestOut]:
    return [_out(r) for r in service.requests_for(db(), require_user())]


@api.operation("/output-requests/queue", "GET", summary="The output checker's queue", tag="outputs",
               permission=Permission.REVIEW_OUTPUTS, response=OutputRequestOut, response_is_list=True)
def output_queue() -> list[OutputRequestOut]:
    return [_out(r) for r in service.queue(db(), require_user(), whole=True)]


@api.operation("/projects/<int:project_id>/output-requests", "POST", summary="Start an output request",
               tag="outputs", permission=Permission.REQUEST_OUTPUTS, body=OutputRequestCreate,
               response=OutputRequestOut, status=201, errors=(409,))
def create_output_request(project_id: int, body: OutputRequestCreate) -> OutputRequestOut:
    project = lifecycle.get_project(db(), require_user(), project_id)
    return _out(run(service.create_request, require_user(), project, body.title))


@api.operation("/output-requests/<int:request_id>", "GET", summary="One output request", tag="outputs",
               permission=Permission.VIEW_PROJECTS, response=OutputRequestOut)
def get_output_request(request_id: int) -> OutputRequestOut:
    return _out(_load(request_id))


@api.operation("/output-requests/<int:request_id>/groups", "POST", summary="Add a group with its context and controls",
               tag="outputs", permission=Permission.REQUEST_OUTPUTS, body=GroupIn, response=OutputRequestOut,
               errors=(409,))
def add_output_group(request_id: int, body: GroupIn) -> OutputRequestOut:
    item = _load(request_id)
    run(service.save_group, require_user(), item, body.name, body.context, body.controls)
    return _out(item)


@api.operation("/output-requests/<int:request_id>/submit", "POST", summary="Submit (or resubmit) for checking",
               tag="outputs", permission=Permission.REQUEST_OUTPUTS, response=OutputRequestOut, errors=(409,))
def submit_output_request(request_id: int) -> OutputRequestOut:
    item = _load(request_id)
    run(service.submit, require_user(), item, settings())
    return _out(item)


@api.operation("/output-requests/<int:request_id>/withdraw", "POST", summary="Withdraw (the author only)",
               tag="outputs", permission=Permission.REQUEST_OUTPUTS, response=OutputRequestOut, errors=(409,))
def withdraw_output_request(request_id: int) -> OutputRequestOut:
    item = _load(request_id)
    run(service.withdraw, require_user(), item)
    return _out(item)


@api.operation("/output-requests/<int:request_id>/files/<int:file_id>/vote", "PUT",
               summary="Your vote on one file (blinded until both reviews are in)", tag="outputs",
               permission=Permission.REVIEW_OUTPUTS, body=VoteIn, errors=(409,))
def vote_output_file(request_id: int, file_id: int, body: VoteIn) -> None:
    item = _load(request_id)
    run(service.vote, require_user(), item, service.get_file(item, file_id), body.vote, body.round)


@api.operation("/output-requests/<int:request_id>/reviews", "POST", summary="Submit your review of this round",
               tag="outputs", permission=Permission.REVIEW_OUTPUTS, query=RoundQuery, response=OutputRequestOut,
               errors=(409,))
def submit_output_review(request_id: int, query: RoundQuery) -> OutputRequestOut:
    item = _load(request_id)
    run(service.submit_review, require_user(), item, query.round)
    return _out(item)


@api.operation("/output-requests/<int:request_id>/decision", "POST",
               summary="Approve, return or reject after two reviews", tag="outputs",
               permission=Permission.REVIEW_OUTPUTS, body=DecisionIn, response=OutputRequestOut, errors=(409,))
def decide_output_request(request_id: int, body: DecisionIn) -> OutputRequestOut:
    item = _load(request_id)
    run(service.decide, require_user(), item, body.outcome, body.comment, body.round)
    return _out(item)


@api.operation("/output-requests/<int:request_id>/files/<int:file_id>/exception", "POST",
               summary="Ask for an exception on a file whose automatic check failed (bound to its bytes)",
               tag="outputs", permission=Permission.REQUEST_OUTPUTS, body=ExceptionIn, response=OutputRequestOut,
               errors=(409,))
def request_output_exception(request_id: int, file_id: int, body: ExceptionIn) -> OutputRequestOut:
    item = _load(request_id)
    run(service.request_exception, require_user(), item, service.get_file(item, file_id), body.justification,
        settings())
    return _out(item)


@api.operation("/output-requests/<int:request_id>/files/<int:file_id>/exception/decision", "PUT",
               summary="Accept or refuse a file's exception, with a reason", tag="outputs",
               permission=Permission.REVIEW_OUTPUTS, body=ExceptionDecisionIn, response=OutputRequestOut,
               errors=(409,))
def decide_output_exception(request_id: int, file_id: int, body: ExceptionDecisionIn) -> OutputRequestOut:
    item = _load(request_id)
    run(service.decide_exception, require_user(), item, service.get_file(item, file_id), body.decision, body.reason,
        settings(), body.round, body.justification_sha256)
    return _out(item)


@api.operation("/output-requests/<int:request_id>/return", "POST",
               summary="Return the request to the researcher before both reviews are in", tag="outputs",
               permission=Permission.REVIEW_OUTPUTS, body=ReturnIn, response=OutputRequestOut, errors=(409,))
def return_output_request(request_id: int, body: ReturnIn) -> OutputRequestOut:
    item = _load(request_id)
    run(service.return_early, require_user(), item, body.comment, body.round)
    return _out(item)


@api.operation("/output-requests/<int:request_id>/groups/<int:group_id>/vote", "PUT",
               summary="Your vote on every output file of a group (e.g. request changes on the whole group)",
               tag="outputs", permission=Permission.REVIEW_OUTPUTS, body=GroupVoteIn, response=OutputRequestOut,
               errors=(409,))
def vote_output_group(request_id: int, group_id: int, body: GroupVoteIn) -> OutputRequestOut:
    item = _load(request_id)
    run(service.vote_group, require_user(), item, service.get_group(item, group_id), body.vote, body.comment,
        body.round)
    return _out(item)


@api.operation("/output-requests/<int:request_id>/comments/<int:comment_id>/publish", "POST",
               summary="Make your private comment public (researchers see it once the round ends)", tag="outputs",
               permission=Permission.REVIEW_OUTPUTS, response=OutputRequestOut, errors=(409,))
def publish_output_comment(request_id: int, comment_id: int) -> OutputRequestOut:
    user = require_user()
    item = _load(request_id)
    service.check_can_review(user, item)
    run(service.publish_comment, user, item, service.get_comment(user, item, comment_id))
    return _out(item)


@api.operation("/output-requests/<int:request_id>/package", "GET", summary="Download the released package (zip)",
               tag="outputs", permission=Permission.VIEW_PROJECTS, produces=("application/zip",), errors=(409,))
@records_download("output_request", "request_id")
def get_output_package(request_id: int) -> object:
    return package_response(_load(request_id), require_user())
