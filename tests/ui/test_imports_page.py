"""The Imports page through Airflow's own API server app: who may see it, what it lists, what it serves."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import DATA, REPO

pytestmark = [pytest.mark.integration, pytest.mark.ui]
PASSWORDS = {"admin": "admin-secret", "viewer": "viewer-secret"}


@pytest.fixture(scope="session")
def client(airflow_ready, tmp_path_factory):
    """Airflow's API server app (with the plugin), users `admin` and `viewer` of the simple auth manager."""
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    passwords = tmp_path_factory.mktemp("auth") / "passwords.json"
    passwords.write_text(json.dumps(PASSWORDS))
    os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = "admin:admin,viewer:viewer"
    os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] = str(passwords)
    # an upload triggers customer_import, which must be known to the metadata database
    subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "reserialize"],
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "include")},
    )
    with TestClient(create_app("core")) as client:
        yield client


def token(client, user: str) -> dict:
    response = client.post("/auth/token", json={"username": user, "password": PASSWORDS[user]})
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.fixture
def admin(client):
    return token(client, "admin")


@pytest.fixture
def page_env(monkeypatch, importer, database_url):
    """The page reads the test's server (through the customer_db connection), schema and data folder."""
    monkeypatch.setenv("AIRFLOW_CONN_CUSTOMER_DB", database_url)
    monkeypatch.setenv("CUSTOMER_IMPORT_SCHEMA", importer.settings.schema)
    monkeypatch.setenv("CUSTOMER_IMPORT_DATA_DIR", str(importer.settings.data_dir))
    return importer.settings


@pytest.fixture
def two_imports(page_env, importer, land, conn):
    """A succeeded import (run 1) and a rejected one (run 2), as the Airflow runs `one` and `two` left them."""
    from customer_import.database.runs import update_run

    good = importer.import_file(conn, land("valid_customers.csv"))
    bad = importer.import_file(conn, land("one_bad_email.csv"))
    for run, airflow_run in [(good, "file__one"), (bad, "file__two")]:
        update_run(conn, run.id, dag_id="customer_import", airflow_run_id=airflow_run)
    assert (good.status, bad.status) == ("succeeded", "rejected")
    return good, bad


def upload(client, headers: dict, name: str, content: bytes):
    """POST one file to the upload form, as the page's form does; the response, not followed."""
    return client.post(
        "/customer-import/upload", headers=headers, follow_redirects=False, files={"file": (name, content, "text/csv")}
    )


def rows(html: str) -> list[tuple[str, str]]:
    """(run id, status) of each row of the imports table, top to bottom."""
    return re.findall(r'<tr data-run="(\d+)" data-status="(\w+)">', html)


ROUTES = [
    ("get", "/customer-import/"),
    ("get", "/customer-import/runs/1"),
    ("get", "/customer-import/runs/1/errors.csv"),
    ("get", "/customer-import/runs/1/file"),
    ("get", "/customer-import/template.csv"),
    ("get", "/customer-import/icon.svg"),
    ("post", "/customer-import/upload"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_needs_a_logged_in_airflow_user(client, page_env, method, path):
    assert getattr(client, method)(path).status_code == 401
    browser = getattr(client, method)(path, headers={"Accept": "text/html"}, follow_redirects=False)
    assert browser.status_code == 303
    assert browser.headers["location"].startswith("/auth/login?next=")
    forged = getattr(client, method)(path, headers={"Authorization": "Bearer not-a-token"})
    assert forged.status_code == 403


def test_the_plugin_is_loaded_and_listed_in_the_navigation(client, admin):
    plugins = client.get("/api/v2/plugins", headers=admin).json()["plugins"]
    ours = next(p for p in plugins if p["name"] == "customer_import")
    assert ours["fastapi_apps"][0]["url_prefix"] == "/customer-import"
    assert [(v["name"], v["href"], v["destination"]) for v in ours["external_views"]] == [
        ("Imports", "customer-import/", "nav")
    ]  # a label that fits Airflow's navigation
    icon = client.get("/" + ours["external_views"][0]["icon"], headers=admin)
    assert icon.headers["content-type"] == "image/svg+xml" and icon.text.startswith("<svg")
    assert client.get("/api/v2/plugins/importErrors", headers=admin).json()["total_entries"] == 0


def test_the_page_lists_imports_newest_first_with_status_counts_and_links(client, admin, two_imports):
    good, bad = two_imports

    page = client.get("/customer-import/", headers=admin)

    assert page.status_code == 200
    assert rows(page.text) == [(str(bad.id), "rejected"), (str(good.id), "succeeded")]
    bad_row, good_row = page.text.split("<tr data-run=")[1:3]
    assert 'class="icon bad"' in bad_row and "one_bad_email.csv" in bad_row
    assert 'class="icon ok"' in good_row and "valid_customers.csv" in good_row
    counts = r'<td class="n"[^>]*>3</td><td class="n"[^>]*>3</td><td class="n"[^>]*>0</td><td class="n"[^>]*>0</td>'
    assert re.search(counts, good_row)
    assert f'href="http://testserver/customer-import/runs/{bad.id}/errors.csv"' in bad_row
    assert f'href="http://testserver/customer-import/runs/{bad.id}/report.html"' in bad_row
    assert 'href="/dags/customer_import/runs/file__two" target="_top"' in bad_row
    assert "page 1 of 1 · 2 imports" in page.text


def test_the_list_is_paginated(client, admin, page_env, conn):
    from customer_import.contract.fields import load_contract
    from customer_import.database import db
    from customer_import.database.runs import ImportOptions, create_run

    db.migrate(conn, load_contract(), page_env.schema)
    for n in range(30):
        create_run(conn, f"file{n:02}.csv", ImportOptions())

    first = client.get("/customer-import/", headers=admin).text
    second = client.get("/customer-import/?page=2", headers=admin).text

    assert [int(run) for run, _ in rows(first)] == list(range(30, 5, -1))
    assert [int(run) for run, _ in rows(second)] == [5, 4, 3, 2, 1]
    assert "page 1 of 2 · 30 imports" in first and "older »" in first and "« newer" not in first
    assert "page 2 of 2" in second and "« newer" in second and "older »" not in second
    assert client.get("/customer-import/?page=0", headers=admin).status_code == 422


def test_a_run_page_lists_its_issues_and_serves_its_reports(client, admin, two_imports, page_env):
    _, bad = two_imports
    report_dir = page_env.data_dir / bad.report_dir

    page = client.get(f"/customer-import/runs/{bad.id}", headers=admin)
    errors_csv = client.get(f"/customer-import/runs/{bad.id}/errors.csv", headers=admin)
    report = client.get(f"/customer-import/runs/{bad.id}/report.html", headers=admin)
    summary = client.get(f"/customer-import/runs/{bad.id}/summary.json", headers=admin)
    kept = client.get(f"/customer-import/runs/{bad.id}/file", headers=admin)

    assert page.status_code == 200 and '<span id="status">rejected</span>' in page.text
    assert re.search(r'<td class="n">3</td><td>ContactEmail</td><td><code>invalid_email</code></td>', page.text)
    assert errors_csv.content == (report_dir / "errors.csv").read_bytes()
    assert errors_csv.headers["content-disposition"] == 'attachment; filename="one_bad_email.errors.csv"'
    assert report.headers["content-type"].startswith("text/html") and report.text.startswith("<!doctype html>")
    assert summary.json()["issues"][0]["code"] == "invalid_email"
    assert kept.content == (DATA / "one_bad_email.csv").read_bytes()
    assert client.get(f"/customer-import/runs/{bad.id}/changes.csv", headers=admin).status_code == 404


def test_files_cannot_be_reached_outside_their_folders(client, admin, two_imports, conn):
    from customer_import.database.runs import update_run

    good, _ = two_imports
    for path in [
        f"/customer-import/runs/{good.id}/..%2F..%2F..%2Fetc%2Fpasswd",
        f"/customer-import/runs/{good.id}/customers.csv",
        "/customer-import/runs/..%2F1/errors.csv",
        "/customer-import/runs/99/errors.csv",
    ]:
        assert client.get(path, headers=admin).status_code == 404, path
    assert client.get("/customer-import/runs/1abc/errors.csv", headers=admin).status_code == 422
    # a run row pointing outside the data folder (tampered with) serves nothing
    update_run(conn, good.id, report_dir="../../../../../../../etc", file_path="../../../../../../../etc/hostname")
    assert client.get(f"/customer-import/runs/{good.id}/errors.csv", headers=admin).status_code == 404
    assert client.get(f"/customer-import/runs/{good.id}/file", headers=admin).status_code == 404


def test_the_template_comes_from_the_contract(client, admin):
    from customer_import.contract.fields import load_contract

    template = client.get("/customer-import/template.csv", headers=admin)

    assert template.content == load_contract().template_csv()
    assert template.content.decode("utf-8-sig").strip().split(",") == load_contract().headers
    assert template.headers["content-disposition"] == 'attachment; filename="customers_template.csv"'


def test_an_upload_lands_under_a_safe_name_and_starts_its_import(client, admin, page_env):
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    content = (DATA / "valid_customers.csv").read_bytes()
    sent = upload(client, admin, "../../my customers (v2).csv", content)

    assert sent.status_code == 303
    landed = page_env.data_dir / "landing" / "my_customers_v2.csv"
    assert landed.read_bytes() == content
    assert [p.name for p in landed.parent.iterdir()] == [landed.name]
    airflow_run = re.search(r"[?&]run=([^&]+)", sent.headers["location"]).group(1)
    with create_session() as session:
        dag_run = session.query(DagRun).filter_by(dag_id="customer_import", run_id=airflow_run).one()
        assert (dag_run.conf, dag_run.triggering_user_name) == ({"file": landed.name}, "admin")
        session.execute(delete(DagRun).where(DagRun.id == dag_run.id))  # no scheduler here: it would only wait
    notice = client.get(sent.headers["location"], headers=admin).text
    assert f"Uploaded my_customers_v2.csv ({len(content):,} bytes). Its import started as Airflow run" in notice
    assert "<code>my_customers_v2.csv</code>" in notice  # listed as waiting in landing


def upload_conf(client, admin, name: str, content: bytes, data: dict) -> dict:
    """Upload a file with the form's `data`; the conf of the Airflow run it started (the run then removed:
    no scheduler here, it would only wait)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    sent = client.post(
        "/customer-import/upload",
        headers=admin,
        follow_redirects=False,
        data=data,
        files={"file": (name, content, "text/csv")},
    )
    assert sent.status_code == 303
    airflow_run = re.search(r"[?&]run=([^&]+)", sent.headers["location"]).group(1)
    with create_session() as session:
        dag_run = session.query(DagRun).filter_by(dag_id="customer_import", run_id=airflow_run).one()
        session.execute(delete(DagRun).where(DagRun.id == dag_run.id))
        return dict(dag_run.conf)


def upload_refused(client, admin, page_env, name: str, data: dict) -> str:
    """Upload a small file that the form's `data` gets refused; the page that says why."""
    refused = client.post(
        "/customer-import/upload",
        headers=admin,
        data=data,
        files={"file": (name, b"AccountReferenceID\nK-1\n", "text/csv")},
    )
    assert refused.status_code == 400
    assert not (page_env.data_dir / "landing" / name).exists()
    return refused.text


def test_an_upload_declares_its_encoding_for_the_import(client, admin, page_env):
    content = (DATA / "windows1252_declared.csv").read_bytes()
    conf = upload_conf(client, admin, "w.csv", content, {"encoding": "windows-1252"})

    assert conf == {"file": "w.csv", "encoding": "cp1252"}
    refused = upload_refused(client, admin, page_env, "k.csv", {"encoding": "klingon"})
    assert "Encoding &#39;klingon&#39; is not a known text encoding" in refused


def test_the_form_offers_the_documented_encodings_and_checks_another_by_name(client, admin, page_env):
    from customer_import.contract.options import OFFERED

    form = client.get("/customer-import/", headers=admin).text
    offered = [html.unescape(re.search(rf'<option value="{name}"[^>]*>([^<]+)<', form).group(1)) for name in OFFERED]
    assert offered == list(OFFERED.values())
    assert 'name="encoding_other"' in form

    conf = upload_conf(
        client,
        admin,
        "dos.csv",
        b"AccountReferenceID,Name\nD-1,Dos\n",
        {"encoding": "utf-8", "encoding_other": "cp850"},
    )
    assert conf == {"file": "dos.csv", "encoding": "cp850"}
    refused = upload_refused(client, admin, page_env, "i.csv", {"encoding": "utf-8", "encoding_other": "idna"})
    assert "is not the character set of a file" in refused


@pytest.mark.parametrize(
    ("name", "content", "code", "says"),
    [
        ("customers.xlsx", b"PK\x03\x04", 400, "is not a .csv file: in Excel use File > Save As"),
        ("empty.csv", b"", 400, "empty.csv is empty"),
        (
            "big.csv",
            b"AccountReferenceID\n" + b"K-1\n" * 2000,
            413,
            "big.csv is larger than the upload limit of 0.005 MiB",
        ),
        ("huge.csv", b"K-1\n" * 50_000, 413, "The file is larger than the upload limit"),  # refused before reading
    ],
)
def test_an_upload_that_is_refused_says_why_and_leaves_nothing(
    client, admin, page_env, monkeypatch, name, content, code, says
):
    monkeypatch.setenv("CUSTOMER_IMPORT_UPLOAD_MAX_MB", "0.005")

    sent = client.post("/customer-import/upload", headers=admin, files={"file": (name, content, "text/csv")})

    assert sent.status_code == code
    assert says in html.unescape(sent.text) and 'class="notice bad"' in sent.text
    landing = page_env.data_dir / "landing"
    assert not landing.exists() or list(landing.iterdir()) == []


def test_a_viewer_sees_the_page_but_cannot_upload(client, two_imports, page_env):
    viewer = token(client, "viewer")

    assert client.get("/customer-import/", headers=viewer).status_code == 200
    sent = client.post("/customer-import/upload", headers=viewer, files={"file": ("a.csv", b"x", "text/csv")})
    assert sent.status_code == 403
    assert not (page_env.data_dir / "landing" / "a.csv").exists()


def test_a_run_shows_as_running_until_its_reports_are_published(client, admin, two_imports, conn):
    from customer_import.database.runs import update_run

    good, bad = two_imports
    assert 'data-busy="false"' in client.get("/customer-import/", headers=admin).text  # idle: a slow look
    update_run(conn, bad.id, finished_at=None)  # decided (rejected), reports not written yet

    page = client.get("/customer-import/", headers=admin).text

    assert rows(page) == [(str(bad.id), "running"), (str(good.id), "succeeded")]
    assert 'data-progress="http://testserver/customer-import/progress.json"' in page  # it follows the run in place
    assert 'data-busy="true"' in page
    assert '<meta http-equiv="refresh"' not in page  # never a full reload that loses a chosen file


def test_files_queued_behind_a_long_running_import_say_so(client, admin, two_imports, conn, page_env):
    from customer_import.database.runs import update_run
    from customer_import.storage.folders import Folders

    _, bad = two_imports
    Folders(page_env.data_dir).create()
    (page_env.data_dir / "landing" / "next.csv").write_text("AccountReferenceID\nK-1\n")
    update_run(conn, bad.id, finished_at=None)
    assert "waiting behind" not in client.get("/customer-import/", headers=admin).text  # just started

    conn.execute("UPDATE import_runs SET received_at = now() - interval '20 minutes' WHERE id = %s", [bad.id])
    page = html.unescape(client.get("/customer-import/", headers=admin).text)
    waiting = page.split("<code>next.csv</code>", 1)[1].split("</li>", 1)[0]
    link = f'<a href="http://testserver/customer-import/runs/{bad.id}">import run {bad.id}</a>'
    assert f"waiting behind {link}" in waiting
    assert re.search(r"\(since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)", waiting)


def test_runs_show_their_source_and_the_list_filters_by_it(client, admin, two_imports, importer, conn, page_env):
    from customer_import.sources import freshness
    from customer_import.storage.folders import drop_into_landing

    sample = REPO / "include" / "customer_import" / "sample" / "hubspot_companies.csv"
    export = page_env.data_dir.parent / "companies.csv"
    export.write_text(sample.read_text().replace("2024-01-31 09:30", "31.01.2024"))  # not its date format
    landing = importer.sources.folders(importer.settings.data_dir, "hubspot")
    hubspot = importer.import_file(conn, drop_into_landing(export, landing), source="hubspot")
    assert hubspot.status == "rejected"
    drop_into_landing(sample, importer.sources.folders(importer.settings.data_dir, "salesforce"))  # waiting
    conn.execute(
        "INSERT INTO missing_exports (source, last_arrival, due_at, noticed_at)"
        " VALUES ('salesforce', '2026-11-24 02:00+00', '2026-11-25 04:00+00', '2026-11-25 04:01+00')"
    )
    assert [gap.source for gap in freshness.open_gaps(conn)] == ["salesforce"]

    everything = client.get("/customer-import/", headers=admin).text
    only_hubspot = client.get("/customer-import/?source=hubspot", headers=admin).text
    only_default = client.get("/customer-import/?source=default", headers=admin).text

    assert re.findall(r'<td data-field="source">(\w+)</td>', everything) == ["hubspot", "default", "default"]
    assert [run for run, _ in rows(only_hubspot)] == [str(hubspot.id)]
    assert [run for run, _ in rows(only_default)] == [str(run.id) for run in reversed(two_imports)]
    assert "<strong>hubspot</strong>" in only_hubspot  # the filter in use
    assert "<code>salesforce/hubspot_companies.csv</code>" in everything  # waiting in its source's folder
    assert re.search(r'<li data-source="salesforce"><strong>salesforce</strong>: no file since .*due by', everything)
    run_page = client.get(f"/customer-import/runs/{hubspot.id}", headers=admin).text
    assert "<dt>source</dt><dd>hubspot</dd>" in run_page
    assert '<option value="hubspot" selected>hubspot</option>' in run_page  # its fixed file goes back to hubspot


def test_an_upload_for_a_source_lands_in_its_folder_and_runs_with_its_options(client, admin, page_env):
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    content = (REPO / "include" / "customer_import" / "sample" / "hubspot_companies.csv").read_bytes()
    form = client.get("/customer-import/", headers=admin).text
    assert '<option value="hubspot">hubspot</option>' in form

    sent = client.post(
        "/customer-import/upload",
        headers=admin,
        follow_redirects=False,
        data={"source": "hubspot", "dry_run": "true"},
        files={"file": ("companies.csv", content, "text/csv")},
    )

    assert sent.status_code == 303
    assert (page_env.data_dir / "landing" / "hubspot" / "companies.csv").read_bytes() == content
    airflow_run = re.search(r"[?&]run=([^&]+)", sent.headers["location"]).group(1)
    assert airflow_run.startswith("file__hubspot__companies.csv__")
    with create_session() as session:
        dag_run = session.query(DagRun).filter_by(dag_id="customer_import", run_id=airflow_run).one()
        assert dag_run.conf == {
            "file": "companies.csv",
            "source": "hubspot",
            "on_error": "skip_invalid_rows",
            "max_error_rate": 0.05,
            "dry_run": True,
        }
        session.execute(delete(DagRun).where(DagRun.id == dag_run.id))
    refused = client.post(
        "/customer-import/upload",
        headers=admin,
        data={"source": "zoho"},
        files={"file": ("z.csv", content, "text/csv")},
    )
    assert refused.status_code == 400
    assert "There is no source `zoho` in sources.yaml" in html.unescape(refused.text)


def test_with_the_data_on_s3_the_page_serves_reports_and_takes_uploads_there(
    client, admin, page_env, conn, s3_url, monkeypatch
):
    """CUSTOMER_IMPORT_DATA_URL: the reports and the kept file are streamed from the store, an upload
    lands in the store's landing/ and is listed there (a real S3 server, moto's)."""
    from dataclasses import replace

    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    from customer_import.pipeline import Importer
    from customer_import.storage.folders import drop_into_landing
    from customer_import.storage.store import object_root

    importer = Importer(settings=replace(page_env, data_url=s3_url))
    bad = importer.import_file(conn, drop_into_landing(DATA / "one_bad_email.csv", importer.folders))
    monkeypatch.setenv("CUSTOMER_IMPORT_DATA_URL", s3_url)
    stored = object_root(s3_url)

    errors_csv = client.get(f"/customer-import/runs/{bad.id}/errors.csv", headers=admin)
    kept = client.get(f"/customer-import/runs/{bad.id}/file", headers=admin)
    page = client.get(f"/customer-import/runs/{bad.id}", headers=admin)

    assert errors_csv.status_code == 200 and errors_csv.content == (stored / bad.report_dir / "errors.csv").read_bytes()
    assert errors_csv.headers["content-disposition"] == 'attachment; filename="one_bad_email.errors.csv"'
    assert kept.content == (DATA / "one_bad_email.csv").read_bytes()
    assert '<span id="status">rejected</span>' in page.text and "invalid_email" in page.text
    assert client.get(f"/customer-import/runs/{bad.id}/..%2F..%2Fx", headers=admin).status_code == 404
    assert not (page_env.data_dir / bad.report_dir).exists(), "served from the store, not from a local copy"

    content = (DATA / "valid_customers.csv").read_bytes()
    sent = upload(client, admin, "fixed.csv", content)
    assert sent.status_code == 303
    assert (stored / "landing" / "fixed.csv").read_bytes() == content
    assert not (page_env.data_dir / "landing" / "fixed.csv").exists()
    airflow_run = re.search(r"[?&]run=([^&]+)", sent.headers["location"]).group(1)
    with create_session() as session:
        session.execute(delete(DagRun).where(DagRun.dag_id == "customer_import", DagRun.run_id == airflow_run))
    assert "<code>fixed.csv</code>" in client.get("/customer-import/", headers=admin).text  # waiting, in the store
