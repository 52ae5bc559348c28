"""`make import SOURCE=… FILE=…`, the README's command for a CRM export, end to end through the DAG."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import psycopg
import pytest

from tests.conftest import REPO
from tests.local_airflow import airflow_env

pytestmark = [pytest.mark.dag, pytest.mark.integration]


@pytest.fixture
def database_url(embedded_url):
    return embedded_url


def make_import(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`make import ARGS…` as a person runs it, in this test's Airflow and schema."""
    return subprocess.run(
        ["make", "--no-print-directory", "import", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_make_import_with_a_source_reads_the_export_through_its_profile(embedded_url, schema, tmp_path):
    env = airflow_env(embedded_url, schema, tmp_path, "test_make_import_source_airflow")

    done = make_import(env, "SOURCE=salesforce", "FILE=include/customer_import/sample/salesforce_accounts.csv")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "salesforce_accounts.csv is in landing/salesforce/" in done.stdout
    assert "succeeded: 4 rows, 4 inserted, 0 updated, 0 unchanged" in done.stdout
    with psycopg.connect(embedded_url) as conn:
        [(source, airflow_run)] = conn.execute(f'SELECT source, airflow_run_id FROM "{schema}".import_runs').fetchall()
        stored = conn.execute(
            "SELECT account_reference_id, name, country, customer_since, phone, seats, is_reseller"
            f' FROM "{schema}".customers ORDER BY 1'
        ).fetchall()
    assert source == "salesforce" and airflow_run.startswith("local__salesforce__salesforce_accounts.csv__")  # issue 33
    assert stored == [
        ("0015g00000AcmeDEAA", "Acme GmbH", "DE", dt.date(2024, 1, 31), "+49 30 1234567", 25, False),
        ("0015g00000GlobxAAB", "Globex Corporation", "US", dt.date(2023, 11, 5), "(555) 010-2030", 120, False),
        ("0015g00000InitCAAC", "Initech Ltd", "GB", dt.date(2024, 2, 29), "020 7946 0958", 8, False),
        ("0015g00000UmbrAAAD", "Umbrella S.A.", "FR", dt.date(2022, 7, 14), "+33 1 23 45 67 89", 40, False),
    ]


def test_make_import_with_an_unknown_source_names_the_sources(embedded_url, schema, tmp_path):
    env = airflow_env(embedded_url, schema, tmp_path, "test_make_import_source_airflow")

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "customer_import.local.cli",
            "import",
            "include/customer_import/sample/customers_sample.csv",
            "--source",
            "zoho",
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 2
    assert "There is no source `zoho` in sources.yaml: the sources are default, salesforce, hubspot." in done.stdout


def test_make_import_says_what_reading_changed_in_the_values(embedded_url, schema, tmp_path):
    env = airflow_env(embedded_url, schema, tmp_path, "test_make_import_source_airflow")

    done = make_import(env, "FILE=tests/data/meaningful_invisible_characters.csv")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "succeeded: 4 rows, 4 inserted" in done.stdout
    assert (
        "  changed:    1 value in Name had invisible characters removed (zero-width space, word joiner, byte-order"
        " mark): line 5." in done.stdout
    )
    assert (
        "  changed:    1 value in Description had Unicode line or paragraph separators made line breaks: line 4."
        in done.stdout
    )
