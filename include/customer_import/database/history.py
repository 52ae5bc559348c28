"""The history of what each import changed: typed rows, and the `customer_history` view over them.

`customer_history_rows` holds one row per customer a run inserted, updated, reactivated or
deactivated: the run, the line of the file (none for a deactivation: the customer is not in the
file), the key and the action, and for an update the names of the columns it changed (`changed`)
with their values before and after, typed as in `customers` (`before_<column>`, `after_<column>`;
NULL for a column it did not change), plus the `updated_at` and `updated_by_run` a rollback
restores. An insert records no values: the customer's row is its after image until a later change
records its own before image. A reactivation is an update that also sets `active` again: it keeps
when and by which run the customer had been deactivated (`before_deactivated_at`,
`before_deactivated_by_run`); a deactivation changes no column of the contract.

`customer_history` shows the same rows with the images as JSON objects, as people and the reports
read them: `before` has the changed columns and the two bookkeeping columns as they were, `after`
the changed columns as the run left them. The images are built when they are read, not in the
merge: on a million updates, building them in the merge took 7 s and writing them 5–6 s, where
the typed values take about 3 s and 3.5 s.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg import sql

from customer_import.contract.fields import Contract, FieldSpec

#: The typed rows; `customer_history` is the view of them with JSON images.
ROWS = sql.Identifier("customer_history_rows")
VIEW = sql.Identifier("customer_history")
#: Bookkeeping columns an update's before values keep, so that a rollback restores them too.
RESTORED_AUDIT_COLUMNS = ("updated_at", "updated_by_run")
CHANGED = "changed"
ACTIONS = ("insert", "update", "reactivate", "deactivate")
#: What a reactivation's before image keeps of the deactivation it undoes.
DEACTIVATION_COLUMNS = ("deactivated_at", "deactivated_by_run")


def before(column: str) -> sql.Identifier:
    return sql.Identifier(f"before_{column}")


def after(column: str) -> sql.Identifier:
    return sql.Identifier(f"after_{column}")


def images(alias: str, fields: Sequence[FieldSpec]) -> tuple[sql.Composable, sql.Composable]:
    """The JSON before and after images of the change `alias`, a row with the typed columns of
    `fields` and `changed`: the changed columns only (the before image with the bookkeeping columns)."""
    row = sql.Identifier(alias)
    columns = [f.column for f in fields]
    not_changed = sql.SQL("ARRAY[{}]::text[]").format(
        sql.SQL(", ").join(
            sql.SQL("CASE WHEN {name} = ANY({row}.{changed}) THEN NULL ELSE {name} END").format(
                name=sql.Literal(c), row=row, changed=sql.Identifier(CHANGED)
            )
            for c in columns
        )
    )

    def image(pairs: list[tuple[str, sql.Identifier]], active: dict[str, sql.Composable]) -> sql.Composable:
        built = sql.SQL("jsonb_build_object({})").format(
            sql.SQL(", ").join(sql.SQL("{}, {}.{}").format(sql.Literal(name), row, value) for name, value in pairs)
        )
        if columns:
            built = sql.SQL("({} - {})").format(built, not_changed)
        flags = sql.SQL(" ").join(
            sql.SQL("WHEN {} THEN {}").format(sql.Literal(action), flag) for action, flag in active.items()
        )
        return sql.SQL(
            "CASE WHEN {row}.action <> 'insert' THEN {built} || CASE {row}.action {flags} ELSE '{{}}'::jsonb END END"
        ).format(row=row, built=built, flags=flags)

    reactivated = sql.SQL("jsonb_build_object('active', false, {})").format(
        sql.SQL(", ").join(sql.SQL("{}, {}.{}").format(sql.Literal(c), row, before(c)) for c in DEACTIVATION_COLUMNS)
    )
    return (
        image(
            [(c, before(c)) for c in (*columns, *RESTORED_AUDIT_COLUMNS)],
            {"deactivate": sql.SQL("jsonb_build_object('active', true)"), "reactivate": reactivated},
        ),
        image(
            [(c, after(c)) for c in columns],
            {
                "deactivate": sql.SQL("jsonb_build_object('active', false)"),
                "reactivate": sql.SQL("jsonb_build_object('active', true)"),
            },
        ),
    )


def ddl(contract: Contract) -> list[sql.Composed]:
    """Create or extend the typed rows for the contract's columns, and (re)create the view."""
    values = [f for f in contract.fields if f is not contract.key]
    statements = [
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {rows} ("
            " run_id bigint NOT NULL,"
            " line integer,"
            " customer_key text NOT NULL,"
            " action text NOT NULL,"
            " changed text[],"
            " before_updated_at timestamptz,"
            " before_updated_by_run bigint,"
            " recorded_at timestamptz NOT NULL DEFAULT now())"
        ).format(rows=ROWS),
        # tables made before full snapshots: a line may be missing (a deactivation), more actions
        sql.SQL("ALTER TABLE {} ALTER COLUMN line DROP NOT NULL").format(ROWS),
        sql.SQL(
            "ALTER TABLE {rows} DROP CONSTRAINT IF EXISTS {check},"
            " ADD CONSTRAINT {check} CHECK (action IN ({actions})) NOT VALID"
        ).format(
            rows=ROWS,
            check=sql.Identifier("customer_history_rows_action_check"),
            actions=sql.SQL(", ").join(map(sql.Literal, ACTIONS)),
        ),
        *(
            sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(ROWS, before(c), sql.SQL(kind))
            for c, kind in zip(DEACTIVATION_COLUMNS, ("timestamptz", "bigint"), strict=True)
        ),
        # An append-only log, written in the order runs merge: a BRIN index finds a run's rows at
        # almost no cost per row, where a primary key on (run_id, line) cost 0.5 s more per million
        # changes. A run merges once (`import_runs.merged_at`, under the merge lock) and changes a
        # customer from one line, so (run_id, line) is unique without a constraint to check it.
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING brin (run_id)").format(
            sql.Identifier("customer_history_rows_run_idx"), ROWS
        ),
    ]
    for spec in values:
        for column in (before(spec.column), after(spec.column)):
            statements.append(
                sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(ROWS, column, sql.SQL(spec.sql_type))
            )
    json_before, json_after = images("h", values)
    statements.append(
        sql.SQL(
            "CREATE OR REPLACE VIEW {view} AS SELECT h.run_id, h.line, h.customer_key, h.action,"
            " {before} AS before, {after} AS after, h.recorded_at FROM {rows} h"
        ).format(view=VIEW, rows=ROWS, before=json_before, after=json_after)
    )
    return statements


def migrate(conn: psycopg.Connection, contract: Contract, statements: Sequence[str]) -> None:
    """Run `statements` (`ddl(contract)`, as text). A `customer_history` table with JSON images
    (before 2026-11) is set aside first, so that the view can take its name; its rows are then
    converted into typed rows and it is dropped."""
    kind = conn.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass('customer_history')").fetchone()
    legacy = kind is not None and kind[0] == "r"
    if legacy:
        conn.execute("ALTER TABLE customer_history RENAME TO customer_history_json")
    for statement in statements:
        conn.execute(statement)
    if not legacy:
        return
    values = [f.column for f in contract.fields if f is not contract.key]
    conn.execute(
        sql.SQL(
            "INSERT INTO {rows} (run_id, line, customer_key, action, changed, before_updated_at,"
            " before_updated_by_run, recorded_at{sep}{typed})"
            "\nSELECT h.run_id, h.line, h.customer_key, h.action,"
            " CASE WHEN h.action = 'update' THEN ARRAY(SELECT jsonb_object_keys(h.after)) END,"
            " b.updated_at, b.updated_by_run, h.recorded_at{sep}{read}"
            "\nFROM customer_history_json h,"
            " jsonb_populate_record(NULL::{customers}, CASE WHEN h.action = 'update' THEN h.before END) b,"
            " jsonb_populate_record(NULL::{customers}, CASE WHEN h.action = 'update' THEN h.after END) a"
        ).format(
            rows=ROWS,
            sep=sql.SQL(", " if values else ""),
            typed=sql.SQL(", ").join([*(before(c) for c in values), *(after(c) for c in values)]),
            read=sql.SQL(", ").join(
                [
                    *(sql.SQL("b.{}").format(sql.Identifier(c)) for c in values),
                    *(sql.SQL("a.{}").format(sql.Identifier(c)) for c in values),
                ]
            ),
            customers=sql.Identifier(contract.table),
        )
    )
    conn.execute("DROP TABLE customer_history_json")
