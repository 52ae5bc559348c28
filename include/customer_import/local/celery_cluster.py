"""`make celery`: Airflow on the CeleryExecutor on this machine, as a deployment over several machines runs it.

Each component is a process of its own: the API server (UI, Imports page, execution API), the
scheduler, the DAG processor, the triggerer and two Celery workers, each worker in a working
directory of its own under `.state/celery/`. The broker is Redis (`CELERY_BROKER_URL`, default
`redis://127.0.0.1:6379/0`); Airflow's metadata database is also Celery's result backend. Users
sign in through the FAB auth manager (what most production Airflows run): `admin` (role Admin),
and `viewer` (Viewer) and `user` (User) when AIRFLOW_VIEWER_PASSWORD or AIRFLOW_USER_PASSWORD is set.

Each component logs to `.state/celery/<name>.log`; in the foreground, the command prints which
worker ran which task of each `customer_import` run as the run ends.

Like `cli`, this module starts Airflow; the core package does not.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from customer_import.local.airflow_server import kept_secret

DEFAULT_BROKER = "redis://127.0.0.1:6379/0"
FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
CELERY_EXECUTOR = "airflow.providers.celery.executors.celery_executor.CeleryExecutor"
CELERY_CONFIG = "customer_import.local.executors.CELERY_CONFIG"
WORKERS = ("worker-1", "worker-2")
API_SERVER = "api-server"
#: The users `make celery` signs in, by the variable that holds each one's password, with their FAB role.
USERS = {
    "AIRFLOW_ADMIN_PASSWORD": ("admin", "Admin"),
    "AIRFLOW_VIEWER_PASSWORD": ("viewer", "Viewer"),
    "AIRFLOW_USER_PASSWORD": ("user", "User"),
}


class BrokerUnreachable(RuntimeError):
    """Nothing answers at the broker URL; the message says what to do."""


def check_broker(url: str) -> None:
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3).ping()
    except (redis.RedisError, OSError, ValueError) as error:
        raise BrokerUnreachable(
            f"No Redis answers at {url} (CELERY_BROKER_URL): {error}. Start one (`redis-server`, or"
            " `apt-get install redis-server`), or set CELERY_BROKER_URL to yours, e.g. redis://host:6379/0."
        ) from None


def state_dir() -> Path:
    """Where the components work and log: `celery/` in Airflow's home (`.state/airflow/celery/`)."""
    return Path(os.environ["AIRFLOW_HOME"]) / "celery"


def environment(host: str, port: str, broker: str, admin_password: str) -> dict[str, str]:
    """The variables every component shares (on top of the local commands' own)."""
    home = Path(os.environ["AIRFLOW_HOME"])
    metadata = os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    local = "127.0.0.1" if host == "0.0.0.0" else host
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW__CORE__EXECUTOR": CELERY_EXECUTOR,
        "AIRFLOW__CORE__AUTH_MANAGER": FAB_AUTH_MANAGER,
        "AIRFLOW__CELERY__BROKER_URL": broker,
        # Airflow's Celery configuration, and GX, pandas and the pipeline imported before the pool forks
        "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": CELERY_CONFIG,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + metadata.replace("postgresql+psycopg2", "postgresql"),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{local}:{port}/execution/",
        "AIRFLOW__API__HOST": host,
        "AIRFLOW__API__PORT": port,
        "AIRFLOW__API__BASE_URL": os.environ.get("AIRFLOW__API__BASE_URL") or f"http://{local}:{port}",
        # one of each, shared by every component
        "AIRFLOW__API__SECRET_KEY": kept_secret(home / "api-secret-key", 32),
        "AIRFLOW__API_AUTH__JWT_SECRET": kept_secret(home / "jwt-secret", 32),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW_ADMIN_PASSWORD": admin_password,
    }


#: Run by `create_users` in one Airflow process (FAB's own calls, as `airflow fab-db migrate`,
#: `airflow users create` and `airflow users reset-password` make them); the users come on stdin, not
#: in the process's arguments.
_SET_USERS = """
import json, sys
from airflow import settings
from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder
from airflow.providers.fab.auth_manager.models.db import FABDBManager

FABDBManager(settings.Session()).upgradedb()
with get_application_builder() as appbuilder:
    for name, role, password in json.load(sys.stdin):
        user = appbuilder.sm.find_user(username=name)
        if user is None:
            found = appbuilder.sm.find_role(role)
            made = appbuilder.sm.add_user(name, name, role, f"{name}@localhost", found, password)
            if not made:
                raise SystemExit(f"FAB did not create the user {name}")
        elif not appbuilder.sm.reset_password(user.id, password):
            raise SystemExit(f"FAB did not reset the password of {name}")
"""


def create_users(env: dict[str, str]) -> list[str]:
    """FAB's tables, and the users whose passwords are set (a user that exists gets its password reset):
    one Airflow process, whatever the number of users."""
    users = [(name, role, env[variable]) for variable, (name, role) in USERS.items() if env.get(variable)]
    subprocess.run(
        [sys.executable, "-c", _SET_USERS], input=json.dumps(users), env=env, check=True, capture_output=True, text=True
    )
    return [f"{name} ({role})" for name, role, _ in users]


@dataclass
class Component:
    name: str
    command: list[str]
    cwd: Path
    env: dict[str, str] | None = None  # its own variables, on top of the shared ones
    process: subprocess.Popen[bytes] | None = None
    reported: bool = False  # that it stopped (a worker, while the command goes on)

    def start(self, env: dict[str, str], logs: Path) -> None:
        self.cwd.mkdir(parents=True, exist_ok=True)
        log = (logs / f"{self.name}.log").open("ab")
        # in the command's process group: Ctrl-C, or stopping the command's group, stops every component
        self.process = subprocess.Popen(
            self.command, env={**env, **(self.env or {})}, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT
        )
        (logs / f"{self.name}.pid").write_text(f"{self.process.pid}\n")


def stop_all(parts: list[Component], seconds: float = 20) -> None:
    """Stop every component but the API server, then the API server: SIGTERM to each one still running,
    SIGKILL to those still running `seconds` later. A worker's warm shutdown lets its running tasks end,
    and they need the API server to report it (stopped with the rest, each of them retried its calls
    until it was killed)."""
    last = [p for p in parts if p.name == API_SERVER]
    for group in ([p for p in parts if p not in last], last):
        running = [p.process for p in group if p.process is not None and p.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + seconds
        for process in running:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def stopped(parts: list[Component]) -> Component | None:
    """The component whose end ends the command: any but a worker, or the last worker. A worker that
    stops while another runs is only reported: as when a machine of a deployment is lost, Airflow
    fails its task instances once their heartbeats time out and retries them on the other worker."""
    ended = [p for p in parts if p.process is not None and p.process.poll() is not None]
    for part in ended:
        if part.name not in WORKERS or all(w in {e.name for e in ended} for w in WORKERS):
            return part
        if not part.reported:
            part.reported = True
            print(
                f"{part.name} stopped (exit {part.process.returncode if part.process else '?'}): its tasks are"
                " retried on the other worker once their heartbeats time out.",
                file=sys.stderr,
                flush=True,
            )
    return None


def worker_hostname() -> str:
    """The host name a task instance records (Airflow's `hostname_callable`): `worker-1@host` in a
    worker of `make celery`, so that two workers on one machine can be told apart; the host elsewhere."""
    import socket

    name = os.environ.get("CUSTOMER_IMPORT_WORKER_NAME")
    return f"{name}@{socket.getfqdn()}" if name else socket.getfqdn()


def components(port: str) -> list[Component]:
    airflow = [sys.executable, "-m", "airflow"]
    root = state_dir()
    parts = [
        Component(API_SERVER, [*airflow, "api-server", "--port", port], root / "api-server"),
        Component("scheduler", [*airflow, "scheduler"], root / "scheduler"),
        Component("dag-processor", [*airflow, "dag-processor"], root / "dag-processor"),
        Component("triggerer", [*airflow, "triggerer"], root / "triggerer"),
    ]
    for worker in WORKERS:  # each its own working directory and Celery host name
        parts.append(
            Component(
                worker,
                [*airflow, "celery", "worker", "--celery-hostname", f"{worker}@%h", "--concurrency", "2"],
                root / worker,
                {
                    "CUSTOMER_IMPORT_WORKER_NAME": worker,
                    "AIRFLOW__CORE__HOSTNAME_CALLABLE": "customer_import.local.celery_cluster.worker_hostname",
                },
            )
        )
    return parts


def workers_of_finished_runs(metadata_url: str, since: Any, seen: set[str]) -> Iterator[str]:
    """A line per `customer_import` run that ended since `since` and was not told yet: which worker
    ran which of its tasks (every try, from the task instances and their history)."""
    import psycopg

    url = metadata_url.replace("postgresql+psycopg2", "postgresql")
    with psycopg.connect(url) as conn:
        ended = conn.execute(
            "SELECT run_id, state FROM dag_run WHERE dag_id = 'customer_import' AND end_date >= %s"
            " AND state IN ('success', 'failed') ORDER BY end_date",
            [since],
        ).fetchall()
        for run_id, state in ended:
            if run_id in seen:
                continue
            seen.add(run_id)
            tries = conn.execute(
                "SELECT task_id, try_number, hostname, state, start_date FROM task_instance_history"
                " WHERE dag_id = 'customer_import' AND run_id = %s"
                " UNION ALL SELECT task_id, try_number, hostname, state, start_date FROM task_instance"
                " WHERE dag_id = 'customer_import' AND run_id = %s ORDER BY start_date NULLS LAST",
                [run_id, run_id],
            ).fetchall()
            shown = []
            for task_id, try_number, hostname, task_state, _ in tries:
                if hostname:
                    where = hostname.split("@")[0] if "@" in hostname else hostname
                    retry = f" (try {try_number}, {task_state})" if try_number > 1 or task_state != "success" else ""
                    shown.append(f"{task_id}@{where}{retry}")
            yield f"customer_import {run_id} {state}: " + ", ".join(shown)
