"""`make celery` for real: the CeleryExecutor with two workers on Redis, and the FAB auth manager.

Ten files dropped at once are each imported exactly once, in arrival order, by tasks spread over
both workers; the Imports page answers FAB's roles. The broker is the machine's Redis, or a
`redis-server` the test starts (installing Debian's package as root when it is missing): nothing
is skipped. Marked `celery`: `pytest -m celery` runs it alone (a few minutes).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid

import psycopg
import pytest

from tests.conftest import REPO, wait_for
from tests.local_airflow import _token, airflow_env, running_airflow, stop_group

pytestmark = [pytest.mark.dag, pytest.mark.integration, pytest.mark.celery]
FILES = 10
PASSWORDS = {"admin": "celery-admin-secret", "viewer": "celery-viewer-secret", "user": "celery-user-secret"}


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """The machine's Redis on 127.0.0.1:6379 (database 7, apart from a developer's `make celery`), or one of our own."""
    import redis

    try:
        redis.Redis(host="127.0.0.1", port=6379, db=7, socket_connect_timeout=2).flushdb()  # an earlier run's tasks
        yield "redis://127.0.0.1:6379/7"
        return
    except redis.RedisError:
        pass
    if not shutil.which("redis-server") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update"], env=env, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "redis-server"], env=env, check=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp_path_factory.mktemp("redis"),
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_for(lambda: _pings(port), "our redis-server to answer", 30)
    yield f"redis://127.0.0.1:{port}/0"
    stop_group(server)


def _pings(port: int) -> bool:
    import redis

    try:
        return bool(redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="module")
def celery_airflow(embedded_url, broker, tmp_path_factory):
    """`make celery` (its command) on a free port, with a schema and data folder of its own."""
    from customer_import import localdb

    schema = f"test_{uuid.uuid4().hex[:10]}"
    tmp_path = tmp_path_factory.mktemp("celery")
    with psycopg.connect(localdb.database_url("postgres"), autocommit=True) as conn:  # a fresh Airflow: no earlier
        conn.execute("DROP DATABASE IF EXISTS test_celery_airflow WITH (FORCE)")  # run's queue, no stamp
    shutil.rmtree(REPO / ".state" / "test_celery_airflow", ignore_errors=True)
    env = {
        **airflow_env(embedded_url, schema, tmp_path, "test_celery_airflow"),
        "CELERY_BROKER_URL": broker,
        "AIRFLOW_ADMIN_PASSWORD": PASSWORDS["admin"],
        "AIRFLOW_VIEWER_PASSWORD": PASSWORDS["viewer"],
        "AIRFLOW_USER_PASSWORD": PASSWORDS["user"],
        "CUSTOMER_IMPORT_SETTLED_SECONDS": "1",
        # FAB allows 5 sign-ins per 40 s; the test signs in each time it asks Airflow whether it is up yet
        "AIRFLOW__FAB__AUTH_RATE_LIMITED": "False",
    }
    with running_airflow(env, tmp_path, "celery") as server:
        yield server, schema, tmp_path
    with psycopg.connect(embedded_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _status(base: str, path: str, token: str, files: dict | None = None) -> int:
    boundary = "----celery-test"
    body, headers = None, {"Authorization": f"Bearer {token}"}
    if files:
        ((name, content),) = files.items()
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
                f"Content-Type: text/csv\r\n\r\n"
            ).encode()
            + content
            + f"\r\n--{boundary}--\r\n".encode()
        )
        headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
    request = urllib.request.Request(f"{base}{path}", body, headers, method="POST" if files else "GET")

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    try:
        with urllib.request.build_opener(NoRedirect).open(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _watch_now(server) -> None:
    """Trigger the landing watch through the REST API, as an operator would."""
    request = urllib.request.Request(
        f"{server.base}/api/v2/dags/customer_import_watch/dagRuns",
        b'{"logical_date": null}',
        {"Authorization": f"Bearer {_token(server.base, PASSWORDS['admin'])}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200


def test_the_imports_page_answers_the_fab_roles(celery_airflow):
    server, _, _ = celery_airflow
    viewer = _token(server.base, PASSWORDS["viewer"], "viewer")
    user = _token(server.base, PASSWORDS["user"], "user")
    csv = b"AccountReferenceID,Name\nFAB-1,Uploaded by a User\n"

    assert _status(server.base, "/customer-import/", viewer) == 200
    assert _status(server.base, "/customer-import/upload", viewer, {"viewer.csv": csv}) == 403
    assert _status(server.base, "/customer-import/upload", user, {"user.csv": csv}) == 303


def test_ten_files_dropped_at_once_are_imported_once_each_in_arrival_order_over_both_workers(
    celery_airflow, embedded_url
):
    server, schema, tmp_path = celery_airflow
    landing = tmp_path / "data" / "landing"
    landing.mkdir(parents=True, exist_ok=True)
    names = [f"drop-{n:02d}.csv" for n in range(FILES)]
    arrived = time.time() - 60
    for n, name in enumerate(names):  # written aside, then renamed in: each arrives whole, a second apart
        part = landing / f".{name}.part"
        part.write_text(f"AccountReferenceID,Name\nCEL-{n:02d}-A,Drop {n} A\nCEL-{n:02d}-B,Drop {n} B\n")
        os.utime(part, (arrived + n, arrived + n))
        os.rename(part, landing / name)
    started = time.monotonic()
    _watch_now(server)  # rather than wait up to a minute for its schedule

    def finished() -> list[tuple]:
        with psycopg.connect(embedded_url) as conn:
            if conn.execute("SELECT to_regclass(%s)", [f'"{schema}".import_runs']).fetchone()[0] is None:
                return []
            return conn.execute(
                f'SELECT file_name, status, airflow_run_id FROM "{schema}".import_runs'
                " WHERE file_name LIKE 'drop-%%' AND finished_at IS NOT NULL ORDER BY id"
            ).fetchall()

    wait_for(lambda: len(finished()) >= FILES, f"{FILES} imports through the Celery workers", 900)
    took = time.monotonic() - started

    runs = finished()
    print(f"\n{FILES} files through two Celery workers, on local disk: {took:.0f} s")  # the README quotes it
    assert [(name, status) for name, status, _ in runs] == [(name, "succeeded") for name in names]  # once, in order
    with psycopg.connect(embedded_url) as conn:
        keys = conn.execute(f'SELECT count(*) FROM "{schema}".customers WHERE account_reference_id LIKE %s', ["CEL-%"])
        assert keys.fetchone()[0] == 2 * FILES
        metadata = psycopg.connect(server.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].replace("+psycopg2", ""))
    with metadata:
        hosts = metadata.execute(
            "SELECT DISTINCT split_part(hostname, '@', 1) FROM task_instance"
            " WHERE dag_id = 'customer_import' AND run_id = ANY(%s) AND hostname <> ''",  # a skipped task ran nowhere
            [[airflow_run for *_, airflow_run in runs]],
        ).fetchall()
    assert {host for (host,) in hosts} == {"worker-1", "worker-2"}
    assert not list(landing.glob("drop-*"))

    def told() -> str:  # the command's own account of which worker ran what, as each DAG run ends
        return (tmp_path / "airflow.log").read_text()

    wait_for(lambda: all(f"customer_import {run} success: " in told() for *_, run in runs), "the worker lines", 60)
    assert "@worker-1" in told() and "@worker-2" in told()
