"""A loopback proxy in front of EC2 that fails the next N spot requests with AWS's errors.

Every request is forwarded unchanged to the real (emulated) endpoint, except a
``RunInstances`` that asks for the spot market while faults are armed: that one gets the
error response EC2 itself sends (the ``<Response><Errors><Error>`` XML, AWS's HTTP status),
so the AWS SDK inside Terraform's provider parses it exactly as it would on AWS.

A "request" is one ``ClientToken`` (the idempotency token the SDK keeps across its own
retries): the SDK's retries of a failed request get the same error, as they would from a
zone without capacity, and only a new request (the next orchestration attempt) takes the
next armed fault.

Arm it from the same process (:meth:`FaultInjector.arm`) or over HTTP from another one:
``POST /__faults__`` with ``{"code": "InsufficientInstanceCapacity", "count": 2}``;
``GET /__faults__`` returns what is armed and what was injected.
"""

from __future__ import annotations

import http.client
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pipelines.provision.emulation.moto import HOST

__all__ = ["SPOT_ERRORS", "FaultInjector"]

# code -> (HTTP status AWS uses, message shaped like AWS's). Capacity errors are server
# errors (5xx) on EC2; quota and price errors are client errors (4xx).
SPOT_ERRORS: dict[str, tuple[int, str]] = {
    "InsufficientInstanceCapacity": (
        500,
        "We currently do not have sufficient {instance_type} capacity in the Availability "
        "Zone you requested ({zone}). Our system will be working on provisioning additional "
        "capacity. You can currently get {instance_type} capacity by not specifying an "
        "Availability Zone in your request or choosing a different Availability Zone.",
    ),
    "MaxSpotInstanceCountExceeded": (
        400,
        "Max spot instance count exceeded",
    ),
    "SpotMaxPriceTooLow": (
        400,
        "Your Spot request price of {max_price} is lower than the minimum required Spot "
        "request fulfillment price of 0.2112.",
    ),
    "UnfulfillableCapacity": (
        500,
        "At this time there isn't enough spare capacity to fulfill your request for Spot "
        "Instances.",
    ),
}


def error_xml(code: str, message: str) -> bytes:
    """EC2's error document for ``code``."""
    request_id = str(uuid.UUID(int=uuid.uuid4().int))
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message>"
        f"</Error></Errors><RequestID>{request_id}</RequestID></Response>"
    ).encode()


class FaultInjector:
    """The proxy; ``url`` is what the provider's ``ec2`` endpoint is set to.

    Parameters
    ----------
    upstream : str
        The real (emulated) EC2 endpoint, ``http://127.0.0.1:<port>``.
    """

    def __init__(self, upstream: str, port: int = 0) -> None:
        parts = urlsplit(upstream)
        if parts.hostname != HOST:
            raise ValueError(f"the injector forwards to loopback only, got {upstream!r}")
        self.upstream = (parts.hostname, parts.port or 80)
        self._lock = threading.Lock()
        self._armed: list[str] = []
        self._by_token: dict[str, tuple[int, bytes]] = {}
        self.injected: list[dict[str, Any]] = []
        self.spot_requests = 0
        self.retries = 0
        self._server = ThreadingHTTPServer((HOST, port), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` of the proxy."""
        return f"http://{HOST}:{self._server.server_address[1]}"

    def arm(self, code: str, count: int = 1) -> None:
        """Answer the next ``count`` spot requests with ``code``."""
        if code not in SPOT_ERRORS:
            raise ValueError(f"unknown spot error {code!r}; known: {sorted(SPOT_ERRORS)}")
        if count < 0:
            raise ValueError("count must be >= 0")
        with self._lock:
            self._armed.extend([code] * count)

    def disarm(self) -> None:
        """Forget every armed fault."""
        with self._lock:
            self._armed.clear()

    @property
    def armed(self) -> list[str]:
        """Codes still to be injected, in order."""
        with self._lock:
            return list(self._armed)

    def start(self) -> FaultInjector:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fault-injector", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FaultInjector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _take(self, form: dict[str, list[str]]) -> tuple[int, bytes] | None:
        if form.get("Action", [""])[0] != "RunInstances":
            return None
        if form.get("InstanceMarketOptions.MarketType", [""])[0] != "spot":
            return None
        token = form.get("ClientToken", [""])[0]
        with self._lock:
            if token and token in self._by_token:
                self.retries += 1
                return self._by_token[token]
            self.spot_requests += 1
            if not self._armed:
                return None
            code = self._armed.pop(0)
        status, template = SPOT_ERRORS[code]
        message = template.format(
            instance_type=form.get("InstanceType", ["?"])[0],
            zone=form.get("Placement.AvailabilityZone", ["the zone of the subnet"])[0],
            max_price=form.get("InstanceMarketOptions.SpotOptions.MaxPrice", ["?"])[0],
        )
        self.injected.append(
            {"code": code, "instance_type": form.get("InstanceType", ["?"])[0], "status": status}
        )
        fault = (status, error_xml(code, message))
        if token:
            with self._lock:
                self._by_token[token] = fault
        return fault

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        injector = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _reply(
                self, status: int, body: bytes, ctype: str = "text/xml", close: bool = False
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                if close:
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()

            def _control(self) -> None:
                if self.command == "POST":
                    length = int(self.headers.get("Content-Length") or 0)
                    spec = json.loads(self.rfile.read(length) or b"{}")
                    try:
                        injector.arm(str(spec.get("code")), int(spec.get("count", 1)))
                    except ValueError as exc:
                        self._reply(
                            400, json.dumps({"error": str(exc)}).encode(), "application/json"
                        )
                        return
                body = json.dumps(
                    {
                        "armed": injector.armed,
                        "injected": injector.injected,
                        "spot_requests": injector.spot_requests,
                        "retries": injector.retries,
                    }
                ).encode()
                self._reply(200, body, "application/json")

            def _forward(self) -> None:
                if self.path.startswith("/__faults__"):
                    self._control()
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.command == "POST":
                    ctype = self.headers.get("Content-Type", "")
                    if "x-www-form-urlencoded" in ctype:
                        fault = injector._take(parse_qs(body.decode("utf-8", "replace")))
                        if fault is not None:
                            # A fresh connection for whatever the client sends next: the
                            # AWS SDK drops a pooled connection after a 5xx anyway.
                            self.close_connection = True
                            self._reply(*fault, close=True)
                            return
                conn = http.client.HTTPConnection(*injector.upstream, timeout=120)
                try:
                    # Headers (Host included) pass unchanged: the request stays as signed.
                    headers = dict(self.headers.items())
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    self.send_response(resp.status)
                    for key, value in resp.getheaders():
                        if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                            self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    conn.close()

            # http.server dispatches on these names.
            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward  # noqa: N815

        return Handler
