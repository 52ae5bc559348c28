"""Retention: what an import keeps of the customers' data, and for how long.

Every import keeps a copy of its file (archive/ or rejected/) and reports that repeat its rows
(reports/<run>/). `remove_expired` deletes the files and reports of runs that finished more than
`CUSTOMER_IMPORT_KEEP_FILES_DAYS` ago, on local disk or object storage alike, and, when
`CUSTOMER_IMPORT_KEEP_HISTORY_DAYS` is set, the history of runs merged longer ago than that (they
can no longer be rolled back then). landing/ and processing/ are never touched. The run's row in
`import_runs`, its counts and its outcome stay, and say when what was removed.

Each run is handled in a transaction of its own that holds its row (`FOR UPDATE SKIP LOCKED`): two
housekeepers at once share the work, and one that stopped half-way is finished by the next.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

import psycopg
from psycopg import sql

from customer_import.database import db, history, runs
from customer_import.settings import Settings

log = logging.getLogger(__name__)
FILES_EXPIRED = sql.SQL("files_removed_at IS NULL AND finished_at < now() - %s")
HISTORY_EXPIRED = sql.SQL("history_removed_at IS NULL AND merged_at < now() - %s")


@dataclass
class Removed:
    """What one pass of housekeeping removed."""

    runs: int = 0  # runs whose files and reports were deleted
    files: int = 0
    bytes: int = 0
    histories: int = 0  # runs whose history was deleted
    history_rows: int = 0

    def __str__(self) -> str:
        parts = []
        if self.runs:
            parts.append(
                f"the files and reports of {_count(self.runs, 'import run')}"
                f" ({_count(self.files, 'file')}, {size_in_words(self.bytes)})"
            )
        if self.histories:
            parts.append(
                f"the history of {_count(self.histories, 'import run')} ({_count(self.history_rows, 'change')})"
            )
        return "Removed " + " and ".join(parts) + "." if parts else "Nothing had expired: nothing was removed."


def _count(n: int, what: str) -> str:
    return f"{n:,} {what}{'' if n == 1 else 's'}"


def size_in_words(n: int) -> str:
    if n < 1024:
        return f"{n:,} bytes"
    power = min(3, (n.bit_length() - 1) // 10)
    return f"{n / 1024**power:,.1f} {('KiB', 'MiB', 'GiB')[power - 1]}"


def remove_expired(conn: psycopg.Connection, settings: Settings) -> Removed:
    """Delete what has been kept longer than the settings say (see the module's docstring)."""
    db.use_schema(conn, settings.schema)
    removed = Removed()
    if db.scalar(conn, "SELECT to_regclass('import_runs')") is None:
        return removed  # no import yet
    if settings.keep_files_days is not None:
        _remove_files(conn, settings, settings.keep_files_days, removed)
    if settings.keep_history_days is not None:
        _remove_histories(conn, settings.keep_history_days, removed)
    return removed


def _next(conn: psycopg.Connection, expired: sql.SQL, days: int) -> int | None:
    """The next run that has `expired` (its condition on `%s`, the age), locked for this transaction."""
    run_id: int | None = db.scalar(
        conn,
        sql.SQL("SELECT id FROM import_runs WHERE {} ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED").format(expired),
        [timedelta(days=days)],
    )
    return run_id


def _remove_files(conn: psycopg.Connection, settings: Settings, days: int, removed: Removed) -> None:
    store = settings.store
    while True:
        with conn.transaction():
            run_id = _next(conn, FILES_EXPIRED, days)
            if run_id is None:
                return
            run = runs.get_run(conn, run_id)
            found = [store.remove(f"{folder}/{run_id}") for folder in ("archive", "rejected", "reports")]
            files, size = sum(f for f, _ in found), sum(b for _, b in found)
            runs.update_run(
                conn,
                run_id,
                files_removed_at=db.scalar(conn, "SELECT now()"),
                files_kept_days=days,
                files_removed=files,
                files_removed_bytes=size,
            )
        log.info(
            "Import run %s (%s, %s): %s files, %s removed.",
            run_id,
            run.file_name,
            run.status,
            files,
            size_in_words(size),
        )
        removed.runs, removed.files, removed.bytes = removed.runs + 1, removed.files + files, removed.bytes + size


def _remove_histories(conn: psycopg.Connection, days: int, removed: Removed) -> None:
    while True:
        with conn.transaction():
            run_id = _next(conn, HISTORY_EXPIRED, days)
            if run_id is None:
                return
            rows = conn.execute(sql.SQL("DELETE FROM {} WHERE run_id = %s").format(history.ROWS), [run_id]).rowcount
            runs.update_run(conn, run_id, history_removed_at=db.scalar(conn, "SELECT now()"))
        log.info("Import run %s: its history (%s changes) removed; it can no longer be rolled back.", run_id, rows)
        removed.histories, removed.history_rows = removed.histories + 1, removed.history_rows + rows
