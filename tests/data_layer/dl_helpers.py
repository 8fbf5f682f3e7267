"""Helpers shared by the data-layer tests (registries, small CSVs, a connection-cutting proxy)."""

from __future__ import annotations

import contextlib
import csv
import socket
import threading
from pathlib import Path

import yaml

from ordinal.artifacts.checksums import sha256_file, sha256_tree

_LINGER_RESET = (1).to_bytes(4, "little") + (0).to_bytes(4, "little")
LABELS5 = ["one", "two", "three", "four", "five"]


def make_registry(path: Path, entries: list[dict]) -> Path:
    """Write a registry YAML with ``entries`` (defaults filled in) and return its path."""
    full = []
    for e in entries:
        item = {
            "dataset": e["name"],
            "version": "v1",
            "format": "csv",
            "labels": LABELS5,
            "label_values": "index",  # the helpers' rows hold 0-based positions
            "licence": "CC0-1.0",
            "owner": "tests",
        }
        item.update(e)
        full.append({k: v for k, v in item.items() if v is not None})  # None: leave it out
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"registry_version": 1, "sources": full}), encoding="utf-8")
    return path


def file_source(path: Path, name: str, **extra) -> dict:
    """A registry entry for a local file or folder, pinned to its current checksum."""
    sha = sha256_tree(path) if path.is_dir() else sha256_file(path).sha256
    return {"name": name, "uri": path.resolve().as_uri(), "sha256": sha, **extra}


def write_csv(path: Path, rows: list[tuple], header: str = "id,text,label") -> Path:
    """Write a small CSV (rows are already-quoted-safe tuples)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header.split(","))
        w.writerows(rows)
    return path


def good_rows(n: int, start: int = 0) -> list[tuple]:
    """``n`` valid, distinct review rows."""
    return [(f"r{i:06d}", f"review number {i} is fine", i % 5) for i in range(start, start + n)]


class CutProxy:
    """A TCP proxy that forwards to ``port`` until ``budget`` request bytes went through,
    then drops every connection and stops listening (later connects are refused)."""

    def __init__(self, port: int, budget: int) -> None:
        self.port = port
        self.budget = budget
        self.sent = 0
        self.cut = threading.Event()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.cut.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.port))
            self._socks += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if count:
                    with self._lock:
                        allowed = self.budget - self.sent
                        self.sent += len(data)
                    if allowed < len(data):
                        if allowed > 0:
                            dst.sendall(data[:allowed])
                        self.trip()
                        return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            if not count:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)

    def trip(self) -> None:
        """Cut every connection and refuse new ones."""
        self.cut.set()
        with contextlib.suppress(OSError):
            # shutdown first: close() alone does not wake the thread blocked in accept(),
            # which would go on accepting after the cut
            self.listener.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.listener.close()
        for s in list(self._socks):
            try:
                s.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
                s.close()
            except OSError:
                pass
