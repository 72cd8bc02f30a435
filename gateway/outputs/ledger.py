"""The service-wide differencing ledger: every checked table, keyed by the population it was computed on.

Two projects that draw the same population from the same source data can subtract each other's releases: project A
releases the count of everyone aged 18-65, project B the count of everyone aged 18-64, and the difference is the
people aged exactly 65. The differencing check therefore compares a new table with every table *released* from the
same population in any project, not only with the requesting project's own releases.

What "the same population" means: the extract's source (the catalogue's name and the number of rows each source
dataset had when the extract was built, which changes with every new data cut) and the extract's population
parameters (cohort criteria, date range, whether the national opt-out was applied). Two extracts that agree on all of
these hold the same people, so the filters and categories recorded with each table describe comparable
populations. Extracts that differ in any of them are not compared across projects (their populations are not known
to nest); the project's own releases are always compared, as before.

Each row holds the checker's form of the recomputed record (cell counts included). It is checker-only evidence: it
never leaves in a package, and a researcher is told only that a table released elsewhere conflicts, never which one
or its cells.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from disclosure_control import Record, check_differencing
from gateway.db import Base, UTCDateTime, serialise, utcnow
from gateway.outputs.models import OutputFile, OutputRequest
from gateway.outputs.workflow import OutputState
from projects.models import Project

# the extract parameters that decide who is in it (not which variables, nor how they are coarsened: a different
# coarsening only changes the category labels, which the nesting test compares anyway)
POPULATION_PARAMETERS = ("cohort", "date_range", "apply_opt_out")


class LedgerEntry(Base):
    """One checked version of one table, with the population it was computed on (released or not: the query joins
    the request's state, so the ledger never disagrees with the workflow about what is released)."""

    __tablename__ = "differencing_ledger"
    __table_args__ = (
        UniqueConstraint("file_id", "file_version"),
        Index("ix_differencing_ledger_population", "population_key", "dataset"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    file_id: Mapped[int] = mapped_column(ForeignKey("output_files.id", ondelete="CASCADE"), index=True)
    file_version: Mapped[int] = mapped_column(Integer)
    request_id: Mapped[int] = mapped_column(ForeignKey("output_requests.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    population_key: Mapped[str] = mapped_column(String(64))
    dataset: Mapped[str] = mapped_column(String(200))
    record: Mapped[dict[str, Any]] = mapped_column(JSON)  # the checker's form: cell counts, inside only
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


def population_key(extract: Path | None) -> str | None:
    """The fingerprint of the population an extract holds (None without an extract or a readable manifest)."""
    if extract is None:
        return None
    try:
        manifest = json.loads((extract / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict):
        return None
    return population_key_of(manifest)


def population_key_of(manifest: dict[str, Any]) -> str:
    parameters = manifest.get("parameters") if isinstance(manifest.get("parameters"), dict) else {}
    tables = manifest.get("tables") if isinstance(manifest.get("tables"), list) else []
    identity = {
        "catalogue": manifest.get("catalogue"),
        "source_rows": sorted((str(t.get("dataset")), t.get("source_rows")) for t in tables if isinstance(t, dict)),
        **{name: parameters.get(name) for name in POPULATION_PARAMETERS},
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class Released:
    """A released table to compare with: the record, and where it came from (shown to checkers only)."""

    record: Record
    request_id: int
    project_id: int
    project_reference: str
    path: str


def remember(session: Session, request: OutputRequest, item: OutputFile, key: str | None,
             record: dict[str, Any]) -> None:
    """Enter a checked table in the ledger (once per file version; a re-check replaces the entry)."""
    dataset = (record.get("query") or {}).get("dataset")
    if key is None or not dataset:
        return
    entry = session.scalar(select(LedgerEntry).where(LedgerEntry.file_id == item.id,
                                                     LedgerEntry.file_version == item.version))
    if entry is None:
        entry = LedgerEntry(file_id=item.id, file_version=item.version, request_id=request.id,
                            project_id=request.project_id)
        session.add(entry)
    entry.population_key, entry.dataset, entry.record = key, str(dataset)[:200], record
    session.flush()


def released_from(session: Session, key: str | None, datasets: set[str]) -> list[Released]:
    """Every table released in any project from the same population and datasets: one indexed lookup.

    Only the version that was released counts (a file's entry whose version is no longer the file's current one
    was replaced before release), and only requests in the released state.
    """
    if key is None or not datasets:
        return []
    rows = session.execute(
        select(LedgerEntry, OutputFile.path, Project.reference)
        .join(OutputFile, (OutputFile.id == LedgerEntry.file_id) & (OutputFile.version == LedgerEntry.file_version))
        .join(OutputRequest, OutputRequest.id == LedgerEntry.request_id)
        .join(Project, Project.id == LedgerEntry.project_id)
        .where(LedgerEntry.population_key == key, LedgerEntry.dataset.in_(sorted(datasets)),
               OutputRequest.state == OutputState.RELEASED.value, OutputFile.kind == "output")
        .order_by(LedgerEntry.id))
    return [Released(Record.from_dict(entry.record), entry.request_id, entry.project_id, reference, path)
            for entry, path, reference in rows]


def approval_conflicts(session: Session, request: OutputRequest) -> list[str]:
    """Conflicts with tables approved or released (in any project, this one included) after this request's files
    were checked: two requests checked at the same time never saw each other, so approval looks again.

    Called when a checker approves; the messages are for checkers (they may see which release conflicts).
    """
    own = {(e.file_id, e.file_version): e for e in session.scalars(
        select(LedgerEntry).where(LedgerEntry.request_id == request.id))}
    problems: list[str] = []
    for item in request.files:
        entry = own.get((item.id, item.version))
        if item.kind != "output" or entry is None or item.checked_at is None:
            continue
        serialise(session, f"ledger:{entry.population_key}")  # approvals of one population, one at a time
        rows = session.execute(
            select(LedgerEntry, OutputFile.path, OutputRequest.id, Project.reference)
            .join(OutputFile, (OutputFile.id == LedgerEntry.file_id) & (OutputFile.version == LedgerEntry.file_version))
            .join(OutputRequest, OutputRequest.id == LedgerEntry.request_id)
            .join(Project, Project.id == LedgerEntry.project_id)
            .where(LedgerEntry.population_key == entry.population_key, LedgerEntry.dataset == entry.dataset,
                   LedgerEntry.request_id != request.id, OutputFile.kind == "output",
                   OutputRequest.state.in_([OutputState.APPROVED.value, OutputState.RELEASED.value]),
                   OutputRequest.decided_at > item.checked_at)).all()
        if not rows:
            continue
        records = [Record.from_dict(other.record) for other, *_ in rows]
        where = {record.uid: f"'{path}' of output request {other_id} ({reference})"
                 for record, (_, path, other_id, reference) in zip(records, rows, strict=True)}
        report = check_differencing(Record.from_dict(entry.record), records)
        for flag in report.flags:
            problems.append(f"'{item.path}' now conflicts with {where.get(flag.earlier.record_uid, 'another table')}, "
                            f"approved after the checks ran: {flag.describe()}. Return the request so its checks run "
                            "again.")
    return problems
