"""The svcbot command line."""
from __future__ import annotations

import argparse
import gc
import logging
import os
import sys


def _config_path(args) -> str:
    return getattr(args, "config", None) or os.environ.get("SVCBOT_CONFIG") or "app.yaml"


# Options that mean the same before or after the sub-command: `svcbot --config F check-config` and
# `svcbot check-config --config F`. SUPPRESS keeps a sub-command that was not given one from
# overwriting what was given before it.
GLOBAL_OPTIONS = argparse.ArgumentParser(add_help=False)
GLOBAL_OPTIONS.add_argument("--config", default=argparse.SUPPRESS,
                            help="configuration file (default $SVCBOT_CONFIG or app.yaml)")


def _command(sub, name: str, summary: str, *examples: str) -> argparse.ArgumentParser:
    """A sub-command whose --help says what it does and shows how it is typed."""
    return sub.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".",
                          epilog=("example:\n" if len(examples) == 1 else "examples:\n")
                          + "\n".join(f"  {e}" for e in examples),
                          formatter_class=argparse.RawDescriptionHelpFormatter, parents=[GLOBAL_OPTIONS])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="svcbot", description="IT service operations in Slack and Teams",
                                     epilog="example:\n  svcbot console --as sanne -c status\n\n"
                                            "svcbot COMMAND --help says more about each command.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     parents=[GLOBAL_OPTIONS])
    sub = parser.add_subparsers(dest="command", required=True)
    run = _command(sub, "run", "the server and the scheduler", "svcbot run --port 8080")
    run.add_argument("--port", type=int, default=int(os.environ.get("PORT", "3000")),
                     help="the HTTP port (default $PORT or 3000)")
    console = _command(sub, "console", "chat in a terminal, no credentials",
                       "svcbot console --as sanne -c 'change list' -c 'change approve CHG-1 Looks good'",
                       "printf 'status\\nsla\\n' | svcbot console")
    console.add_argument("--as", dest="person", help="a person id from app.yaml (default: first service manager)")
    console.add_argument("-c", dest="commands", action="append", help="run this command and leave (repeatable)")
    _command(sub, "check-config", "validate the configuration and list every problem",
             "svcbot check-config --config staging.yaml")
    manifest = _command(sub, "manifest", "an app manifest for this configuration",
                        "svcbot manifest slack --url https://svcbot.example.com > slack-manifest.yaml",
                        "svcbot manifest teams --app-id $MICROSOFT_APP_ID --url https://svcbot.example.com")
    manifest.add_argument("platform", choices=["slack", "teams"])
    manifest.add_argument("--url", help="public base URL of this server, e.g. https://svcbot.example.com")
    manifest.add_argument("--socket-mode", action="store_true", help="Slack: for Socket Mode (no public URL)")
    manifest.add_argument("--app-id", help="Teams: the Azure Bot's app id (default $MICROSOFT_APP_ID)")
    manifest.add_argument("--output", default="svcbot-teams.zip", help="Teams: where to write the package")
    db = _command(sub, "db", "database maintenance: apply the migrations", "svcbot db upgrade")
    db.add_argument("action", choices=["upgrade"])
    imports = _command(sub, "import", "import ticket history from another tool",
                       "svcbot import servicenow incident_event_log.zip --service payments")
    sources = imports.add_subparsers(dest="source", required=True)
    servicenow = _command(sources, "servicenow", "a ServiceNow incident export: the CSV, or a .zip holding it",
                          "svcbot import servicenow incident_event_log.zip --service payments --limit 500")
    servicenow.add_argument("file", help="the export: incident_event_log.csv, or a .zip holding one .csv")
    servicenow.add_argument("--service", required=True, help="the service (id or name) the incidents belong to")
    servicenow.add_argument("--timezone", help="the zone of the file's times (default: the service calendar's)")
    servicenow.add_argument("--limit", type=int, help="import only the first N incidents of the file (not rows)")
    rabobank = _command(sources, "rabobank-changes", "Rabobank's change records (Detail Change.csv, or its .zip)",
                        "svcbot import rabobank-changes detail_change.zip --service-map wbs-services.csv")
    rabobank.add_argument("file", help="the export: Detail Change.csv, or detail_change.zip holding it")
    rabobank.add_argument("--service-map", help="a CSV with columns wbs,service: WBS codes to app.yaml services")
    rabobank.add_argument("--timezone", default="Europe/Amsterdam", help="the zone of the file's times")
    digest = _command(sub, "digest", "post a digest now, outside its schedule",
                      "svcbot digest send morning-ops --dry-run")
    digest.add_argument("action", choices=["send"])
    digest.add_argument("name", help="a digest of app.yaml")
    digest.add_argument("--dry-run", action="store_true", help="print it instead of posting it")
    gdpr = _command(sub, "gdpr", "a person's data: export it, or erase their named survey answers",
                    "svcbot gdpr export tom > tom.json", "svcbot gdpr erase U0TOM0002")
    gdpr.add_argument("action", choices=["export", "erase"])
    gdpr.add_argument("user", help="a person id from app.yaml, or a Slack or Teams account id")
    kb = _command(sub, "kb", "bring the knowledge library in line with a folder of Markdown files kept in git",
                  "svcbot kb sync runbooks/ --config app.yaml")
    kb.add_argument("action", choices=["sync"])
    kb.add_argument("folder", help="the folder: every *.md in it (and below) is an article, its path the source")
    report = _command(sub, "report", "the monthly service report as HTML and PDF, for the service review",
                      "svcbot report --service payments --month last-month --output reports")
    report.add_argument("--service", default="all", help="a service id or name, or all (default)")
    report.add_argument("--month", help="YYYY-MM, last-month (default) or this-month, in the bot's time zone")
    report.add_argument("--output", default=".", help="the folder to write into (default: the current one)")
    pack = _command(sub, "supplier-pack", "a supplier's scorecard as HTML or PDF, for the supplier review meeting",
                    "svcbot supplier-pack cardlink --month last-month --out cardlink.pdf")
    pack.add_argument("supplier", help="a supplier's id or name (a group of kind supplier)")
    pack.add_argument("--month", help="YYYY-MM, last-month (default) or this-month, in the bot's time zone")
    pack.add_argument("--out", help="the file to write: .pdf (the default) or .html "
                                    "(default: svcbot-supplier-SUPPLIER-MONTH.pdf here)")
    client = _command(sub, "api-client", "a new API client token, and its lines for app.yaml",
                      "svcbot api-client new monitoring --scopes alerts,read")
    client.add_argument("action", choices=["new"])
    client.add_argument("name", help="the client's name, like monitoring or servicenow")
    client.add_argument("--scopes", default="read",
                        help="comma-separated: alerts, tickets, outages, changes, surveys, csi, read (default read)")
    client.add_argument("--on-behalf-of", default="",
                        help="comma-separated person ids it may name as the one acting, or '*' for anyone")
    feed = _command(sub, "feed-key", "a new key for a private status page and its feeds (?key=…)",
                    "svcbot feed-key new outlook")
    feed.add_argument("action", choices=["new"])
    feed.add_argument("name", help="what it is for, like outlook or wall-display")
    return parser


def main(argv: list[str] | None = None) -> int:
    # A start makes some hundred thousand objects, most of which live as long as the process, and the cyclic
    # collector would walk them again and again while they are made. It rests until the command's own work
    # begins (``started``), and main leaves it as it found it.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _main(argv, started=_collecting_again if collecting else lambda **_: None)
    finally:
        if collecting:
            gc.enable()


def _collecting_again(*, frozen: bool = False) -> None:
    """The collector back at work; ``frozen``: without the start-up's objects, set aside for good (gc.freeze),
    so that neither the first collections nor every later full one walk them. For the server and the console,
    whose start-up is all they keep; the few cycles it left behind are kept too."""
    if frozen:
        gc.freeze()
    gc.enable()


def _main(argv: list[str] | None, started) -> int:
    from handlers.core.config_loading import ConfigError, load_config
    parser = build_parser()
    args = parser.parse_args(argv)

    logging.basicConfig(level=os.environ.get("SVCBOT_LOG_LEVEL", "WARNING" if args.command == "console" else "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("apscheduler", "alembic"):  # a line per sweep or per migration plugin drowns the rest
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        config = load_config(_config_path(args))
    except ConfigError as exc:
        print(f"svcbot: {exc.source} is not valid; nothing started:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    if args.command not in ("console", "run"):  # those two start collecting once their runtime is built
        started()

    if args.command == "check-config":
        print(f"{_config_path(args)}: OK — {len(config.services)} services, {len(config.agreements)} agreements, "
              f"{len(config.calendars)} calendars, {len(config.people)} people")
        return 0

    if args.command in ("api-client", "feed-key"):
        return _new_secret(config, args)

    if args.command == "manifest" and args.platform == "teams":
        from urllib.parse import urlparse

        from bot.manifest import teams_package
        app_id = args.app_id or os.environ.get("MICROSOFT_APP_ID")
        host = urlparse(args.url or "").hostname
        if not app_id or not host:
            print("svcbot: give --app-id (or set MICROSOFT_APP_ID) and --url https://your.host", file=sys.stderr)
            return 2
        teams_package(config, app_id, host, args.output)
        print(f"wrote {args.output}: upload it in Teams (Apps → Manage your apps → Upload an app)")
        return 0
    if args.command == "manifest":
        from bot.manifest import slack_manifest
        if not args.url and not args.socket_mode:
            print("svcbot: give --url https://your.host (HTTP) or --socket-mode", file=sys.stderr)
            return 2
        print(slack_manifest(config, args.url, args.socket_mode), end="")
        return 0

    if args.command == "import" and args.source == "rabobank-changes":
        return _import_rabobank_changes(config, args)
    if args.command == "import":
        return _import_servicenow(config, args)
    from bot.runtime import Runtime
    if args.command == "db":
        from storage.db import database_url, make_engine, startup_lock, upgrade
        engine = make_engine()
        with startup_lock(engine):
            upgrade(engine)
        print(f"database at {database_url().split('@')[-1]} is up to date")
        return 0
    if args.command == "gdpr":
        return _gdpr(config, args)
    if args.command == "report":
        return _report(config, args)
    if args.command == "supplier-pack":
        return _supplier_pack(config, args)
    if args.command == "kb":
        return _kb_sync(config, args)
    if args.command == "digest":
        return _digest(config, args)
    if args.command == "console" and args.person and config.person(args.person) is None:
        print(f"svcbot: no person '{args.person}' in {_config_path(args)}", file=sys.stderr)
        return 2
    runtime = Runtime(config)
    if args.command == "console":
        from bot.console import run_console
        started(frozen=True)
        try:
            return run_console(runtime, args.person, args.commands)
        except LookupError as exc:
            print(f"svcbot: {exc}", file=sys.stderr)
            return 2
    from bot.server import serve
    started(frozen=True)
    serve(runtime, args.port)
    return 0


def _new_secret(config, args) -> int:
    """A fresh random token, printed once, and the app.yaml lines holding only its hash."""
    import re

    import yaml

    from bot.api_clients import hash_token, new_token
    from handlers.core.config import API_SCOPES
    from handlers.core.config_catalogue import ID_PATTERN
    problems = [] if re.match(ID_PATTERN, args.name) else [f"name: '{args.name}' is not an id like monitoring"]
    token = new_token()
    if args.command == "feed-key":
        entry, where = {"name": args.name, "key_hash": hash_token(token)}, "status_page.feed_keys"
        taken = [k.name for k in config.status_page.feed_keys]
    else:
        scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
        people = [p.strip() for p in args.on_behalf_of.split(",") if p.strip()]
        problems += [f"--scopes: unknown scope '{s}'; scopes: {', '.join(API_SCOPES)}"
                     for s in scopes if s not in API_SCOPES] or ([] if scopes else ["--scopes: name at least one"])
        problems += [f"--on-behalf-of: no person '{p}' in {_config_path(args)}"
                     for p in people if p != "*" and config.person(p) is None]
        entry = {"name": args.name, "token_hash": hash_token(token), "scopes": scopes,
                 **({"on_behalf_of": "*" if "*" in people else people} if people else {})}
        where, taken = "api_clients", [c.name for c in config.api_clients] + ["legacy"]
    if args.name in taken:
        problems.append(f"name: '{args.name}' is taken in {_config_path(args)}")
    if problems:
        for problem in problems:
            print(f"svcbot: {problem}", file=sys.stderr)
        return 2
    lines = yaml.safe_dump([entry], sort_keys=False, default_flow_style=False).rstrip().splitlines()
    use = ("Authorization: Bearer <token>" if args.command == "api-client"
           else "?key=<token>, as in https://your.host/changes.ics?key=<token>")
    print(f"token (shown once; keep it where the caller keeps secrets; it is sent as {use}):\n  {token}\n")
    print(f"add to {where} in {_config_path(args)}:")
    print("\n".join("  " + line for line in lines))
    return 0


def _kb_sync(config, args) -> int:
    """Exit 0 when every file was taken in, 1 when some had a fault (named; the rest was synced)."""
    from pathlib import Path

    from bot.runtime import Runtime
    from handlers.knowledge.sync import sync_folder
    folder = Path(args.folder)
    if not folder.is_dir():
        print(f"svcbot: {folder} is not a folder", file=sys.stderr)
        return 2
    runtime = Runtime(config)
    try:
        result = sync_folder(runtime.ctx, folder)
    finally:
        runtime.engine.dispose()
    for problem in result.problems:
        print(f"svcbot: {problem}", file=sys.stderr)
    print(f"{len(result.created)} new, {len(result.updated)} updated, {len(result.retired)} retired, "
          f"{len(result.republished)} published again, {result.unchanged} unchanged"
          + (f", {len(result.problems)} with a fault (left as they were)" if result.problems else ""))
    return 1 if result.problems else 0


def _gdpr(config, args) -> int:
    import json

    from bot.runtime import Runtime
    from handlers import gdpr
    from handlers.core.context import UserError
    runtime = Runtime(config)
    try:
        if args.action == "export":
            print(json.dumps(gdpr.export(runtime.ctx, args.user), indent=2, ensure_ascii=False))
        else:
            done = gdpr.erase(runtime.ctx, args.user)
            print(f"erased for {done['person']}: {done['survey_answers']} named survey answers, "
                  f"{done['subscriptions']} subscriptions, {done['home_views']} home views")
    except UserError as exc:
        print(f"svcbot: {exc.message}", file=sys.stderr)
        return 2
    finally:
        runtime.engine.dispose()
    return 0


def _digest(config, args) -> int:
    from bot import render
    from bot.runtime import Runtime
    from handlers.core.context import Command, UserError
    from handlers.reporting import digests
    runtime = Runtime(config)
    try:
        digest = digests.find_digest(runtime.ctx, args.name)
        if args.dry_run:
            print(render.text(digests.preview(runtime.ctx, digest)))
            return 0
        reply = digests.send(runtime.ctx, Command(actor=digests.CLI, text=f"digest send {digest.name}"), digest)
    except UserError as exc:
        print(f"svcbot: {exc.message}", file=sys.stderr)
        return 2
    finally:
        runtime.engine.dispose()
    print(f"{render.plain(reply)}; the running server delivers it")
    return 0


def _supplier_pack(config, args) -> int:
    from datetime import datetime, timezone

    from handlers.core.context import UserError
    from handlers.core.months import resolve_month
    from handlers.suppliers import scorecard
    try:  # every word is checked before the database is touched
        month = resolve_month(args.month, datetime.now(timezone.utc), config.bot.timezone,
                              "svcbot supplier-pack cardlink --month last-month")
        supplier = next((g for g in config.groups if g.kind == "supplier"
                         and args.supplier.lower() in (g.id, g.name.lower())), None)
        if supplier is None:
            known = ", ".join(g.id for g in config.groups if g.kind == "supplier")
            raise UserError(f"There is no supplier '{args.supplier}'. Suppliers: {known}.")
    except UserError as exc:
        print(f"svcbot: {exc.message}", file=sys.stderr)
        return 2
    out = args.out or f"svcbot-supplier-{supplier.id}-{month}.pdf"
    if not out.lower().endswith((".pdf", ".html", ".htm")):
        print(f"svcbot: {out}: write a .pdf or an .html file", file=sys.stderr)
        return 2
    from bot import supplier_export
    from bot.runtime import Runtime
    from handlers.reporting import supplier_charts
    runtime = Runtime(config)
    try:
        with runtime.ctx.reader() as session:
            card = scorecard.scorecard(runtime.ctx, session, supplier.id, month)
        print(supplier_export.write(card, supplier_charts.charts(card), out))
    except OSError as exc:
        print(f"svcbot: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    finally:
        runtime.engine.dispose()
    return 0


def _report(config, args) -> int:
    from datetime import datetime, timezone

    from handlers.core.context import UserError
    from handlers.reporting import report_figures
    try:  # every word is checked before the database is touched
        scope = report_figures.resolve_scope(config, args.service)
        month = report_figures.resolve_month(args.month, datetime.now(timezone.utc), config.bot.timezone)
    except UserError as exc:
        print(f"svcbot: {exc.message}", file=sys.stderr)
        return 2
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        print(f"svcbot: {args.output} is not a folder; nothing written", file=sys.stderr)
        return 2
    from bot import report_export
    from bot.runtime import Runtime
    from handlers.reporting import charts
    runtime = Runtime(config)
    try:
        data = report_figures.report_data(runtime.ctx, scope, month)
        paths = report_export.write(data, charts.charts(data), args.output)
    except OSError as exc:
        print(f"svcbot: cannot write the report into {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    finally:
        runtime.engine.dispose()
    for path in paths:
        print(path)
    return 0


def _import_servicenow(config, args) -> int:
    service = config.service(args.service)
    if service is None:
        known = ", ".join(s.id for s in config.services)
        print(f"svcbot: no service '{args.service}' in {_config_path(args)} (services: {known}); nothing imported",
              file=sys.stderr)
        return 2
    if not os.path.isfile(args.file) or not os.access(args.file, os.R_OK):
        print(f"svcbot: cannot read {args.file}; nothing imported", file=sys.stderr)
        return 2
    if args.limit is not None and args.limit < 0:
        print("svcbot: --limit counts incidents; give 0 or more", file=sys.stderr)
        return 2
    import time

    from bot.runtime import Runtime
    from handlers.core.context import UserError
    from handlers.imports.servicenow import import_servicenow
    runtime = Runtime(config)
    started = time.perf_counter()
    try:
        result = import_servicenow(runtime.ctx, args.file, service.id, args.timezone, args.limit)
    except UserError as exc:
        print(f"svcbot: {exc.message.rstrip('.')}; nothing imported", file=sys.stderr)  # all is checked first
        return 2
    finally:
        runtime.engine.dispose()
    print(f"imported {args.file} into {service.id} in {time.perf_counter() - started:.1f} s")
    for line in result.lines():
        print(line)
    return 0


def _import_rabobank_changes(config, args) -> int:
    if not os.path.isfile(args.file) or not os.access(args.file, os.R_OK):
        print(f"svcbot: cannot read {args.file}; nothing imported", file=sys.stderr)
        return 2
    import time

    from bot.runtime import Runtime
    from handlers.core.context import UserError
    from handlers.imports.rabobank import import_rabobank_changes
    runtime = Runtime(config)
    started = time.perf_counter()
    try:
        result = import_rabobank_changes(runtime.ctx, args.file, args.service_map, args.timezone)
    except UserError as exc:
        print(f"svcbot: {exc.message.rstrip('.')}; nothing imported", file=sys.stderr)  # all is checked first
        return 2
    finally:
        runtime.engine.dispose()
    print(f"imported {args.file} in {time.perf_counter() - started:.1f} s")
    for line in result.lines():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
