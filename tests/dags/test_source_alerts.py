"""Recurring sources through Airflow: a rejected import sends one webhook, an overdue source one email.

The receivers are real servers on 127.0.0.1: an HTTP server that records every POST, and aiosmtpd
as the SMTP server behind Airflow's smtp connection.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest

from customer_import.settings import REPO_ROOT

pytestmark = [pytest.mark.dag, pytest.mark.integration]
SAMPLE = REPO_ROOT / "include" / "customer_import" / "sample" / "salesforce_accounts.csv"


@pytest.fixture
def database_url(embedded_url):
    return embedded_url  # the DAG tests run on the embedded server only


@pytest.fixture
def webhook():
    """A local HTTP receiver: the JSON bodies POSTed to it, in order."""
    received: list[dict] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()


@pytest.fixture
def smtp_server(monkeypatch):
    """aiosmtpd on 127.0.0.1, as Airflow's smtp_default connection; the messages it received."""
    from aiosmtpd.controller import Controller

    received: list = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            received.append((envelope.rcpt_tos, message_from_bytes(envelope.content)))
            return "250 OK"

    with socket.socket() as probe:  # a free port (aiosmtpd checks its server by connecting to it: not port 0)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMTP_DEFAULT",
        json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": controller.port,
                "extra": {"disable_ssl": True, "disable_tls": True},
            }
        ),
    )
    yield received
    controller.stop()


@pytest.fixture
def environment(airflow_ready, tmp_path, monkeypatch, schema):
    monkeypatch.setenv("CUSTOMER_IMPORT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CUSTOMER_IMPORT_SCHEMA", schema)

    def sources(text: str) -> None:
        path = tmp_path / "sources.yaml"
        path.write_text(text)
        monkeypatch.setenv("CUSTOMER_IMPORT_SOURCES", str(path))

    return sources


def test_a_rejected_import_sends_one_webhook_with_the_run_and_its_counts(
    environment, webhook, tmp_path, schema, embedded_url
):
    from customer_import.local.dag_runs import run_dag
    from customer_import.storage.folders import Folders

    url, received = webhook
    bundled = (REPO_ROOT / "include" / "customer_import" / "sources.yaml").read_text()
    environment(
        bundled.replace(
            "    # alerts: {on: [rejected, failed, missing], email: [crm-ops@example.com]}",
            f"    alerts: {{webhook: {url}}}",
        )
    )
    landing = Folders(tmp_path / "data", "salesforce").create().landing
    (landing / "accounts.csv").write_text(SAMPLE.read_text().replace('"02/29/2024"', '"13/31/2024"'))

    dag_run = run_dag("customer_import", {"file": "accounts.csv", "source": "salesforce"}, tmp_path / "airflow.log")

    assert str(dag_run.state) == "failed"
    with psycopg.connect(embedded_url) as conn:
        run_id, source = conn.execute(
            f'SELECT id, source FROM "{schema}".import_runs WHERE airflow_run_id = %s', [dag_run.run_id]
        ).fetchone()
    assert source == "salesforce"
    assert len(received) == 1
    [alert] = received
    assert {k: alert[k] for k in ("event", "source", "import_run_id", "status", "file")} == {
        "event": "rejected",
        "source": "salesforce",
        "import_run_id": run_id,
        "status": "rejected",
        "file": "accounts.csv",
    }
    assert alert["counts"] == {
        "rows": 4,
        "valid": 3,
        "rejected": 1,
        "inserted": None,
        "updated": None,
        "unchanged": None,
        "reactivated": None,
        "deactivated": None,
        "deactivation_refused": None,
    }
    assert alert["url"] == f"http://127.0.0.1:8080/plugin/customer-imports/customer-import/runs/{run_id}"
    assert alert["airflow"] == {"dag_id": "customer_import", "run_id": dag_run.run_id}


def test_a_succeeded_import_sends_nothing(environment, webhook, tmp_path):
    from customer_import.local.dag_runs import run_dag
    from customer_import.storage.folders import Folders

    url, received = webhook
    environment(f"sources:\n  nightly:\n    alerts: {{webhook: {url}}}\n")
    landing = Folders(tmp_path / "data", "nightly").create().landing
    (landing / "customers.csv").write_text((REPO_ROOT / "tests" / "data" / "valid_customers.csv").read_text())

    dag_run = run_dag("customer_import", {"file": "customers.csv", "source": "nightly"}, tmp_path / "airflow.log")

    assert str(dag_run.state) == "success"
    assert received == []


def test_an_overdue_source_gets_one_missing_entry_and_one_email(
    environment, smtp_server, tmp_path, schema, embedded_url
):
    from customer_import.database import db
    from customer_import.local.dag_runs import run_dag
    from customer_import.sources import freshness

    environment(
        "sources:\n  nightly:\n    expected_every: 1m\n"
        "    alerts: {on: [missing], email: [crm-ops@example.com], email_from: imports@example.com}\n"
    )
    start = datetime.now(UTC) - timedelta(minutes=10)  # the watch runs as of start + ...: all in the past

    def watch(after: timedelta) -> str:
        return str(run_dag("customer_import_watch", {}, tmp_path / "watch.log", start + after).state)

    assert watch(timedelta(0)) == "success"  # the first watch: the source is watched from now
    assert smtp_server == []
    assert watch(timedelta(seconds=30)) == "success"  # not due yet
    assert smtp_server == []

    assert watch(timedelta(minutes=2)) == "success"  # a minute late: missing

    [(to, email)] = smtp_server
    assert to == ["crm-ops@example.com"]
    assert email["Subject"] == f"customer-import: no file from source nightly since {start:%Y-%m-%d %H:%M} UTC"
    [html] = [part.get_payload(decode=True).decode() for part in email.walk() if part.get_content_type() == "text/html"]
    assert "<p>Source nightly sends a file every 1 minute; none has come since" in html
    with db.use_schema(psycopg.connect(embedded_url), schema) as conn:
        [gap] = freshness.open_gaps(conn)
    assert (gap.source, gap.last_arrival, gap.alerted_at is not None) == ("nightly", start, True)

    assert watch(timedelta(minutes=3)) == "success"  # still missing: the gap was told once
    assert len(smtp_server) == 1

    landing = tmp_path / "data" / "landing" / "nightly"
    landing.mkdir(parents=True, exist_ok=True)
    (landing / "late.csv").write_text("AccountReferenceID\nX\n")
    came = (start + timedelta(minutes=3, seconds=30)).timestamp()
    os.utime(landing / "late.csv", (came, came))
    assert watch(timedelta(minutes=4)) == "success"  # a file came: the gap is closed, the next one not due
    with db.use_schema(psycopg.connect(embedded_url), schema) as conn:
        assert freshness.open_gaps(conn) == []
