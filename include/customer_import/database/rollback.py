"""Rolling back one import run from its history: its inserts removed, its updates restored, the
customers it deactivated active again and those it reactivated deactivated again (as they were).

A customer that a later import changed again is a conflict: it is left as it is and listed,
since restoring it would silently undo the later import.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from customer_import.contract.fields import Contract
from customer_import.database import db, history, runs
from customer_import.database.runs import IMPORTED_STATUSES


class RollbackRefused(ValueError):
    """The run cannot be rolled back (it does not exist or changed nothing)."""


@dataclass
class RollbackResult:
    run_id: int
    removed: int
    restored: int
    conflicts: list[str] = field(default_factory=list)
    reactivated: int = 0  # of `restored`: customers it had deactivated, active again

    @property
    def message(self) -> str:
        text = f"Rolled back: {_customers(self.removed)} removed, {_customers(self.restored)} restored."
        if self.reactivated:
            text = text[:-1] + f" ({self.reactivated} of them deactivated by it, active again)."
        if self.conflicts:
            shown = ", ".join(self.conflicts[:20]) + (" …" if len(self.conflicts) > 20 else "")
            text += (
                f" {_customers(len(self.conflicts))} changed again by later imports"
                f" {'was' if len(self.conflicts) == 1 else 'were'} left as they are: {shown}."
            )
        return text


def _customers(n: int) -> str:
    return f"{n} customer{'' if n == 1 else 's'}"


def roll_back(conn: psycopg.Connection, run_id: int, contract: Contract) -> RollbackResult:
    """Undo run `run_id` in one transaction, under the merge lock (no import merges meanwhile)."""
    with db.locked(conn, db.MERGE_LOCK):
        try:
            run = runs.get_run(conn, run_id, for_update=True)
        except LookupError as error:
            raise RollbackRefused(f"There is no import run {run_id}.") from error
        if run.status not in IMPORTED_STATUSES:
            raise RollbackRefused(
                f"Import run {run_id} ended {run.status}: only a succeeded or partial import"
                " changed customers and can be rolled back."
            )
        if run.history_removed_at is not None:
            raise RollbackRefused(
                f"Import run {run_id} can no longer be rolled back: its history was removed on"
                f" {run.history_removed_at:%Y-%m-%d} (CUSTOMER_IMPORT_KEEP_HISTORY_DAYS)."
            )
        table, key = sql.Identifier(contract.table), sql.Identifier(contract.key.column)
        # A customer this run changed was changed again by a later run that is not rolled back exactly
        # when its last change is no longer this run's: a rollback restores `updated_by_run` too.
        rows = history.ROWS
        conflicts = [
            customer
            for (customer,) in conn.execute(
                sql.SQL(
                    "SELECT h.customer_key FROM {rows} h JOIN {table} c ON c.{key} = h.customer_key"
                    " WHERE h.run_id = %(run)s AND c.updated_by_run IS DISTINCT FROM %(run)s"
                    " ORDER BY h.line, h.customer_key"
                ).format(rows=rows, table=table, key=key),
                {"run": run_id},
            )
        ]
        removed = conn.execute(
            sql.SQL(
                "DELETE FROM {table} c USING {rows} h WHERE h.run_id = %(run)s AND h.action = 'insert'"
                " AND c.{key} = h.customer_key AND h.customer_key <> ALL(%(conflicts)s)"
            ).format(rows=rows, table=table, key=key),
            {"run": run_id, "conflicts": conflicts},
        ).rowcount
        restore: list[sql.Composable] = [
            sql.SQL("{col} = CASE WHEN {name} = ANY(h.{changed}) THEN h.{before} ELSE c.{col} END").format(
                col=sql.Identifier(f.column),
                name=sql.Literal(f.column),
                changed=sql.Identifier(history.CHANGED),
                before=history.before(f.column),
            )
            for f in contract.fields
            if f is not contract.key
        ]
        restore += [
            sql.SQL("{} = h.{}").format(sql.Identifier(name), history.before(name))
            for name in history.RESTORED_AUDIT_COLUMNS
        ]
        # what a deactivation or reactivation changed besides the contract's columns
        was_deactivated = sql.SQL("h.action IN ('reactivate', 'deactivate')")
        restore += [
            sql.SQL(
                "active = CASE h.action WHEN 'reactivate' THEN false WHEN 'deactivate' THEN true ELSE c.active END"
            ),
            *(
                sql.SQL("{col} = CASE WHEN {was} THEN h.{before} ELSE c.{col} END").format(
                    col=sql.Identifier(name), was=was_deactivated, before=history.before(name)
                )
                for name in history.DEACTIVATION_COLUMNS
            ),
        ]
        restored, reactivated = conn.execute(
            sql.SQL(
                "WITH restored AS (UPDATE {table} c SET {restore} FROM {rows} h"
                " WHERE h.run_id = %(run)s AND h.action <> 'insert' AND c.{key} = h.customer_key"
                " AND h.customer_key <> ALL(%(conflicts)s) RETURNING h.action)"
                " SELECT count(*), count(*) FILTER (WHERE action = 'deactivate') FROM restored"
            ).format(table=table, key=key, rows=rows, restore=sql.SQL(", ").join(restore)),
            {"run": run_id, "conflicts": conflicts},
        ).fetchone() or (0, 0)
        result = RollbackResult(run_id, removed, restored, conflicts, reactivated)
        runs.update_run(conn, run_id, status="rolled_back", message=result.message)
    return result
