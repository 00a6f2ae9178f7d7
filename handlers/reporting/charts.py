"""The monthly report's three charts as PNG images: attainment trend, breaches by cause, satisfaction trend.

Drawn with matplotlib's object API (a ``Figure`` on its own Agg canvas, never pyplot): no global figure
state, so reports may be drawn in several threads at once. Each image is 800 × 400 px at 100 dpi and about
10 KB, small enough for Teams to embed as a data URI; its ``alt`` text states the numbers it
shows, for screen readers and for every surface that shows no pictures. Output is byte-for-byte the same
for the same report.

A chart with nothing to show is still drawn, saying so ("No SLA breaches in October 2026"), so that every
report carries the same three pictures in the same places.
"""
from __future__ import annotations

import base64
import io

import PIL.Image
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from handlers.core.context import Image
from handlers.reporting.report_model import NO_CAUSE, Report, attainment_text, pct, satisfaction_text

SIZE = (8, 4)  # inches; at DPI, 800 × 400 px
DPI = 100
COLOURS = 64  # in the PNG's palette
# Okabe–Ito colours: told apart with any colour vision.
BLUE, ORANGE, GREEN, GREY = "#0072B2", "#E69F00", "#009E73", "#6E6E6E"


def charts(report: Report) -> list[Image]:
    return [attainment_chart(report), breaches_chart(report), satisfaction_chart(report)]


def _figure(title: str) -> tuple[Figure, object]:
    fig = Figure(figsize=SIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=12, loc="left")
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def _png(fig: Figure) -> str:
    """A PNG of 64 colours without alpha: a chart has a handful of colours and their anti-aliased edges,
    and this makes it about a third of matplotlib's RGBA file (every message that carries three of them,
    a Teams card above all, has a size limit). Pillow writes no time or software name into it, and the
    median cut without dithering is deterministic: the same chart is the same bytes."""
    canvas = fig.canvas
    canvas.draw()
    picture = PIL.Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba()).convert("RGB")
    buffer = io.BytesIO()
    picture.quantize(colors=COLOURS, method=PIL.Image.Quantize.MEDIANCUT, dither=PIL.Image.Dither.NONE).save(
        buffer, format="png", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _nothing(ax, text: str) -> None:
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=13, color=GREY, transform=ax.transAxes)


def _name(report: Report, chart: str) -> str:
    return f"{chart}-{report.scope_key}-{report.month}.png"


def attainment_chart(report: Report) -> Image:
    """Per month: the share of SLA targets that reached their goal (bars), and of SLA clocks met (line)."""
    months = report.attainment_trend
    title = f"SLA attainment, {months[0].label} – {months[-1].label}: {report.scope_name}"
    fig, ax = _figure(title)
    if not any(m.targets for m in months):
        _nothing(ax, "No SLA target was measured in these months")
    else:
        x = range(len(months))
        shares = [m.targets_share for m in months]
        bars = ax.bar(x, [s or 0 for s in shares], color=BLUE, width=0.6, label="SLA targets meeting their goal")
        ax.bar_label(bars, labels=[f"{m.targets_met}/{m.targets}" if m.targets else "—" for m in months],
                     padding=3, fontsize=9)
        clocks = [(i, m.clocks_share) for i, m in enumerate(months) if m.clocks]
        if clocks:
            ax.plot([i for i, _ in clocks], [s for _, s in clocks], color=ORANGE, marker="o", linewidth=2,
                    label="SLA clocks met")
        ax.set_xticks(list(x), [m.label for m in months])
        ax.set_ylim(0, 112)
        ax.set_ylabel("%")
        fig.legend(loc="outside lower center", ncol=2, fontsize=9, frameon=False)
    alt = (f"SLA attainment of {report.scope_name} per month. "
           + "; ".join(f"{m.label}: {attainment_text(m)}" for m in months) + ".")
    return Image(_name(report, "attainment"), title, alt, _png(fig))


def breaches_chart(report: Report) -> Image:
    """The month's SLA breaches by the OLA or UC that caused them, as horizontal bars."""
    title = f"SLA breaches by cause, {report.month_name}: {report.scope_name}"
    fig, ax = _figure(title)
    causes = report.breach_causes
    if not causes:
        _nothing(ax, f"No SLA breaches in {report.month_name}")
        alt = f"No SLA breaches for {report.scope_name} in {report.month_name}."
    else:
        labels = [c.label for c in reversed(causes)]  # the largest on top
        counts = [c.breaches for c in reversed(causes)]
        bars = ax.barh(labels, counts, color=[GREY if c.cause == NO_CAUSE else BLUE for c in reversed(causes)])
        ax.bar_label(bars, padding=3, fontsize=10)
        ax.set_xlim(0, max(counts) * 1.15 + 0.5)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_xlabel("breaches")
        alt = (f"{len(report.breaches)} SLA breaches for {report.scope_name} in {report.month_name}, by cause: "
               + ", ".join(f"{c.cause} {c.breaches}" for c in causes) + ".")
    return Image(_name(report, "breaches"), title, alt, _png(fig))


def satisfaction_chart(report: Report) -> Image:
    """CSAT per month with the number of answers under each bar, against the goal when there is one."""
    months = report.satisfaction_trend
    title = f"Satisfaction (CSAT), {months[0].label} – {months[-1].label}: {report.scope_name}"
    fig, ax = _figure(title)
    goal = report.satisfaction_goal
    if not any(m.answers for m in months):
        _nothing(ax, "No satisfaction answers in these months")
    else:
        x = range(len(months))
        bars = ax.bar(x, [m.csat or 0 for m in months], color=GREEN, width=0.6, label="CSAT (4 or 5 of 5)")
        for bar, m in zip(bars, months):
            text = f"{pct(m.csat, 0)}\nn={m.answers}" if m.answers else "no answers"
            ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), xytext=(0, 5),
                        textcoords="offset points", ha="center", fontsize=9,
                        bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})  # readable over the goal line
        if goal is not None:
            ax.axhline(goal, color=GREY, linestyle="--", linewidth=1.2, label=f"goal {goal:g} %")
        ax.set_xticks(list(x), [m.label for m in months])
        ax.set_ylim(0, 118)
        ax.set_ylabel("%")
        fig.legend(loc="outside lower center", ncol=2, fontsize=9, frameon=False)
    alt = (f"Satisfaction of {report.scope_name} per month. "
           + "; ".join(f"{m.label}: {satisfaction_text(m)}" for m in months)
           + (f". Goal {goal:g} %." if goal is not None else "."))
    return Image(_name(report, "satisfaction"), title, alt, _png(fig))
