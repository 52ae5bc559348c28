"""What `make airflow` keeps between restarts."""

import stat

import pytest

from customer_import.cli import _kept_password

pytestmark = pytest.mark.unit


def test_the_generated_admin_password_is_kept_and_only_its_owner_may_read_it(tmp_path):
    path = tmp_path / "admin-password"

    first = _kept_password(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 16 and _kept_password(path) == first  # the same after a restart
