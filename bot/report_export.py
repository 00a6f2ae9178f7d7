"""The monthly service report as files for the service review meeting: one self-contained HTML page (the
charts inside it as data URIs) and a PDF, both from the same ``report_model.Report`` and chart images.

The HTML is rendered by its own Jinja2 environment with autoescaping on — unlike the chat templates,
whose output is JSON or text — so the commentary and ticket titles can never become markup. The PDF uses
reportlab's platypus with DejaVu Sans (shipped with matplotlib) rather than the PDF base fonts, which only
know Western European letters; ``invariant`` output makes the same report the same bytes.
"""
from __future__ import annotations

import base64
import io
import os
from functools import lru_cache
from pathlib import Path
from xml.sax.saxutils import escape

from jinja2 import Environment, PackageLoader, StrictUndefined

from handlers.core.context import Image
from handlers.reporting import report_model
from handlers.reporting.report_model import Report

FONT, BOLD = "DejaVuSans", "DejaVuSans-Bold"


def file_stem(report: Report) -> str:
    return f"svcbot-report-{report.scope_key}-{report.month}"


def write(report: Report, images: list[Image], folder: str | os.PathLike) -> tuple[Path, Path]:
    """Write the HTML and the PDF into ``folder`` (made if missing); returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    html_path, pdf_path = folder / f"{file_stem(report)}.html", folder / f"{file_stem(report)}.pdf"
    html_path.write_text(html(report, images), encoding="utf-8")
    pdf_path.write_bytes(pdf(report, images))
    return html_path, pdf_path


# ---- HTML -------------------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _env() -> Environment:
    env = Environment(loader=PackageLoader("bot", "templates"), undefined=StrictUndefined, autoescape=True,
                      trim_blocks=True, lstrip_blocks=True, auto_reload=False)  # built-in: never change
    env.filters.update(pct=report_model.pct, duration=report_model.duration, target_name=report_model.target_name,
                       target_detail=report_model.target_detail, achieved=report_model.achieved_text,
                       goal=report_model.goal_text,
                       satisfaction=report_model.satisfaction_text, attainment=report_model.attainment_text,
                       money=report_model.money)
    return env


def html(report: Report, images: list[Image]) -> str:
    return _env().get_template("report/report.html.j2").render(
        report=report, images=images, title=report_model.title_of(report))


# ---- PDF --------------------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _fonts() -> tuple[str, str]:
    """DejaVu Sans, registered once, from matplotlib's own copy; the base fonts if it cannot be found."""
    import matplotlib
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont
    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    try:
        pdfmetrics.registerFont(TTFont(FONT, str(folder / "DejaVuSans.ttf")))
        pdfmetrics.registerFont(TTFont(BOLD, str(folder / "DejaVuSans-Bold.ttf")))
    except Exception:  # a trimmed matplotlib: fall back rather than fail the export
        return "Helvetica", "Helvetica-Bold"
    pdfmetrics.registerFontFamily(FONT, normal=FONT, bold=BOLD, italic=FONT, boldItalic=BOLD)
    return FONT, BOLD


class PdfPage:
    """The monthly report's look on A4 — fonts, styles, tables, charts and the page — for each PDF svcbot
    writes (the report, the supplier pack)."""

    def __init__(self, title: str):
        from reportlab.lib.pagesizes import A4
        from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
        from reportlab.lib.units import cm

        self.title = title
        self.regular, self.bold = _fonts()
        base = getSampleStyleSheet()
        self.body = ParagraphStyle("body", parent=base["BodyText"], fontName=self.regular, fontSize=9, leading=12)
        self.cell = ParagraphStyle("cell", parent=self.body, fontSize=8, leading=10)
        self.head = ParagraphStyle("head", parent=self.cell, fontName=self.bold)
        self.h1 = ParagraphStyle("h1", parent=base["Title"], fontName=self.bold, fontSize=16, alignment=0)
        self.h2 = ParagraphStyle("h2", parent=base["Heading2"], fontName=self.bold, fontSize=12, spaceBefore=10)
        self.width = A4[0] - 4 * cm

    def text(self, value, style=None):
        from reportlab.platypus import Paragraph
        return Paragraph(escape(str(value)).replace("\n", "<br/>"), style or self.body)

    def table(self, caption: str, header: list[str], rows: list[list], widths: list[float] | None = None) -> list:
        from reportlab.lib import colors
        from reportlab.lib.utils import simpleSplit
        from reportlab.platypus import Spacer, Table, TableStyle

        if not rows:
            return [self.text(f"{caption}: none.")]
        columns = [w * self.width for w in widths] if widths else [self.width / len(header)] * len(header)
        size, leading = self.cell.fontSize, self.cell.leading

        # Cells are plain text wrapped here, not Paragraphs: a month of thousands of breaches lays out
        # several times faster.
        def wrapped(value, column: float, font: str) -> str:
            return "\n".join(line for part in str(value).split("\n")
                             for line in simpleSplit(part, font, size, column - 12) or [""])

        data = [[wrapped(h, c, self.bold) for h, c in zip(header, columns)]] + \
            [[wrapped(v, c, self.regular) for v, c in zip(row, columns)] for row in rows]
        t = Table(data, colWidths=columns, repeatRows=1, hAlign="LEFT")
        t.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
                               ("FONT", (0, 0), (-1, -1), self.regular, size, leading),
                               ("FONT", (0, 0), (-1, 0), self.bold, size, leading),
                               ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#E8EEF4")),
                               ("VALIGN", (0, 0), (-1, -1), "TOP")]))
        return [self.text(caption, self.head), Spacer(1, 3), t]

    def charts(self, images: list[Image]) -> list:
        """Each chart at the page's width, with its title and its alt text, kept together."""
        from reportlab.platypus import Image as Picture
        from reportlab.platypus import KeepTogether, Paragraph, Spacer

        out = [Paragraph("Charts", self.h2)]
        for image in images:
            picture = Picture(io.BytesIO(base64.b64decode(image.png)), width=self.width, height=self.width / 2)
            out.append(KeepTogether([self.text(image.title, self.head), picture, self.text(image.alt, self.cell),
                                     Spacer(1, 8)]))
        return out

    def build(self, story: list, compress: bool = True) -> bytes:
        """The document's bytes; ``compress=False`` leaves the page text readable in the file."""
        from reportlab.lib.pagesizes import A4
        from reportlab.lib.units import cm
        from reportlab.platypus import SimpleDocTemplate

        out = io.BytesIO()
        doc = SimpleDocTemplate(out, pagesize=A4, leftMargin=2 * cm, rightMargin=2 * cm, topMargin=1.8 * cm,
                                bottomMargin=1.8 * cm, title=self.title, author="svcbot", invariant=1,
                                pageCompression=1 if compress else 0)
        doc.build(story)
        return out.getvalue()


def pdf(report: Report, images: list[Image], *, compress: bool = True) -> bytes:
    """A4, the same sections as the HTML. ``compress=False`` leaves the page text readable in the file."""
    from reportlab.platypus import Paragraph, Spacer

    page = PdfPage(report_model.title_of(report))
    text, table, h1, h2, cell = page.text, page.table, page.h1, page.h2, page.cell

    def spread_lines(mean: float | None, median: float | None, p90: float | None) -> str:
        if mean is None:
            return "—"
        return "\n".join(f"{name} {report_model.duration(v)}" for name, v in (("mean", mean), ("median", median),
                                                                          ("p90", p90)))

    def mark(ok: bool) -> str:
        return "met" if ok else "missed"

    r = report
    story = [Paragraph(escape(report_model.title_of(r)), h1),
             text(f"{r.start:%Y-%m-%d %H:%M} – {r.end:%Y-%m-%d %H:%M} UTC (a month in {r.timezone} time); "
                  f"made {r.generated_at:%Y-%m-%d %H:%M} UTC by svcbot.")]
    story += [Paragraph("Agreed against achieved", h2), *table(
        "Each target of each agreement", ["Agreement", "Kind", "Target", "Agreed", "Achieved", "Measured", "Result"],
        [[t.agreement, (t.kind or "").upper(), report_model.target_name(t), report_model.goal_text(t.goal),
          report_model.achieved_text(t), report_model.target_detail(t), mark(t.ok)] for t in r.targets],
        [0.16, 0.07, 0.22, 0.1, 0.12, 0.22, 0.11]), Spacer(1, 6), *table(
        "SLA targets and clocks per month", ["Month", "SLA targets met", "SLA clocks met"],
        [[m.label, f"{m.targets_met} of {m.targets} ({report_model.pct(m.targets_share)})",
          f"{m.clocks_met} of {m.clocks} ({report_model.pct(m.clocks_share)})"] for m in r.attainment_trend],
        [0.2, 0.4, 0.4])]
    story += [Paragraph(f"SLA breaches: {len(r.breaches)}", h2), *table(
        "Breaches by cause", ["Cause", "Breaches"], [[c.label, c.breaches] for c in r.breach_causes], [0.8, 0.2]),
        Spacer(1, 6), *table(
        "Each breach and the OLA or UC that caused it", ["Ticket", "Target", "Late by", "Cause"],
        [[f"INC-{b.ticket_id} {b.priority} · {b.service}: {b.title}", f"{b.agreement} {b.metric}",
          report_model.duration(b.late_seconds), f"{b.cause}\n{b.cause_detail}".strip()] for b in r.breaches],
        [0.38, 0.2, 0.12, 0.3])]
    story += [Paragraph("Availability", h2), *table(
        "Availability per service", ["Service", "Achieved", "Downtime", "Agreed", "Result"],
        [[a.name, report_model.pct(a.achieved, 3), report_model.duration(a.downtime_seconds),
          report_model.goal_text(a.goal),
          mark(a.ok) if a.goal is not None else "—"] for a in r.availability], [0.36, 0.16, 0.16, 0.16, 0.16])]
    t = r.tickets
    story += [Paragraph("Tickets", h2), *table(
        "Ticket volume and time to resolve: mean, median and 90th percentile (nearest rank)",
        ["Priority", "Opened", "Resolved", "Time to resolve", "… in business hours"],
        [[row.priority if isinstance(row, report_model.PriorityTickets) else "All", row.opened, row.resolved,
          spread_lines(row.mttr_clock_seconds, row.ttr_clock_median_seconds, row.ttr_clock_p90_seconds),
          spread_lines(row.mttr_business_seconds, row.ttr_business_median_seconds, row.ttr_business_p90_seconds)]
         for row in [*t.by_priority, t]], [0.16, 0.14, 0.14, 0.28, 0.28])]
    c = r.changes
    story += [Paragraph("Changes", h2), *table(
        "Changes implemented in the month", ["Implemented", "Successful", "Success rate", "Emergency",
                                             "Emergency share"],
        [[c.implemented, c.successful, report_model.pct(c.success_rate), c.emergency,
          report_model.pct(c.emergency_share)]])]
    story += [Paragraph("Satisfaction", h2), *table(
        "CSAT per month", ["Month", "Answers", "Satisfied", "CSAT"],
        [[m.label, m.answers, m.satisfied, report_model.pct(m.csat)] for m in r.satisfaction_trend],
        [0.25, 0.25, 0.25, 0.25])]
    s = r.csi
    story += [Paragraph("Continual service improvement", h2),
              text(f"Opened {s.opened} · done {s.done} · open at month end {s.open} · overdue {s.overdue}"),
              Spacer(1, 4), *table(
                  "Open at month end", ["Item", "Title", "Owner", "Due", "Overdue"],
                  [[i.item, i.title, i.owner, i.due.isoformat() if i.due else "—", "yes" if i.overdue else "no"]
                   for i in s.items], [0.1, 0.46, 0.2, 0.14, 0.1])]
    k = r.knowledge
    story += [Paragraph("Knowledge", h2),
              text(f"Articles linked to incidents {k.linked} · incidents resolved with an article "
                   f"{k.resolved_with_article} of {k.resolved} · reviews on time {k.reviews_on_time} of "
                   f"{k.reviews_answered} · published articles unused for a year {k.unused}"
                   + (f" · catalogue entries awaiting confirmation: {', '.join(k.catalogue_overdue)}"
                      if k.catalogue_overdue else "")),
              Spacer(1, 4),
              *table("Most reused articles", ["Article", "Title", "Incidents"],
                     [[a.article, a.title, a.incidents] for a in k.top], [0.15, 0.7, 0.15]),
              *table("Articles overdue for review, per service", ["Service", "Articles", "Oldest due"],
                     [[s.service, s.articles, s.oldest_due.isoformat()] for s in k.stale], [0.5, 0.2, 0.3])]
    story += commercial_story(r, table, h2)
    if r.reviews is not None:
        v = r.reviews
        story += [Paragraph("Post-incident reviews", h2),
                  text(f"Opened {v.opened} · done on time {v.done_on_time} of {v.done} · open at month end "
                       f"{v.open} · overdue {v.overdue} · follow-ups open: "
                       + ", ".join(f"{n} {age}" for age, n in v.actions_open_by_age.items()))]
    story += [Paragraph("Commentary", h2)]
    if r.commentary:
        story += [text(r.commentary.text),
                  text(f"— {r.commentary.person}, {r.commentary.at:%Y-%m-%d %H:%M} UTC", cell)]
    else:
        story += [text("No commentary yet.")]
    return page.build(story + page.charts(images), compress)


def commercial_story(r: Report, table, h2) -> list:
    """The report's credits and economics for the PDF, when app.yaml gives commercial terms or costs."""
    from reportlab.platypus import Paragraph
    money = report_model.money
    story: list = []
    if r.credits:
        story += [Paragraph("Suppliers: service credits", h2), *table(
            "Credits due under each contract (each rule rounded half up to the currency's minor unit; at most the cap)",
            ["Contract", "Rule", "Working", "Amount"],
            [row for s in r.credits for row in
             [[f"{s.agreement}\n{s.supplier_name}", f"{line.target}: {line.rule}", line.working,
               money(line.amount, s.currency)] for line in s.lines]
             + [[s.agreement, "Due" + (f" (cap {money(s.cap, s.currency)})" if s.cap is not None else ""),
                 f"{s.decision.status} by {s.decision.by_name}: {s.decision.note}" if s.decision
                 else "not yet claimed or waived", money(s.due, s.currency)]]],
            [0.2, 0.3, 0.32, 0.18])]
    if r.economics:
        story += [Paragraph("Service delivery economics", h2), *table(
            "Cost a month, per ticket resolved and per hour of agreed service time, beside SLA attainment",
            ["Service", "Cost", "Resolved", "Per ticket", "Agreed hours", "Per hour", "SLA clocks met"],
            [[e.name, money(e.total, e.currency), e.resolved, money(e.per_ticket, e.currency), f"{e.agreed_hours}",
              money(e.per_hour, e.currency), report_model.pct(e.attainment)] for e in r.economics],
            [0.2, 0.16, 0.1, 0.14, 0.12, 0.14, 0.14])]
    return story
