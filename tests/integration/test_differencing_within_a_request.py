"""Attack on differencing: two tables sent in the *same* request were never compared with each other.

The check compares a table with tables already released (this project's, and other projects' of the same population),
and approval looks again at tables approved or released since, but both skipped the request's own files: a request
holding "everyone by region and sex" and "everyone outside IMD decile 10 by region and sex" passed both files and
released them together, and their North/F cells (40 and 36) differ by the 4 people of decile 10.
"""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from gateway.config import Settings
from gateway.errors import Conflict
from gateway.outputs import service
from gateway.outputs.workflow import OutputState
from tests.integration.test_outputs import (
    act,
    get,
    load_extract,
    new_request,
    notebook_crosstab,
    outputs_of,
    ready_project,
    review_all,
    work,
)


def test_two_tables_of_one_request_that_difference_each_other_do_not_both_pass(
        session_factory: sessionmaker[Session], settings: Settings, demo_users: dict[str, int]) -> None:
    project_id = ready_project(session_factory, settings)
    folder = outputs_of(settings, session_factory, "researcher", project_id)
    data = load_extract(settings, session_factory, project_id)
    notebook_crosstab(data, folder, "everyone", suppress=True)
    notebook_crosstab(data, folder, "not_decile_10", suppress=True, filters={"imd_decile": {"between": [1, 9]}})
    request_id = new_request(session_factory, settings, project_id, ["everyone.csv", "not_decile_10.csv"])
    act(session_factory, request_id, "researcher", service.submit, settings)
    work(session_factory, settings)

    files = {item.path: item for item in get(session_factory, request_id).files}
    statuses = {path: item.check_status for path, item in files.items()}
    assert "fail" in statuses.values(), f"both passed: {statuses}"
    flagged = [item for item in files.values() if any("differencing" in c["rules"] for c in item.check_result["cells"])]
    assert flagged, "a North/F cell is flagged as differencing"
    [item] = flagged
    notes = " ".join(item.check_result["notes"])
    other = ({"everyone.csv", "not_decile_10.csv"} - {item.path}).pop()
    assert f"'{other}'" in notes and "this request" in notes  # the researcher's own file, by its name
    assert "North" not in notes and "differ by 4" not in notes  # never the labels or the difference
    assert any("differ by 4 people" in n for n in item.check_result["checker_notes"])

    # without an exception the request cannot be approved, so nothing is released
    review_all(session_factory, request_id, "checker1", "approve")
    review_all(session_factory, request_id, "checker2", "approve")
    with pytest.raises(Conflict, match="failed its automatic check and has no exception"):
        act(session_factory, request_id, "checker1", service.decide, "approve", "")
    work(session_factory, settings)
    assert get(session_factory, request_id).state != OutputState.RELEASED
