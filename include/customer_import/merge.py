"""Staging, the database-level checks, and the MERGE: all set-based SQL built from the contract.

The staging table holds the file's cells as text, one row per record, with its line number.
Typing happens in SQL (`FieldSpec.sql_cast`), so COPY streams the file as it is. For each
column the file carries, the new value of a customer is:

    blank cell  -> the stored value (a bulk update touches only what it names)
    #NULL       -> NULL
    otherwise   -> the cell, cast to the column's type

and a customer whose new values equal the stored ones is not written at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from customer_import.contract import CLEAR_MARKER, Contract, FieldSpec
from customer_import.db import RESTORED_AUDIT_COLUMNS
from customer_import.issues import Issue
from customer_import.runs import Mode
from customer_import.validation import ACCEPTED

_COPY_BLOCK = 1 << 20


@dataclass(frozen=True)
class MergeCounts:
    inserted: int
    updated: int
    unchanged: int


def staging_table(run_id: int) -> sql.Identifier:
    return sql.Identifier(f"customer_import_staging_{run_id}")


def staged_fields(staged_csv: Path, contract: Contract) -> list[FieldSpec]:
    """The contract fields the file carries, from the staged file's header (contract columns only)."""
    with staged_csv.open(encoding="utf-8", newline="") as staged:
        columns = staged.readline().rstrip("\r\n").split(",")[2:]
    fields = [contract.field_for_column(c) for c in columns]
    if None in fields:
        raise ValueError(f"{staged_csv} names a column the contract does not have: {columns}")
    return fields


def load_staging(conn: psycopg.Connection, run_id: int, staged_csv: Path,
                 contract: Contract) -> tuple[list[FieldSpec], int]:
    """(Re)create the run's unlogged staging table, COPY `staged_csv` into it; return its fields
    and the number of rows staged."""
    fields = staged_fields(staged_csv, contract)
    with staged_csv.open(encoding="utf-8", newline="") as staged:
        table = staging_table(run_id)
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
            cur.execute(
                sql.SQL("CREATE UNLOGGED TABLE {} (line integer NOT NULL, {} boolean NOT NULL, {})").format(
                    table, sql.Identifier(ACCEPTED),
                    sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(f.column)) for f in fields),
                )
            )
            copy_sql = sql.SQL("COPY {} FROM STDIN (FORMAT csv, HEADER true)").format(table)
            with cur.copy(copy_sql) as copy:
                while block := staged.read(_COPY_BLOCK):
                    copy.write(block)
            staged_rows = cur.rowcount
            cur.execute(sql.SQL("ANALYZE {}").format(table))
    return fields, staged_rows


def staged_count(conn: psycopg.Connection, run_id: int) -> int | None:
    """Rows in the run's staging table; None when the table does not exist."""
    table = staging_table(run_id)
    if conn.execute("SELECT to_regclass(%s)", [table.as_string(conn)]).fetchone()[0] is None:
        return None
    return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()[0]


def drop_staging(conn: psycopg.Connection, run_id: int) -> None:
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(staging_table(run_id)))


def reject_lines(conn: psycopg.Connection, run_id: int, lines: list[int]) -> None:
    if lines:
        conn.execute(sql.SQL("UPDATE {} SET {} = false WHERE line = ANY(%s)").format(
            staging_table(run_id), sql.Identifier(ACCEPTED)), [lines])


def count_accepted(conn: psycopg.Connection, run_id: int) -> int:
    return conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE {}").format(
        staging_table(run_id), sql.Identifier(ACCEPTED))).fetchone()[0]


# --- database-level checks ---------------------------------------------------------------


def check_staging(conn: psycopg.Connection, run_id: int, contract: Contract, fields: list[FieldSpec],
                  mode: Mode) -> list[Issue]:
    """The rules that need the whole file or the stored customers, as issues per line."""
    q = _Names(contract, run_id)
    issues = _duplicates(conn, q, contract.key, casefold=False)
    for spec in contract.unique_fields:
        if spec in fields:
            issues += _duplicates(conn, q, spec, casefold=True)
    return issues + check_against_customers(conn, run_id, contract, fields, mode)


def check_against_customers(conn: psycopg.Connection, run_id: int, contract: Contract, fields: list[FieldSpec],
                            mode: Mode, *, accepted_only: bool = False) -> list[Issue]:
    """The rules that depend on the stored customers. Run again under the merge lock over the
    accepted rows (`accepted_only`), they catch what another import changed since staging."""
    q = _Names(contract, run_id, accepted_only)
    issues = []
    for spec in contract.unique_fields:
        if spec in fields:
            issues += _taken_by_other_customer(conn, q, spec)
    if mode == "update_only":
        issues += _by_existence(conn, q, exists=False, code="unknown_customer", message=(
            "{key} `{value}` is not an existing customer and this import only updates"
            " (mode update_only): remove the row, or import it with mode upsert."))
    else:
        if mode == "insert_only":
            issues += _by_existence(conn, q, exists=True, code="existing_customer", message=(
                "{key} `{value}` is already a customer and this import only inserts"
                " (mode insert_only): remove the row, or import it with mode upsert."))
        for spec in contract.fields:
            if spec.required == "on_insert":
                issues += _required_on_insert(conn, q, spec, present=spec in fields)
    return issues


class _Names:
    """The identifiers the check queries share."""

    def __init__(self, contract: Contract, run_id: int, accepted_only: bool = False) -> None:
        self.staging = staging_table(run_id)
        # a condition on the staged row `s`: every row, or the ones still accepted
        self.rows = sql.SQL("s.{}").format(sql.Identifier(ACCEPTED)) if accepted_only else sql.SQL("true")
        self.customers = sql.Identifier(contract.table)
        self.key = sql.Identifier(contract.key.column)
        self.key_header = contract.key.header


def _duplicates(conn: psycopg.Connection, q: _Names, spec: FieldSpec, *, casefold: bool) -> list[Issue]:
    column = sql.Identifier(spec.column)
    value = sql.SQL("lower({})").format(column) if casefold else column
    rows = conn.execute(
        sql.SQL("SELECT array_agg({col} ORDER BY line), array_agg(line ORDER BY line) FROM {staging}"
                " WHERE {col} IS NOT NULL AND {col} <> %s GROUP BY {value} HAVING count(*) > 1").format(
            col=column, staging=q.staging, value=value),
        [CLEAR_MARKER],
    ).fetchall()
    what = "customer" if spec.header == q.key_header else "value"
    issues = []
    for values, lines in rows:
        for value, line in zip(values, lines, strict=True):
            others = ", ".join(str(n) for n in lines if n != line)
            issues.append(Issue(line, spec.header, "duplicate_in_file",
                                f"{spec.header} `{value}` also appears on line{'s' if len(lines) > 2 else ''}"
                                f" {others}: each {what} may appear only once per file"
                                + (" (compared ignoring case)" if casefold else "")
                                + ". Keep one row and delete the others."))
    return issues


def _taken_by_other_customer(conn: psycopg.Connection, q: _Names, spec: FieldSpec) -> list[Issue]:
    column = sql.Identifier(spec.column)
    rows = conn.execute(
        sql.SQL("SELECT s.line, s.{col}, c.{key} FROM {staging} s JOIN {customers} c"
                " ON lower(c.{col}) = lower(s.{col}) AND c.{key} <> s.{key}"
                " WHERE s.{col} IS NOT NULL AND s.{col} <> %s AND s.{key} IS NOT NULL AND {rows}").format(
            col=column, key=q.key, staging=q.staging, customers=q.customers, rows=q.rows),
        [CLEAR_MARKER],
    ).fetchall()
    return [Issue(line, spec.header, "already_used",
                  f"{spec.header} `{value}` already belongs to customer {q.key_header} `{owner}`:"
                  f" it must be unique. Use another value, or change `{owner}` first.")
            for line, value, owner in rows]


def _by_existence(conn: psycopg.Connection, q: _Names, *, exists: bool, code: str, message: str) -> list[Issue]:
    rows = conn.execute(
        sql.SQL("SELECT s.line, s.{key} FROM {staging} s WHERE s.{key} IS NOT NULL AND {rows} AND {neg}"
                " EXISTS (SELECT 1 FROM {customers} c WHERE c.{key} = s.{key})").format(
            key=q.key, staging=q.staging, customers=q.customers, neg=sql.SQL("" if exists else "NOT"),
            rows=q.rows),
    ).fetchall()
    return [Issue(line, q.key_header, code, message.format(key=q.key_header, value=value)) for line, value in rows]


def _required_on_insert(conn: psycopg.Connection, q: _Names, spec: FieldSpec, *, present: bool) -> list[Issue]:
    blank = sql.SQL("s.{} IS NULL").format(sql.Identifier(spec.column)) if present else sql.SQL("true")
    rows = conn.execute(
        sql.SQL("SELECT s.line, s.{key} FROM {staging} s WHERE s.{key} IS NOT NULL AND {blank} AND {rows}"
                " AND NOT EXISTS (SELECT 1 FROM {customers} c WHERE c.{key} = s.{key})").format(
            key=q.key, staging=q.staging, customers=q.customers, blank=blank, rows=q.rows),
    ).fetchall()
    where = "is blank" if present else "column is missing from the file"
    return [Issue(line, spec.header, "required",
                  f"{spec.header} is required for a new customer, and {q.key_header} `{value}` is new"
                  f" but its {spec.header} {where}: fill it in (e.g. {spec.example}).")
            for line, value in rows]


# --- the merge -----------------------------------------------------------------------


class _MergeSql:
    """The SQL of one run's merge, for the columns its file carries."""

    def __init__(self, contract: Contract, fields: list[FieldSpec], run_id: int) -> None:
        self.key = sql.Identifier(contract.key.column)
        self.customers = sql.Identifier(contract.table)
        self.staging = staging_table(run_id)
        self.values = [f for f in fields if f is not contract.key]
        self.accepted = sql.SQL("SELECT * FROM {} WHERE {}").format(self.staging, sql.Identifier(ACCEPTED))

    def new_value(self, spec: FieldSpec, *, stored: bool = True) -> sql.Composable:
        """The column's value after the merge; `stored=False` where no customer exists yet."""
        staged = sql.SQL("s.{}").format(sql.Identifier(spec.column))
        keep = sql.SQL("c.{}").format(sql.Identifier(spec.column)) if stored else sql.NULL
        return sql.SQL("CASE WHEN {s} IS NULL THEN {keep} WHEN {s} = {clear} THEN NULL ELSE {typed} END").format(
            s=staged, keep=keep, clear=sql.Literal(CLEAR_MARKER), typed=sql.SQL(spec.sql_cast).format(staged))

    def changed(self) -> sql.Composable:
        """True for a stored customer whose new values differ from the stored ones."""
        if not self.values:
            return sql.SQL("false")
        return sql.SQL("({}) IS DISTINCT FROM ({})").format(
            sql.SQL(", ").join(sql.SQL("c.{}").format(sql.Identifier(f.column)) for f in self.values),
            sql.SQL(", ").join(self.new_value(f) for f in self.values),
        )

    def image(self, value, *bookkeeping: str) -> sql.Composable:
        pairs = [sql.SQL("{}, {}").format(sql.Literal(f.column), value(f)) for f in self.values]
        pairs += [sql.SQL("{}, c.{}").format(sql.Literal(name), sql.Identifier(name)) for name in bookkeeping]
        return sql.SQL("jsonb_build_object({})").format(sql.SQL(", ").join(pairs))

    def diff(self) -> sql.Composable:
        """Each accepted row that would change a customer: key, action, before and after image."""
        return sql.SQL(
            "SELECT s.line, s.{key} AS customer_key,"
            " CASE WHEN c.{key} IS NULL THEN 'insert' ELSE 'update' END AS action,"
            " CASE WHEN c.{key} IS NULL THEN NULL ELSE {before} END AS before, {after} AS after"
            " FROM ({accepted}) s LEFT JOIN {customers} c ON c.{key} = s.{key}"
            " WHERE c.{key} IS NULL OR {changed}"
        ).format(
            key=self.key, accepted=self.accepted, customers=self.customers, changed=self.changed(),
            before=self.image(lambda f: sql.SQL("c.{}").format(sql.Identifier(f.column)),
                              *RESTORED_AUDIT_COLUMNS),
            after=self.image(self.new_value),
        )

    def merge(self, mode: Mode, run_id: int) -> sql.Composable:
        columns = [self.key, *(sql.Identifier(f.column) for f in self.values)]
        clauses = []
        if mode != "insert_only" and self.values:
            clauses.append(sql.SQL(
                "WHEN MATCHED AND {changed} THEN UPDATE SET {assignments},"
                " updated_at = now(), updated_by_run = {run}").format(
                changed=self.changed(), run=sql.Literal(run_id),
                assignments=sql.SQL(", ").join(
                    sql.SQL("{} = {}").format(sql.Identifier(f.column), self.new_value(f)) for f in self.values)))
        if mode != "update_only":
            clauses.append(sql.SQL(
                "WHEN NOT MATCHED THEN INSERT ({columns}, created_by_run, updated_by_run)"
                " VALUES (s.{key}, {values}{sep}{run}, {run})").format(
                columns=sql.SQL(", ").join(columns), key=self.key, run=sql.Literal(run_id),
                values=sql.SQL(", ").join(self.new_value(f, stored=False) for f in self.values),
                sep=sql.SQL(", " if self.values else "")))
        return sql.SQL("MERGE INTO {customers} c USING ({accepted}) s ON c.{key} = s.{key} {clauses}").format(
            customers=self.customers, accepted=self.accepted, key=self.key, clauses=sql.SQL(" ").join(clauses))


def preview_counts(conn: psycopg.Connection, run_id: int, contract: Contract, fields: list[FieldSpec]) -> MergeCounts:
    """What the merge would do, without writing anything (a dry run)."""
    q = _MergeSql(contract, fields, run_id)
    inserted, updated = conn.execute(
        sql.SQL("SELECT count(*) FILTER (WHERE action = 'insert'), count(*) FILTER (WHERE action = 'update')"
                " FROM ({}) d").format(q.diff())).fetchone()
    return MergeCounts(inserted, updated, count_accepted(conn, run_id) - inserted - updated)


def merge_customers(conn: psycopg.Connection, run_id: int, contract: Contract, fields: list[FieldSpec],
                    mode: Mode) -> MergeCounts:
    """Record the history of the run's changes and MERGE them, in the caller's transaction.

    The caller holds the merge lock (`db.locked(conn, db.MERGE_LOCK)`), so the counts taken from the
    history are exact on every PostgreSQL version (no `merge_action()` before 17).
    """
    q = _MergeSql(contract, fields, run_id)
    inserted, updated = conn.execute(
        sql.SQL("WITH recorded AS (INSERT INTO customer_history (run_id, line, customer_key, action, before, after)"
                " SELECT {run}, line, customer_key, action, before, after FROM ({diff}) d RETURNING action)"
                " SELECT count(*) FILTER (WHERE action = 'insert'), count(*) FILTER (WHERE action = 'update')"
                " FROM recorded").format(run=sql.Literal(run_id), diff=q.diff())).fetchone()
    conn.execute(q.merge(mode, run_id))
    return MergeCounts(inserted, updated, count_accepted(conn, run_id) - inserted - updated)


Change = tuple[int, str, str, dict | None, dict]  # line, key, action, before, after


def first_changes(conn: psycopg.Connection, run_id: int, limit: int) -> list[Change]:
    """The first changes a merged run recorded in its history, by line."""
    return conn.execute("SELECT line, customer_key, action, before, after FROM customer_history"
                        " WHERE run_id = %s ORDER BY line LIMIT %s", [run_id, limit]).fetchall()


def preview(conn: psycopg.Connection, run_id: int, contract: Contract, fields: list[FieldSpec]) -> Iterator[Change]:
    """Every change the dry run's merge would make, by line, streamed (a server-side cursor).

    Read it to the end, or close it: the cursor's transaction stays open until then.
    """
    query = sql.SQL("SELECT line, customer_key, action, before, after FROM ({}) d ORDER BY line").format(
        _MergeSql(contract, fields, run_id).diff())
    with conn.transaction(), conn.cursor(name=f"preview_{run_id}") as cur:
        cur.execute(query)
        yield from cur
