"""Invoice documents: CSV and PDF.

PDF library: fpdf2 (pure Python, actively maintained, small API, no system libraries); its built-in
Helvetica covers the pound sign, so no font files are shipped.
"""

from __future__ import annotations

import io

from fpdf import FPDF

from gateway import csv_safe
from gateway.charging.models import Invoice
from projects.models import Project
from projects.money import format_money, format_percent, format_plain

SUPPLIER = "London Secure Data Environment"
KIND_TITLE = {"invoice": "Invoice", "credit_note": "Credit note"}


def invoice_csv(invoice: Invoice, project: Project) -> str:
    out = io.StringIO()
    writer = csv_safe.writer(out)
    writer.writerow(["Document", "Number", "Project", "Period", "State", "Currency", "Tariff version"])
    writer.writerow([KIND_TITLE[invoice.kind], invoice.number, project.reference, invoice.period, invoice.state,
                     invoice.currency, invoice.tariff_version_id or ""])
    writer.writerow([])
    writer.writerow(["Line", "Description", "Period", "Quantity", "Unit price", "Amount"])
    for line in invoice.lines:
        writer.writerow([line.position, line.description, line.period, line.quantity, format_plain(line.unit_pence),
                         format_plain(line.amount_pence)])
    writer.writerow([])
    writer.writerow(["", "Net", "", "", "", format_plain(invoice.net_pence)])
    writer.writerow(["", f"VAT at {format_percent(invoice.vat_basis_points)}", "", "", "",
                     format_plain(invoice.vat_pence)])
    writer.writerow(["", "Total", "", "", "", format_plain(invoice.total_pence)])
    return out.getvalue()


def _latin(text: str) -> str:
    """The core PDF fonts are Latin-1; anything else is replaced rather than failing the download."""
    return text.encode("latin-1", "replace").decode("latin-1")


def invoice_pdf(invoice: Invoice, project: Project) -> bytes:
    pdf = FPDF(format="A4")
    pdf.set_title(f"{KIND_TITLE[invoice.kind]} {invoice.number}")
    pdf.set_author(SUPPLIER)
    pdf.set_subject(_latin(f"{KIND_TITLE[invoice.kind]} {invoice.number} for project {project.reference}"))
    pdf.set_keywords(_latin(f"{project.reference} {invoice.period}"))
    pdf.set_creator("londonsde")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 18)
    pdf.cell(0, 10, _latin(f"{KIND_TITLE[invoice.kind]} {invoice.number}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 10)
    if invoice.state == "draft":
        pdf.set_text_color(212, 53, 28)
        pdf.cell(0, 6, "DRAFT - not yet issued; not a demand for payment", new_x="LMARGIN", new_y="NEXT")
        pdf.set_text_color(0, 0, 0)
    if invoice.state == "void":
        pdf.set_text_color(212, 53, 28)
        pdf.cell(0, 6, _latin(f"VOID - {invoice.void_reason or ''}"), new_x="LMARGIN", new_y="NEXT")
        pdf.set_text_color(0, 0, 0)
    details = [
        ("From", SUPPLIER),
        ("To", project.organisation.name if project.organisation else project.lead.display_name),
        ("Project", f"{project.reference} - {project.title}"),
        ("Period", invoice.period),
        ("Issued", invoice.issued_at.date().isoformat() if invoice.issued_at else "not yet issued"),
        ("Due", invoice.due_date.isoformat() if invoice.due_date and not invoice.is_credit_note else "-"),
        ("Tariff version", invoice.tariff_version_id or "-"),
    ]
    if invoice.is_credit_note and invoice.credits is not None:
        details.append(("Credits", invoice.credits.number))
    if invoice.state == "paid":
        details.append(("Paid", f"{invoice.paid_at.date().isoformat() if invoice.paid_at else ''} "
                                f"(ref. {invoice.payment_reference})"))
    for label, value in details:
        pdf.set_font("Helvetica", "B", 10)
        pdf.cell(35, 6, _latin(label))
        pdf.set_font("Helvetica", "", 10)
        pdf.multi_cell(0, 6, _latin(value), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    widths = (95, 20, 35, 35)
    pdf.set_font("Helvetica", "B", 10)
    for width, head in zip(widths, ("Description", "Qty", "Unit price", "Amount"), strict=True):
        pdf.cell(width, 7, head, border="B", align="L" if head == "Description" else "R")
    pdf.ln()
    pdf.set_font("Helvetica", "", 9)
    for line in invoice.lines:
        pdf.cell(widths[0], 6, _latin(line.description[:70]))
        pdf.cell(widths[1], 6, str(line.quantity), align="R")
        pdf.cell(widths[2], 6, _latin(format_money(line.unit_pence, invoice.currency)), align="R")
        pdf.cell(widths[3], 6, _latin(format_money(line.amount_pence, invoice.currency)), align="R")
        pdf.ln()
    pdf.ln(2)
    pdf.set_font("Helvetica", "", 10)
    for label, pence, bold in (("Net", invoice.net_pence, False),
                               (f"VAT at {format_percent(invoice.vat_basis_points)}", invoice.vat_pence, False),
                               ("Total" + (" credited" if invoice.is_credit_note else ""), invoice.total_pence, True)):
        pdf.set_font("Helvetica", "B" if bold else "", 10)
        pdf.cell(sum(widths[:3]), 6, _latin(label), align="R")
        pdf.cell(widths[3], 6, _latin(format_money(pence, invoice.currency)), align="R")
        pdf.ln()
    return bytes(pdf.output())
