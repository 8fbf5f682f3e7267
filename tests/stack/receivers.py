"""Local alert receivers for tests: a Slack-style webhook endpoint and a minimal SMTP server."""

from __future__ import annotations

import json
import socketserver
import threading
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _ServedInThread:
    """Runs ``self.server`` in a daemon thread for the duration of a ``with`` block."""

    server: socketserver.BaseServer

    def __enter__(self):  # the concrete receiver
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


class WebhookReceiver(_ServedInThread):
    """Collects JSON bodies POSTed to ``url``."""

    def __init__(self) -> None:
        received: list[dict] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/alerts"


class SMTPReceiver(_ServedInThread):
    """A minimal SMTP server (RFC 5321 subset) that keeps every message it receives."""

    def __init__(self) -> None:
        messages: list[Message] = []

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                self.wfile.write(b"220 localhost test SMTP\r\n")
                data_mode = False
                lines: list[bytes] = []
                while True:
                    line = self.rfile.readline()
                    if not line:
                        return
                    if data_mode:
                        if line in (b".\r\n", b".\n"):
                            messages.append(message_from_bytes(b"".join(lines)))
                            lines, data_mode = [], False
                            self.wfile.write(b"250 queued\r\n")
                        else:
                            lines.append(line[1:] if line.startswith(b"..") else line)
                        continue
                    verb = line[:4].upper()
                    if verb == b"EHLO":
                        self.wfile.write(b"250 localhost\r\n")
                    elif verb == b"DATA":
                        data_mode = True
                        self.wfile.write(b"354 end with .\r\n")
                    elif verb == b"QUIT":
                        self.wfile.write(b"221 bye\r\n")
                        return
                    else:
                        self.wfile.write(b"250 ok\r\n")

        self.messages = messages
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
