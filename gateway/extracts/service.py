"""Extracts inside the gateway: the project's key, builds run by the worker, versions, custodian release.

The engine (pipeline.py) knows nothing of projects or databases; this module turns an approved project into
an extract specification, runs builds from the outbox so a decision never waits on (or is undone by) a build,
records every version with its manifest, and destroys the project's key when the project closes.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session, sessionmaker

from gateway import audit, outbox
from gateway.config import Settings
from gateway.db import on_commit, unit_of_work, utcnow
from gateway.errors import Conflict, NotFound, PermissionDenied, ValidationError
from gateway.extracts import storage
from gateway.extracts.models import ExtractBuild, ExtractVersion, ProjectKey
from gateway.extracts.pipeline import Manifest, build_extract
from gateway.extracts.pseudonym import key_fingerprint, new_project_key
from gateway.extracts.spec import DateRange, ExtractSpec, Generalisation
from gateway.models import User
from gateway.permissions import Permission, check_permission
from gateway.workspaces.entitlement import workspace_id
from projects.cohort import to_spec
from projects.lifecycle import is_member
from projects.models import Project
from projects.workflow import ProjectState

log = logging.getLogger(__name__)


# --- the project's key ---------------------------------------------------------------------------------

def key_path(settings: Settings, project: Project) -> Path:
    return settings.keys_dir / f"{workspace_id(project)}.key"


def project_key(session: Session, settings: Settings, project: Project) -> bytes:
    """The project's pseudonym key, made on first use and kept for every refresh until the project closes."""
    record = session.get(ProjectKey, project.id)
    path = key_path(settings, project)
    if record is not None and record.destroyed_at is not None:
        raise Conflict(f"The key of {project.reference} was destroyed when the project closed; no extract can be "
                       "built or re-linked.")
    if record is not None:
        return path.read_bytes()
    key = new_project_key()
    settings.keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    # A file without a record is an orphan (from a database that was replaced): never reuse it.
    temporary = path.with_suffix(".new")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    os.replace(temporary, path)
    session.add(ProjectKey(project_id=project.id, fingerprint=key_fingerprint(key)))
    session.flush()
    audit.record(session, "system", "extract.key_created", "project", project.id,
                 {"fingerprint": key_fingerprint(key)})
    return key


def destroy_key(session: Session, settings: Settings, project: Project) -> None:
    """Overwrite and delete the key file: pseudonyms of this project can never be re-linked again."""
    record = session.get(ProjectKey, project.id)
    if record is None or record.destroyed_at is not None:
        return
    path = key_path(settings, project)
    if path.exists():
        size = path.stat().st_size
        with path.open("r+b") as handle:
            handle.write(os.urandom(size))
            handle.flush()
            os.fsync(handle.fileno())
        path.unlink()
    record.destroyed_at = utcnow()
    audit.record(session, "system", "extract.key_destroyed", "project", project.id,
                 {"fingerprint": record.fingerprint})


# --- specification -----------------------------------------------------------------------------------------

def spec_for(project: Project, key: bytes, k: int) -> ExtractSpec:
    """Exactly the approved variables, cohort and date range; the national data opt-out and the generalisation of
    quasi-identifiers as approved."""
    datasets: dict[str, list[str]] = defaultdict(list)
    for row in project.variables:
        datasets[row.dataset].append(row.variable)
    start = project.date_from or dt.date(1900, 1, 1)
    end = project.date_to or project.end_date
    return ExtractSpec(project_id=workspace_id(project), key=key, datasets=dict(datasets), cohort=to_spec(project),
                       date_range=DateRange(start=start, end=end), apply_opt_out=project.opt_out_applies,
                       generalisation=Generalisation(**(project.generalisation or {})), k=k)


# --- builds -------------------------------------------------------------------------------------------------

def request_build(session: Session, project: Project, reason: str, requested_by: User | str) -> ExtractBuild:
    """Queue a build (run by the worker); the request commits with whatever asked for it."""
    build = ExtractBuild(project_id=project.id, reason=reason[:200],
                         requested_by=requested_by.username if isinstance(requested_by, User) else requested_by)
    session.add(build)
    session.flush()
    outbox.enqueue(session, "extract.build", {"build_id": build.id}, dedupe_key=f"extract-build:{build.id}")
    audit.record(session, requested_by, "extract.build_requested", "project", project.id,
                 {"build": build.id, "reason": reason})
    return build


def refresh(session: Session, actor: User, project: Project) -> ExtractBuild:
    check_permission(actor, Permission.RELEASE_EXTRACTS)
    if project.state != "active":
        raise Conflict(f"Extracts are built only for active projects; {project.reference} is {project.state}.")
    return request_build(session, project, "refresh requested", actor)


class _Progress:
    """Writes the build's progress at most once a second, each in its own short transaction."""

    def __init__(self, factory: sessionmaker[Session], build_id: int) -> None:
        self.factory, self.build_id, self.last = factory, build_id, 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last < 1.0 and done < total:
            return
        self.last = now
        with unit_of_work(self.factory) as session:
            build = session.get(ExtractBuild, self.build_id)
            if build is not None:
                build.rows_done, build.rows_total = done, total


def run_build(settings: Settings, factory: sessionmaker[Session], build_id: int,
              progress: Any = None) -> ExtractVersion | None:
    """Run one queued build. A crash leaves the previous version live and no partial version visible."""
    with unit_of_work(factory) as session:
        build = session.get(ExtractBuild, build_id)
        if build is None or build.state == "done":
            return None  # already done: a repeated delivery does nothing
        project = session.get(Project, build.project_id)
        assert project is not None
        build.state, build.started_at, build.error = "running", utcnow(), None
        spec = spec_for(project, project_key(session, settings, project), settings.extracts.k)
        project_id = project.id
    try:
        from projects.catalogue import catalogue_at

        manifest = build_extract(spec, settings.source_dir, settings.extracts_root,
                                 catalogue=catalogue_at(settings.catalogue_path),
                                 progress=progress or _Progress(factory, build_id), created_at=utcnow())
    except Exception as exc:
        log.exception("extract build %s failed", build_id)
        with unit_of_work(factory) as session:
            build = session.get(ExtractBuild, build_id)
            assert build is not None
            build.state, build.finished_at, build.error = "failed", utcnow(), f"{type(exc).__name__}: {exc}"[:2000]
            audit.record(session, "system", "extract.build_failed", "project", project_id,
                         {"build": build_id, "error": build.error})
        return None
    with unit_of_work(factory) as session:
        version = record_version(session, project_id, manifest)
        build = session.get(ExtractBuild, build_id)
        assert build is not None
        build.state, build.finished_at, build.version = "done", utcnow(), manifest.version
        return version


def record_version(session: Session, project_id: int, manifest: Manifest) -> ExtractVersion:
    version = ExtractVersion(
        project_id=project_id, version=manifest.version, status=manifest.status.value, rows=manifest.rows,
        columns=manifest.columns, opt_outs_removed=manifest.cohort.opt_outs_removed,
        share_below_k=float(manifest.risk.get("share_below_k", 0.0)), manifest=manifest.model_dump(mode="json"))
    session.add(version)
    session.flush()
    audit.record(session, "system", "extract.built", "project", project_id, {
        "version": manifest.version, "status": manifest.status.value, "rows": manifest.rows,
        "columns": manifest.columns, "opt_outs_removed": manifest.cohort.opt_outs_removed,
        "share_below_k": version.share_below_k, "files": manifest.files})
    if manifest.version > 1:  # the first version is covered by the data provision fee in the approved quote
        from gateway.charging.metering import record_meter_event

        project = session.get(Project, project_id)
        assert project is not None
        record_meter_event(session, project, "extract_refresh", len(manifest.tables),
                           key=f"extract-refresh:{project_id}:v{manifest.version}",
                           description=f"extract v{manifest.version}")
    if manifest.status.value == "held_for_custodian":
        from gateway.identity.accounts import users_with_roles

        for admin in users_with_roles(session, ["admin"]):
            outbox.send_email(session, admin.email, "An extract is held for your review",
                              f"Version {manifest.version} of project {manifest.project_id}'s extract has records in "
                              f"classes smaller than k. Review its risk report before releasing it.",
                              dedupe_key=f"held:{project_id}:{manifest.version}:{admin.id}")
    return version


def needs_second_person(settings: Settings, row: ExtractVersion) -> bool:
    """A held version is high risk when enough of its records sit in classes smaller than k."""
    return row.share_below_k >= settings.extracts.two_person_share


def release_held(session: Session, settings: Settings, actor: User, project: Project, version: int,
                 reason: str) -> str:
    """The custodian accepts a held version's risk, with a reason, and makes it live. Returns "released", or
    "proposed" when the version is high risk and this is the first of the two custodians it needs (the second,
    never the proposer, confirms with a reason of their own).

    Only the newest version can be released: a proposal or a review is of one version's risk report, and a
    rebuild makes a new version that needs its own. A custodian on the project's team neither proposes nor
    confirms: the risk is accepted by someone who does not get the data.
    """
    check_permission(actor, Permission.RELEASE_EXTRACTS)
    if is_member(actor, project):  # as an output checker is never one on their own project
        raise PermissionDenied("You are on this project's team: another custodian must accept the risk of its "
                               "extract.")
    if project.state in {ProjectState.CLOSED, ProjectState.REVOKED}:
        raise Conflict(f"The project is {project.state}: no extract can be released into it.")
    reason = reason.strip()
    if not reason:
        raise ValidationError("The release could not be recorded.",
                              field_errors={"reason": ["Say why this risk is acceptable."]})
    row = session.scalar(select(ExtractVersion).where(ExtractVersion.project_id == project.id,
                                                      ExtractVersion.version == version).with_for_update())
    if row is None:
        raise NotFound("No such extract version.")
    if row.status != "held_for_custodian" or row.released_at is not None:
        raise Conflict("Only a held version that has not been released can be released.")
    newest = session.scalar(select(func.max(ExtractVersion.version)).where(ExtractVersion.project_id == project.id))
    if newest != version:
        raise Conflict(f"Version {newest} has been built since version {version}: only the newest version can be "
                       "released. Review its risk report.")
    details: dict[str, Any] = {"version": version, "share_below_k": row.share_below_k, "reason": reason,
                               "records_below_k": row.manifest.get("risk", {}).get("records_below_k"),
                               "files": row.manifest.get("files", {})}
    if needs_second_person(settings, row):
        if row.release_proposed_by_id is None:
            row.release_proposed_by_id, row.release_proposed_at = actor.id, utcnow()
            row.release_proposal_reason = reason
            session.flush()
            audit.record(session, actor, "extract.release_proposed", "project", project.id, details)
            _ask_second_custodian(session, actor, project, version)
            return "proposed"
        if row.release_proposed_by_id == actor.id:
            raise PermissionDenied("You proposed this release: a different custodian must confirm it.")
        proposer = session.get(User, row.release_proposed_by_id)
        details |= {"two_person": True, "proposed_by": proposer.username if proposer else None,
                    "proposal_reason": row.release_proposal_reason}
    row.released_by_id, row.released_at, row.release_reason = actor.id, utcnow(), reason
    audit.record(session, actor, "extract.released", "project", project.id, details)
    session.flush()
    # The pointer follows the database: moved only once the release has committed, and by the worker if the
    # process dies in between (the handler is idempotent and checks the release is recorded).
    outbox.enqueue(session, "extract.make_live", {"project_id": project.id, "version": version},
                   dedupe_key=f"extract.make_live:{project.id}:{version}")
    root, workspace = settings.extracts_root, workspace_id(project)
    on_commit(session, lambda: _move_pointer_forward(root, workspace, version))
    return "released"


def _ask_second_custodian(session: Session, proposer: User, project: Project, version: int) -> None:
    from gateway.identity.accounts import users_with_roles

    for other in users_with_roles(session, ["admin"]):
        if other.id != proposer.id and other.email:
            outbox.send_email(session, other.email, f"A second custodian is needed for {project.reference}",
                              f"{proposer.display_name} proposes to release version {version} of the extract of "
                              f"{project.reference}, which is high risk. Review its risk report; if you agree, "
                              "confirm the release with your own reason.",
                              dedupe_key=f"release-proposed:{project.id}:{version}:{other.id}")


def risk_report(settings: Settings, project: Project, version: int) -> bytes:
    """The full risk report of one version, as written by the build (the manifest carries its summary)."""
    path = storage.version_dir(settings.extracts_root, workspace_id(project), version) / "risk_report.json"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise NotFound("No such extract version.") from None


def _move_pointer_forward(root: Path, workspace: str, version: int) -> None:
    """Point ``current`` at ``version`` unless it already points at it or at a later version."""
    current = storage.current_version(root, workspace)
    if current is None or current < version:
        storage.set_current(root, workspace, version)


def run_queued_builds(settings: Settings, factory: sessionmaker[Session]) -> list[ExtractVersion]:
    """Run every queued build now (the demo set-up and tests; the worker does this through the outbox)."""
    with factory() as session:
        queued = [b.id for b in session.scalars(select(ExtractBuild).where(ExtractBuild.state == "queued"))]
    built = []
    for build_id in queued:
        version = run_build(settings, factory, build_id)
        if version is not None:
            built.append(version)
    return built


# The project's Data page reads these on every view: built once per process (SQLAlchemy keeps a built statement's
# cache key, so a view pays only for the round trip and the rows).
_VERSIONS = (select(ExtractVersion).where(ExtractVersion.project_id == bindparam("project_id"))
             .order_by(ExtractVersion.version.desc()))
_LATEST_BUILD = (select(ExtractBuild).where(ExtractBuild.project_id == bindparam("project_id"))
                 .order_by(ExtractBuild.id.desc()).limit(1))


def versions(session: Session, project: Project) -> list[ExtractVersion]:
    return list(session.scalars(_VERSIONS, {"project_id": project.id}))


def latest_build(session: Session, project: Project) -> ExtractBuild | None:
    return session.scalar(_LATEST_BUILD, {"project_id": project.id})


def live_version(settings: Settings, project: Project) -> int | None:
    return storage.current_version(settings.extracts_root, workspace_id(project))


@outbox.handler("extract.build")
def deliver_build(ctx: outbox.WorkerContext, payload: dict[str, Any]) -> None:
    run_build(ctx.settings, ctx.factory, int(payload["build_id"]))


@outbox.handler("extract.make_live")
def deliver_make_live(ctx: outbox.WorkerContext, payload: dict[str, Any]) -> None:
    with ctx.factory() as session:
        project = session.get(Project, int(payload["project_id"]))
        row = session.scalar(select(ExtractVersion).where(ExtractVersion.project_id == int(payload["project_id"]),
                                                          ExtractVersion.version == int(payload["version"])))
        if project is None or row is None or row.released_at is None:
            return  # nothing recorded as released: the pointer must not move
        workspace = workspace_id(project)
    _move_pointer_forward(ctx.settings.extracts_root, workspace, int(payload["version"]))


@outbox.handler("extract.destroy_key")
def deliver_destroy_key(ctx: outbox.WorkerContext, payload: dict[str, Any]) -> None:
    with unit_of_work(ctx.factory) as session:
        project = session.get(Project, int(payload["project_id"]))
        if project is not None:
            destroy_key(session, ctx.settings, project)
