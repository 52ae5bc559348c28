"""The data folders on object storage (CUSTOMER_IMPORT_DATA_URL): a real S3 server (moto's, on
127.0.0.1) holds landing/, processing/, archive/, rejected/ and reports/; each "worker" keeps only
a passing copy of a run's files in its own local folder."""

from __future__ import annotations

import json
import threading
from dataclasses import replace

import psycopg
import pytest

from customer_import.contract.options import ImportOptions
from customer_import.database import db, runs
from customer_import.pipeline import Importer
from customer_import.storage.folders import drop_into_landing
from customer_import.storage.store import object_root
from tests.conftest import DATA

pytestmark = pytest.mark.integration


def worker(importer: Importer, url: str, name: str) -> Importer:
    """The importer of one worker: the shared store at `url`, a local folder of its own."""
    local = importer.settings.data_dir.parent / name
    return Importer(settings=replace(importer.settings, data_dir=local, data_url=url))


def stored(url: str) -> set[str]:
    """Every object under the data URL, relative to it."""
    root = object_root(url)
    return {key.removeprefix(root.path + "/") for key in root.fs.find(root.path, refresh=True)}


def local_files(importer: Importer) -> set[str]:
    local = importer.settings.data_dir
    return {str(p.relative_to(local)) for p in local.rglob("*") if p.is_file()} if local.exists() else set()


def test_a_file_on_s3_is_imported_and_kept_there_with_its_reports(conn, importer, s3_url):
    one = worker(importer, s3_url, "worker-1")
    name = drop_into_landing(DATA / "valid_customers.csv", one.folders)
    assert stored(s3_url) == {"landing/valid_customers.csv"}

    run = one.import_file(conn, name)

    assert (run.status, run.inserted, run.file_path) == ("succeeded", 3, f"archive/{run.id}/valid_customers.csv")
    reports = {f"reports/{run.id}/{report}" for report in ("errors.csv", "summary.json", "report.html")}
    assert stored(s3_url) == {run.file_path, *reports}  # landing/ and processing/ empty
    assert local_files(one) == set(), "the worker keeps no copy once the run is published"
    summary = json.loads((object_root(s3_url) / run.report_dir / "summary.json").read_text())
    assert summary["import_run"]["inserted"] == 3
    kept = (object_root(s3_url) / run.file_path).read_bytes()
    assert kept == (DATA / "valid_customers.csv").read_bytes()


def test_a_rejected_file_on_s3_rests_in_rejected_with_its_errors(conn, importer, s3_url):
    one = worker(importer, s3_url, "worker-1")
    run = one.import_file(conn, drop_into_landing(DATA / "one_bad_email.csv", one.folders))

    assert run.status == "rejected"
    assert {f"rejected/{run.id}/one_bad_email.csv", f"rejected/{run.id}/one_bad_email.errors.csv"} <= stored(s3_url)
    errors = (object_root(s3_url) / f"rejected/{run.id}/one_bad_email.errors.csv").read_text()
    assert "contact_email" in errors.splitlines()[0] or "ContactEmail" in errors.splitlines()[0]


def test_the_issues_of_a_rejected_run_on_s3_reach_the_task_log(conn, importer, s3_url):
    """The task that rejects a file lists its first issues in its log (`Importer.issues`), read from
    the store: the step that wrote them kept no copy."""
    one = worker(importer, s3_url, "worker-1")
    name = drop_into_landing(DATA / "one_bad_email.csv", one.folders)
    run_id = one.claim_file(conn, name, ImportOptions(), "customer_import", "manual__rejected")
    assert one.validate_file(conn, run_id).status == "rejected"
    assert local_files(one) == set()

    assert [(issue.line, issue.code) for issue in one.issues(run_id)] == [(3, "invalid_email")]
    assert local_files(one) == set()


def test_steps_on_two_workers_share_the_run_through_the_store(conn, importer, s3_url):
    """Each step on another machine, as the CeleryExecutor places them: what one step leaves in
    processing/ reaches the next through the store, never through a shared local folder."""
    one, two = worker(importer, s3_url, "worker-1"), worker(importer, s3_url, "worker-2")
    name = drop_into_landing(DATA / "valid_customers.csv", one.folders)
    run_id = one.claim_file(conn, name, ImportOptions(), "customer_import", "manual__two_workers")
    two.validate_file(conn, run_id)
    one.load_staging(conn, run_id)
    two.merge_customers(conn, run_id)
    run = one.publish_report(conn, run_id)

    assert (run.status, run.rows_total, run.inserted) == ("succeeded", 3, 3)
    assert db.scalar(conn, "SELECT count(*) FROM customers") == 3
    assert local_files(one) == local_files(two) == set()
    assert not any(key.startswith(("processing/", "landing/")) for key in stored(s3_url))


def test_two_runs_after_one_file_on_s3_only_one_takes_it(database_url, schema, importer, s3_url):
    """Copy-then-delete is no atomic rename: the claim holds a lock per file, so of two runs started
    for one file at once, one takes it and the other is told it is gone."""
    one = worker(importer, s3_url, "worker-1")
    name = drop_into_landing(DATA / "valid_customers.csv", one.folders)
    with psycopg.connect(database_url) as conn:
        db.migrate(db.use_schema(conn, schema), one.contract, schema)
    outcomes: dict[str, object] = {}

    def claim(airflow_run_id: str) -> None:
        with psycopg.connect(database_url) as conn:
            db.use_schema(conn, schema)
            try:
                outcomes[airflow_run_id] = one.claim_file(
                    conn, name, ImportOptions(), "customer_import", airflow_run_id
                )
            except FileNotFoundError as gone:
                outcomes[airflow_run_id] = gone

    threads = [threading.Thread(target=claim, args=(f"manual__{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    taken = [run_id for run_id in outcomes.values() if isinstance(run_id, int)]
    refused = [error for error in outcomes.values() if isinstance(error, FileNotFoundError)]
    assert len(taken) == 1 and len(refused) == 1, outcomes
    assert str(refused[0]) == f"valid_customers.csv is not in {s3_url}/landing"
    assert stored(s3_url) == {f"processing/{taken[0]}/valid_customers.csv"}


def test_a_claim_that_stopped_after_its_copy_finds_the_copy(conn, importer, s3_url):
    """A crash between the copy and the delete leaves both (never neither); a crash after the delete
    but before the claim was recorded leaves only the copy in processing/: the run, cleared and run
    again, takes that copy and imports it once."""
    one = worker(importer, s3_url, "worker-1")
    name = drop_into_landing(DATA / "valid_customers.csv", one.folders)
    db.migrate(conn, one.contract, one.settings.schema)
    run = runs.create_run(conn, name, ImportOptions(), "customer_import", "manual__crashed", "default")
    root = object_root(s3_url)
    (root / "landing" / name).copy(root / f"processing/{run.id}/{name}")  # what the claim did before it stopped
    (root / "landing" / name).unlink()

    assert one.claim_file(conn, name, ImportOptions(), "customer_import", "manual__crashed") == run.id
    for step in (one.validate_file, one.load_staging, one.merge_customers, one.publish_report):
        step(conn, run.id)

    assert runs.get_run(conn, run.id).status == "succeeded"
    assert db.scalar(conn, "SELECT count(*) FROM customers") == 3
    assert stored(s3_url) >= {f"archive/{run.id}/{name}"}
