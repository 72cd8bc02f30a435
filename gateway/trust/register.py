"""The public register of approved projects (HDR UK data use register fields). Rejected work never appears."""

from __future__ import annotations

import datetime as dt
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import String, cast, func, select
from sqlalchemy.orm import Session

from gateway.models import AuditEvent, AuditHead
from projects.catalogue import Catalogue
from projects.models import Application, Decision, Organisation, Project, Publication
from projects.workspace_tiers import SECURITY_TIER_LABELS

COLUMNS = ["Project ID", "Project Title", "Organisation Name", "Organisation Sector", "Organisation ID",
           "Applicant Name(s)", "Funders / Sponsors", "Lay Summary", "Public Benefit Statement", "Technical Summary",
           "Dataset Name(s)", "Data Sensitivity Level", "Legal Basis (Article 6)", "Lawful Condition (Article 9)",
           "Common Law Duty of Confidentiality", "National Data Opt-Out Applied", "Approval Committees",
           "Access Type", "Access Date", "Project Start Date", "Project End Date", "Latest Approval Date", "Status",
           "Security Tier", "Commercial", "Agreed Quote", "Invoiced to Date", "Released Outputs", "Publications"]

SECTORS = {"nhs": "NHS", "academic": "Academic", "charity": "Charity / non-profit",
           "public_sector": "Public sector", "commercial": "Commercial"}

# --- the HDR UK Data Use Register vocabularies (see docs/public-register.md and tests/data/README.md) -------------
HDRUK_SECTORS = {"nhs": "CQC Registered Health or/and Social Care provider", "academic": "Academic Institute",
                 "charity": "Independent Sector Organisation", "public_sector": "Government Agency (Other)",
                 "commercial": "Commercial"}
HDRUK_ARTICLE6 = {
    "6(1)(a)": "(a) the data subject has given consent to the processing of his or her personal data for one or "
               "more specific purposes;",
    "6(1)(c)": "(c)processing is necessary for compliance with a legal obligation to which the controller is "
               "subject;",
    "6(1)(e)": "(e) processing is necessary for the performance of a task carried out in the public interest or in "
               "the exercise of official authority vested in the controller;",
    "6(1)(f)": "(f) processing is necessary for the purposes of the legitimate interests pursued by the controller "
               "or by a third party, except where such interests are overridden by the interests or fundamental "
               "rights and freedoms of the data subject which require protection of personal data, in particular "
               "where the data subject is a child.",
}
HDRUK_ARTICLE9 = {
    "9(2)(a)": "(a) the data subject has given explicit consent to the processing of those personal data for one or "
               "more specified purposes, except where Union or Member State law provide that the prohibition "
               "referred to in paragraph 1 may not be lifted by the data subject;",
    "9(2)(g)": "(g) processing is necessary for reasons of substantial public interest, on the basis of Union or "
               "Member State law which shall be proportionate to the aim pursued, respect the essence of the right "
               "to data protection and provide for suitable and specific measures to safeguard the fundamental "
               "rights and the interests of the data subject;",
    "9(2)(h)": "(h) processing is necessary for the purposes of preventive or occupational medicine, for the "
               "assessment of the working capacity of the employee, medical diagnosis, the provision of health or "
               "social care or treatment or the management of health or social care systems and services on the "
               "basis of Union or Member State law or pursuant to contract with a health professional and subject "
               "to the conditions and safeguards referred to in paragraph 3;",
    "9(2)(i)": "(i) processing is necessary for reasons of public interest in the area of public health, such as "
               "protecting against serious cross-border threats to health or ensuring high standards of quality "
               "and safety of health care and of medicinal products or medical devices, on the basis of Union or "
               "Member State law which provides for suitable and specific measures to safeguard the rights and "
               "freedoms of the data subject, in particular professional secrecy;",
    "9(2)(j)": "(j) processing is necessary for archiving purposes in the public interest, scientific or historical "
               "research purposes or statistical purposes in accordance with Article 89(1) based on Union or Member "
               "State law which shall be proportionate to the aim pursued, respect the essence of the right to data "
               "protection and provide for suitable and specific measures to safeguard the fundamental rights and "
               "the interests of the data subject.",
}
HDRUK_CONFIDENTIALITY = {"consent": "Consent", "s251": "Section 251 NHS Act 2006", "anonymised": "Not applicable",
                         "statutory": "Other"}
COMMITTEE = "London SDE Data Access Committee (with lay members)"
SENSITIVITY = "De-Personalised"  # extracts carry a project pseudonym, never NHS numbers, names or addresses
PRIVACY_ENHANCEMENTS = (
    "Data stay inside the London SDE: researchers work in an isolated workspace; outputs are released only after two "
    "output checkers approve them. NHS numbers are replaced by a pseudonym keyed per project; only the variables the "
    "committee approved are extracted; dates of birth and other quasi-identifiers are coarsened as it approved; a "
    "re-identification risk check holds back an extract with small groups for a data custodian.")
LINKAGE = ("Datasets are linked inside the London SDE on the NHS number before the extract is made; the extract "
           "carries the project's pseudonym in its place, so records link within the project and not across projects.")


@dataclass(frozen=True)
class Release:
    """A released output, as the register and its receipt show it."""

    request_id: int
    project_id: int
    project_reference: str
    released_at: dt.datetime
    package_name: str
    package_sha256: str
    audit_seq: int | None  # the audit event that recorded the release: the chain's head at release
    audit_hash: str | None


@dataclass(frozen=True)
class Entry:
    """Everything the register says about one project; the page, CSV and JSON are views of it."""

    project: Project
    application: Application  # the latest approved application (the original or an amendment)
    organisation: Organisation | None
    applicants: list[str]
    datasets: list[str]
    variables: list[str]
    latest_approval: dt.date | None
    access_date: dt.date | None
    extract_versions: int
    quote_pence: int | None
    invoiced_pence: int
    releases: list[Release]
    publications: list[Publication]


def releases(session: Session, project_id: int | None = None) -> list[Release]:
    from gateway.outputs.models import OutputRequest

    query = (select(OutputRequest, AuditEvent.seq, AuditEvent.hash)
             .outerjoin(AuditEvent, (AuditEvent.action == "output_request.released")
                        & (AuditEvent.object_type == "output_request")
                        & (AuditEvent.object_id == cast(OutputRequest.id, String)))
             .where(OutputRequest.state == "released").order_by(OutputRequest.released_at, OutputRequest.id))
    if project_id is not None:
        query = query.where(OutputRequest.project_id == project_id)
    out = []
    for request, seq, digest in session.execute(query):
        out.append(Release(request_id=request.id, project_id=request.project_id,
                           project_reference=request.project.reference,
                           released_at=request.released_at, package_name=request.package_name or "",
                           package_sha256=request.package_sha256 or "", audit_seq=seq, audit_hash=digest))
    return out


def entries(session: Session, catalogue: Catalogue) -> list[Entry]:
    from gateway.charging.invoices import charged_by_project
    from gateway.charging.quotes import price_basis
    from gateway.extracts.models import ExtractVersion

    titles = {d.name: d.title for d in catalogue.datasets}
    approved_at: dict[int, dt.datetime] = dict(session.execute(  # type: ignore[arg-type]
        select(Application.id, func.max(Decision.decided_at)).join(Decision, Decision.application_id == Application.id)
        .where(Decision.outcome == "approved").group_by(Application.id)).all())
    amendments: dict[int, list[Application]] = {}
    for amendment in session.scalars(select(Application).where(Application.kind == "amendment",
                                                               Application.id.in_(list(approved_at)))):
        amendments.setdefault(amendment.project_id or 0, []).append(amendment)
    charged = charged_by_project(session)
    access: dict[int, tuple[dt.datetime | None, int]] = {}
    for project_id, first, count in session.execute(
            select(ExtractVersion.project_id, func.min(func.coalesce(ExtractVersion.released_at,
                                                                     ExtractVersion.built_at)),
                   func.count(ExtractVersion.id))
            .where(ExtractVersion.status == "released").group_by(ExtractVersion.project_id)):
        access[project_id] = (first, int(count))
    by_project: dict[int, list[Release]] = {}
    for item in releases(session):
        by_project.setdefault(item.project_id, []).append(item)
    publications: dict[int, list[Publication]] = {}
    for publication in session.scalars(select(Publication).order_by(Publication.added_at, Publication.id)):
        publications.setdefault(publication.project_id, []).append(publication)
    out = []
    for project in session.scalars(select(Project).order_by(Project.reference)):
        candidates = [session.get(Application, project.application_id), *amendments.get(project.id, [])]
        latest = max((a for a in candidates if a is not None),
                     key=lambda a: approved_at.get(a.id) or project.approved_at)
        approvals = [approved_at[a.id] for a in candidates if a is not None and a.id in approved_at]
        first_access, versions = access.get(project.id, (None, 0))
        quote = price_basis(session, project)
        people = [project.lead.display_name,
                  *sorted(m.user.display_name for m in project.members if m.user_id != project.lead_id)]
        out.append(Entry(
            project=project, application=latest, organisation=project.organisation, applicants=people,
            datasets=sorted({titles.get(v.dataset, v.dataset) for v in project.variables}),
            variables=[f"{titles.get(v.dataset, v.dataset)}: {v.variable}" for v in project.variables],
            latest_approval=max(approvals).date() if approvals else None,
            access_date=first_access.date() if first_access else None, extract_versions=versions,
            quote_pence=quote.total_pence if quote else None, invoiced_pence=charged.get(project.id, 0),
            releases=by_project.get(project.id, []), publications=publications.get(project.id, [])))
    return out


def receipt_url(base_url: str, release: Release) -> str:
    """Receipts are found by the package's public name, as the register shows it."""
    return f"{base_url}/register/receipts/{release.package_name.removesuffix('.zip')}.json"


def doi_url(doi: str) -> str:
    return f"https://doi.org/{doi}"


def rows(session: Session, catalogue: Catalogue) -> list[dict[str, str]]:
    """The register with readable titles: the page and the CSV."""
    from projects.applications import ARTICLE6, ARTICLE9, COMMON_LAW
    from projects.money import format_money

    out = []
    for e in entries(session, catalogue):
        project, application, organisation = e.project, e.application, e.organisation
        a6, a9, cl = application.legal_basis_article6, application.legal_basis_article9, application.common_law_basis
        committees = [COMMITTEE] + ([f"Research ethics committee ({application.ethics_reference})"]
                                    if application.ethics_reference else [])
        out.append({
            "Project ID": project.reference,
            "Project Title": project.title,
            "Organisation Name": organisation.name if organisation else "",
            "Organisation Sector": SECTORS.get(organisation.org_type, "") if organisation else "",
            "Organisation ID": (organisation.identifier or "") if organisation else "",
            "Applicant Name(s)": "; ".join(e.applicants),
            "Funders / Sponsors": application.funder,
            "Lay Summary": project.lay_summary,
            "Public Benefit Statement": project.public_benefit,
            "Technical Summary": application.technical_summary,
            "Dataset Name(s)": "; ".join(e.datasets),
            "Data Sensitivity Level": SENSITIVITY,
            "Legal Basis (Article 6)": f"UK GDPR Article {a6} ({ARTICLE6[a6]})" if a6 in ARTICLE6 else a6,
            "Lawful Condition (Article 9)": f"UK GDPR Article {a9} ({ARTICLE9[a9]})" if a9 in ARTICLE9 else a9,
            "Common Law Duty of Confidentiality": COMMON_LAW.get(cl, cl).capitalize() if cl else "",
            "National Data Opt-Out Applied": "Yes" if project.opt_out_applies else "No",
            "Approval Committees": "; ".join(committees),
            "Access Type": "Trusted research environment (no data leave; checked outputs only)",
            "Access Date": e.access_date.isoformat() if e.access_date else "",
            "Project Start Date": project.start_date.isoformat(),
            "Project End Date": project.end_date.isoformat(),
            "Latest Approval Date": e.latest_approval.isoformat() if e.latest_approval else "",
            "Status": project.state.capitalize(),
            "Security Tier": SECURITY_TIER_LABELS[project.security_tier],
            "Commercial": "Yes" if project.commercial_involvement else "No",
            "Agreed Quote": format_money(e.quote_pence) if e.quote_pence is not None else "",
            "Invoiced to Date": format_money(e.invoiced_pence),  # issued invoices minus credit notes
            "Released Outputs": "; ".join(f"Output {r.request_id} ({r.released_at.date().isoformat()}), package "
                                          f"SHA-256 {r.package_sha256}" for r in e.releases),
            "Publications": "; ".join(f"{p.title} (doi:{p.doi})" for p in e.publications),
        })
    return out


def hdruk_entries(session: Session, catalogue: Catalogue, base_url: str) -> list[dict[str, Any]]:
    """The register in the HDR UK Data Use Register's field names and vocabularies (docs/public-register.md).

    Fields the gateway does not know are left out, never filled with a guess. ``base_url`` makes links absolute.
    """

    out = []
    for e in entries(session, catalogue):
        project, application, organisation = e.project, e.application, e.organisation
        item: dict[str, Any] = {
            "projectIdText": project.reference,
            "projectTitle": project.title,
            "datasetTitles": e.datasets or ["(no datasets)"],
            "organisationName": organisation.name if organisation else "(no organisation recorded)",
            "applicantNames": e.applicants,
            "laySummary": project.lay_summary,
            "publicBenefitStatement": project.public_benefit,
            "otherApprovalCommittees": [COMMITTEE] + ([f"Research ethics committee: {application.ethics_reference}"]
                                                      if application.ethics_reference else []),
            "projectStartDate": project.start_date.isoformat(),
            "projectEndDate": project.end_date.isoformat(),
            "latestApprovalDate": (e.latest_approval or project.approved_at.date()).isoformat(),
            "dataSensitivityLevel": SENSITIVITY,
            "nationalDataOptOut": "Yes" if project.opt_out_applies else "No",
            "requestFrequency": "Recurring" if e.extract_versions > 1 else "One-off",
            "accessType": "TRE",
            "privacyEnhancements": PRIVACY_ENHANCEMENTS,
            "researchOutputs": [doi_url(p.doi) for p in e.publications]
                               + [receipt_url(base_url, r) for r in e.releases],
            "londonsde": extension(e, base_url),
        }
        optional = {
            "organisationId": organisation.identifier if organisation else None,
            "organisationSector": HDRUK_SECTORS.get(organisation.org_type) if organisation else None,
            "fundersAndSponsors": [application.funder] if application.funder else None,
            "technicalSummary": application.technical_summary or None,
            "legalBasisForDataArticle6": HDRUK_ARTICLE6.get(application.legal_basis_article6),
            "legalBasisForDataArticle9": HDRUK_ARTICLE9.get(application.legal_basis_article9),
            "dutyOfConfidentiality": HDRUK_CONFIDENTIALITY.get(application.common_law_basis),
            "datasetLinkageDescription": LINKAGE if len(e.datasets) > 1 else None,
            "confidentialDataDescription": ("Variables approved: " + "; ".join(e.variables)) if e.variables else None,
            "accessDate": e.access_date.isoformat() if e.access_date else None,
        }
        item.update({k: v for k, v in optional.items() if v})
        out.append(item)
    return out


def extension(e: Entry, base_url: str) -> dict[str, Any]:
    """What the register says that the HDR UK formats have no field for: one object, the same in both JSON files."""
    from projects.money import format_money

    project = e.project
    return {
        "reference": project.reference,
        "status": project.state,
        "securityTier": project.security_tier,
        "securityTierLabel": SECURITY_TIER_LABELS[project.security_tier],
        "commercialInvolvement": project.commercial_involvement,
        "charges": {
            "currency": "GBP",
            "agreedQuotePence": e.quote_pence, "invoicedToDatePence": e.invoiced_pence,
            "agreedQuote": format_money(e.quote_pence) if e.quote_pence is not None else None,
            "invoicedToDate": format_money(e.invoiced_pence),
            "tariff": f"{base_url}/charging/tariff",
        },
        "releases": [{"outputRequest": r.request_id, "releasedAt": r.released_at.isoformat(),
                      "package": r.package_name, "packageSha256": r.package_sha256,
                      "auditChainHead": {"seq": r.audit_seq, "hash": r.audit_hash},
                      "receipt": receipt_url(base_url, r)} for r in e.releases],
        "publications": [{"doi": p.doi, "url": doi_url(p.doi), "title": p.title} for p in e.publications],
    }


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


def page_links(session: Session) -> dict[str, dict[str, list[Any]]]:
    """Per project reference: its released outputs and publications, for the page's links."""
    links: dict[str, dict[str, list[Any]]] = {}
    for item in releases(session):
        links.setdefault(item.project_reference, {"releases": [], "publications": []})["releases"].append(item)
    for publication in session.scalars(select(Publication).order_by(Publication.added_at, Publication.id)):
        links.setdefault(publication.project.reference, {"releases": [], "publications": []})[
            "publications"].append(publication)
    return links
