"""The Rabobank change import (handlers/imports/rabobank.py).

Most tests import a few hand-written rows in the real layout of ``Detail Change.csv`` (``;``-separated, CRLF,
Latin-1, times ``d-m-yyyy H:MM``), each row a variation on the file's first one, C00000003. One imports the
real BPI Challenge 2014 file (shared/data/bpic2014-rabobank, read in place: never copied into the repository)
and checks it against what the test works out from the CSV itself. Times are Amsterdam wall times unless a
test says otherwise: UTC+2 in summer (until 27 October 2013 03:00), UTC+1 in winter.
"""
from __future__ import annotations

import csv
import functools
import io
import os
import subprocess
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from handlers.core.context import UserError
from handlers.imports.rabobank import import_rabobank_changes
from storage.models import AuditRecord, Base, Change, ChangeService
from tests.conftest import ROOT, SHARED, run_cli

DATA = SHARED / "data" / "bpic2014-rabobank" / "detail_change.zip"
HEADER = ("CI Name (aff)", "CI Type (aff)", "CI Subtype (aff)", "Service Component WBS (aff)", "Change ID",
          "Change Type", "Risk Assessment", "Emergency Change", "CAB-approval needed", "Planned Start", "Planned End",
          "Scheduled Downtime Start", "Scheduled Downtime End", "Actual Start", "Actual End", "Requested End Date",
          "Change record Open Time", "Change record Close Time", "Originated from", "# Related Interactions",
          "# Related Incidents")
# The real file's first row, by column.
C00000003 = dict(zip(HEADER, (
    "HMD000002", "hardware", "MigratieDummy", "WBS000195", "C00000003", "Release Type 11", "Minor Change", "N", "N",
    "30-8-2012 7:00", "26-12-2013 0:00", "", "", "18-12-2013 14:00", "18-12-2013 16:15", "1-6-2012 0:00",
    "1-9-2011 9:13", "18-12-2013 16:16", "Problem", "", "")))


def _letters(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


COLUMN = {_letters(c): c for c in HEADER}  # CI_Name_aff → "CI Name (aff)", related_incidents → "# Related Incidents"


def row(**values: str) -> dict:
    """C00000003's row with some columns changed, each named by its letters: ``Change_ID="C1"``."""
    out = dict(C00000003)
    for key, value in values.items():
        out[COLUMN[_letters(key)]] = value
    return out


def write(path: Path, *rows: dict, header=HEADER) -> Path:
    """Rows as the export writes them: ``;``, CRLF, Latin-1."""
    lines = [";".join(header)] + [";".join(r.get(c, "") for c in header) for r in rows]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("latin-1"))
    return path


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def change(ctx, external_id: str) -> Change | None:
    with ctx.sessions() as s:
        return s.scalar(select(Change).where(Change.source == "rabobank", Change.external_id == external_id))


def services(ctx, external_id: str) -> list[tuple[str, datetime, datetime]]:
    with ctx.sessions() as s:
        return [tuple(r) for r in s.execute(
            select(ChangeService.service_id, ChangeService.planned_start, ChangeService.planned_end)
            .join(Change, Change.id == ChangeService.change_id).where(Change.external_id == external_id)
            .order_by(ChangeService.service_id))]


def count(ctx, model) -> int:
    with ctx.sessions() as s:
        return s.scalar(select(func.count()).select_from(model))


def snapshot(ctx) -> dict[str, list[tuple]]:
    """Every row of every table, in primary-key order."""
    with ctx.sessions() as s:
        return {t.name: [tuple(r) for r in s.execute(select(t).order_by(*t.primary_key.columns))]
                for t in Base.metadata.sorted_tables}


# ------------------------------------------------------------------------------------------- the mapping

def test_a_row_mapped_field_by_field(ctx, tmp_path):
    result = import_rabobank_changes(ctx, write(tmp_path / "one.csv", row()))
    assert (result.changes_created, result.changes_updated, result.changes_unchanged) == (1, 0, 0)
    assert (result.rows_read, result.rows_skipped, result.skip_reasons, result.changes_skipped) == (1, 0, {}, 0)
    c = change(ctx, "C00000003")
    assert c.title == "Release Type 11 on HMD000002"
    assert c.description == ("Rabobank change C00000003 (Release Type 11), originated from Problem.\n"
                             "Risk assessment: Minor Change; CAB approval needed: no; emergency change: no.\n"
                             "Affected CI: HMD000002 (hardware / MigratieDummy), service component WBS000195.")
    assert (c.kind, c.model, c.risk, c.impact, c.approvals_needed) == ("normal", None, "low", "low", 0)
    # 30 August 2012 is summer time (UTC+2); 26 December 2013 winter time (UTC+1).
    assert (c.planned_start, c.planned_end) == (utc(2012, 8, 30, 5, 0), utc(2013, 12, 25, 23, 0))
    assert (c.actual_start, c.actual_end) == (utc(2013, 12, 18, 13, 0), utc(2013, 12, 18, 15, 15))
    assert (c.state, c.outcome) == ("closed", "successful")
    assert (c.created_at, c.updated_at, c.closed_at) == (utc(2011, 9, 1, 7, 13), utc(2013, 12, 18, 15, 16),
                                                         utc(2013, 12, 18, 15, 16))
    assert (c.requester, c.implementer, c.implementation_plan, c.backout_plan, c.test_plan) == (None, None, "", "", "")
    assert (c.revision, c.prompts_sent, c.announcements, c.due_at, c.override) == (0, [], [], None, None)
    assert services(ctx, "C00000003") == [("wbs000195", c.planned_start, c.planned_end)]


def test_kind_and_approvals(ctx, tmp_path):
    path = write(tmp_path / "kinds.csv",
                 row(Change_ID="C1", Change_Type="Standard Change Type 93"),
                 row(Change_ID="C2", Change_Type="Standard Activity Type 09", CAB_approval_needed="Y"),
                 row(Change_ID="C3", Change_Type="Release Type 11", CAB_approval_needed="Y"),
                 row(Change_ID="C4", Change_Type="Master Change Type 01"),
                 row(Change_ID="C5", Change_Type="Standard Change Type 93", Emergency_Change="Y"),
                 row(Change_ID="C6", Change_Type="Release Type 11", Emergency_Change="Y", CAB_approval_needed="Y"),
                 row(Change_ID="C7", Change_Type="#N/B"))
    import_rabobank_changes(ctx, path)
    got = {cid: (change(ctx, cid).kind, change(ctx, cid).approvals_needed) for cid in
           ("C1", "C2", "C3", "C4", "C5", "C6", "C7")}
    assert got == {"C1": ("standard", 0), "C2": ("standard", 1), "C3": ("normal", 1), "C4": ("normal", 0),
                   "C5": ("emergency", 1), "C6": ("emergency", 1), "C7": ("normal", 0)}


def test_risk_and_impact(ctx, tmp_path):
    path = write(tmp_path / "risk.csv",
                 row(Change_ID="C1", Risk_Assessment="Minor Change"),
                 row(Change_ID="C2", Risk_Assessment="Business Change"),
                 row(Change_ID="C3", Risk_Assessment="Major Business Change"),
                 row(Change_ID="C4", Risk_Assessment="Huge Change"),
                 row(Change_ID="C5", Risk_Assessment="#N/B"))
    result = import_rabobank_changes(ctx, path)
    assert [(change(ctx, c).risk, change(ctx, c).impact) for c in ("C1", "C2", "C3")] == [
        ("low", "low"), ("medium", "medium"), ("high", "high")]
    assert result.skip_reasons == {"unknown Risk Assessment 'Huge Change'": 1, "no Risk Assessment": 1}
    assert (result.changes_created, result.rows_skipped, result.changes_skipped) == (3, 2, 2)
    assert change(ctx, "C4") is None and change(ctx, "C5") is None


def test_the_planned_window_falls_back_to_downtime_then_actual_times(ctx, tmp_path):
    path = write(
        tmp_path / "windows.csv",
        # Planned window as it is.
        row(Change_ID="C1", Planned_Start="4-3-2014 9:00", Planned_End="4-3-2014 18:00"),
        # A planned window of no length (1,837 rows of the real file): the scheduled downtime.
        row(Change_ID="C2", Planned_Start="4-3-2014 9:00", Planned_End="4-3-2014 9:00",
            Scheduled_Downtime_Start="5-3-2014 22:00", Scheduled_Downtime_End="6-3-2014 2:00"),
        # No planned end and no downtime: the actual times.
        row(Change_ID="C3", Planned_Start="4-3-2014 9:00", Planned_End="#N/B",
            Actual_Start="4-3-2014 17:52", Actual_End="4-3-2014 18:10"),
        # Planned end before its start, downtime backwards too: the actual times.
        row(Change_ID="C4", Planned_Start="4-3-2014 9:00", Planned_End="3-3-2014 9:00",
            Scheduled_Downtime_Start="5-3-2014 2:00", Scheduled_Downtime_End="5-3-2014 1:00",
            Actual_Start="4-3-2014 10:00", Actual_End="4-3-2014 11:00"),
        # Nothing usable: skipped.
        row(Change_ID="C5", Planned_Start="4-3-2014 9:00", Planned_End="4-3-2014 9:00",
            Actual_Start="4-3-2014 17:52", Actual_End="4-3-2014 17:52"),
        row(Change_ID="C6", Planned_End="", Actual_Start="", Actual_End=""))
    result = import_rabobank_changes(ctx, path)
    windows = {cid: (change(ctx, cid).planned_start, change(ctx, cid).planned_end) for cid in ("C1", "C2", "C3", "C4")}
    assert windows == {"C1": (utc(2014, 3, 4, 8, 0), utc(2014, 3, 4, 17, 0)),
                       "C2": (utc(2014, 3, 5, 21, 0), utc(2014, 3, 6, 1, 0)),
                       "C3": (utc(2014, 3, 4, 16, 52), utc(2014, 3, 4, 17, 10)),
                       "C4": (utc(2014, 3, 4, 9, 0), utc(2014, 3, 4, 10, 0))}
    assert services(ctx, "C2") == [("wbs000195", utc(2014, 3, 5, 21, 0), utc(2014, 3, 6, 1, 0))]
    assert result.skip_reasons == {"no planned window": 2}
    assert (result.changes_created, result.changes_skipped, result.rows_read) == (4, 2, 6)


def test_state_and_outcome(ctx, tmp_path):
    # The tests' now is 2 March 2026 09:00 UTC.
    path = write(
        tmp_path / "states.csv",
        row(Change_ID="C1"),  # carried out, no incidents
        row(Change_ID="C2", related_incidents="2"),  # carried out, two incidents recorded against it
        row(Change_ID="C3", Actual_Start="", Actual_End="#N/B"),  # closed, never carried out
        row(Change_ID="C4", Actual_End=""),  # closed, started, its end not recorded
        row(Change_ID="C5", Planned_Start="1-6-2026 20:00", Planned_End="1-6-2026 22:00", Actual_Start="",
            Actual_End="", Change_record_Close_Time=""),  # still to come
        row(Change_ID="C6", Actual_End="", Change_record_Close_Time=""),  # started, not ended nor closed
        row(Change_ID="C7", Actual_Start="", Actual_End="", Change_record_Close_Time="#N/B"),  # past, never started
        row(Change_ID="C8", Change_record_Close_Time=""))  # carried out, record not closed
    import_rabobank_changes(ctx, path)
    got = {cid: (change(ctx, cid).state, change(ctx, cid).outcome, change(ctx, cid).closed_at,
                 change(ctx, cid).updated_at) for cid in ("C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8")}
    closed, opened = utc(2013, 12, 18, 15, 16), utc(2011, 9, 1, 7, 13)
    assert got == {"C1": ("closed", "successful", closed, closed),
                   "C2": ("closed", "with-issues", closed, closed),
                   "C3": ("cancelled", None, closed, closed),
                   "C4": ("closed", None, closed, closed),
                   "C5": ("scheduled", None, None, opened),
                   "C6": ("in-progress", None, None, opened),
                   "C7": ("scheduled", None, None, opened),
                   "C8": ("closed", "successful", utc(2013, 12, 18, 15, 15), opened)}
    assert "Related incidents: 2." in change(ctx, "C2").description


def test_times_at_the_summer_time_changes(ctx, tmp_path):
    """27-10-2013 2:00 happened twice in Amsterdam (summer time ended at 03:00 CEST): the first is taken.
    31-3-2013 2:30 never happened (clocks went from 02:00 to 03:00): read with the offset before, UTC+1."""
    path = write(
        tmp_path / "dst.csv",
        # C00003411's real planned window: 27-10-2013 2:00 – 6:00.
        row(Change_ID="C00003411", Planned_Start="27-10-2013 2:00", Planned_End="27-10-2013 6:00"),
        row(Change_ID="C2", Planned_Start="27-10-2013 2:30", Planned_End="27-10-2013 3:00"),
        row(Change_ID="C3", Planned_Start="31-3-2013 1:59", Planned_End="31-3-2013 2:30",
            Actual_Start="31-3-2013 2:00", Actual_End="31-3-2013 3:00"))
    result = import_rabobank_changes(ctx, path)
    assert result.changes_created == 3 and result.rows_skipped == 0
    c1, c2, c3 = (change(ctx, c) for c in ("C00003411", "C2", "C3"))
    assert (c1.planned_start, c1.planned_end) == (utc(2013, 10, 27, 0, 0), utc(2013, 10, 27, 5, 0))
    assert (c2.planned_start, c2.planned_end) == (utc(2013, 10, 27, 0, 30), utc(2013, 10, 27, 2, 0))
    assert (c3.planned_start, c3.planned_end) == (utc(2013, 3, 31, 0, 59), utc(2013, 3, 31, 1, 30))
    assert (c3.actual_start, c3.actual_end) == (utc(2013, 3, 31, 1, 0), utc(2013, 3, 31, 1, 0))


def test_another_timezone(ctx, tmp_path):
    import_rabobank_changes(ctx, write(tmp_path / "one.csv", row()), timezone="UTC")
    c = change(ctx, "C00000003")
    assert (c.planned_start, c.created_at) == (utc(2012, 8, 30, 7, 0), utc(2011, 9, 1, 9, 13))
    with pytest.raises(UserError, match="'Mars/Olympus' is not an IANA time zone"):
        import_rabobank_changes(ctx, write(tmp_path / "one.csv", row()), timezone="Mars/Olympus")


def test_missing_values_and_latin_1(ctx, tmp_path):
    path = write(tmp_path / "gaps.csv",
                 row(Change_ID="C1", CI_Name_aff="#N/B", CI_Type_aff="#MULTIVALUE", CI_Subtype_aff="",
                     Service_Component_WBS_aff="#N/B", Change_Type="#N/B", Originated_from="#N/B",
                     related_incidents="#N/B"),
                 row(Change_ID="C2", CI_Name_aff="Caf\u00e9Server", CI_Subtype_aff="Ger\u00e4t"))
    result = import_rabobank_changes(ctx, path)
    assert result.changes_created == 2 and result.rows_skipped == 0
    c1 = change(ctx, "C1")
    assert c1.title == "Change"
    assert c1.description == ("Rabobank change C1 (no change type), originated from an unrecorded source.\n"
                              "Risk assessment: Minor Change; CAB approval needed: no; emergency change: no.\n"
                              "Affected CI: unnamed CI, no service component.")
    assert (c1.state, c1.outcome) == ("closed", "successful")
    assert services(ctx, "C1") == []
    c2 = change(ctx, "C2")
    assert c2.title == "Release Type 11 on Caf\u00e9Server"
    assert "Caf\u00e9Server (hardware / Ger\u00e4t)" in c2.description


def test_rows_it_cannot_use_are_counted_with_the_reason(ctx, tmp_path):
    path = write(tmp_path / "damaged.csv",
                 row(Change_ID="C1"),
                 row(Change_ID=""),
                 row(Change_ID="C3", Change_record_Open_Time="#N/B"),
                 row(Change_ID="C4", Actual_Start="18/12/2013 14:00"),
                 row(Change_ID="C5", Planned_Start="31-2-2013 10:00"))
    with path.open("ab") as f:
        f.write(b"HMD000002;hardware;C6;too few columns\r\n\r\n")
    result = import_rabobank_changes(ctx, path)
    assert result.skip_reasons == {"no Change ID": 1, "no Change record Open Time": 1,
                                   "unreadable Actual Start": 1, "unreadable Planned Start": 1,
                                   "wrong number of columns": 1}
    assert (result.rows_read, result.rows_skipped, result.changes_created) == (6, 5, 1)
    assert result.changes_skipped == 3  # C3, C4, C5: known by id, none of their rows usable
    assert count(ctx, Change) == 1


def test_one_change_on_several_rows(ctx, tmp_path):
    """One row per CI: C00000008's two real rows (two CIs, one service component), plus a third CI on another
    one; and C00005906, whose rows come from two records: the later closure (14-1-2014) wins."""
    c8 = dict(Change_ID="C00000008", Change_Type="Standard Change Type 93", Planned_Start="21-10-2013 9:00",
              Planned_End="25-10-2013 18:00", Actual_Start="24-10-2013 0:00", Actual_End="25-10-2013 23:00",
              Change_record_Open_Time="30-11-2011 14:59", Change_record_Close_Time="27-10-2013 14:52")
    c5906 = dict(Change_ID="C00005906", CI_Name_aff="SSW000377", Change_Type="Standard Change Type 80",
                 Planned_Start="9-12-2013 9:00", Planned_End="10-12-2013 17:00", Actual_Start="10-12-2013 8:00",
                 Actual_End="10-12-2013 8:30", Change_record_Open_Time="6-12-2013 10:00")
    path = write(tmp_path / "several.csv",
                 row(CI_Name_aff="ASW000010", CI_Type_aff="software", CI_Subtype_aff="Automation Software",
                     Service_Component_WBS_aff="WBS000284", **c8),
                 row(CI_Name_aff="STA000026", CI_Type_aff="application", CI_Subtype_aff="Standard Application",
                     Service_Component_WBS_aff="WBS000284", **c8),
                 row(CI_Name_aff="STA000026", CI_Type_aff="application", CI_Subtype_aff="Standard Application",
                     Service_Component_WBS_aff="WBS000284", **c8),  # the real file repeats a row twice
                 row(CI_Name_aff="DBR00114", CI_Type_aff="database", CI_Subtype_aff="Oracle",
                     Service_Component_WBS_aff="WBS000102", **c8),
                 row(Risk_Assessment="Business Change", Change_record_Close_Time="10-12-2013 8:42", **c5906),
                 row(Risk_Assessment="Minor Change", Change_record_Close_Time="14-1-2014 15:30", **c5906),
                 row(Risk_Assessment="Major Business Change", Change_record_Close_Time="9-1-2014 8:00", **c5906))
    result = import_rabobank_changes(ctx, path)
    assert (result.rows_read, result.changes_created) == (7, 2)
    c = change(ctx, "C00000008")
    assert c.title == "Standard Change Type 93 on ASW000010 and 2 other CIs"
    assert c.description.splitlines()[2:] == [
        "Affected CIs (3):",
        "- ASW000010 (software / Automation Software), service component WBS000284",
        "- STA000026 (application / Standard Application), service component WBS000284",
        "- DBR00114 (database / Oracle), service component WBS000102"]
    window = (utc(2013, 10, 21, 7, 0), utc(2013, 10, 25, 16, 0))
    assert services(ctx, "C00000008") == [("wbs000102", *window), ("wbs000284", *window)]
    assert (c.kind, c.state, c.closed_at) == ("standard", "closed", utc(2013, 10, 27, 13, 52))
    c = change(ctx, "C00005906")
    assert (c.risk, c.closed_at) == ("low", utc(2014, 1, 14, 14, 30))


def test_a_service_map(ctx, tmp_path):
    path = write(tmp_path / "mapped.csv",
                 row(Change_ID="C1", Service_Component_WBS_aff="WBS000195"),
                 row(Change_ID="C2", Service_Component_WBS_aff="WBS000284"),
                 row(Change_ID="C3", Service_Component_WBS_aff="WBS000102"))
    services_csv = tmp_path / "services.csv"
    services_csv.write_text("wbs,service\nWBS000195,payments\nwbs000284,Web Shop\n\n")
    result = import_rabobank_changes(ctx, path, service_map=services_csv)
    assert result.changes_created == 3
    assert [s for s, *_ in services(ctx, "C1")] == ["payments"]
    assert [s for s, *_ in services(ctx, "C2")] == ["webshop"]  # named by its name in app.yaml
    assert [s for s, *_ in services(ctx, "C3")] == ["wbs000102"]  # not in the map: its own code
    # The same file without the map: the services move back to their codes.
    again = import_rabobank_changes(ctx, path)
    assert (again.changes_updated, again.changes_unchanged) == (2, 1)
    assert [s for s, *_ in services(ctx, "C1")] == ["wbs000195"]


def test_a_service_map_it_cannot_use(ctx, tmp_path):
    path = write(tmp_path / "one.csv", row())
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("code,name\nWBS000195,payments\n")
    with pytest.raises(UserError, match="needs the columns wbs and service"):
        import_rabobank_changes(ctx, path, service_map=wrong)
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("wbs,service\nWBS000195,payments\nWBS000284,nowhere\nWBS000195,email\n")
    with pytest.raises(UserError) as err:
        import_rabobank_changes(ctx, path, service_map=unknown)
    assert "line 3: no service 'nowhere'" in err.value.message
    assert "line 4: wbs000195 is mapped to payments already" in err.value.message
    with pytest.raises(UserError, match="Cannot read the service map"):
        import_rabobank_changes(ctx, path, service_map=tmp_path / "absent.csv")
    assert count(ctx, Change) == count(ctx, AuditRecord) == 0


def test_a_file_of_another_kind_is_refused(ctx, tmp_path):
    short = [c for c in HEADER if c not in ("Risk Assessment", "Actual End")]
    with pytest.raises(UserError) as err:
        import_rabobank_changes(ctx, write(tmp_path / "short.csv", row(), header=short))
    assert err.value.message == (f"{tmp_path / 'short.csv'} is not a Rabobank change export (Detail Change.csv): "
                                 "no column 'Risk Assessment', 'Actual End'.")
    commas = tmp_path / "commas.csv"
    commas.write_text(",".join(HEADER) + "\n" + ",".join(row().values()) + "\n")
    with pytest.raises(UserError, match="no column 'CI Name \\(aff\\)', 'CI Type \\(aff\\)'"):
        import_rabobank_changes(ctx, commas)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(UserError, match="is empty"):
        import_rabobank_changes(ctx, empty)
    with pytest.raises(UserError, match="Cannot read"):
        import_rabobank_changes(ctx, tmp_path / "absent.csv")
    not_zip = tmp_path / "changes.zip"
    not_zip.write_text("not a zip")
    with pytest.raises(UserError, match="Cannot read"):
        import_rabobank_changes(ctx, not_zip)
    assert count(ctx, Change) == count(ctx, ChangeService) == count(ctx, AuditRecord) == 0


def test_a_zip_holding_the_csv(ctx, tmp_path):
    csv_path = write(tmp_path / "Detail Change.csv", row(Change_ID="C1"), row(Change_ID="C2"))
    archive = tmp_path / "detail_change.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(csv_path, "Detail Change.csv")
    assert import_rabobank_changes(ctx, archive).changes_created == 2
    two = tmp_path / "two.zip"
    with zipfile.ZipFile(two, "w") as z:
        z.write(csv_path, "a.csv")
        z.write(csv_path, "b.csv")
    with pytest.raises(UserError, match="holds 2 .csv files"):
        import_rabobank_changes(ctx, two)


# --------------------------------------------------------------------------------------- importing again

def test_importing_again_changes_nothing(ctx, tmp_path, clock):
    path = write(tmp_path / "changes.csv", row(Change_ID="C1"), row(Change_ID="C2", Actual_End=""),
                 row(Change_ID="C3", Planned_Start="1-6-2026 20:00", Planned_End="1-6-2026 22:00",
                     Change_record_Close_Time="", Actual_Start="", Actual_End=""))
    first = import_rabobank_changes(ctx, path)
    assert (first.changes_created, first.changes_unchanged) == (3, 0)
    before = snapshot(ctx)
    clock.advance(hours=1)
    again = import_rabobank_changes(ctx, path)
    assert (again.changes_created, again.changes_updated, again.changes_unchanged) == (0, 0, 3)
    assert snapshot(ctx) == before  # not a row touched, no audit record either


def test_a_changed_row_updates_its_change_and_keeps_what_svcbot_added(ctx, tmp_path):
    path = write(tmp_path / "changes.csv", row(Change_ID="C1"), row(Change_ID="C2"))
    import_rabobank_changes(ctx, path)
    with ctx.sessions.begin() as s:  # someone named an implementer in svcbot meanwhile
        s.get(Change, change(ctx, "C1").id).implementer = "tom"
    later = write(tmp_path / "later.csv",
                  row(Change_ID="C1", Planned_End="27-12-2013 0:00", Service_Component_WBS_aff="WBS000284"),
                  row(Change_ID="C2"))
    result = import_rabobank_changes(ctx, later)
    assert (result.changes_created, result.changes_updated, result.changes_unchanged) == (0, 1, 1)
    c = change(ctx, "C1")
    assert (c.planned_end, c.implementer, c.revision) == (utc(2013, 12, 26, 23, 0), "tom", 1)
    assert services(ctx, "C1") == [("wbs000284", utc(2012, 8, 30, 5, 0), utc(2013, 12, 26, 23, 0))]
    assert change(ctx, "C2").revision == 0
    assert count(ctx, Change) == 2 and count(ctx, ChangeService) == 2


def test_one_audit_record_per_run_with_its_counts(ctx, tmp_path):
    path = write(tmp_path / "changes.csv", *(row(Change_ID=f"C{i}") for i in range(7)),
                 row(Change_ID="C9", Planned_End="", Actual_End=""))
    import_rabobank_changes(ctx, path, batch=3)  # three transactions; the audit goes with the last one
    with ctx.sessions() as s:
        audits = s.scalars(select(AuditRecord)).all()
    assert [(a.action, a.subject, a.person_id, a.platform) for a in audits] == [
        ("import.rabobank", "rabobank:changes.csv", "rabobank-import", "import")]
    assert audits[0].detail == {"zone": "Europe/Amsterdam", "created": 7, "updated": 0, "unchanged": 0,
                                "changes_skipped": 1, "rows": 8, "rows_skipped": 1,
                                "skip_reasons": {"no planned window": 1}, "service_map": None}
    assert count(ctx, Change) == 7


# ------------------------------------------------------------------------------------------- the real file

@functools.lru_cache(maxsize=1)
def real_rows() -> tuple[dict, ...]:
    with zipfile.ZipFile(DATA) as z, z.open("Detail Change.csv") as raw:
        return tuple(csv.DictReader(io.TextIOWrapper(raw, encoding="latin-1", newline=""), delimiter=";"))


def has_window(r: dict) -> bool:
    """The documented fallback, worked out independently of the importer (wall times suffice to compare)."""
    def t(text):
        return datetime.strptime(text, "%d-%m-%Y %H:%M") if text else None
    for start, end in (("Planned Start", "Planned End"), ("Scheduled Downtime Start", "Scheduled Downtime End"),
                       ("Actual Start", "Actual End")):
        if t(r[start]) and t(r[end]) and t(r[end]) > t(r[start]):
            return True
    return False


@pytest.mark.skipif(not DATA.exists(), reason=f"{DATA} is not there")
def test_the_real_file(ctx):
    rows = real_rows()
    assert tuple(rows[0]) == HEADER and rows[0] == C00000003  # the snippets above are in the real layout
    usable = [r for r in rows if has_window(r)]
    ids = {r["Change ID"] for r in rows}
    imported = {r["Change ID"] for r in usable}
    assert len(rows) == 30275 and len(ids) == 18000  # one row per affected CI

    result = import_rabobank_changes(ctx, DATA)
    assert result.rows_read == len(rows)
    assert result.skip_reasons == {"no planned window": len(rows) - len(usable)}
    assert result.rows_skipped == len(rows) - len(usable) > 0
    assert result.changes_created == len(imported) == count(ctx, Change)
    assert result.changes_skipped == len(ids - imported)
    assert (result.changes_updated, result.changes_unchanged) == (0, 0)
    assert count(ctx, ChangeService) == len({(r["Change ID"], r["Service Component WBS (aff)"]) for r in usable})

    c = change(ctx, "C00000003")
    assert (c.title, c.kind, c.risk, c.impact, c.approvals_needed, c.state, c.outcome) == (
        "Release Type 11 on HMD000002", "normal", "low", "low", 0, "closed", "successful")
    assert (c.planned_start, c.planned_end, c.actual_start, c.actual_end, c.created_at, c.closed_at) == (
        utc(2012, 8, 30, 5, 0), utc(2013, 12, 25, 23, 0), utc(2013, 12, 18, 13, 0), utc(2013, 12, 18, 15, 15),
        utc(2011, 9, 1, 7, 13), utc(2013, 12, 18, 15, 16))
    assert services(ctx, "C00000003") == [("wbs000195", utc(2012, 8, 30, 5, 0), utc(2013, 12, 25, 23, 0))]
    # C00000005: a CAB-approved Business Change carried out in 18 minutes on 4 March 2014.
    c = change(ctx, "C00000005")
    assert (c.title, c.risk, c.approvals_needed, c.planned_start, c.planned_end) == (
        "Release Type 13 on SUB000494", "medium", 1, utc(2014, 3, 4, 8, 0), utc(2014, 3, 4, 17, 0))
    # C00000007: a standard change closed without actual times.
    c = change(ctx, "C00000007")
    assert (c.kind, c.state, c.outcome, c.closed_at) == ("standard", "cancelled", None, utc(2013, 10, 10, 8, 16))
    # C00003411 starts at 27-10-2013 2:00, the hour Amsterdam lived twice: its first occurrence.
    assert change(ctx, "C00003411").planned_start == utc(2013, 10, 27, 0, 0)
    # C00001707 touched 1,007 CIs of four service components.
    assert change(ctx, "C00001707").title == "Release Type 09 on DCE000072 and 1006 other CIs"
    assert [s for s, *_ in services(ctx, "C00001707")] == ["wbs000102", "wbs000232", "wbs000292", "wbs000299"]
    with ctx.sessions() as s:
        states = dict(s.execute(select(Change.state, func.count()).group_by(Change.state)).all())
        emergencies = s.scalar(select(func.count()).select_from(Change).where(Change.kind == "emergency"))
    assert set(states) == {"closed", "cancelled"}  # the file closes every change
    assert emergencies == len({r["Change ID"] for r in usable if r["Emergency Change"] == "Y"})

    before = snapshot(ctx)
    again = import_rabobank_changes(ctx, DATA)
    assert (again.changes_created, again.changes_updated, again.changes_unchanged) == (0, 0, len(imported))
    assert again.skip_reasons == result.skip_reasons
    assert snapshot(ctx) == before
    assert count(ctx, AuditRecord) == 1


# -------------------------------------------------------------------------------------------- the command

def svcbot(database_url: str, config: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SVCBOT_", "SLACK_", "MICROSOFT_"))}
    env.update(SVCBOT_DATABASE_URL=database_url, SVCBOT_CONFIG=str(config), PYTHONPATH=str(ROOT))
    return run_cli(env, *args)


def db_changes(database_url: str) -> list[tuple]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(select(Change.external_id, Change.planned_start)
                                                   .order_by(Change.external_id))]
    finally:
        engine.dispose()


def test_the_import_command(database_url, config_file, tmp_path):
    path = write(tmp_path / "changes.csv", row(Change_ID="C1"), row(Change_ID="C2"),
                 row(Change_ID="C3", Planned_End="", Actual_End=""))
    first = svcbot(database_url, config_file, "import", "rabobank-changes", str(path))
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith(f"imported {path} in ")
    assert first.stdout.splitlines()[1:] == ["changes created: 2", "changes updated: 0", "changes unchanged: 0",
                                             "changes skipped: 1", "rows read: 3", "rows skipped: 1",
                                             "  no planned window: 1"]
    services_csv = tmp_path / "services.csv"
    services_csv.write_text("wbs,service\nWBS000195,payments\n")
    again = svcbot(database_url, config_file, "import", "rabobank-changes", str(path), "--timezone", "UTC",
                   "--service-map", str(services_csv))
    assert again.returncode == 0, again.stderr
    assert "changes updated: 2\n" in again.stdout
    assert db_changes(database_url) == [("C1", utc(2012, 8, 30, 7, 0)), ("C2", utc(2012, 8, 30, 7, 0))]


def test_the_import_command_refuses_what_it_cannot_use(database_url, config_file, tmp_path):
    short = write(tmp_path / "short.csv", row(), header=[c for c in HEADER if c != "Change ID"])
    wrong = svcbot(database_url, config_file, "import", "rabobank-changes", str(short))
    assert wrong.returncode == 2
    assert wrong.stderr.strip().endswith("no column 'Change ID'; nothing imported")
    assert "Traceback" not in wrong.stderr
    missing = svcbot(database_url, config_file, "import", "rabobank-changes", str(tmp_path / "nope.zip"))
    assert missing.returncode == 2 and f"cannot read {tmp_path / 'nope.zip'}" in missing.stderr
    zone = svcbot(database_url, config_file, "import", "rabobank-changes", str(write(tmp_path / "ok.csv", row())),
                  "--timezone", "Amsterdam")
    assert zone.returncode == 2 and "'Amsterdam' is not an IANA time zone" in zone.stderr
    assert "Traceback" not in missing.stderr + zone.stderr
    assert db_changes(database_url) == []
