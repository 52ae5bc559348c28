"""Operating imports from the page (issue 12): options, progress in place, actions, and what a viewer sees."""

from __future__ import annotations

import html
import re
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import DATA
from tests.ui.test_imports_page import admin, client, page_env, token, two_imports  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.ui]


def dag_run_conf(run_id: str) -> tuple[str, dict]:
    """The triggered DagRun's DAG and conf, removed afterwards (no scheduler here would run it)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    with create_session() as session:
        dag_run = session.query(DagRun).filter_by(run_id=run_id).one()
        found = dag_run.dag_id, dict(dag_run.conf)
        session.execute(delete(DagRun).where(DagRun.id == dag_run.id))
    return found


def started(response) -> str:
    assert response.status_code == 303, response.text
    return parse_qs(urlsplit(response.headers["location"]).query)["run"][0]


def test_the_upload_form_carries_the_runs_options(client, admin, page_env):  # noqa: F811
    sent = client.post(
        "/customer-import/upload",
        headers=admin,
        follow_redirects=False,
        data={
            "mode": "update_only",
            "on_error": "skip_invalid_rows",
            "max_error_rate": "0.1",
            "dry_run": "true",
            "encoding": "utf-8",
        },
        files={"file": ("opts.csv", (DATA / "valid_customers.csv").read_bytes(), "text/csv")},
    )

    assert dag_run_conf(started(sent)) == (
        "customer_import",
        {
            "file": "opts.csv",
            "mode": "update_only",
            "on_error": "skip_invalid_rows",
            "max_error_rate": 0.1,
            "dry_run": True,
        },
    )
    refused = client.post(
        "/customer-import/upload",
        headers=admin,
        data={"mode": "delete_all"},
        files={"file": ("bad.csv", b"AccountReferenceID\nK-1\n", "text/csv")},
    )
    assert refused.status_code == 400 and "Mode must be one of upsert, insert_only, update_only" in refused.text


def test_a_running_import_shows_its_progress_and_updates_in_place(client, admin, two_imports, conn):  # noqa: F811
    from customer_import.database.runs import update_run

    _, bad = two_imports
    conn.execute(
        "UPDATE import_runs SET finished_at = NULL, status = 'running', stage = 'validating',"
        " stage_started_at = now() - interval '70 seconds', rows_done = 200000, rows_expected = 300000,"
        " changed_at = now() WHERE id = %s",  # the count was taken just now
        [bad.id],
    )

    page = html.unescape(client.get("/customer-import/", headers=admin).text)
    progress = client.get(f"/customer-import/progress.json?run={bad.id}&newest={bad.id}", headers=admin).json()

    assert "Validating 200,000 of ~300,000 rows (66 %) · 1 min 10 s · about 35 s left" in page
    assert progress.pop("changed") > ""  # when any run last changed: a page that shows an older moment updates
    assert progress == {
        "newer": False,
        "runs": {
            str(bad.id): {
                "status": "running",
                "progress": "Validating 200,000 of ~300,000 rows (66 %) · 1 min 10 s · about 35 s left",
                "percent": 66,
                "rows": "3",
                "inserted": None,
                "updated": None,
                "unchanged": None,
                "rejected": "1",
            }
        },
    }
    update_run(conn, bad.id, status="rejected", finished_at=bad.finished_at)
    after = client.get(f"/customer-import/progress.json?run={bad.id}&newest={bad.id}", headers=admin).json()
    assert after["runs"][str(bad.id)]["status"] == "rejected" and after["runs"][str(bad.id)]["progress"] is None


def test_a_whole_file_rejection_says_so_and_codes_render_as_code(client, admin, page_env, importer, land, conn):  # noqa: F811
    run = importer.import_file(conn, land("semicolon_separated.csv"))
    page = client.get(f"/customer-import/runs/{run.id}", headers=admin).text

    assert "<strong>Whole file rejected.</strong> The columns are separated by semicolon (;)" in page
    assert "rows 0" not in page and "correct the rows" not in page
    listed = client.get("/customer-import/", headers=admin).text
    assert '<td class="reason">The columns are separated by semicolon (;), not by commas</td>' in listed
    bad = importer.import_file(conn, land("one_bad_email.csv"))
    assert (
        "<code>not-an-email</code> is not a valid email address"
        in client.get(f"/customer-import/runs/{bad.id}", headers=admin).text
    )


def test_run_actions_start_a_run_and_a_viewer_gets_none(client, admin, page_env, importer, land, conn):  # noqa: F811
    good = importer.import_file(conn, land("valid_customers.csv"))
    again = importer.import_file(conn, land("valid_customers.csv", as_name="again/valid_customers.csv"))
    rejected = importer.import_file(conn, land("one_bad_email.csv"))
    assert (good.status, again.status, rejected.status) == ("succeeded", "duplicate", "rejected")

    pages = {r.id: client.get(f"/customer-import/runs/{r.id}", headers=admin).text for r in (good, again, rejected)}
    assert "Roll back" in pages[good.id] and "removes the 3 customers it inserted" in pages[good.id]
    assert "Import again with force" in pages[again.id]
    assert "Yes, import valid_customers.csv again" in pages[again.id]  # confirmed, not on one click
    assert "Import the valid rows only" in pages[rejected.id] and "1 of 3 rows (33.3 %)" in pages[rejected.id]
    assert "Upload the fixed file" in pages[rejected.id]

    assert dag_run_conf(
        started(client.post(f"/customer-import/runs/{good.id}/roll_back", headers=admin, follow_redirects=False))
    ) == ("customer_import_rollback", {"import_run_id": good.id})
    dag_id, conf = dag_run_conf(
        started(client.post(f"/customer-import/runs/{again.id}/force", headers=admin, follow_redirects=False))
    )
    assert (dag_id, conf["force"]) == ("customer_import", True)
    dag_id, conf = dag_run_conf(
        started(client.post(f"/customer-import/runs/{rejected.id}/valid_rows", headers=admin, follow_redirects=False))
    )
    assert (conf["on_error"], conf["max_error_rate"]) == ("skip_invalid_rows", 0.334)
    assert (page_env.data_dir / "landing" / conf["file"]).read_bytes() == (DATA / "one_bad_email.csv").read_bytes()
    assert client.post(f"/customer-import/runs/{rejected.id}/roll_back", headers=admin).status_code == 409

    viewer = token(client, "viewer")
    seen = client.get(f"/customer-import/runs/{good.id}", headers=viewer).text
    assert "Roll back" not in seen and 'type="file"' not in seen
    assert 'type="file"' not in client.get("/customer-import/", headers=viewer).text
    assert client.post(f"/customer-import/runs/{good.id}/roll_back", headers=viewer).status_code == 403


def test_a_refused_full_snapshot_offers_to_import_it_again_allowing_its_deactivations(
    client,  # noqa: F811
    admin,  # noqa: F811
    page_env,  # noqa: F811
    importer,
    land,
    conn,
    tmp_path,
):
    from customer_import.contract.options import ImportOptions

    importer.import_file(conn, land("valid_customers.csv"))
    one_gone = tmp_path / "complete.csv"
    one_gone.write_text("AccountReferenceID,Name\n007,Bond Ltd\n1E5,Exponent\n")
    refused = importer.import_file(conn, land(one_gone), ImportOptions(snapshot="full"))
    assert (refused.status, refused.deactivation_refused) == ("rejected", 1)

    page = html.unescape(client.get(f"/customer-import/runs/{refused.id}", headers=admin).text)
    assert "Import again, deactivating 1 customer<" in page
    assert "deactivates the 1 customer of that source it does not list, more than the 5 % allowed" in page
    assert "full snapshot (deactivates at most 5 % without confirmation)" in page
    assert "would deactivate 1 of 3 customers (33 %); the limit is 5 %" in page
    assert "Import the valid rows only" not in page and "correct the rows it marks" not in page

    dag_id, conf = dag_run_conf(
        started(
            client.post(f"/customer-import/runs/{refused.id}/allow_deactivation", headers=admin, follow_redirects=False)
        )
    )
    assert (dag_id, conf["snapshot"], conf["allow_mass_deactivation"]) == ("customer_import", "full", True)
    assert (page_env.data_dir / "landing" / conf["file"]).read_bytes() == one_gone.read_bytes()
    assert client.post(f"/customer-import/runs/{refused.id}/force", headers=admin).status_code == 409
    assert client.post(f"/customer-import/runs/{refused.id}/valid_rows", headers=admin).status_code == 409

    done = importer.import_file(conn, conf["file"], ImportOptions.from_params(conf))  # as the DAG run would
    assert (done.status, done.deactivated) == ("succeeded", 1)
    page = html.unescape(client.get(f"/customer-import/runs/{done.id}", headers=admin).text)
    assert "deactivations.csv" in page and '<th class="n">deactivated</th>' in page
    listing = html.unescape(client.get("/customer-import/", headers=admin).text)
    assert "(1 deactivated)" in listing
    report = client.get(f"/customer-import/runs/{done.id}/deactivations.csv", headers=admin)
    assert report.status_code == 200
    assert report.text.lstrip("\ufeff").splitlines()[1] == ",abc-Lower,deactivate,,,"


def test_a_run_whose_files_and_history_were_removed_says_so(client, admin, page_env, importer, land, conn):  # noqa: F811
    from customer_import.housekeeping import remove_expired

    run = importer.import_file(conn, land("valid_customers.csv"))
    conn.execute(
        "UPDATE import_runs SET finished_at = now() - interval '100 days', merged_at = now() - interval '100 days'"
    )
    removed = remove_expired(conn, replace(importer.settings, keep_history_days=30))
    assert (removed.runs, removed.histories) == (1, 1)

    page = html.unescape(client.get(f"/customer-import/runs/{run.id}", headers=admin).text)
    (removed_on,) = conn.execute("SELECT files_removed_at::date::text FROM import_runs").fetchone()
    assert f"Its file and reports were removed on {removed_on} (kept 90 days): 4 files, " in page
    assert f"It can no longer be rolled back: its history was removed on {removed_on}." in page
    assert "the file as received" not in page and "Roll back" not in page and "errors.csv" not in page
    listing = html.unescape(client.get("/customer-import/", headers=admin).text)
    assert f"files removed {removed_on}" in listing
    assert "Housekeeping removed the files and reports of 1 import run (" in listing
    assert f"), last on {removed_on}; their rows and counts stay." in listing
    assert client.get(f"/customer-import/runs/{run.id}/errors.csv", headers=admin).status_code == 404


def test_a_dry_run_offers_to_apply_its_changes_with_their_counts(client, admin, page_env, importer, land, conn):  # noqa: F811
    from customer_import.contract.options import ImportOptions

    importer.import_file(conn, land("valid_customers.csv"))
    dry = importer.import_file(conn, land("update_phone_only.csv"), ImportOptions(dry_run=True))
    assert (dry.status, dry.inserted, dry.updated) == ("dry_run", 0, 2)

    page = html.unescape(client.get(f"/customer-import/runs/{dry.id}", headers=admin).text)
    assert "Apply these changes: 0 new, 2 updated" in page and "Import again with force" not in page
    assert "Yes, apply these changes" in page

    dag_id, conf = dag_run_conf(
        started(client.post(f"/customer-import/runs/{dry.id}/apply", headers=admin, follow_redirects=False))
    )
    assert dag_id == "customer_import" and "dry_run" not in conf and "force" not in conf
    assert client.post(f"/customer-import/runs/{dry.id}/force", headers=admin).status_code == 409


def test_a_file_in_another_encoding_says_which_and_offers_to_import_it_as_that(
    client,  # noqa: F811
    admin,  # noqa: F811
    page_env,  # noqa: F811
    importer,
    land,
    conn,
):
    from customer_import.contract.options import ImportOptions

    rejected = importer.import_file(conn, land("windows1252.csv"))
    assert (rejected.status, rejected.file_rejected) == ("rejected", True)

    page = html.unescape(client.get(f"/customer-import/runs/{rejected.id}", headers=admin).text)
    assert "Whole file rejected.</strong> Line 2 is not valid UTF-8" in page
    assert "Likely encoding: <strong>Windows-1252</strong>." in page
    assert "Import again as Windows-1252" in page and "Yes, import it as Windows-1252" in page
    assert "encoding UTF-8 · mode upsert" in page
    assert '<option value="windows-1252" selected>' in page  # the fixed-file form, as the file likely is
    listing = html.unescape(client.get("/customer-import/", headers=admin).text)
    assert "whole file</td>" in listing and "Line 2 is not valid UTF-8 (likely windows-1252)" in listing

    dag_id, conf = dag_run_conf(
        started(client.post(f"/customer-import/runs/{rejected.id}/encoding", headers=admin, follow_redirects=False))
    )
    assert (dag_id, conf["encoding"]) == ("customer_import", "cp1252")
    done = importer.import_file(conn, conf["file"], ImportOptions.from_params(conf))
    assert done.status == "succeeded"
    page = html.unescape(client.get(f"/customer-import/runs/{done.id}", headers=admin).text)
    assert "encoding Windows-1252 · mode upsert" in page and "Import again as" not in page
    assert client.post(f"/customer-import/runs/{done.id}/encoding", headers=admin).status_code == 409


def test_the_field_guide_is_beside_the_template_for_the_template_and_each_crm_source(client, admin):  # noqa: F811
    listing = client.get("/customer-import/", headers=admin).text
    assert re.search(r'href="[^"]*/customer-import/guide">Field guide</a>', listing)
    guide = html.unescape(client.get("/customer-import/guide", headers=admin).text)
    assert "<code>AccountReferenceID</code>" in guide and "not allowed: every row needs one" in guide
    salesforce = html.unescape(client.get("/customer-import/guide?source=salesforce", headers=admin).text)
    assert "<code>Account ID</code>" in salesforce and "date %m/%d/%Y" in salesforce
    sheet = client.get("/customer-import/guide.csv?source=salesforce", headers=admin)
    assert sheet.headers["content-disposition"] == 'attachment; filename="salesforce_field_guide.csv"'
    assert sheet.content.decode("utf-8-sig").splitlines()[1].startswith("Account ID,AccountReferenceID,")


def test_an_empty_crm_source_filter_says_to_upload_its_export_not_the_template(client, admin):  # noqa: F811
    empty = html.unescape(client.get("/customer-import/?source=salesforce", headers=admin).text)
    assert "No imports yet from source salesforce." in empty
    assert "Export it from the CRM (Salesforce account report" in empty and "landing/salesforce/" in empty
    assert "Download the template, fill in" not in empty
