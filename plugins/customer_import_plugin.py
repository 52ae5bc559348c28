"""The Imports page in the Airflow UI: "Customer imports" in the navigation, served at /customer-import/.

The page itself is `customer_import.imports_page`; this plugin gives it Airflow's side:
- who may do what, through Airflow's auth manager: reading needs read access to the runs of the
  `customer_import` DAG, uploading needs the right to trigger them;
- the target database, through the Airflow connection `customer_db`;
- an uploaded file's import run, started at once (the landing watch would start it within a minute).
"""

import logging
import os
from datetime import datetime
from functools import cached_property

from airflow.plugins_manager import AirflowPlugin

CONN_ID = os.environ.get("CUSTOMER_IMPORT_CONN_ID", "customer_db")
log = logging.getLogger(__name__)


class ImportsPage:
    """The page's ASGI app, built on its first request.

    Airflow imports every plugin module in every task process too, where importing its API server
    (auth, FastAPI) would cost 0.8 s per task; so that is imported only where the page is served.
    """

    @cached_property
    def app(self):
        from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
        from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
        from airflow.configuration import conf
        from fastapi import Depends, Request

        from customer_import.imports_page import IMPORT_DAG_ID, create_app

        def remember_user(request: Request, user: GetUserDep) -> None:  # who triggers the import
            request.state.airflow_user = user.get_name()

        return create_app(
            read=[Depends(requires_access_dag("GET", DagAccessEntity.RUN, IMPORT_DAG_ID))],
            upload=[Depends(requires_access_dag("POST", DagAccessEntity.RUN, IMPORT_DAG_ID)), Depends(remember_user)],
            connect=_connect,
            start_import=_start_import,
            secret=conf.get("api", "secret_key").encode(),  # shared by every API server worker
            login_url=_login_url,
            origins=[conf.get("api", "base_url", fallback="")],
        )

    @property
    def routes(self) -> list:  # where Starlette's url_for finds the page's routes, through the mount
        return self.app.routes

    async def __call__(self, scope, receive, send) -> None:
        await self.app(scope, receive, send)


def _connect():
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    conn = PostgresHook(postgres_conn_id=CONN_ID).get_conn()
    conn.autocommit = True
    return conn


def _start_import(handover: dict, request) -> str | None:
    """Trigger `customer_import` for an uploaded file as the landing watch would (the same run id),
    as the user who uploaded it. None if it cannot: the file waits in landing for the watch."""
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.utils.types import DagRunTriggeredByType

    from customer_import.imports_page import IMPORT_DAG_ID

    try:
        dag_run = trigger_dag(
            IMPORT_DAG_ID,
            triggered_by=DagRunTriggeredByType.UI,
            triggering_user_name=request.state.airflow_user,
            run_id=handover["trigger_run_id"],
            conf=handover["conf"],
            logical_date=datetime.fromisoformat(handover["logical_date"]),
            run_after=datetime.fromisoformat(handover["run_after"]),
            replace_microseconds=False,
        )
    except Exception:
        log.exception("Could not trigger %s for %s", IMPORT_DAG_ID, handover["conf"]["file"])
        return None
    return dag_run.run_id if dag_run else None


def _login_url(request) -> str:
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager().get_url_login(next_url=str(request.url))


class CustomerImportPlugin(AirflowPlugin):
    name = "customer_import"
    fastapi_apps = [{"app": ImportsPage(), "url_prefix": "/customer-import", "name": "Customer imports"}]
    external_views = [{
        "name": "Customer imports",
        "href": "customer-import/",
        "icon": "customer-import/icon.svg",
        "url_route": "customer-imports",
        "destination": "nav",
    }]
