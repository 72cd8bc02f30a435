"""The one rule every later step calls: does this person hold a valid accreditation today?

Valid means verified by an accreditation officer and not past its expiry date, and, for a provisional
(supervised) accreditation, supervised that day: the supervisor's account is active, they are at the holder's
organisation and they hold a valid full accreditation. It is computed each time from the records, never stored as
a flag that could go stale, so a supervisor who leaves, is deactivated or lets their own accreditation lapse stops
supervising at once, as checking them only when the record was made would not.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, object_session

from gateway.db import utcnow
from gateway.errors import Conflict
from gateway.models import User
from projects.models import Accreditation


class AccreditationRequired(Conflict):
    status_code = 409
    error = "accreditation_required"


def today() -> dt.date:
    return utcnow().date()


def _verified_and_current(accreditation: Accreditation, day: dt.date) -> bool:
    return accreditation.status == "verified" and accreditation.expiry_date >= day


def is_valid(accreditation: Accreditation, on: dt.date | None = None) -> bool:
    day = on or today()
    return _verified_and_current(accreditation, day) and supervision_problem(accreditation, day) is None


# Read on every project overview (the workspace card): built once per process.
_VALID = select(Accreditation).where(Accreditation.user_id == bindparam("user_id"), Accreditation.status == "verified",
                                     Accreditation.expiry_date >= bindparam("day"))


def _holds_valid_full(session: Session, user_id: int, day: dt.date) -> bool:
    return any(a.level == "full" for a in session.scalars(_VALID, {"user_id": user_id, "day": day}))


def supervision_problem(accreditation: Accreditation, on: dt.date | None = None) -> str | None:
    """Why a provisional accreditation is not supervised on that day, or None (also for a full one)."""
    if accreditation.level != "provisional":
        return None
    session = object_session(accreditation)
    supervisor, holder = accreditation.supervisor, accreditation.user
    if session is None or supervisor is None:
        return "it has no supervisor"
    if not supervisor.is_active:
        return f"the supervisor, {supervisor.display_name}, no longer has an active account"
    if holder.organisation_id is None or supervisor.organisation_id != holder.organisation_id:
        return f"the supervisor, {supervisor.display_name}, is no longer at the same organisation"
    if not _holds_valid_full(session, supervisor.id, on or today()):
        return f"the supervisor, {supervisor.display_name}, no longer holds a valid full accreditation"
    return None


def valid_accreditation(session: Session, user: User, on: dt.date | None = None) -> Accreditation | None:
    """The user's valid accreditation with the latest expiry, if any (full preferred over provisional; a provisional
    one only while it is supervised)."""
    day = on or today()
    rows = session.scalars(_VALID, {"user_id": user.id, "day": day})
    best = sorted(rows, key=lambda a: (a.level == "full", a.expiry_date), reverse=True)
    return next((a for a in best if supervision_problem(a, day) is None), None)


def check_accredited(session: Session, user: User, purpose: str, on: dt.date | None = None) -> Accreditation:
    """Raise a clear error naming the person and what they tried, unless they are accredited."""
    found = valid_accreditation(session, user, on)
    if found is None:
        raise AccreditationRequired(
            f"{user.display_name} does not hold a valid accreditation, which is needed to {purpose}. "
            "Record a current accreditation and have it verified by an accreditation officer.")
    return found
