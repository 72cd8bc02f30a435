"""The live figures on the public front door, each read from the services' own records."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from gateway.charging.models import Invoice
from gateway.extracts.models import ExtractVersion
from gateway.outputs.models import OutputRequest
from projects.models import Project


@dataclass(frozen=True)
class Figures:
    approved_projects: int  # every project the committee approved, current and past
    active_projects: int
    releases: int  # output requests released after two checkers approved them
    organisations: int  # organisations with at least one approved project
    collected_pence: int  # paid invoices, less the credit notes issued against them
    opt_outs_honoured: int  # opted-out patients' records kept out of extracts, summed over every extract made
    projects_without_opt_out: int  # approved projects where the committee recorded the opt-out does not apply


def figures(session: Session) -> Figures:
    paid = session.scalar(select(func.coalesce(func.sum(Invoice.total_pence), 0))
                          .where(Invoice.kind == "invoice", Invoice.state == "paid")) or 0
    credited_invoice = aliased(Invoice)
    credited = session.scalar(
        select(func.coalesce(func.sum(Invoice.total_pence), 0))
        .join(credited_invoice, credited_invoice.id == Invoice.credits_invoice_id)
        .where(Invoice.kind == "credit_note", Invoice.state.in_(("issued", "paid")),
               credited_invoice.state == "paid")) or 0
    return Figures(
        approved_projects=session.scalar(select(func.count(Project.id))) or 0,
        active_projects=session.scalar(select(func.count(Project.id)).where(Project.state == "active")) or 0,
        releases=session.scalar(select(func.count(OutputRequest.id)).where(OutputRequest.state == "released")) or 0,
        organisations=session.scalar(select(func.count(func.distinct(Project.organisation_id)))
                                     .where(Project.organisation_id.is_not(None))) or 0,
        collected_pence=int(paid) - int(credited),
        opt_outs_honoured=session.scalar(select(func.coalesce(func.sum(ExtractVersion.opt_outs_removed), 0))) or 0,
        projects_without_opt_out=session.scalar(select(func.count(Project.id))
                                                .where(Project.opt_out_applies.is_(False))) or 0,
    )
