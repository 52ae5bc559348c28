"""`make airflow`'s command run for a test: its environment, started on a free port, stopped whole."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
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
    base, password = f"http://localhost:{env['AIRFLOW_PORT']}", env["AIRFLOW_ADMIN_PASSWORD"]
    log = (tmp_path / "airflow.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "customer_import.local.cli", command],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while True:
            token = _token(base, password)
            if token and _get(f"{base}/api/v2/dags/customer_import", token) == 200:
                break
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Airflow did not come up; its log:\n{(tmp_path / 'airflow.log').read_text()[-5000:]}")
            time.sleep(1)
        yield Server(base, password, env)
    finally:
        stop_group(server)
        log.close()


def stop_group(server: subprocess.Popen) -> None:
    """Stop a process and every process it started (they share its process group)."""
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(30)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            os.killpg(server.pid, 0)  # raises once the whole group is gone
            time.sleep(0.5)
        os.killpg(server.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def _token(base: str, password: str, username: str = "admin") -> str | None:
    body = json.dumps({"username": username, "password": password}).encode()
    request = urllib.request.Request(f"{base}/auth/token", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.load(response)["access_token"]
    except OSError:
        return None


def token(server: Server) -> str:
    value = _token(server.base, server.password)
    assert value, "no token from Airflow"
    return value
