"""Demo data for the embedded set-up. Refuses to touch a real deployment."""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.config import Settings
from gateway.errors import Conflict
from gateway.identity.accounts import create_local_user, find_user
from gateway.identity.passwords import hash_password
from gateway.models import User
from gateway.permissions import Role

DEMO_PASSWORD = "demo-password"  # noqa: S105 - documented demo credential, refused in production


@dataclass(frozen=True)
class DemoUser:
    username: str
    display_name: str
    roles: tuple[Role, ...]


DEMO_USERS: tuple[DemoUser, ...] = (
    DemoUser("researcher", "Dr Amara Okafor (researcher)", (Role.RESEARCHER,)),
    DemoUser("researcher2", "Dr Tom Brennan (researcher)", (Role.RESEARCHER,)),
    DemoUser("accreditor", "Priya Shah (accreditation officer)", (Role.ACCREDITATION_OFFICER,)),
    DemoUser("dacchair", "Prof. Helen Marsh (DAC chair)", (Role.DAC_CHAIR, Role.DAC_MEMBER)),
    DemoUser("dac1", "Dr Kwame Mensah (DAC member)", (Role.DAC_MEMBER,)),
    DemoUser("dac2", "Dr Sofia Rossi (DAC member)", (Role.DAC_MEMBER,)),
    DemoUser("laymember", "Janet Clarke (lay member)", (Role.LAY_MEMBER,)),
    DemoUser("checker1", "Ali Hassan (output checker)", (Role.OUTPUT_CHECKER,)),
    DemoUser("checker2", "Grace Liu (output checker)", (Role.OUTPUT_CHECKER,)),
    DemoUser("finance", "Mark Evans (finance)", (Role.FINANCE,)),
    DemoUser("admin", "Sam Taylor (administrator)", (Role.ADMIN,)),
    # a second administrator: releasing a high-risk extract takes two data custodians
    DemoUser("custodian", "Olu Bankole (administrator, data custodian)", (Role.ADMIN,)),
    DemoUser("auditor", "Ruth Adebayo (auditor)", (Role.AUDITOR,)),
)


@functools.cache
def demo_password_hash() -> str:
    """The demo password is public, so one hash serves every demo account (and every test)."""
    return hash_password(DEMO_PASSWORD)


def check_may_seed(session: Session, env: str) -> None:
    if env == "production":
        raise Conflict("Refusing to seed demo data: SDE_ENV is 'production'.")
    real = session.scalars(select(User.username).where(User.is_demo.is_(False)).limit(5)).all()
    if real:
        raise Conflict("Refusing to seed demo data: this database holds real (non-demo) accounts: "
                       + ", ".join(real))


def seed(session: Session, settings: Settings, today: dt.date | None = None) -> list[str]:
    """The whole demo: accounts, organisations and accreditations, then applications and projects."""
    from projects.catalogue import catalogue_at
    from projects.demo_people import DemoCertificateStore, seed_people
    from projects.demo_projects import seed_projects

    day = today or dt.datetime.now(dt.UTC).date()
    created = seed_users(session, settings.env)
    created += seed_people(session, DemoCertificateStore(settings.instance_dir / "certificates"), day)
    created += seed_projects(session, catalogue_at(settings.catalogue_path), settings.dac, day)
    return created


def prepare_data(settings: Settings, factory: sessionmaker[Session]) -> list[str]:
    """Synthetic source data (once), then any queued extract builds, so demo workspaces open at once."""
    from gateway.extracts import service
    from gateway.extracts.synth import generate

    done = []
    if not (settings.source_dir / "catalogue.yaml").exists():
        result = generate(settings.extracts.demo_patients, settings.extracts.demo_seed, settings.source_dir)
        done.append(f"synthetic population of {result.rows['patients']} patients, {result.event_rows} event rows")
    for version in service.run_queued_builds(settings, factory):
        held = " (held: the custodian must review its risk report)" if version.status != "released" else ""
        done.append(f"extract v{version.version} of project {version.project_id}{held}")
    return done


def seed_users(session: Session, env: str) -> list[str]:
    """Create the demo accounts that are missing; returns the usernames created."""
    check_may_seed(session, env)
    created = []
    for demo in DEMO_USERS:
        if find_user(session, demo.username) is None:
            create_local_user(session, "demo-seed", username=demo.username, display_name=demo.display_name,
                              password=DEMO_PASSWORD, email=f"{demo.username}@demo.londonsde.invalid",
                              roles=[r.value for r in demo.roles], is_demo=True,
                              password_hash=demo_password_hash())
            created.append(demo.username)
    return created
