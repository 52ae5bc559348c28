"""
### Watch the landing folders

As soon as a file has settled in the landing folder of a source (`landing/` for the default
source, `landing/<source>/` for the sources of sources.yaml; unchanged for
`CUSTOMER_IMPORT_SETTLED_SECONDS`, not a dotfile nor a `.part`/`.tmp` upload), and at least every
minute, the files waiting there are handed to `customer_import`, one run per file, with the
source's name and options. "As soon as" is an event: the `customer_import_landing` asset's watcher
(a trigger in the triggerer, `SettledFilesTrigger`) looks every two seconds; the minute is the
fallback when no triggerer runs, and the beat of the freshness check below. A backlog drains in one
pass: twenty files dropped at once become twenty runs, which `customer_import` then imports one
after the other. Each run's logical date and `run_after` are its file's arrival time (mtime), and
the runs are created one at a time, oldest first: Airflow starts queued runs in that order, and
`customer_import` merges each file only after the one that arrived before it, so handing them over in
parallel (on two Celery workers) could merge a newer file before an older one's run was even created.
"Arrived before" is among the runs that are running: a file handed over after later ones started
(an older modification time that settled late) is merged after them.

Each run id is made of the source, the file's name, size and modification time, so a file already
handed over is never handed over twice, and a file dropped again (fixed) starts a new run.

**check_freshness**: a source that declares `expected_every` and has had no file for that long
(plus its `grace`) gets a `missing` entry on the Imports page, and its alerts are sent once.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Asset, AssetOrTimeSchedule, AssetWatcher, DeltaTriggerTimetable, dag, task
from airflow.sdk.exceptions import AirflowSkipException

from customer_import.contract.fields import load_contract
from customer_import.settings import Settings
from customer_import.sources.landing_watch import SettledFilesTrigger
from customer_import.sources.profiles import load_sources

#: Updated (by its watcher) when a file has settled in a landing folder.
LANDING = Asset(
    name="customer_import_landing",
    watchers=[AssetWatcher(name="customer_import_settled_files", trigger=SettledFilesTrigger())],
)


def _sources():
    return load_sources(Settings.from_env().sources_file, load_contract())


@dag(
    dag_id="customer_import_watch",
    schedule=AssetOrTimeSchedule(timetable=DeltaTriggerTimetable(timedelta(minutes=1)), assets=LANDING),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    # a run that starts with Airflow itself may find its API not answering yet (httpx.ReadTimeout): that
    # is not a failure to show, a try again is
    default_args={"retries": 2, "retry_delay": timedelta(seconds=15)},
    doc_md=__doc__,
    description="Hands each settled file of every source's landing folder to customer_import; watches freshness",
    tags=["customer-import"],
)
def watch_landing_folder():
    _sources()  # a mistake in sources.yaml fails the parse, with its line

    @task
    def list_settled_files() -> list[dict]:
        settings = Settings.from_env()
        return _sources().handovers(settings.store.root, settings.settled_seconds)

    @task
    def check_freshness(dag_run=None, data_interval_end=None, **context) -> None:
        """Note the sources whose file is overdue as of this run (the end of its interval: about now, for
        a scheduled run), and send their alerts."""
        from customer_import.database import db
        from customer_import.database.connection import connect_target
        from customer_import.sources import alerts, freshness

        settings, sources = Settings.from_env(), _sources()
        if not any(source.expected_every for source in sources):
            raise AirflowSkipException("No source declares expected_every.")
        with connect_target(settings) as conn:
            db.migrate(conn, load_contract(), settings.schema)
            as_of = data_interval_end or dag_run.run_after
            for entry in freshness.check(conn, sources, settings.store.root, as_of):
                source = sources[entry.source]
                alerts.send(
                    source,
                    alerts.missing_alert(entry, source),
                    {"dag_run": dag_run, "data_interval_end": data_interval_end, **context},
                )
                freshness.mark_alerted(conn, entry, pendulum.now("UTC"))

    TriggerDagRunOperator.partial(
        task_id="import_each_file",
        trigger_dag_id="customer_import",
        skip_when_already_exists=True,
        max_active_tis_per_dagrun=1,  # in arrival order (see above)
    ).expand_kwargs(list_settled_files())
    check_freshness()


watch_landing_folder_dag = watch_landing_folder()
