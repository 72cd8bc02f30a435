"""Server-rendered SVG bar charts for the finance dashboard.

No script and no style attributes (the CSP allows neither inline): colours are SVG presentation
attributes. Every text is escaped; each bar carries a <title> so hovering names the figure, and the
page repeats the numbers in a table for screen readers.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from markupsafe import Markup, escape
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.charging.models import Invoice
from projects.models import Project
from projects.money import format_money

MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
PALETTE = ("#005eb8", "#007f3b", "#ffb81c", "#d5281b", "#330072", "#41b6e6", "#ae2573", "#768692")
TYPE_LABELS = {"nhs": "NHS", "academic": "Academic", "charity": "Charity", "public_sector": "Public sector",
               "commercial": "Commercial"}


@dataclass(frozen=True)
class Income:
    months: list[str]
    by_type: dict[str, dict[str, int]]  # org type -> month -> pence
    by_project: dict[str, dict[str, int]]  # project reference -> month -> pence

    def month_total(self, month: str) -> int:
        return sum(series.get(month, 0) for series in self.by_type.values())


def income(session: Session, months: list[str]) -> Income:
    """Income per month: issued and paid invoices minus credit notes, by the month they cover."""
    by_type: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    by_project: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    rows = session.execute(select(Invoice, Project.reference).join(Project, Project.id == Invoice.project_id)
                           .where(Invoice.state.in_(("issued", "paid")), Invoice.period.in_(months)))
    for invoice, reference in rows:
        amount = -invoice.total_pence if invoice.kind == "credit_note" else invoice.total_pence
        by_type[invoice.org_type][invoice.period] += amount
        by_project[reference][invoice.period] += amount
    return Income(months, {k: dict(v) for k, v in by_type.items()}, {k: dict(v) for k, v in by_project.items()})


def stacked_bars(months: list[str], series: dict[str, dict[str, int]], labels: dict[str, str] | None = None, *,
                 title: str, chart_id: str = "chart", width: int = 720, height: int = 300,
                 currency: str = "GBP") -> Markup:
    """A stacked bar per month, one colour per series, with a legend and a labelled axis."""
    labels = labels or {}
    names = sorted(series)
    left, right, top, bottom = 80, 170, 30, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(max(0, series[n].get(m, 0)) for n in names) for m in months]
    peak = max([*totals, 1])
    step = plot_w / max(1, len(months))
    bar_w = step * 0.6
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="sde-chart" viewBox="0 0 {width} {height}" '
             f'width="100%" role="img" aria-labelledby="{escape(chart_id)}-title">',
             f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#4c6272"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#4c6272"/>']
    for fraction in (0.5, 1.0):
        y = top + plot_h - plot_h * fraction
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#d8dde0"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#212b32">'
                     f'{escape(format_money(round(peak * fraction), currency))}</text>')
    for i, month in enumerate(months):
        x = left + i * step + (step - bar_w) / 2
        y = top + plot_h
        for j, name in enumerate(names):
            value = max(0, series[name].get(month, 0))
            if not value:
                continue
            h = plot_h * value / peak
            y -= h
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                         f'fill="{PALETTE[j % len(PALETTE)]}"><title>{escape(labels.get(name, name))}, '
                         f'{escape(month)}: {escape(format_money(value, currency))}</title></rect>')
        year, number = month.split("-")
        parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h + 16}" text-anchor="middle" font-size="11" '
                     f'fill="#212b32">{MONTH_NAMES[int(number) - 1]}</text>')
        if i == 0 or number == "01":
            parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h + 30}" text-anchor="middle" '
                         f'font-size="10" fill="#4c6272">{escape(year)}</text>')
        if totals[i]:
            parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{y - 4:.1f}" text-anchor="middle" font-size="10" '
                         f'fill="#212b32">{escape(format_money(totals[i], currency))}</text>')
    for j, name in enumerate(names):
        ly = top + 18 * j
        parts.append(f'<rect x="{left + plot_w + 16}" y="{ly}" width="12" height="12" '
                     f'fill="{PALETTE[j % len(PALETTE)]}"/>')
        parts.append(f'<text x="{left + plot_w + 34}" y="{ly + 10}" font-size="12" fill="#212b32">'
                     f'{escape(labels.get(name, name))}</text>')
    if not names:
        parts.append(f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" text-anchor="middle" font-size="14" '
                     'fill="#4c6272">No income in these months</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704
