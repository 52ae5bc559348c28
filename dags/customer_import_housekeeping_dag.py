"""
### Remove what the imports kept longer than they may

Every import keeps its file (`archive/`, `rejected/`) and reports that repeat its rows
(`reports/<import run id>/`): customers' names, emails and phones. Once a day this DAG deletes the
files and reports of import runs that finished more than `CUSTOMER_IMPORT_KEEP_FILES_DAYS` ago
(90), on local disk or object storage, and, when `CUSTOMER_IMPORT_KEEP_HISTORY_DAYS` is set, the
history of runs merged longer ago than that (they can no longer be rolled back then).
`landing/` and `processing/` are never touched; the runs' rows, counts and outcomes stay, and their
pages say when their files were removed. The log says what was removed (runs, files, bytes).

Safe to run again, or twice at once: each run is handled once, in a transaction that holds its row.
"""

from __future__ import annotations

import logging

import pendulum
from airflow.sdk import dag, task

log = logging.getLogger(__name__)


@dag(
    dag_id="customer_import_housekeeping",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    description="Deletes the files, reports and (if set) history that imports kept longer than they may",
    tags=["customer-import"],
)
def housekeeping():
    @task(retries=2)
    def remove_expired() -> dict:
        from customer_import.database.connection import connect_target
        from customer_import.housekeeping import remove_expired
        from customer_import.settings import Settings

        settings = Settings.from_env()
        with connect_target(settings) as conn:
            removed = remove_expired(conn, settings)
        log.info("%s", removed)
        return vars(removed)

    remove_expired()


housekeeping_dag = housekeeping()
