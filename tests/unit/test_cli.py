"""What `make airflow` and `make celery` keep between restarts, and what `make celery` says when it cannot start."""

import stat

import pytest

from customer_import.local.airflow_server import kept_secret

pytestmark = pytest.mark.unit


def test_the_generated_admin_password_is_kept_and_only_its_owner_may_read_it(tmp_path):
    path = tmp_path / "admin-password"

    first = kept_secret(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 16 and kept_secret(path) == first  # the same after a restart


def test_make_celery_says_what_to_do_when_no_broker_answers():
    from customer_import.local.celery_cluster import BrokerUnreachable, check_broker

    with pytest.raises(BrokerUnreachable) as raised:
        check_broker("redis://127.0.0.1:9/0")  # the discard port: nothing listens
    assert str(raised.value).startswith("No Redis answers at redis://127.0.0.1:9/0 (CELERY_BROKER_URL):")
    assert "Start one (`redis-server`" in str(raised.value)


@pytest.mark.parametrize(
    ("changes", "step"),
    [
        ({"status": "duplicate"}, "to import it anyway: make import FILE='my file.csv' SOURCE=crm FORCE=1"),
        (
            {
                "status": "rejected",
                "file_rejected": True,
                "message": "Line 2 is not valid UTF-8: … The file looks like Windows-1252 (…): import it with"
                " encoding windows-1252, or save it as CSV UTF-8.",
            },
            "to read it as windows-1252: make import FILE='my file.csv' SOURCE=crm ENCODING=windows-1252",
        ),
        (
            {"status": "rejected", "deactivation_refused": 5},
            "if the export is complete: make import FILE='my file.csv' SOURCE=crm SNAPSHOT=full"
            " ALLOW_MASS_DEACTIVATION=1",
        ),
        ({"status": "rejected"}, None),
        ({"status": "succeeded"}, None),
    ],
)
def test_make_import_says_the_command_to_type_next(changes, step):
    from dataclasses import replace
    from pathlib import Path

    from customer_import.local.dag_runs import _next_step
    from tests.unit.test_decide import RUN

    assert _next_step(replace(RUN, **changes), Path("my file.csv"), "crm") == step
