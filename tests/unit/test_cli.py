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
