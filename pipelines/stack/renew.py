"""Automatic certificate renewal: re-issue inside the renewal window, reload, confirm.

Runs from the scheduled ``stack-renew-certs`` flow (control pool), from ``ordinal stack
renew-certs`` (the systemd timer in production) and on every ``up``. nginx reloads
gracefully (SIGHUP), so open connections finish on the old certificate and no request is
dropped.
"""

from __future__ import annotations

import datetime as dt
import ssl
from dataclasses import dataclass

from cryptography import x509

from pipelines.stack import alerts, ca, procs, proxy
from pipelines.stack.config import StackConfig
from pipelines.stack.errors import StackError


@dataclass(frozen=True)
class RenewResult:
    """Serials before and after (hex); ``renewed`` is false outside the window."""

    renewed: bool
    old_serial: str
    served_serial: str
    days_left: float


def served_certificate(config: StackConfig, service: str = "prefect") -> x509.Certificate:
    """The certificate the proxy presents right now on ``service``'s TLS port."""
    pem = ssl.get_server_certificate((config.host, config.port(f"{service}_https")), timeout=10)
    return x509.load_pem_x509_certificate(pem.encode())


def renew_if_needed(
    config: StackConfig, *, now: dt.datetime | None = None, force: bool = False
) -> RenewResult:
    """Re-issue and reload when the certificate is in its window; confirm what is served.

    Raises
    ------
    StackError
        (after an alert) when the proxy still serves the old certificate after reload.
    """
    old = served_certificate(config)
    if not force and not ca.needs_renewal(config, now):
        left = (old.not_valid_after_utc - (now or dt.datetime.now(dt.UTC))).days
        return RenewResult(False, f"{old.serial_number:x}", f"{old.serial_number:x}", left)
    issued = ca.issue_server_cert(config)
    proxy.reload(config)
    try:
        procs.wait_until(
            lambda: all(
                served_certificate(config, s).serial_number == issued.serial
                for s in ("prefect", "mlflow")
            ),
            timeout=30,
            what="proxy serving the renewed certificate",
        )
    except StackError:
        alerts.send_alert(
            config,
            alerts.Alert(
                kind="certificate",
                summary="renewed certificate is not served after reload",
                context={"expected_serial": f"{issued.serial:x}"},
            ),
        )
        raise
    return RenewResult(True, f"{old.serial_number:x}", f"{issued.serial:x}", issued.days_left(now))
