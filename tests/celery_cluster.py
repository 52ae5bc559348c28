"""`make celery` for the Celery tests: a broker (the machine's Redis, or a `redis-server` of the
test's own, installed as root when missing: nothing is skipped), the command on a free port with a
fresh metadata database and a schema of its own, and what its imports left."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import psycopg

from customer_import.local.airflow_server import stop_group
from tests.conftest import REPO, wait_for
from tests.local_airflow import Server, _token, airflow_env, running_airflow

FILES = 10
PASSWORDS = {"admin": "celery-admin-secret", "viewer": "celery-viewer-secret", "user": "celery-user-secret"}


@contextmanager
def broker(database: int, tmp_path: Path) -> Iterator[str]:
    """The machine's Redis on 127.0.0.1:6379 (`database`, flushed first: apart from a developer's
    `make celery` and from the other Celery test), or a `redis-server` of our own."""
    import redis

    try:
        redis.Redis(host="127.0.0.1", port=6379, db=database, socket_connect_timeout=2).flushdb()
        yield f"redis://127.0.0.1:6379/{database}"
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
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_for(lambda: _pings(port), "our redis-server to answer", 30)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_group(server)


def _pings(port: int) -> bool:
    import redis

    try:
        return bool(redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@dataclass
class Cluster:
    server: Server
    schema: str
    tmp_path: Path
    customer_db: str

    @property
    def home(self) -> Path:
        return Path(self.server.env["AIRFLOW_HOME"])

    def target(self) -> psycopg.Connection:
        return psycopg.connect(self.customer_db)

    def metadata(self) -> psycopg.Connection:
        return psycopg.connect(self.server.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].replace("+psycopg2", ""))

    def log(self) -> str:
        """What the command printed (its own account of which worker ran what, as each run ends)."""
        return (self.tmp_path / "airflow.log").read_text()

    def finished(self, like: str) -> list[tuple]:
        """(file name, status, Airflow run id) of the finished imports of files named `like`, in the order
        they were merged (those not merged last, as claimed)."""
        with self.target() as conn:
            if conn.execute("SELECT to_regclass(%s)", [f'"{self.schema}".import_runs']).fetchone()[0] is None:
                return []
            return conn.execute(
                f'SELECT file_name, status, airflow_run_id FROM "{self.schema}".import_runs'
                " WHERE file_name LIKE %s AND finished_at IS NOT NULL ORDER BY merged_at NULLS LAST, id",
                [like],
            ).fetchall()

    def watch_now(self) -> None:
        """Trigger the landing watch through the REST API, as an operator would (not wait for its schedule).

        Right after the cluster starts, the FAB auth manager may still answer 403 to the admin: each
        API server worker syncs the roles' permissions as it starts, and caches a signed-in user's
        permissions for 30 s (`[fab] cache_ttl`). An operator would try again; so does this, for a minute.
        """
        deadline = time.monotonic() + 60
        while True:
            request = urllib.request.Request(
                f"{self.server.base}/api/v2/dags/customer_import_watch/dagRuns",
                b'{"logical_date": null}',
                {
                    "Authorization": f"Bearer {_token(self.server.base, PASSWORDS['admin'])}",
                    "Content-Type": "application/json",
                },
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    assert response.status == 200
                    return
            except urllib.error.HTTPError as error:
                if error.code != 403 or time.monotonic() > deadline:
                    raise
                print(f"the landing watch's trigger: 403 from a cluster that has just started, again in 5 s: {error}")
                time.sleep(5)

    def workers_of(self, airflow_runs: list[str]) -> set[str]:
        """The workers that ran a task of these runs (a skipped task ran nowhere)."""
        with self.metadata() as conn:
            hosts = conn.execute(
                "SELECT DISTINCT split_part(hostname, '@', 1) FROM task_instance"
                " WHERE dag_id = 'customer_import' AND run_id = ANY(%s) AND hostname <> ''",
                [airflow_runs],
            ).fetchall()
        return {host for (host,) in hosts}

    def kill_worker(self, name: str) -> None:
        """SIGKILL a worker and every process under it (its tasks): the machine is gone."""
        import psutil

        worker = psutil.Process(int((self.home / "celery" / f"{name}.pid").read_text()))
        for process in [*worker.children(recursive=True), worker]:
            with suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGKILL)


@contextmanager
def celery_airflow(customer_db: str, broker_url: str, tmp_path: Path, name: str, **extra: str) -> Iterator[Cluster]:
    """`make celery` (its command) on a free port, with a fresh metadata database `name`, a schema
    and a data folder of its own; `extra` variables on top."""
    from customer_import.local import embedded_db as localdb

    schema = f"test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(localdb.database_url("postgres"), autocommit=True) as conn:  # a fresh Airflow: no earlier
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")  # run's queue, no stamp
    shutil.rmtree(REPO / ".state" / name, ignore_errors=True)
    env = {
        **airflow_env(customer_db, schema, tmp_path, name),
        "CELERY_BROKER_URL": broker_url,
        "AIRFLOW_ADMIN_PASSWORD": PASSWORDS["admin"],
        "AIRFLOW_VIEWER_PASSWORD": PASSWORDS["viewer"],
        "AIRFLOW_USER_PASSWORD": PASSWORDS["user"],
        "CUSTOMER_IMPORT_SETTLED_SECONDS": "1",
        # FAB allows 5 sign-ins per 40 s; the test signs in each time it asks Airflow whether it is up yet
        "AIRFLOW__FAB__AUTH_RATE_LIMITED": "False",
        **extra,
    }
    with running_airflow(env, tmp_path, "celery") as server:
        yield Cluster(server, schema, tmp_path, customer_db)
    with psycopg.connect(customer_db, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def drop_ten_files(put) -> list[str]:
    """Drop FILES small exports, oldest first; `put(name, content, n)` lands each whole. Returns their names.
    Each has two keys of its own, and all share CEL-SHARED: the last file's name for it must win."""
    names = [f"drop-{n:02d}.csv" for n in range(FILES)]
    for n, name in enumerate(names):
        rows = f"CEL-{n:02d}-A,Drop {n} A\nCEL-{n:02d}-B,Drop {n} B\nCEL-SHARED,Shared as of drop {n}\n"
        put(name, f"AccountReferenceID,Name\n{rows}", n)
    return names


def check_ten_imports(cluster: Cluster, names: list[str], started: float, where: str) -> None:
    """Each file imported exactly once, in arrival order, by tasks on both workers, and told by the command."""
    wait_for(lambda: len(cluster.finished("drop-%")) >= FILES, f"{FILES} imports through the Celery workers", 900)
    took = time.monotonic() - started
    runs = cluster.finished("drop-%")
    print(f"\n{FILES} files through two Celery workers, {where}: {took:.0f} s")  # the README quotes it
    # once each, merged in arrival order, though several were read and validated at once
    assert [(name, status) for name, status, _ in runs] == [(name, "succeeded") for name in names]
    with cluster.target() as conn:
        keys = conn.execute(
            f'SELECT count(*) FROM "{cluster.schema}".customers WHERE account_reference_id LIKE %s', ["CEL-%"]
        )
        assert keys.fetchone()[0] == 2 * FILES + 1
        shared = conn.execute(
            f'SELECT name FROM "{cluster.schema}".customers WHERE account_reference_id = %s', ["CEL-SHARED"]
        )
        assert shared.fetchone() == (f"Shared as of drop {FILES - 1}",)  # the last file to arrive won
    assert cluster.workers_of([airflow_run for *_, airflow_run in runs]) == {"worker-1", "worker-2"}
    wait_for(
        lambda: all(f"customer_import {run} success: " in cluster.log() for *_, run in runs), "the worker lines", 60
    )
    assert "@worker-1" in cluster.log() and "@worker-2" in cluster.log()


def status_of(base: str, path: str, token: str, files: dict | None = None) -> int:
    """The HTTP status of a GET, or of a POST of one file; redirects are not followed."""
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
