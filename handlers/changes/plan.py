"""A change's plan from what was typed or entered in the form: title, services, window, risk, people and steps."""
from __future__ import annotations

import re
from datetime import datetime, timedelta

from handlers.changes.record import KINDS
from handlers.core.config import RISKS
from handlers.core.config_catalogue import Duration
from handlers.core.context import Actor, Context, FormInvalid
from handlers.core.words import parse_time
from storage.models import Change

MENTION = re.compile(r"^<@([A-Z0-9]+)(?:\|[^>]*)?>$")


NEW_EXAMPLE = ('change new title="Upgrade the payments database" services=payments type=normal risk=high '
               'start="tomorrow 22:00" end="tomorrow 23:30" implementer=tom backout="Restore the snapshot"')


STANDARD_EXAMPLE = 'change new model=restart-wms-workers start="tomorrow 22:00"'


FIELDS = ("title", "services", "type", "model", "risk", "impact", "start", "end", "implementer", "description",
          "implementation", "backout", "test")


def person_of(ctx: Context, text: str) -> str | None:
    """A person id from an id, a name, or a Slack mention."""
    text = text.strip()
    m = MENTION.match(text)
    if m:
        p = ctx.config.person_by_platform("slack", m[1])
        return p.id if p else None
    p = ctx.config.person(text.lower()) or next((p for p in ctx.config.people if p.name.lower() == text.lower()), None)
    return p.id if p else None


def _as_list(value) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [v.strip() for v in str(value or "").split(",") if v.strip()]


def plan_from(ctx: Context, actor: Actor, values: dict, now: datetime, base: Change | None = None,
              example: str = NEW_EXAMPLE) -> dict:
    """Check a change's fields; returns the columns to set, or raises FormInvalid naming every bad field.
    With ``base`` (an edit), fields not given keep their current values."""
    cfg = ctx.config
    v = {k: (str(x).strip() if not isinstance(x, list) else x) for k, x in values.items() if x not in (None, "")}
    errors: dict[str, str] = {}
    out: dict = {}
    model = None
    if "model" in v:
        model = cfg.changes.model(str(v["model"]).lower())
        if model is None:
            known = ", ".join(m.id for m in cfg.changes.models) or "none are configured"
            errors["model"] = f"no standard change model '{v['model']}' (models: {known})"
    kind = str(v.get("type", "standard" if "model" in v else (base.kind if base else "normal"))).lower()
    if kind not in KINDS:
        errors["type"] = f"'{kind}' is not a type: standard, normal or emergency"
    elif kind == "standard" and "model" not in v and not (base and base.model):
        errors["model"] = "a standard change follows a model from the catalogue: say model=…"
    elif kind != "standard" and "model" in v:
        errors["type"] = "a change that follows a standard model is a standard change"
    out["kind"] = kind
    if model:
        out.update(model=model.id, title=model.title, risk=model.risk, impact=model.impact,
                   implementation_plan=model.implementation, backout_plan=model.backout, test_plan=model.test,
                   description=model.description, services=list(model.services))
    fixed = model or (cfg.changes.model(base.model) if base and base.model else None)
    if fixed:
        for f in ("title", "services", "risk", "impact"):
            if f in v:
                errors[f] = f"comes from the standard model '{fixed.id}'; leave it out"
    if "title" in v and not model:
        if len(v["title"]) > 300:
            errors["title"] = "at most 300 characters"
        out["title"] = v["title"]
    elif not model and not base:
        errors["title"] = "required"
    if "services" in v and not model:
        services, bad = [], []
        for key in _as_list(v["services"]):
            svc = cfg.service(key)
            (services if svc else bad).append(svc.id if svc else key)
        if bad:
            errors["services"] = f"unknown service{'s' if len(bad) > 1 else ''} {', '.join(bad)} " \
                                 f"(services: {', '.join(s.id for s in cfg.services)})"
        elif not services:
            errors["services"] = "name at least one service"
        out["services"] = list(dict.fromkeys(services))
    elif not model and not base:
        errors["services"] = "required: the services the change touches"
    for f in ("risk", "impact"):
        if f in v and not model:
            if v[f].lower() not in RISKS:
                errors[f] = f"'{v[f]}' is not one of low, medium, high"
            out[f] = v[f].lower()
    if "risk" not in out and not base:
        errors.setdefault("risk", "required: low, medium or high")
    if not base:
        out.setdefault("impact", out.get("risk", "medium"))
    for f, col in (("description", "description"), ("implementation", "implementation_plan"),
                   ("backout", "backout_plan"), ("test", "test_plan")):
        if f in v:
            out[col] = v[f]
    for f in ("start", "end"):
        if f in v:
            try:
                out[f"planned_{f}"] = parse_time(v[f], actor.timezone, now)
            except ValueError as exc:
                errors[f] = str(exc)
    start = out.get("planned_start", base.planned_start if base else None)
    end = out.get("planned_end", base.planned_end if base else None)
    if fixed and "end" not in v and start and "planned_start" in out:
        end = out["planned_end"] = start + _length(fixed.duration)
    if start is None and "start" not in errors:
        errors["start"] = "required"
    if end is None and "end" not in errors and not (fixed and "start" in errors):
        errors["end"] = "required"
    if start and end and end <= start:
        errors["end"] = "must be after the start"
    if start and "planned_start" in out and kind != "emergency" and start < now - timedelta(minutes=5):
        errors["start"] = "is in the past (only an emergency change may start at once)"
    if "implementer" in v:
        pid = person_of(ctx, v["implementer"])
        if pid is None:
            errors["implementer"] = f"no person '{v['implementer']}' in app.yaml"
        out["implementer"] = pid
    backout = out.get("backout_plan", base.backout_plan if base else "")
    if kind in ("normal", "emergency") and not backout:
        errors["backout"] = f"{'an' if kind == 'emergency' else 'a'} {kind} change needs a back-out plan"
    if errors:
        raise FormInvalid(errors, example=STANDARD_EXAMPLE if model else example)
    return out


def _length(duration: Duration) -> timedelta:
    # A standard model's duration is how long the work takes, in clock time.
    return timedelta(minutes=duration.minutes or (duration.whole_days or 0) * 24 * 60)
