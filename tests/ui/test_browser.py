"""The Imports page in a real headless Chromium, inside a real Airflow (`make airflow`'s command).

A person logs in, opens "Customer imports" from Airflow's navigation, uploads a good file and a
bad one, watches them become a succeeded and a rejected import, and downloads the error report.
Chromium is Debian's (installed here when missing); Playwright drives it, no browser is downloaded.
The screenshots are kept under .state/artifacts/.
"""

from __future__ import annotations

import http.server
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import DATA, REPO

pytestmark = [pytest.mark.integration, pytest.mark.ui]
ARTIFACTS = REPO / ".state" / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
# Chromium as root, in a sandbox with no outside network: no sandbox, no background connections.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]
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
        pytest.skip(f"{CHROMIUM} is missing and could not be installed here (apt-get as root failed or is"
                    " not available): install Debian's chromium package to run the browser test")
    return CHROMIUM


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def _token(base: str, password: str) -> str | None:
    body = json.dumps({"username": "admin", "password": password}).encode()
    request = urllib.request.Request(f"{base}/auth/token", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.load(response)["access_token"]
    except OSError:
        return None


@pytest.fixture
def airflow(embedded_url, schema, tmp_path):
    """`make airflow` (python -m customer_import.cli airflow) on a free port, until the DAGs are parsed."""
    from customer_import import localdb

    port, password = _free_port(), secrets.token_urlsafe(12)
    base = f"http://localhost:{port}"
    env = {**os.environ, "PYTHONPATH": str(REPO / "include"), "AIRFLOW_PORT": str(port),
           "AIRFLOW_ADMIN_PASSWORD": password, "AIRFLOW_HOME": str(REPO / ".state" / "test-e2e-airflow"),
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": localdb.database_url("test_e2e_airflow", "postgresql+psycopg2"),
           "AIRFLOW_CONN_CUSTOMER_DB": embedded_url, "CUSTOMER_IMPORT_SCHEMA": schema,
           "CUSTOMER_IMPORT_DATA_DIR": str(tmp_path / "data")}
    env.pop("AIRFLOW__API__BASE_URL", None)
    log = (tmp_path / "airflow.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "customer_import.cli", "airflow"], env=env, cwd=REPO,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while True:
            token = _token(base, password)
            if token and _get(f"{base}/api/v2/dags/customer_import", token) == 200:
                break
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Airflow did not come up; its log:\n{(tmp_path / 'airflow.log').read_text()[-5000:]}")
            time.sleep(1)
        yield base, password
    finally:
        _stop_group(server)
        log.close()


def _stop_group(server: subprocess.Popen) -> None:
    """Stop Airflow and every process it started (they share its process group)."""
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(30)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            os.killpg(server.pid, 0)  # raises once the whole group is gone
            time.sleep(0.5)
        os.killpg(server.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


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


def test_a_person_uploads_files_and_fixes_a_rejected_one_from_the_airflow_ui(chromium, airflow, other_site, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    base, password = airflow
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900}, accept_downloads=True)
        try:
            page.goto(f"{base}/customer-import/")  # not logged in: Airflow's login page, then back
            page.get_by_label("Username").fill("admin")
            page.get_by_label("Password").fill(password)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"{base}/customer-import/")

            # Logged in, the person visits another site that posts a file to the page in their name.
            page.goto(other_site("/win-a-prize.html", EVIL_PAGE.format(action=f"{base}/customer-import/upload")))
            page.wait_for_url(f"{base}/customer-import/upload")
            expect(page.locator("body")).to_contain_text("Refused: this request was sent from another site")
            landing = tmp_path / "data" / "landing"
            assert not landing.exists() or not any(landing.iterdir())

            page.goto(f"{base}/")
            page.get_by_role("link", name="Customer imports").click()
            page.wait_for_url("**/plugin/customer-imports")
            imports = page.frame_locator("iframe")
            expect(imports.get_by_role("heading", name="Customer imports")).to_be_visible()

            for name, status in [("valid_customers.csv", "succeeded"), ("one_bad_email.csv", "rejected")]:
                imports.locator("input[type=file]").set_input_files(DATA / name)
                imports.get_by_role("button", name="Upload", exact=True).click()
                expect(imports.locator(".notice.ok")).to_contain_text(f"Uploaded {name}")
                row = imports.locator(f'tr[data-status="{status}"]', has_text=name)
                expect(row).to_be_visible(timeout=IMPORT_SECONDS * 1000)  # the page refreshes itself

            expect(imports.locator("tr[data-run]")).to_have_count(2)
            expect(imports.locator('tr[data-status="rejected"] .icon.bad')).to_be_visible()
            page.screenshot(path=ARTIFACTS / "imports-page.png", full_page=True)

            with page.expect_download() as download:
                imports.locator('tr[data-status="rejected"]').get_by_role("link", name="errors.csv").click()
            assert download.value.suggested_filename == "one_bad_email.errors.csv"
            errors_csv = Path(download.value.path()).read_text(encoding="utf-8-sig")
            assert errors_csv.splitlines()[0].startswith("ImportLine,ImportStatus,ImportIssues,")
            assert "`not-an-email` is not a valid email address" in errors_csv

            imports.locator('tr[data-status="rejected"]').get_by_role("link", name="one_bad_email.csv").click()
            expect(imports.locator("#issues")).to_contain_text("ContactEmail")
            page.screenshot(path=ARTIFACTS / "import-run-page.png", full_page=True)
        except Exception:
            page.screenshot(path=ARTIFACTS / "failure.png", full_page=True)
            raise
        finally:
            browser.close()
