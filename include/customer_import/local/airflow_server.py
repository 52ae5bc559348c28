"""How the local commands (`make import`, `make demo`, `make rollback`) run a DAG, and what they
leave behind when they are killed.

With an Airflow scheduler alive on the same metadata database (`make airflow`), a command hands
the work to it, as the Imports page does: the file into landing, a triggered run, and the command
follows that run to its end. Only when no scheduler runs does it run the DAG in its own process
(`dag.test`); two schedulers of one run would race for its tasks.

A run a command starts in its own process is recorded under `.state/local-runs/` with the
command's process id. A command killed with SIGKILL cannot clean up, so every local command
first looks for records whose process is gone: their Airflow run is failed with a note saying
why (otherwise every file that arrived after it would wait for it to merge), and their import run
ends `failed` with its file kept in rejected/, where clearing the Airflow run imports it again.

Like `cli`, this module imports Airflow (lazily); the core package does not.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any

from customer_import.settings import REPO_ROOT, Settings

ABANDONED = "The local command that ran this run (pid {pid}) stopped before the run finished, so it was failed. {what}"


def kept_secret(path: Path, length: int = 12) -> str:
    """A secret (a password, a signing key) generated once and kept, readable by its owner only
    from the start."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    value = secrets.token_urlsafe(length)
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
    return value


def _records_dir(settings: Settings) -> Path:
    return settings.data_dir.parent / "local-runs"


def _started(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot), or None if there is no such process:
    a pid reused by another process does not count as the same one."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


@contextmanager
def owned(settings: Settings, dag_id: str, logical_date: datetime) -> Iterator[None]:
    """Record that this process runs `dag_id` at `logical_date` while the block runs."""
    directory = _records_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    record = directory / f"{dag_id}__{logical_date.strftime('%Y%m%dT%H%M%S%f')}.json"
    pid = os.getpid()
    record.write_text(
        json.dumps({"dag_id": dag_id, "logical_date": logical_date.isoformat(), "pid": pid, "started": _started(pid)})
    )
    try:
        yield
    finally:
        record.unlink(missing_ok=True)


FinishImportRun = Callable[[str, str, int], str]


def reap_abandoned(settings: Settings, finish_import_run: FinishImportRun) -> list[str]:
    """Fail the runs of local commands that died; what was done, a sentence each.

    `finish_import_run(dag_id, airflow_run_id, pid)` ends the import run of an Airflow run that
    is being failed (keeping its file) and says what became of it.
    """
    directory = _records_dir(settings)
    done = []
    for record in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        owner = json.loads(record.read_text())
        if owner["started"] is not None and _started(owner["pid"]) == owner["started"]:
            continue  # its command still runs
        done.extend(fail_run(owner, finish_import_run))
        record.unlink(missing_ok=True)
    return done


def fail_run(owner: dict[str, Any], finish_import_run: FinishImportRun) -> list[str]:
    """Fail the Airflow run `owner` names (if it is not finished) and its import run."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, State, TaskInstanceState
    from sqlalchemy import select

    logical_date = datetime.fromisoformat(owner["logical_date"])
    with create_session() as session:
        run = session.scalar(
            select(DagRun).where(DagRun.dag_id == owner["dag_id"], DagRun.logical_date == logical_date)
        )
        if run is None or run.state in State.finished_dr_states:
            return []
        run_id = run.run_id
    note = ABANDONED.format(pid=owner["pid"], what=finish_import_run(owner["dag_id"], run_id, owner["pid"]))
    with create_session() as session:
        run = session.scalar(select(DagRun).where(DagRun.dag_id == owner["dag_id"], DagRun.run_id == run_id))
        if run is None:  # deleted meanwhile: nothing to mark
            return []
        for ti in run.get_task_instances(session=session):
            if ti.state not in State.finished:
                ti.state = TaskInstanceState.FAILED if ti.state else TaskInstanceState.UPSTREAM_FAILED
        run.set_state(DagRunState.FAILED)
        run.note = note
    return [f"{owner['dag_id']} run {run_id}: {note}"]


# --- a live scheduler ------------------------------------------------------------------------


def scheduler_heartbeats() -> bool:
    """Whether a scheduler has heartbeaten on this metadata database in the last minute, asked with one
    libpq query before Airflow is imported (a command that will hand its run to the scheduler need not
    start what would run it here). `scheduler_alive` decides; this one answers False when unsure (a
    metadata database that is not PostgreSQL, or not migrated yet)."""
    import psycopg

    url = os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "")
    scheme, _, rest = url.partition("://")
    if not scheme.startswith("postgres"):
        return False
    try:
        with psycopg.connect(f"postgresql://{rest}", connect_timeout=5) as conn:
            return (
                conn.execute(
                    "SELECT 1 FROM job WHERE job_type = 'SchedulerJob' AND state = 'running'"
                    " AND latest_heartbeat > now() - interval '1 minute' LIMIT 1"
                ).fetchone()
                is not None
            )
    except psycopg.Error:
        return False


def scheduler_alive() -> bool:
    """Whether an Airflow scheduler heartbeats on this metadata database now."""
    from airflow.jobs.job import most_recent_job

    job = most_recent_job("SchedulerJob")
    return job is not None and job.is_alive()


def hand_over(dag_id: str, handover: dict[str, Any]) -> str:
    """Trigger `dag_id` as the landing watch would (`Folders.handovers`); the Airflow run id."""
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.exceptions import DagRunAlreadyExists
    from airflow.utils.types import DagRunTriggeredByType

    with suppress(DagRunAlreadyExists):  # the landing watch handed it over first: the same run
        trigger_dag(
            dag_id,
            triggered_by=DagRunTriggeredByType.CLI,
            run_id=handover["trigger_run_id"],
            conf=handover["conf"],
            logical_date=datetime.fromisoformat(handover["logical_date"]),
            run_after=datetime.fromisoformat(handover["run_after"]),
            replace_microseconds=False,
        )
    run_id: str = handover["trigger_run_id"]
    return run_id


def follow(dag_id: str, run_id: str, say: Callable[[str], None], poll_seconds: float = 1.0) -> str:
    """Wait for the Airflow run to end, saying each task's new state; its final state."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import State

    seen: dict[str, str] = {}
    while True:
        with create_session() as session:
            run = DagRun.find(dag_id=dag_id, run_id=run_id, session=session)[0]
            states = {ti.task_id: str(ti.state) for ti in run.get_task_instances(session=session) if ti.state}
            state = str(run.state)
        for task, task_state in states.items():
            if seen.get(task) != task_state:
                say(f"  {time.strftime('%H:%M:%S')} {task}: {task_state}")
        seen = states
        if state in {str(s) for s in State.finished_dr_states}:
            return state
        time.sleep(poll_seconds)


# --- a whole Airflow, started by a program (the tests, the benchmark) ------------------------


def sign_in(base: str, password: str, username: str = "admin") -> str | None:
    """A bearer token from Airflow's API server at `base`, or None while it does not give one."""
    import urllib.request

    body = json.dumps({"username": username, "password": password}).encode()
    request = urllib.request.Request(f"{base}/auth/token", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            token: str = json.load(response)["access_token"]
            return token
    except OSError:
        return None


def status_of(url: str, token: str | None = None) -> int:
    """The HTTP status of a GET (0 when nothing answers)."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


class AirflowDidNotStart(RuntimeError):
    pass


@contextmanager
def started(
    env: dict[str, str], log: Path, command: str = "airflow", dag_ids: tuple[str, ...] = ("customer_import",)
) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m customer_import.local.cli airflow` (or `celery`) with `env`, its output in `log`, until
    its API server serves the DAGs `dag_ids` (parsed) to the admin (`AIRFLOW_ADMIN_PASSWORD`); stopped
    whole afterwards (it runs in a process group of its own)."""
    base = f"http://localhost:{env['AIRFLOW_PORT']}"
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "customer_import.local.cli", command],
            env=env,
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 240
        while True:
            token = sign_in(base, env["AIRFLOW_ADMIN_PASSWORD"])
            if token and all(status_of(f"{base}/api/v2/dags/{dag_id}", token) == 200 for dag_id in dag_ids):
                break
            if server.poll() is not None or time.monotonic() > deadline:
                raise AirflowDidNotStart(f"Airflow did not come up; its log:\n{log.read_text()[-5000:]}")
            time.sleep(1)
        yield server
    finally:
        stop_group(server)


def stop_group(server: subprocess.Popen[bytes]) -> None:
    """Stop a process and every process it started (they share its process group): the process first,
    which stops what it started in its own order (`make celery` stops its workers while the API server
    still answers their tasks), then whatever is left of the group."""
    server.terminate()
    with suppress(subprocess.TimeoutExpired):
        server.wait(30)
    deadline = time.monotonic() + 60
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
        while time.monotonic() < deadline:
            os.killpg(server.pid, 0)  # raises once the whole group is gone
            time.sleep(0.5)
        os.killpg(server.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
