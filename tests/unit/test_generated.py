"""What `make expectations` generates is committed, and current; facts stated once agree where repeated."""

import re

import pytest

from customer_import.contract.fields import load_contract
from customer_import.contract.options import MODES, ON_ERROR_CHOICES, STATUSES
from customer_import.database.db import SQL_DIR
from customer_import.local.generated import rendered
from customer_import.settings import REPO_ROOT, Settings

pytestmark = pytest.mark.unit
GENERATED = rendered(load_contract(), Settings.from_env().expectations_dir)


@pytest.mark.parametrize("path", GENERATED, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_the_committed_file_is_what_make_expectations_writes(path):
    assert path.read_text(encoding="utf-8") == GENERATED[path], "run `make expectations` and commit the result"


def test_the_readme_lists_every_setting():
    readme = (REPO_ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    for name in ("CUSTOMER_IMPORT_CONN_ID", "CUSTOMER_IMPORT_TASK_RETRIES", "CUSTOMER_IMPORT_PGDATA"):
        assert f"| `{name}` |" in readme


@pytest.mark.parametrize(("column", "choices"), [("mode", MODES), ("on_error", ON_ERROR_CHOICES), ("status", STATUSES)])
def test_the_schema_checks_allow_exactly_the_choices_of_the_code(column, choices):
    schema = (SQL_DIR / "schema.sql").read_text(encoding="utf-8")
    check = re.search(rf"^\s+{column}\s+text .*?CHECK \({column} IN \((.*?)\)\)", schema, re.M | re.S)
    assert check is not None
    assert tuple(re.findall(r"'(\w+)'", check.group(1))) == choices
