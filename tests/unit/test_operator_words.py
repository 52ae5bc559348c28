"""What an on-call engineer reads (issue 33): the notes' first line and link, progress that does not
guess once it knows, the field guide, the task log of a run `make import` ran, compact times."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from customer_import.contract.fields import load_contract
from customer_import.links import imported_elsewhere_note, in_airflow, rollback_note, run_note
from customer_import.local.dag_runs import structured_log
from customer_import.sources.guide import HEADINGS, field_guide, guide_csv
from customer_import.sources.profiles import SOURCES_PATH, load_sources
from tests.unit.test_decide import RUN

pytestmark = pytest.mark.unit
NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def test_a_link_opens_the_run_inside_airflows_shell_under_any_base_path():
    assert in_airflow("runs/5") == "/plugin/customer-imports/customer-import/runs/5"
    assert in_airflow("runs/5", "http://127.0.0.1:8080") == "/plugin/customer-imports/customer-import/runs/5"
    assert (
        in_airflow("runs/5", "https://example.com/airflow/")
        == "/airflow/plugin/customer-imports/airflow/customer-import/runs/5"
    )


def test_a_notes_first_line_says_what_happened_and_whose_fault_and_links_the_run():
    rejected = replace(RUN, id=7, status="rejected", rows_total=8, rows_rejected=2, message="2 of 8 rows have issues.")
    note = run_note(rejected, "http://127.0.0.1:8080")
    first, rest = note.split("\n\n")
    assert first == (
        "Rejected for its data: 8 rows, 2 rejected (import run 7, f.csv)"
        " · [Open import run 7](/plugin/customer-imports/customer-import/runs/7)"
    )
    assert rest == "2 of 8 rows have issues."
    failed = replace(RUN, id=8, status="failed", rows_total=None, message=None)
    assert run_note(failed) == (
        "Failed on an infrastructure error (import run 8, f.csv)"
        " · [Open import run 8](/plugin/customer-imports/customer-import/runs/8)"
    )
    done = replace(RUN, id=9, status="succeeded", inserted=1, updated=2, unchanged=97)
    assert run_note(done).startswith(
        "Imported: 100 rows, 1 inserted, 2 updated, 97 unchanged (import run 9, f.csv) · ["
    )


def test_rollback_and_taken_file_notes_link_the_import_run():
    rolled = replace(RUN, id=3, status="rolled_back", message="Rolled back: 2 removed, 1 restored.")
    assert rollback_note(rolled, True) == (
        "Rolled back import run 3 (f.csv) · [Open import run 3](/plugin/customer-imports/customer-import/runs/3)"
        "\n\nRolled back: 2 removed, 1 restored."
    )
    assert rollback_note(rolled, False).startswith("Import run 3 (f.csv) was not rolled back: the log of roll_back_run")
    taken = replace(RUN, id=20, file_name="race5.csv")
    assert imported_elsewhere_note(taken) == (
        "Imported by import run 20: another Airflow run took race5.csv first"
        " · [Open import run 20](/plugin/customer-imports/customer-import/runs/20)"
    )


def _running(done: int, expected: int, started: float, counted: float):
    now = datetime.now(UTC)
    return replace(
        RUN,
        stage="validating",
        stage_started_at=now - timedelta(seconds=started),
        changed_at=now - timedelta(seconds=started - counted),
        rows_done=done,
        rows_expected=expected,
    )


def test_progress_estimates_only_while_part_of_the_file_is_unread():
    assert _running(200_000, 300_000, 70, 70).progress == (
        "Validating 200,000 of ~300,000 rows (66 %) · 1 min 10 s · about 35 s left"
    )
    # the whole file read (a 2-row file, say): its rows, no estimate, no time left
    assert _running(2, 2, 4, 4).progress == "Validating 2 rows · 4 s"


def test_the_time_left_counts_down_from_the_last_count_and_goes_when_the_count_stands_still():
    # counted at 20 s (a third done: 40 s to go); 10 s later, 30 s are left
    assert _running(100, 300, 30, 20).progress.endswith("· 30 s · about 30 s left")
    # counted at 20 s, then nothing for 60 s: no time left, rather than one that grows
    assert _running(100, 300, 80, 20).progress == "Validating 100 of ~300 rows (33 %) · 1 min 20 s"


def test_the_field_guide_describes_every_column_from_the_contract():
    contract = load_contract()
    rows = field_guide(contract)
    assert [r.column for r in rows] == list(contract.headers)
    key = rows[0]
    assert (key.required, key.example, key.blank, key.clear) == (
        "every row",
        "CRM-000123",
        "not allowed: every row needs one",
        "not allowed: it is required",
    )
    email = next(r for r in rows if r.field == "ContactEmail")
    assert "unique among customers" in email.limits and email.meaning
    assert next(r for r in rows if r.field == "Seats").limits == "0 or more; one line"
    assert next(r for r in rows if r.field == "Phone").clear == "clears the stored value"
    sheet = list(csv.reader(io.StringIO(guide_csv(contract).decode("utf-8-sig"))))
    assert tuple(sheet[0]) == HEADINGS and len(sheet) == len(contract.fields) + 1
    assert all(row[2] for row in sheet[1:])  # every field has a meaning


def test_a_crm_sources_guide_uses_its_export_column_names_and_formats():
    contract = load_contract()
    salesforce = load_sources(SOURCES_PATH, contract)["salesforce"]
    rows = {r.field: r for r in field_guide(contract, salesforce)}
    assert rows["AccountReferenceID"].column == "Account ID"
    assert rows["CustomerSince"].column == "Created Date"
    assert "%m/%d/%Y" in rows["CustomerSince"].format
    assert rows["CustomerSince"].example == "01/31/2024"  # the contract's 2024-01-31, as the export writes it
    hubspot = {r.field: r for r in field_guide(contract, load_sources(SOURCES_PATH, contract)["hubspot"])}
    assert (hubspot["IsReseller"].column, hubspot["IsReseller"].example) == ("Is Reseller", "No")
    assert rows["IsReseller"].column == "(not in the export: 'false' from sources.yaml)"


DAG_TEST_LINES = """\
2026-12-03T08:09:08.780314Z [error    ] line 3, ContactEmail: bad. [customer_import_dag] loc=customer_import_dag.py:344
2026-12-03T08:09:08.781877Z [error    ] Task failed with exception     [task] loc=task_runner.py:1639
Traceback (most recent call last):
  File "/venv/airflow/sdk/execution_time/task_runner.py", line 1579, in _run_task_and_map_outcome
    result = _execute_task(context=context, ti=ti, log=log)
  File "/repo/dags/customer_import_dag.py", line 348, in _fail_if_rejected
    raise AirflowFailException(f"{run.public_outcome} {_page_url(run.id)}")
airflow.sdk.exceptions.AirflowFailException: rejected: 3 rows, 1 rejected (import run 1, one_bad_email.csv).
2026-12-03T08:09:08.786576Z [info     ] ::group::Post Execute          [task] loc=task_runner.py:1640
"""


def test_a_make_import_runs_task_log_is_written_as_a_schedulers_worker_writes_it():
    records = structured_log(DAG_TEST_LINES.splitlines(keepends=True))
    assert [r["event"] for r in records] == [
        "line 3, ContactEmail: bad.",
        "Task failed with exception",
        "::group::Post Execute",
    ]
    assert records[0] == {
        "timestamp": "2026-12-03T08:09:08.780314Z",
        "level": "error",
        "event": "line 3, ContactEmail: bad.",
        "logger": "customer_import_dag",
        "loc": "customer_import_dag.py:344",
    }
    [raised] = records[1]["error_detail"]
    assert raised["exc_type"] == "AirflowFailException"
    assert raised["exc_value"].startswith("rejected: 3 rows")
    assert raised["frames"][-1] == {
        "filename": "/repo/dags/customer_import_dag.py",
        "lineno": 348,
        "name": "_fail_if_rejected",
    }
    assert all(json.dumps(r) for r in records)


def test_times_in_the_list_are_compact_with_the_full_time_on_hover():
    from customer_import.page.rendering import short_when

    assert short_when(NOW - timedelta(hours=1), NOW) == (
        '<time datetime="2026-12-03T08:00:00+00:00" title="2026-12-03 08:00:00 UTC">08:00</time>'
    )
    assert ">2 Dec 08:00<" in short_when(NOW - timedelta(days=1, hours=1), NOW)
    assert ">2025-12-02<" in short_when(NOW - timedelta(days=366), NOW)
    assert short_when(None, NOW) == ""


def test_what_a_message_quotes_is_code_in_html_and_quoted_in_a_spreadsheet_never_raw_backquotes():
    from customer_import.contract.issues import plain_quotes
    from customer_import.report import codes

    message = "`<b>x` is not a valid email address: write it as name@domain, e.g. `jane@example.com`."
    assert plain_quotes(message) == (
        "\u201c<b>x\u201d is not a valid email address: write it as name@domain, e.g. \u201cjane@example.com\u201d."
    )
    assert str(codes(message)).startswith("<code>&lt;b&gt;x</code> is not")
    assert "`" not in str(codes(message))


def test_a_value_repeated_in_thousands_of_rows_names_ten_other_lines_and_counts_the_rest():
    from customer_import.database.checks import _other_lines

    assert _other_lines([2, 4, 6], 4) == "2, 6"
    many = list(range(2, 5002))
    assert _other_lines(many, 3) == "2, 4, 5, 6, 7, 8, 9, 10, 11, 12 and 4,989 more"
    assert _other_lines(many, 4000) == "2, 3, 4, 5, 6, 7, 8, 9, 10, 11 and 4,989 more"
