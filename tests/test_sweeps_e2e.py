"""Where `svcbot run` sweeps (bot/sweeps.py): in a process of its own by default, which ends with the server
however the server ends, and whose death stops the server, failing, for its supervisor to start both
again; with `delivery.sweeps_in: thread`, in the server's own threads. Either way a sweep's messages go out."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from storage.models import OutboxMessage
from tests.conftest import db_rows, wait_until
from tests.test_changes_slack_e2e import slash
from tests.test_surveys_slack_e2e import SANNE, TOM, survey_dms, text_of, with_quick_ticket_survey

pytestmark = pytest.mark.e2e


def children(pid: int) -> list[int]:
    """The processes whose parent is pid, as the kernel lists them."""
    return [int(c) for c in (Path("/proc") / str(pid) / "task" / str(pid) / "children").read_text().split()]


def ended(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def attempts_counted(server, outcome: str) -> float:
    """svcbot_outbox_attempts_total for Slack and this outcome, as the server's /metrics says."""
    text = requests.get(server.url + "/metrics", timeout=5).text
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == "svcbot_outbox_attempts_total" and s.labels == {"platform": "slack", "outcome": outcome})


def surveyed_through(server, fake_slack) -> None:
    """A resolved ticket's survey is a sweep's message: it reaches the requester."""
    assert "INC-1 opened" in text_of(slash(server, fake_slack, "incident new payments P3 Reader is slow", SANNE).json())
    assert "INC-1 resolved" in text_of(slash(server, fake_slack, "incident resolve INC-1 Replaced", TOM).json())
    wait_until(lambda: survey_dms(fake_slack, SANNE), "the survey a sweep sends", timeout=20)


def niceness(pid: int) -> int:
    return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[16])


def test_the_sweeper_is_a_process_of_its_own_and_ends_when_the_server_is_killed(start_server, fake_slack,
                                                                                   config_file, database_url):
    cfg = with_quick_ticket_survey(config_file)
    cfg["delivery"]["sweeper_niceness"] = 3
    config_file.write_text(yaml.safe_dump(cfg, sort_keys=False))
    server = start_server()
    [sweeper] = wait_until(lambda: children(server.proc.pid), "the sweeper process")
    assert niceness(sweeper) == niceness(server.proc.pid) + 3
    surveyed_through(server, fake_slack)
    # The survey was queued and sent by the sweeper, the commands' answers by the server: /metrics counts both.
    def sent() -> int:
        return len([r for r in db_rows(database_url, OutboxMessage) if r.platform == "slack" and r.status == "sent"])
    wait_until(lambda: attempts_counted(server, "sent") == sent() > 0, "every delivery counted in /metrics")
    server.kill()
    wait_until(lambda: ended(sweeper), "the sweeper to end with its server", timeout=5)


def test_a_server_whose_sweeper_died_stops_and_says_why(start_server):
    server = start_server()
    [sweeper] = wait_until(lambda: children(server.proc.pid), "the sweeper process")
    os.kill(sweeper, signal.SIGKILL)
    assert server.proc.wait(20) == 1
    assert "the sweeper process ended (exit status -9): svcbot stops" in server.log()


def test_sweeps_in_the_servers_threads(start_server, fake_slack, config_file):
    cfg = with_quick_ticket_survey(config_file)
    cfg["delivery"]["sweeps_in"] = "thread"
    config_file.write_text(yaml.safe_dump(cfg, sort_keys=False))
    server = start_server()
    surveyed_through(server, fake_slack)
    assert children(server.proc.pid) == []
    assert server.stop() == 0
