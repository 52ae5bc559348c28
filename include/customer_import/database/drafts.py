"""Drafts of files fixed in the browser: `fix_drafts`, `fix_rows` and `fix_edits`, read and written.

A draft belongs to one rejected or partial import run. It holds every record of the run's file
(its cells as they stand in the draft, its issues) and every cell a person changed, with the value
in the file and who changed it. `customer_import.fixing` decides what goes in; this module only
stores it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row, dict_row

#: PostgreSQL's text holds no NUL byte, which a file may (an issue of its own): a draft stores this
#: character of Unicode's private use in its place, and gives the NUL back when it is read.
NUL_STAND_IN = "\U000f0000"
#: A draft's rows are edited one request at a time (the re-check stages them in a table of the draft's).
DRAFT_LOCK = "customer_import_fix_{}"


@dataclass(frozen=True)
class Draft:
    run_id: int
    header: list[str]
    header_text: str
    fields: list[dict[str, Any]]  # index (in the header), column (the contract's), label, limit
    opened_by: str
    opened_at: datetime
    status: str
    fixed_file: str | None
    imported_by: str | None
    fixed_run: int | None
    closed_at: datetime | None

    @property
    def is_open(self) -> bool:
        """It may be changed (while it is loading, a change waits for the load: `loading`)."""
        return self.status in ("loading", "open")

    @property
    def is_loading(self) -> bool:
        return self.status == "loading"


@dataclass
class FixRow:
    """One record of the file in a draft. `issues` are dicts: `column` (the header's index, None for
    the row as a whole), `code`, `message`, `database` (found against the whole file or the customers)."""

    line: int
    last_line: int
    cells: list[str]
    raw: str | None
    issues: list[dict[str, Any]] = field(default_factory=list)
    skipped_by: str | None = None
    edits: dict[int, dict[str, Any]] = field(default_factory=dict)  # by column index: before, after, by

    def __post_init__(self) -> None:
        if NUL_STAND_IN in "".join(self.cells):  # (one look per row: a draft may have a million)
            self.cells = [_from_db(cell) for cell in self.cells]
        if self.raw is not None and NUL_STAND_IN in self.raw:
            self.raw = _from_db(self.raw)

    def as_json(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "cells": self.cells,
            "issues": self.issues,
            "skipped_by": self.skipped_by,
            "edits": {str(i): e for i, e in self.edits.items()},
        }


_DRAFT = (
    "run_id, header, header_text, fields, opened_by, opened_at, status, fixed_file, imported_by, fixed_run, closed_at"
)
_ROW = "line, last_line, cells, raw, issues, skipped_by"
_COPY_ROWS = 10_000
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def get_draft(conn: psycopg.Connection, run_id: int) -> Draft | None:
    if not _has_drafts(conn):
        return None  # a page reading runs of a schema an import has not migrated yet
    with conn.cursor(row_factory=class_row(Draft)) as cur:
        cur.execute(f"SELECT {_DRAFT} FROM fix_drafts WHERE run_id = %s", [run_id])
        return cur.fetchone()


def create_draft(
    conn: psycopg.Connection,
    run_id: int,
    header: list[str],
    header_text: str,
    fields: list[dict[str, Any]],
    opened_by: str,
    rows: Iterable[FixRow],
) -> Draft:
    """The run's draft, `loading`, with its first `rows`, in one transaction: another request sees all of
    it or none."""
    with conn.transaction():
        conn.execute(
            "INSERT INTO fix_drafts (run_id, header, header_text, fields, opened_by) VALUES (%s, %s, %s, %s, %s)",
            [run_id, header, header_text, json.dumps(fields), opened_by],
        )
        add_rows(conn, run_id, rows)
    draft = get_draft(conn, run_id)
    assert draft is not None
    return draft


def add_rows(conn: psycopg.Connection, run_id: int, rows: Iterable[FixRow]) -> None:
    """COPY `rows` into the draft, in COPY's text format written here (psycopg's `write_row` would dump
    each value of each row in Python: a draft may have a million rows)."""
    with (
        conn.cursor() as cur,
        cur.copy("COPY fix_rows (run_id, line, last_line, cells, raw, issues) FROM STDIN") as copy,
    ):
        block: list[str] = []
        for row in rows:
            cells = [_to_db(cell) for cell in row.cells] if "\x00" in "".join(row.cells) else row.cells
            values = (json.dumps(cells, ensure_ascii=False), row.raw, json.dumps(row.issues, ensure_ascii=False))
            block.append(f"{run_id}\t{row.line}\t{row.last_line}\t" + "\t".join(map(_copy_text, values)) + "\n")
            if len(block) == _COPY_ROWS:
                copy.write("".join(block))
                block.clear()
        copy.write("".join(block))


def set_status(conn: psycopg.Connection, run_id: int, status: str) -> None:
    conn.execute("UPDATE fix_drafts SET status = %s WHERE run_id = %s", [status, run_id])


@contextmanager
def loading(conn: psycopg.Connection, run_id: int) -> Iterator[None]:
    """The draft's lock, held by this session (across its transactions) while it loads the draft: a change
    (`db.locked` on `DRAFT_LOCK`) waits until it is loaded."""
    name = DRAFT_LOCK.format(run_id)
    conn.execute("SELECT pg_advisory_lock(hashtext(%s))", [name])
    try:
        yield
    finally:
        conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", [name])


def loader_gone(conn: psycopg.Connection, run_id: int) -> bool:
    """Whether a draft still `loading` has no session loading it (its loader stopped half-way)."""
    name = DRAFT_LOCK.format(run_id)
    if conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [name]).fetchone() != (True,):
        return False
    conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", [name])
    return True


def delete(conn: psycopg.Connection, run_id: int) -> None:
    conn.execute("DELETE FROM fix_drafts WHERE run_id = %s", [run_id])


def page(
    conn: psycopg.Connection, run_id: int, *, flagged_only: bool, offset: int, limit: int
) -> tuple[list[FixRow], int]:
    """One page of the draft's rows in file order (only those with issues, or every row) and how many there are."""
    where = "run_id = %(run)s" + (" AND issues <> '[]'" if flagged_only else "")
    params = {"run": run_id, "offset": offset, "limit": limit}
    total = conn.execute(f"SELECT count(*) FROM fix_rows WHERE {where}", params).fetchone()
    with conn.cursor(row_factory=class_row(FixRow)) as cur:
        cur.execute(
            f"SELECT {_ROW} FROM fix_rows WHERE {where} ORDER BY line LIMIT %(limit)s OFFSET %(offset)s", params
        )
        rows = cur.fetchall()
    return _with_edits(conn, run_id, rows), int(total[0] if total else 0)


def rows_at(conn: psycopg.Connection, run_id: int, lines: Iterable[int]) -> list[FixRow]:
    with conn.cursor(row_factory=class_row(FixRow)) as cur:
        cur.execute(
            f"SELECT {_ROW} FROM fix_rows WHERE run_id = %s AND line = ANY(%s) ORDER BY line", [run_id, list(lines)]
        )
        return _with_edits(conn, run_id, cur.fetchall())


def lines_holding(
    conn: psycopg.Connection, run_id: int, index: int, values: Iterable[str], *, casefold: bool
) -> list[int]:
    """The rows (not skipped) whose cell `index` holds one of `values` (ignoring case when `casefold`)."""
    wanted = [_to_db(v.lower() if casefold else v) for v in values if v]
    cell = "lower(cells ->> %(i)s)" if casefold else "cells ->> %(i)s"
    return _lines_where(conn, run_id, index, f"{cell} = ANY(%(v)s)", wanted) if wanted else []


def lines_matching(conn: psycopg.Connection, run_id: int, index: int, find: str, *, whole: bool) -> list[int]:
    """The rows (not skipped) whose cell `index` is `find` (`whole`), or contains it."""
    test = "cells ->> %(i)s = %(v)s" if whole else "strpos(cells ->> %(i)s, %(v)s) > 0"
    return _lines_where(conn, run_id, index, test, _to_db(find))


def _lines_where(conn: psycopg.Connection, run_id: int, index: int, test: str, value: object) -> list[int]:
    """The lines of the rows (not skipped) whose cell `index` passes `test` (a condition on `%(i)s`, `%(v)s`)."""
    found = conn.execute(
        f"SELECT line FROM fix_rows WHERE run_id = %(run)s AND skipped_by IS NULL AND {test} ORDER BY line",
        {"run": run_id, "i": index, "v": value},
    ).fetchall()
    return [line for (line,) in found]


def set_cells(
    conn: psycopg.Connection, run_id: int, changes: Sequence[tuple[int, int, str]], header: list[str], edited_by: str
) -> None:
    """Set cells (line, column index, value): the row is then written as its cells (`raw` is dropped);
    each change is recorded with the value in the file, which the first edit of the cell keeps."""
    with conn.cursor() as cur:
        for line, index, value in ((line, index, _to_db(value)) for line, index, value in changes):
            cur.execute(  # a row with fewer values than the header gets empty ones: it is written as CSV now
                "UPDATE fix_rows SET cells = cells || (SELECT jsonb_agg(''::text) FROM generate_series(1, %(width)s"
                " - jsonb_array_length(cells))) WHERE run_id = %(run)s AND line = %(line)s"
                " AND jsonb_array_length(cells) < %(width)s",
                {"run": run_id, "line": line, "width": len(header)},
            )
            cur.execute(
                "INSERT INTO fix_edits (run_id, line, column_index, header, before, after, edited_by)"
                " SELECT run_id, line, %(i)s, %(header)s, coalesce(cells ->> %(i)s, ''), %(value)s, %(by)s"
                " FROM fix_rows WHERE run_id = %(run)s AND line = %(line)s"
                " ON CONFLICT (run_id, line, column_index) DO UPDATE"
                " SET after = EXCLUDED.after, edited_by = EXCLUDED.edited_by, edited_at = now()",
                {"run": run_id, "line": line, "i": index, "header": header[index], "value": value, "by": edited_by},
            )
            cur.execute(
                "UPDATE fix_rows SET cells = jsonb_set(cells, ARRAY[%(i)s::text], to_jsonb(%(value)s::text)),"
                " raw = NULL WHERE run_id = %(run)s AND line = %(line)s",
                {"run": run_id, "line": line, "i": index, "value": value},
            )
        # an edit back to the file's value is no edit
        cur.execute("DELETE FROM fix_edits WHERE run_id = %s AND before = after", [run_id])


def set_issues(conn: psycopg.Connection, run_id: int, issues: dict[int, list[dict[str, Any]]]) -> None:
    conn.execute(
        "UPDATE fix_rows f SET issues = v.issues::jsonb FROM unnest(%s::int[], %s::text[]) AS v(line, issues)"
        " WHERE f.run_id = %s AND f.line = v.line",
        [list(issues), [json.dumps(found, ensure_ascii=False) for found in issues.values()], run_id],
    )


def set_skipped(conn: psycopg.Connection, run_id: int, line: int, skipped_by: str | None) -> None:
    conn.execute("UPDATE fix_rows SET skipped_by = %s WHERE run_id = %s AND line = %s", [skipped_by, run_id, line])


def edits(conn: psycopg.Connection, run_id: int) -> list[dict[str, Any]]:
    """Every cell changed in the draft, in file order: line, column, before, after, by whom, when."""
    if not _has_drafts(conn):
        return []
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT line, fixed_line, column_index, header AS column, before, after, edited_by, edited_at"
            " FROM fix_edits WHERE run_id = %s ORDER BY line, column_index",
            [run_id],
        )
        return cur.fetchall()


def counts(conn: psycopg.Connection, run_id: int) -> dict[str, int]:
    found = conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE issues <> '[]' AND skipped_by IS NULL),"
        " count(*) FILTER (WHERE skipped_by IS NOT NULL),"
        " (SELECT count(*) FROM fix_edits WHERE run_id = %(run)s) FROM fix_rows WHERE run_id = %(run)s",
        {"run": run_id},
    ).fetchone()
    rows, flagged, skipped, edited = found or (0, 0, 0, 0)
    return {"rows": rows, "flagged": flagged, "skipped": skipped, "edited": edited}


def all_rows(conn: psycopg.Connection, run_id: int) -> Iterator[FixRow]:
    """Every row of the draft in file order, read in batches (a named cursor)."""
    with conn.transaction(), conn.cursor(f"fix_rows_{run_id}", row_factory=class_row(FixRow)) as cur:
        cur.itersize = 5000
        cur.execute(f"SELECT {_ROW} FROM fix_rows WHERE run_id = %s ORDER BY line", [run_id])
        yield from cur


def discard(conn: psycopg.Connection, run_id: int) -> None:
    conn.execute("DELETE FROM fix_drafts WHERE run_id = %s AND status IN ('loading', 'open')", [run_id])


def mark_importing(
    conn: psycopg.Connection, run_id: int, fixed_file: str, imported_by: str, fixed_lines: dict[int, int]
) -> None:
    """The draft's fixed file was written into landing as `fixed_file`; its run is not claimed yet."""
    conn.execute(
        "UPDATE fix_drafts SET status = 'importing', fixed_file = %s, imported_by = %s WHERE run_id = %s",
        [fixed_file, imported_by, run_id],
    )
    with conn.cursor() as cur:
        cur.executemany(
            "UPDATE fix_edits SET fixed_line = %s WHERE run_id = %s AND line = %s",
            [(fixed, run_id, line) for line, fixed in fixed_lines.items()],
        )


def link_fixed_run(conn: psycopg.Connection, run_id: int, file_name: str, source: str) -> None:
    """When run `run_id` claims a file a draft wrote, it records the run it fixes and who fixed it, and the
    draft closes: its rows are deleted (its edits stay, for the fixed run's page and report)."""
    if not _has_drafts(conn):
        return
    with conn.transaction():
        draft = conn.execute(
            "UPDATE fix_drafts d SET status = 'imported', fixed_run = %(run)s, closed_at = now()"
            " FROM import_runs r WHERE r.id = d.run_id AND d.status = 'importing' AND d.fixed_file = %(file)s"
            " AND r.source = %(source)s RETURNING d.run_id, d.imported_by",
            {"run": run_id, "file": file_name, "source": source},
        ).fetchone()
        if draft is None:
            return
        fixed_from, fixed_by = draft
        conn.execute(
            "UPDATE import_runs SET fixed_from = %s, fixed_by = %s WHERE id = %s", [fixed_from, fixed_by, run_id]
        )
        conn.execute("DELETE FROM fix_rows WHERE run_id = %s", [fixed_from])


def fixed_by(conn: psycopg.Connection, run_id: int) -> int | None:
    """The run that imported the file fixed from run `run_id`'s, if any."""
    found = conn.execute("SELECT fixed_run FROM fix_drafts WHERE run_id = %s", [run_id]).fetchone()
    return found[0] if found else None


def _with_edits(conn: psycopg.Connection, run_id: int, rows: list[FixRow]) -> list[FixRow]:
    if rows:
        found = conn.execute(
            "SELECT line, column_index, before, after, edited_by FROM fix_edits WHERE run_id = %s AND line = ANY(%s)",
            [run_id, [r.line for r in rows]],
        ).fetchall()
        by_line = {r.line: r for r in rows}
        for line, index, before, after, by in found:
            by_line[line].edits[index] = {"before": before, "after": after, "by": by}
    return rows


def forget(conn: psycopg.Connection, key: str) -> int:
    """Delete the draft rows that hold `key` as a cell, and every edit of them or to or from it (erasure)."""
    if not _has_drafts(conn):
        return 0
    conn.execute(
        "DELETE FROM fix_edits e WHERE e.before = %(key)s OR e.after = %(key)s OR EXISTS (SELECT 1 FROM fix_rows r"
        " WHERE r.run_id = e.run_id AND r.line = e.line AND r.cells ? %(key)s)",
        {"key": key},
    )
    return conn.execute("DELETE FROM fix_rows WHERE cells ? %s", [_to_db(key)]).rowcount


def _has_drafts(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT to_regclass('fix_drafts')").fetchone() != (None,)


def _copy_text(value: str | None) -> str:
    """A value as COPY's text format writes it (NULL as `\\N`)."""
    return "\\N" if value is None else _to_db(value).translate(_COPY_ESCAPES)


def _to_db(text: str) -> str:
    return text.replace("\x00", NUL_STAND_IN)


def _from_db(text: str) -> str:
    return text.replace(NUL_STAND_IN, "\x00")
