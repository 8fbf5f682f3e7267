"""Faults other than kill -9: an S3 connection cut mid-upload, a full disk on the run folder.

Both are real: the cut drops the TCP connections of an upload in flight between the run and a
real ``moto_server`` (S3 emulated at the boundary, as everywhere in the tests) and refuses new
ones until the test restores the link; the full disk is a real ``tmpfs`` mounted on the run
folder and filled up by another writer, so the step's own writes get ``ENOSPC``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import random
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.chaos.harness import (
    SIZES,
    STEP_NAMES,
    FaultResult,
    env_for,
    run_args,
    run_to_end,
    work_units,
)
from tests.data_layer.dl_helpers import CutProxy

#: Bytes each stand-in step uploads when the storage root is ``s3://``.
UPLOAD_BYTES = 1 << 20
BUCKET = "chaos"


class ArmedCutProxy(CutProxy):
    """A TCP proxy to ``port`` that cuts every connection ``offset`` bytes into the request
    whose bytes contain ``marker`` (an upload's key), then refuses connections until
    :meth:`restore` listens again on the same port (the outage ends)."""

    def __init__(self, port: int, marker: bytes, offset: int) -> None:
        self.marker, self.offset = marker, offset
        self.cut_at: int | None = None
        super().__init__(port, budget=1 << 62)
        self.listen_port = self.listener.getsockname()[1]

    def _pump(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        seen = -1  # bytes of the marked request forwarded so far (-1: not seen yet)
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if count and self.marker and not self.cut.is_set():
                    if seen < 0 and (at := data.find(self.marker)) >= 0:
                        seen, data_from = 0, at
                    else:
                        data_from = 0
                    if seen >= 0:
                        room = self.offset - seen
                        seen += len(data) - data_from
                        if seen > self.offset:
                            dst.sendall(data[: data_from + max(room, 0)])
                            self.cut_at = self.offset
                            self.trip()
                            return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            if not count:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)

    def _accept(self) -> None:
        listener = self.listener
        while not self.cut.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if self.cut.is_set():  # accepted while the cut was made: drop it
                client.close()
                return
            upstream = socket.create_connection(("127.0.0.1", self.port))
            self._socks += [client, upstream]
            for args in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pump, args=args, daemon=True).start()

    def restore(self) -> None:
        """End the outage: listen on the same port again, forwarding everything."""
        self.marker = b""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.listen_port))
        listener.listen(16)
        self.listener = listener
        self.cut.clear()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.trip()


def _s3(moto_url: str):
    import boto3

    return boto3.client(
        "s3", endpoint_url=moto_url, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip


def s3_env(env: dict[str, str], endpoint: str) -> dict[str, str]:
    """``env`` pointed at ``endpoint`` for S3 (credentials are moto's dummies)."""
    drop = ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")
    out = {k: v for k, v in env.items() if k not in drop}
    out.update(ORDINAL_S3_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing",
               AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
               CHAOS_UPLOAD_BYTES=str(UPLOAD_BYTES))  # fmt: skip
    return out


def stored_payloads(moto_url: str, run_id: str) -> dict[str, str]:
    """sha256 of each step's uploaded payload, straight from the server (not the proxy)."""
    client, out = _s3(moto_url), {}
    for step in STEP_NAMES:
        key = f"{run_id}/runs/{run_id}/{step}/payload.bin"
        try:
            body = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        except client.exceptions.NoSuchKey:
            continue
        out[step] = hashlib.sha256(body).hexdigest()
    return out


def expected_payloads(run_dir: Path) -> dict[str, str]:
    """What each step's payload must be, from the state in its (local) artefact."""
    out = {}
    for step in STEP_NAMES:
        state = json.loads((run_dir / step / "artefact.json").read_text())["state"]
        payload = hashlib.shake_256(state.encode()).digest(UPLOAD_BYTES)
        out[step] = hashlib.sha256(payload).hexdigest()
    return out


def leases_left(moto_url: str, run_id: str) -> list[str]:
    listing = _s3(moto_url).list_objects_v2(Bucket=BUCKET, Prefix=f"{run_id}/leases/")
    return [o["Key"] for o in listing.get("Contents", [])]


def _measure(result: FaultResult, run_dir: Path, step: str) -> FaultResult:
    counts = Counter(unit for unit, _ in work_units(run_dir, step))
    result.recomputed_units = sum(n - 1 for n in counts.values())
    result.recomputed_seconds = result.recomputed_units * float(SIZES["CHAOS_UNIT_SECONDS"])
    summary = json.loads((run_dir / "summary.json").read_text())
    result.survived = result.resumed_rc == 0 and summary["status"] == "completed"
    return result


def inject_s3_cut(
    step: str, seed: int, home: Path, notebooks: Path, log: Path, moto_url: str,
    compute: str = "in-process",
) -> FaultResult:  # fmt: skip
    """Run with ``storage = s3://`` through a cutting proxy to ``moto_url``; cut the
    connections at a seeded byte of ``step``'s upload; resume once the link is back."""
    offset = random.Random(seed).randint(64 * 1024, UPLOAD_BYTES - 64 * 1024)
    run_id = f"chaos-s3cut-{step}-{seed}"
    run_dir = home / "runs" / run_id
    with contextlib.suppress(Exception):
        _s3(moto_url).create_bucket(Bucket=BUCKET)
    port = int(moto_url.rsplit(":", 1)[1])
    proxy = ArmedCutProxy(port, f"/runs/{run_id}/{step}/payload.bin".encode(), offset)
    env = s3_env(env_for(home, notebooks, True), proxy.url)
    args = [*run_args(run_id, compute), "--set", f"storage=s3://{BUCKET}/{run_id}"]
    started = time.monotonic()
    try:
        first_rc = run_to_end(args, env, log)
        assert proxy.cut.is_set(), f"the upload was never cut: {log.read_text()[-3000:]}"
        detail = {
            "cut_at_byte": proxy.cut_at,
            "of_bytes": UPLOAD_BYTES,
            "published_after_cut": (run_dir / step / "cache_key.txt").exists(),
            "object_after_cut": step in stored_payloads(moto_url, run_id),
            "leases_after_cut": leases_left(moto_url, run_id),
        }
        proxy.restore()
        resumed_rc = run_to_end(args, env, log)
    finally:
        proxy.close()
    result = FaultResult("s3-cut", step, run_id, offset, first_rc, resumed_rc)
    result.seconds = time.monotonic() - started
    result.detail = detail
    return _measure(result, run_dir, step)


@contextlib.contextmanager
def small_filesystem(path: Path, size: str = "64m") -> Iterator[Path]:
    """Mount a ``tmpfs`` of ``size`` on ``path`` (needs CAP_SYS_ADMIN) for the block."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                           str(path)], capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        raise OSError(f"cannot mount a tmpfs on {path}: {done.stderr.strip()}")
    try:
        yield path
    finally:
        for _ in range(50):
            if subprocess.run(["umount", str(path)], capture_output=True, check=False).returncode:
                time.sleep(0.2)  # a process still has a file open there
                continue
            break
        else:
            subprocess.run(["umount", "-l", str(path)], check=False)


def fill_up(path: Path) -> int:
    """Write ``path`` until the filesystem is full (ENOSPC); return the bytes written."""
    written, block = 0, b"\0" * (1 << 20)
    with path.open("wb", buffering=0) as out:
        for size in (1 << 20, 1 << 12, 1):
            while True:
                try:
                    written += out.write(block[:size])
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    return written


def inject_full_disk(
    step: str, seed: int, home: Path, notebooks: Path, log: Path, compute: str = "in-process"
) -> FaultResult:
    """Run with the run folder on a small tmpfs; fill it up at a seeded unit of ``step``;
    free the space once the run ended and resume."""
    units = int(SIZES["CHAOS_TRAIN_UNITS"] if step == "train" else SIZES["CHAOS_UNITS"])
    at = random.Random(seed).randint(1, units - 1)
    run_id = f"chaos-disk-{step}-{seed}"
    run_dir = home / "runs" / run_id
    env = env_for(home, notebooks, True)
    args = run_args(run_id, compute)
    started = time.monotonic()
    with small_filesystem(run_dir):
        filler = run_dir / "filler.bin"
        with log.open("a") as out:
            proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 600
            while len(work_units(run_dir, step)) < at:
                assert proc.poll() is None, f"the run ended early: {log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, "the step never reached the fault point"
                time.sleep(0.05)
            filled = fill_up(filler)
            first_rc = proc.wait(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        detail = {"filled_bytes": filled, "after_fault": after_full_disk(run_dir)}
        filler.unlink()
        resumed_rc = run_to_end(args, env, log)
        result = FaultResult("disk-full", step, run_id, at, first_rc, resumed_rc)
        result.seconds = time.monotonic() - started
        result.detail = detail
        _measure(result, run_dir, step)
        # Keep the run folder for the checks once the small filesystem is gone.
        kept = shutil.copytree(run_dir, run_dir.with_name(f"{run_id}.kept"), symlinks=True)
    run_dir.rmdir()  # the empty mount point
    kept.rename(run_dir)
    return result


def after_full_disk(run_dir: Path) -> dict:
    """What the failed attempt left: the steps it published, and any manifest (published
    ``cache_key.txt``) whose files are missing or unreadable."""
    published, broken = [], []
    for step in STEP_NAMES:
        folder = run_dir / step
        if not (folder / "cache_key.txt").exists():
            continue
        published.append(step)
        for rel in ("outputs.json", "artefact.json", "notebook.ipynb"):
            try:
                json.loads((folder / rel).read_text())
            except (OSError, ValueError):
                broken.append(f"{step}/{rel}")
    return {"published": published, "broken": broken}


def inject_during(
    fault: str,
    step: str,
    seed: int,
    run_id: str,
    home: Path,
    args: list[str],
    env: dict[str, str],
    log: Path,
    act: Callable[[], dict],
) -> FaultResult:
    """Start ``args`` (a run of ``run_id``), call ``act`` (the fault; it returns what it did)
    at a seeded unit of ``step``, let the run end (it may survive), then resume it."""
    units = int(SIZES["CHAOS_TRAIN_UNITS"] if step == "train" else SIZES["CHAOS_UNITS"])
    at = random.Random(seed).randint(1, units - 1)
    run_dir = home / "runs" / run_id
    started = time.monotonic()
    with log.open("a") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 900
        while len(work_units(run_dir, step)) < at:
            assert proc.poll() is None, f"the run ended early: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "the step never reached the fault point"
            time.sleep(0.05)
        t0 = time.monotonic()
        detail = act()
        detail["fault_seconds"] = round(time.monotonic() - t0, 1)
        first_rc = proc.wait(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    resumed_rc = run_to_end(args, env, log)
    result = FaultResult(fault, step, run_id, at, first_rc, resumed_rc)
    result.seconds = time.monotonic() - started
    result.detail = detail
    return _measure(result, run_dir, step)
