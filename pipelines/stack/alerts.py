"""Alerts to a Slack-compatible webhook and to email (SMTP), each with a runbook link."""

from __future__ import annotations

import datetime as dt
import smtplib
from dataclasses import dataclass, field
from email.message import EmailMessage

import httpx

from pipelines.stack.config import StackConfig

RUNBOOKS = {
    "block-validation": "runbook-block-validation-failed",
    "rotation": "runbook-secret-rotation-failed",
    "restore-drill": "runbook-restore-drill-failed-or-slow",
    "backup": "runbook-backup-failed",
    "certificate": "runbook-certificate-renewal-failed",
    "release-parity": "runbook-release-parity-drift",
    "release-drill": "runbook-release-drill-failed",
    "cost": "runbook-cost-per-sample-deviates",
}


@dataclass(frozen=True)
class Alert:
    """An operator alert: what failed, where, and which runbook to follow."""

    kind: str
    summary: str
    context: dict[str, str] = field(default_factory=dict)
    severity: str = "error"

    def runbook(self, config: StackConfig) -> str:
        """Link to the runbook section for this alert kind."""
        return f"{config.runbook_base_url}#{RUNBOOKS.get(self.kind, 'runbooks')}"


@dataclass(frozen=True)
class Delivery:
    """Which channels accepted the alert (a failed channel does not hide the other)."""

    webhook: bool | None
    email: bool | None
    errors: tuple[str, ...] = ()


def _slack_payload(alert: Alert, config: StackConfig) -> dict:
    lines = [f"*{alert.severity.upper()}* [{config.environment}] {alert.summary}"]
    lines += [f"• {key}: {value}" for key, value in alert.context.items()]
    lines.append(f"Runbook: {alert.runbook(config)}")
    text = "\n".join(lines)
    return {
        "text": text,
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
    }


def send_alert(config: StackConfig, alert: Alert) -> Delivery:
    """Send ``alert`` to every configured channel; never raises (alerting must not mask
    the failure it reports), returns what was delivered."""
    errors: list[str] = []
    webhook = email = None
    if config.alert_webhook_url:
        try:
            response = httpx.post(
                config.alert_webhook_url, json=_slack_payload(alert, config), timeout=10
            )
            response.raise_for_status()
            webhook = True
        except httpx.HTTPError as exc:
            webhook = False
            errors.append(f"webhook: {type(exc).__name__}")
    if config.smtp_host and config.alert_email_to:
        message = EmailMessage()
        message["Subject"] = f"[ordinal {config.environment}] {alert.kind}: {alert.summary}"
        message["From"] = config.alert_email_from
        message["To"] = config.alert_email_to
        message["Date"] = dt.datetime.now(dt.UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
        body = [alert.summary, ""]
        body += [f"{key}: {value}" for key, value in alert.context.items()]
        body += ["", f"Runbook: {alert.runbook(config)}"]
        message.set_content("\n".join(body))
        try:
            with smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=10) as smtp:
                smtp.send_message(message)
            email = True
        except (OSError, smtplib.SMTPException) as exc:
            email = False
            errors.append(f"email: {type(exc).__name__}")
    return Delivery(webhook=webhook, email=email, errors=tuple(errors))
