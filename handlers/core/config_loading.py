"""Reading app.yaml into ``AppConfig``.

Loading is strict: unknown keys, wrong types and dangling references are all reported at once,
each by its path in the file (``services[2].calendar: unknown calendar 'uk'``), and nothing starts.
"""
from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from handlers.core.config import RISKS, AppConfig
from handlers.core.config_catalogue import Agreement, Target
from handlers.core.dependencies import dependency_problems


class ConfigError(Exception):
    """app.yaml is unusable; ``problems`` lists every fault by its path."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s)\n" + "\n".join(f"  {p}" for p in problems))


def lead_problems(path: str, target: "Target") -> list[str]:
    """check-config's objections to a target's ``warn_before``, each by its path in app.yaml."""
    problems = []
    within = target.within
    for i, lead in enumerate(target.warn_before):
        where = f"{path}.warn_before[{i}]"
        if lead.whole_days:
            problems.append(f"{where}: say hours or minutes, like '1 hour' or '15 min'")
        elif lead.minutes <= 0:
            problems.append(f"{where}: a warning must come some time before due, like '15 min'")
        elif within is None:
            problems.append(f"{where}: a {target.metric} target has no time allowed to warn before")
        elif lead.business and not within.business:
            problems.append(f"{where}: this target counts clock time, so its warnings do too: say "
                            f"'{_lead_text(lead.minutes)}'")
        elif within.whole_days and lead.minutes >= within.whole_days * 24 * 60:
            problems.append(f"{where}: {_lead_text(lead.minutes)} is not shorter than the target "
                            f"({within.whole_days} business day{'s' * (within.whole_days != 1)})")
        elif not within.whole_days and lead.minutes >= within.minutes:
            problems.append(f"{where}: {_lead_text(lead.minutes)} is not shorter than the target "
                            f"({_lead_text(within.minutes)})")
    return problems


def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top)"


def _structure_problems(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"]
                    if not (isinstance(p, str) and (p.startswith(("function-", "lax-")) or p == "[key]")))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required"
        problems.append(f"{_path(loc)}: {msg}")
    return problems


def _reference_problems(cfg: AppConfig) -> list[str]:
    problems: list[str] = []
    people = {p.id for p in cfg.people}
    groups = {g.id: g for g in cfg.groups}
    services = {s.id for s in cfg.services}
    agreements = {a.id: a for a in cfg.agreements}

    def dupes(kind: str, ids: list[str], key: str = "id"):
        seen = set()
        for i, x in enumerate(ids):
            if x in seen:
                problems.append(f"{kind}[{i}].{key}: duplicate {key} '{x}'")
            seen.add(x)

    def ref(path: str, value: str | None, known, what: str):
        if value is not None and value not in known:
            problems.append(f"{path}: unknown {what} '{value}'")

    dupes("people", [p.id for p in cfg.people])
    dupes("groups", [g.id for g in cfg.groups])
    dupes("services", [s.id for s in cfg.services])
    dupes("agreements", [a.id for a in cfg.agreements])
    for platform in ("slack", "teams"):
        seen: dict[str, int] = {}
        for i, p in enumerate(cfg.people):
            uid = getattr(p, platform)
            if uid and uid in seen:
                problems.append(f"people[{i}].{platform}: '{uid}' is also people[{seen[uid]}]")
            seen.setdefault(uid, i)

    for name, cal in cfg.calendars.items():
        if not cal.always_open and not any(cal.hours.values()):
            problems.append(f"calendars.{name}.hours: no working hours (say 24x7: true for a 24x7 calendar)")
        for day, intervals in cal.hours.items():
            ordered = sorted(intervals, key=lambda i: i.start)
            for a, b in zip(ordered, ordered[1:]):
                if b.start < a.end:
                    problems.append(f"calendars.{name}.hours.{day}: intervals overlap")
        for i, h in enumerate(cal.holidays):
            problems += _holiday_problems(f"calendars.{name}.holidays[{i}]", h.country, h.subdivision)

    for i, p in enumerate(cfg.groups):
        ref(f"groups[{i}].calendar", p.calendar, cfg.calendars, "calendar")
        ref(f"groups[{i}].channel", p.channel, cfg.channels, "channel")
        for j, m in enumerate(p.members):
            ref(f"groups[{i}].members[{j}]", m, people, "person")
    problems += _shift_problems(cfg, groups)
    for role in ("service_managers", "cab", "emergency_cab"):
        for j, m in enumerate(getattr(cfg.roles, role)):
            ref(f"roles.{role}[{j}]", m, people, "person")
    for name, ch in cfg.channels.items():
        if not ch.slack and not ch.teams:
            problems.append(f"channels.{name}: give a slack channel id, a teams conversation id, or both")

    for i, s in enumerate(cfg.services):
        ref(f"services[{i}].owner", s.owner, people, "person")
        ref(f"services[{i}].team", s.team, groups, "group")
        ref(f"services[{i}].channel", s.channel, cfg.channels, "channel")
        ref(f"services[{i}].calendar", s.calendar, cfg.calendars, "calendar")
        for j, sup in enumerate(s.suppliers):
            if sup not in groups or groups[sup].kind != "supplier":
                problems.append(f"services[{i}].suppliers[{j}]: unknown supplier '{sup}'")
    problems += dependency_problems(cfg.services)

    for i, a in enumerate(cfg.agreements):
        ref(f"agreements[{i}].service", a.service, services, "service")
        ref(f"agreements[{i}].calendar", a.calendar, cfg.calendars, "calendar")
        if a.kind == "sla":
            if a.underpins:
                problems.append(f"agreements[{i}].underpins: an SLA underpins nothing; OLAs and UCs underpin SLAs")
        else:
            want = "internal" if a.kind == "ola" else "supplier"
            if a.party not in groups or groups[a.party].kind != want:
                article = "an" if a.kind == "ola" else "a"
                problems.append(f"agreements[{i}].party: {article} {a.kind.upper()} needs "
                                f"{'an' if want == 'internal' else 'a'} {want} group, not '{a.party}'")
            if a.underpins is None:
                problems.append(f"agreements[{i}].underpins: say which SLA this {a.kind.upper()} underpins")
            elif a.underpins not in agreements or agreements[a.underpins].kind != "sla":
                problems.append(f"agreements[{i}].underpins: unknown SLA '{a.underpins}'")
        for j, t in enumerate(a.targets):
            path = f"agreements[{i}].targets[{j}]"
            if t.metric in ("response", "resolution") and t.within is None:
                problems.append(f"{path}.within: a {t.metric} target needs a time allowed")
            if sorted(t.warn_at) != list(t.warn_at):
                problems.append(f"{path}.warn_at: thresholds must rise")
            problems += lead_problems(path, t)
        problems += commercial_problems(f"agreements[{i}]", a)

    ch = cfg.changes
    ref("changes.channel", ch.channel, cfg.channels, "channel")
    if isinstance(ch.emergency_approvals, dict):
        for risk in RISKS:
            if ch.emergency_approvals.get(risk, 1) < 1:
                problems.append(f"changes.emergency_approvals.{risk}: an emergency change needs at least one approval")
    for i, f in enumerate(ch.freezes):
        for j, sid in enumerate(f.services):
            ref(f"changes.freezes[{i}].services[{j}]", sid, services, "service")
    dupes("changes.models", [m.id for m in ch.models])
    for i, m in enumerate(ch.models):
        for j, sid in enumerate(m.services):
            ref(f"changes.models[{i}].services[{j}]", sid, services, "service")
        if not m.services:
            problems.append(f"changes.models[{i}].services: name at least one service")
    dupes("digests", [d.name for d in cfg.digests], "name")
    for i, d in enumerate(cfg.digests):
        ref(f"digests[{i}].channel", d.channel, cfg.channels, "channel")
    problems += _access_problems(cfg, people)
    dupes("reports", [r.name for r in cfg.reports], "name")
    for i, r in enumerate(cfg.reports):
        ref(f"reports[{i}].channel", r.channel, cfg.channels, "channel")
        for j, sid in enumerate(r.services):
            if sid != "all":
                ref(f"reports[{i}].services[{j}]", sid, services, "service")
    return problems


def _shift_problems(cfg: AppConfig, groups: dict) -> list[str]:
    """Shifts need a time zone, and a handover needs a group that ends shifts and one that can be posted to."""
    problems = []
    for i, g in enumerate(cfg.groups):
        if g.shifts and g.calendar is None:
            problems.append(f"groups[{i}].shifts: shifts are in the group's calendar's time zone; give it a calendar")
        if g.handover_to is None:
            continue
        where, to = f"groups[{i}].handover_to", groups.get(g.handover_to)
        if to is None:
            problems.append(f"{where}: unknown group '{g.handover_to}'")
        elif to.id == g.id:
            problems.append(f"{where}: a group cannot hand over to itself")
        elif to.kind != "internal" or g.kind != "internal":
            problems.append(f"{where}: handovers pass work between internal teams; "
                            f"'{g.id if g.kind != 'internal' else to.id}' is a supplier")
        elif to.channel is None:
            problems.append(f"{where}: '{to.id}' has no channel to post the handover to; give it a channel")
        cal = cfg.calendars.get(g.calendar) if g.calendar else None
        if cal is None and g.calendar is None:
            problems.append(f"{where}: '{g.id}' has no shifts or calendar, so its shifts never end; give it shifts")
        elif cal is not None and cal.always_open and not g.shifts:
            problems.append(f"{where}: '{g.id}' works 24x7 on calendar '{g.calendar}', so its shifts never end; "
                            "give it shifts")
    return problems


def _holiday_problems(path: str, country: str, subdivision: str | None) -> list[str]:
    """What holidays.country_holidays(country, subdiv=subdivision) would refuse, asked of the one country named:
    the package's names of countries are lazy loaders, while making a calendar imports every country (some
    250 modules, a tenth of a second)."""
    import holidays
    from holidays.registry import EntityLoader
    entity = getattr(holidays, country, None)
    if not isinstance(entity, EntityLoader):
        return [f"{path}.country: no holiday data for '{country}'"]
    if subdivision is None:
        return []
    try:
        holidays.country_holidays(country, subdiv=subdivision)
    except NotImplementedError:
        return [f"{path}.subdivision: '{country}' has no subdivision '{subdivision}'"]
    return []


def _access_problems(cfg: AppConfig, people: set[str]) -> list[str]:
    problems = []
    names: dict[str, int] = {}
    hashes: dict[str, str] = {}
    for i, c in enumerate(cfg.api_clients):
        if c.name == "legacy":
            problems.append(f"api_clients[{i}].name: 'legacy' is the client of SVCBOT_API_TOKEN; choose another name")
        elif c.name in names:
            problems.append(f"api_clients[{i}].name: duplicate name '{c.name}' (also api_clients[{names[c.name]}])")
        names.setdefault(c.name, i)
        if c.token_hash in hashes:
            problems.append(f"api_clients[{i}].token_hash: the same token as {hashes[c.token_hash]}; "
                            "give each client its own")
        hashes.setdefault(c.token_hash, f"api_clients[{i}]")
        if c.on_behalf_of != "*":
            for j, pid in enumerate(c.on_behalf_of):
                if pid not in people:
                    problems.append(f"api_clients[{i}].on_behalf_of[{j}]: unknown person '{pid}'")
    keys: set[str] = set()
    for i, k in enumerate(cfg.status_page.feed_keys):
        if k.name in keys:
            problems.append(f"status_page.feed_keys[{i}].name: duplicate name '{k.name}'")
        keys.add(k.name)
        if k.key_hash in hashes:
            problems.append(f"status_page.feed_keys[{i}].key_hash: the same secret as {hashes[k.key_hash]}; "
                            "a feed key is only for reading the feeds")
        hashes.setdefault(k.key_hash, f"status_page.feed_keys[{i}]")
    return problems


class _StrictConstruction:
    """safe_load, except that a key given twice in one mapping is an error rather than the last one winning."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key '{key}'", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


class _StrictLoader(_StrictConstruction, yaml.SafeLoader):
    pass


# libyaml's parser reads app.yaml some ten times faster than PyYAML's own; a file it refuses is read again by
# PyYAML's, whose messages (and verdict) are the ones app.yaml's problems have always been told in.
if getattr(yaml, "__with_libyaml__", False):
    class _FastStrictLoader(_StrictConstruction, yaml.CSafeLoader):
        pass
else:
    _FastStrictLoader = _StrictLoader


def _read_yaml(text: str):
    try:
        return yaml.load(text, Loader=_FastStrictLoader)
    except yaml.YAMLError:
        return yaml.load(text, Loader=_StrictLoader)


def _without_unknown_keys(raw, exc: ValidationError):
    """A copy of raw without the keys pydantic called unknown, or None if other faults remain too."""
    import copy
    errors = exc.errors()
    if any(e["type"] != "extra_forbidden" for e in errors):
        return None
    pruned = copy.deepcopy(raw)
    for e in errors:
        *parents, key = e["loc"]
        node = pruned
        for p in parents:
            node = node[p]
        node.pop(key, None)
    return pruned


def parse_config(text: str, source: str = "app.yaml") -> AppConfig:
    try:
        raw = _read_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise ConfigError(source, [f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}"]) from None
    if not isinstance(raw, dict):
        raise ConfigError(source, ["(top): expected a mapping of sections (calendars, services, …)"])
    try:
        cfg = AppConfig.model_validate(raw)
    except ValidationError as exc:
        problems = _structure_problems(exc)
        # Unknown keys (typos, mostly) do not stop the references from being checked too.
        pruned = _without_unknown_keys(raw, exc)
        if pruned is not None:
            problems += _reference_problems(AppConfig.model_validate(pruned))
        raise ConfigError(source, problems) from None
    problems = _reference_problems(cfg)
    if problems:
        raise ConfigError(source, problems)
    return cfg


def load_config(path: str | Path) -> AppConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [f"(file): cannot read: {exc.strerror}"]) from None
    cfg = parse_config(text, str(path))
    if cfg.bot.templates:
        folder = (path.parent / cfg.bot.templates).resolve()
        problems = _template_problems(folder, cfg.bot.templates)
        if problems:
            raise ConfigError(str(path), problems)
        cfg = cfg.model_copy(update={"bot": cfg.bot.model_copy(update={"templates": str(folder)})})
    return cfg


def _template_problems(folder: Path, given: str) -> list[str]:
    """A deployment's templates must exist and parse; a template that fails only when rendered falls
    back to the built-in one then (see bot/render.py)."""
    from jinja2 import Environment, TemplateSyntaxError
    if not folder.is_dir():
        return [f"bot.templates: no folder '{given}' (looked in {folder})"]
    problems = []
    for file in sorted(folder.rglob("*.j2")):
        try:
            Environment().parse(file.read_text(encoding="utf-8"))
        except TemplateSyntaxError as exc:
            problems.append(f"bot.templates: {file.relative_to(folder)}, line {exc.lineno}: {exc.message}")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"bot.templates: {file.relative_to(folder)}: cannot read: {exc}")
    return problems


def _lead_text(minutes: float) -> str:
    """As app.yaml would say it, so that a suggestion can be pasted back: '1 hour', '90 min'."""
    if minutes % 60:
        return f"{minutes:g} min"
    hours = minutes / 60
    return f"{hours:g} hour{'s' * (hours != 1)}"


def commercial_problems(path: str, agreement: "Agreement") -> list[str]:
    """check-config's objections to an agreement's commercial terms: only a UC carries them, and each credit
    rule names a response or resolution target the contract has."""
    terms = agreement.commercial
    if terms is None:
        return []
    if agreement.kind != "uc":
        return [f"{path}.commercial: commercial terms belong to an underpinning contract (kind: uc), "
                f"not to an {agreement.kind.upper()}"]
    problems = []
    targets = {(t.metric, t.priority) for t in agreement.targets}
    for j, rule in enumerate(terms.rules):
        if (rule.metric, rule.priority) not in targets:
            known = ", ".join(f"{m} {p}" if p else m for m, p in sorted(targets, key=str)
                              if m in ("response", "resolution")) or "none"
            problems.append(f"{path}.commercial.rules[{j}]: {agreement.id} has no {rule.target_name} target; "
                            f"its targets: {known}")
    return problems
