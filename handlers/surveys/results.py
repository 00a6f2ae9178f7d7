"""A survey's results: the figures, who may see them (anonymous results stay hidden below the minimum),
the comparison with the previous survey of the same question, and the survey list.
"""
from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from handlers.core.context import Button, Command, Context, Field, Refused, Reply, Section
from handlers.surveys import satisfaction
from handlers.surveys.record import NEW_EXAMPLE, SHOWN_COMMENTS, find, may_see, number, when_text
from handlers.surveys.satisfaction import Results
from storage.models import Survey, SurveyAnswer


def results_of(session: Session, survey: Survey) -> Results:
    """As they stood at closing (they outlive the answers), or as they stand now."""
    if survey.results is not None:
        return Results.from_dict(survey.results)
    counts = session.execute(select(SurveyAnswer.value, func.count()).where(SurveyAnswer.survey_id == survey.id)
                             .group_by(SurveyAnswer.value)).all()
    invited = len(survey.audience) if survey.audience_kind == "people" else None
    return satisfaction.tally(survey.scale, dict(counts), invited)


def answers_text(n: int) -> str:
    return f"{n} answer{'' if n == 1 else 's'}"


def hidden(ctx: Context, survey: Survey, results: Results) -> bool:
    return survey.anonymous and results.answers < ctx.config.surveys.min_respondents


def previous_survey(session: Session, survey: Survey) -> Survey | None:
    """The last pulse survey before this one that asked the same question on the same scale."""
    return session.scalar(select(Survey).where(
        Survey.kind == "pulse", Survey.scale == survey.scale, Survey.id < survey.id, Survey.state == "closed",
        func.lower(Survey.question) == survey.question.lower()).order_by(Survey.id.desc()).limit(1))


def results_cmd(ctx: Context, cmd: Command, survey_id: int) -> Reply:
    with ctx.sessions() as s:
        survey = find(s, survey_id)
        if survey.state != "closed" and not may_see(ctx, cmd.actor.person_id, survey):
            raise Refused(f"{number(survey)} is still open: its owner and the service managers see its results "
                          "until it closes.")
        return results_reply(ctx, s, survey, cmd.actor.timezone, with_names=may_see(ctx, cmd.actor.person_id, survey))


def results_reply(ctx: Context, session: Session, survey: Survey, zone: str | None = None,
                  with_names: bool = True) -> Reply:
    """The results; ``with_names`` (for the owner and service managers) names a named survey's commenters."""
    zone = zone or ctx.config.bot.timezone
    results = results_of(session, survey)
    state = (f"closed {when_text(survey.closed_at, zone)}" if survey.state == "closed"
             else f"open until {when_text(survey.closes_at, zone)}" if survey.state == "open" else survey.state)
    title = f"{number(survey)} results: {survey.question}"
    count = answers_text(results.answers)
    if results.invited:
        count += f" of {results.invited} asked ({results.response_rate:.0f} %)"
    if hidden(ctx, survey, results):
        minimum = ctx.config.surveys.min_respondents
        return Reply(title=title, text=f"{count}. The results of an anonymous survey show once {minimum} people "
                                       "have answered, so that no answer can be traced to anyone.",
                     footer=f"{number(survey)} · {state}")
    fields = [Field("Answers", count), Field(results.score_name, results.score_text())]
    previous = previous_survey(session, survey)
    if previous is not None:
        before = results_of(session, previous)
        change = satisfaction.trend(results, before) if not hidden(ctx, previous, before) else None
        if change is not None:
            unit = "" if survey.scale == "nps" else " points"
            fields.append(Field("Trend", f"{'▲' if change > 0 else '▼' if change < 0 else '='} {change:+.0f}{unit} "
                                         f"since {number(previous)} ({before.score_text()})"))
    labels = {v: satisfaction.value_label(survey.scale, v) for v in results.distribution}
    width = max(map(len, labels.values()))
    lines = [f"{labels[v]:>{width}}  {satisfaction.bar(n, results.answers)} {n}"
             for v, n in sorted(results.distribution.items(), reverse=True)]
    sections = [Section(fields=fields), Section(title="Distribution", text="```\n" + "\n".join(lines) + "\n```")]
    comments = [] if survey.comments_purged else session.execute(
        select(SurveyAnswer.comment, SurveyAnswer.person_id).where(
            SurveyAnswer.survey_id == survey.id, SurveyAnswer.comment.is_not(None))
        .order_by(SurveyAnswer.answered_at.desc()).limit(SHOWN_COMMENTS)).all()
    if comments:
        sections.append(Section(title="Comments", text="\n".join(
            f"> {c}" + (f" — {ctx.config.person_name(p)}" if with_names and not survey.anonymous else "")
            for c, p in comments)))
    buttons = []
    if results.low or comments:
        run = f"csi add survey={number(survey)}" + (f" service={survey.service_id}" if survey.service_id else "")
        buttons.append(Button("Raise a CSI item", run))
    return Reply(title=title, sections=sections, buttons=buttons,
                 footer=f"{number(survey)} · {satisfaction.SCALE_NAMES[survey.scale]} · {state}"
                        + (" · anonymous" if survey.anonymous else ""))


def list_reply(ctx: Context, cmd: Command) -> Reply:
    zone = cmd.actor.timezone
    with ctx.sessions() as s:
        open_ = s.scalars(select(Survey).where(Survey.kind == "pulse", Survey.state == "open")
                          .order_by(Survey.closes_at)).all()
        closed = s.scalars(select(Survey).where(Survey.kind == "pulse", Survey.state == "closed")
                           .order_by(Survey.closed_at.desc()).limit(5)).all()
        counts = dict(s.execute(select(SurveyAnswer.survey_id, func.count())
                                .where(SurveyAnswer.survey_id.in_([x.id for x in open_] or [0]))
                                .group_by(SurveyAnswer.survey_id)).all())
        sections = []
        if open_:
            sections.append(Section(title="Open", text="\n".join(
                f"*{number(x)}* {x.question} — {answers_text(counts.get(x.id, 0))}, closes {when_text(x.closes_at, zone)}"
                for x in open_)))
        if closed:
            lines = []
            for x in closed:
                r = results_of(s, x)
                score = "results hidden" if hidden(ctx, x, r) else f"{r.score_name} {r.score_text()}"
                lines.append(f"*{number(x)}* {x.question} — {answers_text(r.answers)}, {score}")
            sections.append(Section(title="Recently closed", text="\n".join(lines)))
    if not sections:
        return Reply(title="No pulse surveys yet", footer=f"Try: {NEW_EXAMPLE}")
    return Reply(title="Pulse surveys", sections=sections, footer="survey results SRV-N for one survey")
