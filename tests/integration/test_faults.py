"""SPEC §8: an import killed at any point leaves the database as before or fully imported, and
running it again (as clearing the Airflow run does) imports the file exactly once.

The import runs in a child process, which is SIGKILLed mid-COPY, mid-MERGE and mid-report; and
the PostgreSQL 15 service is crash-restarted between staging and merge.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import psycopg
import pytest

from customer_import.contract.generate import write_customers
from customer_import.database.runs import ImportOptions
from tests.conftest import PG15_URL, REPO, _reachable, wait_for

pytestmark = pytest.mark.integration
ROWS = 60_000
PG15_CLUSTER = os.environ.get("PG15_CLUSTER", "15")  # the version part of `pg_ctlcluster 15 main`
CHILD = """
import sys
from dataclasses import replace
from pathlib import Path
from customer_import.database import db
from customer_import.pipeline import Importer
from customer_import.database.runs import ImportOptions
from customer_import.settings import Settings

url, schema, data, name = sys.argv[1:5]
importer = Importer(settings=replace(Settings.from_env(), data_dir=Path(data), schema=schema))
with db.connect(url) as conn:
    run_id = importer.claim_file(conn, name, ImportOptions(), "customer_import", "manual__fault")
    for step in ("validate_file", "load_staging", "merge_customers", "publish_report"):
        print(step, flush=True)
        getattr(importer, step)(conn, run_id)
print("done", flush=True)
"""


@pytest.fixture
def database_url(embedded_url):
    return embedded_url  # a child process per phase: the embedded server is enough here


@pytest.fixture
def child(database_url, schema, importer):
    def start(name: str) -> subprocess.Popen:
        named = f"{database_url}{'&' if '?' in database_url else '?'}application_name={schema}"  # see active()
        return subprocess.Popen(
            [sys.executable, "-c", CHILD, named, schema, str(importer.settings.data_dir), name],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO / "include")},
        )

    return start


def active(conn, query_start: str, waiting: bool = False) -> bool:
    """The child of this test runs a statement with `query_start...` in it now (other tests, in parallel,
    have other names)."""
    schema = conn.execute("SELECT current_schema()").fetchone()[0]
    return bool(
        conn.execute(
            "SELECT 1 FROM pg_stat_activity WHERE state = 'active' AND query ~ %s AND application_name = %s"
            + (" AND wait_event_type = 'Lock'" if waiting else ""),
            ["^" + query_start, schema],
        ).fetchone()
    )


def finish(process: subprocess.Popen) -> None:
    out, _ = process.communicate(timeout=300)
    assert process.returncode == 0 and out.strip().endswith("done"), out


def run_state(conn) -> tuple:
    return conn.execute(
        "SELECT status, inserted, updated, merged_at IS NOT NULL, finished_at IS NOT NULL"
        " FROM import_runs WHERE airflow_run_id = 'manual__fault'"
    ).fetchone()


def customers(conn) -> list[tuple]:
    return conn.execute("SELECT account_reference_id, name, phone FROM customers ORDER BY 1").fetchall()


@pytest.fixture
def big_file(importer, land, tmp_path):
    return land(write_customers(tmp_path / "big.csv", ROWS, seed=4))


def test_killed_mid_copy(conn, child, big_file, importer):
    process = child(big_file)
    wait_for(lambda: active(conn, "COPY "), "the COPY")
    process.send_signal(signal.SIGKILL)
    process.wait()

    assert run_state(conn) == ("running", None, None, False, False)
    assert customers(conn) == []

    finish(child(big_file))
    assert run_state(conn) == ("succeeded", ROWS, 0, True, True)
    assert len(customers(conn)) == ROWS


def test_killed_mid_merge(conn, child, importer, land, tmp_path, database_url, schema):
    importer.import_file(conn, land(write_customers(tmp_path / "first.csv", ROWS, seed=4)))
    before = customers(conn)
    update = land(write_customers(tmp_path / "second.csv", ROWS, seed=5))
    with psycopg.connect(database_url) as blocker:  # holds one customer: the MERGE stops on it
        blocker.execute(f'SET search_path TO "{schema}"')
        blocker.execute("SELECT 1 FROM customers WHERE account_reference_id = 'C0030000' FOR UPDATE")
        process = child(update)
        wait_for(lambda: active(conn, "MERGE INTO", waiting=True), "the MERGE at work")
        process.send_signal(signal.SIGKILL)
        process.wait()

    assert customers(conn) == before
    assert conn.execute(
        "SELECT count(*) FROM customer_history h JOIN import_runs r ON r.id = h.run_id"
        " WHERE r.airflow_run_id = 'manual__fault'"
    ).fetchone() == (0,)
    assert run_state(conn)[0] == "running"

    finish(child(update))
    assert run_state(conn) == ("succeeded", 0, ROWS, True, True)
    assert customers(conn) != before and len(customers(conn)) == ROWS


def test_killed_mid_report(conn, child, big_file, importer):
    process = child(big_file)
    wait_for(lambda: any(importer.folders.root.glob("reports/*/errors.csv")), "the report being written")
    process.send_signal(signal.SIGKILL)
    process.wait()

    assert run_state(conn) == ("succeeded", ROWS, 0, True, False)  # merged, not yet published
    merged = customers(conn)

    finish(child(big_file))
    assert run_state(conn) == ("succeeded", ROWS, 0, True, True)
    assert customers(conn) == merged
    assert conn.execute("SELECT count(*) FROM customer_history").fetchone() == (ROWS,)
    run_id = conn.execute("SELECT id FROM import_runs").fetchone()[0]
    assert (importer.folders.archive(run_id) / "big.csv").exists()
    assert (importer.folders.reports(run_id) / "summary.json").exists()


needs_restartable_pg15 = pytest.mark.skipif(
    shutil.which("pg_ctlcluster") is None or not _reachable(PG15_URL),
    reason="crash-restarts the PostgreSQL 15 service: needs it on 127.0.0.1:5432 and pg_ctlcluster",
)


@needs_restartable_pg15
@pytest.mark.serial  # the PostgreSQL 15 that other tests use goes down: this test runs alone, after the rest
@pytest.mark.parametrize("database_url", [PG15_URL])
def test_a_server_crash_between_staging_and_merge_is_survived_by_the_retry(database_url, schema, importer, big_file):
    from customer_import.database import db

    conn = db.use_schema(db.connect(database_url), schema)
    run_id = importer.claim_file(conn, big_file, ImportOptions(), "customer_import", "manual__crash")
    importer.validate_file(conn, run_id)
    importer.load_staging(conn, run_id)

    # The server crashes (immediate stop: crash recovery empties the UNLOGGED staging table).
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", PG15_CLUSTER, "main", "restart", "-m", "immediate"],
        check=True,
        capture_output=True,
    )
    with pytest.raises(psycopg.OperationalError):
        importer.merge_customers(conn, run_id)  # this try fails on infrastructure...

    retry = db.use_schema(db.connect(database_url), schema)  # ...and Airflow's next try reconnects
    importer.merge_customers(retry, run_id)
    run = importer.publish_report(retry, run_id)

    assert (run.status, run.inserted, run.rows_staged) == ("succeeded", ROWS, ROWS)
    assert retry.execute("SELECT count(*) FROM customers").fetchone() == (ROWS,)
    retry.close()
