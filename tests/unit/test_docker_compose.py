"""docker-compose.yaml cannot run here (no Docker engine): check that it parses and that every
path, variable and connection it sets is one the code reads."""

import re
from dataclasses import fields

import pytest
import yaml

from customer_import.settings import Settings
from tests.conftest import REPO

pytestmark = pytest.mark.unit

COMPOSE = yaml.safe_load((REPO / "docker-compose.yaml").read_text())
AIRFLOW_SERVICES = [
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-triggerer",
    "airflow-init",
]


def env(service: str) -> dict[str, str]:
    return {k: str(v) for k, v in COMPOSE["services"][service]["environment"].items()}


def mounts(service: str) -> dict[str, str]:
    return dict(v.rsplit(":", 1) for v in COMPOSE["services"][service]["volumes"])


def test_the_official_celery_layout():
    assert set(COMPOSE["services"]) == {*AIRFLOW_SERVICES, "postgres", "redis", "customers-db"}
    for service in AIRFLOW_SERVICES:
        assert env(service)["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert COMPOSE["services"]["customers-db"]["image"] == "postgres:17"
    assert COMPOSE["services"]["airflow-worker"]["command"] == "celery worker"


def test_the_image_is_the_pinned_airflow_with_our_requirements():
    pinned = re.search(r"^apache-airflow==(\S+)$", (REPO / "requirements.txt").read_text(), re.M).group(1)
    dockerfile = (REPO / "Dockerfile").read_text()
    assert f"FROM apache/airflow:{pinned}-python3.11" in dockerfile
    assert "-r /requirements.txt" in dockerfile


@pytest.mark.parametrize("service", ["airflow-worker", "airflow-apiserver"])  # the API server serves the page
def test_mounted_folders_exist_and_the_settings_point_into_them(service):
    volumes = mounts(service)
    for folder in ("dags", "plugins", "include", "expectations"):
        assert volumes[f"./{folder}"] == f"/opt/airflow/{folder}"
        assert (REPO / folder).is_dir()
    settings = env(service)
    inside = set(volumes.values())
    assert settings["PYTHONPATH"] in inside  # the customer_import package is importable
    assert (REPO / "include" / "customer_import" / "__init__.py").exists()
    assert settings["CUSTOMER_IMPORT_DATA_DIR"] in inside
    assert settings["CUSTOMER_IMPORT_EXPECTATIONS_DIR"] in inside


def test_every_project_variable_it_sets_is_read_by_the_code():
    read = {spec.metadata["env"] for spec in fields(Settings)}  # the one reader of the environment
    for service in AIRFLOW_SERVICES:
        assert {k for k in env(service) if k.startswith("CUSTOMER_IMPORT_")} <= read


def test_the_target_is_the_customer_db_connection_on_the_warehouse():
    conn_id = next(spec.metadata["default"] for spec in fields(Settings) if spec.name == "conn_id")
    assert f"AIRFLOW_CONN_{conn_id.upper()}" in env("airflow-worker")
    target = env("airflow-worker")["AIRFLOW_CONN_CUSTOMER_DB"]
    db = COMPOSE["services"]["customers-db"]["environment"]
    assert f"@customers-db:5432/{db['POSTGRES_DB']}" in target
    assert f"postgresql://{db['POSTGRES_USER']}:" in target


def test_the_data_can_be_on_object_storage_with_its_connection():
    """CUSTOMER_IMPORT_DATA_URL names a connection before its `@`: the compose file passes both on."""
    for service in AIRFLOW_SERVICES:
        settings = env(service)
        assert settings["CUSTOMER_IMPORT_DATA_URL"] == "${CUSTOMER_IMPORT_DATA_URL:-}"
        assert settings["AIRFLOW_CONN_CUSTOMER_DATA"] == "${AIRFLOW_CONN_CUSTOMER_DATA:-}"
    requirements = (REPO / "requirements.txt").read_text()
    assert "apache-airflow-providers-amazon[s3fs]==" in requirements  # s3:// for ObjectStoragePath
