"""`make bench`'s last part: what a run costs whatever its size, as a person meets it.

- `make import` of a one-row file, the whole command, with no scheduler running (in its process);
- under `make airflow`: a 1,000-row file uploaded on the Imports page, from the moment the upload
  returns until its run is `succeeded`;
- under `make airflow`: a backlog of 20 files of 1,000 rows dropped into `landing/` at once, from
  the drop until the last is imported, with the order they were merged in.

Each is the fastest of `repeat` runs after a first one that warms the caches (the backlog: one
run). The reference ("the work") is the same file through the core pipeline alone in one process,
one file after another: what Airflow and its process start-ups add is the rest.

The commands run as a user runs them, in processes of their own, with an Airflow home, metadata
database, data folder and schema of the benchmark's own (under `.state/bench/`).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg
from psycopg import sql

from customer_import.contract.generate import write_customers
from customer_import.local import embedded_db
from customer_import.local.airflow_server import sign_in, started
from customer_import.settings import REPO_ROOT

SCHEMA = "bench_fixed"
METADATA_DB = "bench_airflow"
BACKLOG = 20
ROWS = 1000
ENDED = ("succeeded", "partial", "rejected", "failed", "duplicate")


def _environment(url: str, home: Path) -> dict[str, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    environment = {
        **os.environ,
        "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": embedded_db.database_url(METADATA_DB, "postgresql+psycopg2"),
        "AIRFLOW_CONN_CUSTOMER_DB": url,
        "CUSTOMER_IMPORT_SCHEMA": SCHEMA,
        "CUSTOMER_IMPORT_DATA_DIR": str(home / "data"),
        "AIRFLOW_PORT": str(port),
        "AIRFLOW_ADMIN_PASSWORD": secrets.token_urlsafe(12),
    }
    # the commands derive it from AIRFLOW_PORT; the one this process set (for 8080) would send make
    # airflow's tasks to an execution API where nothing listens
    environment.pop("AIRFLOW__API__BASE_URL", None)
    return environment


def _command(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "customer_import.local.cli", *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def _fastest(repeat: int, measure: Callable[[], float]) -> float:
    measure()  # the warm-up: caches, Airflow's first parse, the database's first connections
    return min(measure() for _ in range(repeat))


def _wait(condition: Callable[[], bool], what: str, seconds: float = 600) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"never saw {what}")
        time.sleep(0.1)


class _Target:
    """The benchmark's schema: what the runs left there."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))

    def status(self, file_name: str) -> str | None:
        if self.conn.execute("SELECT to_regclass(%s)", [f"{SCHEMA}.import_runs"]).fetchone() == (None,):
            return None
        found = self.conn.execute(
            sql.SQL("SELECT status FROM {}.import_runs WHERE file_name = %s ORDER BY id DESC LIMIT 1").format(
                sql.Identifier(SCHEMA)
            ),
            [file_name],
        ).fetchone()
        return found[0] if found else None

    def merged_order(self, names: list[str]) -> list[str]:
        return [
            name
            for (name,) in self.conn.execute(
                sql.SQL(
                    "SELECT file_name FROM {}.import_runs WHERE file_name = ANY(%s) AND merged_at IS NOT NULL"
                    " ORDER BY merged_at"
                ).format(sql.Identifier(SCHEMA)),
                [names],
            )
        ]


def _admin_headers(base: str, env: dict[str, str]) -> dict[str, str]:
    token = sign_in(base, env["AIRFLOW_ADMIN_PASSWORD"])
    if token is None:
        raise RuntimeError("Airflow gives no token")
    return {"Authorization": f"Bearer {token}"}


def measure(url: str, bench_dir: Path, repeat: int) -> None:
    """Print the fixed costs (see the module's docstring) for the target `url`."""
    from customer_import.local.bench import core_alone

    home = bench_dir / "fixed"
    # from nothing: an interrupted bench leaves files in landing and runs left running, which the next
    # one's files would wait for (its Airflow's metadata, its data folder, its schema below)
    shutil.rmtree(home, ignore_errors=True)
    embedded_db.drop_database(METADATA_DB)
    env = _environment(url, home)
    target = _Target(url)
    files = home / "files"
    files.mkdir(parents=True, exist_ok=True)
    one_row = write_customers(files / "one-row.csv", 1, seed=3)
    count = iter(range(10_000))

    def make_import() -> float:
        started = time.perf_counter()
        done = _command(env, "import", str(one_row), "--force")
        if done.returncode != 0:
            raise RuntimeError(f"make import failed:\n{done.stdout}{done.stderr}")
        return time.perf_counter() - started

    one_row_seconds = _fastest(repeat, make_import)
    print(f"\nFixed costs (each the fastest of {repeat} after a warm-up; the work: the core alone, in one process)")
    print(f"  make import, a one-row file, whole command, no scheduler:       {one_row_seconds:6.1f} s")

    def new_file(prefix: str, n: int, start: int = 1) -> Path:  # contents of their own: none a duplicate
        path = f"{prefix}-{n:03d}.csv"
        return write_customers(files / path, ROWS, start=start, seed=zlib.crc32(path.encode()))

    with started(env, home / "airflow.log", dag_ids=("customer_import", "customer_import_watch")):
        base = f"http://localhost:{env['AIRFLOW_PORT']}"
        headers = _admin_headers(base, env)

        def upload() -> float:
            path = new_file("upload", next(count))
            with path.open("rb") as content:
                sent = httpx.post(
                    f"{base}/customer-import/upload", headers=headers, files={"file": (path.name, content)}, timeout=60
                )
            returned = time.perf_counter()
            if sent.status_code != 303:
                raise RuntimeError(f"the upload was refused ({sent.status_code})")
            _wait(lambda: target.status(path.name) in ENDED, f"{path.name} imported")
            if target.status(path.name) != "succeeded":
                raise RuntimeError(f"{path.name}: {target.status(path.name)}")
            return time.perf_counter() - returned

        upload_seconds = _fastest(repeat, upload)
        upload_work = core_alone(url, [new_file("work", 0)])
        print(
            f"  a {ROWS:,}-row upload under make airflow, until succeeded:          {upload_seconds:6.1f} s"
            f"   ({upload_seconds / upload_work:4.1f} × the work, {upload_work:.1f} s)"
        )

        backlog = [new_file("backlog", n, start=1 + n * ROWS // 2) for n in range(BACKLOG)]  # half shared
        landing = home / "data" / "landing"
        for path in backlog:
            os.replace(path, landing / path.name)  # at once, whole: each appears as a rename
        dropped = time.perf_counter()
        names = [path.name for path in backlog]
        _wait(lambda: all(target.status(name) in ENDED for name in names), f"{BACKLOG} files imported", 900)
        backlog_seconds = time.perf_counter() - dropped
        if not_imported := [name for name in names if target.status(name) != "succeeded"]:
            raise RuntimeError(f"not imported: {not_imported}")
    backlog_work = core_alone(url, [new_file("work", n, start=1 + n * ROWS // 2) for n in range(BACKLOG)])
    in_order = target.merged_order(names) == names
    print(
        f"  {BACKLOG} files of {ROWS:,} rows dropped at once, until all imported:  {backlog_seconds:6.1f} s"
        f"   ({backlog_seconds / backlog_work:4.1f} × the work, {backlog_work:.1f} s);"
        f" merged in arrival order: {'yes' if in_order else 'NO'}"
    )
    target.conn.close()
