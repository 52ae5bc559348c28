"""`make celery` for real: the CeleryExecutor with two workers on Redis, the FAB auth manager, and the
data folders on local disk or on S3 (a real S3 server, moto's, on 127.0.0.1).

Ten files dropped at once are each imported exactly once, in arrival order, by tasks spread over
both workers, with the data on local disk and on S3 (where no folder is shared: each worker pulls
what a step needs from the store and pushes back what it wrote). The Imports page answers FAB's
roles. The worker running a `merge_customers` is killed (SIGKILL, with its task) and Airflow retries
the merge on the other worker: the file ends imported exactly once. A cluster per class, one after
the other. Marked `celery`: `pytest -m celery` runs them (about 5 minutes on 2 cores); `make test` runs
them after the parallel stage: beside it, each stage took twice its time (measured again for issue 31).
"""

from __future__ import annotations

import os
import time

import pytest

from customer_import.storage.store import object_root
from tests.celery_cluster import PASSWORDS, broker, celery_airflow, check_ten_imports, drop_ten_files, status_of
from tests.conftest import S3_CONNECTION, new_bucket, s3_connection, wait_for
from tests.local_airflow import _token

pytestmark = [pytest.mark.dag, pytest.mark.integration, pytest.mark.celery, pytest.mark.timeout(900)]
MERGE_LOCK = "customer_import:merge"


def store(cluster):
    return object_root(cluster.server.env["CUSTOMER_IMPORT_DATA_URL"])


class TestOnLocalDisk:
    @pytest.fixture(scope="class")
    def cluster(self, embedded_url, tmp_path_factory):
        path = tmp_path_factory.mktemp("celery")
        with broker(7, path) as url, celery_airflow(embedded_url, url, path, "test_celery_airflow") as cluster:
            yield cluster

    def test_the_imports_page_answers_the_fab_roles(self, cluster):
        base = cluster.server.base
        viewer = _token(base, PASSWORDS["viewer"], "viewer")
        user = _token(base, PASSWORDS["user"], "user")
        csv = b"AccountReferenceID,Name\nFAB-1,Uploaded by a User\n"

        assert status_of(base, "/customer-import/", viewer) == 200
        assert status_of(base, "/customer-import/upload", viewer, {"viewer.csv": csv}) == 403
        assert status_of(base, "/customer-import/upload", user, {"user.csv": csv}) == 303

    def test_ten_files_dropped_at_once_are_imported_once_each_in_arrival_order_over_both_workers(self, cluster):
        landing = cluster.tmp_path / "data" / "landing"
        landing.mkdir(parents=True, exist_ok=True)
        arrived = time.time() - 60

        def put(name: str, content: str, n: int) -> None:  # written aside, then renamed in: whole, a second apart
            part = landing / f".{name}.part"
            part.write_text(content)
            os.utime(part, (arrived + n, arrived + n))
            os.rename(part, landing / name)

        names = drop_ten_files(put)
        started = time.monotonic()
        cluster.watch_now()

        check_ten_imports(cluster, names, started, "on local disk")
        assert not list(landing.glob("drop-*"))


class TestOnS3:
    @pytest.fixture(scope="class")
    def cluster(self, embedded_url, s3_endpoint, tmp_path_factory):
        connection = {f"AIRFLOW_CONN_{S3_CONNECTION.upper()}": s3_connection(s3_endpoint)}
        mp = pytest.MonkeyPatch()
        mp.setenv(*next(iter(connection.items())))  # this process reads the store too
        extra = {
            **connection,
            "CUSTOMER_IMPORT_DATA_URL": new_bucket(s3_endpoint),
            # a lost worker's task instances are failed (then retried) 30 s after their last heartbeat, not 5 min
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
        }
        path = tmp_path_factory.mktemp("celery-s3")
        with broker(8, path) as url, celery_airflow(embedded_url, url, path, "test_celery_s3_airflow", **extra) as it:
            yield it
        mp.undo()

    def test_ten_files_dropped_on_s3_are_imported_once_each_in_arrival_order_over_both_workers(self, cluster):
        landing = store(cluster) / "landing"

        def put(name: str, content: str, n: int) -> None:  # an object appears whole; uploaded in order
            (landing / name).write_text(content)

        names = drop_ten_files(put)
        started = time.monotonic()
        cluster.watch_now()

        check_ten_imports(cluster, names, started, "on S3")
        root = store(cluster)
        keys = [key.removeprefix(f"{root.path}/") for key in root.fs.find(root.path, refresh=True)]
        assert {key.rsplit("/", 1)[-1] for key in keys if key.startswith("archive/")} == set(names)
        assert not [key for key in keys if key.startswith(("landing/", "processing/"))]
        assert not list((cluster.tmp_path / "data").rglob("drop-*")), "no worker keeps a copy"

    def test_a_worker_killed_during_its_merge_is_replaced_and_the_file_is_imported_once(self, cluster):
        """The test holds the merge lock, so the merge waits inside its transaction; the worker running it
        is killed with SIGKILL (its task too). Airflow fails the task once its heartbeat times out and
        retries it on the other worker, which merges once the lock is free."""
        with cluster.target() as lock:
            lock.execute("SELECT pg_advisory_lock(hashtext(%s))", [MERGE_LOCK])
            (store(cluster) / "landing" / "killed.csv").write_text(
                "AccountReferenceID,Name\n" + "".join(f"KILL-{n},Killed worker {n}\n" for n in range(5))
            )
            cluster.watch_now()

            def merging() -> str | None:
                with cluster.metadata() as conn:
                    found = conn.execute(
                        "SELECT hostname FROM task_instance WHERE dag_id = 'customer_import'"
                        " AND task_id = 'merge_customers' AND state = 'running' AND hostname <> ''"
                        " AND run_id LIKE '%%killed.csv%%'"
                    ).fetchone()
                return found[0].split("@")[0] if found else None

            wait_for(lambda: merging() is not None, "the merge of killed.csv running on a worker", 300)
            victim = merging()
            time.sleep(2)  # the merge is waiting for the lock, inside its transaction
            cluster.kill_worker(victim)
            lock.execute("SELECT pg_advisory_unlock(hashtext(%s))", [MERGE_LOCK])

        wait_for(lambda: cluster.finished("killed.csv"), "the import of killed.csv to finish", 400)
        [(_, status, airflow_run)] = cluster.finished("killed.csv")
        assert status == "succeeded"
        with cluster.target() as conn:
            schema = cluster.schema
            assert conn.execute(
                f'SELECT count(*) FROM "{schema}".customers WHERE account_reference_id LIKE %s', ["KILL-%"]
            ).fetchone() == (5,)
            assert conn.execute(
                f'SELECT count(*) FROM "{schema}".customer_history h JOIN "{schema}".import_runs r'
                " ON r.id = h.run_id WHERE r.file_name = 'killed.csv'"
            ).fetchone() == (5,)
        with cluster.metadata() as conn:
            tries = conn.execute(
                "SELECT try_number, split_part(hostname, '@', 1), state FROM task_instance_history"
                " WHERE dag_id = 'customer_import' AND task_id = 'merge_customers' AND run_id = %s"
                " UNION ALL SELECT try_number, split_part(hostname, '@', 1), state FROM task_instance"
                " WHERE dag_id = 'customer_import' AND task_id = 'merge_customers' AND run_id = %s ORDER BY 1",
                [airflow_run, airflow_run],
            ).fetchall()
        other = ({"worker-1", "worker-2"} - {victim}).pop()
        assert tries[0][1] == victim and tries[-1][1:] == (other, "success"), tries
        assert f"{victim} stopped" in cluster.log()
