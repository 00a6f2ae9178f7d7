"""The svcbot command line."""
from __future__ import annotations

import argparse
import logging
import os
import sys

from handlers.config import ConfigError, load_config


def _config_path(args) -> str:
    return getattr(args, "config", None) or os.environ.get("SVCBOT_CONFIG") or "app.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="svcbot", description="IT service operations in Slack and Teams")
    parser.add_argument("--config", help="configuration file (default $SVCBOT_CONFIG or app.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="the server and the scheduler")
    run.add_argument("--port", type=int, default=int(os.environ.get("PORT", "3000")))
    console = sub.add_parser("console", help="chat in a terminal, no credentials")
    console.add_argument("--as", dest="person", help="a person id from app.yaml (default: first service manager)")
    console.add_argument("-c", dest="commands", action="append", help="run this command and leave (repeatable)")
    sub.add_parser("check-config", help="validate the configuration and list every problem")
    manifest = sub.add_parser("manifest", help="an app manifest for this configuration")
    manifest.add_argument("platform", choices=["slack", "teams"])
    manifest.add_argument("--url", help="public base URL of this server, e.g. https://svcbot.example.com")
    manifest.add_argument("--socket-mode", action="store_true", help="Slack: for Socket Mode (no public URL)")
    manifest.add_argument("--app-id", help="Teams: the Azure Bot's app id (default $MICROSOFT_APP_ID)")
    manifest.add_argument("--output", default="svcbot-teams.zip", help="Teams: where to write the package")
    db = sub.add_parser("db", help="database maintenance")
    db.add_argument("action", choices=["upgrade"])
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

    if args.command == "check-config":
        print(f"{_config_path(args)}: OK — {len(config.services)} services, {len(config.agreements)} agreements, "
              f"{len(config.calendars)} calendars, {len(config.people)} people")
        return 0

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

    from bot.runtime import Runtime
    if args.command == "db":
        from storage.db import database_url, make_engine, upgrade
        upgrade(make_engine())
        print(f"database at {database_url().split('@')[-1]} is up to date")
        return 0
    if args.command == "console" and args.person and config.person(args.person) is None:
        print(f"svcbot: no person '{args.person}' in {_config_path(args)}", file=sys.stderr)
        return 2
    runtime = Runtime(config)
    if args.command == "console":
        from bot.console import run_console
        try:
            return run_console(runtime, args.person, args.commands)
        except LookupError as exc:
            print(f"svcbot: {exc}", file=sys.stderr)
            return 2
    from bot.server import serve
    serve(runtime, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
