"""
### Forget one customer (erasure on request)

Erases everything the imports kept of one customer, by its `AccountReferenceID`: its row in
`customers`, its history, and its rows in every kept file and report (the file in `archive/` or
`rejected/`, `errors.csv`, `changes.csv`, `deactivations.csv`, `summary.json`, `report.html`), on
local disk or object storage; every other row stays as it was. The `erasures` table records when,
by whom and the key's SHA-256, never the key. A key found nowhere fails the run and changes nothing.
A later import that holds the key again creates the customer anew.

Only users who may trigger this DAG can run it; `make forget KEY=<AccountReferenceID>` runs it locally.
"""

from __future__ import annotations

import getpass
import logging

import pendulum
from airflow.sdk import Param, dag, task
from airflow.sdk.exceptions import AirflowFailException

log = logging.getLogger(__name__)


@dag(
    dag_id="customer_import_forget",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    description="Erases one customer, by key: its row, its history, its rows in every kept file and report",
    tags=["customer-import"],
    params={
        "key": Param(
            "",
            type="string",
            minLength=1,
            title="Key",
            description="The AccountReferenceID of the customer to forget.",
        )
    },
)
def forget_customer():
    @task(retries=2)
    def forget(params=None, dag_run=None) -> dict:
        from customer_import.contract.fields import load_contract
        from customer_import.database.connection import connect_target
        from customer_import.erasure import NothingToForget, forget
        from customer_import.settings import Settings

        settings = Settings.from_env()
        who = getattr(dag_run, "triggering_user_name", None) or f"{getpass.getuser()} (a local command)"
        try:
            with connect_target(settings) as conn:
                erasure = forget(conn, settings, load_contract(), str(params["key"]), who)
        except NothingToForget as nothing:
            raise AirflowFailException(str(nothing)) from nothing
        log.info("%s (by %s)", erasure.message, who)
        return {"key_sha256": erasure.key_sha256, "customers": erasure.customers, "files": len(erasure.files)}

    forget()


forget_customer_dag = forget_customer()
