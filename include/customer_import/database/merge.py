"""The MERGE of a run's accepted staged rows into customers, and the history it records.

For each column the file carries, the new value of a customer is:

    blank cell  -> the stored value (a bulk update touches only what it names)
    #NULL       -> NULL
    otherwise   -> the cell, cast to the column's type

and a customer whose new values equal the stored ones is not written at all, unless it had been
deactivated (a full snapshot lacked it): a row for it reactivates it. A new customer belongs to the
run's source (`customers.source`), which full snapshots of that source may deactivate
(snapshots.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from customer_import.contract.fields import Contract, FieldSpec
from customer_import.contract.options import Mode
from customer_import.contract.rules import CLEAR_MARKER
from customer_import.database import history
from customer_import.database.history import RESTORED_AUDIT_COLUMNS
from customer_import.database.staging import accepted_rows, count_accepted


@dataclass(frozen=True)
class MergeCounts:
    inserted: int
    updated: int
    unchanged: int
    reactivated: int = 0
    deactivated: int = 0


#: The changes of the run being merged: a temporary table, dropped when the merge commits.
CHANGES = sql.Identifier("customer_changes")


class MergeSql:
    """The SQL of one run's merge, for the columns its file carries."""

    def __init__(self, contract: Contract, fields: list[FieldSpec], run_id: int, source: str = "default") -> None:
        self.key = sql.Identifier(contract.key.column)
        self.customers = sql.Identifier(contract.table)
        self.values = [f for f in fields if f is not contract.key]
        self.accepted = accepted_rows(run_id)
        self.run = sql.Literal(run_id)
        self.source = sql.Literal(source)

    def new_value(self, spec: FieldSpec, *, stored: bool = True) -> sql.Composable:
        """The column's value after the merge; `stored=False` where no customer exists yet."""
        staged = sql.SQL("s.{}").format(sql.Identifier(spec.column))
        keep = sql.SQL("c.{}").format(sql.Identifier(spec.column)) if stored else sql.NULL
        return sql.SQL("CASE WHEN {s} IS NULL THEN {keep} WHEN {s} = {clear} THEN NULL ELSE {typed} END").format(
            s=staged, keep=keep, clear=sql.Literal(CLEAR_MARKER), typed=sql.SQL(spec.sql_cast).format(staged)
        )

    def changed(self) -> sql.Composable:
        """True for a stored customer whose new values differ from the stored ones."""
        if not self.values:
            return sql.SQL("false")
        return sql.SQL("({}) IS DISTINCT FROM ({})").format(
            sql.SQL(", ").join(sql.SQL("c.{}").format(sql.Identifier(f.column)) for f in self.values),
            sql.SQL(", ").join(self.new_value(f) for f in self.values),
        )

    def differs(self, spec: FieldSpec) -> sql.Composable:
        """True where the column's new value is not the stored one (always, for a new customer)."""
        return sql.SQL("c.{col} IS DISTINCT FROM {new}").format(
            col=sql.Identifier(spec.column), new=self.new_value(spec)
        )

    def diff(self) -> sql.Composed:
        """Each accepted row that would change a customer: line, key, action, and for an update (or
        a reactivation) the names of the columns it changes with their typed values before and after
        (see history.py); a new customer records none (its stored values are all NULL)."""
        typed = [sql.SQL("c.{} AS {}").format(sql.Identifier(c), history.before(c)) for c in RESTORED_AUDIT_COLUMNS]
        typed += [
            sql.SQL("CASE WHEN NOT c.active THEN c.{} END AS {}").format(sql.Identifier(c), history.before(c))
            for c in history.DEACTIVATION_COLUMNS
        ]
        for spec in self.values:  # (`differs` casts the new value: it is not computed for a new customer)
            differs = sql.SQL("c.{} IS NOT NULL AND {}").format(self.key, self.differs(spec))
            typed += [
                sql.SQL("CASE WHEN {} THEN c.{} END AS {}").format(
                    differs, sql.Identifier(spec.column), history.before(spec.column)
                ),
                sql.SQL("CASE WHEN {} THEN {} END AS {}").format(
                    differs, self.new_value(spec), history.after(spec.column)
                ),
            ]
        changed = sql.SQL("array_remove(ARRAY[{}]::text[], NULL)").format(
            sql.SQL(", ").join(
                sql.SQL("CASE WHEN {} THEN {} END").format(self.differs(f), sql.Literal(f.column)) for f in self.values
            )
            if self.values
            else sql.SQL("")
        )
        return sql.SQL(
            "SELECT s.line, s.{key} AS customer_key,"
            " CASE WHEN c.{key} IS NULL THEN 'insert' WHEN NOT c.active THEN 'reactivate' ELSE 'update' END AS action,"
            " CASE WHEN c.{key} IS NOT NULL THEN {changed} END AS {changed_name}, {typed}"
            "\n  FROM ({accepted}) s LEFT JOIN {customers} c ON c.{key} = s.{key}"
            "\n  WHERE c.{key} IS NULL OR NOT c.active OR {any_change}"
        ).format(
            key=self.key,
            accepted=self.accepted,
            customers=self.customers,
            any_change=self.changed(),
            changed=changed,
            changed_name=sql.Identifier(history.CHANGED),
            typed=sql.SQL(", ").join(typed),
        )

    def typed_columns(self) -> list[sql.Identifier]:
        """The history's columns `diff` fills, besides line, key and action."""
        return [
            sql.Identifier(history.CHANGED),
            *(history.before(c) for c in (*RESTORED_AUDIT_COLUMNS, *history.DEACTIVATION_COLUMNS)),
            *(column for f in self.values for column in (history.before(f.column), history.after(f.column))),
        ]

    def find_changes(self) -> sql.Composed:
        """Keep `diff` in a temporary table until the transaction ends."""
        return sql.SQL("CREATE TEMPORARY TABLE {} ON COMMIT DROP AS\n{}").format(CHANGES, self.diff())

    def record_history(self, changes: sql.Composable) -> sql.Composed:
        """Record `changes` (rows of `diff`) in the history and count them by action (inserted,
        updated, reactivated), in one statement."""
        columns = sql.SQL(", ").join(self.typed_columns())
        return sql.SQL(
            "WITH recorded AS (\nINSERT INTO {rows} (run_id, line, customer_key, action, {columns})"
            "\nSELECT {run}, line, customer_key, action, {columns} FROM (\n{changes}) d\nRETURNING action)"
            "\nSELECT {counted} FROM recorded"
        ).format(rows=history.ROWS, columns=columns, run=self.run, changes=changes, counted=COUNTED)

    def merge(self, mode: Mode) -> sql.Composed:
        columns = [self.key, *(sql.Identifier(f.column) for f in self.values)]
        clauses = []
        if mode != "insert_only":
            assignments = [sql.SQL("{} = {}").format(sql.Identifier(f.column), self.new_value(f)) for f in self.values]
            clauses.append(
                sql.SQL(
                    "WHEN MATCHED AND (NOT c.active OR {changed})\n  THEN UPDATE SET {assignments}"
                    "active = true, deactivated_at = NULL, deactivated_by_run = NULL,"
                    " updated_at = now(), updated_by_run = {run}"
                ).format(
                    changed=self.changed(),
                    run=self.run,
                    assignments=sql.SQL("").join(sql.SQL("{}, ").format(a) for a in assignments),
                )
            )
        if mode != "update_only":
            clauses.append(
                sql.SQL(
                    "WHEN NOT MATCHED\n  THEN INSERT ({columns}, source, created_by_run, updated_by_run)"
                    "\n  VALUES (s.{key}, {values}{sep}{source}, {run}, {run})"
                ).format(
                    columns=sql.SQL(", ").join(columns),
                    key=self.key,
                    run=self.run,
                    source=self.source,
                    values=sql.SQL(", ").join(self.new_value(f, stored=False) for f in self.values),
                    sep=sql.SQL(", " if self.values else ""),
                )
            )
        return sql.SQL("MERGE INTO {customers} c\nUSING ({accepted}) s ON c.{key} = s.{key}\n{clauses}").format(
            customers=self.customers, accepted=self.accepted, key=self.key, clauses=sql.SQL("\n").join(clauses)
        )


#: The history rows of a merge counted by action, in MergeCounts' order (inserted, updated, reactivated).
COUNTED = sql.SQL(
    "count(*) FILTER (WHERE action = 'insert'), count(*) FILTER (WHERE action = 'update'),"
    " count(*) FILTER (WHERE action = 'reactivate')"
)


def preview_counts(
    conn: psycopg.Connection, run_id: int, contract: Contract, fields: list[FieldSpec], source: str = "default"
) -> MergeCounts:
    """What the merge would do, without writing anything (a dry run)."""
    q = MergeSql(contract, fields, run_id, source)
    row = conn.execute(sql.SQL("SELECT {} FROM ({}) d").format(COUNTED, q.diff())).fetchone()
    assert row is not None
    return _counts(conn, run_id, *row)


def apply_merge(
    conn: psycopg.Connection,
    run_id: int,
    contract: Contract,
    fields: list[FieldSpec],
    mode: Mode,
    source: str = "default",
) -> MergeCounts:
    """MERGE the run's accepted rows and record their history, in the caller's transaction.

    The changes are found first, into a temporary table: `CREATE TABLE AS` may compare the staged
    rows with the customers on parallel workers, where a statement that writes (an INSERT, or one
    MERGE ... RETURNING feeding the history) runs on one core. The history is recorded from that
    table, then the MERGE runs. The caller holds the merge lock
    (`db.locked(conn, db.MERGE_LOCK)`), so what the history records is what the MERGE does.
    """
    q = MergeSql(contract, fields, run_id, source)
    conn.execute(q.find_changes())
    row = conn.execute(q.record_history(sql.SQL("SELECT * FROM {}").format(CHANGES))).fetchone()
    conn.execute(q.merge(mode))
    assert row is not None
    return _counts(conn, run_id, *row)


def _counts(conn: psycopg.Connection, run_id: int, inserted: int, updated: int, reactivated: int) -> MergeCounts:
    unchanged = count_accepted(conn, run_id) - inserted - updated - reactivated
    return MergeCounts(inserted, updated, unchanged, reactivated)


#: line (None for a deactivation: the customer is not in the file), key, action, before, after
Change = tuple[int | None, str, str, dict[str, Any] | None, dict[str, Any] | None]


def first_changes(conn: psycopg.Connection, run_id: int, limit: int) -> list[Change]:
    """The first changes a merged run recorded in its history, by line (deactivations last, by key)."""
    return conn.execute(
        "SELECT line, customer_key, action, before, after FROM customer_history"
        " WHERE run_id = %s ORDER BY line, customer_key LIMIT %s",
        [run_id, limit],
    ).fetchall()


def lifecycle_changes(conn: psycopg.Connection, run_id: int) -> Iterator[Change]:
    """The customers a merged run deactivated, then those it reactivated, by key, streamed from its
    history (a server-side cursor: read it to the end, or close it)."""
    with conn.transaction(), conn.cursor(name=f"lifecycle_{run_id}") as cur:
        cur.execute(
            "SELECT line, customer_key, action, before, after FROM customer_history WHERE run_id = %s"
            " AND action IN ('deactivate', 'reactivate') ORDER BY action, customer_key",
            [run_id],
        )
        yield from cur


def preview(
    conn: psycopg.Connection,
    run_id: int,
    contract: Contract,
    fields: list[FieldSpec],
    deactivations: sql.Composable | None = None,
) -> Iterator[Change]:
    """Every change the dry run's merge would make, by line, then the customers it would deactivate
    (`deactivations`, rows of `snapshots.absent`) by key; streamed (server-side cursors).

    Read it to the end, or close it: the cursor's transaction stays open until then.
    """
    q = MergeSql(contract, fields, run_id)
    before, after = history.images("d", q.values)
    queries = [
        sql.SQL("SELECT line, customer_key, action, {}, {} FROM ({}) d ORDER BY line").format(before, after, q.diff())
    ]
    if deactivations is not None:
        queries.append(
            sql.SQL(
                "SELECT NULL::integer, customer_key, 'deactivate', jsonb_build_object('active', true,"
                " 'updated_at', {}, 'updated_by_run', {}), jsonb_build_object('active', false)"
                " FROM ({}) a ORDER BY customer_key"
            ).format(history.before("updated_at"), history.before("updated_by_run"), deactivations)
        )
    with conn.transaction():
        for number, query in enumerate(queries):
            with conn.cursor(name=f"preview_{run_id}_{number}") as cur:
                cur.execute(query)
                yield from cur
