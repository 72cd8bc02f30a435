"""The release package: a zip of the approved output files with a manifest, built and published atomically.

Everything in the package leaves the secure environment, so everything in it is output: the approved files
as submitted, ``manifest.json`` (hashes, the groups' descriptions, the rules applied and each file's verdict,
the checkers' votes) and ``results.json`` in the layout SACRO-Viewer and ACRO read. Both JSON files are made
only from the public form of each record (``disclosure_control.PublicRecord``): labels, verdicts and rule
names, never a cell's value or count, never a free-text note (notes and differencing findings can carry
numbers about small groups). Checker-only evidence stays in the gateway's database.

Steps (outbox kind ``outputs.release``, run by the worker):

1. build the zip in a temporary file in the releases folder (never under its final name), fsync it;
2. hash it, verify it, then ``os.replace`` it to its final name and fsync the folder;
3. in one transaction: the request becomes released with the package's SHA-256, the audit event is appended.

A crash in 1 or 2 leaves no package under the final name (leftover temporary files are removed on retry)
and the request still approved; a crash after 2 leaves a complete package that the retry verifies and
reuses. So there is either a complete release or none, never a partial one.

A project suspended or revoked after the approval holds the release: the request stays approved and nothing is
released (checked before building and again in the transaction that releases). Reinstating the project queues
the release again (``requeue_held``, subscribed in gateway.wiring).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from disclosure_control import PublicRecord, Record
from disclosure_control.acro_format import PublicEntry, sacro_results
from gateway import audit, outbox
from gateway.db import unit_of_work, utcnow
from gateway.outputs import files as intake
from gateway.outputs.models import OutputFile, OutputRequest
from gateway.outputs.service import HOLDING_PROJECT_STATES, current_exception, current_votes, round_reviews
from gateway.outputs.workflow import OutputState, check_output_move
from projects.models import Project

MANIFEST = "manifest.json"
RESULTS = "results.json"  # SACRO-Viewer / ACRO layout
FORMAT = 2  # 2: no per-cell records; public records, verdicts, rules and results.json
# what the heuristic checks look for in a file the gateway could not recompute
HEURISTIC_RULES = {"heuristic": ["small_count", "unrounded", "single_person", "identifier_column", "pseudonym"]}
Step = Callable[[str], None]


def _no_pause(step: str) -> None:
    return None


def releases_dir(outputs_dir: Path) -> Path:
    return outputs_dir / "releases"


def package_name(request: OutputRequest) -> str:
    return f"{request.project.reference.lower()}-output-{request.id}.zip"


def public_record(item: OutputFile) -> PublicRecord | None:
    """The public form of the record the gateway recomputed for this file (None for files it did not recompute).

    Only a recomputed record is used: a sidecar's own record is the researcher's claim, never released as is.
    """
    result = item.check_result or {}
    if result.get("method") != "recomputed" or not isinstance(result.get("record"), dict):
        return None
    return Record.from_dict(result["record"]).public()


def rules_flagged(item: OutputFile) -> dict[str, int]:
    """How many cells each rule flagged (names and numbers of cells, never their values).

    A suppressed cell is not counted: the rule that hid it describes what it hides (``zeros`` is its count).
    """
    counts: dict[str, int] = {}
    for cell in (item.check_result or {}).get("cells", []):
        rules = cell.get("rules", [])
        if cell.get("suppressed"):  # only what the gateway found on the file itself
            rules = [rule for rule in rules if rule in {"mismatch", "differencing"}]
        for rule in rules:
            counts[rule] = counts.get(rule, 0) + 1
    return dict(sorted(counts.items()))


def exceptions_of(request: OutputRequest, item: OutputFile, reviewers: set[int]) -> list[dict[str, Any]]:
    """The exception that let a failing file out: the researcher's justification and both checkers' reasons.

    Text written by people, read and accepted by both checkers as part of the output; no value or count from the
    check. Bound to the file's bytes: the SHA-256 it was asked for is the released file's.
    """
    exception = current_exception(request, item)
    if exception is None or item.check_status != "fail":
        return []
    return [{
        "sha256": exception.file_sha256,
        "justification": exception.justification,
        "requested_by": exception.requested_by.username,
        "requested_at": exception.requested_at.isoformat(),
        "decisions": [{"checker": d.checker.username, "decision": d.decision, "reason": d.reason,
                       "at": d.decided_at.isoformat()} for d in exception.decisions if d.checker_id in reviewers],
    }]


def manifest_for(request: OutputRequest, contents: dict[str, bytes]) -> dict[str, Any]:
    """Everything a reader needs to trust the package: files with hashes, descriptions, rules, verdicts, decisions.

    No per-cell value or count of any kind (see the module docstring).
    """
    reviews = round_reviews(request)
    reviewers = {r.reviewer_id for r in reviews}
    files = []
    for item in request.files:
        if item.kind != "output":
            continue
        result = item.check_result or {}
        public = public_record(item)
        files.append({
            "path": f"outputs/{item.path}",
            "sha256": hashlib.sha256(contents[item.path]).hexdigest(),
            "size": len(contents[item.path]),
            "content_type": item.content_type,
            "group": item.group.name,
            "description": item.group.context,
            "version": item.version,
            "verdict": {
                "automatic": result.get("status"),
                "method": result.get("method"),
                "rules_flagged": rules_flagged(item),
                "checkers": "approved",
            },
            "rules_applied": public.rules if public else HEURISTIC_RULES,
            "record": public.to_dict() if public else None,
            "exceptions": exceptions_of(request, item, reviewers),
            "votes": [{"checker": v.reviewer.username, "vote": v.vote, "at": v.voted_at.isoformat()}
                      for v in current_votes(item) if v.reviewer_id in reviewers],
        })
    return {
        "format": FORMAT,
        "request_id": request.id,
        "project": request.project.reference,
        "title": request.title,
        "author": request.author.username,
        "round": request.round,
        "groups": [{"name": g.name, "context": g.context, "controls": g.controls} for g in request.groups],
        "files": files,
        "reviews": [{"checker": r.reviewer.username, "outcome": r.outcome, "submitted_at": r.submitted_at.isoformat()}
                    for r in reviews],
        "decision": {"by": request.decided_by.username if request.decided_by else None,
                     "at": request.decided_at.isoformat() if request.decided_at else None, "outcome": "approved"},
        "results": RESULTS,
    }


def results_for(request: OutputRequest) -> dict[str, Any]:
    """results.json for SACRO-Viewer: one entry per released file, from public records only."""
    entries = []
    reviewers = {r.reviewer_id for r in round_reviews(request)}
    for item in request.files:
        if item.kind != "output":
            continue
        result = item.check_result or {}
        acro = result.get("acro") or {}
        granted = exceptions_of(request, item, reviewers)
        entries.append(PublicEntry(path=f"outputs/{item.path}", record=public_record(item),
                                   status=str(result.get("status") or "review"), approved=True,
                                   comments=[*[str(c) for c in acro.get("comments") or []],
                                             f"Released by the output checkers of {request.project.reference}."],
                                   exception=granted[0]["justification"] if granted
                                   else str(acro.get("exception") or "")))
    return sacro_results(entries)


def build(request: OutputRequest, storage_dir: Path) -> bytes:
    """The zip's bytes, deterministic for a given request (fixed timestamps, sorted names)."""
    contents = {item.path: intake.read_stored(storage_dir, item.stored_name, item.sha256)
                for item in request.files if item.kind == "output"}
    manifest = manifest_for(request, contents)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(contents):
            archive.writestr(zipfile.ZipInfo(f"outputs/{path}", date_time=(2000, 1, 1, 0, 0, 0)), contents[path])
        archive.writestr(zipfile.ZipInfo(MANIFEST, date_time=(2000, 1, 1, 0, 0, 0)),
                         json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        archive.writestr(zipfile.ZipInfo(RESULTS, date_time=(2000, 1, 1, 0, 0, 0)),
                         json.dumps(results_for(request), indent=2, sort_keys=True) + "\n")
    return buffer.getvalue()


def verify_package(path: Path) -> list[str]:
    """Problems with a package on disk (empty when it is complete and every file matches the manifest)."""
    problems: list[str] = []
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            if bad is not None:
                return [f"{bad} is corrupt"]
            manifest = json.loads(archive.read(MANIFEST))
            names = set(archive.namelist()) - {MANIFEST, RESULTS}
            listed = {f["path"] for f in manifest["files"]}
            problems += [f"{n} is not in the manifest" for n in sorted(names - listed)]
            problems += [f"{n} is missing" for n in sorted(listed - names)]
            for entry in manifest["files"]:
                data = archive.read(entry["path"]) if entry["path"] in names else None
                if data is not None and hashlib.sha256(data).hexdigest() != entry["sha256"]:
                    problems.append(f"{entry['path']} does not match its SHA-256")
    except (OSError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        problems.append(f"the package cannot be read: {exc}")
    return problems


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(request: OutputRequest, storage_dir: Path, pause: Step = _no_pause) -> tuple[Path, str]:
    """Make sure a complete package exists under its final name; returns it and its SHA-256."""
    folder = releases_dir(storage_dir)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / package_name(request)
    if final.exists():
        if not verify_package(final):
            return final, sha256_of(final)  # a previous attempt published it: reuse
        final.unlink()  # cannot happen through publish (rename is atomic); never trust a damaged file
    for leftover in folder.glob(f".tmp-{final.name}-*"):
        leftover.unlink()
    data = build(request, storage_dir)
    temp = folder / f".tmp-{final.name}-{os.getpid()}"
    with open(temp, "wb") as fh:
        half = len(data) // 2
        fh.write(data[:half])
        pause("half_written")
        fh.write(data[half:])
        fh.flush()
        os.fsync(fh.fileno())
    pause("written")
    problems = verify_package(temp)
    if problems:
        raise OSError(f"the built package failed verification: {problems}")
    temp.chmod(0o444)
    os.replace(temp, final)
    _fsync_dir(folder)
    pause("published")
    return final, sha256_of(final)


def release(factory: sessionmaker[Session], settings: Any, request_id: int, pause: Step = _no_pause) -> bool:
    """Publish the package of an approved request, then record the release; True when it is released."""
    with factory() as session:
        request = session.get(OutputRequest, request_id)
        if request is None:
            return False
        if request.state == OutputState.RELEASED:
            return True
        if request.state != OutputState.APPROVED or request.project.state in HOLDING_PROJECT_STATES:
            return False
        final, digest = publish(request, settings.outputs_dir, pause)
    pause("before_commit")
    with unit_of_work(factory) as session:
        request = session.get(OutputRequest, request_id)
        assert request is not None
        if request.state == OutputState.RELEASED:
            return True
        # the project's row held (FOR SHARE) and read afresh: a suspension being made now commits first and holds
        # the release, or waits until the release is recorded; never both at once
        project = session.get(Project, request.project_id, with_for_update={"read": True}, populate_existing=True)
        assert project is not None
        if project.state in HOLDING_PROJECT_STATES:
            return False  # suspended or revoked meanwhile: the package stays unreleased (reused if reinstated)
        check_output_move(request.state, OutputState.RELEASED)
        request.state = OutputState.RELEASED
        request.released_at, request.package_name, request.package_sha256 = utcnow(), final.name, digest
        session.flush()
        audit.record(session, "system", "output_request.released", "output_request", request.id,
                     {"from": OutputState.APPROVED.value, "package": final.name, "sha256": digest,
                      "files": {f.path: f.sha256 for f in request.files if f.kind == "output"}})
        outbox.send_email(session, request.author.email, f"Output request {request.id} released",
                          f"Your outputs for {request.project.reference} are released; download the package from "
                          "the gateway. Its SHA-256 is " + digest, dedupe_key=f"output-released:{request.id}")
    return True


def package_path(request: OutputRequest, storage_dir: Path) -> Path:
    if request.state != OutputState.RELEASED or not request.package_name:
        raise FileNotFoundError("not released")
    return releases_dir(storage_dir) / request.package_name


def requeue_held(session: Session, project_id: int, occasion: str) -> None:
    """Queue the release of every approved, unreleased request of a project again (its release was held while the
    project was suspended); ``occasion`` makes the queued message new (the first one is done)."""
    held = session.scalars(select(OutputRequest.id).where(OutputRequest.project_id == project_id,
                                                          OutputRequest.state == OutputState.APPROVED))
    for request_id in held:
        outbox.enqueue(session, "outputs.release", {"request_id": request_id},
                       dedupe_key=f"outputs.release:{request_id}:{occasion}")


@outbox.handler("outputs.release")
def deliver_release(ctx: outbox.WorkerContext, payload: dict[str, Any]) -> None:
    release(ctx.factory, ctx.settings, int(payload["request_id"]))
