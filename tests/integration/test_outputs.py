"""Output requests through the real services and the real worker: intake, automatic checks, two independent
checkers, release. The helpers here also serve the route walk and the browser test."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

import disclosure_control as dc
from gateway import outbox
from gateway.config import Settings
from gateway.db import unit_of_work
from gateway.errors import Conflict, PermissionDenied, ValidationError
from gateway.identity import accounts
from gateway.outputs import release as release_mod
from gateway.outputs import service
from gateway.outputs.models import OutputRequest
from gateway.outputs.workflow import OutputState
from gateway.workspaces.entitlement import workspace_id
from gateway.workspaces.service import hub_username
from gateway.workspaces.spec import workspace_home
from notebooks_template.outputs_helper import save_output
from projects import applications, dac
from projects.models import Application, Project
from tests.conftest import sign_in_session
from tests.support import factories as f
from tests.support.databases import postgres_only
from tests.support.handover import hand_over

REPO = Path(__file__).resolve().parents[2]


# --- helpers ---------------------------------------------------------------------------------------------------

def cohort() -> pd.DataFrame:
    """North/F 40 (4 of them in IMD decile 10), North/M 35, South/F 30, South/M 3 (a small cell)."""
    cells = [("North", "F", 36, 1), ("North", "F", 4, 10), ("North", "M", 35, 2), ("South", "F", 30, 3),
             ("South", "M", 3, 4)]
    rows = [(region, sex, imd) for region, sex, n, imd in cells for _ in range(n)]
    frame = pd.DataFrame(rows, columns=["region", "sex", "imd_decile"])
    frame.insert(0, "pseudo_id", [hashlib.sha256(f"p{i}".encode()).hexdigest()[:20] for i in range(len(frame))])
    frame["imd_decile"] = frame["imd_decile"].astype(np.int64)
    return frame


def write_extract(settings: Settings, project: Project) -> Path:
    """A current extract version in the layout the extract builder publishes (manifest + Parquet per dataset)."""
    root = settings.extracts_root / workspace_id(project)
    version = root / "v1"
    version.mkdir(parents=True, exist_ok=True)
    frame = cohort()
    frame.to_parquet(version / "patients.parquet", index=False)
    digest = hashlib.sha256((version / "patients.parquet").read_bytes()).hexdigest()
    manifest = {"project_id": workspace_id(project), "version": 1, "files": {"patients.parquet": digest},
                "tables": [{"dataset": "patients", "file": "patients.parquet", "rows": len(frame),
                            "columns": [{"name": c} for c in frame.columns], "sha256": digest}]}
    (version / "manifest.json").write_text(json.dumps(manifest))
    if not (root / "current").exists():
        (root / "current").symlink_to("v1")
    return version


def outputs_of(settings: Settings, factory: sessionmaker[Session], username: str, project_id: int) -> Path:
    with factory() as s:
        project = s.get(Project, project_id)
        assert project is not None
        # the researcher's workspace folder, written by the test as the notebook would (the gateway never reads it)
        home = workspace_home(settings.homes_root, hub_username(f.user(s, username)), workspace_id(project))
    folder = home / "outputs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def load_extract(settings: Settings, factory: sessionmaker[Session], project_id: int) -> pd.DataFrame:
    with factory() as s:
        project = s.get(Project, project_id)
        assert project is not None
        return pd.read_parquet(settings.extracts_root / workspace_id(project) / "current" / "patients.parquet")


def notebook_crosstab(data: pd.DataFrame, folder: Path, name: str, suppress: bool, **kw: Any) -> Path:
    """What the researcher's notebook does: a checked crosstab saved with outputs_helper."""
    out = dc.crosstab("region", "sex", data=data, dataset="patients", **kw)
    if suppress:
        out = out.suppressed()
    return save_output(out, name, outputs_dir=folder, allow_fail=not suppress)


def project_with_checker_member(factory: sessionmaker[Session]) -> int:
    """An active project whose team includes `dualrole`, a researcher who is also an output checker."""
    with unit_of_work(factory) as s:
        accounts.create_local_user(s, "test", username="dualrole", display_name="Dual Role", password="a-long-pass-99",
                                   roles=["researcher", "output_checker"])
        f.accredit(s, "researcher")
        f.accredit(s, "dualrole")
    app_id = f.draft(factory, title="Outputs project")
    with unit_of_work(factory) as s:
        application = s.get(Application, app_id)
        assert application is not None
        applications.add_member(s, f.user(s, "researcher"), application, f.user(s, "dualrole"), "analyst")
    f.submit(factory, app_id)
    f.review_round(factory, app_id, {"dac1": "approve", "dac2": "approve", "laymember": "approve"})
    with unit_of_work(factory) as s:
        application = s.get(Application, app_id)
        assert application is not None
        dac.decide(s, f.user(s, "dacchair"), application, f.DAC, outcome="approved", conditions="", message="",
                   access_end_date=f.TODAY.replace(year=f.TODAY.year + 1), today=f.TODAY)
    with factory() as s:
        return s.scalars(select(Project.id).where(Project.application_id == app_id)).one()


def ready_project(factory: sessionmaker[Session], settings: Settings) -> int:
    project_id = project_with_checker_member(factory)
    with factory() as s:
        project = s.get(Project, project_id)
        assert project is not None
        write_extract(settings, project)
    return project_id


def new_request(factory: sessionmaker[Session], settings: Settings, project_id: int, paths: list[str],
                author: str = "researcher", kinds: dict[str, str] | None = None) -> int:
    """A request with one group, and the named files handed over from the author's workspace outputs/ folder."""
    with unit_of_work(factory) as s:
        project = s.get(Project, project_id)
        assert project is not None
        actor = f.user(s, author)
        request = service.create_request(s, actor, project, "Admissions by region")
        group = service.save_group(s, actor, request, "Region by sex", "Counts of patients by region and sex, "
                                   "whole extract.", "Cells under 10 suppressed, with secondary suppression.")
        request_id, group_id = request.id, group.id
    folder = outputs_of(settings, factory, author, project_id)
    for path in paths:
        hand_over(factory, settings, request_id, folder, path, group_id, (kinds or {}).get(path, "output"), author)
    return request_id


def submitted(factory: sessionmaker[Session], settings: Settings, project_id: int) -> int:
    """A request of the researcher's suppressed crosstab, submitted and through its automatic check."""
    folder = outputs_of(settings, factory, "researcher", project_id)
    notebook_crosstab(load_extract(settings, factory, project_id), folder, "by_region", suppress=True)
    request_id = new_request(factory, settings, project_id, ["by_region.csv"])
    act(factory, request_id, "researcher", service.submit, settings)
    work(factory, settings)
    return request_id


def act(factory: sessionmaker[Session], request_id: int, username: str, command: Any, *args: Any) -> Any:
    with unit_of_work(factory) as s:
        request = s.get(OutputRequest, request_id)
        assert request is not None
        return command(s, f.user(s, username), request, *args)


def work(factory: sessionmaker[Session], settings: Settings) -> int:
    """One pass of the real worker's outbox delivery."""
    import gateway.worker  # noqa: F401 - registers the handlers exactly as the worker process does

    return outbox.process(outbox.WorkerContext(settings=settings, factory=factory))


def review_all(factory: sessionmaker[Session], request_id: int, username: str, choice: str) -> None:
    with unit_of_work(factory) as s:
        request = s.get(OutputRequest, request_id)
        assert request is not None
        checker = f.user(s, username)
        for item in request.files:
            if item.kind == "output":
                service.vote(s, checker, request, item, choice)
        service.submit_review(s, checker, request)


def get(factory: sessionmaker[Session], request_id: int) -> OutputRequest:
    with factory() as s:
        request = s.get(OutputRequest, request_id)
        assert request is not None
        for item in request.files:
            _ = item.votes, item.group
        _ = request.project, request.reviews, request.comments, request.author
        return request


def released_request(factory: sessionmaker[Session], settings: Settings, project_id: int, name: str,
                     **filters: Any) -> int:
    folder = outputs_of(settings, factory, "researcher", project_id)
    notebook_crosstab(load_extract(settings, factory, project_id), folder, name, suppress=True, **filters)
    request_id = new_request(factory, settings, project_id, [f"{name}.csv"])
    act(factory, request_id, "researcher", service.submit, settings)
    work(factory, settings)
    review_all(factory, request_id, "checker1", "approve")
    review_all(factory, request_id, "checker2", "approve")
    act(factory, request_id, "checker1", service.decide, "approve", "")
    work(factory, settings)
    return request_id


def sample_request(factory: sessionmaker[Session], settings: Settings, project_id: int) -> tuple[int, int]:
    """For the route walk: a pending request by `researcher` on the walk project, one group and one CSV."""
    with factory() as s:
        project = s.get(Project, project_id)
        assert project is not None
        write_extract(settings, project)
    folder = outputs_of(settings, factory, "researcher", project_id)
    (folder / "walk.csv").write_text("region,count\nNorth,40\nSouth,35\n")
    (folder / "second.csv").write_text("region,count\nNorth,45\nSouth,30\n")
    request_id = new_request(factory, settings, project_id, ["walk.csv"])
    with factory() as s:
        request = s.get(OutputRequest, request_id)
        assert request is not None
        return request_id, request.files[0].id


@pytest.fixture
def project_id(session_factory: sessionmaker[Session], settings: Settings, demo_users: dict[str, int]) -> int:
    return ready_project(session_factory, settings)


# --- who may check --------------------------------------------------------------------------------------------

def test_neither_the_author_nor_a_project_member_can_review(session_factory: sessionmaker[Session],
                                                            settings: Settings, project_id: int) -> None:
    folder = outputs_of(settings, session_factory, "dualrole", project_id)
    notebook_crosstab(load_extract(settings, session_factory, project_id), folder, "by_region", suppress=True)
    own = new_request(session_factory, settings, project_id, ["by_region.csv"], author="dualrole")
    act(session_factory, own, "dualrole", service.submit, settings)
    folder = outputs_of(settings, session_factory, "researcher", project_id)
    notebook_crosstab(load_extract(settings, session_factory, project_id), folder, "by_region", suppress=True)
    colleague = new_request(session_factory, settings, project_id, ["by_region.csv"])
    act(session_factory, colleague, "researcher", service.submit, settings)

    with pytest.raises(PermissionDenied, match="you wrote this request"):
        review_all(session_factory, own, "dualrole", "approve")
    with pytest.raises(PermissionDenied, match="on this project's team"):
        review_all(session_factory, colleague, "dualrole", "approve")
    with pytest.raises(PermissionDenied, match="Only output checkers"):
        review_all(session_factory, colleague, "researcher", "approve")
    with session_factory() as s:
        assert service.queue(s, f.user(s, "dualrole")) == []
        assert {r.id for r in service.queue(s, f.user(s, "checker1"))} == {own, colleague}
    assert get(session_factory, colleague).state == OutputState.SUBMITTED


def remove_from_team(factory: sessionmaker[Session], project_id: int, username: str) -> None:
    """The lead's amendment takes `username` off the project's team, approved by the committee."""
    with unit_of_work(factory) as s:
        lead = f.user(s, "researcher")
        amendment = applications.start_amendment(s, lead, s.get(Project, project_id))
        applications.remove_member(s, lead, amendment, f.user(s, username).id)
        applications.update_draft(s, lead, amendment, {"amendment_summary": f"{username} leaves the team."})
        amendment_id = amendment.id
    f.submit(factory, amendment_id)
    f.review_round(factory, amendment_id, {"dac1": "approve"})
    with unit_of_work(factory) as s:
        dac.decide(s, f.user(s, "dacchair"), s.get(Application, amendment_id), f.DAC, outcome="approved",
                   conditions="", message="", access_end_date=None, today=f.TODAY)


def set_roles(factory: sessionmaker[Session], username: str, roles: list[str]) -> None:
    with unit_of_work(factory) as s:
        accounts.set_roles(s, f.user(s, "admin"), f.user(s, username), roles, "Changes job.")


def test_a_former_team_member_made_an_output_checker_cannot_check_the_projects_requests(
        session_factory: sessionmaker[Session], settings: Settings, project_id: int, app: Flask) -> None:
    """`dualrole`, a researcher on the team, leaves it by amendment and is later made an output checker: the queue
    does not offer the team's request, the page says why, nobody asks them to check it, and their vote, review and
    decision are refused. The request is checked by two others as before."""
    request_id = submitted(session_factory, settings, project_id)
    set_roles(session_factory, "dualrole", ["researcher"])
    remove_from_team(session_factory, project_id, "dualrole")
    set_roles(session_factory, "dualrole", ["researcher", "output_checker"])

    with session_factory() as s:
        assert service.queue(s, f.user(s, "dualrole")) == []
        assert [r.id for r in service.queue(s, f.user(s, "checker1"))] == [request_id]
        request = s.get(OutputRequest, request_id)
        assert request is not None
        assert "dualrole" not in {u.username for u in service.checkers_for(s, request)}
        assert "checker1" in {u.username for u in service.checkers_for(s, request)}
    with pytest.raises(PermissionDenied, match="you were on this project's team"):
        review_all(session_factory, request_id, "dualrole", "approve")
    page = app.test_client()
    sign_in_session(page, session_factory, "dualrole")
    assert f"/outputs/{request_id}" not in page.get("/outputs/queue").get_data(as_text=True)
    html = page.get(f"/outputs/{request_id}").get_data(as_text=True)
    assert "You cannot check this request" in html and "you were on this project&#39;s team" in html

    review_all(session_factory, request_id, "checker1", "approve")
    review_all(session_factory, request_id, "checker2", "approve")
    with pytest.raises(PermissionDenied, match="you were on this project's team"):
        act(session_factory, request_id, "dualrole", service.decide, "approve", "")
    assert get(session_factory, request_id).state == OutputState.REVIEWED
    act(session_factory, request_id, "checker1", service.decide, "approve", "")
    assert get(session_factory, request_id).state == OutputState.APPROVED


def test_the_checkers_pages_read_the_former_team_with_the_project(session_factory: sessionmaker[Session],
                                                                   settings: Settings, project_id: int,
                                                                   app: Flask) -> None:
    """The conflict rule's former team comes joined to the project the rule reads (bench/pages.py's budget): the
    queue, the request page and the home page send no statement of their own for it, and as many statements once
    the project has a former member as before."""
    from tests.integration.test_page_queries import Statements

    request_id = submitted(session_factory, settings, project_id)
    statements = Statements(app.extensions["sde_engine"])
    client = app.test_client()
    sign_in_session(client, session_factory, "checker1")

    def sent() -> dict[str, int]:
        counts = {}
        for page, shows in (("/outputs/queue", f"/outputs/{request_id}"),
                            (f"/outputs/{request_id}", "Submit my review"), ("/home", "output request to check")):
            client.get(page)  # per-process caches filled
            statements.sent.clear()
            response = client.get(page)
            assert response.status_code == 200 and shows in response.get_data(as_text=True), page
            reads_former = [q for q in statements.sent if "project_former_members" in q]
            assert reads_former, page  # the rule has the former team to read
            assert not [q for q in reads_former if q.lstrip().startswith("SELECT project_former_members.")], page
            counts[page] = len(statements.sent)
        return counts

    before = sent()
    remove_from_team(session_factory, project_id, "dualrole")
    assert sent() == before


def test_a_single_approval_does_not_release(session_factory: sessionmaker[Session], settings: Settings,
                                            project_id: int) -> None:
    request_id = submitted(session_factory, settings, project_id)
    review_all(session_factory, request_id, "checker1", "approve")
    assert get(session_factory, request_id).state == OutputState.PARTIALLY_REVIEWED
    with pytest.raises(Conflict, match="two submitted reviews"):
        act(session_factory, request_id, "checker1", service.decide, "approve", "")
    with pytest.raises(Conflict, match="already submitted"):
        review_all(session_factory, request_id, "checker1", "approve")
    work(session_factory, settings)
    assert get(session_factory, request_id).state == OutputState.PARTIALLY_REVIEWED
    assert not (settings.outputs_dir / "releases").exists() or not any((settings.outputs_dir / "releases").iterdir())


def test_blinded_until_both_reviews_then_approved_and_released(session_factory: sessionmaker[Session],
                                                               settings: Settings, project_id: int) -> None:
    folder = outputs_of(settings, session_factory, "researcher", project_id)
    notebook_crosstab(load_extract(settings, session_factory, project_id), folder, "by_region", suppress=True)
    (folder / "notes.txt").write_text("How the table was made.")
    request_id = new_request(session_factory, settings, project_id, ["by_region.csv", "notes.txt"],
                             kinds={"notes.txt": "supporting"})
    act(session_factory, request_id, "researcher", service.submit, settings)
    work(session_factory, settings)
    item = get(session_factory, request_id).files[0]
    assert item.check_status == "pass" and item.check_result["method"] == "recomputed"
    review_all(session_factory, request_id, "checker1", "approve")
    with session_factory() as s:
        request = s.get(OutputRequest, request_id)
        assert request is not None
        other = f.user(s, "checker2")
        assert service.visible_votes(other, request, request.files[0]) == []  # blinded
    review_all(session_factory, request_id, "checker2", "approve")
    with session_factory() as s:
        request = s.get(OutputRequest, request_id)
        assert request is not None
        assert {v.reviewer.username for v in service.visible_votes(f.user(s, "checker2"), request,
                                                                   request.files[0])} == {"checker1", "checker2"}
    act(session_factory, request_id, "checker2", service.decide, "approve", "")
    assert get(session_factory, request_id).state == OutputState.APPROVED
    work(session_factory, settings)
    request = get(session_factory, request_id)
    assert request.state == OutputState.RELEASED
    package = release_mod.package_path(request, settings.outputs_dir)
    assert hashlib.sha256(package.read_bytes()).hexdigest() == request.package_sha256
    with zipfile.ZipFile(package) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        assert sorted(archive.namelist()) == ["manifest.json", "outputs/by_region.csv", "results.json"]  # supporting
        # files are never released
        for entry in manifest["files"]:
            assert hashlib.sha256(archive.read(entry["path"])).hexdigest() == entry["sha256"]
    assert {r["checker"] for r in manifest["reviews"]} == {"checker1", "checker2"}
    assert manifest["files"][0]["verdict"]["automatic"] == "pass"
    with session_factory() as s:
        from gateway.charging.models import MeterEvent

        checks = s.scalars(select(MeterEvent.event_key).where(MeterEvent.project_id == project_id,
                                                              MeterEvent.kind == "output_check")).all()
        assert checks == [f"output_check:{request_id}:1"]


def test_return_needs_a_public_comment_and_a_resubmitted_file_loses_its_votes(
        session_factory: sessionmaker[Session], settings: Settings, project_id: int) -> None:
    folder = outputs_of(settings, session_factory, "researcher", project_id)
    data = load_extract(settings, session_factory, project_id)
    notebook_crosstab(data, folder, "by_region", suppress=False)
    request_id = new_request(session_factory, settings, project_id, ["by_region.csv"])
    act(session_factory, request_id, "researcher", service.submit, settings)
    work(session_factory, settings)
    item = get(session_factory, request_id).files[0]
    assert item.check_status == "fail"
    assert any(c["status"] == "fail" and "threshold" in c["rules"] for c in item.check_result["cells"])
    review_all(session_factory, request_id, "checker1", "changes_requested")
    review_all(session_factory, request_id, "checker2", "changes_requested")
    with pytest.raises(ValidationError):
        act(session_factory, request_id, "checker1", service.decide, "return", " ")
    act(session_factory, request_id, "checker1", service.decide, "return", "Suppress the small cell.")
    notebook_crosstab(data, folder, "by_region", suppress=True)
    hand_over(session_factory, settings, request_id, folder, "by_region.csv")  # the same name: a new version
    with session_factory() as s:
        request = s.get(OutputRequest, request_id)
        assert request is not None
        assert request.files[0].version == 2 and service.current_votes(request.files[0]) == []
    act(session_factory, request_id, "researcher", service.submit, settings)
    work(session_factory, settings)
    request = get(session_factory, request_id)
    assert (request.round, request.state, request.files[0].check_status) == (2, OutputState.SUBMITTED, "pass")
    with pytest.raises(PermissionDenied):
        act(session_factory, request_id, "checker1", service.withdraw)
    act(session_factory, request_id, "researcher", service.withdraw)
    assert get(session_factory, request_id).state == OutputState.WITHDRAWN


# --- automatic checks --------------------------------------------------------------------------------------------

def test_a_file_edited_after_saving_is_flagged_by_recomputation(session_factory: sessionmaker[Session],
                                                                settings: Settings, project_id: int) -> None:
    folder = outputs_of(settings, session_factory, "researcher", project_id)
    path = notebook_crosstab(load_extract(settings, session_factory, project_id), folder, "by_region", suppress=True)
    edited = path.read_text().replace("40", "45")
    path.write_text(edited)
    sidecar = folder / "by_region.sdc.json"  # even with the saved hash forged, recomputation catches the edit
    content = json.loads(sidecar.read_text())
    content["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    sidecar.write_text(json.dumps(content))
    request_id = new_request(session_factory, settings, project_id, ["by_region.csv"])
    act(session_factory, request_id, "researcher", service.submit, settings)
    work(session_factory, settings)
    item = get(session_factory, request_id).files[0]
    assert item.check_status == "fail"
    assert item.check_result["mismatches"] and any("mismatch" in c["rules"] for c in item.check_result["cells"])
    assert any("edited by hand" in n for n in item.check_result["notes"])


def test_later_edits_in_the_workspace_do_not_change_what_was_submitted(
        session_factory: sessionmaker[Session], settings: Settings, project_id: int) -> None:
    folder = outputs_of(settings, session_factory, "researcher", project_id)
    path = notebook_crosstab(load_extract(settings, session_factory, project_id), folder, "by_region", suppress=True)
    submitted = path.read_bytes()
    request_id = new_request(session_factory, settings, project_id, ["by_region.csv"])
    path.write_text("region,F,M\nNorth,1,2\n")
    item = get(session_factory, request_id).files[0]
    assert item.sha256 == hashlib.sha256(submitted).hexdigest()
    assert (settings.outputs_dir / item.stored_name).read_bytes() == submitted


def test_an_output_differing_from_a_released_one_by_a_small_group_is_flagged(
        session_factory: sessionmaker[Session], settings: Settings, project_id: int) -> None:
    first = released_request(session_factory, settings, project_id, "everyone")
    assert get(session_factory, first).state == OutputState.RELEASED
    folder = outputs_of(settings, session_factory, "researcher", project_id)
    notebook_crosstab(load_extract(settings, session_factory, project_id), folder, "not_decile_10", suppress=True,
                      filters={"imd_decile": {"between": [1, 9]}})
    request_id = new_request(session_factory, settings, project_id, ["not_decile_10.csv"])
    act(session_factory, request_id, "researcher", service.submit, settings)
    work(session_factory, settings)
    item = get(session_factory, request_id).files[0]
    assert item.check_status == "fail"
    assert any("differ by 4 people" in d for d in item.check_result["differencing"])
    assert any("differencing" in c["rules"] for c in item.check_result["cells"])


def test_files_without_a_record_get_heuristic_checks_for_manual_review(
        session_factory: sessionmaker[Session], settings: Settings, project_id: int) -> None:
    folder = outputs_of(settings, session_factory, "researcher", project_id)
    (folder / "hand.csv").write_text("group,n,max\nA,3,90\nB,120,71\n")
    (folder / "plot.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"><rect width="5" height="5"/></svg>')
    request_id = new_request(session_factory, settings, project_id, ["hand.csv", "plot.svg"])
    act(session_factory, request_id, "researcher", service.submit, settings)
    work(session_factory, settings)
    hand, plot = get(session_factory, request_id).files
    assert hand.check_status == "fail" and hand.check_result["method"] == "heuristic"
    flagged = {(c["row"], c["col"]): c["rules"] for c in hand.check_result["cells"]}
    assert flagged[(1, 1)] == ["small_count"] and "single_person" in flagged[(1, 2)]
    assert flagged[(2, 2)] == ["unrounded", "single_person"]
    assert (plot.check_status, plot.check_result["method"]) == ("review", "manual")


# --- refusals --------------------------------------------------------------------------------------------------

def test_a_suspended_project_or_a_lapsed_accreditation_refuses_requests(
        session_factory: sessionmaker[Session], settings: Settings, project_id: int) -> None:
    from projects import lifecycle
    from projects.models import Accreditation

    with unit_of_work(session_factory) as s:
        project = s.get(Project, project_id)
        assert project is not None
        lifecycle.suspend(s, f.user(s, "admin"), project, "data breach review")
    with pytest.raises(Conflict, match="suspended"):
        new_request(session_factory, settings, project_id, [])
    with unit_of_work(session_factory) as s:
        project = s.get(Project, project_id)
        assert project is not None
        lifecycle.reinstate(s, f.user(s, "admin"), project, "review done")
        for record in s.scalars(select(Accreditation).where(Accreditation.user_id == f.user(s, "researcher").id)):
            record.expiry_date = f.TODAY.replace(year=f.TODAY.year - 1)
    with pytest.raises(Conflict, match="accreditation"):
        new_request(session_factory, settings, project_id, [])


def test_an_exhausted_budget_refuses_requests(session_factory: sessionmaker[Session], settings: Settings,
                                              project_id: int) -> None:
    from gateway.charging import budget

    with unit_of_work(session_factory) as s:
        project = s.get(Project, project_id)
        assert project is not None
        budget.set_budget(s, f.user(s, "finance"), project, 1, "PO 1")
        from gateway.charging.metering import record_meter_event

        record_meter_event(s, project, "fee", 0, "test-fee", description="fee", amount_pence=100)
    with pytest.raises(Conflict, match="budget"):
        new_request(session_factory, settings, project_id, [])


# --- release: all or nothing -------------------------------------------------------------------------------------

def approved_request(factory: sessionmaker[Session], settings: Settings, project_id: int) -> int:
    folder = outputs_of(settings, factory, "researcher", project_id)
    notebook_crosstab(load_extract(settings, factory, project_id), folder, "by_region", suppress=True)
    request_id = new_request(factory, settings, project_id, ["by_region.csv"])
    act(factory, request_id, "researcher", service.submit, settings)
    work(factory, settings)  # the automatic checks, which approval waits for
    review_all(factory, request_id, "checker1", "approve")
    review_all(factory, request_id, "checker2", "approve")
    act(factory, request_id, "checker1", service.decide, "approve", "")
    return request_id


class Crash(Exception):
    pass


def _published(settings: Settings) -> list[Path]:
    folder = settings.outputs_dir / "releases"
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".")) if folder.exists() else []


@pytest.mark.parametrize("step", ["half_written", "written", "published", "before_commit"])
def test_a_release_interrupted_at_any_step_is_complete_or_absent(session_factory: sessionmaker[Session],
                                                                 settings: Settings, project_id: int,
                                                                 step: str) -> None:
    request_id = approved_request(session_factory, settings, project_id)

    def crash(at: str) -> None:
        if at == step:
            raise Crash(at)

    with pytest.raises(Crash):
        release_mod.release(session_factory, settings, request_id, pause=crash)
    assert get(session_factory, request_id).state == OutputState.APPROVED  # nothing committed
    for package in _published(settings):
        assert release_mod.verify_package(package) == []  # whatever is visible is complete
    assert bool(_published(settings)) == (step in {"published", "before_commit"})
    assert release_mod.release(session_factory, settings, request_id) is True  # the retry finishes the job
    request = get(session_factory, request_id)
    assert request.state == OutputState.RELEASED
    assert [p.name for p in _published(settings)] == [request.package_name]
    assert hashlib.sha256(_published(settings)[0].read_bytes()).hexdigest() == request.package_sha256
    assert not [p for p in (settings.outputs_dir / "releases").iterdir() if p.name.startswith(".tmp-")]


KILLER = """
import os, signal, sys
from gateway.config import Settings
from gateway.db import make_engine, make_session_factory
from gateway.outputs import release
settings = Settings.model_validate_json(sys.argv[1])
factory = make_session_factory(make_engine(settings.resolved_database_url))
def pause(step):
    if step == sys.argv[3]:
        os.kill(os.getpid(), signal.SIGKILL)
release.release(factory, settings, int(sys.argv[2]), pause=pause)
"""


@pytest.mark.parametrize("step", ["half_written", "published"])
def test_a_worker_killed_during_release_leaves_a_complete_release_or_none(session_factory: sessionmaker[Session],
                                                                          settings: Settings, project_id: int,
                                                                          step: str) -> None:
    request_id = approved_request(session_factory, settings, project_id)
    done = subprocess.run([sys.executable, "-c", KILLER, settings.model_dump_json(), str(request_id), step],
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120, check=False)
    assert done.returncode == -signal.SIGKILL
    assert get(session_factory, request_id).state == OutputState.APPROVED
    assert bool(_published(settings)) == (step == "published")
    for package in _published(settings):
        assert release_mod.verify_package(package) == []
    assert work(session_factory, settings) >= 1  # the worker's retry
    request = get(session_factory, request_id)
    assert request.state == OutputState.RELEASED
    assert hashlib.sha256(_published(settings)[0].read_bytes()).hexdigest() == request.package_sha256


# --- what leaves: the release package (finding 1) ---------------------------------------------------------------

def test_a_released_package_holds_no_suppressed_count_and_whole_counts_as_integers(
        session_factory: sessionmaker[Session], settings: Settings, project_id: int) -> None:
    """On main, manifest.json held {"row": ["South"], "column": ["M"], "count": 3, "status": "suppressed"}."""
    from tests.support.package_scan import scan_package

    request_id = released_request(session_factory, settings, project_id, "by_region")
    request = get(session_factory, request_id)
    package = release_mod.package_path(request, settings.outputs_dir)
    assert scan_package(package, request) == []
    with zipfile.ZipFile(package) as archive:
        manifest, results = json.loads(archive.read("manifest.json")), json.loads(archive.read("results.json"))
        table = archive.read("outputs/by_region.csv").decode()
    assert table.splitlines() == ["region,F,M", "North,40,35", "South,30,"]  # integers; the 3 is gone
    [entry] = manifest["files"]
    assert entry["record"]["format"] == "londonsde.public_record/1" and entry["exceptions"] == []
    cell = next(c for c in entry["record"]["cells"] if c["row"] == ["South"] and c["column"] == ["M"])
    # not even the rule that hid it: "zeros" would say the count is 0
    assert cell == {"row": ["South"], "column": ["M"], "status": "suppressed", "rules": []}
    assert not {"notes", "count", "counts", "value", "differencing", "expected"} & keys_of(manifest)
    [acro] = results["results"].values()
    assert acro["outcome"]["M"]["South"] == "suppressed; "
    assert acro["files"][0]["name"] == "outputs/by_region.csv"


def test_the_package_scan_finds_mains_leak(tmp_path: Path) -> None:
    """The scanner that runs on every package the suite publishes can fail: main's manifest trips it."""
    from types import SimpleNamespace

    from tests.support.package_scan import scan_package

    leaked = {"row": ["South"], "column": ["M"], "count": 3, "status": "suppressed", "value": None, "rules": []}
    item = SimpleNamespace(path="by_region.csv", kind="output", check_result={"record": {"cells": [leaked]}},
                           sdc_record=None)
    package = tmp_path / "p.zip"
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("manifest.json", json.dumps({"files": [{"disclosure_control_record": {"cells": [leaked]}}]}))
        archive.writestr("outputs/by_region.csv", "region,F,M\nNorth,40,35\nSouth,30,3\n")
    problems = scan_package(package, SimpleNamespace(files=[item]))
    assert any("carries" in p for p in problems) and any("shows its count" in p for p in problems)
    assert any("shows '3'" in p for p in problems)


def test_the_package_scan_finds_a_suppressed_zero_named_and_a_count_in_blanks(tmp_path: Path) -> None:
    """The attack on outputs: "zeros" on a suppressed cell is its count, and a suppressed cell's spaces can count."""
    from types import SimpleNamespace

    from tests.support.package_scan import scan_package

    hidden = {"row": ["South"], "column": ["M"], "count": 0, "status": "suppressed", "value": None, "rules": ["zeros"]}
    item = SimpleNamespace(path="by_region.csv", kind="output", check_result={"record": {"cells": [hidden]}},
                           sdc_record=None)
    public = {k: hidden[k] for k in ("row", "column", "status", "rules")}
    package = tmp_path / "p.zip"
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("manifest.json", json.dumps({"files": [{"record": {"cells": [public]}}]}))
        archive.writestr("results.json", json.dumps({"outcome": {"M": {"South": "PresenceOfZeroCheck; suppressed; "}}}))
        archive.writestr("outputs/by_region.csv", "region,F,M\nNorth,40,35\nSouth,30,   \n")
    problems = scan_package(package, SimpleNamespace(files=[item]))
    assert any("names the rules" in p for p in problems)
    assert any("outcome names the checks" in p for p in problems)
    assert any("shows '   '" in p for p in problems)


def keys_of(node: Any) -> set[str]:
    """Every key anywhere in a JSON document."""
    if isinstance(node, dict):
        return set(node) | {k for v in node.values() for k in keys_of(v)}
    if isinstance(node, list):
        return {k for v in node for k in keys_of(v)}
    return set()


# --- a project under suspension or revoked lets nothing out ----------------------------------------------------

def reviewed_request(factory: sessionmaker[Session], settings: Settings, project_id: int) -> int:
    """A request both checkers have reviewed and approved, awaiting the decision."""
    request_id = submitted(factory, settings, project_id)
    review_all(factory, request_id, "checker1", "approve")
    review_all(factory, request_id, "checker2", "approve")
    return request_id


def change_project(factory: sessionmaker[Session], project_id: int, command: Any, reason: str) -> None:
    with unit_of_work(factory) as s:
        project = s.get(Project, project_id)
        assert project is not None
        command(s, f.user(s, "admin"), project, reason)


lifecycle_state = {"suspend": "suspended", "revoke": "revoked"}


@pytest.mark.parametrize("action", list(lifecycle_state))
def test_a_suspended_or_revoked_project_has_no_output_approved(session_factory: sessionmaker[Session],
                                                               settings: Settings, project_id: int,
                                                               action: str) -> None:
    from projects import lifecycle

    request_id = reviewed_request(session_factory, settings, project_id)
    change_project(session_factory, project_id, getattr(lifecycle, action), "investigation of a breach")
    with pytest.raises(Conflict, match=f"is {lifecycle_state[action]}: no output can be approved"):
        act(session_factory, request_id, "checker1", service.decide, "approve", "")
    work(session_factory, settings)
    assert get(session_factory, request_id).state == OutputState.REVIEWED
    assert _published(settings) == []
    act(session_factory, request_id, "checker1", service.decide, "reject", "The project's access was stopped.")
    assert get(session_factory, request_id).state == OutputState.REJECTED


def test_an_approved_request_is_released_only_once_its_suspended_project_is_reinstated(
        session_factory: sessionmaker[Session], settings: Settings, project_id: int) -> None:
    from projects import lifecycle

    request_id = reviewed_request(session_factory, settings, project_id)
    act(session_factory, request_id, "checker1", service.decide, "approve", "")
    # suspended after the approval committed, before the worker built the package
    change_project(session_factory, project_id, lifecycle.suspend, "investigation of a breach")
    work(session_factory, settings)
    assert get(session_factory, request_id).state == OutputState.APPROVED
    assert _published(settings) == []
    change_project(session_factory, project_id, lifecycle.reinstate, "investigation closed")
    work(session_factory, settings)
    request = get(session_factory, request_id)
    assert request.state == OutputState.RELEASED
    assert [p.name for p in _published(settings)] == [request.package_name]


def test_a_suspension_outlasts_the_end_date_and_only_an_administrator_lifts_it(
        session_factory: sessionmaker[Session], settings: Settings, project_id: int) -> None:
    """The reviewer's finding: a suspended project whose end date passed was expired by the daily job, then an
    extension (allowed for an expired project) made it active again, releasing what the suspension held and reopening
    its workspaces with no administrator reinstating it. A suspension now lasts until an administrator ends it;
    reinstated after its end date, the project is expired (its access has ended), and what it held is released."""
    import datetime as dt

    from projects import applications, lifecycle

    request_id = reviewed_request(session_factory, settings, project_id)
    act(session_factory, request_id, "checker1", service.decide, "approve", "")
    change_project(session_factory, project_id, lifecycle.suspend, "investigation of a breach")
    today = dt.datetime.now(dt.UTC).date()
    with unit_of_work(session_factory) as s:
        project = s.get(Project, project_id)
        assert project is not None
        # the end date passes during the investigation
        project.start_date, project.end_date = today - dt.timedelta(days=60), today - dt.timedelta(days=1)
    with unit_of_work(session_factory) as s:
        assert lifecycle.expire_due(s, today) == []
    with unit_of_work(session_factory) as s, pytest.raises(Conflict, match="suspended"):
        project = s.get(Project, project_id)
        assert project is not None and project.state == "suspended"
        applications.start_amendment(s, f.user(s, "researcher"), project)
    work(session_factory, settings)
    assert get(session_factory, request_id).state == OutputState.APPROVED and _published(settings) == []

    change_project(session_factory, project_id, lifecycle.reinstate, "investigation closed")
    with session_factory() as s:
        project = s.get(Project, project_id)
        assert project is not None and project.state == "expired"
    work(session_factory, settings)
    assert get(session_factory, request_id).state == OutputState.RELEASED


@postgres_only
def test_a_release_racing_a_suspension_waits_for_it_and_then_holds(
        session_factory: sessionmaker[Session], settings: Settings, project_id: int) -> None:
    """The project is being suspended (its change not yet committed) while the worker records the release: the
    release waits for the suspension and then holds, rather than recording a release on a project suspended at the
    same moment."""
    import threading

    from projects import lifecycle

    request_id = reviewed_request(session_factory, settings, project_id)
    act(session_factory, request_id, "checker1", service.decide, "approve", "")
    suspending = session_factory()
    outcome: list[bool] = []

    def suspend_uncommitted(step: str) -> None:
        if step == "before_commit":  # the package is built; the suspension's change is made but not committed
            project = suspending.get(Project, project_id)
            assert project is not None
            lifecycle.suspend(suspending, f.user(suspending, "admin"), project, "investigation of a breach")
            suspending.flush()

    worker = threading.Thread(target=lambda: outcome.append(release_mod.release(
        session_factory, settings, request_id, pause=suspend_uncommitted)))
    worker.start()
    worker.join(timeout=2)  # waiting on the project's row, or done if nothing waits
    suspending.commit()
    suspending.close()
    worker.join(timeout=30)
    assert outcome == [False]
    assert get(session_factory, request_id).state == OutputState.APPROVED
