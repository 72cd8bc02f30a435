"""Models and survival curves through the real worker: the gateway refits each one on the extract with its own
rules (so the implied-table and separation rules apply whatever the notebook ran), compares it with the submitted
CSV, and never runs a formula that does more than name columns."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session, sessionmaker

import disclosure_control as dc
from gateway.config import Settings
from gateway.outputs import service
from gateway.workspaces.entitlement import workspace_id
from notebooks_template.outputs_helper import save_output
from projects.models import Project
from tests.integration.test_outputs import act, get, new_request, outputs_of, ready_project, work


def admissions() -> pd.DataFrame:
    """Group c: 30 without the event and 3 with it (a cell of 3 behind a category of 33); two arms of a trial."""
    rng = np.random.default_rng(19)
    cells = {"a": (40, 40), "b": (40, 30), "c": (30, 3)}
    rows = [(g, y) for g, (n0, n1) in cells.items() for y, n in ((0, n0), (1, n1)) for _ in range(n)]
    frame = pd.DataFrame(rows, columns=["group", "event"])
    frame["age"] = rng.uniform(20, 80, len(frame)).round(1)
    frame["sex"] = rng.choice(["F", "M"], len(frame))
    frame["months"] = rng.integers(1, 13, len(frame))
    frame["died"] = rng.integers(0, 2, len(frame))
    frame["arm"] = rng.choice(["a", "b"], len(frame))
    return frame


def add_dataset(settings: Settings, factory: sessionmaker[Session], project_id: int, name: str,
                frame: pd.DataFrame) -> pd.DataFrame:
    """Add a table to the project's current extract, as the extract builder lays it out."""
    with factory() as s:
        project = s.get(Project, project_id)
        assert project is not None
        version = settings.extracts_root / workspace_id(project) / "current"
    frame.to_parquet(version / f"{name}.parquet", index=False)
    digest = hashlib.sha256((version / f"{name}.parquet").read_bytes()).hexdigest()
    manifest = json.loads((version / "manifest.json").read_text())
    manifest["files"][f"{name}.parquet"] = digest
    manifest["tables"].append({"dataset": name, "file": f"{name}.parquet", "rows": len(frame),
                               "columns": [{"name": c} for c in frame.columns], "sha256": digest})
    (version / "manifest.json").write_text(json.dumps(manifest))
    return pd.read_parquet(version / f"{name}.parquet")


def forge(folder: Path, name: str, csv_text: str | None = None, **query: object) -> None:
    """Edit a saved output as a researcher could: the CSV, the recorded query, and the hash to match."""
    path = folder / f"{name}.csv"
    if csv_text is not None:
        path.write_text(csv_text)
    sidecar = json.loads((folder / f"{name}.sdc.json").read_text())
    sidecar["record"]["query"].update(query)
    sidecar["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    sidecar["status"] = sidecar["record"]["status"] = "pass"
    (folder / f"{name}.sdc.json").write_text(json.dumps(sidecar))


def test_models_and_curves_are_refitted_with_the_gateway_rules(session_factory: sessionmaker[Session],
                                                                 settings: Settings, demo_users: dict[str, int],
                                                                 tmp_path: Path) -> None:
    project_id = ready_project(session_factory, settings)
    data = add_dataset(settings, session_factory, project_id, "admissions", admissions())
    folder = outputs_of(settings, session_factory, "researcher", project_id)

    fine = dc.logit("event ~ age + C(sex)", data, dataset="admissions", cov_type="HC1")
    assert fine.status == "pass"
    save_output(fine, "edited", outputs_dir=folder)
    save_output(fine, "fine", outputs_dir=folder)
    # the notebook ran with a threshold of 3, so it passed there; the gateway's threshold is 10
    relaxed = dc.logit("event ~ age + C(group)", data, dataset="admissions", config=dc.SDCConfig(threshold=3))
    assert relaxed.status == "pass"
    save_output(relaxed, "small_cell", outputs_dir=folder)
    edited = (folder / "edited.csv").read_text().splitlines()
    cells = edited[1].split(",")
    cells[1] = str(float(cells[1]) + 0.5)
    forge(folder, "edited", "\n".join([edited[0], ",".join(cells), *edited[2:]]) + "\n")
    marker = tmp_path / "formula-ran"
    save_output(fine, "injected", outputs_dir=folder)
    forge(folder, "injected", formula=f'event ~ I(__import__("os").system("touch {marker}"))')
    curve = dc.survival(data, "months", "died", group="arm", dataset="admissions")
    assert curve.status == "fail"
    save_output(curve.suppressed(), "by_arm", outputs_dir=folder)
    save_output(curve, "by_arm_raw", outputs_dir=folder, allow_fail=True)

    names = ["fine", "small_cell", "edited", "injected", "by_arm", "by_arm_raw"]
    request_id = new_request(session_factory, settings, project_id, [f"{n}.csv" for n in names])
    act(session_factory, request_id, "researcher", service.submit, settings)
    work(session_factory, settings)
    files = {item.path.removesuffix(".csv"): item for item in get(session_factory, request_id).files}

    ok = files["fine"].check_result
    assert (files["fine"].check_status, ok["method"], ok["mismatches"]) == ("pass", "recomputed", [])
    assert ok["record"]["query"]["fit"] == {"cov_type": "HC1"}

    small = files["small_cell"].check_result
    assert (files["small_cell"].check_status, small["method"]) == ("fail", "recomputed")
    assert "C(group) = c with outcome 1: 3 people (fewer than 10)" in small["summary"]
    assert any("different from the gateway's" in n for n in small["notes"])
    flagged_rows = {c["row"] for c in small["cells"] if "model_threshold" in c["rules"]}
    assert len(flagged_rows) == 2  # the two coefficients of C(group), every column of each
    implied = {(c["category"][0], c["outcome"]): c for c in small["record"]["implied"]}
    assert implied[("c", 1)]["count"] == 3 and implied[("c", 1)]["status"] == "fail"

    assert files["edited"].check_status == "fail" and files["edited"].check_result["mismatches"] == [[1, 1]]

    injected = files["injected"].check_result
    assert not marker.exists()
    # why, with the formula's words, is for the checkers; the author's notes name only the part at fault
    assert injected["method"] == "heuristic"
    assert any("is not allowed in a formula" in n for n in injected["checker_notes"])
    assert any("the recorded model cannot be fitted" in n for n in injected["notes"])
    assert not any("__import__" in n or "is not allowed" in n for n in injected["notes"])

    merged = files["by_arm"].check_result
    assert (files["by_arm"].check_status, merged["method"], merged["mismatches"]) == ("pass", "recomputed", [])
    raw = files["by_arm_raw"].check_result
    assert (files["by_arm_raw"].check_status, raw["method"]) == ("fail", "recomputed")
    assert "fail on their own" in raw["summary"]
