"""The target database as the DAGs and the Imports page reach it: through an Airflow connection.

Only the Airflow side imports this module (it needs the Postgres provider); the core takes a
psycopg connection and never knows where it came from.
"""

from __future__ import annotations

import psycopg

from customer_import.settings import Settings


def connect_target(settings: Settings | None = None) -> psycopg.Connection:
    """An autocommit connection to the customer database (Airflow connection `settings.conn_id`).

    When it cannot be reached, ConnectionError says so in plain words (Airflow retries the task).
    """
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    conn_id = (settings or Settings.from_env()).conn_id
    try:
        conn = PostgresHook(postgres_conn_id=conn_id).get_conn()
    except psycopg.OperationalError as error:
        raise ConnectionError(
            f"The customer database (Airflow connection {conn_id}) cannot be reached: {error}".strip()
            + " Nothing was changed and the file is kept; this task is retried with backoff, and once the"
            " database is back a cleared run imports the file."
        ) from error
    if not isinstance(conn, psycopg.Connection):  # the provider picks psycopg 3 beside SQLAlchemy 2
        raise TypeError(
            f"The Postgres provider gave a {type(conn).__name__} for {conn_id}: the import needs"
            " psycopg 3 (installed with SQLAlchemy 2, as requirements.txt pins them)"
        )
    conn.autocommit = True
    return conn
