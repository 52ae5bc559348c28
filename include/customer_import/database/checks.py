"""The database-level checks: the rules that need the whole file or the stored customers.

They run set-based over the run's staging table and return issues per line, like the GX rules.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import psycopg
from psycopg import sql

from customer_import.contract.fields import Contract, FieldSpec
from customer_import.contract.issues import Issue, hide_value
from customer_import.contract.options import Mode
from customer_import.contract.rules import CLEAR_MARKER
from customer_import.database.staging import ACCEPTED, staged_fields, staging_table

#: A staged file longer than this is searched for duplicates by PostgreSQL alone (`distinct_columns`
#: would hold too many values).
DISTINCT_ROWS = 2_000_000
#: A value repeated in the file: how many of the other lines it is on a message names.
LINES_NAMED = 10
#: The issues these checks found, in a run's work folder (and, once it ends, beside its reports).
DATABASE_ISSUES_FILE = "issues-database.jsonl"


def check_staging(
    conn: psycopg.Connection,
    run_id: int,
    contract: Contract,
    fields: list[FieldSpec],
    mode: Mode,
    distinct: Collection[str] = (),
) -> list[Issue]:
    """The rules that need the whole file or the stored customers, as issues per line. The columns
    in `distinct` are known to hold no duplicate (`distinct_columns`): they are not searched again."""
    q = _Names(contract, run_id)
    issues = []
    for spec, casefold in once_per_file(contract):
        if spec in fields and spec.column not in distinct:
            issues += _duplicates(conn, q, spec, casefold=casefold)
    return issues + check_against_customers(conn, run_id, contract, fields, mode)


def once_per_file(contract: Contract) -> list[tuple[FieldSpec, bool]]:
    """The fields whose values may appear once per file, and whether they are compared ignoring case:
    the key exactly, the unique fields (emails) as their unique index compares them, by `lower()`."""
    return [(contract.key, False), *((spec, True) for spec in contract.unique_fields)]


def distinct_columns(staged_csv: Path, contract: Contract, rows: int) -> frozenset[str]:
    """The columns of `staged_csv` (of at most `rows` rows) that `check_staging` would search for
    duplicates and that are known to have none, read by Arrow (on the other core, while PostgreSQL
    loads the file).

    Only a proof counts: a column is left to the query (which names the lines) when it has a repeat,
    when it is compared ignoring case and a value is not all ASCII (what `lower()` does to other
    letters is the database's collation's to say), or when the file may have more than
    `DISTINCT_ROWS` rows (it is not read then).
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    if rows > DISTINCT_ROWS:
        return frozenset()
    fields = staged_fields(staged_csv, contract)
    casefolds = {spec.column: casefold for spec, casefold in once_per_file(contract) if spec in fields}
    values: dict[str, list[pa.Array]] = {column: [] for column in casefolds}
    try:
        reader = pacsv.open_csv(
            staged_csv,
            read_options=pacsv.ReadOptions(use_threads=False),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(  # NULL as COPY reads it: empty, unless quoted
                include_columns=list(casefolds),
                column_types=dict.fromkeys(casefolds, pa.string()),
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )
        for batch in reader:
            for column in list(values):
                cells = batch.column(column)
                cells = cells.filter(pc.and_(pc.is_valid(cells), pc.not_equal(cells, CLEAR_MARKER)))
                if casefolds[column]:
                    if not pc.all(pc.string_is_ascii(cells), min_count=0).as_py():
                        del values[column]
                        continue
                    cells = pc.ascii_lower(cells)
                values[column].append(cells)
    except pa.ArrowInvalid:
        return frozenset()  # COPY reads what Arrow may not: the queries decide
    return frozenset(
        column
        for column, chunks in values.items()
        if len(pc.unique(chunked := pa.chunked_array(chunks, pa.string()))) == len(chunked)
    )


def check_against_customers(
    conn: psycopg.Connection,
    run_id: int,
    contract: Contract,
    fields: list[FieldSpec],
    mode: Mode,
    *,
    accepted_only: bool = False,
    unique_values: bool = True,
) -> list[Issue]:
    """The rules that depend on the stored customers. Run again under the merge lock over the
    accepted rows (`accepted_only`), they catch what another import changed since staging; the
    values that must be unique are left out with `unique_values=False`."""
    q = _Names(contract, run_id, accepted_only)
    issues = []
    for spec in contract.unique_fields if unique_values else ():
        if spec in fields:
            issues += _taken_by_other_customer(conn, q, spec)
    if mode == "update_only":
        issues += _by_existence(
            conn,
            q,
            exists=False,
            code="unknown_customer",
            message=(
                "{key} `{value}` is not an existing customer and this import only updates"
                " (mode update_only): remove the row, or import it with mode upsert."
            ),
        )
    else:
        if mode == "insert_only":
            issues += _by_existence(
                conn,
                q,
                exists=True,
                code="existing_customer",
                message=(
                    "{key} `{value}` is already a customer and this import only inserts"
                    " (mode insert_only): remove the row, or import it with mode upsert."
                ),
            )
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
    # The two arrays come from one pass over each group, so they pair up; they are put in line order
    # here: `array_agg(... ORDER BY line)` sorts every group, a million groups of one on a clean
    # file, which before PostgreSQL 16 doubles the query's time.
    rows = conn.execute(
        sql.SQL(
            "SELECT array_agg(line), array_agg({col}) FROM {staging}"
            " WHERE {col} IS NOT NULL AND {col} <> %s GROUP BY {value} HAVING count(*) > 1"
        ).format(col=column, staging=q.staging, value=value),
        [CLEAR_MARKER],
    ).fetchall()
    what = "customer" if spec.header == q.key_header else "value"
    issues = []
    for group in sorted(sorted(zip(*row, strict=True)) for row in rows):
        lines = [line for line, _ in group]
        for line, value in group:
            others = _other_lines(lines, line)
            message = (
                f"{spec.header} `{value}` also appears on line{'s' if len(lines) > 2 else ''}"
                f" {others}: each {what} may appear only once per file"
                + (" (compared ignoring case)" if casefold else "")
                + ". Keep one row and delete the others."
            )
            issues.append(Issue(line, spec.header, "duplicate_in_file", message, _public(spec, message, value)))
    return issues


def _other_lines(lines: list[int], line: int) -> str:
    """`4, 6`: the lines of a repeated value other than `line`; the first `LINES_NAMED` of them and how many
    more, when a value repeats in thousands of rows (each row's message would list all the others)."""
    others = [n for n in lines[: LINES_NAMED + 1] if n != line][:LINES_NAMED]
    more = len(lines) - 1 - len(others)
    return ", ".join(str(n) for n in others) + (f" and {more:,} more" if more else "")


def _public(spec: FieldSpec, message: str, value: str) -> str | None:
    """The message for logs and alerts: without the value when the field is personal."""
    return hide_value(message, value, spec.header) if spec.personal else None


def _taken_by_other_customer(conn: psycopg.Connection, q: _Names, spec: FieldSpec) -> list[Issue]:
    column = sql.Identifier(spec.column)
    rows = conn.execute(
        sql.SQL(
            "SELECT s.line, s.{col}, c.{key} FROM {staging} s JOIN {customers} c"
            " ON lower(c.{col}) = lower(s.{col}) AND c.{key} <> s.{key}"
            " WHERE s.{col} IS NOT NULL AND s.{col} <> %s AND s.{key} IS NOT NULL AND {rows}"
        ).format(col=column, key=q.key, staging=q.staging, customers=q.customers, rows=q.rows),
        [CLEAR_MARKER],
    ).fetchall()
    issues = []
    for line, value, owner in rows:
        message = (
            f"{spec.header} `{value}` already belongs to customer {q.key_header} `{owner}`:"
            f" it must be unique. Use another value, or change `{owner}` first."
        )
        issues.append(Issue(line, spec.header, "already_used", message, _public(spec, message, value)))
    return issues


def _by_existence(conn: psycopg.Connection, q: _Names, *, exists: bool, code: str, message: str) -> list[Issue]:
    rows = conn.execute(
        sql.SQL(
            "SELECT s.line, s.{key} FROM {staging} s WHERE s.{key} IS NOT NULL AND {rows} AND {neg}"
            " EXISTS (SELECT 1 FROM {customers} c WHERE c.{key} = s.{key})"
        ).format(
            key=q.key, staging=q.staging, customers=q.customers, neg=sql.SQL("" if exists else "NOT"), rows=q.rows
        ),
    ).fetchall()
    return [Issue(line, q.key_header, code, message.format(key=q.key_header, value=value)) for line, value in rows]


def _required_on_insert(conn: psycopg.Connection, q: _Names, spec: FieldSpec, *, present: bool) -> list[Issue]:
    blank = sql.SQL("s.{} IS NULL").format(sql.Identifier(spec.column)) if present else sql.SQL("true")
    rows = conn.execute(
        sql.SQL(
            "SELECT s.line, s.{key} FROM {staging} s WHERE s.{key} IS NOT NULL AND {blank} AND {rows}"
            " AND NOT EXISTS (SELECT 1 FROM {customers} c WHERE c.{key} = s.{key})"
        ).format(key=q.key, staging=q.staging, customers=q.customers, blank=blank, rows=q.rows),
    ).fetchall()
    where = "is blank" if present else "column is missing from the file"
    return [
        Issue(
            line,
            spec.header,
            "required",
            f"{spec.header} is required for a new customer, and {q.key_header} `{value}` is new"
            f" but its {spec.header} {where}: fill it in (e.g. {spec.example}).",
        )
        for line, value in rows
    ]
