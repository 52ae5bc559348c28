"""The Imports page in a real headless Chromium, inside a real Airflow (`make airflow`'s command).

A person logs in, opens "Customer imports" from Airflow's navigation, uploads a good file and a
bad one, watches them become a succeeded and a rejected import, and downloads the error report.
Chromium is Debian's (installed here when missing); Playwright drives it, no browser is downloaded.
The screenshots are kept under .state/artifacts/.
"""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from tests.conftest import DATA, REPO
from tests.local_airflow import airflow_env, running_airflow

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


@pytest.fixture
def airflow(embedded_url, schema, tmp_path):
    """`make airflow` (python -m customer_import.cli airflow) on a free port, until the DAGs are parsed."""
    with running_airflow(airflow_env(embedded_url, schema, tmp_path, "test_e2e_airflow"), tmp_path) as server:
        yield server.base, server.password


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
