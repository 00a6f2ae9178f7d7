"""The real `svcbot` command line, run as a subprocess exactly as an operator runs it."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, select, text

from storage.db import FULL_TEXT_TABLES, MIGRATIONS
from storage.models import AuditRecord, Base, OutboxMessage, ServiceStatus
from tests.conftest import ROOT, demo_config, free_port, run_cli

TIMEOUT = 60  # a safety net against a hung process, not a measurement


def env_for(database_url: str, config: Path | str, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SVCBOT_", "SLACK_", "MICROSOFT_")) and k != "PORT"}
    env.update(SVCBOT_DATABASE_URL=database_url, SVCBOT_CONFIG=str(config), PYTHONPATH=str(ROOT), **extra)
    return env


def svcbot(env: dict, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return run_cli(env, *args, stdin=stdin, timeout=TIMEOUT)


@pytest.fixture
def cli(database_url, config_file):
    env = env_for(database_url, config_file)
    return lambda *args, stdin=None: svcbot(env, *args, stdin=stdin)


def no_traceback(result: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in result.stdout and "Traceback" not in result.stderr, result.stderr


def rows(database_url: str, model) -> list:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(model)).all()
    finally:
        engine.dispose()


def broken_config(tmp_path: Path) -> tuple[Path, list[str]]:
    cfg = demo_config()
    cfg["services"][2]["calendar"] = "uk"
    cfg["services"][0]["owner"] = "nobody"
    cfg["agreements"][2]["underpins"] = "SLA-NOPE"
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path, ["services[2].calendar: unknown calendar 'uk'",
                  "services[0].owner: unknown person 'nobody'",
                  "agreements[2].underpins: unknown SLA 'SLA-NOPE'"]


def assert_refused(result: subprocess.CompletedProcess, path: Path, problems: list[str]) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == f"svcbot: {path} is not valid; nothing started:"
    assert sorted(lines[1:1 + len(problems)]) == sorted(f"  {p}" for p in problems)
    assert "OK" not in result.stdout
    no_traceback(result)


# ---------------------------------------------------------------------------------------------- check-config

def test_check_config_accepts_the_demo(cli, config_file):
    result = cli("check-config")
    cfg = demo_config()
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"{config_file}: OK — {len(cfg['services'])} services, {len(cfg['agreements'])} agreements, "
        f"{len(cfg['calendars'])} calendars, {len(cfg['people'])} people")
    no_traceback(result)


def test_check_config_accepts_the_shipped_app_yaml_by_flag(database_url, tmp_path):
    # --config wins over $SVCBOT_CONFIG, which here names a file that does not exist
    env = env_for(database_url, tmp_path / "absent.yaml")
    result = svcbot(env, "--config", "app.yaml", "check-config")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("app.yaml: OK — ")


def test_global_options_mean_the_same_after_the_sub_command(database_url, config_file, tmp_path):
    env = env_for(database_url, tmp_path / "absent.yaml")  # only --config can find the file
    after = svcbot(env, "check-config", "--config", str(config_file))
    assert after.returncode == 0, after.stderr
    assert after.stdout.startswith(f"{config_file}: OK — ")
    # given twice, the one after the sub-command wins, as the nearer word does
    both = svcbot(env, "--config", str(tmp_path / "other.yaml"), "check-config", "--config", str(config_file))
    assert both.returncode == 0, both.stderr
    console = svcbot(env, "console", "--config", str(config_file), "--as", "meera", "-c", "status")
    assert console.returncode == 0, console.stderr
    assert console.stdout.startswith("svc> status\nAll services operational\n")
    no_traceback(console)


def _sub_commands(parser, path=()):
    """Every sub-command of the parser, however deep (import servicenow), with the words that name it."""
    import argparse
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from _sub_commands(sub, (*path, name))


def test_every_sub_command_help_has_a_description_and_an_example():
    from bot.cli import build_parser
    found = list(_sub_commands(build_parser()))
    assert len(found) > 10
    for words, parser in found:
        text = parser.format_help()
        assert parser.description and parser.description in text, words
        assert parser.epilog.startswith(("example:\n", "examples:\n")) and parser.epilog in text, words
        assert f"svcbot {' '.join(words)} " in parser.epilog, words  # an example of this very command


def test_a_sub_command_help_shows_its_example_as_written(cli):
    result = cli("check-config", "--help")
    assert result.returncode == 0, result.stderr
    assert "Validate the configuration and list every problem." in result.stdout
    assert "example:\n  svcbot check-config --config staging.yaml\n" in result.stdout


def test_check_config_lists_every_problem_by_path_and_exits_2(database_url, tmp_path):
    path, problems = broken_config(tmp_path)
    assert_refused(svcbot(env_for(database_url, path), "check-config"), path, problems)


def test_check_config_reports_invalid_yaml_with_line_and_column(database_url, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("bot:\n  name: svcbot\n services: []\n")
    result = svcbot(env_for(database_url, path), "check-config")
    assert result.returncode == 2
    [problem] = result.stderr.splitlines()[1:]
    assert problem.startswith("  line 3, column 2: not valid YAML: ")
    no_traceback(result)


def test_check_config_reports_a_missing_file(database_url, tmp_path):
    path = tmp_path / "absent.yaml"
    assert_refused(svcbot(env_for(database_url, path), "check-config"), path,
                   ["(file): cannot read: No such file or directory"])


# ---------------------------------------------------------------------------------------------- run

def test_run_with_a_broken_config_starts_nothing(tmp_path):
    path, problems = broken_config(tmp_path)
    db_dir = tmp_path / "store"
    db_dir.mkdir()
    port = free_port()
    env = env_for(f"sqlite:///{db_dir / 'svcbot.db'}", path, PORT=str(port))
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "run"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    listened = False
    try:
        while proc.poll() is None:  # for as long as it lives, nothing answers on its port
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    listened = True
                    break
            except OSError:
                time.sleep(0.02)
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    result = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert not listened, "svcbot run opened its port with a broken configuration"
    assert_refused(result, path, problems)
    assert "listening" not in stderr
    assert list(db_dir.iterdir()) == [], "svcbot run touched the database with a broken configuration"


# ---------------------------------------------------------------------------------------------- db upgrade

def schema(database_url: str) -> tuple[set[str], list]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() \
                if "alembic_version" in tables else []
        return tables, versions
    finally:
        engine.dispose()


@pytest.mark.empty_store
def test_db_upgrade_creates_the_schema_and_is_idempotent(cli, database_url):
    assert schema(database_url)[0] == set()
    first = cli("db", "upgrade")
    assert first.returncode == 0, first.stderr
    assert "up to date" in first.stdout
    head = ScriptDirectory.from_config(_alembic_cfg()).get_current_head()
    tables, versions = schema(database_url)
    assert tables - FULL_TEXT_TABLES == set(Base.metadata.tables) | {"alembic_version"}
    assert versions == [head]

    # something written between the two runs survives the second one
    set_status = cli("console", "--as", "tom", "-c", "service set payments degraded kept")
    assert set_status.returncode == 0, set_status.stderr
    second = cli("db", "upgrade")
    assert second.returncode == 0, second.stderr
    assert schema(database_url) == (tables, versions)
    assert [(r.service_id, r.state, r.message) for r in rows(database_url, ServiceStatus)] == [
        ("payments", "degraded", "kept")]
    no_traceback(second)


def _alembic_cfg():
    from alembic.config import Config
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


# ---------------------------------------------------------------------------------------------- console

def service_line(stdout: str, name: str) -> str:
    matches = [line for line in stdout.splitlines() if name in line]
    assert len(matches) == 1, f"{name!r} in {stdout!r}"
    return matches[0]


def test_console_status_shows_every_service(cli):
    result = cli("console", "-c", "status")
    assert result.returncode == 0, result.stderr
    for svc in demo_config()["services"]:
        line = service_line(result.stdout, svc["name"])
        assert svc["id"] in line and f"tier {svc['tier']}" in line and "operational" in line
    no_traceback(result)


def test_console_refuses_a_status_change_to_someone_not_allowed(cli, database_url):
    cfg = demo_config()
    payments = next(s for s in cfg["services"] if s["id"] == "payments")
    owner = next(p for p in cfg["people"] if p["id"] == payments["owner"])
    result = cli("console", "--as", "meera", "-c", "service set payments major-outage everything is down",
                 "-c", "status")
    assert result.returncode == 0, result.stderr
    refusal, status = result.stdout.split("\n\n")[:2]
    assert "Not allowed" in refusal and owner["name"] in refusal
    assert "queued" not in result.stdout
    assert "operational" in service_line(status, payments["name"])
    assert rows(database_url, ServiceStatus) == []
    assert rows(database_url, OutboxMessage) == []
    assert [r for r in rows(database_url, AuditRecord) if r.action == "service.set"] == []
    no_traceback(result)


def test_console_owner_sets_status_and_sees_what_was_queued(cli, database_url):
    cfg = demo_config()
    payments = next(s for s in cfg["services"] if s["id"] == "payments")
    channel = cfg["channels"][payments["channel"]]
    result = cli("console", "--as", payments["owner"],
                 "-c", 'service set payments degraded "Card payments are slow"', "-c", "status")
    assert result.returncode == 0, result.stderr
    queued = [line for line in result.stdout.splitlines() if "→ queued" in line]
    expected = [f"  → queued a post for {platform.title()} #{channel[platform]}: "
                for platform in ("slack", "teams") if channel.get(platform)]
    assert len(queued) == len(expected) == 2
    for line, prefix in zip(queued, expected):
        assert line.startswith(prefix) and payments["name"] in line and "degraded" in line
    # the status that follows shows the change, and queued nothing more
    after = result.stdout.split("\n\n", 1)[1]
    assert "degraded" in service_line(after, payments["name"])
    assert "Card payments are slow" in service_line(after, payments["name"])
    [status] = rows(database_url, ServiceStatus)
    assert (status.service_id, status.state, status.updated_by) == ("payments", "degraded", payments["owner"])
    outbox = rows(database_url, OutboxMessage)
    assert sorted((r.platform, r.target) for r in outbox) == sorted(
        (p, channel[p]) for p in ("slack", "teams") if channel.get(p))
    assert [(a.person_id, a.platform) for a in rows(database_url, AuditRecord) if a.action == "service.set"] == [
        (payments["owner"], "console")]
    no_traceback(result)


def test_console_reads_commands_from_piped_stdin(cli, database_url):
    stdin = "status\n\n   \nservice set payments degraded via stdin\nquit\nservice set webshop major-outage\n"
    result = cli("console", "--as", "tom", stdin=stdin)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("All services operational") == 1
    assert "Payments Gateway is now degraded" in result.stdout
    # no prompts when nobody is typing: only the commands, each echoed before its answer
    assert [line for line in result.stdout.splitlines() if "svc> " in line] == [
        "svc> status", "svc> service set payments degraded via stdin", "svc> quit"]
    # nothing after 'quit' ran
    assert [(r.service_id, r.state) for r in rows(database_url, ServiceStatus)] == [("payments", "degraded")]
    no_traceback(result)


def test_console_with_an_unknown_person_exits_2(cli):
    result = cli("console", "--as", "nobody", "-c", "status")
    assert result.returncode == 2
    assert "no person 'nobody' in " in result.stderr and result.stderr.strip().endswith("app.yaml")
    assert "All services" not in result.stdout
    no_traceback(result)


def test_console_explains_malformed_commands_without_a_traceback(cli, database_url):
    bad = ['service set payments "Card payments are slow', "frobnicate now", "service set payments purple",
           "service set nowhere degraded", "status payments webshop", "service", "help wombats"]
    args = [a for command in bad for a in ("-c", command)]
    result = cli("console", "--as", "tom", *args)
    no_traceback(result)
    blocks = [block for block in result.stdout.strip().split("\n\n") if block.strip()]
    assert [block.split("\n", 1)[0] for block in blocks] == [f"svc> {command}" for command in bad]
    answers = [block.split("\n", 1)[1] for block in blocks]
    assert len(answers) == len(bad), result.stdout
    for command, answer in zip(bad, answers):
        assert answer.startswith("That didn't work"), (command, answer)
        assert "(Try: " in answer, (command, answer)
    assert "A quote is not closed." in answers[0]
    assert "'frobnicate'" in answers[1]
    assert "'purple' is not a state" in answers[2]
    assert "no service 'nowhere'" in answers[3]
    assert rows(database_url, ServiceStatus) == []
    assert rows(database_url, OutboxMessage) == []
