"""`sde demo` seeds one application in every state and approved projects, through the real services, with months
of history made at back-dated times: invoices issued and paid, a released output with its receipt, a project
near its end, and an audit chain that verifies and runs forward in time."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from gateway import audit
from gateway.app import create_app
from gateway.charging.models import Invoice
from gateway.cli import main
from gateway.config import load_settings
from gateway.db import back_dated, utcnow
from gateway.extracts.models import ExtractVersion
from gateway.home import NEAR_EXPIRY_DAYS
from gateway.models import AuditEvent
from gateway.outputs import release as release_mod
from gateway.outputs.models import OutputRequest
from projects.accreditation_rules import valid_accreditation
from projects.models import Accreditation, Application, Project
from projects.workflow import AppState
from tests.conftest import sign_in_session

SDE = Path(sys.executable).parent / "sde"


def test_demo_covers_every_application_state_and_is_idempotent(database_url: str, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"SDE_DATABASE_URL": database_url, "SDE_INSTANCE_DIR": str(tmp_path / "instance")}
    started = time.monotonic()
    first = CliRunner().invoke(main, ["demo", "--seed-only"], env=env)
    print(f"demo seeding took {time.monotonic() - started:.1f} s")
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
        # the one waiting in the officer's queue was recorded days ago, not on the history's first day
        (waiting,) = s.scalars(select(Accreditation).where(Accreditation.status == "pending")).all()
        assert utcnow() - dt.timedelta(days=14) < waiting.created_at < utcnow() - dt.timedelta(days=1)
        recorded = s.scalars(select(AuditEvent).where(AuditEvent.action == "accreditation.recorded",
                                                      AuditEvent.object_id == str(waiting.id))).one()
        assert abs(recorded.occurred_at - waiting.created_at) < dt.timedelta(minutes=1)
        # the extracts built in the past say so in their manifests (the back-dated clock, not the real one)
        versions = s.scalars(select(ExtractVersion)).all()
        assert versions and all(
            abs(dt.datetime.fromisoformat(v.manifest["created_at"]) - v.built_at) < dt.timedelta(minutes=5)
            for v in versions)
        assert any(dt.datetime.fromisoformat(v.manifest["created_at"]) < utcnow() - dt.timedelta(days=100)
                   for v in versions)
        counts = (s.scalar(select(Application.id).order_by(Application.id.desc()).limit(1)), len(projects))
        assert audit.verify(s).ok
        times = list(s.scalars(select(AuditEvent.occurred_at).order_by(AuditEvent.seq)))
        assert times == sorted(times) and times[0] < utcnow() - dt.timedelta(days=120)  # back-dated, in order
        # invoices for several past months, issued by finance and the older ones paid
        live = s.scalars(select(Invoice).where(Invoice.state.in_(("issued", "paid")))).all()
        assert len({i.period for i in live}) >= 3 and any(i.state == "paid" for i in live)
        # a project the homes show as ending soon
        assert any(p.state == "active" and today <= p.end_date <= today + dt.timedelta(days=NEAR_EXPIRY_DAYS)
                   for p in projects)
        released = s.scalars(select(OutputRequest).where(OutputRequest.state == "released")).one()
        assert released.released_at is not None and released.released_at < utcnow() - dt.timedelta(days=30)
        package_name = released.package_name
        assert package_name
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    app = create_app(settings)
    client = app.test_client()
    # the register lists the release; its receipt verifies against the published key and the package
    (entry,) = [e for e in client.get("/register.json").json if e["project"]["londonsde"]["releases"]]
    (item,) = entry["project"]["londonsde"]["releases"]
    assert item["package"] == package_name
    (tmp_path / "receipt.json").write_bytes(client.get(f"/register/receipts/{package_name[:-4]}.json").data)
    (tmp_path / "key.pem").write_text(client.get("/register/receipt-key").get_data(as_text=True))
    with app.extensions["sde_sessionmaker"]() as s:
        request = s.get(OutputRequest, released.id)
        assert request is not None
        package = release_mod.package_path(request, settings.outputs_dir)
    verified = subprocess.run([str(SDE), "receipt", "verify", str(tmp_path / "receipt.json"), "--package",
                               str(package), "--public-key", str(tmp_path / "key.pem")],
                              capture_output=True, text=True, timeout=120, env={**os.environ, **env})
    assert verified.returncode == 0 and "the package matches" in verified.stdout, verified.stderr
    # finance sees the months' income in the chart's table
    sign_in_session(client, app.extensions["sde_sessionmaker"], "finance")
    page = client.get("/charging/").get_data(as_text=True)
    assert page.count("<rect") > 3 and all(i.period in page for i in live)
    app.extensions["sde_engine"].dispose()
    again = CliRunner().invoke(main, ["demo", "--seed-only"], env=env)
    assert again.exit_code == 0 and "none (already there)" in again.output
    with Session(engine) as s:
        assert (s.scalar(select(Application.id).order_by(Application.id.desc()).limit(1)),
                len(s.scalars(select(Project)).all())) == counts
    engine.dispose()


def test_the_back_dated_clock_is_for_the_demo_only() -> None:
    past = utcnow() - dt.timedelta(days=90)
    with back_dated("development", past):
        assert abs(utcnow() - past) < dt.timedelta(seconds=5)
        with pytest.raises(RuntimeError, match="already back-dated"), back_dated("development", past):
            pass
    assert abs(utcnow() - dt.datetime.now(dt.UTC)) < dt.timedelta(seconds=1)
    with pytest.raises(RuntimeError, match="production"), back_dated("production", past):
        pass
    with pytest.raises(ValueError, match="never forward"), back_dated("development", utcnow() + dt.timedelta(days=1)):
        pass
