"""Every DAG file parses, quickly, with nothing heavy imported at parse time."""

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.dag


def test_every_dag_file_parses_without_errors():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    assert {"customer_import", "customer_import_rollback"} <= set(bag.dag_ids)
    for dag in bag.dags.values():
        assert dag.tags and dag.doc_md, f"{dag.dag_id} needs tags and a doc_md"


def test_customer_import_has_the_run_params_of_the_spec():
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(REPO / "dags")).dags["customer_import"]  # parsed, not read from a database
    assert set(dag.params) == {"file", "mode", "on_error", "max_error_rate", "dry_run", "force", "encoding"}
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
        " print(sorted(m for m in ('great_expectations', 'pandas', 'customer_import.expectations')"
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
