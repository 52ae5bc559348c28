"""The customer_import DAG run through Airflow (dag.test): green for an import, red for a rejection."""

from __future__ import annotations

import json
import os
import time

import psycopg
import pytest

from tests.conftest import DATA

pytestmark = [pytest.mark.dag, pytest.mark.integration]


@pytest.fixture
def run_dag(airflow_ready, embedded_url, tmp_path, monkeypatch, schema):
    """Import a tests/data file through the DAG; returns (DagRun state, import_runs row, connection)."""
    from customer_import.local.dag_runs import run_dag
    from customer_import.storage.folders import Folders, drop_into_landing

    monkeypatch.setenv("CUSTOMER_IMPORT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CUSTOMER_IMPORT_SCHEMA", schema)
    conn = psycopg.connect(embedded_url, autocommit=True)

    def _run(name: str, **params):
        landed = drop_into_landing(DATA / name, Folders(tmp_path / "data"))
        dag_run = run_dag("customer_import", {"file": landed, **params}, tmp_path / "airflow.log")
        cur = conn.execute(f'SELECT * FROM "{schema}".import_runs WHERE airflow_run_id = %s', [dag_run.run_id])
        row = dict(zip([c.name for c in cur.description], cur.fetchone(), strict=True))
        return str(dag_run.state), row

    yield _run
    conn.close()


@pytest.fixture
def database_url(embedded_url):
    return embedded_url  # the DAG tests run on the embedded server only


def stored(schema, url):
    with psycopg.connect(url) as conn:
        return conn.execute(f'SELECT account_reference_id, name, phone FROM "{schema}".customers ORDER BY 1').fetchall()


def test_a_valid_file_makes_a_green_run(run_dag, schema, embedded_url, tmp_path):
    state, run = run_dag("valid_customers.csv")

    assert state == "success"
    assert (run["status"], run["inserted"], run["dag_id"]) == ("succeeded", 3, "customer_import")
    assert [key for key, *_ in stored(schema, embedded_url)] == ["007", "1E5", "abc-Lower"]
    assert (tmp_path / "data" / run["report_dir"] / "errors.csv").exists()
    assert (tmp_path / "data" / run["file_path"]).parent.parent.name == "archive"


def test_a_rejected_file_makes_a_red_run_and_changes_nothing(run_dag, schema, embedded_url, tmp_path):
    state, run = run_dag("one_bad_email.csv")

    assert state == "failed"
    assert run["status"] == "rejected"
    assert stored(schema, embedded_url) == []
    assert (tmp_path / "data" / "rejected" / str(run["id"]) / "one_bad_email.csv").exists()
    summary = json.loads((tmp_path / "data" / run["report_dir"] / "summary.json").read_text())
    assert [(i["line"], i["column"], i["code"]) for i in summary["issues"]] == [(3, "ContactEmail", "invalid_email")]


def test_a_header_subset_updates_only_its_columns(run_dag, schema, embedded_url):
    run_dag("valid_customers.csv")
    before = stored(schema, embedded_url)

    state, run = run_dag("update_phone_only.csv")

    assert (state, run["status"], run["updated"]) == ("success", "succeeded", 2)
    after = stored(schema, embedded_url)
    assert [(k, n) for k, n, _ in after] == [(k, n) for k, n, _ in before]
    assert [p for _, _, p in after] == ["+1 555 000 1111", "+1 555 000 2222", None]


def test_a_file_rejected_as_a_whole_is_red_with_its_reason(run_dag, tmp_path):
    state, run = run_dag("windows1252.csv")

    assert (state, run["status"], run["file_rejected"]) == ("failed", "rejected", True)
    summary = json.loads((tmp_path / "data" / run["report_dir"] / "summary.json").read_text())
    assert "Windows-1252" in summary["issues"][0]["message"]


def test_the_run_note_of_a_file_rejected_as_a_whole_quotes_nothing_of_it(run_dag):
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    state, run = run_dag("no_header_row.csv")  # its reason quotes the first line: `C-1,Acme Ltd,,acme@example.com`

    assert (state, run["status"]) == ("failed", "rejected") and "acme@example.com" in run["message"]
    with create_session() as session:
        note = session.scalars(select(DagRun).where(DagRun.run_id == run["airflow_run_id"])).one().note
    assert (
        note.startswith("Rejected for its data")
        and "The whole file was rejected: the reason is on the run's page" in note
    )
    assert not any(cell in note for cell in ("C-1", "Acme", "acme@example.com"))


def asset_events(airflow_run_id: str) -> list[dict]:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        events = session.scalars(select(AssetEvent).where(AssetEvent.source_run_id == airflow_run_id)).all()
        return [dict(e.extra) for e in events]


def test_changed_customers_emit_an_asset_event_with_the_counts(run_dag):
    state, run = run_dag("valid_customers.csv")
    assert asset_events(run["airflow_run_id"]) == [
        {"import_run_id": run["id"], "inserted": 3, "updated": 0, "reactivated": 0, "deactivated": 0}
    ]

    state, rejected = run_dag("one_bad_email.csv")
    assert state == "failed" and asset_events(rejected["airflow_run_id"]) == []


def test_a_full_snapshot_through_the_dag_deactivates_and_announces_it(run_dag, schema, embedded_url, tmp_path):
    run_dag("valid_customers.csv")
    one_left = tmp_path / "complete.csv"
    one_left.write_text("AccountReferenceID,Name\n007,Bond Ltd\n")

    state, refused = run_dag(str(one_left), snapshot="full")
    assert (state, refused["status"], refused["deactivation_refused"]) == ("failed", "rejected", 2)

    state, run = run_dag(str(one_left), snapshot="full", allow_mass_deactivation=True)
    assert (state, run["status"], run["updated"], run["deactivated"]) == ("success", "succeeded", 1, 2)
    assert asset_events(run["airflow_run_id"])[0] | {"import_run_id": 0} == {
        "import_run_id": 0,
        "inserted": 0,
        "updated": 1,
        "reactivated": 0,
        "deactivated": 2,
    }
    with psycopg.connect(embedded_url) as conn:
        active = conn.execute(f'SELECT account_reference_id, active FROM "{schema}".customers ORDER BY 1').fetchall()
    assert active == [("007", True), ("1E5", False), ("abc-Lower", False)]


def test_the_housekeeping_dag_removes_the_files_of_old_runs(run_dag, schema, embedded_url, tmp_path, caplog):
    from customer_import.local.dag_runs import run_dag as run_any_dag

    _, run = run_dag("valid_customers.csv")
    with psycopg.connect(embedded_url, autocommit=True) as conn:
        conn.execute(f"UPDATE \"{schema}\".import_runs SET finished_at = now() - interval '91 days'")
    caplog.set_level("INFO")

    housekeeping = run_any_dag("customer_import_housekeeping", {}, tmp_path / "housekeeping.log")

    assert str(housekeeping.state) == "success"
    assert not (tmp_path / "data" / run["file_path"]).exists()
    assert not (tmp_path / "data" / run["report_dir"]).exists()
    assert "Removed the files and reports of 1 import run (4 files, " in caplog.text
    again = run_any_dag("customer_import_housekeeping", {}, tmp_path / "housekeeping.log")
    assert str(again.state) == "success" and "Nothing had expired" in caplog.text


def test_the_rollback_dag_undoes_an_import(run_dag, schema, embedded_url, tmp_path):
    from customer_import.local.dag_runs import run_dag as run_any_dag

    _, run = run_dag("valid_customers.csv")
    rollback = run_any_dag("customer_import_rollback", {"import_run_id": run["id"]}, tmp_path / "rollback.log")

    assert str(rollback.state) == "success"
    assert stored(schema, embedded_url) == []
    with psycopg.connect(embedded_url) as conn:
        status, message = conn.execute(
            f'SELECT status, message FROM "{schema}".import_runs WHERE id = %s', [run["id"]]
        ).fetchone()
    assert status == "rolled_back" and "3 customers removed" in message
    assert asset_events(rollback.run_id) == [
        {"rolled_back_run": run["id"], "removed": 3, "restored": 0, "conflicts": 0}
    ]
    again = run_any_dag("customer_import_rollback", {"import_run_id": run["id"]}, tmp_path / "rollback.log")
    assert str(again.state) == "failed"  # a run is rolled back once
    # issue 33, point 12: each rollback's note says what became of the import run, and links it
    link = f"[Open import run {run['id']}](/plugin/customer-imports/customer-import/runs/{run['id']})"
    assert note_of(rollback.run_id).startswith(f"Rolled back import run {run['id']} (valid_customers.csv) · {link}")
    assert note_of(again.run_id).startswith(f"Import run {run['id']} (valid_customers.csv) was not rolled back")


def note_of(airflow_run_id: str) -> str:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return session.scalars(select(DagRun).where(DagRun.run_id == airflow_run_id)).one().note


def test_the_watch_hands_each_settled_file_to_one_import_run(airflow_ready, tmp_path, monkeypatch):
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    from customer_import.local.dag_runs import run_dag
    from customer_import.storage.folders import Folders

    monkeypatch.setenv("CUSTOMER_IMPORT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CUSTOMER_IMPORT_SETTLED_SECONDS", "5")
    folders = Folders(tmp_path / "data").create()
    for n, name in enumerate(["first.csv", "second.csv", "still-writing.csv"]):
        (folders.landing / name).write_text((DATA / "valid_customers.csv").read_text())
        then = time.time() - (100 - n * 10 if name != "still-writing.csv" else 0)
        os.utime(folders.landing / name, (then, then))
    expected = {f"file__{folders.arrival_id(n)}": n for n in ["first.csv", "second.csv"]}

    for _ in range(2):  # a second pass hands nothing over twice
        assert str(run_dag("customer_import_watch", {}, tmp_path / "watch.log").state) == "success"

    with create_session() as session:  # queued runs start in run_after order: the files' arrival order
        runs = (
            session.query(DagRun)
            .filter(DagRun.dag_id == "customer_import", DagRun.run_id.in_(list(expected)))
            .order_by(DagRun.run_after)
            .all()
        )
        assert [(r.run_id, r.conf) for r in runs] == [(rid, {"file": n}) for rid, n in expected.items()]
        assert runs[0].run_after < runs[1].run_after


def test_an_unreachable_database_fails_the_run_in_plain_words_and_keeps_the_file(
    airflow_ready, tmp_path, monkeypatch, capsys
):
    from customer_import.local.dag_runs import run_dag
    from customer_import.storage.folders import Folders, drop_into_landing

    monkeypatch.setenv("CUSTOMER_IMPORT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("AIRFLOW_CONN_CUSTOMER_DB", "postgresql://postgres@127.0.0.1:9/nowhere?connect_timeout=2")
    monkeypatch.setenv("CUSTOMER_IMPORT_TASK_RETRIES", "0")  # read when the DAG file is loaded
    landed = drop_into_landing(DATA / "valid_customers.csv", Folders(tmp_path / "data"))

    dag_run = run_dag("customer_import", {"file": landed}, tmp_path / "airflow.log")

    assert str(dag_run.state) == "failed"
    task_log = capsys.readouterr().out + (tmp_path / "airflow.log").read_text()  # pytest takes sys.stdout
    assert "The customer database (Airflow connection customer_db) cannot be reached" in task_log
    assert (tmp_path / "data" / "landing" / "valid_customers.csv").exists()


def test_the_encoding_param_declares_the_files_codec(run_dag, schema, embedded_url):
    state, run = run_dag("windows1252_declared.csv", encoding="windows-1252")

    assert (state, run["status"], run["encoding"]) == ("success", "succeeded", "cp1252")
    assert stored(schema, embedded_url) == [("W-1", "Café Müller", None)]


def test_a_named_file_that_is_not_waiting_fails_the_run_at_once(airflow_ready, tmp_path, monkeypatch, schema):
    """Before: the sensor waited 15 minutes for it while every other import queued behind the run."""
    from customer_import.local.dag_runs import run_dag

    monkeypatch.setenv("CUSTOMER_IMPORT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CUSTOMER_IMPORT_SCHEMA", schema)
    started = time.monotonic()

    dag_run = run_dag("customer_import", {"file": "nope.csv"}, tmp_path / "airflow.log")

    assert str(dag_run.state) == "failed"
    assert time.monotonic() - started < 120  # not the sensor's 15-minute timeout
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    assert states["wait_for_file"] == "failed"
    assert states["publish_report"] == "upstream_failed"  # no import run: nothing to report, nothing retried
    # the message it fails with: test_merge_semantics.py::test_a_cleared_rejected_run_imports_the_fixed_file
