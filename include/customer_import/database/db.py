"""Connections and the schema: the tables are created and migrated additively, idempotently.

Identifiers come from the contract only (checked to be plain lower-case names) and are
quoted with `psycopg.sql`; values always travel as bind parameters or through COPY.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from customer_import.contract.fields import Contract
from customer_import.database import history

SQL_DIR = Path(__file__).with_name("sql")
#: What `conn.execute` takes: text, or SQL composed with `psycopg.sql`.
Statement = str | sql.SQL | sql.Composed
MIGRATE_LOCK = "customer_import:migrate"
MERGE_LOCK = "customer_import:merge"
#: Bookkeeping columns of customers besides created/updated: which source owns it, and its deactivation.
LIFECYCLE_COLUMNS = {
    "source": "text NOT NULL DEFAULT 'default'",
    "active": "boolean NOT NULL DEFAULT true",
    "deactivated_at": "timestamptz",
    "deactivated_by_run": "bigint",
}


def connect(conninfo: str) -> psycopg.Connection:
    return psycopg.connect(conninfo, autocommit=True)


def scalar(conn: psycopg.Connection, query: Statement, params: Sequence[Any] | Mapping[str, Any] | None = None) -> Any:
    """The one value of a query that returns one row (an aggregate, a lookup by key): None when it
    returns none."""
    row = conn.execute(query, params).fetchone()
    return None if row is None else row[0]


def use_schema(conn: psycopg.Connection, schema: str) -> psycopg.Connection:
    """Point the session at `schema` and switch to autocommit (`migrate` creates the schema).

    Every multi-statement change of the project runs in an explicit `conn.transaction()`.
    """
    conn.autocommit = True
    return set_session(conn, "search_path", schema)


def set_session(conn: psycopg.Connection, setting: str, value: str) -> psycopg.Connection:
    """Set a PostgreSQL setting for the rest of the session."""
    conn.execute("SELECT set_config(%s, %s, false)", [setting, value])
    return conn


@contextmanager
def locked(conn: psycopg.Connection, name: str) -> Iterator[psycopg.Connection]:
    """A transaction holding the advisory lock `name`: such transactions run one at a time."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [name])
        yield conn


def migrate(conn: psycopg.Connection, contract: Contract, schema: str) -> None:
    """Create or extend the schema and its tables. Safe to run concurrently and repeatedly.

    When the schema already matches (the fingerprint of the DDL it was built with), nothing runs:
    `ALTER TABLE ... ADD COLUMN IF NOT EXISTS` takes an ACCESS EXCLUSIVE lock even when the column
    exists, and would queue every import (and every reader queued behind it) after any open
    transaction on customers. The advisory lock serialises migrations: two sessions running
    `CREATE ... IF NOT EXISTS` at once would collide on the catalog's unique index.
    """
    tables = [
        (SQL_DIR / "schema.sql").read_text(encoding="utf-8"),
        *(s.as_string(conn) for s in customers_ddl(contract)),
    ]
    changes = [s.as_string(conn) for s in history.ddl(contract)]
    fingerprint = hashlib.sha256("\n".join([*tables, *changes]).encode()).hexdigest()
    conn.execute("SELECT set_config('search_path', %s, false)", [schema])
    if _applied(conn, schema) == fingerprint:
        return
    with locked(conn, MIGRATE_LOCK):
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        for statement in tables:
            conn.execute(statement)
        history.migrate(conn, contract, changes)
        conn.execute("CREATE TABLE IF NOT EXISTS customer_import_schema (fingerprint text NOT NULL)")
        conn.execute("DELETE FROM customer_import_schema")
        conn.execute("INSERT INTO customer_import_schema VALUES (%s)", [fingerprint])


def _applied(conn: psycopg.Connection, schema: str) -> str | None:
    """The fingerprint of the DDL the schema was last migrated with, if any."""
    if scalar(conn, "SELECT to_regclass(format('%%I.customer_import_schema', %s::text))", [schema]) is None:
        return None
    fingerprint: str | None = scalar(conn, "SELECT fingerprint FROM customer_import_schema")
    return fingerprint


def customers_ddl(contract: Contract) -> list[sql.Composed]:
    table, key = sql.Identifier(contract.table), contract.key
    statements = [
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {table} ("
            " {key} {key_type} PRIMARY KEY,"
            " created_at timestamptz NOT NULL DEFAULT now(),"
            " updated_at timestamptz NOT NULL DEFAULT now(),"
            " created_by_run bigint,"
            " updated_by_run bigint)"
        ).format(table=table, key=sql.Identifier(key.column), key_type=sql.SQL(key.sql_type))
    ]
    # Ownership and deactivation (full snapshots): the source whose file created the customer, and
    # whether it is still in that source's export. Fast defaults: adding them rewrites no rows.
    for column, declaration in LIFECYCLE_COLUMNS.items():
        statements.append(
            sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
                table, sql.Identifier(column), sql.SQL(declaration)
            )
        )
    for spec in contract.fields:
        if spec is not key:
            statements.append(
                sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
                    table, sql.Identifier(spec.column), sql.SQL(spec.sql_type)
                )
            )
    for spec in contract.unique_fields:
        statements.append(
            sql.SQL("CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} (lower({}))").format(
                sql.Identifier(f"{contract.table}_{spec.column}_unique"), table, sql.Identifier(spec.column)
            )
        )
    return statements
