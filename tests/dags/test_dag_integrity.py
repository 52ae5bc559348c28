"""Every DAG file parses, quickly, with nothing heavy imported at parse time."""

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

# Airflow is configured once per process, when first imported: its metadata database must be set first
pytestmark = [pytest.mark.dag, pytest.mark.usefixtures("airflow_ready")]


def test_every_dag_file_parses_without_errors():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    assert {
        "customer_import",
        "customer_import_rollback",
        "customer_import_watch",
        "customer_import_housekeeping",
        "customer_import_forget",
    } <= set(bag.dag_ids)
    for dag in bag.dags.values():
        assert dag.tags and dag.doc_md, f"{dag.dag_id} needs tags and a doc_md"
        assert dag.description, f"{dag.dag_id} needs a description: the DAG list shows it"


def test_customer_import_has_the_run_params_of_the_spec():
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(REPO / "dags")).dags["customer_import"]  # parsed, not read from a database
    # `source` came with the source profiles (issue 17): which export of sources.yaml a file is
    # `snapshot`, `max_deactivate_share`, `allow_mass_deactivation` came with full snapshots (issue 32)
    assert set(dag.params) == {
        "file",
        "source",
        "mode",
        "on_error",
        "max_error_rate",
        "dry_run",
        "force",
        "encoding",
        "snapshot",
        "max_deactivate_share",
        "allow_mass_deactivation",
    }
    assert dag.params.get_param("source").schema["examples"] == ["default", "salesforce", "hubspot"]
    # the trigger form's help (issue 33, points 2 and 12): an empty file waits, a new source is accepted
    assert (
        "with none waiting, the run waits for the next one, up to 15 minutes"
        in dag.params.get_param("file").description
    )
    assert "since the DAG was parsed is accepted too" in dag.params.get_param("source").description
    # a rejection is red once (issue 33, point 4): check_outcome runs only after the steps all succeeded
    assert dag.get_task("check_outcome").upstream_task_ids == {"merge_customers", "publish_report"}
    assert dag.get_task("check_outcome").trigger_rule == "all_success"
    assert [t.task_id for t in dag.topological_sort()] == [
        "wait_for_file",
        "claim_file",
        "validate_file",
        "load_staging",
        "merge_customers",
        "publish_report",
        "announce_changes",
        "check_outcome",
    ]


def test_parsing_imports_neither_great_expectations_nor_pandas():
    probe = (
        "import runpy, sys; runpy.run_path(sys.argv[1]);"
        " print(sorted(m for m in ('great_expectations', 'pandas', 'customer_import.reading.expectations')"
        " if m in sys.modules))"
    )
    for dag_file in (REPO / "dags").glob("*.py"):
        out = subprocess.run(
            [sys.executable, "-c", probe, str(dag_file)],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONPATH": str(REPO / "include")},
        )
        assert out.stdout.strip().splitlines()[-1] == "[]", dag_file.name


def test_a_typo_in_sources_yaml_fails_the_parse_naming_the_key_and_line(tmp_path, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    bundled = (REPO / "include" / "customer_import" / "sources.yaml").read_text()
    assert "    ignore: [Account Owner" in bundled
    typo = tmp_path / "sources.yaml"
    typo.write_text(bundled.replace("    ignore: [Account Owner", "    ignroe: [Account Owner"))
    line = 1 + bundled.splitlines().index(next(x for x in bundled.splitlines() if x.startswith("    ignore: [Account")))
    monkeypatch.setenv("CUSTOMER_IMPORT_SOURCES", str(typo))

    errors = DagBag(dag_folder=str(REPO / "dags")).import_errors

    assert {os.path.basename(f) for f in errors} == {"customer_import_dag.py", "customer_import_watch_dag.py"}
    for error in errors.values():
        assert (
            f"sources.yaml, line {line} (sources.salesforce.ignroe): unknown key `ignroe`: did you mean `ignore`?"
            in error
        )
