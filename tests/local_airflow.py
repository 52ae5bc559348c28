"""`make airflow`'s command run for a test: its environment, started on a free port, stopped whole."""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO


@dataclass(frozen=True)
class Server:
    base: str
    password: str
    env: dict[str, str]
    session: int  # the session of its processes (the command's pid: it starts one)


def airflow_env(customer_db: str, schema: str, tmp_path: Path, metadata_db: str) -> dict[str, str]:
    """What the local commands of one test share: Airflow's home and metadata database, the target
    database and schema, the data folder, a free port and an admin password."""
    from customer_import.local import embedded_db as localdb

    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "include"),
        "AIRFLOW_PORT": str(_free_port()),
        "AIRFLOW_ADMIN_PASSWORD": secrets.token_urlsafe(12),
        "AIRFLOW_HOME": str(REPO / ".state" / metadata_db),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": localdb.database_url(metadata_db, "postgresql+psycopg2"),
        "AIRFLOW_CONN_CUSTOMER_DB": customer_db,
        "CUSTOMER_IMPORT_SCHEMA": schema,
        "CUSTOMER_IMPORT_DATA_DIR": str(tmp_path / "data"),
    }
    env.pop("AIRFLOW__API__BASE_URL", None)
    return env


@contextmanager
def running_airflow(env: dict[str, str], tmp_path: Path, command: str = "airflow") -> Iterator[Server]:
    """`python -m customer_import.local.cli airflow` (or `celery`) until the DAGs are parsed; then stopped whole."""
    from customer_import.local.airflow_server import AirflowDidNotStart, started

    try:
        with started(env, tmp_path / "airflow.log", command) as process:
            yield Server(f"http://localhost:{env['AIRFLOW_PORT']}", env["AIRFLOW_ADMIN_PASSWORD"], env, process.pid)
    except AirflowDidNotStart as failed:
        pytest.fail(str(failed))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _token(base: str, password: str, username: str = "admin") -> str | None:
    """A bearer token, asked again for up to a minute: on a loaded machine one answer can take more
    than sign_in's 5 s (seen with a Celery cluster running beside the tests)."""
    from customer_import.local.airflow_server import sign_in

    deadline = time.monotonic() + 60
    while (token := sign_in(base, password, username)) is None and time.monotonic() < deadline:
        time.sleep(1)
    return token


def token(server: Server) -> str:
    value = _token(server.base, server.password)
    assert value, "no token from Airflow"
    return value
