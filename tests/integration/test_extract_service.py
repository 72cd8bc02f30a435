"""Extracts inside the gateway: approval queues a build, the worker builds it, custodians release held
versions, a failed build changes nothing, and closing a project destroys its key."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway import audit
from gateway.config import Settings
from gateway.db import unit_of_work
from gateway.errors import Conflict, PermissionDenied, ValidationError
from gateway.extracts import service
from gateway.extracts.models import ExtractBuild, ExtractVersion, ProjectKey
from gateway.worker import run_once
from gateway.workspaces.entitlement import current_extract, workspace_id
from projects import lifecycle
from projects.models import Project
from tests.support import factories as f


@pytest.fixture
def project_id(session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> int:
    with unit_of_work(session_factory) as s:
        f.accredit(s, "researcher")
    return f.approved_project(session_factory)


def test_approval_queues_a_build_that_the_worker_runs(settings: Settings, session_factory: sessionmaker[Session],
                                                      project_id: int) -> None:
    with session_factory() as s:
        build = s.scalar(select(ExtractBuild).where(ExtractBuild.project_id == project_id))
        assert build is not None and build.state == "queued" and build.reason == "project approved"
    run_once(settings, session_factory)
    with session_factory() as s:
        build = s.scalar(select(ExtractBuild).where(ExtractBuild.project_id == project_id))
        version = s.scalar(select(ExtractVersion).where(ExtractVersion.project_id == project_id))
        project = s.get(Project, project_id)
        assert build.state == "done" and build.rows_done == build.rows_total > 0
        assert version is not None and version.version == 1 and version.rows > 0
        manifest = version.manifest
        assert manifest["project_id"] == workspace_id(project)
        # only the approved variables, with the patient identifier replaced by the project pseudonym
        patients = manifest["tables"][0] if manifest["tables"][0]["dataset"] == "patients" else next(
            t for t in manifest["tables"] if t["dataset"] == "patients")
        assert {c["name"] for c in patients["columns"]} == {"pseudo_id", "sex", "imd_decile"}
        key = s.get(ProjectKey, project_id)
        assert key is not None and key.fingerprint == manifest["key_fingerprint"]
        assert {e.action for e in audit.search(s, audit.AuditFilter(object_type="project"))} >= {
            "extract.build_requested", "extract.key_created", "extract.built"}
        assert audit.verify(s).ok


REASON = "Risk report reviewed: the small classes are in borough x sex only."


def test_custodian_releases_a_held_version_and_others_cannot(settings: Settings,
                                                             session_factory: sessionmaker[Session],
                                                             project_id: int) -> None:
    settings.extracts.k = 1000  # every class is smaller: the version is held, and high risk
    service.run_queued_builds(settings, session_factory)
    with unit_of_work(session_factory) as s:
        project = s.get(Project, project_id)
        version = s.scalar(select(ExtractVersion).where(ExtractVersion.project_id == project_id))
        assert version.status == "held_for_custodian"
        assert current_extract(settings.extracts_root, project) is None  # not live: workspaces cannot open
        with pytest.raises(PermissionDenied):
            service.release_held(s, settings, f.user(s, "researcher"), project, 1, REASON)
        with pytest.raises(ValidationError):  # no reason, no release
            service.release_held(s, settings, f.user(s, "admin"), project, 1, "  ")
        assert service.release_held(s, settings, f.user(s, "admin"), project, 1, REASON) == "proposed"
    with unit_of_work(session_factory) as s:
        project = s.get(Project, project_id)
        assert current_extract(settings.extracts_root, project) is None  # one custodian is not enough
        with pytest.raises(PermissionDenied, match="different custodian"):
            service.release_held(s, settings, f.user(s, "admin"), project, 1, REASON)
        assert service.release_held(s, settings, f.user(s, "custodian"), project, 1, "Agreed.") == "released"
    with session_factory() as s:
        project = s.get(Project, project_id)
        assert current_extract(settings.extracts_root, project).name == "v1"
        with pytest.raises(Conflict):
            service.release_held(s, settings, f.user(s, "custodian"), project, 1, REASON)
        [event] = audit.search(s, audit.AuditFilter(action="extract.released"))
        assert event.actor_label == "custodian" and event.details["proposed_by"] == "admin"
        assert event.details["reason"] == "Agreed." and event.details["proposal_reason"] == REASON


def test_a_low_risk_held_version_needs_one_custodian_with_a_reason(
        settings: Settings, session_factory: sessionmaker[Session], project_id: int) -> None:
    settings.extracts.k = 1000
    settings.extracts.two_person_share = 1.0  # only a version with every record in a small class needs two
    service.run_queued_builds(settings, session_factory)
    with unit_of_work(session_factory) as s:
        row = s.scalar(select(ExtractVersion).where(ExtractVersion.project_id == project_id))
        row.share_below_k = 0.5  # as if half the records were in small classes
        assert service.release_held(s, settings, f.user(s, "admin"), s.get(Project, project_id), 1,
                                    REASON) == "released"


@pytest.mark.parametrize("end", ["close", "revoke"])
def test_a_held_version_of_a_closed_or_revoked_project_cannot_be_released(
        settings: Settings, session_factory: sessionmaker[Session], project_id: int, end: str) -> None:
    settings.extracts.k = 1000
    service.run_queued_builds(settings, session_factory)
    with unit_of_work(session_factory) as s:
        project = s.get(Project, project_id)
        if end == "close":
            lifecycle.close(s, f.user(s, "researcher"), project, "Study finished")
        else:
            lifecycle.revoke(s, f.user(s, "admin"), project, "Breach of the data access agreement")
    with unit_of_work(session_factory) as s, pytest.raises(Conflict, match="no extract can be released"):
        service.release_held(s, settings, f.user(s, "admin"), s.get(Project, project_id), 1, REASON)
    with session_factory() as s:
        assert s.scalar(select(ExtractVersion).where(ExtractVersion.project_id == project_id)).released_at is None


def _proposed(settings: Settings, factory: sessionmaker[Session], project_id: int) -> None:
    with unit_of_work(factory) as s:
        assert service.release_held(s, settings, f.user(s, "admin"), s.get(Project, project_id), 1,
                                    REASON) == "proposed"


def test_a_release_that_does_not_commit_leaves_the_extract_unreleased(
        settings: Settings, session_factory: sessionmaker[Session], project_id: int) -> None:
    settings.extracts.k = 1000
    service.run_queued_builds(settings, session_factory)
    _proposed(settings, session_factory, project_id)
    with session_factory() as s:
        project = s.get(Project, project_id)
        service.release_held(s, settings, f.user(s, "custodian"), project, 1, REASON)
        s.rollback()  # e.g. the commit failed: no record, so the extract must not go live
        assert current_extract(settings.extracts_root, project) is None
    with session_factory() as s:
        assert s.scalar(select(ExtractVersion.released_at).where(ExtractVersion.project_id == project_id)) is None


def test_the_worker_makes_a_committed_release_live_if_the_process_died_before_it_could(
        settings: Settings, session_factory: sessionmaker[Session], project_id: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    settings.extracts.k = 1000
    service.run_queued_builds(settings, session_factory)
    _proposed(settings, session_factory, project_id)
    with monkeypatch.context() as m:  # the process "dies" between the commit and the pointer move
        m.setattr(service, "_move_pointer_forward", lambda *a: None)
        with unit_of_work(session_factory) as s:
            service.release_held(s, settings, f.user(s, "custodian"), s.get(Project, project_id), 1, REASON)
    with session_factory() as s:
        assert current_extract(settings.extracts_root, s.get(Project, project_id)) is None
    run_once(settings, session_factory)  # the queued extract.make_live message repairs it
    with session_factory() as s:
        assert current_extract(settings.extracts_root, s.get(Project, project_id)).name == "v1"


def test_a_failed_refresh_leaves_the_live_version(settings: Settings, session_factory: sessionmaker[Session],
                                                  project_id: int, tmp_path) -> None:
    service.run_queued_builds(settings, session_factory)
    with session_factory() as s:
        held = current_extract(settings.extracts_root, s.get(Project, project_id)) is None
    if held:  # on this small population
        f.release_extract(settings, session_factory, project_id, 1)
    with unit_of_work(session_factory) as s:
        service.refresh(s, f.user(s, "admin"), s.get(Project, project_id))
    settings.extracts.source_dir = tmp_path / "missing"
    assert service.run_queued_builds(settings, session_factory) == []
    with session_factory() as s:  # a failed refresh is not charged
        from gateway.charging.models import MeterEvent
        assert s.scalars(select(MeterEvent).where(MeterEvent.kind == "extract_refresh")).all() == []
    with session_factory() as s:
        project = s.get(Project, project_id)
        latest = service.latest_build(s, project)
        assert latest.state == "failed" and latest.error
        assert current_extract(settings.extracts_root, project).name == "v1"
        assert [v.version for v in service.versions(s, project)] == [1]


def test_a_refresh_is_metered_once_per_version(settings: Settings, session_factory: sessionmaker[Session],
                                               project_id: int) -> None:
    from gateway.charging.models import MeterEvent

    service.run_queued_builds(settings, session_factory)  # v1: part of the approved quote, not metered
    with unit_of_work(session_factory) as s:
        service.refresh(s, f.user(s, "admin"), s.get(Project, project_id))
    service.run_queued_builds(settings, session_factory)
    service.run_queued_builds(settings, session_factory)  # nothing queued: nothing more recorded
    with session_factory() as s:
        events = s.scalars(select(MeterEvent).where(MeterEvent.kind == "extract_refresh")).all()
        assert [(e.event_key, e.quantity) for e in events] == [(f"extract-refresh:{project_id}:v2", 2)]


def test_closing_destroys_the_key_and_no_build_can_follow(settings: Settings,
                                                          session_factory: sessionmaker[Session],
                                                          project_id: int) -> None:
    service.run_queued_builds(settings, session_factory)
    with session_factory() as s:
        key_file = service.key_path(settings, s.get(Project, project_id))
    assert key_file.exists() and oct(key_file.stat().st_mode & 0o777) == "0o600"
    with unit_of_work(session_factory) as s:
        lifecycle.close(s, f.user(s, "researcher"), s.get(Project, project_id), "Study finished")
    run_once(settings, session_factory)
    assert not key_file.exists()
    with unit_of_work(session_factory) as s:
        assert s.get(ProjectKey, project_id).destroyed_at is not None
        with pytest.raises(Conflict, match="destroyed"):
            service.project_key(s, settings, s.get(Project, project_id))


def test_extract_files_are_read_only_and_carry_no_nhs_number(settings: Settings,
                                                             session_factory: sessionmaker[Session],
                                                             project_id: int) -> None:
    service.run_queued_builds(settings, session_factory)
    with session_factory() as s:
        live = service.versions(s, s.get(Project, project_id))[0]
        folder = settings.extracts_root / live.manifest["project_id"] / f"v{live.version}"
    source_numbers = set(pq.read_table(settings.source_dir / "patients.parquet", columns=["nhs_number"])
                         .column("nhs_number").to_pylist())
    for path in folder.glob("*.parquet"):
        assert path.stat().st_mode & 0o222 == 0
        table = pq.read_table(path)
        assert "nhs_number" not in table.column_names
        for column in table.column_names:
            values = {str(v) for v in table.column(column).to_pylist()}
            assert not values & source_numbers


def test_a_custodian_on_the_projects_team_cannot_release_its_held_extract(
        settings: Settings, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    """An administrator who is also a researcher on the project accepts no risk for their own team's data: as an
    output checker on their own project, they are conflicted, alone or as one of the two custodians."""
    from gateway.identity import accounts

    with unit_of_work(session_factory) as s:
        accounts.create_local_user(s, "test", username="leadadmin", display_name="Lead Admin",
                                   password="a-long-pass-99", roles=["researcher", "admin"])
        f.accredit(s, "leadadmin")
    project_id = f.approved_project(session_factory, applicant="leadadmin")
    settings.extracts.k = 1000  # every class is smaller than k: the version is held, and high risk
    service.run_queued_builds(settings, session_factory)
    with unit_of_work(session_factory) as s, pytest.raises(PermissionDenied, match="on this project's team"):
        service.release_held(s, settings, f.user(s, "leadadmin"), s.get(Project, project_id), 1, REASON)
    with unit_of_work(session_factory) as s:  # proposed by another custodian, the team's one cannot confirm it
        assert service.release_held(s, settings, f.user(s, "admin"), s.get(Project, project_id), 1,
                                    REASON) == "proposed"
    with unit_of_work(session_factory) as s, pytest.raises(PermissionDenied, match="on this project's team"):
        service.release_held(s, settings, f.user(s, "leadadmin"), s.get(Project, project_id), 1, "Agreed.")
    with session_factory() as s:
        assert current_extract(settings.extracts_root, s.get(Project, project_id)) is None
        assert audit.search(s, audit.AuditFilter(action="extract.released")) == []
