"""The staged data: one owner for its layout, on disk and in PostgreSQL.

Validation writes `staged.csv` into the run's work folder: a `line` column (the record's
physical line), an `accepted` column (it passed the file and GX checks), then the cells of the
contract fields the file carries, as text, blank cells empty. The same layout is the run's
unlogged staging table, loaded with COPY; typing happens in SQL (`FieldSpec.sql_cast`).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

import psycopg
from psycopg import sql

from customer_import.contract.fields import Contract, FieldSpec
from customer_import.database import db

STAGED_FILE = "staged.csv"
LINE = "line"  # the record's physical line in the file (1 is the header)
ACCEPTED = "accepted"  # the row passed the file and GX checks
_COPY_BLOCK = 1 << 20


class StagedWriter:
    """Writes `staged.csv` for the contract fields a file carries, rows or whole Arrow tables."""

    def __init__(self, path: Path, fields: Sequence[FieldSpec]) -> None:
        self.path = path
        self.columns = [LINE, ACCEPTED, *(f.column for f in fields)]
        self._out: TextIO = path.open("w", encoding="utf-8", newline="")
        self._rows = csv.writer(self._out)  # CRLF, as write_table ends its lines too: COPY wants one kind
        self._rows.writerow(self.columns)

    def write_rows(self, lines: Sequence[int], accepted: Sequence[bool], columns: Sequence[Sequence[str]]) -> None:
        """Rows given column-wise: blank cells are '' (NULL in the staging table)."""
        self._rows.writerows(zip(lines, ["t" if ok else "f" for ok in accepted], *columns, strict=True))

    def write_table(self, table: Any) -> None:
        """An Arrow table of the same columns (nulls for blank cells), written by Arrow's C writer."""
        import pyarrow.csv as pacsv

        self._out.flush()
        with self.path.open("ab") as raw:
            pacsv.write_csv(
                table.rename_columns(self.columns),
                raw,
                pacsv.WriteOptions(include_header=False, quoting_style="needed", eol="\r\n"),
            )

    def close(self) -> None:
        self._out.close()

    def __enter__(self) -> StagedWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def staged_fields(staged_csv: Path, contract: Contract) -> list[FieldSpec]:
    """The contract fields the staged file carries, from its header."""
    with staged_csv.open(encoding="utf-8", newline="") as staged:
        columns = next(csv.reader(staged))[2:]
    fields = [contract.field_for_column(c) for c in columns]
    if None in fields:
        raise ValueError(f"{staged_csv} names a column the contract does not have: {columns}")
    return [f for f in fields if f is not None]


def staging_table(run_id: int) -> sql.Identifier:
    return sql.Identifier(f"customer_import_staging_{run_id}")


def copy_into_staging(
    conn: psycopg.Connection, run_id: int, staged_csv: Path, contract: Contract
) -> tuple[list[FieldSpec], int]:
    """(Re)create the run's unlogged staging table and COPY `staged_csv` into it; return its fields
    and the number of rows staged."""
    fields = staged_fields(staged_csv, contract)
    table = staging_table(run_id)
    with staged_csv.open("rb") as staged, conn.transaction(), conn.cursor() as cur:
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        cur.execute(
            sql.SQL("CREATE UNLOGGED TABLE {} ({} integer NOT NULL, {} boolean NOT NULL, {})").format(
                table,
                sql.Identifier(LINE),
                sql.Identifier(ACCEPTED),
                sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(f.column)) for f in fields),
            )
        )
        with cur.copy(sql.SQL("COPY {} FROM STDIN (FORMAT csv, HEADER true)").format(table)) as copy:
            while block := staged.read(_COPY_BLOCK):
                copy.write(block)
        staged_rows = cur.rowcount
        cur.execute(sql.SQL("ANALYZE {}").format(table))
    return fields, staged_rows


def staged_count(conn: psycopg.Connection, run_id: int) -> int | None:
    """Rows in the run's staging table; None when the table does not exist."""
    table = staging_table(run_id)
    if db.scalar(conn, "SELECT to_regclass(%s)", [table.as_string(conn)]) is None:
        return None
    return int(db.scalar(conn, sql.SQL("SELECT count(*) FROM {}").format(table)))


def drop_staging(conn: psycopg.Connection, run_id: int) -> None:
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(staging_table(run_id)))


def reject_lines(conn: psycopg.Connection, run_id: int, lines: Iterable[int]) -> None:
    if lines := sorted(lines):
        conn.execute(
            sql.SQL("UPDATE {} SET {} = false WHERE {} = ANY(%s)").format(
                staging_table(run_id), sql.Identifier(ACCEPTED), sql.Identifier(LINE)
            ),
            [lines],
        )


def count_accepted(conn: psycopg.Connection, run_id: int) -> int:
    return int(
        db.scalar(
            conn, sql.SQL("SELECT count(*) FROM {} WHERE {}").format(staging_table(run_id), sql.Identifier(ACCEPTED))
        )
    )


def accepted_rows(run_id: int) -> sql.Composed:
    """A query of the staged rows that are still accepted."""
    return sql.SQL("SELECT * FROM {} WHERE {}").format(staging_table(run_id), sql.Identifier(ACCEPTED))
