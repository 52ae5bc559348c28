"""Shared fixtures: real PostgreSQL servers, a fresh schema and data folder per test.

Integration tests run on every server that is available: always the embedded PostgreSQL
(started on demand under .state/), and the PostgreSQL 15 service on 127.0.0.1:5432 when it
answers (PG15_URL overrides its address). Each test works in a schema of its own.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"

# Airflow reads its configuration when first imported: the test session gets its own home.
os.environ["AIRFLOW_HOME"] = str(REPO / ".state" / "test-airflow")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["GX_ANALYTICS_ENABLED"] = "False"
os.environ.pop("AIRFLOW_CONN_CUSTOMER_DB", None)

PG15_URL = os.environ.get("PG15_URL", "postgresql://postgres@127.0.0.1:5432/test")


def wait_for(condition, what: str, seconds: float = 120) -> None:
    """Poll `condition` every 5 ms until it holds; fail naming `what` if it never does."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.005)
    raise AssertionError(f"never saw {what}")


def _reachable(url: str) -> bool:
    try:
        psycopg.connect(url, connect_timeout=3).close()
        return True
    except psycopg.OperationalError:
        return False


def _servers() -> list:
    servers = [pytest.param("embedded", id="pg-embedded")]
    if _reachable(PG15_URL):
        servers.append(pytest.param(PG15_URL, id="pg15-service"))
    return servers


@pytest.fixture(scope="session")
def embedded_url() -> str:
    from customer_import.local import embedded_db as localdb

    return localdb.database_url("test_customers")


@pytest.fixture(scope="session")
def airflow_ready(embedded_url):
    """Airflow's metadata in a database of the embedded server; the target is `embedded_url`."""
    from customer_import.local import cli
    from customer_import.local import embedded_db as localdb

    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = localdb.database_url("test_airflow", "postgresql+psycopg2")
    os.environ["AIRFLOW_CONN_CUSTOMER_DB"] = embedded_url
    cli.migrate_airflow()


@pytest.fixture(params=_servers())
def database_url(request, embedded_url) -> str:
    return embedded_url if request.param == "embedded" else request.param


@pytest.fixture
def schema(database_url) -> str:
    """A fresh schema for the test, dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def conn(database_url, schema):
    from customer_import.database import db

    with db.connect(database_url) as connection:
        db.use_schema(connection, schema)
        yield connection


@pytest.fixture
def importer(tmp_path, schema):
    """The core pipeline with its data folders under tmp_path and its tables in `schema`."""
    from customer_import.pipeline import Importer
    from customer_import.settings import Settings

    return Importer(settings=replace(Settings.from_env(), data_dir=tmp_path / "data", schema=schema))


@pytest.fixture
def land(importer):
    """Put a file from tests/data (or any path) into the landing folder; returns its name."""
    from customer_import.storage.folders import drop_into_landing

    def _land(name_or_path: str | Path, as_name: str | None = None) -> str:
        source = Path(name_or_path) if Path(name_or_path).is_absolute() else DATA / name_or_path
        if as_name:
            renamed = importer.settings.data_dir.parent / as_name
            renamed.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, renamed)
            source = renamed
        return drop_into_landing(source, importer.folders)

    return _land


#: The test files that take minutes.
LONG_FILES = ("test_local_commands.py", "test_browser.py", "test_faults.py")
#: Every test says what it needs, so a part can be run alone (`make test-fast` runs the unit tests).
TEST_KINDS = ("unit", "integration", "dag", "ui", "local_commands", "celery")


def pytest_collection_modifyitems(config, items):
    unmarked = [item.nodeid for item in items if not any(item.get_closest_marker(k) for k in TEST_KINDS)]
    if unmarked:
        raise pytest.UsageError(
            f"Mark these tests with one of {', '.join(TEST_KINDS)}"
            " (pyproject.toml says what each means): " + ", ".join(unmarked)
        )
    # the files that take minutes first (`make test` hands out files in this order): the two workers
    # then end together, rather than one waiting out a long file alone at the end
    items.sort(key=lambda item: item.path.name not in LONG_FILES)


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory, airflow_ready):
    """A real S3 server on 127.0.0.1: moto's, as a process of its own (nothing is mocked in-process).

    The tests read the store through Airflow's ObjectStoragePath, which imports Airflow: its
    metadata database is configured first (else Airflow would settle on SQLite for this worker)."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log
    )
    endpoint = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).status == 200
        except OSError:
            time.sleep(0.1)
            return False

    try:
        wait_for(answers, f"the S3 server at {endpoint}", 60)
        yield endpoint
    finally:
        server.terminate()
        server.wait(10)


S3_CONNECTION = "customer_data"


def s3_connection(endpoint: str) -> str:
    """The Airflow connection (JSON, for AIRFLOW_CONN_CUSTOMER_DATA) to the S3 server at `endpoint`."""
    import json

    extra = {"endpoint_url": endpoint, "region_name": "us-east-1"}
    return json.dumps({"conn_type": "aws", "login": "testing", "password": "testing", "extra": extra})


def new_bucket(endpoint: str) -> str:
    """Create a bucket of its own on the S3 server; returns the data URL of a prefix in it."""
    import boto3

    bucket = f"customer-import-{uuid.uuid4().hex[:12]}"
    client = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="t"
    )
    client.create_bucket(Bucket=bucket)
    return f"s3://{S3_CONNECTION}@{bucket}/crm"


@pytest.fixture
def s3_url(s3_endpoint, monkeypatch) -> str:
    """CUSTOMER_IMPORT_DATA_URL of a fresh bucket on the local S3 server (its connection in the environment)."""
    monkeypatch.setenv(f"AIRFLOW_CONN_{S3_CONNECTION.upper()}", s3_connection(s3_endpoint))
    return new_bucket(s3_endpoint)
