"""The fix grid's endpoints (issue 35): the same rules as the import, and who may do what."""

from __future__ import annotations

import pytest

from tests.conftest import DATA
from tests.ui.test_imports_page import admin, client, page_env, token  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.ui]


def opened(client, headers, run_id: int) -> None:  # noqa: F811
    response = client.post(f"/customer-import/runs/{run_id}/fix", headers=headers, follow_redirects=False)
    assert response.status_code == 303, response.text


def rechecked(client, headers, run_id: int, line: int) -> list[tuple]:  # noqa: F811
    response = client.post(
        f"/customer-import/runs/{run_id}/fix/check", headers=headers, json={"draft": run_id, "lines": [line]}
    )
    assert response.status_code == 200, response.text
    (row,) = [r for r in response.json()["rows"] if r["line"] == line]
    return sorted((i["column"], i["code"], i["message"], i["database"]) for i in row["issues"])


def test_the_grid_checks_each_row_by_exactly_the_rules_of_the_import(client, admin, page_env, importer, land, conn):  # noqa: F811
    """Every fixture with row issues, each flagged row checked again through the endpoint on its own:
    the issues the import reported for that row, word for word (the checks of the whole file too,
    which the import ran when its rows did not reject it first)."""
    from customer_import.contract.issues import read_issues
    from customer_import.database import drafts
    from customer_import.fixing import Fixer
    from customer_import.run_files import ISSUES_FILES

    fixer, compared = Fixer(importer.settings, importer.contract), 0
    for fixture in sorted(DATA.glob("*.csv")):
        run = importer.import_file(conn, land(fixture.name))
        if fixer.refusal(run) is not None:
            continue  # a whole-file rejection, a clean file, or not kept
        report = importer.settings.data_dir / run.report_dir
        imported: dict[int, list] = {}
        for issue in read_issues(*(report / name for name in ISSUES_FILES)):
            if issue.line is not None:
                imported.setdefault(issue.line, []).append(issue)
        opened(client, admin, run.id)
        labels = {f["label"]: f["index"] for f in drafts.get_draft(conn, run.id).fields}
        for line, issues in imported.items():
            got = [
                (column, code, message)
                for column, code, message, database in rechecked(client, admin, run.id, line)
                if run.rows_staged is not None or not database  # only the rows' own rules ran in the import
            ]
            expected = sorted((labels.get(i.column or ""), i.code, i.message) for i in issues)
            assert got == expected, f"{fixture.name}, line {line}"
            compared += 1
    assert compared >= 40  # rows of the corpus, from every kind of row issue


def test_a_viewer_sees_no_grid_and_every_endpoint_refuses_what_it_must(client, admin, page_env, importer, land, conn):  # noqa: F811
    bad = importer.import_file(conn, land("one_bad_email.csv"))
    good = importer.import_file(conn, land("valid_customers.csv"))
    viewer = token(client, "viewer")

    page = client.get(f"/customer-import/runs/{bad.id}", headers=admin).text
    assert 'id="fix-in-browser"' in page and "<strong>Fix in the browser</strong> (above)" in page
    assert 'id="fix-in-browser"' not in client.get(f"/customer-import/runs/{bad.id}", headers=viewer).text
    for method, path in [
        ("post", f"/runs/{bad.id}/fix"),
        ("get", f"/runs/{bad.id}/fix"),
        ("get", f"/runs/{bad.id}/fix/rows.json"),
        ("post", f"/runs/{bad.id}/fix/edit"),
        ("post", f"/runs/{bad.id}/fix/import"),
    ]:
        assert getattr(client, method)(f"/customer-import{path}", headers=viewer).status_code == 403, path

    refused = client.post(f"/customer-import/runs/{good.id}/fix", headers=admin)
    assert refused.status_code == 409 and "is succeeded: only a rejected or partial run" in refused.text
    opened(client, admin, bad.id)
    line = client.get(f"/customer-import/runs/{bad.id}/fix/rows.json", headers=admin).json()["rows"][0]["line"]
    edit = {"draft": bad.id, "line": line, "column": 1, "value": "x" * 256}
    too_long = client.post(f"/customer-import/runs/{bad.id}/fix/edit", headers=admin, json=edit)
    assert too_long.status_code == 400 and "Name holds at most 255 characters" in too_long.json()["detail"]
    other = client.post(f"/customer-import/runs/{bad.id}/fix/edit", headers=admin, json={**edit, "draft": good.id})
    assert other.status_code == 409 and f"draft of import run {good.id}, not of import run {bad.id}" in other.text
    not_open = client.post(f"/customer-import/runs/{good.id}/fix/edit", headers=admin, json={**edit, "draft": good.id})
    assert not_open.status_code == 409 and f"Import run {good.id} has no draft" in not_open.text

    # a browser with Airflow's session cookie needs the page's form token, as on every other post
    client.cookies.set("_token", admin["Authorization"].removeprefix("Bearer "))
    try:
        origin = {"Origin": "http://testserver"}
        no_token = client.post(f"/customer-import/runs/{bad.id}/fix/edit", headers=origin, json={**edit, "value": "A"})
        assert no_token.status_code == 403 and "missing its token" in no_token.text
    finally:
        client.cookies.clear()
