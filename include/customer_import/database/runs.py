"""Import runs: a run's row in `import_runs` (the status box), read and written."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from customer_import.contract.options import MAX_DEACTIVATE_SHARE, ImportOptions, Mode, OnError, Snapshot, Status
from customer_import.database import db

#: The stages of a run in progress, as a person reads them.
STAGES = {
    "validating": "Validating",
    "staging": "Loading into staging",
    "checking": "Checking against the customers",
    "merging": "Merging",
    "reporting": "Writing the reports",
}
#: Outcomes after which the Airflow run is red and `make import` exits 1.
FAILED_STATUSES = frozenset({"rejected", "failed"})
#: Outcomes whose content counts as imported, for the duplicate check.
IMPORTED_STATUSES = ("succeeded", "partial")


#: The first words of a DAG run's note: what happened, and whether the file's data or the
#: infrastructure is to blame (a rejection is the file's, a failure is retried).
HEADLINES = {
    "succeeded": "Imported",
    "partial": "Imported without its invalid rows",
    "rejected": "Rejected for its data",
    "failed": "Failed on an infrastructure error",
    "dry_run": "Dry run",
    "duplicate": "Already imported",
    "rolled_back": "Rolled back",
    "running": "Running",
}

#: What notes and alerts say of a whole-file rejection instead of its reason, which may quote the file.
WHOLE_FILE_REJECTED = "The whole file was rejected: the reason is on the run's page (it may quote the file)."


@dataclass
class ImportRun:
    id: int
    file_name: str
    file_path: str | None
    sha256: str | None
    size_bytes: int | None
    received_at: datetime
    finished_at: datetime | None
    mode: Mode
    on_error: OnError
    max_error_rate: float
    dry_run: bool
    force: bool
    dag_id: str | None
    airflow_run_id: str | None
    status: Status
    message: str | None
    file_rejected: bool
    rows_total: int | None
    rows_valid: int | None
    rows_rejected: int | None
    inserted: int | None
    updated: int | None
    unchanged: int | None
    merged_at: datetime | None
    report_dir: str | None
    rows_staged: int | None = None
    encoding: str = "utf-8"
    stage: str | None = None  # while running: one of STAGES
    stage_started_at: datetime | None = None
    rows_done: int | None = None
    rows_expected: int | None = None  # an estimate, from how much of the file the rows took
    changed_at: datetime | None = None
    source: str = "default"  # its source in sources.yaml
    snapshot: Snapshot = "delta"
    max_deactivate_share: float = MAX_DEACTIVATE_SHARE
    allow_mass_deactivation: bool = False
    deactivated: int | None = None
    reactivated: int | None = None
    deactivation_refused: int | None = None  # a full snapshot refused: how many it would deactivate
    files_removed_at: datetime | None = None  # its files and reports deleted after files_kept_days
    files_kept_days: int | None = None
    history_removed_at: datetime | None = None  # its history deleted: it can no longer be rolled back
    files_removed: int | None = None
    files_removed_bytes: int | None = None
    fixed_from: int | None = None  # the run whose file was fixed in the browser into this one's
    fixed_by: str | None = None

    @property
    def options(self) -> ImportOptions:
        return ImportOptions(**{f.name: getattr(self, f.name) for f in fields(ImportOptions)})

    @property
    def claimed_file(self) -> str:
        """Where its file rests, relative to the data folder: set when the file is claimed."""
        if self.file_path is None:
            raise LookupError(f"import run {self.id} has not claimed a file")
        return self.file_path

    @property
    def is_open(self) -> bool:
        """The run is still being processed: its outcome is not decided yet."""
        return self.status == "running"

    @property
    def is_finished(self) -> bool:
        """Its reports are published and its file is in archive/ or rejected/."""
        return self.finished_at is not None

    @property
    def shown_status(self) -> str:
        """The status a person sees: `running` until the reports are published."""
        return self.status if self.is_finished else "running"

    @property
    def outcome(self) -> str:
        """The one-line outcome `make import` prints."""
        text = f"{self.status}{self._counts} (import run {self.id}, {self.file_name})"
        return f"{text}. {self.message}" if self.message else text

    @property
    def headline(self) -> str:
        """`Rejected for its data: 8 rows, 1 rejected (import run 5, x.csv)`: a note's first line."""
        return f"{HEADLINES[self.status]}{self._counts} (import run {self.id}, {self.file_name})"

    @property
    def _counts(self) -> str:
        """`: 8 rows, 2 inserted, 5 updated, 0 unchanged, 1 rejected`; '' when there are none to tell."""
        if self.rows_total is None or (self.file_rejected and not self.rows_total):  # no zeros then
            return ""
        counts = f": {self.rows_total} row{'' if self.rows_total == 1 else 's'}"
        if self.inserted is not None:
            counts += f", {self.inserted} inserted, {self.updated} updated, {self.unchanged} unchanged"
        if self.lifecycle:
            counts += f", {self.lifecycle}"
        if self.rows_rejected:
            counts += f", {self.rows_rejected} rejected"
        return counts

    @property
    def lifecycle(self) -> str:
        """`1 reactivated, 2 deactivated`: what a full snapshot did besides its rows (a full snapshot
        always says how many it deactivated; '' for a delta that reactivated none)."""
        full = self.snapshot == "full"
        counts = (("reactivated", self.reactivated, False), ("deactivated", self.deactivated, full))
        return ", ".join(f"{n:,} {name}" for name, n, always in counts if n or (always and n is not None))

    @property
    def public_message(self) -> str | None:
        """`message` for what travels beyond the page (DAG run notes, alerts): no text of the file.
        The reason a whole file was rejected may quote a line of it, so it stays on the run's page."""
        if self.file_rejected and self.status in FAILED_STATUSES:
            return WHOLE_FILE_REJECTED
        return self.message

    @property
    def public_outcome(self) -> str:
        """`outcome` with `public_message`."""
        return replace(self, message=self.public_message).outcome

    @property
    def progress(self) -> str | None:
        """`Validating 200,000 of ~300,000 rows (67 %) · 1 min 10 s · about 35 s left`, while running.

        The estimate of rows goes once the whole file is read (`Validating 300,000 rows`); the time
        left is what the pace at the last count gave, counted down since, and goes when the count
        stands still longer than that (it would only grow)."""
        if self.is_finished or self.stage not in STAGES or self.stage_started_at is None:
            return None
        now = datetime.now(self.stage_started_at.tzinfo)
        text = STAGES[self.stage]
        done, expected = self.rows_done, self.rows_expected
        if done and self._estimating:
            assert expected is not None
            text += f" {done:,} of ~{expected:,} rows ({self.percent} %)"
        elif done:
            text += f" {done:,} rows"
        text += f" · {_duration((now - self.stage_started_at).total_seconds())}"
        if done and self._estimating and self.changed_at is not None:
            assert expected is not None
            counted = (self.changed_at - self.stage_started_at).total_seconds()  # when `done` was counted
            left = counted * (expected - done) / done - (now - self.changed_at).total_seconds()
            if counted > 0 and left >= 1:
                text += f" · about {_duration(left)} left"
        return text

    @property
    def _estimating(self) -> bool:
        """The row count is an estimate: part of the file is still to be read."""
        return bool(self.rows_done and self.rows_expected and self.rows_expected > self.rows_done)

    @property
    def percent(self) -> int | None:
        if self.is_finished:
            return 100
        if self.stage == "validating" and self.rows_done is not None and self.rows_expected:
            return min(99, 100 * self.rows_done // self.rows_expected)
        return None

    def to_dict(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(self).items()}


def _one(run: ImportRun | None, what: str) -> ImportRun:
    if run is None:
        raise LookupError(f"no row for {what}")
    return run


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


_COLUMNS = sql.SQL(", ").join(sql.Identifier(f.name) for f in fields(ImportRun))


def create_run(
    conn: psycopg.Connection,
    file_name: str,
    options: ImportOptions,
    dag_id: str | None = None,
    airflow_run_id: str | None = None,
    source: str = "default",
) -> ImportRun:
    """The run's row; an Airflow run that is cleared and run again gets its existing row back."""
    values = {
        **asdict(options),
        "file_name": file_name,
        "dag_id": dag_id,
        "airflow_run_id": airflow_run_id,
        "source": source,
    }
    with conn.cursor(row_factory=class_row(ImportRun)) as cur:
        cur.execute(
            sql.SQL(
                "INSERT INTO import_runs ({}) VALUES ({})"
                " ON CONFLICT (dag_id, airflow_run_id) DO UPDATE SET dag_id = EXCLUDED.dag_id"
                " RETURNING {}"
            ).format(
                sql.SQL(", ").join(map(sql.Identifier, values)),
                sql.SQL(", ").join(map(sql.Placeholder, values)),
                _COLUMNS,
            ),
            values,
        )
        return _one(cur.fetchone(), "INSERT ... RETURNING")


def delete_unclaimed(conn: psycopg.Connection, run_id: int) -> None:
    """Remove the row of a run that never claimed its file (another run took it first)."""
    conn.execute("DELETE FROM import_runs WHERE id = %s AND file_path IS NULL", [run_id])


def get_run(conn: psycopg.Connection, run_id: int, *, for_update: bool = False) -> ImportRun:
    with conn.cursor(row_factory=class_row(ImportRun)) as cur:
        query = sql.SQL("SELECT {} FROM import_runs WHERE id = %s").format(_COLUMNS)
        if for_update:
            query += sql.SQL(" FOR UPDATE")
        cur.execute(query, [run_id])
        run = cur.fetchone()
    if run is None:
        raise LookupError(f"there is no import run {run_id}")
    return run


def find_claimed(conn: psycopg.Connection, dag_id: str, airflow_run_id: str) -> ImportRun | None:
    """The import run an Airflow run already created (it claimed its file), if any."""
    if not _has_runs_table(conn):
        return None
    with conn.cursor(row_factory=class_row(ImportRun)) as cur:
        cur.execute(
            sql.SQL("SELECT {} FROM import_runs WHERE dag_id = %s AND airflow_run_id = %s").format(_COLUMNS),
            [dag_id, airflow_run_id],
        )
        return cur.fetchone()


def claimed_since(conn: psycopg.Connection, file_name: str, source: str, since: datetime) -> ImportRun | None:
    """The latest import run that claimed a file of this name and source at `since` or later."""
    if not _has_runs_table(conn):
        return None
    with conn.cursor(row_factory=class_row(ImportRun)) as cur:
        cur.execute(
            sql.SQL(
                "SELECT {} FROM import_runs WHERE file_name = %s AND source = %s AND received_at >= %s"
                " AND file_path IS NOT NULL ORDER BY id DESC LIMIT 1"
            ).format(_COLUMNS),
            [file_name, source, since],
        )
        return cur.fetchone()


def list_runs(
    conn: psycopg.Connection, limit: int, offset: int = 0, source: str | None = None
) -> tuple[list[ImportRun], int]:
    """One page of runs (of one source, if given), newest first, and how many there are in all (none
    before the first import)."""
    if not _has_runs_table(conn):
        return [], 0
    where = sql.SQL("WHERE source = %(source)s" if source else "")
    params = {"source": source, "limit": limit, "offset": offset}
    with conn.cursor(row_factory=class_row(ImportRun)) as cur:
        cur.execute(
            sql.SQL("SELECT {} FROM import_runs {} ORDER BY id DESC LIMIT %(limit)s OFFSET %(offset)s").format(
                _COLUMNS, where
            ),
            params,
        )
        page = cur.fetchall()
    return page, int(db.scalar(conn, sql.SQL("SELECT count(*) FROM import_runs {}").format(where), params))


def runs_by_id(conn: psycopg.Connection, ids: list[int]) -> list[ImportRun]:
    if not ids or not _has_runs_table(conn):
        return []
    with conn.cursor(row_factory=class_row(ImportRun)) as cur:
        cur.execute(sql.SQL("SELECT {} FROM import_runs WHERE id = ANY(%s) ORDER BY id").format(_COLUMNS), [ids])
        return cur.fetchall()


def last_change(conn: psycopg.Connection) -> str:
    """When any import run last changed (or was created): '' before the first."""
    if not _has_runs_table(conn):
        return ""
    changed = db.scalar(conn, "SELECT max(changed_at) FROM import_runs")
    return changed.isoformat() if changed else ""


def oldest_unfinished(conn: psycopg.Connection) -> ImportRun | None:
    """The import run that has been in progress longest: files waiting in landing queue behind it."""
    if not _has_runs_table(conn):
        return None
    with conn.cursor(row_factory=class_row(ImportRun)) as cur:
        cur.execute(
            sql.SQL("SELECT {} FROM import_runs WHERE finished_at IS NULL ORDER BY id LIMIT 1").format(_COLUMNS)
        )
        return cur.fetchone()


def _has_runs_table(conn: psycopg.Connection) -> bool:
    """Whether the schema has been created (by the first import)."""
    return db.scalar(conn, "SELECT to_regclass('import_runs')") is not None


def find_imported(
    conn: psycopg.Connection, sha256: str, other_than: int, full_snapshot_of: str | None = None
) -> ImportRun | None:
    """The latest run that imported the same content, if any. A full snapshot of a source repeats
    an import only when it is that source's last one: the same export again after another one
    brings back what that other one deactivated."""
    latest = sql.SQL(
        " AND id = (SELECT max(id) FROM import_runs WHERE source = %(source)s AND id <> %(run)s"
        " AND status = ANY(%(imported)s))"
        if full_snapshot_of
        else ""
    )
    with conn.cursor(row_factory=class_row(ImportRun)) as cur:
        cur.execute(
            sql.SQL(
                "SELECT {} FROM import_runs WHERE sha256 = %(sha)s AND id <> %(run)s AND status = ANY(%(imported)s)"
                "{} ORDER BY id DESC LIMIT 1"
            ).format(_COLUMNS, latest),
            {"sha": sha256, "run": other_than, "imported": list(IMPORTED_STATUSES), "source": full_snapshot_of},
        )
        return cur.fetchone()


@dataclass(frozen=True)
class Housekept:
    """What housekeeping removed so far: the files and reports of `runs` runs, `size` bytes, last on `last`."""

    runs: int
    size: int
    last: datetime


def housekept(conn: psycopg.Connection) -> Housekept | None:
    """What housekeeping removed so far, if anything."""
    if not _has_runs_table(conn):
        return None
    row = conn.execute(
        "SELECT count(*), coalesce(sum(files_removed_bytes), 0)::bigint, max(files_removed_at) FROM import_runs"
        " WHERE files_removed_at IS NOT NULL"
    ).fetchone()
    return Housekept(*row) if row and row[0] else None


def update_run(conn: psycopg.Connection, run_id: int, **values: Any) -> ImportRun:
    """Set columns of the run's row; the row as it is now."""
    known = {f.name for f in fields(ImportRun)}
    unknown = set(values) - known
    if unknown:
        raise TypeError(f"import_runs has no column {', '.join(sorted(unknown))}")
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(name), sql.Placeholder(name)) for name in values
    )
    with conn.cursor(row_factory=class_row(ImportRun)) as cur:
        cur.execute(
            sql.SQL("UPDATE import_runs SET {}, changed_at = clock_timestamp() WHERE id = %(id)s RETURNING {}").format(
                assignments, _COLUMNS
            ),
            {**values, "id": run_id},
        )
        return _one(cur.fetchone(), f"import run {run_id}")
