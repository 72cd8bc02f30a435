"""Demo applications in every state and approved projects on the pathfinder themes, made by the real services.

Each step is what a person would do in the gateway: draft, submit, assign, declare, vote, decide.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.config import DacSettings
from gateway.identity.accounts import find_user
from gateway.models import User
from projects import agreements, applications, dac
from projects.applications import VariableChoice
from projects.catalogue import Catalogue
from projects.models import Application

SEEDER = "demo-seed"


@dataclass(frozen=True)
class DemoApplication:
    title: str
    applicant: str
    target: str  # the state to leave it in
    lay_summary: str
    public_benefit: str
    cohort: str
    variables: tuple[tuple[str, str, str], ...]
    commercial: bool = False
    opt_out_applies: bool = True
    end_in_days: int = 540  # access ends this many days after the day the demo is seeded (not the decision)
    votes: dict[str, str] = field(default_factory=dict)
    security_tier: str = "standard"  # chosen by the chair at approval


COMMON = {
    "technical_summary": "Retrospective cohort study on the de-identified extract; descriptive rates with 95% "
                         "confidence intervals and Poisson regression adjusted for age, sex and deprivation.",
    "funder": "National Institute for Health and Care Research",
    "legal_basis_article6": "6(1)(e)", "legal_basis_article9": "9(2)(j)", "common_law_basis": "s251",
    "ethics_reference": "REC 25/LO/0142", "opt_out_reason": "Research without consent: the opt-out is honoured.",
    "workspace_size": "small", "date_from": "2019-01-01", "date_to": "2025-12-31",
    "intended_outputs": "Aggregate tables by borough and deprivation decile, rounded to 5; model coefficients.",
}

DEMO_APPLICATIONS: tuple[DemoApplication, ...] = (
    DemoApplication(
        "Asthma attacks and deprivation in London's children", "researcher", "approved",
        "We will look at how often children with asthma across London have serious asthma attacks, and whether "
        "this is more common in poorer areas, so that support can reach the families who need it most.",
        "Helps the NHS in London target asthma reviews and inhaler checks where attacks are most frequent.",
        "Children aged 5 to 16 with an asthma diagnosis registered with a London GP.",
        (("patients", "sex", "attack rates differ by sex"), ("patients", "imd_decile", "deprivation is the exposure"),
         ("patients", "borough", "results are reported by borough"), ("conditions", "condition", ""),
         ("prescriptions", "drug_class", "")),
        votes={"dac1": "approve", "dac2": "approve_with_conditions", "laymember": "approve"}, end_in_days=21,
        security_tier="high"),  # children's records: the committee chose the high tier (shows both tiers in the demo)
    DemoApplication(
        "Blood pressure control in people with hypertension across London boroughs", "researcher2", "approved",
        "We will find out how many people with high blood pressure have it well controlled, and how this differs "
        "between boroughs, so that services can focus where control is poorest.",
        "Better blood pressure control prevents strokes and heart attacks.",
        "Adults aged 30 and over with a recorded diagnosis of hypertension.",
        (("patients", "sex", "control differs by sex"), ("patients", "borough", "results are by borough"),
         ("bp_readings", "systolic_mmhg", ""), ("bp_readings", "diastolic_mmhg", ""),
         ("conditions", "condition", "")),
        votes={"dac1": "approve", "dac2": "approve", "laymember": "approve"}),
    DemoApplication(
        "Childhood immunisation uptake and deprivation", "researcher", "under_review",
        "We will look at how many young children get their routine vaccinations on time in different parts of "
        "London, and what might be holding uptake back.",
        "Helps plan catch-up clinics where uptake is lowest.",
        "Children born in London from 2019 onwards.",
        (("patients", "imd_decile", "deprivation is the exposure"), ("immunisations", "vaccine", "")),
        votes={"dac1": "approve"}),
    DemoApplication(
        "Delays on the cancer pathway from referral to treatment", "researcher2", "changes_requested",
        "We will measure how long people wait between an urgent cancer referral, their diagnosis and the start "
        "of treatment, and whether waits differ between groups of people.",
        "Shows where delays happen so that hospitals can shorten them.",
        "Adults with an urgent suspected cancer referral.",
        (("cancer_referrals", "referral_date", ""), ("cancer_referrals", "diagnosis_date", ""),
         ("patients", "ethnicity", "to look at inequality in waits")),
        votes={"dac1": "changes_requested", "dac2": "approve", "laymember": "changes_requested"}),
    DemoApplication(
        "Prescribing for type 2 diabetes in primary care", "researcher", "submitted",
        "We will describe which medicines people with type 2 diabetes are prescribed, and how this has changed.",
        "Supports safer, more consistent prescribing.",
        "Adults with type 2 diabetes.",
        (("conditions", "condition", ""), ("prescriptions", "drug_class", ""))),
    DemoApplication(
        "Inhaler use in people with COPD", "researcher2", "draft",
        "A first draft: inhaler use in people with COPD.", "", "",
        (("prescriptions", "drug_class", ""),)),
    DemoApplication(
        "Marketing analysis of inhaler brands", "researcher2", "rejected",
        "A company wants to know which inhaler brands are prescribed in each area to plan its sales visits.",
        "The applicant describes commercial benefit only.",
        "All patients prescribed an inhaler.",
        (("prescriptions", "drug_class", ""), ("patients", "borough", "sales territories")),
        commercial=True, votes={"dac1": "reject", "dac2": "reject", "laymember": "reject"}),
    DemoApplication(
        "GP practice workload pilot", "researcher", "withdrawn",
        "A pilot looking at GP practice workload, withdrawn by the applicant.", "Planning.",
        "All registered patients.", (("patients", "gp_practice", "practice is the unit of analysis"),)),
)


def _user(session: Session, username: str) -> User:
    user = find_user(session, username)
    if user is None:
        raise LookupError(f"demo user {username} is missing")
    return user


def _variables(catalogue: Catalogue, wanted: tuple[tuple[str, str, str], ...]) -> list[VariableChoice]:
    """Keep only variables the catalogue has, so the demo follows the catalogue file as it changes."""
    from projects.catalogue import lookup

    return [VariableChoice(d, v, j) for d, v, j in wanted if lookup(catalogue, d, v) is not None]


def seed_projects(session: Session, catalogue: Catalogue, dac_settings: DacSettings, today: dt.date,
                  approved: bool | None = None, ends_from: dt.date | None = None) -> list[str]:
    """Create the demo applications that are missing (matched by title); returns their references.

    ``approved`` picks only the applications that become projects (True) or only the others (False), so a
    back-dated demo can approve its projects months ago and leave the rest recent; access end dates count
    from ``ends_from`` (the real day of seeding), so the project near its end is near it on the day shown.
    """
    agreement = agreements.ensure_default(session, SEEDER)
    chair = _user(session, "dacchair")
    end_base = ends_from or today
    created = []
    for demo in DEMO_APPLICATIONS:
        if approved is not None and (demo.target == "approved") != approved:
            continue
        if session.scalar(select(Application).where(Application.title == demo.title)) is not None:
            continue
        applicant = _user(session, demo.applicant)
        app = applications.create_draft(session, applicant, demo.title)
        fields = dict(COMMON, lay_summary=demo.lay_summary, public_benefit=demo.public_benefit,
                      cohort_description=demo.cohort, commercial_involvement=demo.commercial,
                      commercial_details="Funded and directed by a pharmaceutical sales company." if demo.commercial
                      else "", opt_out_applies=demo.opt_out_applies)
        if demo.target == "draft":
            fields = {"lay_summary": demo.lay_summary}
        applications.update_draft(session, applicant, app, fields)
        applications.set_variables(session, applicant, app, catalogue, _variables(catalogue, demo.variables))
        created.append(app.reference)
        if demo.target == "draft":
            continue
        applications.submit(session, applicant, app, catalogue, dac_settings, agreement.version, today)
        if demo.target == "withdrawn":
            applications.withdraw(session, applicant, app)
            continue
        if demo.target == "submitted":
            continue
        dac.assign_reviewers(session, chair, app, [_user(session, name) for name in ("dac1", "dac2", "laymember")])
        for name, vote in demo.votes.items():
            reviewer = _user(session, name)
            dac.declare_conflict(session, reviewer, app, False, "")
            dac.submit_review(session, reviewer, app, vote, "Discussed at the demo DAC meeting.",
                              "" if vote == "approve" else "Please see the committee's message.")
        if demo.target == "under_review":
            continue
        outcome = {"approved": "approved", "rejected": "rejected", "changes_requested": "changes_requested"}[
            demo.target]
        dac.decide(session, chair, app, dac_settings, outcome=outcome,
                   conditions="Publish results openly; share code with the SDE team." if outcome == "approved"
                   else "",
                   message={"approved": "", "rejected": "No public benefit is shown; commercial marketing is not "
                                                         "an acceptable purpose.",
                            "changes_requested": "Justify the ethnicity variable and narrow the cohort."}[outcome],
                   access_end_date=end_base + dt.timedelta(days=demo.end_in_days) if outcome == "approved" else None,
                   today=today, security_tier=demo.security_tier if outcome == "approved" else None)
    return created
