"""
### Import one customer CSV file

One run imports one file from the landing folder of its `source` (sources.yaml; `default`:
the template in `landing/`) into the `customers` table:

1. **wait_for_file**: the file named by the `file` param is in landing (empty: the oldest file waiting
   that no other run names; a named file that another run imported first ends this run, skipped);
2. **claim_file**: it is moved to `processing/<run id>/`, hashed, and gets a row in `import_runs`;
   content that was imported before ends the run as `duplicate` (unless `force`);
3. **validate_file**: bytes, header and every row are checked (the GX suite in `expectations/`);
4. **load_staging**: once the file that arrived before this one has merged or ended (several files
   are read and validated at once, `CUSTOMER_IMPORT_PARALLEL_FILES`, but checked and merged in
   arrival order), the rows are COPYed into an unlogged staging table and checked against the stored
   customers (unique emails, the mode's rules, required fields of new customers);
5. **merge_customers**: one MERGE on `AccountReferenceID`, in one transaction, one import at a time;
   a full snapshot (`snapshot` full) also deactivates the customers of its source it does not list,
   in the same transaction, and is rejected if that is more than `max_deactivate_share` of them
   (unless `allow_mass_deactivation`);
6. **publish_report**: `errors.csv`, `summary.json` and `report.html` under `reports/<run id>/`;
   the file goes to `archive/` or, when rejected, to `rejected/` with its errors beside it;
7. **announce_changes**: an asset event on `customers` (with the counts) when customers changed;
8. **check_outcome**: after every step succeeded, the run's last word (red if it still ended rejected
   or failed).

The step that rejects a file fails (red), and its log lists the first issues as `line 3,
ContactEmail: ...` with the link to the run's page; the steps after it are `upstream_failed`
(a rejection is red once), and publish_report sends the source's alerts (email, webhook). The run's
note starts with its outcome ("Rejected for its data: …") and the link.
Data problems are never retried: they are reported. Infrastructure errors are retried.
"""

from __future__ import annotations

import itertools
import logging
import time
import warnings
from datetime import timedelta

import pendulum
from airflow.sdk import Asset, Param, PokeReturnValue, TriggerRule, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from customer_import.contract.fields import load_contract
from customer_import.contract.options import (
    CHANGE_COUNTS,
    MAX_DEACTIVATE_SHARE,
    MODES,
    ON_ERROR_CHOICES,
    SNAPSHOTS,
)
from customer_import.settings import CUSTOMERS_ASSET_NAME, CUSTOMERS_ASSET_URI, Settings
from customer_import.sources.profiles import DEFAULT, load_sources

CUSTOMERS = Asset(name=CUSTOMERS_ASSET_NAME, uri=CUSTOMERS_ASSET_URI)
log = logging.getLogger(__name__)
# The standard provider's sensor module (behind task.sensor) imports a name Airflow 3.3 deprecated:
# a warning in every task's log that no user of this DAG can act on.
warnings.filterwarnings("ignore", r"The `airflow\.utils\.operator_helpers\.determine_kwargs` attribute is deprecated")
#: Read when the file is parsed: a mistake in sources.yaml is an import error naming its line.
SOURCES = load_sources(Settings.from_env().sources_file, load_contract())
#: How long a run waits for its file (an empty-file run, for the next file to arrive).
WAIT_FOR_FILE = timedelta(minutes=15)


def _importer():
    from customer_import.pipeline import Importer

    return Importer(settings=Settings.from_env())


def _connect():
    """A connection to the target; unreachable, it fails the try in plain words (Airflow retries)."""
    from customer_import.database.connection import connect_target

    return connect_target(Settings.from_env())


@dag(
    dag_id="customer_import",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    # several files are read and validated at once; each is checked against the customers and merged
    # only after the file that arrived before it (load_staging waits for its turn)
    max_active_runs=Settings.from_env().parallel_files,
    doc_md=__doc__,
    description="Imports one customer CSV file: validate (GX), stage, one MERGE, report",
    tags=["customer-import"],
    default_args={
        "retries": Settings.from_env().task_retries,
        "retry_delay": timedelta(seconds=10),
        "retry_exponential_backoff": True,
    },
    params={
        # every param that may be left empty is nullable: the trigger form is valid as it opens
        "file": Param(
            None,
            type=["null", "string"],
            title="File",
            description="Name of the file in the landing folder. Empty: the oldest file waiting that no other"
            f" run names; with none waiting, the run waits for the next one, up to {WAIT_FOR_FILE.seconds // 60}"
            " minutes.",
        ),
        # not an enum: a trigger is checked against the DAG as last parsed, and a source added to
        # sources.yaml must be importable before the DAG is parsed again (an unknown one fails the claim)
        "source": Param(
            DEFAULT,
            type="string",
            examples=SOURCES.names,
            title="Source",
            description="The export the file is, one of the sources of sources.yaml: where it lands and how its"
            " columns and values are read. default: the template, in landing/. A source added to sources.yaml"
            " since the DAG was parsed is accepted too.",
        ),
        "mode": Param(
            MODES[0], enum=list(MODES), title="Mode", description="upsert inserts new keys and updates existing ones."
        ),
        "on_error": Param(
            ON_ERROR_CHOICES[0],
            enum=list(ON_ERROR_CHOICES),
            title="On error",
            description="reject_file: any bad row rejects the file. skip_invalid_rows:"
            " the valid rows are imported, up to max_error_rate bad rows.",
        ),
        "max_error_rate": Param(
            0.0,
            type=["null", "number"],
            minimum=0,
            maximum=1,
            title="Max error rate",
            description="With skip_invalid_rows: the largest share of bad rows accepted.",
        ),
        "dry_run": Param(
            False,
            type=["null", "boolean"],
            title="Dry run",
            description="Validate and preview; write nothing to customers.",
        ),
        "force": Param(
            False,
            type=["null", "boolean"],
            title="Force",
            description="Import even if the same content was imported before.",
        ),
        "snapshot": Param(
            SNAPSHOTS[0],
            enum=list(SNAPSHOTS),
            title="Snapshot",
            description="delta: the file holds what changed. full: it is the source's complete export, and the"
            " source's customers it does not list are deactivated (never deleted; a rollback restores them).",
        ),
        "max_deactivate_share": Param(
            MAX_DEACTIVATE_SHARE,
            type=["null", "number"],
            minimum=0,
            maximum=1,
            title="Max deactivate share",
            description="With snapshot full: a file that would deactivate more than this share of the source's"
            " active customers is rejected, unless allow_mass_deactivation is set.",
        ),
        "allow_mass_deactivation": Param(
            False,
            type=["null", "boolean"],
            title="Allow mass deactivation",
            description="With snapshot full: the export is complete, deactivate beyond max_deactivate_share.",
        ),
        "encoding": Param(
            "utf-8",
            type=["null", "string"],
            title="Encoding",
            description="The file's text encoding: utf-8 (Excel's CSV UTF-8), or the codec it was"
            " saved in, e.g. windows-1252, mac-roman, latin-1, utf-16.",
        ),
    },
)
def import_customer_file():
    @task.sensor(poke_interval=10, timeout=WAIT_FOR_FILE, mode="reschedule")
    def wait_for_file(params=None, dag_run=None, ti=None) -> PokeReturnValue:
        """The file is in landing, or this run claimed it before (the run was cleared to retry it)."""
        from customer_import.run_files import ImportedElsewhere

        importer, source = _importer(), params["source"] or DEFAULT
        try:
            with _connect() as conn:
                name = importer.file_to_claim(
                    conn,
                    params["file"] or "",
                    dag_run.dag_id,
                    dag_run.run_id,
                    source,
                    _has_own_run(importer, ti, source),
                    dag_run.logical_date,
                )
        except ImportedElsewhere as elsewhere:  # not this run's failure: the file was imported
            raise AirflowSkipException(str(elsewhere)) from elsewhere
        except (FileNotFoundError, ValueError) as missing:
            raise AirflowFailException(str(missing)) from missing
        return PokeReturnValue(is_done=name is not None, xcom_value=name)

    @task
    def claim_file(file_name: str, params=None, dag_run=None, ti=None) -> int:
        from customer_import.contract.options import ImportOptions
        from customer_import.run_files import ImportedElsewhere

        importer, source = _importer(), params["source"] or DEFAULT
        try:
            options = ImportOptions.from_params(params)
            with _connect() as conn:
                if params["file"] or importer.claimed_by(conn, dag_run.dag_id, dag_run.run_id) is not None:
                    import_run_id = _claim_named(importer, conn, file_name, options, dag_run, source)
                else:
                    file_name, import_run_id = _claim_oldest(importer, conn, ti, dag_run, source, options)
        except ImportedElsewhere as elsewhere:  # not this run's failure: the file was imported
            raise AirflowSkipException(str(elsewhere)) from elsewhere
        except (ValueError, FileNotFoundError) as error:
            raise AirflowFailException(str(error)) from error
        log.info("Claimed %s as import run %s.", file_name, import_run_id)
        return import_run_id

    @task
    def validate_file(import_run_id: int) -> None:
        importer = _importer()
        with _connect() as conn:
            _fail_if_rejected(importer, importer.validate_file(conn, import_run_id))

    @task
    def load_staging(import_run_id: int, ti=None) -> None:
        importer = _importer()
        with _connect() as conn:
            _wait_for_earlier_file(importer, conn, ti, "merged")
            _fail_if_rejected(importer, importer.load_staging(conn, import_run_id))

    @task
    def merge_customers(import_run_id: int) -> None:
        importer = _importer()
        with _connect() as conn:
            _fail_if_rejected(importer, importer.merge_customers(conn, import_run_id))

    # after every step, whichever failed, once a file was claimed (no import run, nothing to report)
    @task(trigger_rule=TriggerRule.ALL_DONE_MIN_ONE_SUCCESS)
    def publish_report(import_run_id: int) -> dict:
        with _connect() as conn:
            run = _importer().publish_report(conn, import_run_id)
        log.info("Import run %s: %s", run.id, run.public_outcome)
        log.info("Reports: %s", run.report_dir)
        _send_alerts(run, get_current_context())
        return {
            "import_run_id": run.id,
            "status": run.status,
            "report_dir": run.report_dir,
            **{name: getattr(run, name) or 0 for name in CHANGE_COUNTS},
            "dry_run": run.dry_run,
        }

    @task(outlets=[CUSTOMERS])
    def announce_changes(outcome: dict, outlet_events=None) -> None:
        """An asset event on the customers table, with the counts, when this import changed customers."""
        if outcome["dry_run"] or not any(outcome.get(name) for name in CHANGE_COUNTS):
            raise AirflowSkipException("No customer changed.")
        outlet_events[CUSTOMERS].extra = {k: outcome.get(k, 0) for k in ("import_run_id", *CHANGE_COUNTS)}

    @task
    def check_outcome(outcome: dict) -> None:
        """The run's last word, after every step succeeded: red when the import still ended rejected or
        failed. When a step failed (it found the problem, and is red), this one is not run: its state
        is upstream_failed, so a rejection is counted once, at the step that found it."""
        from customer_import.database.runs import FAILED_STATUSES

        if outcome["status"] in FAILED_STATUSES:
            raise AirflowFailException(
                f"Import run {outcome['import_run_id']} ended {outcome['status']}:"
                f" {_page_url(outcome['import_run_id'])}"
            )

    import_run_id = claim_file(wait_for_file())
    outcome = publish_report(import_run_id)
    merged = merge_customers(import_run_id)
    validate_file(import_run_id) >> load_staging(import_run_id) >> merged >> outcome
    announce_changes(outcome)
    merged >> check_outcome(outcome)


def _wait_for_earlier_file(importer, conn, ti, until: str, poll_seconds: float = 0.5) -> None:
    """Wait until the import of the file that arrived before this one (the previous running run, by
    logical date: its arrival) has claimed its file (`until="claimed"`) or has merged or ended
    (`"merged"`). That one waited for the one before it in turn: files are checked against the
    customers and merged strictly in arrival order while several are read and validated at once.

    One that does not move for `CUSTOMER_IMPORT_STALLED_SECONDS` (a run left running when its
    scheduler stopped, which `make import` without a scheduler would otherwise wait for forever) is
    passed, with a warning."""
    told, seen, since = None, None, time.monotonic()
    while (found := _run_before(importer, conn, ti)) is not None:
        earlier, run = found
        if run is not None and (until == "claimed" or not run.is_open):
            return
        if (moment := (earlier.run_id, run and run.changed_at)) != seen:
            seen, since = moment, time.monotonic()
        elif time.monotonic() - since > importer.settings.stalled_seconds:
            log.warning(
                "The file that arrived before this one (Airflow run %s) has not moved for %.0f s: is no"
                " scheduler running it? This one goes first.",
                earlier.run_id,
                importer.settings.stalled_seconds,
            )
            return
        if told != earlier.run_id:
            log.info(
                "Waiting for the file that arrived before this one to be %s first (Airflow run %s).",
                until,
                earlier.run_id,
            )
            told = earlier.run_id
        time.sleep(poll_seconds)


def _claim_named(importer, conn, file_name: str, options, dag_run, source: str) -> int:
    """Claim the file the run names (or, cleared, the one it claimed); one that another run took
    first since it arrived is ImportedElsewhere."""
    from customer_import.database import runs
    from customer_import.run_files import ImportedElsewhere

    try:
        return importer.claim_file(conn, file_name, options, dag_run.dag_id, dag_run.run_id, source)
    except FileNotFoundError:
        if (other := runs.claimed_since(conn, file_name, source, dag_run.logical_date)) is not None:
            raise ImportedElsewhere(other) from None
        raise


def _claim_oldest(importer, conn, ti, dag_run, source: str, options) -> tuple[str, int]:
    """An empty-file run claims the oldest file waiting that no other run names, once the run before
    it has claimed its own. A file another run takes first is passed over for the next; with none
    left, the run waits for one, as long as its wait for a file lasts."""
    _wait_for_earlier_file(importer, conn, ti, "claimed")
    own_run, told = _has_own_run(importer, ti, source), False
    while True:
        name = importer.file_to_claim(conn, "", dag_run.dag_id, dag_run.run_id, source, own_run)
        if name is not None:
            try:
                return name, importer.claim_file(conn, name, options, dag_run.dag_id, dag_run.run_id, source)
            except FileNotFoundError:
                log.info("%s was taken by another run first: looking for the next file.", name)
                continue
        if pendulum.now("UTC") > dag_run.start_date + WAIT_FOR_FILE:
            raise FileNotFoundError(f"No file came into landing/ in {WAIT_FOR_FILE} that no other run names.")
        if not told:
            log.info("Every file waiting has a run of its own: waiting for the next file.")
            told = True
        time.sleep(2)


def _run_before(importer, conn, ti):
    """The running run before this one (by logical date: arrival) and its import run (None until it
    claimed its file), passing over empty-file runs still waiting for a file: they take only a file
    that no run names, and that file is merged after this one."""
    from airflow.sdk.execution_time.comms import GetPreviousDagRun
    from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

    earlier = ti.get_previous_dagrun(state="running")
    while earlier is not None:
        run = importer.claimed_by(conn, earlier.dag_id, earlier.run_id)
        if run is not None or (earlier.conf or {}).get("file"):
            return earlier, run
        # the run before that one: what ti.get_previous_dagrun asks the API, from an earlier date
        asked = GetPreviousDagRun(dag_id=earlier.dag_id, logical_date=earlier.logical_date, state="running")
        earlier = SUPERVISOR_COMMS.send(msg=asked).dag_run
    return None


def _has_own_run(importer, ti, source: str):
    """Whether a waiting file has a run of its own (the run id the watch, an upload and `make import`
    give it exists): an empty-file run leaves that file to it."""

    def named(file_name: str) -> bool:
        run_id = importer.files.own_run_id(file_name, source)
        return ti.get_dr_count(dag_id=ti.dag_id, run_ids=[run_id]) > 0

    return named


def _fail_if_rejected(importer, run, shown: int = 20) -> None:
    """Say in the task log where the import stands; if this step rejected the file, list its first
    issues and fail the task (a data problem: never retried)."""
    log.info("Import run %s: %s", run.id, run.public_outcome)
    if run.status != "rejected":
        return
    issues = list(itertools.islice(importer.issues(run.id), shown + 1))
    for issue in issues[:shown]:  # without the values of personal fields: the run's page shows them
        log.error("%s", issue.public_line)
    if len(issues) > shown:
        log.error("... and more: every issue is in the report.")
    log.error("The report (errors.csv, summary.json, report.html): %s", _page_url(run.id))
    raise AirflowFailException(f"{run.public_outcome} {_page_url(run.id)}")


def _page_url(import_run_id: int) -> str:
    """The run's page inside Airflow's shell, absolute (a log is read outside Airflow too)."""
    from customer_import.links import page_url

    return page_url(f"runs/{import_run_id}")


def _send_alerts(run, context) -> None:
    """The source's alerts (email, webhook) for a run that ended rejected or failed. One that cannot be
    sent is an error in this log; the run's outcome and reports stand."""
    from customer_import.database import runs
    from customer_import.sources import alerts

    if run.status not in runs.FAILED_STATUSES:
        return
    try:
        alerts.send(_importer().sources[run.source], alerts.run_alert(run), context)
    except alerts.AlertNotSent as not_sent:
        log.error("%s", not_sent)


import_customer_file_dag = import_customer_file()
