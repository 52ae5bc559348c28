"""Running the DAG in this process, as `make import` and `make demo` do without a scheduler (or
handing the file to a running one), and the databases these commands configure: the customer_db
connection and Airflow's metadata, on the embedded PostgreSQL unless configured."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from customer_import.contract.fields import load_contract
from customer_import.local.execution_api import served_beside
from customer_import.settings import REPO_ROOT, Settings
from customer_import.sources.profiles import DEFAULT, load_sources
from customer_import.storage.folders import Folders
from customer_import.storage.store import DataStore

if TYPE_CHECKING:
    from customer_import.database.runs import ImportRun
    from customer_import.local.execution_api import ServedExecutionApi

DAGS = REPO_ROOT / "dags"


# --- environment ---------------------------------------------------------------------


def configure_databases() -> None:
    """Point the target and Airflow's metadata at the embedded server unless configured.

    Also: the project's DAGs start unpaused locally, whichever command registers them first
    (`make demo` does, through `dag.test`), so `make airflow` watches the landing folder at once;
    and the links a local run writes into its task logs point where `make airflow` serves.
    """
    from customer_import.local import embedded_db as localdb

    os.environ.setdefault("AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION", "False")
    os.environ.setdefault("AIRFLOW__API__BASE_URL", local_base_url())
    if not os.environ.get("AIRFLOW_CONN_CUSTOMER_DB"):
        os.environ["AIRFLOW_CONN_CUSTOMER_DB"] = localdb.database_url("customers")
    if not os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"):
        os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = localdb.database_url("airflow", "postgresql+psycopg2")


def local_base_url() -> str:
    """Where `make airflow` serves: the address it listens on (a link to `localhost` would ask a
    person signed in at 127.0.0.1 to sign in again), on AIRFLOW_PORT."""
    host, port = os.environ.get("AIRFLOW_HOST", "127.0.0.1"), os.environ.get("AIRFLOW_PORT", "8080")
    return f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}"


def configured_or_embedded_url() -> str:
    """The libpq URI of the target database: the Airflow connection `customer_db` (URI or JSON form) when
    configured, else the embedded PostgreSQL's database `customers`, which this starts when it is not running."""
    configure_databases()
    value = os.environ["AIRFLOW_CONN_CUSTOMER_DB"]
    if value.lstrip().startswith("{"):
        from airflow.sdk import Connection

        value = Connection.from_json(value, conn_id="customer_db").get_uri()
    scheme, rest = value.split("://", 1)
    return "postgresql://" + rest if scheme.startswith(("postgres", "postgresql")) else value


def migrate_airflow() -> None:
    """`airflow db migrate`, once per metadata database and Airflow version."""
    import airflow

    home = Path(os.environ.get("AIRFLOW_HOME", REPO_ROOT / ".state" / "airflow"))
    home.mkdir(parents=True, exist_ok=True)
    stamp = home / ".migrated"
    wanted = f"{airflow.__version__} {os.environ['AIRFLOW__DATABASE__SQL_ALCHEMY_CONN']}"
    with (home / ".migrate.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # commands (or test workers) started together migrate once
        if stamp.exists() and stamp.read_text() == wanted:
            return
        print("Preparing Airflow's metadata database (first run only)...", flush=True)
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, stdout=subprocess.DEVNULL)
        stamp.write_text(wanted)


# --- running the DAG -----------------------------------------------------------------


def run_dag(
    dag_id: str,
    conf: dict[str, Any],
    log_file: Path,
    logical_date: datetime | None = None,
    run_id: str | None = None,
    api: ServedExecutionApi | None = None,
) -> Any:
    """Run DAG `dag_id` (the file of that name in dags/) once through Airflow (`dag.test`), in this process,
    as of `logical_date` (default: now), as run `run_id` (default: dag.test's `manual__<date>`), its tasks'
    calls answered by `api` when given (see `local.execution_api`), else by dag.test's in-process API.

    Returns the DagRun; Airflow's own output (every task's log) goes to `log_file`. The run is
    recorded as this process's while it runs (see `localairflow`): stopped by SIGINT or SIGTERM,
    the process fails it before exiting; killed outright, the next local command does.
    """
    import importlib.util

    from airflow.sdk import DAG

    from customer_import.local import airflow_server as localairflow

    migrate_airflow()
    log_file.parent.mkdir(parents=True, exist_ok=True)
    logical_date = logical_date or datetime.now(UTC)
    settings = Settings.from_env()
    try:
        with _output_to(log_file), localairflow.owned(settings, dag_id, logical_date), stopped_by_signals():
            spec = importlib.util.spec_from_file_location(f"{dag_id}_dag", DAGS / f"{dag_id}_dag.py")
            assert spec is not None and spec.loader is not None, f"no DAG file for {dag_id}"
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            dag = next(v for v in vars(module).values() if isinstance(v, DAG) and v.dag_id == dag_id)
            with _named(run_id), api.answering_dag_test() if api else nullcontext():
                dag_run = dag.test(run_conf=conf, logical_date=logical_date)
        _file_task_logs(dag_run, log_file)
        return dag_run
    except KeyboardInterrupt:
        owner = {"dag_id": dag_id, "logical_date": logical_date.isoformat(), "pid": os.getpid()}
        for line in localairflow.fail_run(owner, _finish_import_run):
            print(line, file=sys.stderr)
        raise


@contextmanager
def _named(run_id: str | None) -> Iterator[None]:
    """dag.test takes no run id: it asks DagRun.generate_run_id for a manual one; this one answers
    `run_id` instead, so that a run `make import` runs in its process is named after its file, as
    the scheduler's runs are."""
    if run_id is None:
        yield
        return
    from unittest.mock import patch

    from airflow.models.dagrun import DagRun

    with patch.object(DagRun, "generate_run_id", return_value=run_id):
        yield


def _file_task_logs(dag_run: Any, log_file: Path) -> None:
    """Give each task of an in-process run its log where Airflow's UI reads task logs, as the
    scheduler's workers do: the part of `log_file` between `dag.test`'s start and end of the task."""
    from airflow.configuration import conf

    folder = Path(conf.get("logging", "base_log_folder"))
    tries = {ti.task_id: ti.try_number or 1 for ti in dag_run.get_task_instances()}
    task: str | None = None
    lines: list[str] = []
    for line in log_file.read_text(errors="replace").splitlines(keepends=True):
        started = re.search(r"\[DAG TEST\] starting task_id=(\S+)", line)
        if started:
            task, lines = started.group(1), []
        elif task and "[DAG TEST] end task" in line:
            target = (
                folder
                / f"dag_id={dag_run.dag_id}"
                / f"run_id={dag_run.run_id}"
                / f"task_id={task}"
                / f"attempt={tries.get(task, 1)}.log"
            )
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("".join(json.dumps(record) + "\n" for record in structured_log(lines)))
            task = None
        elif task:
            lines.append(line)


_LINE = re.compile(r"^(?P<timestamp>\d{4}-\d\d-\d\dT[\d:.]+Z?) \[(?P<level>\w+)\s*\] (?P<rest>.*)$")
_SOURCE = re.compile(r"^(?P<event>.*?)\s+\[(?P<logger>[\w.]+)\](?P<pairs>(?: [\w.]+=\S*)*)\s*$")
_FRAME = re.compile(r'^\s*File "(?P<filename>[^"]+)", line (?P<lineno>\d+), in (?P<name>\S+)')
_RAISED = re.compile(r"^(?P<type>[A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit|Warning)?): (?P<value>.*)$")


def structured_log(lines: list[str]) -> list[dict[str, Any]]:
    """A task's lines as dag.test prints them (`2026-12-03T08:09:08Z [error    ] event [logger] k=v`,
    a traceback below) turned into the JSON records a scheduler's worker writes, which Airflow's log
    view shows with one timestamp, the level, the source and the exception folded as it folds its own."""
    records: list[dict[str, Any]] = []
    traceback: list[str] = []

    def fold() -> None:
        if records and traceback:
            frames = [m.groupdict() for m in map(_FRAME.match, traceback) if m]
            raised = next((m for m in map(_RAISED.match, reversed(traceback)) if m), None)
            if frames and raised:
                records[-1]["error_detail"] = [
                    {
                        "exc_type": raised["type"].rsplit(".", 1)[-1],
                        "exc_value": raised["value"],
                        "frames": [{**f, "lineno": int(f["lineno"])} for f in frames],
                    }
                ]
            else:
                records[-1]["event"] += "\n" + "\n".join(traceback)
        traceback.clear()

    for line in lines:
        line = line.rstrip("\n")
        if not (head := _LINE.match(line)):
            if line.strip() and records:
                traceback.append(line)
            continue
        fold()
        record: dict[str, Any] = {"timestamp": head["timestamp"], "level": head["level"]}
        if source := _SOURCE.match(head["rest"]):
            record["event"], record["logger"] = source["event"], source["logger"]
            record.update(tuple(pair.split("=", 1)) for pair in source["pairs"].split())
        else:
            record["event"] = head["rest"]
        records.append(record)
    fold()
    return records


class _Stopped(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the command fails its run before it exits."""


@contextmanager
def stopped_by_signals() -> Iterator[None]:
    def stop(signum: int, frame: object) -> None:
        raise _Stopped

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _finish_import_run(dag_id: str, airflow_run_id: str, pid: int) -> str:
    """End the import run of an Airflow run that is being failed: what became of its file."""
    from customer_import.database import db
    from customer_import.database.runs import find_claimed
    from customer_import.pipeline import Importer

    if dag_id != "customer_import":
        return "Its changes were rolled back with its transaction."
    importer = Importer()
    with db.use_schema(db.connect(configured_or_embedded_url()), importer.settings.schema) as conn:
        run = find_claimed(conn, dag_id, airflow_run_id)
        if run is None:
            return "It had not claimed its file: the file stays in landing/ and will be imported; delete it to abandon."
        if not run.is_finished:
            run = importer.publish_report(
                conn,
                run.id,
                failure=(
                    f"The local command that ran this import (pid {pid}) stopped before it finished: nothing was merged"
                    " and the file is kept. Clear the Airflow run to import it again, or run make import again."
                ),
            )
    kept = f"; its file is kept in {run.file_path}" if run.file_path else ""
    return f"Import run {run.id} ended {run.status}{kept}."


def reap_abandoned_runs() -> None:
    """Fail the runs of local commands that were killed (see `localairflow`), saying so."""
    from customer_import.local import airflow_server as localairflow

    for line in localairflow.reap_abandoned(Settings.from_env(), _finish_import_run):
        print(f"Cleaned up after a stopped command: {line}", flush=True)


def log_file_for(settings: Settings, what: str) -> Path:
    return settings.data_dir.parent / "logs" / f"{time.strftime('%Y%m%dT%H%M%S')}-{what}.log"


def execution_api_beside(settings: Settings) -> AbstractContextManager[ServedExecutionApi | None]:
    """The execution API for this command's `run_dag`, starting on the other core (see `local.execution_api`),
    or None when a scheduler heartbeats: the command will hand its run to it. What the API logs goes to
    `logs/execution-api.log` (Airflow's own lines; each run's task logs are apart)."""
    from customer_import.local import airflow_server as localairflow

    if localairflow.scheduler_heartbeats():
        return nullcontext(None)
    return served_beside(settings.data_dir.parent / "logs" / "execution-api.log")


@contextmanager
def _output_to(path: Path) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors 1 and 2) to `path`."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with path.open("ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def import_through_dag(path: Path, options: dict[str, Any], source: str = DEFAULT) -> int:
    """Drop `path` into the landing folder of `source`, import it through the DAG, print the
    outcome; the exit code. `options` are the run's options beside the source's."""
    settings = Settings.from_env()
    sources = load_sources(settings.sources_file, load_contract())
    try:
        chosen = sources[source]
    except KeyError as unknown:
        print(unknown.args[0])
        return 2
    configure_databases()  # before the data folders: on object storage, they import Airflow
    with execution_api_beside(settings) as api:
        return _import_through_dag(
            path, {**chosen.run_conf, **options}, chosen.run_name, sources.folders(settings.store.root, source), api
        )


def _import_through_dag(
    path: Path, options: dict[str, Any], source: str, folders: Folders, api: ServedExecutionApi | None
) -> int:
    """Drop `path` into landing, import it through the DAG, print the outcome; the exit code.

    With a scheduler running (`make airflow`), the run is handed to it and followed; else it runs
    in this process, its tasks' calls answered by `api`.
    """
    from customer_import.database import db
    from customer_import.database.runs import FAILED_STATUSES, find_claimed
    from customer_import.local import airflow_server as localairflow
    from customer_import.local.executors import preload
    from customer_import.storage.folders import drop_into_landing

    migrate_airflow()
    reap_abandoned_runs()
    settings = Settings.from_env()
    name = drop_into_landing(path, folders)
    print(
        f"{name} is in {'/'.join(filter(None, ['landing', folders.landing_folder]))}/: if this command is stopped"
        " before it is claimed, it stays there and will be imported (delete it to abandon).",
        flush=True,
    )
    started = time.monotonic()
    log_file = log_file_for(settings, name)
    handover = folders.handovers([name], source, options)[0]  # the run id and arrival time the watch would give it
    if localairflow.scheduler_alive():
        if api:
            api.stop()
        airflow_run_id = localairflow.hand_over("customer_import", handover)
        print(f"Handed to the running Airflow scheduler as run {airflow_run_id}:", flush=True)
        localairflow.follow("customer_import", airflow_run_id, lambda line: print(line, flush=True))
        log_file = Path(os.environ["AIRFLOW_HOME"]) / "logs" / "dag_id=customer_import" / f"run_id={airflow_run_id}"
    else:
        # what the tasks import, and dag.test's supervisor, while the execution API builds its routes beside
        preload("airflow.api_fastapi.common.dagbag")
        airflow_run_id = run_dag(
            "customer_import",
            handover["conf"],
            log_file,
            # named after the file as the watch names it, but neither the watch's id nor its logical date
            # (the file's arrival): a command killed before the claim leaves its file in landing, for
            # the watch to import as its own run
            run_id="local__" + handover["trigger_run_id"].removeprefix("file__"),
            api=api,
        ).run_id
    with db.use_schema(db.connect(configured_or_embedded_url()), settings.schema) as conn:
        run = find_claimed(conn, "customer_import", airflow_run_id)
    if run is None:
        print(f"failed: the DAG run {airflow_run_id} did not register {name}; see {log_file}")
        return 1
    print()
    print(run.outcome)
    if (step := _next_step(run, path, source)) is not None:
        print(f"  next:       {step}")
    if run.report_dir:
        where = settings.store.location
        print(f"  report:     {where(f'{run.report_dir}/report.html')}")
        print(f"  errors.csv: {where(f'{run.report_dir}/errors.csv')}")
        print(f"  summary:    {where(f'{run.report_dir}/summary.json')}")
        print(f"  file kept:  {where(run.claimed_file)}")
        for sentence in _value_changes(settings, run.report_dir):
            print(f"  changed:    {sentence}")
    print(f"  Airflow:    DAG run {airflow_run_id}, log {log_file}")
    print(f"  took {time.monotonic() - started:.1f} s")
    return 1 if run.status in FAILED_STATUSES else 0


def _next_step(run: ImportRun, path: Path, source: str) -> str | None:
    """The command that does what the outcome suggests, to type as it is."""
    from customer_import.reading.charsets import suggested_encoding

    again = f"make import FILE={shlex.quote(str(path))}" + (f" SOURCE={source}" if source else "")
    if run.status == "duplicate":
        return f"to import it anyway: {again} FORCE=1"
    if run.status == "rejected" and run.file_rejected and (encoding := suggested_encoding(run.message)):
        return f"to read it as {encoding}: {again} ENCODING={encoding}"
    if run.status == "rejected" and run.deactivation_refused:
        return f"if the export is complete: {again} SNAPSHOT=full ALLOW_MASS_DEACTIVATION=1"
    return None


def _value_changes(settings: Settings, report_dir: str) -> list[str]:
    """What reading changed in the run's values, as its summary.json says it (nothing is changed unsaid)."""
    found = settings.store.find(f"{report_dir}/summary.json")
    if found is None:
        return []
    with DataStore.open(found) as summary:
        return [str(change["message"]) for change in json.load(summary).get("value_changes", [])]
