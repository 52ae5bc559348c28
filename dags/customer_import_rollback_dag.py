"""
### Roll back one import run

Undoes the changes of one `customer_import` run, from its history: the customers it inserted
are removed, the ones it updated get their previous values back. A customer that a later
import changed again is a conflict: it is left as it is, and listed in the run's message and
in `reports/<import run id>/rollback.json`. The run's status becomes `rolled_back`.

Trigger it with the import run id (the `id` of `import_runs`, shown on every report), or run
`make rollback RUN_ID=<id>`.
"""

from __future__ import annotations

import logging

import pendulum
from airflow.sdk import Asset, Param, dag, task
from airflow.sdk.exceptions import AirflowFailException

from customer_import.settings import CUSTOMERS_ASSET_NAME, CUSTOMERS_ASSET_URI

CUSTOMERS = Asset(name=CUSTOMERS_ASSET_NAME, uri=CUSTOMERS_ASSET_URI)
log = logging.getLogger(__name__)


@dag(
    dag_id="customer_import_rollback",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    description="Rolls one import run back from its history",
    tags=["customer-import"],
    params={
        "import_run_id": Param(
            1,
            type="integer",
            minimum=1,
            title="Import run id",
            description="The id of the import run to roll back (import_runs.id).",
        )
    },
)
def roll_back_import_run():
    @task(retries=2, outlets=[CUSTOMERS])
    def roll_back_run(params=None, outlet_events=None) -> dict:
        from customer_import.database.connection import connect_target
        from customer_import.database.rollback import RollbackRefused
        from customer_import.pipeline import Importer

        try:
            with connect_target() as conn:
                result = Importer().roll_back(conn, int(params["import_run_id"]))
        except RollbackRefused as refused:
            raise AirflowFailException(str(refused)) from refused
        log.info("Import run %s: %s", result.run_id, result.message)
        outlet_events[CUSTOMERS].extra = {
            "rolled_back_run": result.run_id,
            "removed": result.removed,
            "restored": result.restored,
            "conflicts": len(result.conflicts),
        }
        return {"import_run_id": result.run_id, "message": result.message}

    roll_back_run()


roll_back_import_run_dag = roll_back_import_run()
