"""The supplier review pack's two charts, drawn as the monthly report's are (``charts``): the share of the
supplier's UC clocks met per month with its breaches, and the hours tickets waited on it per month."""
from __future__ import annotations

from handlers.core.config_commercial import money_text
from handlers.core.context import Image
from handlers.reporting.charts import BLUE, ORANGE, _figure, _nothing, _png
from handlers.reporting.report_model import pct
from handlers.suppliers.scorecard import Scorecard


def charts(card: Scorecard) -> list[Image]:
    return [clocks_chart(card), waiting_chart(card)]


def _name(card: Scorecard, chart: str) -> str:
    return f"{chart}-{card.supplier}-{card.month}.png"


def clocks_chart(card: Scorecard) -> Image:
    months = card.trend
    title = f"UC clocks met, {months[0].label} – {months[-1].label}: {card.name}"
    fig, ax = _figure(title)
    if not any(m.clocks for m in months):
        _nothing(ax, "No UC clock was decided in these months")
    else:
        x = range(len(months))
        bars = ax.bar(x, [m.clocks_share or 0 for m in months], color=BLUE, width=0.6, label="UC clocks met")
        ax.bar_label(bars, labels=[f"{m.clocks_met}/{m.clocks}\n{m.breaches} breached" if m.clocks else "—"
                                   for m in months], padding=3, fontsize=9)
        ax.set_xticks(list(x), [m.label for m in months])
        ax.set_ylim(0, 125)
        ax.set_ylabel("%")
    alt = (f"UC clocks of {card.name} met per month. "
           + "; ".join(f"{m.label}: {m.clocks_met} of {m.clocks} met ({pct(m.clocks_share)}), {m.breaches} breached"
                       + (f", credits {money_text(m.credits_due, m.currency)}" if m.credits_due is not None else "")
                       for m in months) + ".")
    return Image(_name(card, "uc-clocks"), title, alt, _png(fig))


def waiting_chart(card: Scorecard) -> Image:
    months = card.trend
    title = f"Hours waiting on {card.name}, {months[0].label} – {months[-1].label}"
    fig, ax = _figure(title)
    hours = [m.waited_seconds / 3600 for m in months]
    if not any(hours):
        _nothing(ax, "No ticket waited on the supplier in these months")
    else:
        x = range(len(months))
        bars = ax.bar(x, hours, color=ORANGE, width=0.6)
        ax.bar_label(bars, labels=[f"{h:,.1f} h" for h in hours], padding=3, fontsize=9)
        ax.set_xticks(list(x), [m.label for m in months])
        ax.set_ylim(0, max(hours) * 1.2)
        ax.set_ylabel("hours (clock time)")
    alt = (f"Hours tickets waited on {card.name} per month: "
           + "; ".join(f"{m.label}: {h:,.1f} h" for m, h in zip(months, hours)) + ".")
    return Image(_name(card, "waiting"), title, alt, _png(fig))
