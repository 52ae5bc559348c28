"""Full snapshots: the customers a source's complete export lacks are deactivated, never deleted.

A source whose every file holds all of its customers declares `snapshot: full` (sources.yaml, or
the run's `snapshot` option). Each customer belongs to the source whose file created it
(`customers.source`). After the MERGE, in the same transaction and under the merge lock, the
active customers of the run's source whose key is on no row of the file are deactivated: `active`
false, `deactivated_at`, `deactivated_by_run`, and a `deactivate` row in the history that a
rollback restores from. A rejected row's key counts as present (its customer is in the export;
only the row has a problem). A later file that names a deactivated customer reactivates it
(merge.py).

What keeps a truncated export (a report capped at 50,000 rows, a half-written file, the wrong
filter) from deactivating half the customers:

- a file with no data rows deactivates nothing;
- a rejected row whose key itself is invalid makes the run deactivate nothing (that row may be a
  customer the file holds, written wrongly);
- more than `max_deactivate_share` of the source's active customers is refused before anything is
  written, unless a person confirmed it (`allow_mass_deactivation`).
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from customer_import.contract.fields import Contract
from customer_import.database import db, history
from customer_import.database.runs import ImportRun
from customer_import.database.staging import staging_table

#: The customers the run deactivates, found before the merge: a temporary table, dropped at commit.
DEACTIVATIONS = sql.Identifier("customer_deactivations")
EMPTY = "As a full snapshot it was skipped: an export with no rows deactivates no customer."


@dataclass(frozen=True)
class Plan:
    """What a full snapshot deactivates: `absent` of the source's `active` customers are not in the
    file; none are deactivated when it is `skipped` (why) or `refused` (why)."""

    absent: int
    active: int
    skipped: str | None = None
    refused: str | None = None

    @property
    def deactivates(self) -> bool:
        return self.absent > 0 and not self.skipped and not self.refused


def absent(contract: Contract, run: ImportRun) -> sql.Composed:
    """The active customers of the run's source whose key is on no staged row of its file (accepted
    or rejected), with the bookkeeping values a rollback restores."""
    key = sql.Identifier(contract.key.column)
    return sql.SQL(
        "SELECT c.{key} AS customer_key, c.updated_at AS {updated_at}, c.updated_by_run AS {updated_by_run}"
        " FROM {customers} c WHERE c.source = {source} AND c.active"
        " AND NOT EXISTS (SELECT FROM {staged} s WHERE s.{key} = c.{key})"
    ).format(
        key=key,
        customers=sql.Identifier(contract.table),
        source=sql.Literal(run.source),
        staged=staging_table(run.id),
        updated_at=history.before("updated_at"),
        updated_by_run=history.before("updated_by_run"),
    )


def plan(
    conn: psycopg.Connection, run: ImportRun, contract: Contract, invalid_key_line: int | None, *, keep: bool
) -> Plan | None:
    """The run's plan (None unless it is a full snapshot). With `keep`, inside the merge
    transaction, the absent customers are kept for `deactivate` in a temporary table."""
    if run.snapshot != "full":
        return None
    active = int(
        db.scalar(
            conn,
            sql.SQL("SELECT count(*) FROM {} WHERE source = %s AND active").format(sql.Identifier(contract.table)),
            [run.source],
        )
    )
    if not run.rows_total:
        return Plan(0, active, skipped=EMPTY)
    if invalid_key_line is not None:
        return Plan(
            0,
            active,
            skipped=f"No customer was deactivated: the {contract.key.header} on line {invalid_key_line} is"
            " invalid, so this full snapshot cannot tell which customers are missing from it. Fix that row"
            " and import the file again to deactivate the customers it lacks.",
        )
    if keep:
        conn.execute(
            sql.SQL("CREATE TEMPORARY TABLE {} ON COMMIT DROP AS {}").format(DEACTIVATIONS, absent(contract, run))
        )
        count = int(db.scalar(conn, sql.SQL("SELECT count(*) FROM {}").format(DEACTIVATIONS)))
    else:
        count = int(db.scalar(conn, sql.SQL("SELECT count(*) FROM ({}) a").format(absent(contract, run))))
    if count > run.max_deactivate_share * active and not run.allow_mass_deactivation:
        return Plan(count, active, refused=refusal(count, active, run.max_deactivate_share))
    return Plan(count, active)


def refusal(count: int, active: int, share: float) -> str:
    return (
        f"This full export would deactivate {count:,} of {active:,} customers ({100 * count / active:.0f} %);"
        f" the limit is {100 * share:g} %. If the export is complete, import it again with"
        " allow_mass_deactivation."
    )


def deactivate(conn: psycopg.Connection, run: ImportRun, contract: Contract) -> int:
    """Deactivate the customers `plan(keep=True)` found and record it in the history, in the caller's
    transaction (after the MERGE, under the merge lock)."""
    before = [history.before(c) for c in history.RESTORED_AUDIT_COLUMNS]
    conn.execute(
        sql.SQL(
            "INSERT INTO {rows} (run_id, customer_key, action, {before})"
            " SELECT {run}, customer_key, 'deactivate', {before} FROM {deactivations}"
        ).format(
            rows=history.ROWS,
            before=sql.SQL(", ").join(before),
            run=sql.Literal(run.id),
            deactivations=DEACTIVATIONS,
        )
    )
    return conn.execute(
        sql.SQL(
            "UPDATE {customers} c SET active = false, deactivated_at = now(), deactivated_by_run = {run},"
            " updated_at = now(), updated_by_run = {run} FROM {deactivations} d WHERE c.{key} = d.customer_key"
        ).format(
            customers=sql.Identifier(contract.table),
            run=sql.Literal(run.id),
            deactivations=DEACTIVATIONS,
            key=sql.Identifier(contract.key.column),
        )
    ).rowcount


def outcome(plan: Plan | None, run: ImportRun, deactivated: int) -> str | None:
    """What a merged full snapshot says of its deactivations (None for a delta)."""
    if plan is None:
        return None
    if plan.skipped:
        return plan.skipped
    if not deactivated:
        return f"Every active customer of source {run.source} is in this full export: none was deactivated."
    return (
        f"{deactivated:,} customer{'s' if deactivated != 1 else ''} of source {run.source} not in this full export"
        f" {'were' if deactivated != 1 else 'was'} deactivated (deactivations.csv lists them)."
    )
