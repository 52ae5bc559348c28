"""The Imports page in the Airflow UI: "Customer imports" in the navigation, served at /customer-import/.

The page itself is `customer_import.page.app`; this plugin gives it Airflow's side:
- who may do what, through Airflow's auth manager: reading needs read access to the runs of the
  `customer_import` DAG, uploading needs the right to trigger them;
- the target database, through the Airflow connection `customer_db`;
- an uploaded file's import run, started at once (the landing watch would start it within a minute);
- the note of every `customer_import` and `customer_import_rollback` DAG run: its outcome and the
  link to the import run's page inside Airflow on its first line, written by a listener when the
  run ends (in the scheduler, or in `make import`'s own process).
"""

import logging
from datetime import datetime
from functools import cached_property

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin

from customer_import.links import PAGE_PREFIX, SHELL_ROUTE

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

        from customer_import.page.app import create_app
        from customer_import.page.rendering import IMPORT_DAG_ID

        def remember_user(request: Request, user: GetUserDep) -> None:  # who reads, and who triggers the import
            request.state.airflow_user = user.get_name()
            request.state.airflow_user_object = user

        def may_upload(request: Request) -> bool:  # viewers see no upload nor buttons (and the routes refuse them)
            from airflow.api_fastapi.app import get_auth_manager
            from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

            return get_auth_manager().is_authorized_dag(
                method="POST",
                access_entity=DagAccessEntity.RUN,
                details=DagDetails(id=IMPORT_DAG_ID),
                user=request.state.airflow_user_object,
            )

        return create_app(
            read=[Depends(requires_access_dag("GET", DagAccessEntity.RUN, IMPORT_DAG_ID)), Depends(remember_user)],
            upload=[Depends(requires_access_dag("POST", DagAccessEntity.RUN, IMPORT_DAG_ID)), Depends(remember_user)],
            connect=_connect,
            start_import=_start_import,
            secret=conf.get("api", "secret_key").encode(),  # shared by every API server worker
            login_url=_login_url,
            origins=[conf.get("api", "base_url", fallback="")],
            may_upload=may_upload,
        )

    @property
    def routes(self) -> list:  # where Starlette's url_for finds the page's routes, through the mount
        return self.app.routes

    async def __call__(self, scope, receive, send) -> None:
        await self.app(scope, receive, send)


def _connect():
    from customer_import.database.connection import connect_target

    return connect_target()


def _start_import(handover: dict, request, dag_id: str | None = None) -> str | None:
    """Trigger `customer_import` for an uploaded file as the landing watch would (the same run id),
    as the user who uploaded it (or `dag_id`, for a page action). None if it cannot: an uploaded
    file then waits in landing for the watch."""
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.utils.types import DagRunTriggeredByType

    from customer_import.page.rendering import IMPORT_DAG_ID

    try:
        dag_run = trigger_dag(
            dag_id or IMPORT_DAG_ID,
            triggered_by=DagRunTriggeredByType.UI,
            triggering_user_name=request.state.airflow_user,
            run_id=handover["trigger_run_id"],
            conf=handover["conf"],
            logical_date=datetime.fromisoformat(handover["logical_date"]),
            run_after=datetime.fromisoformat(handover["run_after"]),
            replace_microseconds=False,
        )
    except Exception:
        log.exception("Could not trigger %s with %s", dag_id or IMPORT_DAG_ID, handover["conf"])
        return None
    return dag_run.run_id if dag_run else None


def _login_url(request) -> str:
    """Airflow's login page, then back to the page asked for: a path on this site, never built from the
    request's Host header (which anyone can set: `next=http://evil.example/...`)."""
    from airflow.api_fastapi.app import get_auth_manager

    query = request.url.query
    return get_auth_manager().get_url_login(next_url=request.url.path + (f"?{query}" if query else ""))


class RunNotes:
    """Writes the outcome of a `customer_import` run (and of a rollback) into its DAG run note."""

    @hookimpl
    def on_dag_run_success(self, dag_run, msg: str) -> None:
        _note(dag_run, succeeded=True)

    @hookimpl
    def on_dag_run_failed(self, dag_run, msg: str) -> None:
        _note(dag_run, succeeded=False)


def _note(dag_run, succeeded: bool) -> None:
    from customer_import.database import db, runs
    from customer_import.links import airflow_base_url, imported_elsewhere_note, rollback_note, run_note
    from customer_import.page.rendering import IMPORT_DAG_ID, ROLLBACK_DAG_ID
    from customer_import.settings import Settings
    from customer_import.sources.profiles import DEFAULT

    if dag_run.dag_id not in (IMPORT_DAG_ID, ROLLBACK_DAG_ID):
        return
    try:
        with _connect() as conn:
            db.use_schema(conn, Settings.from_env().schema)
            conf, elsewhere = dag_run.conf or {}, None
            if dag_run.dag_id == ROLLBACK_DAG_ID:
                run = next(iter(runs.runs_by_id(conn, [int(conf.get("import_run_id") or 0)])), None)
            else:
                run = runs.find_claimed(conn, dag_run.dag_id, dag_run.run_id)
                if run is None and conf.get("file") and dag_run.logical_date:  # another run took its file?
                    elsewhere = runs.claimed_since(
                        conn, conf["file"], conf.get("source") or DEFAULT, dag_run.logical_date
                    )
    except Exception:  # the note is a courtesy: never let it break the scheduler's loop
        log.exception("Could not read the outcome of %s for its note", dag_run.run_id)
        return
    if dag_run.dag_id == ROLLBACK_DAG_ID:
        text = (
            rollback_note(run, succeeded, airflow_base_url()) if run else "No such import run: see roll_back_run's log."
        )
    elif run is not None:
        text = run_note(run, airflow_base_url())
    elif elsewhere is not None:
        text = imported_elsewhere_note(elsewhere, airflow_base_url())
    else:
        text = "No file was claimed: the log of wait_for_file or claim_file says why."
    _set_note(dag_run, text)


def _set_note(dag_run, text: str) -> None:
    """In the scheduler the run belongs to the session that is ending it; `dag.test` hands over a
    detached copy, whose row is written in a session of its own."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy.orm import object_session

    if object_session(dag_run) is not None:
        dag_run.note = text
        return
    with create_session() as session:
        stored = session.get(DagRun, dag_run.id)
        if stored is not None:
            stored.note = text


class CustomerImportPlugin(AirflowPlugin):
    name = "customer_import"
    fastapi_apps = [{"app": ImportsPage(), "url_prefix": PAGE_PREFIX, "name": "Customer imports"}]
    listeners = [RunNotes()]
    external_views = [
        {
            "name": "Imports",
            "href": f"{PAGE_PREFIX.lstrip('/')}/",
            "icon": f"{PAGE_PREFIX.lstrip('/')}/icon.svg",
            "url_route": SHELL_ROUTE,
            "destination": "nav",
        }
    ]
