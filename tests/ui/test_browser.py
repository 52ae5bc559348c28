"""The Imports page in a real headless Chromium, inside a real Airflow (`make airflow`'s command).

A person logs in, opens "Imports" from Airflow's navigation, uploads a good file and a
bad one, watches them become a succeeded and a rejected import, and downloads the error report.
Chromium is Debian's (installed here when missing); Playwright drives it, no browser is downloaded.
The screenshots are kept under .state/artifacts/.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import DATA, REPO
from tests.local_airflow import airflow_env, running_airflow

pytestmark = [pytest.mark.integration, pytest.mark.ui]
ARTIFACTS = REPO / ".state" / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
# Chromium as root, in a sandbox with no outside network: no sandbox, no background connections.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-sync",
    "--disable-background-networking",
    "--disable-component-update",
]
IMPORT_SECONDS = 180


@pytest.fixture
def database_url(embedded_url):
    return embedded_url


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Debian's Chromium, installed with apt when it is missing and this user may."""
    if not CHROMIUM.exists() and shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
        if subprocess.run(install, env=env, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, capture_output=True)
            subprocess.run(install, env=env, capture_output=True)
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} is missing and could not be installed here (apt-get as root failed or is"
            " not available): install Debian's chromium package to run the browser test"
        )
    return CHROMIUM


# Another site's page that makes the visitor's browser upload a file to the Imports page (CSRF).
EVIL_PAGE = """<!doctype html><html><body>
<form id="f" method="post" enctype="multipart/form-data" action="{action}"><input type="file" name="file"></form>
<script>
  const data = new DataTransfer();
  data.items.add(new File(["AccountReferenceID,Name\\nEVIL-1,Planted\\n"], "planted.csv", {{type: "text/csv"}}));
  document.querySelector("input").files = data.files;
  document.getElementById("f").submit();
</script></body></html>"""


@pytest.fixture
def other_site():
    """A page served from 127.0.0.1 on a port of its own: another origin (and site) than Airflow's localhost."""
    pages: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(self.path, b"")
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def serve(path: str, html: str) -> str:
        pages[path] = html.encode()
        return f"http://127.0.0.1:{server.server_address[1]}{path}"

    yield serve
    server.shutdown()


@dataclass(frozen=True)
class SharedAirflow:
    base: str
    password: str
    customer_db: str
    schema: str
    data: Path


class TestAPersonInOneAirflow:
    """Two journeys of a person, in one Airflow (`make airflow`'s command) started for both, with one
    schema and one data folder: each test looks only at the runs and customers of its own files."""

    @pytest.fixture(scope="class")
    def airflow(self, embedded_url, tmp_path_factory) -> Iterator[SharedAirflow]:
        """`make airflow` (python -m customer_import.local.cli airflow) on a free port, until the DAGs are parsed."""
        import psycopg

        schema, tmp = f"test_{uuid.uuid4().hex[:10]}", tmp_path_factory.mktemp("airflow")
        with running_airflow(airflow_env(embedded_url, schema, tmp, "test_e2e_airflow"), tmp) as server:
            yield SharedAirflow(server.base, server.password, embedded_url, schema, tmp / "data")
        with psycopg.connect(embedded_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    def test_a_person_uploads_files_and_fixes_a_rejected_one_from_the_airflow_ui(self, chromium, airflow, other_site):
        from playwright.sync_api import expect, sync_playwright

        base, password = airflow.base, airflow.password
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900}, accept_downloads=True)
            try:
                _log_in(page, base, password)  # Airflow's login page, then back to the Imports page

                # Logged in, the person visits another site that posts a file to the page in their name.
                page.goto(other_site("/win-a-prize.html", EVIL_PAGE.format(action=f"{base}/customer-import/upload")))
                page.wait_for_url(f"{base}/customer-import/upload")
                expect(page.locator("body")).to_contain_text("Refused: this request was sent from another site")
                landing = airflow.data / "landing"
                assert not landing.exists() or not any(landing.iterdir())

                page.goto(f"{base}/")
                page.get_by_role("link", name="Imports", exact=True).click()
                expect(page).to_have_url(
                    re.compile(r"/plugin/customer-imports\b"), timeout=60_000
                )  # a client-side route
                imports = page.frame_locator("iframe")
                expect(imports.get_by_role("heading", name="Customer imports")).to_be_visible()

                for name, status in [("valid_customers.csv", "succeeded"), ("one_bad_email.csv", "rejected")]:
                    imports.locator("input[type=file]").set_input_files(DATA / name)
                    imports.get_by_role("button", name="Upload", exact=True).click()
                    expect(imports.locator(".notice.ok")).to_contain_text(f"Uploaded {name}")
                    row = imports.locator(f'tr[data-status="{status}"]', has_text=name)
                    expect(row).to_be_visible(timeout=IMPORT_SECONDS * 1000)  # the page refreshes itself

                for name in ("valid_customers.csv", "one_bad_email.csv"):  # once each
                    expect(imports.locator("tr[data-run]", has_text=name)).to_have_count(1)
                rejected = imports.locator('tr[data-status="rejected"]', has_text="one_bad_email.csv")
                expect(rejected.locator(".icon.bad")).to_be_visible()
                _the_rejection_is_explained_in_airflow(base, password, "one_bad_email.csv")
                page.screenshot(path=ARTIFACTS / "imports-page.png", full_page=True)

                with page.expect_download() as download:
                    rejected.get_by_role("link", name="errors.csv").click()
                assert download.value.suggested_filename == "one_bad_email.errors.csv"
                errors_csv = Path(download.value.path()).read_text(encoding="utf-8-sig")
                assert errors_csv.splitlines()[0].startswith("ImportLine,ImportStatus,ImportIssues,")
                assert "“not-an-email” is not a valid email address" in errors_csv  # quotation marks, not backquotes

                rejected.get_by_role("link", name="one_bad_email.csv").click()
                expect(imports.locator("#issues")).to_contain_text("ContactEmail")
                page.screenshot(path=ARTIFACTS / "import-run-page.png", full_page=True)
            except Exception:
                page.screenshot(path=ARTIFACTS / "failure.png", full_page=True)
                raise
            finally:
                browser.close()

    def test_a_person_fixes_a_rejected_file_in_the_grid_and_imports_it(self, chromium, airflow, tmp_path):
        """Issue 35: the grid inside Airflow's frame, each flag cleared by typing, a bulk fix, a skipped row,
        the draft still there after a reload, then the fixed file imported and both runs linked."""
        import psycopg
        from playwright.sync_api import expect, sync_playwright

        from tests.integration.test_fixing import EIGHT_ROWS

        base, password = airflow.base, airflow.password
        upload = tmp_path / "upload" / "customers.csv"
        upload.parent.mkdir()
        upload.write_text(EIGHT_ROWS, encoding="utf-8")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            try:
                _log_in(page, base, password)  # Airflow's login page, then back to the Imports page
                page.goto(f"{base}/")
                page.get_by_role("link", name="Imports", exact=True).click()
                expect(page).to_have_url(re.compile(r"/plugin/customer-imports\b"), timeout=60_000)
                imports = page.frame_locator("iframe")
                imports.locator("input[type=file]").set_input_files(upload)
                imports.get_by_role("button", name="Upload", exact=True).click()
                rejected = imports.locator('tr[data-status="rejected"]', has_text="customers.csv")
                expect(rejected).to_be_visible(timeout=IMPORT_SECONDS * 1000)
                rejected.get_by_role("link", name="customers.csv").click()
                imports.get_by_role("button", name="Fix in the browser").click()

                grid = imports.locator("#fix-grid")
                expect(grid.locator(".tabulator-row")).to_have_count(7, timeout=30_000)  # the rows with issues

                def cell(line: int, column: int):
                    row = grid.locator(".tabulator-row").filter(
                        has=imports.locator(
                            '.tabulator-cell[tabulator-field="line"]', has_text=re.compile(rf"^{line}$")
                        )
                    )
                    return row.locator(f'.tabulator-cell[tabulator-field="c{column}"]')

                def type_into(line: int, column: int, value: str, leave_with: str = "Enter") -> None:
                    target = cell(line, column)
                    expect(target).to_have_class(re.compile(r"\bflagged\b"))
                    target.dblclick()
                    editor = target.locator("input")
                    editor.press("Control+a")
                    editor.press_sequentially(value)
                    editor.press(leave_with)
                    # no reload; the first check in a new API server process imports GX (seconds)
                    expect(target).not_to_have_class(re.compile(r"\bflagged\b"), timeout=60_000)
                    expect(target.locator(".value")).to_have_text(value)

                expect(cell(3, 2)).to_contain_text("is not a valid email address")  # the report's words
                type_into(3, 2, "beta@example.com")
                type_into(4, 5, "2024-01-31", leave_with="Tab")
                type_into(6, 4, "5")
                type_into(8, 1, "Zeta SARL")  # a name a new customer needs: checked against the database

                imports.get_by_text("Fix a column at once").click()
                bulk = imports.locator("#bulk-form")
                bulk.locator('select[name="column"]').select_option(label="Country")
                bulk.locator('input[name="find"]').fill("Germany")
                bulk.locator('input[name="replace"]').fill("DE")
                bulk.get_by_role("button", name="Preview").click()
                expect(imports.locator("#bulk-preview")).to_have_text("2 cells will change (lines 5, 6).")
                bulk.get_by_role("button", name="Apply to 2 cells").click()
                expect(cell(5, 3)).to_have_count(0, timeout=10_000)  # no issue left on line 5: gone from the list

                expect(cell(2, 0)).to_have_class(re.compile(r"\bflagged\b"))  # FIX-1 twice
                grid.locator(".tabulator-row", has=imports.locator("text=Alpha Again")).get_by_role(
                    "button", name="Skip"
                ).click()
                expect(grid).to_contain_text("Skipped by admin")
                expect(cell(2, 0)).not_to_have_class(
                    re.compile(r"\bflagged\b"), timeout=10_000
                )  # its key is no longer repeated
                page.screenshot(path=ARTIFACTS / "fix-grid.png", full_page=True)

                frame = next(f for f in page.frames if "/fix" in f.url)
                frame.evaluate("location.reload()")  # the draft is on the server
                expect(imports.locator('[data-count="flagged"]')).to_have_text("0")
                expect(imports.locator('[data-count="edited"]')).to_have_text("6")
                expect(imports.locator('[data-count="skipped"]')).to_have_text("1")
                expect(imports.locator('[data-count="rows"]')).to_have_text("8")
                imports.get_by_label("Show every row").check()
                expect(grid.locator(".tabulator-row")).to_have_count(8)
                expect(cell(3, 2).locator(".value")).to_have_text("beta@example.com")
                expect(cell(8, 1)).to_have_class(re.compile(r"\bedited\b"))

                imports.get_by_role("button", name="Import the fixed file").click()
                expect(imports.locator(".notice.ok")).to_contain_text(
                    "Importing customers.fixed-1.csv, fixed in the browser"
                )
                fixed = imports.locator('tr[data-status="succeeded"]', has_text="customers.fixed-1.csv")
                expect(fixed).to_be_visible(timeout=IMPORT_SECONDS * 1000)
                fixed.get_by_role("link", name="customers.fixed-1.csv").click()
                expect(imports.locator(".fixed-from")).to_contain_text("Fixed in the browser from import run")
                expect(imports.locator("#edits")).to_contain_text("beta@example.com")
                imports.locator(".fixed-from a").click()
                expect(imports.locator(".fixed-by")).to_contain_text("customers.fixed-1.csv is import run")
            except Exception:
                page.screenshot(path=ARTIFACTS / "failure-fix-grid.png", full_page=True)
                raise
            finally:
                browser.close()

        with psycopg.connect(airflow.customer_db) as conn:  # this file's customers (the other test's are there too)
            mine = f"""FROM "{airflow.schema}".customers WHERE account_reference_id LIKE 'FIX-%'"""
            stored = dict(conn.execute(f"SELECT account_reference_id, name {mine}").fetchall())
            emails = dict(conn.execute(f"SELECT account_reference_id, contact_email {mine}").fetchall())
            countries = {c for (c,) in conn.execute(f"SELECT country {mine}")}
        assert sorted(stored) == ["FIX-1", "FIX-2", "FIX-3", "FIX-4", "FIX-5", "FIX-7", "FIX-8"]  # not the skipped row
        assert (
            stored["FIX-1"] == "Alpha GmbH" and stored["FIX-7"] == "Zeta SARL" and emails["FIX-2"] == "beta@example.com"
        )
        assert countries == {"DE", "FR", "FI"}


def _log_in(page, base: str, password: str) -> None:
    """Open the Imports page not logged in: Airflow's login page, then back to the page."""
    page.goto(f"{base}/customer-import/")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/customer-import/")


def _listening(session: int) -> list[tuple[str, int, str]]:
    """The sockets the processes of one Airflow (`make airflow`'s session) listen on: not those of
    another Airflow on this machine (a Celery cluster's workers serve their logs on 0.0.0.0)."""
    import psutil

    found = []
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.pid:
            with contextlib.suppress(psutil.Error, OSError):
                if os.getsid(conn.pid) == session:
                    found.append((conn.laddr.ip, conn.laddr.port, " ".join(psutil.Process(conn.pid).cmdline())[:120]))
    return found


def _ends(api, dag_run_id: str, state: str) -> None:
    import urllib.parse

    deadline, at = time.monotonic() + 60, f"/dags/customer_import/dagRuns/{urllib.parse.quote(dag_run_id)}"
    while api(at)["state"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(1)
    assert api(at)["state"] == state


def _a_rejection_is_red_once_and_says_data(api, import_run_id: str | None) -> str:
    """Point 4: the step that found the problem is red, the steps after it are not red again, and the
    note's first words say it is the file's data."""
    import urllib.parse

    deadline, run = time.monotonic() + 60, None
    while run is None and time.monotonic() < deadline:  # the note is written when the DAG run ends
        runs = api("/dags/customer_import/dagRuns?order_by=-run_after&limit=20")["dag_runs"]
        run = next((r for r in runs if r["note"] and f"(import run {import_run_id}," in r["note"]), None)
        time.sleep(0 if run else 1)
    assert run is not None, f"no DAG run's note names import run {import_run_id}"
    at = f"/dags/customer_import/dagRuns/{urllib.parse.quote(run['dag_run_id'])}"
    states = {t["task_id"]: t["state"] for t in api(f"{at}/taskInstances")["task_instances"]}
    assert run["state"] == "failed" and run["note"].startswith("Rejected for its data")
    assert [task for task, state in states.items() if state == "failed"] == ["validate_file"], states
    assert states["check_outcome"] == "upstream_failed" and states["publish_report"] == "success"
    return run["dag_run_id"]


def _the_rejection_is_explained_in_airflow(base: str, password: str, name: str) -> None:
    """Red where it broke: in Airflow's REST API the run failed at validate_file, whose log names the
    line; the run's note carries the outcome and the page of the import."""
    import json
    import urllib.parse
    import urllib.request

    from tests.local_airflow import _token

    headers = {"Authorization": f"Bearer {_token(base, password)}"}

    def get(path: str) -> bytes:
        with urllib.request.urlopen(urllib.request.Request(f"{base}/api/v2{path}", headers=headers), timeout=30) as r:
            return r.read()

    runs = json.loads(get("/dags/customer_import/dagRuns?limit=100&order_by=-run_after"))["dag_runs"]
    run = next(r for r in runs if r["conf"].get("file") == name)  # this test's: the metadata database is kept
    deadline = time.monotonic() + 60
    while run["state"] == "running" and time.monotonic() < deadline:
        time.sleep(1)
        run = json.loads(get(f"/dags/customer_import/dagRuns/{urllib.parse.quote(run['dag_run_id'])}"))
    at = f"/dags/customer_import/dagRuns/{urllib.parse.quote(run['dag_run_id'])}"
    tasks = json.loads(get(f"{at}/taskInstances"))
    states = {t["task_id"]: t["state"] for t in tasks["task_instances"]}
    assert run["state"] == "failed"
    assert (states["wait_for_file"], states["claim_file"], states["validate_file"]) == ("success", "success", "failed")
    assert run["note"].startswith("Rejected for its data") and "/customer-import/runs/" in run["note"]
    log = get(f"{at}/taskInstances/validate_file/logs/1?full_content=true").decode()
    # issue 34: the task log names the line, the column and the rule, not a personal field's value
    assert "line 3, ContactEmail: the value (12 characters) is not a valid email address" in log
    assert "not-an-email" not in log
    assert log.count("great_expectations") <= 5
    assert "determine_kwargs" not in log  # issue 33, point 12: no deprecation warning in every task log
    assert "/plugin/customer-imports/customer-import/runs/" in log  # point 1: the link opens inside Airflow


@pytest.fixture
def airflow_small_chunks(embedded_url, schema, tmp_path):
    """`make airflow` validating 25,000 rows a chunk, so that a 300,000-row import reports progress often."""
    env = {
        **airflow_env(embedded_url, schema, tmp_path, "test_e2e_airflow"),
        "CUSTOMER_IMPORT_CHUNK_ROWS": "25000",
        "AIRFLOW_VIEWER_PASSWORD": "viewer-secret",
    }
    with running_airflow(env, tmp_path) as server:
        yield server


def test_an_operator_follows_and_acts_on_imports_from_the_airflow_ui(chromium, airflow_small_chunks, tmp_path):
    import json
    import urllib.request

    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
    from playwright.sync_api import expect, sync_playwright

    from customer_import.contract.generate import write_customers
    from tests.local_airflow import token

    server = airflow_small_chunks
    base, bearer = server.base, {"Authorization": f"Bearer {token(server)}", "Content-Type": "application/json"}

    def api(path: str, body: dict | None = None, method: str | None = None) -> dict:
        data = json.dumps(body).encode() if body else None
        request = urllib.request.Request(f"{base}/api/v2{path}", data, bearer, method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    # The trigger form's defaults are valid: a run with {} imports the oldest file waiting. (The
    # watch is paused meanwhile: a file it hands over has a run of its own, which an empty-file run
    # leaves it to, and which run gets there first would be a matter of seconds.) It is paused between
    # two of its runs: the scheduler leaves the runs of a paused DAG as they are, so one paused while
    # it runs ends only when Airflow next parses its file, up to a minute later.
    def watch_runs() -> int:
        states = ("queued", "running")
        return sum(api(f"/dags/customer_import_watch/dagRuns?state={state}")["total_entries"] for state in states)

    deadline = time.monotonic() + 120
    while True:
        while watch_runs() and time.monotonic() < deadline:
            time.sleep(1)
        api("/dags/customer_import_watch", {"is_paused": True}, "PATCH")
        if not watch_runs() or time.monotonic() > deadline:
            break
        api("/dags/customer_import_watch", {"is_paused": False}, "PATCH")  # one started meanwhile: let it end
    assert not watch_runs(), "the landing watch did not pause between two of its runs in 2 minutes"
    landing = tmp_path / "data" / "landing"
    landing.mkdir(parents=True, exist_ok=True)
    (landing / "waiting.csv").write_bytes((DATA / "valid_customers.csv").read_bytes())
    triggered = api("/dags/customer_import/dagRuns", {"logical_date": None, "conf": {}})["dag_run_id"]

    big = write_customers(tmp_path / "three_hundred_thousand.csv", 300_000, start=1_000_000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        try:
            _log_in(page, base, server.password)  # Airflow's login page, then back to the Imports page
            expect(page.locator('tr[data-status="succeeded"]', has_text="waiting.csv")).to_be_visible(
                timeout=IMPORT_SECONDS * 1000
            )
            deadline = time.monotonic() + 60  # the page shows the import; the run still has its last tasks
            state = lambda: api(f"/dags/customer_import/dagRuns/{triggered}")["state"]  # noqa: E731
            while state() == "running" and time.monotonic() < deadline:
                time.sleep(1)
            assert state() == "success"

            # The same from Airflow's own trigger form, submitted with its defaults.
            (landing / "waiting_for_the_form.csv").write_bytes((DATA / "valid_customers.csv").read_bytes())
            page.goto(f"{base}/dags/customer_import")
            page.get_by_role("button", name="Trigger").first.click()
            page.get_by_role("dialog").get_by_role("button", name="Trigger").click()
            page.goto(f"{base}/customer-import/")
            expect(page.locator('tr[data-status="duplicate"]', has_text="waiting_for_the_form.csv")).to_be_visible(
                timeout=IMPORT_SECONDS * 1000
            )  # the same content as waiting.csv: imported once, then a duplicate
            api("/dags/customer_import_watch", {"is_paused": False}, "PATCH")

            page.goto(f"{base}/plugin/customer-imports")
            imports = page.frame_locator("iframe")
            imports.locator("input[type=file]").set_input_files(big)
            imports.get_by_role("button", name="Upload", exact=True).click()
            expect(imports.locator(".notice.ok")).to_contain_text("Uploaded three_hundred_thousand.csv")

            # Progress, in place: the stage, rows, % and time advance while a chosen file stays chosen.
            imports.locator("input[type=file]").set_input_files(DATA / "update_phone_only.csv")
            chosen_at = time.monotonic()
            progress = imports.locator('tr[data-status="running"] [data-field="progress"]')
            ended = ", ".join(f"tr[data-status={status}]" for status in ("succeeded", "rejected", "failed"))
            finished = imports.locator(ended, has_text="three_hundred_thousand.csv")
            seen: list[str] = []
            deadline = time.monotonic() + IMPORT_SECONDS
            while time.monotonic() < deadline and len(set(seen)) < 4 and not finished.count():
                try:  # the row stops running between two looks when the import ends
                    text = progress.first.inner_text(timeout=2_000) if progress.count() else ""
                except PlaywrightTimeoutError:
                    text = ""
                if text and text not in seen:
                    seen.append(text)
                    if "Validating" in text and "%" in text and not (ARTIFACTS / "running-import.png").exists():
                        page.screenshot(path=ARTIFACTS / "running-import.png", full_page=True)
                time.sleep(0.5)
            assert len(set(seen)) >= 3, seen
            assert any(re.search(r"Validating [\d,]+ of ~[\d,]+ rows \(\d+ %\) · \d+", s) for s in seen), seen
            assert not any(re.search(r"Validating 0\b", s) for s in seen), seen  # point 9: no 0 counts
            time.sleep(max(0.0, 20 - (time.monotonic() - chosen_at)))  # 20 s of updates at least
            chosen = imports.locator("input[type=file]").evaluate("input => [...input.files].map(f => f.name)")
            assert chosen == ["update_phone_only.csv"]
            # The running run's own page (point 9): updated in place, never reloaded, until its outcome shows.
            running = imports.locator('tr[data-status="running"]', has_text="three_hundred_thousand.csv")
            if running.count():
                running.get_by_role("link", name="three_hundred_thousand.csv").click()
                expect(imports.locator("#run-page")).to_be_visible()
                imports.locator("body").evaluate("body => { window.sameDocument = true; }")
                expect(imports.locator("#status")).to_have_text("succeeded", timeout=IMPORT_SECONDS * 1000)
                assert imports.locator("body").evaluate("() => window.sameDocument === true")  # not reloaded
                assert "of ~" not in imports.locator("body").inner_text()
                imports.get_by_role("link", name="← Customer imports").click()
            expect(imports.locator('tr[data-status="succeeded"]', has_text="three_hundred_thousand.csv")).to_have_count(
                1, timeout=IMPORT_SECONDS * 1000
            )

            # Options on the upload: update_only as a dry run gives a dry run.
            page.goto(f"{base}/plugin/customer-imports")
            imports = page.frame_locator("iframe")
            imports.locator("input[type=file]").set_input_files(DATA / "update_phone_only.csv")
            imports.locator("select[name=mode]").select_option("update_only")
            imports.locator("input[name=dry_run]").check()
            imports.get_by_role("button", name="Upload", exact=True).click()
            expect(imports.locator('tr[data-status="dry_run"]', has_text="update_phone_only.csv")).to_be_visible(
                timeout=IMPORT_SECONDS * 1000
            )

            # Dark mode follows Airflow's, live.
            page.evaluate(
                "document.documentElement.classList.replace('light', 'dark')"
                " || document.documentElement.classList.add('dark')"
            )
            background = imports.locator("body").evaluate("body => getComputedStyle(body).backgroundColor")
            assert background == "rgb(17, 19, 23)", background
            page.screenshot(path=ARTIFACTS / "imports-page-dark.png", full_page=True)
            page.evaluate("document.documentElement.classList.replace('dark', 'light')")

            # A dry run's changes applied from its page, confirmed with their counts (issue 33, point 10).
            imports.locator('tr[data-status="dry_run"]').get_by_role("link", name="update_phone_only.csv").click()
            imports.get_by_text("Apply these changes: 0 new, 2 updated").click()
            page.screenshot(path=ARTIFACTS / "apply-dry-run.png", full_page=True)
            imports.get_by_role("button", name="Yes, apply these changes").click()
            expect(imports.locator('tr[data-status="succeeded"]', has_text="update_phone_only.csv")).to_be_visible(
                timeout=IMPORT_SECONDS * 1000
            )

            # A file in another encoding: the likely one named, and imported as it from its page (point 3).
            imports.locator("input[type=file]").set_input_files(DATA / "windows1252.csv")
            imports.get_by_role("button", name="Upload", exact=True).click()
            rejected = imports.locator('tr[data-status="rejected"]', has_text="windows1252.csv")
            expect(rejected).to_contain_text("(likely windows-1252)", timeout=IMPORT_SECONDS * 1000)
            expect(rejected).to_contain_text("whole file")
            rejected_dag_run = _a_rejection_is_red_once_and_says_data(api, rejected.get_attribute("data-run"))
            airflow_view = browser.new_context(storage_state=page.context.storage_state()).new_page()
            airflow_view.set_viewport_size({"width": 1400, "height": 900})
            airflow_view.goto(f"{base}/dags/customer_import/runs/{rejected_dag_run}")
            expect(airflow_view.get_by_text("Rejected for its data").first).to_be_visible(timeout=60_000)
            airflow_view.screenshot(path=ARTIFACTS / "rejection-red-once.png")
            airflow_view.close()
            rejected.get_by_role("link", name="windows1252.csv").click()
            expect(imports.locator(".rejected-whole")).to_contain_text("Likely encoding: Windows-1252")
            imports.get_by_text("Import again as Windows-1252").click()
            page.screenshot(path=ARTIFACTS / "import-again-as-windows-1252.png", full_page=True)
            imports.get_by_role("button", name="Yes, import it as Windows-1252").click()
            done = imports.locator('tr[data-status="succeeded"]', has_text="windows1252.csv")
            expect(done).to_be_visible(timeout=IMPORT_SECONDS * 1000)
            done.get_by_role("link", name="windows1252.csv").click()
            expect(imports.locator("dd", has_text="encoding Windows-1252 · mode upsert")).to_be_visible()
            imports.get_by_role("link", name="← Customer imports").click()
            expect(imports.locator("#imports")).to_be_visible()

            # Roll back a succeeded import from its page.
            imports.locator("tr", has_text="waiting.csv").get_by_role("link", name="waiting.csv").click()
            imports.get_by_text("Roll back", exact=True).click()
            imports.get_by_role("button", name=re.compile("Yes, roll back")).click()
            expect(imports.locator('tr[data-status="rolled_back"]', has_text="waiting.csv")).to_be_visible(
                timeout=IMPORT_SECONDS * 1000
            )

            # A viewer sees the runs but no upload nor buttons, and is refused if it posts one anyway.
            viewer = browser.new_context().new_page()
            viewer.goto(f"{base}/customer-import/runs/1")
            viewer.get_by_label("Username").fill("viewer")
            viewer.get_by_label("Password").fill("viewer-secret")
            viewer.get_by_role("button", name="Sign in").click()
            viewer.wait_for_url(f"{base}/customer-import/runs/1")
            expect(viewer.locator("h1")).to_contain_text("Import run 1")
            expect(viewer.locator("form[action*='/runs/'], input[type=file]")).to_have_count(0)
            assert viewer.request.post(f"{base}/customer-import/runs/2/force").status == 403

            # A clean start shows no failed run (issue 33, point 4): the watch's first runs, started
            # with Airflow, try again when its API does not answer yet.
            failed = api("/dags/customer_import_watch/dagRuns?state=failed")
            assert failed["total_entries"] == 0, failed
            # ... and nothing of it listens beyond 127.0.0.1: no log server on every interface (point 12)
            listening = _listening(server.session)
            assert any(port == int(server.env["AIRFLOW_PORT"]) for _, port, _ in listening), listening  # its UI
            assert not [where for where in listening if where[0] in ("0.0.0.0", "::")], listening

            # At 800 px (point 7): the list scrolls in its own box; each run's outcome and links stay in view.
            page.set_viewport_size({"width": 800, "height": 900})
            page.goto(f"{base}/plugin/customer-imports")
            imports = page.frame_locator("iframe")
            expect(imports.locator("tr[data-run]").first).to_be_visible()
            for row in imports.locator("tr[data-run]").all():
                for link in row.get_by_role("link", name=re.compile("errors.csv|Airflow run")).all():
                    box = link.bounding_box()
                    assert box is not None and box["x"] + box["width"] <= 800, (row.inner_text(), box)
            time_cell = imports.locator("tr[data-run] td.time time").first
            assert re.fullmatch(r"\d\d:\d\d", time_cell.inner_text())
            assert time_cell.get_attribute("title").endswith(" UTC")
            page.screenshot(path=ARTIFACTS / "imports-page-800px.png", full_page=True)
            page.set_viewport_size({"width": 1400, "height": 900})

            # An upload while an empty-file run waits (point 2): the upload's own run imports its file.
            early = api("/dags/customer_import/dagRuns", {"logical_date": None, "conf": {}})["dag_run_id"]
            page.goto(f"{base}/plugin/customer-imports")
            imports = page.frame_locator("iframe")
            during = tmp_path / "during_the_wait.csv"
            during.write_text("AccountReferenceID,Name\nWAIT-1,Waiting Co\n")
            imports.locator("input[type=file]").set_input_files(during)
            imports.get_by_role("button", name="Upload", exact=True).click()
            expect(imports.locator(".notice.ok")).to_contain_text("Uploaded during_the_wait.csv")
            own = imports.locator("tr[data-run]", has_text="during_the_wait.csv")
            expect(own).to_have_attribute("data-status", "succeeded", timeout=IMPORT_SECONDS * 1000)
            own_run = own.get_attribute("data-run")
            uploads = api("/dags/customer_import/dagRuns?order_by=-run_after&limit=5")["dag_runs"]
            upload_run = next(r for r in uploads if r["conf"].get("file") == "during_the_wait.csv")
            _ends(api, upload_run["dag_run_id"], "success")
            assert api(f"/dags/customer_import/dagRuns/{early}")["state"] == "running"  # still waiting for a file
            page.screenshot(path=ARTIFACTS / "upload-beside-a-waiting-run.png", full_page=True)
            api(f"/dags/customer_import/dagRuns/{early}", {"state": "failed"}, "PATCH")  # not left waiting

            # The DAG run's note (point 1): its first line the outcome and a link to the run inside Airflow.
            note = api(f"/dags/customer_import/dagRuns/{upload_run['dag_run_id']}")["note"]
            assert (
                note.startswith("Imported: ") and f"(/plugin/customer-imports/customer-import/runs/{own_run})" in note
            )
            page.goto(f"{base}/dags/customer_import/runs/{upload_run['dag_run_id']}")
            with page.context.expect_page() as opened:  # Airflow opens a note's links in a new tab
                page.get_by_role("link", name=f"Open import run {own_run}").first.click()
            shell = opened.value
            shell.wait_for_url(re.compile(rf".*/plugin/customer-imports/customer-import/runs/{own_run}$"))
            expect(shell.frame_locator("iframe").locator("h1")).to_contain_text(f"Import run {own_run}")
            shell.screenshot(path=ARTIFACTS / "note-link-in-airflow.png", full_page=True)
            shell.close()

            # "Airflow run" opens the DAG run in Airflow itself, out of the frame.
            page.goto(f"{base}/plugin/customer-imports")
            imports = page.frame_locator("iframe")
            imports.locator("tr", has_text="three_hundred_thousand.csv").get_by_role("link", name="Airflow run").click()
            page.wait_for_url(re.compile(r".*/dags/customer_import/runs/file__three_hundred_thousand.*"))
        except Exception:
            page.screenshot(path=ARTIFACTS / "failure.png", full_page=True)
            raise
        finally:
            browser.close()
