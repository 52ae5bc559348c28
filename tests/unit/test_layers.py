"""The core's layers (pyproject.toml's import-linter contracts) hold, and an import upward breaks them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.unit


def lint_imports(root) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(shutil.which("lint-imports", path=os.path.dirname(sys.executable)))],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root / "include")},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("module", "upward", "says"),
    [
        (
            "contract/issues.py",
            "from customer_import import pipeline",
            "customer_import.contract is not allowed to import customer_import.pipeline",
        ),
        (
            "reading/csvfile.py",
            "from customer_import.page import app",
            "customer_import.reading is not allowed to import customer_import.page",
        ),
        ("database/merge.py", "import airflow.sdk", "customer_import.database.merge is not allowed to import airflow"),
    ],
)
def test_an_import_against_the_layers_fails_make_lint(module, upward, says, tmp_path):
    shutil.copytree(REPO / "include" / "customer_import", tmp_path / "include" / "customer_import")
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    assert lint_imports(tmp_path).returncode == 0  # the tree as it is keeps every contract

    path = tmp_path / "include" / "customer_import" / module
    path.write_text(path.read_text() + f"\n{upward}  # noqa\n")
    broken = lint_imports(tmp_path)

    assert broken.returncode != 0 and says in " ".join(broken.stdout.split()), broken.stdout
