"""`sde demo` seeds one application in every state and approved projects, through the real services."""

from __future__ import annotations

import datetime as dt

from click.testing import CliRunner
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from gateway import audit
from gateway.cli import main
from projects.accreditation_rules import valid_accreditation
from projects.models import Accreditation, Application, Project
from projects.workflow import AppState


def test_demo_covers_every_application_state_and_is_idempotent(database_url: str, tmp_path) -> None:
    env = {"SDE_DATABASE_URL": database_url, "SDE_INSTANCE_DIR": str(tmp_path / "instance")}
    first = CliRunner().invoke(main, ["demo", "--seed-only"], env=env)
    assert first.exit_code == 0, first.output
    engine = create_engine(database_url)
    with Session(engine) as s:
        states = {a.state for a in s.scalars(select(Application))}
        assert states == {state.value for state in AppState}
        projects = s.scalars(select(Project)).all()
        assert len(projects) >= 2 and all(p.state == "active" for p in projects)
        titles = " ".join(p.title for p in projects).lower()
        assert "asthma" in titles and "hypertension" in titles
        # both security tiers are shown: the children's asthma study is high, the others standard
        assert {p.title.split()[0]: p.security_tier for p in projects if p.title.split()[0] in ("Asthma", "Blood")} \
            == {"Asthma": "high", "Blood": "standard"}
        from gateway.identity.accounts import find_user
        for name in ("researcher", "researcher2"):
            assert valid_accreditation(s, find_user(s, name)) is not None
        today = dt.datetime.now(dt.UTC).date()
        assert any(a.expiry_date < today for a in s.scalars(select(Accreditation)))  # one has expired
        counts = (s.scalar(select(Application.id).order_by(Application.id.desc()).limit(1)), len(projects))
        assert audit.verify(s).ok
    again = CliRunner().invoke(main, ["demo", "--seed-only"], env=env)
    assert again.exit_code == 0 and "none (already there)" in again.output
    with Session(engine) as s:
        assert (s.scalar(select(Application.id).order_by(Application.id.desc()).limit(1)),
                len(s.scalars(select(Project)).all())) == counts
    engine.dispose()
