"""The local commands behind the Makefile: `python -m customer_import.local.cli <command>`.

Every command resolves the databases the same way: the target database is the Airflow
connection `customer_db` (AIRFLOW_CONN_CUSTOMER_DB) when it is set, else a database on the
embedded PostgreSQL; Airflow's own metadata goes to AIRFLOW__DATABASE__SQL_ALCHEMY_CONN when
set, else to another database of the embedded server. This module is the one place of the
package that starts Airflow (lazily, for the commands that run the DAG).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from customer_import.contract.fields import load_contract
from customer_import.contract.options import MODES, ON_ERROR_CHOICES, SNAPSHOTS
from customer_import.local.dag_runs import (
    configure_databases,
    configured_or_embedded_url,
    execution_api_beside,
    import_through_dag,
    log_file_for,
    migrate_airflow,
    reap_abandoned_runs,
    run_dag,
    stopped_by_signals,
)
from customer_import.report import ROLLBACK_JSON
from customer_import.settings import REPO_ROOT, Settings
from customer_import.sources.profiles import DEFAULT

if TYPE_CHECKING:
    from customer_import.local.execution_api import ServedExecutionApi

SAMPLE_FILE = Path(__file__).parents[1] / "sample" / "customers_sample.csv"
PRELOADED_LOCAL_EXECUTOR = "customer_import.local.executors.PreloadedLocalExecutor"


# --- commands ------------------------------------------------------------------------


def cmd_import(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        print(f"{path} is not a file")
        return 2
    given = {
        "mode": args.mode,
        "on_error": args.on_error,
        "max_error_rate": args.max_error_rate,
        "dry_run": args.dry_run or None,
        "force": args.force or None,
        "encoding": args.encoding,
        "snapshot": args.snapshot,
        "max_deactivate_share": args.max_deactivate_share,
        "allow_mass_deactivation": args.allow_mass_deactivation or None,
    }
    return import_through_dag(path, {k: v for k, v in given.items() if v is not None}, args.source)


def cmd_demo(args: argparse.Namespace) -> int:
    print(f"Importing the bundled sample {SAMPLE_FILE.relative_to(REPO_ROOT)} through the customer_import DAG...")
    code = import_through_dag(SAMPLE_FILE, {})
    print(
        '\nThe customers are in the database `make db-url` prints (e.g. `psql "$(make -s db-url)"`).'
        "\nRun `make demo` again: the same content is recognised as a duplicate and not applied twice."
    )
    return code


def cmd_rollback(args: argparse.Namespace) -> int:
    configure_databases()
    settings = Settings.from_env()
    with execution_api_beside(settings) as api:
        return _rollback(args.run_id, settings, api)


def _rollback(run_id: int, settings: Settings, api: ServedExecutionApi | None) -> int:
    from customer_import.database import db
    from customer_import.database.runs import get_run
    from customer_import.local import airflow_server as localairflow

    migrate_airflow()
    reap_abandoned_runs()
    log_file = log_file_for(settings, f"rollback-{run_id}")
    conf = {"import_run_id": run_id}
    if localairflow.scheduler_alive():
        if api:
            api.stop()
        now = datetime.now(UTC).isoformat()
        handover = {
            "trigger_run_id": f"rollback__{run_id}__{now}",
            "conf": conf,
            "logical_date": now,
            "run_after": now,
        }
        airflow_run_id = localairflow.hand_over("customer_import_rollback", handover)
        print(f"Handed to the running Airflow scheduler as run {airflow_run_id}:", flush=True)
        state = localairflow.follow("customer_import_rollback", airflow_run_id, lambda line: print(line, flush=True))
    else:
        state = str(run_dag("customer_import_rollback", conf, log_file, api=api).state)
    with db.use_schema(db.connect(configured_or_embedded_url()), settings.schema) as conn:
        try:
            run = get_run(conn, run_id)
        except LookupError:
            run = None
    if state != "success" or run is None:
        reason = f"the run is {run.status} ({run.message})" if run else "there is no such import run"
        print(f"rollback of import run {run_id} failed: {reason}. Airflow log: {log_file}")
        return 1
    print(f"rolled_back (import run {run.id}, {run.file_name}). {run.message}")
    print(f"  report:     {settings.store.location(f'reports/{run.id}/{ROLLBACK_JSON}')}")
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    """Erase one customer through the customer_import_forget DAG (in this process: the key is not
    handed to a scheduler's queue, where it would wait in a run's conf)."""
    from customer_import.database import db
    from customer_import.erasure import key_hash

    configure_databases()
    settings = Settings.from_env()
    with execution_api_beside(settings) as api:
        migrate_airflow()
        reap_abandoned_runs()
        log_file = log_file_for(settings, f"forget-{key_hash(args.key)[:12]}")
        dag_run = run_dag("customer_import_forget", {"key": args.key}, log_file, api=api)
    with db.use_schema(db.connect(configured_or_embedded_url()), settings.schema) as conn:
        done = conn.execute(
            "SELECT customers, history_rows, files FROM erasures WHERE key_sha256 = %s ORDER BY id DESC LIMIT 1",
            [key_hash(args.key)],
        ).fetchone()
    if str(dag_run.state) != "success" or done is None:
        print(f"Nothing was forgotten: no customer, history or kept file holds that key. Airflow log: {log_file}")
        return 1
    customers, history_rows, files = done
    print(
        f"Forgotten: {customers} customer row, {history_rows} history rows, {files} kept files rewritten"
        " without it. erasures records the key's SHA-256, not the key."
    )
    return 0


def cmd_template(args: argparse.Namespace) -> int:
    from customer_import.sources.guide import GUIDE_FILE, guide_csv

    path = Path(args.path)
    path.write_bytes(load_contract().template_csv())
    guide = path.with_name(GUIDE_FILE)
    guide.write_bytes(guide_csv(load_contract()))
    print(f"Wrote {path}: the header row of the customer CSV file; fill in one row per customer.")
    print(f"Wrote {guide}: the field guide, what each column means and how to write it.")
    return 0


def cmd_expectations(args: argparse.Namespace) -> int:
    from customer_import.local.generated import write_all

    written = write_all(load_contract(), Settings.from_env().expectations_dir)
    for path in written:
        print(f"Wrote {path.relative_to(REPO_ROOT)} from the contract and the settings.")
    if not written:
        print("The generated files (the GX suite, the SQL, docs/configuration.md's settings table) are up to date.")
    return 0


def cmd_db_url(args: argparse.Namespace) -> int:
    print(configured_or_embedded_url())
    return 0


def cmd_airflow(args: argparse.Namespace) -> int:
    """Airflow standalone (API server with the UI, scheduler, DAG processor, triggerer).

    It listens on 127.0.0.1 unless AIRFLOW_HOST says otherwise; the admin password is
    AIRFLOW_ADMIN_PASSWORD, or one generated once and kept (mode 0600) under AIRFLOW_HOME. The
    URL is printed once the UI answers.
    """
    from customer_import.local import airflow_server as localairflow

    configure_databases()
    migrate_airflow()
    reap_abandoned_runs()
    home = Path(os.environ["AIRFLOW_HOME"])
    password = os.environ.get("AIRFLOW_ADMIN_PASSWORD") or localairflow.kept_secret(home / "admin-password")
    passwords = home / "simple_auth_manager_passwords.json"
    passwords.touch(mode=0o600)
    users = {"admin": password}
    if os.environ.get("AIRFLOW_VIEWER_PASSWORD"):  # a second user, to see what a read-only role sees
        users["viewer"] = os.environ["AIRFLOW_VIEWER_PASSWORD"]
    passwords.write_text(json.dumps(users))
    host, port = os.environ.get("AIRFLOW_HOST", "127.0.0.1"), os.environ.get("AIRFLOW_PORT", "8080")
    os.environ.update(
        {
            # standalone starts its components as `airflow ...`: the venv's one must come first
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{u}" for u in users),  # user name: its role
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__API__HOST": host,
            "AIRFLOW__API__PORT": port,
            "AIRFLOW__API__BASE_URL": os.environ["AIRFLOW__API__BASE_URL"],  # set by configure_databases
            # the LocalExecutor, its task processes forked with GX, pandas and the pipeline imported
            "AIRFLOW__CORE__EXECUTOR": os.environ.get("AIRFLOW__CORE__EXECUTOR", PRELOADED_LOCAL_EXECUTOR),
        }
    )
    print("Starting Airflow (API server, scheduler, DAG processor, triggerer)...", flush=True)
    standalone = subprocess.Popen([sys.executable, "-m", "customer_import.local.standalone"])
    _announce("Airflow", os.environ["AIRFLOW__API__BASE_URL"], host, port, standalone, password)
    try:
        return standalone.wait()
    except KeyboardInterrupt:
        return standalone.wait()


def cmd_celery(args: argparse.Namespace) -> int:
    """Airflow on the CeleryExecutor with two workers and the FAB auth manager (see `localcelery`)."""
    from customer_import.local import airflow_server as localairflow
    from customer_import.local import celery_cluster as localcelery

    broker = os.environ.get("CELERY_BROKER_URL") or localcelery.DEFAULT_BROKER
    try:
        localcelery.check_broker(broker)
    except localcelery.BrokerUnreachable as unreachable:
        print(unreachable, file=sys.stderr)
        return 2
    configure_databases()
    migrate_airflow()
    reap_abandoned_runs()
    home = Path(os.environ["AIRFLOW_HOME"])
    password = os.environ.get("AIRFLOW_ADMIN_PASSWORD") or localairflow.kept_secret(home / "admin-password")
    host, port = os.environ.get("AIRFLOW_HOST", "127.0.0.1"), os.environ.get("AIRFLOW_PORT", "8080")
    env = localcelery.environment(host, port, broker, password)
    print("Signing in through the FAB auth manager:", ", ".join(localcelery.create_users(env)), flush=True)
    logs = localcelery.state_dir()
    logs.mkdir(parents=True, exist_ok=True)
    parts = localcelery.components(port)
    started = datetime.now(UTC)
    for part in parts:
        part.start(env, logs)
    print(f"Started {', '.join(p.name for p in parts)} (logs: {_shown(logs)}/<name>.log); broker {broker}.", flush=True)
    api = parts[0].process
    assert api is not None
    _announce("Airflow (CeleryExecutor)", env["AIRFLOW__API__BASE_URL"], host, port, api, password)
    seen: set[str] = set()
    try:
        with stopped_by_signals():
            while (stopped := localcelery.stopped(parts)) is None:
                for line in localcelery.workers_of_finished_runs(
                    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], started, seen
                ):
                    print(line, flush=True)
                time.sleep(3)
        print(f"{stopped.name} stopped (see {_shown(logs)}/{stopped.name}.log); stopping the rest.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        localcelery.stop_all(parts)


def _shown(path: Path) -> str:
    """A path as a command prints it: from the repository's root when it is inside it."""
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def _announce(what: str, url: str, host: str, port: str, server: subprocess.Popen[bytes], password: str) -> None:
    """Once the API server answers, say where it is and how to sign in."""
    if _answers(f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}/api/v2/monitor/health", server):
        shown = "(AIRFLOW_ADMIN_PASSWORD)" if "AIRFLOW_ADMIN_PASSWORD" in os.environ else password
        print(
            f"\n{what} is up: {url}  user: admin  password: {shown}\n"
            f'The Imports page: {url}/customer-import/ ("Imports" in Airflow\'s navigation)\n',
            flush=True,
        )


def _answers(url: str, process: subprocess.Popen[bytes], seconds: float = 300) -> bool:
    """Wait until `url` answers (or the process ends)."""
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except OSError:
            time.sleep(1)
    return False


def cmd_stop_db(args: argparse.Namespace) -> int:
    from customer_import.local import embedded_db as localdb

    localdb.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("Stopped. The run was failed and its file kept (see the lines above).", file=sys.stderr)
        return 130
    finally:
        # Airflow, GX and pandas leave millions of objects: the collection at exit took 1.6 s of a
        # one-row import. Frozen, they are left to the operating system (files are closed as before).
        gc.freeze()


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="customer_import", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("import", help="import one file through the customer_import DAG")
    one.add_argument("file")
    one.add_argument("--source", default=DEFAULT, help="its source in sources.yaml (default: the template)")
    one.add_argument("--mode", choices=MODES, help="default: the source's, else upsert")
    one.add_argument("--on-error", choices=ON_ERROR_CHOICES, help="default: the source's, else reject_file")
    one.add_argument("--max-error-rate", type=float, help="default: the source's, else 0")
    one.add_argument("--dry-run", action="store_true")
    one.add_argument("--force", action="store_true")
    one.add_argument(
        "--encoding", help="the file's text encoding, e.g. windows-1252 (default: the source's, else utf-8)"
    )
    one.add_argument(
        "--snapshot",
        choices=SNAPSHOTS,
        help="full: the file is the complete export (default: the source's, else delta)",
    )
    one.add_argument("--max-deactivate-share", type=float, help="default: the source's, else 0.05")
    one.add_argument(
        "--allow-mass-deactivation",
        action="store_true",
        help="a full snapshot may deactivate more than max-deactivate-share (the export is complete)",
    )
    one.set_defaults(run=cmd_import)
    commands.add_parser("demo", help="import the bundled sample").set_defaults(run=cmd_demo)
    forget = commands.add_parser("forget", help="erase one customer, by key, from the database and every kept file")
    forget.add_argument("key", help="its AccountReferenceID")
    forget.set_defaults(run=cmd_forget)
    rollback = commands.add_parser("rollback", help="roll back one import run through its DAG")
    rollback.add_argument("run_id", type=int)
    rollback.set_defaults(run=cmd_rollback)
    template = commands.add_parser("template", help="write the CSV template")
    template.add_argument("path", nargs="?", default="customers_template.csv")
    template.set_defaults(run=cmd_template)
    commands.add_parser("expectations", help="regenerate the GX suite").set_defaults(run=cmd_expectations)
    commands.add_parser("db-url", help="print the target database URI").set_defaults(run=cmd_db_url)
    commands.add_parser("airflow", help="run Airflow locally").set_defaults(run=cmd_airflow)
    commands.add_parser("celery", help="run Airflow locally on the CeleryExecutor").set_defaults(run=cmd_celery)
    commands.add_parser("stop-db", help="stop the embedded PostgreSQL").set_defaults(run=cmd_stop_db)
    args = parser.parse_args(argv)
    exit_code: int = args.run(args)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
