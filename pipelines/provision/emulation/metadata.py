"""A loopback stand-in for the instance metadata service (IMDSv2) of one spot instance.

The endpoint contract, the same as AWS's (base URL ``http://169.254.169.254`` on a VM):

* ``PUT /latest/api/token`` with header ``X-aws-ec2-metadata-token-ttl-seconds: 1..21600``
  returns a session token (text). Every ``GET`` must carry it in
  ``X-aws-ec2-metadata-token``, else ``401`` (IMDSv2 is required on our instances).
* ``GET /latest/meta-data/spot/instance-action``: ``404`` while no interruption is
  scheduled; then ``200`` with ``{"action": "terminate", "time": "<UTC ISO-8601>"}``, the
  time being two minutes after the notice.
* ``GET /latest/meta-data/instance-id`` and ``.../instance-life-cycle`` (``spot``).

The training callback polls ``spot/instance-action`` (every 5 s on AWS's advice) with the
base URL configurable (``ORDINAL_METADATA_URL``), saves and uploads a checkpoint, and fails
the step with a typed interruption error.

Schedule a notice from this process with :meth:`MetadataStandIn.interrupt`, or from another
with ``POST /__interrupt__`` (JSON ``{"in_seconds": 120, "action": "terminate"}``).
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pipelines.provision.emulation.moto import HOST

__all__ = ["MetadataStandIn"]

NOTICE_SECONDS = 120


class MetadataStandIn:
    """Serve one instance's metadata on loopback.

    Parameters
    ----------
    instance_id : str
        What ``meta-data/instance-id`` answers.
    life_cycle : str
        ``spot`` or ``on-demand``.
    """

    def __init__(self, instance_id: str = "i-0000000000000000", life_cycle: str = "spot") -> None:
        self.instance_id = instance_id
        self.life_cycle = life_cycle
        self._tokens: dict[str, float] = {}
        self._notice: dict[str, str] | None = None
        self._lock = threading.Lock()
        self.polls = 0
        self._server = ThreadingHTTPServer((HOST, 0), self._handler())
        self._server.daemon_threads = True

    @property
    def url(self) -> str:
        """Base URL (what ``ORDINAL_METADATA_URL`` is set to)."""
        return f"http://{HOST}:{self._server.server_address[1]}"

    def interrupt(self, action: str = "terminate", in_seconds: int = NOTICE_SECONDS) -> dict:
        """Schedule the interruption: the notice is served from now on."""
        if action not in ("terminate", "stop", "hibernate"):
            raise ValueError(f"action must be terminate, stop or hibernate, got {action!r}")
        when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=in_seconds)
        notice = {"action": action, "time": when.strftime("%Y-%m-%dT%H:%M:%SZ")}
        with self._lock:
            self._notice = notice
        return notice

    def clear(self) -> None:
        """No interruption scheduled (a fresh instance)."""
        with self._lock:
            self._notice = None

    def start(self) -> MetadataStandIn:
        """Serve in a daemon thread."""
        threading.Thread(
            target=self._server.serve_forever, name="metadata-stand-in", daemon=True
        ).start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> MetadataStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: str, ctype: str = "text/plain") -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:
                if self.path != "/latest/api/token":
                    self._reply(404, "Not Found")
                    return
                try:
                    ttl = int(self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", ""))
                except ValueError:
                    ttl = 0
                if not 1 <= ttl <= 21600:
                    self._reply(400, "Bad Request")
                    return
                token = secrets.token_urlsafe(32)
                with stand_in._lock:
                    stand_in._tokens[token] = time.monotonic() + ttl
                self._reply(200, token)

            def do_POST(self) -> None:
                if self.path != "/__interrupt__":
                    self._reply(404, "Not Found")
                    return
                length = int(self.headers.get("Content-Length") or 0)
                spec = json.loads(self.rfile.read(length) or b"{}")
                try:
                    notice = stand_in.interrupt(
                        spec.get("action", "terminate"), int(spec.get("in_seconds", NOTICE_SECONDS))
                    )
                except ValueError as exc:
                    self._reply(400, str(exc))
                    return
                self._reply(200, json.dumps(notice), "application/json")

            def do_GET(self) -> None:
                token = self.headers.get("X-aws-ec2-metadata-token", "")
                with stand_in._lock:
                    expires = stand_in._tokens.get(token, 0.0)
                    notice = stand_in._notice
                if expires < time.monotonic():
                    self._reply(401, "Unauthorized")
                    return
                path = self.path
                if path == "/latest/meta-data/spot/instance-action":
                    with stand_in._lock:
                        stand_in.polls += 1
                    if notice is None:
                        self._reply(404, "Not Found")
                    else:
                        self._reply(200, json.dumps(notice), "application/json")
                elif path == "/latest/meta-data/instance-id":
                    self._reply(200, stand_in.instance_id)
                elif path == "/latest/meta-data/instance-life-cycle":
                    self._reply(200, stand_in.life_cycle)
                else:
                    self._reply(404, "Not Found")

        return Handler
