"""The one rule every later step calls: does this person hold a valid accreditation today?

Valid means verified by an accreditation officer and not past its expiry date (and, for a provisional one, still
supervised). It is computed each
time from the records, never stored as a flag that could go stale.
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


def is_valid(accreditation: Accreditation, on: dt.date | None = None) -> bool:
    """Verified, not expired and, for a provisional one, supervised on that day (the record's own session is asked)."""
    day = on or today()
    if accreditation.status != "verified" or accreditation.expiry_date < day:
        return False
    session = object_session(accreditation)
    return supervision_problem(session, accreditation, day) is None if session is not None else \
        accreditation.level == "full"


# Read on every project overview (the workspace card): built once per process.
_VALID = select(Accreditation).where(Accreditation.user_id == bindparam("user_id"), Accreditation.status == "verified",
                                     Accreditation.expiry_date >= bindparam("day"))


def valid_accreditation(session: Session, user: User, on: dt.date | None = None) -> Accreditation | None:
    """The user's valid accreditation with the latest expiry, if any (full preferred over provisional). A provisional
    one counts only while it is supervised (``supervision_problem``)."""
    day = on or today()
    rows = session.scalars(_VALID, {"user_id": user.id, "day": day})
    best = sorted(rows, key=lambda a: (a.level == "full", a.expiry_date), reverse=True)
    return next((a for a in best if supervision_problem(session, a, day) is None), None)


def supervision_problem(session: Session, accreditation: Accreditation, on: dt.date | None = None) -> str | None:
    """Why a provisional accreditation is not supervised now, in words (None when it is, or for a full one). Its
    supervisor must be active, at the holder's organisation and hold a valid full accreditation, as when it was
    recorded (docs/accreditation.md), on the day asked about: a supervisor who left, lapsed or was deactivated
    supervises nobody, and the provisional accreditation stops counting (and cannot be verified) until a new one is
    recorded with a current supervisor."""
    if accreditation.level != "provisional":
        return None
    day = on or today()
    holder = session.get(User, accreditation.user_id)
    supervisor = session.get(User, accreditation.supervisor_id) if accreditation.supervisor_id else None
    if holder is None or supervisor is None or not supervisor.is_active:
        return "its supervisor's account is no longer active"
    if holder.organisation_id is None or supervisor.organisation_id != holder.organisation_id:
        return f"its supervisor, {supervisor.display_name}, is no longer at the holder's organisation"
    full = session.scalars(_VALID.where(Accreditation.level == "full"), {"user_id": supervisor.id, "day": day}).first()
    if full is None:
        return f"its supervisor, {supervisor.display_name}, no longer holds a valid full accreditation"
    return None


def check_accredited(session: Session, user: User, purpose: str, on: dt.date | None = None) -> Accreditation:
    """Raise a clear error naming the person and what they tried, unless they are accredited."""
    found = valid_accreditation(session, user, on)
    if found is None:
        raise AccreditationRequired(
            f"{user.display_name} does not hold a valid accreditation, which is needed to {purpose}. "
            "Record a current accreditation and have it verified by an accreditation officer.")
    return found
