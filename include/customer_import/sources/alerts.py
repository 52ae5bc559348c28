"""Alerts: telling people that a source's import was rejected or failed, or that its file did not come.

Each source names its recipients in sources.yaml (`alerts`): an email through Airflow's SMTP
provider (`SmtpNotifier`, over the Airflow connection `smtp_conn_id`) and a JSON POST to a
webhook (`WebhookNotifier`), both Airflow notifiers. The import DAG sends them from publish_report,
once a run's outcome is known; the watch from its freshness check.

A notifier is called through `notify`, not `notifier(context)`: calling it renders its fields as
Jinja templates, and an alert quotes file names and messages that come from the file.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseNotifier

from customer_import.database.runs import ImportRun
from customer_import.links import page_url
from customer_import.sources.freshness import Missing
from customer_import.sources.profiles import Alerts, Source

log = logging.getLogger(__name__)


class AlertNotSent(RuntimeError):
    """A notifier could not deliver its alert; the message says which and why."""


class WebhookNotifier(BaseNotifier):
    """POSTs `payload` as JSON to `url`; a response other than 2xx is an error."""

    def __init__(self, url: str, payload: dict[str, Any], timeout: float = 10.0) -> None:
        super().__init__()
        self.url, self.payload, self.timeout = url, payload, timeout

    def notify(self, context: Any) -> None:
        import httpx

        response = httpx.post(self.url, json=self.payload, timeout=self.timeout, follow_redirects=False)
        response.raise_for_status()


@dataclass(frozen=True)
class Alert:
    """One alert, as every notifier says it: a subject, lines of text, and the webhook's JSON."""

    event: str  # rejected, failed or missing
    subject: str
    lines: list[str]
    payload: dict[str, Any] = field(default_factory=dict)

    @property
    def html(self) -> str:
        return "".join(f"<p>{html.escape(line)}</p>" for line in self.lines)


def run_alert(run: ImportRun) -> Alert:
    """The alert of an import run that ended rejected or failed."""
    url = page_url(f"runs/{run.id}")
    counts = {
        "rows": run.rows_total,
        "valid": run.rows_valid,
        "rejected": run.rows_rejected,
        "inserted": run.inserted,
        "updated": run.updated,
        "unchanged": run.unchanged,
        "reactivated": run.reactivated,
        "deactivated": run.deactivated,
        "deactivation_refused": run.deactivation_refused,
    }
    return Alert(
        event=run.status,
        subject=f"customer-import: {run.file_name} from source {run.source} was {run.status} (import run {run.id})",
        lines=[run.public_outcome, f"The run's page, its report and errors.csv: {url}"],
        payload={
            "event": run.status,
            "source": run.source,
            "import_run_id": run.id,
            "status": run.status,
            "file": run.file_name,
            "message": run.public_message,
            "counts": counts,
            "url": url,
            "airflow": {"dag_id": run.dag_id, "run_id": run.airflow_run_id},
        },
    )


def missing_alert(entry: Missing, source: Source) -> Alert:
    """The alert of a source whose file did not come in time."""
    every = _spoken(source.expected_every)
    since = f"{entry.last_arrival:%Y-%m-%d %H:%M} UTC"
    return Alert(
        event="missing",
        subject=f"customer-import: no file from source {entry.source} since {since}",
        lines=[
            f"Source {entry.source} sends a file every {every}; none has come since {since}"
            f" (due by {entry.due_at:%Y-%m-%d %H:%M} UTC, grace included).",
            f"Check the export in the CRM and the landing folder; the Imports page: {page_url()}",
        ],
        payload={
            "event": "missing",
            "source": entry.source,
            "status": "missing",
            "last_arrival": entry.last_arrival.isoformat(),
            "due_at": entry.due_at.isoformat(),
            "expected_every_seconds": source.expected_every.total_seconds() if source.expected_every else None,
            "url": page_url(),
        },
    )


def _spoken(duration: timedelta | None) -> str:
    """`1 minute`, `24 hours`, `7 days`: a duration as sources.yaml's units say it."""
    seconds = int(duration.total_seconds()) if duration else 0
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds} seconds"


def notifiers(alerts: Alerts, alert: Alert) -> list[BaseNotifier]:
    """The notifiers a source's alert settings ask for."""
    found: list[BaseNotifier] = []
    if alerts.email:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        found.append(
            SmtpNotifier(
                to=alerts.email,
                from_email=alerts.email_from or "customer-import@localhost",
                smtp_conn_id=alerts.smtp_conn_id,
                subject=alert.subject,
                html_content=alert.html,
            )
        )
    if alerts.webhook:
        found.append(WebhookNotifier(alerts.webhook, alert.payload))
    return found


def send(source: Source, alert: Alert, context: Any) -> int:
    """Send `alert` through each notifier of `source` that takes its event; how many were sent.

    Every notifier is tried; AlertNotSent names the ones that failed."""
    settings = source.alerts_on(alert.event)
    if settings is None:
        return 0
    sent, failed = 0, []
    for notifier in notifiers(settings, alert):
        try:
            notifier.notify(context)
            sent += 1
        except Exception as error:
            failed.append(f"{type(notifier).__name__}: {error}")
    log.info("Alert %r: sent through %d notifier(s).", alert.subject, sent)
    if failed:
        raise AlertNotSent(f"Alert {alert.subject!r} not sent by " + "; ".join(failed))
    return sent
