"""The public register of approved projects (HDR UK data use register fields). Rejected work never appears."""

from __future__ import annotations

from collections.abc import Hashable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.extracts.catalogue import Catalogue
from gateway.models import AuditHead
from gateway.workspaces.spec import SECURITY_TIER_LABELS
from projects.models import Application, Decision, Organisation, Project

COLUMNS = ["Project ID", "Project Title", "Organisation Name", "Organisation Sector", "Lay Summary",
           "Public Benefit Statement", "Dataset Name(s)", "Legal Basis", "National Data Opt-Out Applied",
           "Project Start Date", "Project End Date", "Latest Approval Date", "Status", "Security Tier", "Commercial",
           "Charges", "Released Outputs"]

SECTORS = {"nhs": "NHS", "academic": "Academic", "charity": "Charity / non-profit",
           "public_sector": "Public sector", "commercial": "Commercial"}


def rows(session: Session, catalogue: Catalogue) -> list[dict[str, str]]:
    titles = {d.name: d.title for d in catalogue.datasets}
    latest = dict(session.execute(
        select(Application.id, func.max(Decision.decided_at)).join(Decision, Decision.application_id == Application.id)
        .where(Decision.outcome == "approved").group_by(Application.id)).all())
    amendment_latest: dict[int, object] = {}
    for project_id, decided in session.execute(
            select(Application.project_id, func.max(Decision.decided_at))
            .join(Decision, Decision.application_id == Application.id)
            .where(Decision.outcome == "approved", Application.project_id.is_not(None))
            .group_by(Application.project_id)):
        amendment_latest[project_id] = decided
    from gateway.charging.invoices import charged_by_project
    from gateway.charging.money import format_money

    charges = charged_by_project(session)
    from gateway.outputs.models import OutputRequest

    released = dict(session.execute(select(OutputRequest.project_id, func.count(OutputRequest.id))
                                    .where(OutputRequest.state == "released").group_by(OutputRequest.project_id)).all())
    out = []
    for project in session.scalars(select(Project).order_by(Project.reference)):
        organisation: Organisation | None = project.organisation
        approvals = [d for d in (latest.get(project.application_id), amendment_latest.get(project.id)) if d]
        datasets = sorted({titles.get(v.dataset, v.dataset) for v in project.variables})
        out.append({
            "Project ID": project.reference,
            "Project Title": project.title,
            "Organisation Name": organisation.name if organisation else "",
            "Organisation Sector": SECTORS.get(organisation.org_type, "") if organisation else "",
            "Lay Summary": project.lay_summary,
            "Public Benefit Statement": project.public_benefit,
            "Dataset Name(s)": "; ".join(datasets),
            "Legal Basis": project.legal_basis,
            "National Data Opt-Out Applied": "Yes" if project.opt_out_applies else "No",
            "Project Start Date": project.start_date.isoformat(),
            "Project End Date": project.end_date.isoformat(),
            "Latest Approval Date": max(approvals).date().isoformat() if approvals else "",  # type: ignore[attr-defined]
            "Status": project.state.capitalize(),
            "Security Tier": SECURITY_TIER_LABELS[project.security_tier],
            "Commercial": "Yes" if project.commercial_involvement else "No",
            "Charges": format_money(charges.get(project.id, 0)),  # issued invoices minus credit notes
            "Released Outputs": str(released.get(project.id, 0)),
        })
    return out


def version(session: Session) -> str | None:
    """What the register's rows are a function of, read in one primary-key lookup: the audit chain's head.

    Every change of state appends an audit event in its own transaction (gateway/audit.py), which rewrites the
    head's hash; the hash covers the whole history, so it also tells apart two databases (a restore) that happen
    to have logged as many events. None when the log has no head row yet (nothing can be cached then).
    """
    return session.scalar(select(AuditHead.hash).where(AuditHead.id == 1))


class RowsCache:
    """The last rows built in this process, reused while the register's version and catalogue titles are unchanged.

    One per app (so per database). The version is read before the rows, in the same session: rows built from
    data newer than their key only make a later reader rebuild them, never see stale ones.
    """

    def __init__(self) -> None:
        self._entry: tuple[Hashable, tuple[dict[str, str], ...]] | None = None

    def snapshot(self, session: Session, catalogue: Catalogue) -> tuple[Hashable | None, tuple[dict[str, str], ...]]:
        """The rows and the key they were built for (None: not cacheable). Shared: read them, never change them."""
        head = version(session)
        key = (head, tuple((d.name, d.title) for d in catalogue.datasets))
        entry = self._entry  # one read: another thread may replace it meanwhile (an atomic assignment)
        if entry is None or entry[0] != key:
            entry = (key, tuple(rows(session, catalogue)))
            if head is None:
                return None, entry[1]
            self._entry = entry
        return entry

    def rows(self, session: Session, catalogue: Catalogue) -> list[dict[str, str]]:
        """A copy of the rows, safe to change."""
        return [dict(row) for row in self.snapshot(session, catalogue)[1]]
