"""A supplier's scorecard as a pack for the supplier review meeting: one self-contained HTML page (charts as
data URIs) or a PDF, both from the same ``scorecard.Scorecard`` and chart images, with the monthly report's
fonts, escaping and page layout (``report_export``)."""
from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

from bot import report_export
from bot.report_export import PdfPage
from handlers.core.config_commercial import money_text
from handlers.core.context import Image
from handlers.reporting import report_model
from handlers.suppliers import credits
from handlers.suppliers.scorecard import Scorecard
from handlers.sla.breaches import human


def title_of(card: Scorecard) -> str:
    return f"Supplier scorecard: {card.name}, {card.month_name}" + ("" if card.complete else " (so far)")


def write(card: Scorecard, images: list[Image], path: str | Path) -> Path:
    """Write the pack to ``path``: HTML for ``.html``/``.htm``, PDF for ``.pdf``."""
    path = Path(path)
    if path.suffix.lower() in (".html", ".htm"):
        path.write_text(html(card, images), encoding="utf-8")
    else:
        path.write_bytes(pdf(card, images))
    return path


def html(card: Scorecard, images: list[Image]) -> str:
    return report_export._env().get_template("report/supplier.html.j2").render(
        card=card, images=images, title=title_of(card), rounding=credits.ROUNDING, human=human, money=money_text)


def pdf(card: Scorecard, images: list[Image], *, compress: bool = True) -> bytes:
    """A4, the same sections as the HTML. ``compress=False`` leaves the page text readable in the file."""
    from reportlab.platypus import Paragraph, Spacer

    page = PdfPage(title_of(card))
    text, table, h1, h2 = page.text, page.table, page.h1, page.h2
    c = card
    story = [Paragraph(escape(title_of(c)), h1),
             text(f"{c.start:%Y-%m-%d %H:%M} – {c.end:%Y-%m-%d %H:%M} UTC (a month in {c.timezone} time); "
                  f"contracts {', '.join(c.contracts) or 'none'}; made {c.generated_at:%Y-%m-%d %H:%M} UTC by svcbot.")]
    story += [Paragraph("Agreed against achieved", h2), *table(
        "Each UC target", ["Contract", "Service", "Target", "Agreed", "Achieved", "Measured", "Result"],
        [[t.agreement, t.service, f"{t.metric} {t.priority}", report_model.goal_text(t.goal),
          report_model.pct(t.achieved), f"{t.met} of {t.measured} met", "met" if t.ok else "missed"]
         for t in c.targets], [0.16, 0.14, 0.16, 0.1, 0.12, 0.18, 0.14])]
    story += [Paragraph(f"Breaches: {len(c.breaches)}", h2), *table(
        "Each breached UC clock", ["Ticket", "Target", "Used", "Allowed"],
        [[f"INC-{b.ticket_id} {b.priority} · {b.service}: {b.title}", f"{b.agreement} {b.metric}",
          human(b.used_seconds) + (" (running)" if b.running else ""), human(b.target_seconds)]
         for b in c.breaches], [0.46, 0.24, 0.15, 0.15])]
    story += [Paragraph("Waiting on the supplier", h2),
              text(f"Tickets waited {c.waited_seconds / 3600:,.1f} h (clock time) on {c.waited_tickets} tickets "
                   f"in the month; {len(c.still_waiting)} still waiting at "
                   + ("the month's end." if c.complete else "this moment.")), Spacer(1, 4), *table(
        "Still waiting", ["Ticket", "Since (UTC)", "Waited"],
        [[f"INC-{w.ticket_id} {w.priority} · {w.service}: {w.title}", f"{w.since:%Y-%m-%d %H:%M}",
          human(w.waited_seconds)] for w in c.still_waiting], [0.6, 0.2, 0.2])]
    story += [Paragraph("Satisfaction of tickets it touched", h2),
              text(f"CSAT {c.csat:.1f} % ({c.satisfied} of {c.answers} satisfied)" if c.answers else
                   "No after-ticket answers in the month about tickets that waited on it.")]
    story += [Paragraph("Service credits", h2), text(f"Rounding: {credits.ROUNDING}.")]
    for s in c.credits:
        rows = [[line.target, line.rule, line.working, money_text(line.amount, s.currency)] for line in s.lines]
        rows.append(["Due", f"charge {money_text(s.charge, s.currency)}"
                     + (f", cap {money_text(s.cap, s.currency)}" if s.cap is not None else ""),
                     f"{s.decision.status} by {s.decision.by_name}: {s.decision.note}" if s.decision
                     else "not yet claimed or waived", s.text()])
        story += table(f"{s.agreement}: {credits.summary(s)}", ["Target", "Rule", "Working", "Amount"], rows,
                       [0.14, 0.28, 0.4, 0.18])
    story += [Paragraph("Six months", h2), *table(
        "Per month", ["Month", "UC clocks met", "Breaches", "Waited", "Credits"],
        [[m.label, f"{m.clocks_met} of {m.clocks}", m.breaches, f"{m.waited_seconds / 3600:,.1f} h",
          money_text(m.credits_due, m.currency) if m.credits_due is not None else "—"] for m in c.trend],
        [0.16, 0.24, 0.16, 0.2, 0.24])]
    return page.build(story + page.charts(images), compress)
