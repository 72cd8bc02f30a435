"""The register as HDR UK Data Use Schema 1.0.0 records (HDRUK/schemata, schema/data_use_register), for /register.json.

One record per project, in the schema's five objects (people, project, data, setting, outputs) and its own words
for every controlled list. What the gateway does not know (an ORCID, a request category, DEA accreditation) is left
out, never guessed. What the schema has no field for (charges, release receipts, the security tier) goes in one
extension object, ``project.londonsde``: the schema closes only the record's top level to other keys.

Two places where the schema cannot be followed to the letter (docs/public-register.md says so too):
- applicant names must match ``^[a-zA-Z0-9, ]+$``: names are folded to those letters (accents dropped, a hyphen or
  an apostrophe becomes a space); the page and the CSV keep them as written;
- texts longer than the schema's maximum (a 5,000-character lay summary against 3,000) are cut at a word and end
  with an ellipsis; the page and the CSV carry them whole.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from sqlalchemy.orm import Session

from gateway.trust import register
from projects.catalogue import Catalogue

SCHEMA_VERSION = "1.0.0"
SCHEMA_ID = "https://hdruk.github.io/schemata/schema/data_use_register/latest/data_use_register.schema.json"

# The schema's Article 6 and Article 9 lists, in its own words, for the bases an application can name
# (projects.applications.ARTICLE6 / ARTICLE9).
LEGAL_BASIS = {
    "6(1)(a)": "The data subject has given consent to the processing of his or her personal data for one or more "
               "specific purposes.",
    "6(1)(c)": "The processing is necessary for compliance with a legal obligation to which the controller is "
               "subject.",
    "6(1)(e)": "The processing is necessary for the performance of a task carried out in the public interest or in "
               "the exercise of official authority vested in the controller.",
    "6(1)(f)": "The processing is necessary for the purposes of the legitimate interests pursued by the controller "
               "or by a third party, except where such interests are overrideen by the interests or fundamental "
               "rights and freedoms of the data subject which require protection of personal data, in particular "
               "where the data subject is a child.",  # "overrideen": the schema's own spelling of its enum value
}
LAWFUL_CONDITIONS = {
    "9(2)(a)": "The data subject has given explicit consent to the processing of those personal data for one or "
               "more specified purposes, except where Union or Member State law provide that the prohibition "
               "referred to in paragraph 1 may not be lifted by the data subject.",
    "9(2)(g)": "Processing is necessary for reasons of substantial public interest, on the basis of Union or Member "
               "State law which shall be proportionate to the aim pursued, respect the essence of the right to data "
               "protection and provide for suitable and specific measures to safeguard the fundamental rights and "
               "the interests of the data subject.",
    "9(2)(h)": "Processing is necessary for the purposes of preventive or occupational medicine, for the assessment "
               "of the working capacity of the employee, medical diagnosis, the provision of health or social care "
               "or treatment or the management of health or social care systems and services on the basis of Union "
               "or Member State law or pursuant to contract with a health professional and subject to the "
               "conditions and safeguards referred to in paragraph 3.",
    "9(2)(i)": "Processing is necessary for reasons of public interest in the area of public health, such as "
               "protecting against serious cross-border threats to health or ensuring high standards of quality and "
               "safety of health care and of medicinal products or medical devices, on the basis of Union or Member "
               "State law which provides for suitable and specific measures to safeguard the rights and freedoms of "
               "the data subject, in particular professional secrecy.",
    "9(2)(j)": "Processing is necessary for archiving purposes in the public interest, scientific or historical "
               "research purposes or statistical purposes in accordance with Article 89(1) based on Union or Member "
               "State law which shall be proportionate to the aim pursued, respect the essence of the right to data "
               "protection and provide for suitable and specific measures to safeguard the fundamental rights and "
               "the interests of the data subject.",
}
DUTY_OF_CONFIDENTIALITY = {"consent": "Consent", "s251": "Section 251 of the NHS Act 2006",
                           "anonymised": "Not applicable", "statutory": "Other"}
ACCESS_TYPE = "Trusted Research Environment"
SHORT_TEXT, LONG_TEXT = 255, 3000  # the schema's maxLength for names and titles, and for summaries


def fit(text: str, limit: int) -> str:
    """The text, or its start cut at a word and ending in an ellipsis when it is longer than the schema allows."""
    text = text.strip()
    if len(text) <= limit:
        return text
    cut = text[:limit - 1]
    if " " in cut:
        cut = cut[:cut.rindex(" ")]
    return cut.rstrip(" ,;:.") + "\u2026"


def plain_name(name: str) -> str:
    """A name in the letters the schema's pattern allows: accents dropped, other marks become spaces."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    return re.sub(r" +", " ", re.sub(r"[^a-zA-Z0-9, ]", " ", folded)).strip() or "Name not in Latin letters"


def records(session: Session, catalogue: Catalogue, base_url: str) -> list[dict[str, Any]]:
    """Every project on the register as a Data Use Schema 1.0.0 record; ``base_url`` makes links absolute."""
    return [record(entry, base_url) for entry in register.entries(session, catalogue)]


def record(e: register.Entry, base_url: str) -> dict[str, Any]:
    project, application, organisation = e.project, e.application, e.organisation
    people: dict[str, Any] = {
        "organisation": _drop_empty({
            "name": fit(organisation.name, SHORT_TEXT) if organisation else "No organisation recorded",
            "identifier": fit(organisation.identifier, SHORT_TEXT) if organisation and organisation.identifier
            else None,
            "sector": register.HDRUK_SECTORS.get(organisation.org_type) if organisation else None,
        }),
        "applicant": {"names": [plain_name(name) for name in e.applicants]},
        # Data never leave the environment, so nobody may pass them on: there is no sub-licence.
        "subLicence": False,
    }
    if application.funder:
        people["fundersAndSponsors"] = [fit(application.funder, SHORT_TEXT)]
    committees = [register.COMMITTEE] + ([f"Research ethics committee: {application.ethics_reference}"]
                                         if application.ethics_reference else [])
    return {
        "people": people,
        "project": _drop_empty({
            "title": fit(project.title, SHORT_TEXT),
            "identifier": f"{base_url}/register#{project.reference}",
            "laySummary": fit(project.lay_summary, LONG_TEXT) or "No lay summary recorded",
            "publicBenefit": fit(project.public_benefit, LONG_TEXT),
            "technicalSummary": fit(application.technical_summary or "", LONG_TEXT),
            "approvalCommittees": [fit(c, SHORT_TEXT) for c in committees],
            "startDate": project.start_date.isoformat(),
            "endDate": project.end_date.isoformat(),
            "latestApprovalDate": (e.latest_approval or project.approved_at.date()).isoformat(),
            "londonsde": register.extension(e, base_url),
        }),
        "data": _drop_empty({
            "datasets": [fit(title, SHORT_TEXT) for title in e.datasets],
            "sensitivityLevel": register.SENSITIVITY,
            "legalBasis": LEGAL_BASIS.get(application.legal_basis_article6),
            "lawfulConditions": LAWFUL_CONDITIONS.get(application.legal_basis_article9),
            "dutyOfConfidentiality": DUTY_OF_CONFIDENTIALITY.get(application.common_law_basis),
            "optOut": project.opt_out_applies,
            "requestFrequency": "Recurring" if e.extract_versions > 1 else "One-off",
            "linkage": register.LINKAGE if len(e.datasets) > 1 else None,
            "confidentialDataDescription": [fit(v, LONG_TEXT) for v in e.variables] or None,
            "accessDate": e.access_date.isoformat() if e.access_date else None,
        }),
        "setting": {"accessType": ACCESS_TYPE, "privacyEnhancements": register.PRIVACY_ENHANCEMENTS},
        "outputs": [register.doi_url(p.doi) for p in e.publications]
                   + [register.receipt_url(base_url, r) for r in e.releases],
    }


def _drop_empty(values: dict[str, Any]) -> dict[str, Any]:
    """Leave out what the gateway does not know (None or empty), keep False and zero."""
    return {k: v for k, v in values.items() if v is not None and v != "" and v != []}
