"""The one rule every later step calls: does this person hold a valid accreditation today?

Valid means verified by an accreditation officer and not past its expiry date. It is computed each
time from the records, never stored as a flag that could go stale.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from gateway.db import utcnow
from gateway.errors import Conflict
from gateway.models import User
from projects.models import Accreditation


class AccreditationRequired(Conflict):
    status_code = 409
    error = "accreditation_required"


def today() -> dt.date:
    return utcnow().date()


def is_valid(accreditation: Accreditation, on: dt.date | None = None) -> bool:
    return accreditation.status == "verified" and accreditation.expiry_date >= (on or today())


# Read on every project overview (the workspace card): built once per process.
_VALID = select(Accreditation).where(Accreditation.user_id == bindparam("user_id"), Accreditation.status == "verified",
                                     Accreditation.expiry_date >= bindparam("day"))


def valid_accreditation(session: Session, user: User, on: dt.date | None = None) -> Accreditation | None:
    """The user's valid accreditation with the latest expiry, if any (full preferred over provisional)."""
    rows = session.scalars(_VALID, {"user_id": user.id, "day": on or today()})
    best = sorted(rows, key=lambda a: (a.level == "full", a.expiry_date), reverse=True)
    return best[0] if best else None


def check_accredited(session: Session, user: User, purpose: str, on: dt.date | None = None) -> Accreditation:
    """Raise a clear error naming the person and what they tried, unless they are accredited."""
    found = valid_accreditation(session, user, on)
    if found is None:
        raise AccreditationRequired(
            f"{user.display_name} does not hold a valid accreditation, which is needed to {purpose}. "
            "Record a current accreditation and have it verified by an accreditation officer.")
    return found
