"""Charging's part of an approval: the quote frozen with its tariff version, its one-off lines as fee meter events.

Above quotes and metering (it uses both), so neither of them imports the other; the composition root
(gateway.wiring) subscribes ``freeze_quote`` to the approval event.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from gateway import audit
from gateway.charging.metering import record_meter_event
from gateway.charging.models import FrozenQuote, FrozenQuoteLine
from gateway.charging.quotes import ONCE, build_quote, frozen_quote_of, inputs_for
from gateway.charging.tariff import Tariff, record_version, tariff_in_force
from gateway.db import utcnow
from gateway.models import User
from projects.models import Application, Project


def freeze_quote(session: Session, actor: User | str, application: Application, project: Project,
                 today: dt.date, tariff: Tariff | None = None) -> FrozenQuote:
    """At approval: store the quote with its tariff version; its one-off lines become fee meter events."""
    existing = frozen_quote_of(session, application.id)
    if existing is not None:
        return existing
    tariff = tariff or tariff_in_force()
    record_version(session, tariff)
    access_end = project.end_date if application.kind == "new" else None
    start = project.start_date if application.kind == "new" else today
    quote = build_quote(tariff, inputs_for(session, tariff, application, start, access_end))
    frozen = FrozenQuote(project_id=project.id, application_id=application.id, tariff_version_id=tariff.version_id,
                         org_type=quote.org_type, multiplier_basis_points=quote.multiplier_basis_points,
                         vat_basis_points=quote.vat_basis_points, currency=quote.currency,
                         net_pence=quote.net_pence, vat_pence=quote.vat_pence, total_pence=quote.total_pence,
                         frozen_at=utcnow(), frozen_by_id=actor.id if isinstance(actor, User) else None)
    session.add(frozen)
    session.flush()
    for position, line in enumerate(quote.lines, start=1):
        session.add(FrozenQuoteLine(quote_id=frozen.id, position=position, code=line.code,
                                    description=line.description[:300], quantity=line.quantity,
                                    unit_pence=line.unit_pence, amount_pence=line.amount_pence))
    session.flush()
    session.refresh(frozen)
    audit.record(session, actor, "quote.frozen", "project", project.id,
                 {"application": application.reference, "tariff_version": tariff.version_id,
                  "org_type": quote.org_type, "net_pence": quote.net_pence, "vat_pence": quote.vat_pence,
                  "total_pence": quote.total_pence})
    for line in quote.lines:
        if line.billing == ONCE:
            record_meter_event(session, project, "fee", line.quantity, f"quote:{frozen.id}:{line.code}",
                               description=line.description[:300], amount_pence=line.amount_pence,
                               actor=actor)
    return frozen
