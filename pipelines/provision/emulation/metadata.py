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

One stand-in serves many emulated instances: instance ``i-x`` gets the base URL
:meth:`MetadataStandIn.instance_url` (``<url>/instance/i-x``), so a notice can be meant for
one instance only, as on AWS (a replacement VM is not interrupted by its predecessor's
notice). :meth:`MetadataStandIn.interrupt_after` issues a notice to whichever instance first
polls ``spot/instance-action`` N times: the warning arrives while training runs.
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
        self._notices: dict[str, dict[str, str]] = {}  # per instance (instance_url)
        self._polls: dict[str, int] = {}
        self._after: tuple[int, str, int] | None = None  # (polls, action, in_seconds)
        self._lock = threading.Lock()
        self.polls = 0
        #: ``(instance id or "", notice)`` in the order notices were issued.
        self.issued: list[tuple[str, dict[str, str]]] = []
        self._server = ThreadingHTTPServer((HOST, 0), self._handler())
        self._server.daemon_threads = True

    @property
    def url(self) -> str:
        """Base URL (what ``ORDINAL_METADATA_URL`` is set to)."""
        return f"http://{HOST}:{self._server.server_address[1]}"

    def instance_url(self, instance_id: str) -> str:
        """Base URL for one emulated instance (its ``ORDINAL_METADATA_URL``)."""
        return f"{self.url}/instance/{instance_id}"

    @staticmethod
    def _make_notice(action: str, in_seconds: int) -> dict[str, str]:
        if action not in ("terminate", "stop", "hibernate"):
            raise ValueError(f"action must be terminate, stop or hibernate, got {action!r}")
        when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=in_seconds)
        return {"action": action, "time": when.strftime("%Y-%m-%dT%H:%M:%SZ")}

    def interrupt(
        self,
        action: str = "terminate",
        in_seconds: int = NOTICE_SECONDS,
        instance_id: str | None = None,
    ) -> dict:
        """Schedule the interruption: the notice is served from now on (to every instance,
        or to ``instance_id`` only)."""
        notice = self._make_notice(action, in_seconds)
        with self._lock:
            if instance_id is None:
                self._notice = notice
            else:
                self._notices[instance_id] = notice
            self.issued.append((instance_id or "", notice))
        return notice

    def interrupt_after(
        self, polls: int, action: str = "terminate", in_seconds: int = NOTICE_SECONDS
    ) -> None:
        """Issue one notice to the first instance that polls ``spot/instance-action``
        ``polls`` times (counting from now); later instances get none."""
        if polls < 1:
            raise ValueError("polls must be >= 1")
        self._make_notice(action, in_seconds)  # validates the action
        with self._lock:
            self._polls.clear()
            self._after = (polls, action, in_seconds)

    def clear(self) -> None:
        """No interruption scheduled (a fresh instance)."""
        with self._lock:
            self._notice = None
            self._notices.clear()
            self._after = None

    def _poll(self, instance_id: str) -> dict[str, str] | None:
        """Count one poll of ``spot/instance-action``; the notice to serve, if any."""
        with self._lock:
            self.polls += 1
            count = self._polls[instance_id] = self._polls.get(instance_id, 0) + 1
            if self._after is not None and count >= self._after[0]:
                _, action, in_seconds = self._after
                self._after = None
                notice = self._make_notice(action, in_seconds)
                self._notices[instance_id] = notice
                self.issued.append((instance_id, notice))
            return self._notices.get(instance_id) or self._notice

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

            def _route(self) -> tuple[str, str]:
                """``(instance id or "", path)`` from ``/instance/<id>/latest/...``."""
                path = self.path
                if path.startswith("/instance/"):
                    instance_id, _, rest = path[len("/instance/") :].partition("/")
                    return instance_id, "/" + rest
                return "", path

            def do_PUT(self) -> None:
                if self._route()[1] != "/latest/api/token":
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
                if expires < time.monotonic():
                    self._reply(401, "Unauthorized")
                    return
                instance_id, path = self._route()
                if path == "/latest/meta-data/spot/instance-action":
                    notice = stand_in._poll(instance_id)
                    if notice is None:
                        self._reply(404, "Not Found")
                    else:
                        self._reply(200, json.dumps(notice), "application/json")
                elif path == "/latest/meta-data/instance-id":
                    self._reply(200, instance_id or stand_in.instance_id)
                elif path == "/latest/meta-data/instance-life-cycle":
                    self._reply(200, stand_in.life_cycle)
                else:
                    self._reply(404, "Not Found")

        return Handler
