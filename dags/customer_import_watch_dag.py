"""
### Watch the landing folder

Every minute, the files that have settled in the landing folder (unchanged for
`CUSTOMER_IMPORT_SETTLED_SECONDS`, not a dotfile nor a `.part`/`.tmp` upload) are handed to
`customer_import`, one run per file. A backlog drains in one pass: twenty files dropped at once
become twenty runs at once, which `customer_import` then imports one after the other. Each run's
logical date and `run_after` are its file's arrival time (mtime); Airflow starts queued runs by `run_after`, so
files are imported in arrival order.

Each run id is made of the file's name, size and modification time, so a file already handed
over is never handed over twice, and a file dropped again (fixed) starts a new run.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import dag, task


@dag(
    dag_id="customer_import_watch",
    schedule=timedelta(minutes=1),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["customer-import"],
)
def watch_landing_folder():
    @task
    def list_settled_files() -> list[dict]:
        from customer_import.folders import Folders
        from customer_import.settings import Settings

        settings = Settings.from_env()
        folders = Folders(settings.data_dir)
        return folders.handovers(folders.waiting_files(settings.settled_seconds))

    TriggerDagRunOperator.partial(
        task_id="import_each_file",
        trigger_dag_id="customer_import",
        skip_when_already_exists=True,
    ).expand_kwargs(list_settled_files())


watch_landing_folder_dag = watch_landing_folder()
