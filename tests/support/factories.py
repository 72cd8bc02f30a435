"""Reach a state by driving the real services (submit, review, approve), never by inserting rows."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from gateway.config import DacSettings
from gateway.db import unit_of_work
from gateway.identity.accounts import find_user
from gateway.models import User
from projects import agreements, applications, dac
from projects.applications import VariableChoice
from projects.catalogue import Catalogue, catalogue_at
from projects.models import Accreditation, Application, Organisation, Project

TODAY = dt.date.today()
DAC = DacSettings()


def catalogue() -> Catalogue:
    from gateway.config import Settings

    return catalogue_at(Settings().catalogue_path)


def user(s: Session, username: str) -> User:
    found = find_user(s, username)
    assert found is not None, username
    return found


def accredit(s: Session, username: str, expiry: dt.date | None = None, level: str = "full") -> Accreditation:
    """A verified accreditation. Written directly only because the accreditation service is tested on its own."""
    from gateway import audit
    from gateway.db import utcnow

    holder, officer = user(s, username), user(s, "accreditor")
    record = Accreditation(user_id=holder.id, scheme="ONS Accredited Researcher (Digital Economy Act)", level=level,
                           number=f"ONS-{holder.id:05d}", training_date=TODAY - dt.timedelta(days=400),
                           expiry_date=expiry or TODAY + dt.timedelta(days=365), status="verified",
                           decided_by_id=officer.id, decided_at=utcnow())
    s.add(record)
    s.flush()
    audit.record(s, officer, "accreditation.verified", "accreditation", record.id)
    return record


def organisation(s: Session, name: str, org_type: str = "academic") -> Organisation:
    org = Organisation(name=name, org_type=org_type)
    s.add(org)
    s.flush()
    return org


COMPLETE = {
    "lay_summary": "We will study how asthma attacks in London children vary with deprivation.",
    "technical_summary": "Cohort study of asthma exacerbations by IMD decile, 2019-2024, Poisson models.",
    "public_benefit": "Target support for families in the most deprived boroughs.",
    "funder": "NIHR", "cohort_description": "Children aged 5-16 registered with a London GP.",
    "date_from": "2019-01-01", "date_to": "2024-12-31", "legal_basis_article6": "6(1)(e)",
    "legal_basis_article9": "9(2)(j)", "common_law_basis": "s251", "ethics_reference": "REC 24/LO/0001",
    "opt_out_applies": "yes", "opt_out_reason": "Research use without consent.", "workspace_size": "small",
    "intended_outputs": "Rate tables by borough and deprivation decile; model coefficients.",
}
VARIABLES = [VariableChoice("patients", "sex", "asthma incidence differs by sex"),
             VariableChoice("patients", "imd_decile", "deprivation is the exposure"),
             VariableChoice("conditions", "condition")]


def draft(factory: sessionmaker[Session], applicant: str = "researcher", title: str = "Asthma and deprivation",
          complete: bool = True, cohort: dict[str, Any] | None = None,
          variables: list[VariableChoice] | None = None) -> int:
    """A draft; ``cohort`` holds cohort criteria as the form or API sends them (e.g. {"cohort_age_min": 18})."""
    with unit_of_work(factory) as s:
        actor = user(s, applicant)
        app = applications.create_draft(s, actor, title)
        if complete:
            applications.update_draft(s, actor, app, COMPLETE)
            applications.set_variables(s, actor, app, catalogue(), VARIABLES if variables is None else variables)
        if cohort:
            applications.update_draft(s, actor, app, cohort, catalogue())
        return app.id


def submit(factory: sessionmaker[Session], app_id: int, applicant: str = "researcher") -> None:
    with unit_of_work(factory) as s:
        agreement = agreements.ensure_default(s, "test")
        app = s.get(Application, app_id)
        assert app is not None
        applications.submit(s, user(s, applicant), app, catalogue(), DAC, agreement.version, TODAY)


def review_round(factory: sessionmaker[Session], app_id: int, votes: dict[str, str],
                 chair: str = "dacchair") -> None:
    """Assign the named reviewers, each declares no conflict and votes."""
    with unit_of_work(factory) as s:
        app = s.get(Application, app_id)
        assert app is not None
        dac.assign_reviewers(s, user(s, chair), app, [user(s, name) for name in votes])
    for name, vote in votes.items():
        with unit_of_work(factory) as s:
            app = s.get(Application, app_id)
            assert app is not None
            reviewer = user(s, name)
            if dac.assignment_of(reviewer, app).conflict is None:  # type: ignore[union-attr]
                dac.declare_conflict(s, reviewer, app, False, "")
            dac.submit_review(s, reviewer, app, vote, "private note", "" if vote == "approve" else "please fix")


def approved_project(factory: sessionmaker[Session], applicant: str = "researcher",
                     title: str = "Asthma and deprivation", cohort: dict[str, Any] | None = None,
                     variables: list[VariableChoice] | None = None, security_tier: str | None = None) -> int:
    app_id = draft(factory, applicant, title, cohort=cohort, variables=variables)
    submit(factory, app_id, applicant)
    review_round(factory, app_id, {"dac1": "approve", "dac2": "approve", "laymember": "approve"})
    with unit_of_work(factory) as s:
        app = s.get(Application, app_id)
        assert app is not None
        dac.decide(s, user(s, "dacchair"), app, DAC, outcome="approved", conditions="Annual report.",
                   message="", access_end_date=TODAY + dt.timedelta(days=365), today=TODAY,
                   security_tier=security_tier)
    with factory() as s:
        project = s.query(Project).filter(Project.application_id == app_id).one()
        return project.id


def awaiting_decision(factory: sessionmaker[Session], applicant: str = "researcher") -> int:
    """An accredited applicant's application, submitted, with all three reviewers' approvals in: the chair decides
    next."""
    with unit_of_work(factory) as s:
        accredit(s, applicant)
    app_id = draft(factory, applicant)
    submit(factory, app_id, applicant)
    review_round(factory, app_id, {"dac1": "approve", "dac2": "approve", "laymember": "approve"})
    return app_id


def amendment(factory: sessionmaker[Session], summary: str | None = None) -> tuple[int, int]:
    """The accredited researcher's approved project and an amendment to it in draft: (project id, amendment id)."""
    with unit_of_work(factory) as s:
        accredit(s, "researcher")
    project_id = approved_project(factory)
    with unit_of_work(factory) as s:
        project = s.get(Project, project_id)
        assert project is not None
        started = applications.start_amendment(s, user(s, "researcher"), project)
        if summary is not None:
            started.amendment_summary = summary
        return project_id, started.id


def release_extract(settings: Any, factory: sessionmaker[Session], project_id: int, version: int,
                    reason: str = "Risk report reviewed; acceptable for this project.") -> None:
    """Release a held version as the custodians would: `admin`, and `custodian` too when it is high risk."""
    from gateway.extracts import service as extracts

    for username in ("admin", "custodian"):
        with unit_of_work(factory) as s:
            project = s.get(Project, project_id)
            assert project is not None
            if extracts.release_held(s, settings, user(s, username), project, version, reason) == "released":
                return


def migrated_with_people(url: str, accredited: tuple[str, ...] = ("researcher",)) -> tuple[Any, sessionmaker[Session]]:
    """A database migrated to the newest revision with the demo's people, ``accredited`` accredited: (its engine, a
    session factory), for a migration test to fill, take back a revision and bring forward again."""
    from gateway import demo
    from gateway.db import make_engine, make_session_factory, unit_of_work
    from gateway.migrate import upgrade

    upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with unit_of_work(factory) as s:
        demo.seed_users(s, "test")
        for name in accredited:
            accredit(s, name)
    return engine, factory
