"""Freshness: whether each source's file came when it was due (sources.yaml, `expected_every`).

A source's last arrival is its newest import run, or the newest file waiting in its landing
folder, or (before either) when the watch began to watch it. When `expected_every` plus `grace`
has passed since then, the gap gets one `missing` entry (`missing_exports`); the file that ends
the gap closes it. The watch checks every minute and alerts once per entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row

from customer_import.database import db
from customer_import.sources.profiles import Sources


@dataclass(frozen=True)
class Missing:
    """A gap: no file from `source` since `last_arrival`, though one was due by `due_at`."""

    source: str
    last_arrival: datetime
    due_at: datetime
    noticed_at: datetime
    alerted_at: datetime | None
    arrived_at: datetime | None


_COLUMNS = "source, last_arrival, due_at, noticed_at, alerted_at, arrived_at"


def check(conn: psycopg.Connection, sources: Sources, data_root: Any, now: datetime) -> list[Missing]:
    """Note the gaps as of `now`; the open ones whose alert has not gone out (to send, then `mark_alerted`)."""
    for source in sources:
        if source.expected_every is None:
            continue
        with conn.transaction():
            conn.execute(
                "INSERT INTO watched_sources (source, watched_since) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                [source.name, now],
            )
            arrivals = [
                db.scalar(conn, "SELECT watched_since FROM watched_sources WHERE source = %s", [source.name]),
                db.scalar(conn, "SELECT max(received_at) FROM import_runs WHERE source = %s", [source.name]),
                *_waiting_since(sources, data_root, source.name),
            ]
            last = max(moment for moment in arrivals if moment is not None)
            conn.execute(
                "UPDATE missing_exports SET arrived_at = %s"
                " WHERE source = %s AND arrived_at IS NULL AND last_arrival < %s",
                [last, source.name, last],
            )
            due = last + source.expected_every + source.grace
            if now >= due:
                conn.execute(
                    "INSERT INTO missing_exports (source, last_arrival, due_at, noticed_at) VALUES (%s, %s, %s, %s)"
                    " ON CONFLICT DO NOTHING",
                    [source.name, last, due, now],
                )
    alerting = [s.name for s in sources if s.expected_every is not None and s.alerts_on("missing")]
    with conn.cursor(row_factory=class_row(Missing)) as cur:
        cur.execute(
            f"SELECT {_COLUMNS} FROM missing_exports"
            " WHERE arrived_at IS NULL AND alerted_at IS NULL AND source = ANY(%s) ORDER BY due_at",
            [alerting],
        )
        return cur.fetchall()


def _waiting_since(sources: Sources, data_root: Any, name: str) -> list[datetime]:
    """When the newest file waiting in the source's landing folder came (none: an empty list)."""
    folders = sources.folders(data_root, name)
    waiting = folders.waiting_files()
    return folders.arrival_times(waiting)[-1:] if waiting else []


def mark_alerted(conn: psycopg.Connection, entry: Missing, when: datetime) -> None:
    conn.execute(
        "UPDATE missing_exports SET alerted_at = %s WHERE source = %s AND last_arrival = %s",
        [when, entry.source, entry.last_arrival],
    )


def open_gaps(conn: psycopg.Connection) -> list[Missing]:
    """The sources whose file is overdue now, most overdue first (none before the first watch)."""
    if db.scalar(conn, "SELECT to_regclass('missing_exports')") is None:
        return []
    with conn.cursor(row_factory=class_row(Missing)) as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM missing_exports WHERE arrived_at IS NULL ORDER BY due_at")
        return cur.fetchall()
