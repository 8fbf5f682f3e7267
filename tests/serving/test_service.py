"""The real ``ordinal-serve`` binary: refusals at start, HTTP errors, audit log, SIGTERM."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

from tests.serving.service import Service, ServiceError


def _start_fails(binaries, bundle: Path, keys, args=(), tmp_path=None, ort=None) -> str:
    service = Service(binaries["ordinal-serve"], bundle, keys, args, log_dir=tmp_path, ort=ort)
    with pytest.raises(ServiceError) as info:
        service.start(timeout=30)
    assert service.proc.returncode == 2
    return str(info.value)


def test_refuses_an_untrusted_or_unverifiable_bundle(binaries, bundle, signing, tmp_path):
    text = _start_fails(binaries, bundle, [signing["rogue_fingerprint"]], tmp_path=tmp_path)
    assert "is not trusted" in text and signing["release_fingerprint"] in text
    text = _start_fails(binaries, bundle, [], tmp_path=tmp_path)
    assert "none configured" in text

    copy = Path(shutil.copytree(bundle, tmp_path / "tampered"))
    tokenizer = copy / "preprocess" / "tokenizer.json"
    tokenizer.write_bytes(tokenizer.read_bytes().replace(b'"[UNK]"', b'"[UNX]"', 1))
    text = _start_fails(binaries, copy, [signing["release_fingerprint"]], tmp_path=tmp_path)
    assert "preprocess/tokenizer.json" in text and "sha256" in text

    copy2 = Path(shutil.copytree(bundle, tmp_path / "extra"))
    (copy2 / "int8" / "notes.txt").write_text("not listed")
    text = _start_fails(binaries, copy2, [signing["release_fingerprint"]], tmp_path=tmp_path)
    assert "int8/notes.txt is not listed" in text


def test_refuses_a_missing_onnx_runtime_naming_path_and_version(
    binaries, bundle, signing, tmp_path
):
    missing = tmp_path / "nowhere" / "libonnxruntime.so"
    keys = [signing["release_fingerprint"]]
    text = _start_fails(binaries, bundle, keys, tmp_path=tmp_path, ort=missing)
    meta = json.loads((bundle / "bundle.json").read_bytes())
    assert str(missing) in text and meta["onnxruntime"]["min_version"] in text


def test_http_errors_are_json_and_4xx(binaries, bundle, signing, tmp_path):
    args = ["--max-batch", "8", "--max-body-bytes", "4096"]
    with Service(
        binaries["ordinal-serve"], bundle, [signing["release_fingerprint"]], args, log_dir=tmp_path
    ) as s:
        cases = [
            (b"{oops", 400, "invalid_json"),
            (json.dumps({"texts": ["a"] * 9}).encode(), 413, "batch_too_large"),
            (json.dumps({"texts": ["ok", 3]}).encode(), 422, "invalid_text"),
            (json.dumps({"texts": ["x" * 5000]}).encode(), 413, "body_too_large"),
            (json.dumps({"inputs": ["x"]}).encode(), 422, "invalid_request"),
        ]
        for body, status, code in cases:
            got, raw = s.request("POST", "/v1/predict", body)
            assert (got, json.loads(raw)["error"]["code"]) == (status, code), raw
        status, body = s.predict(["fine", "", "\u200b\x00", "😀" * 300])
        assert status == 200 and len(body["predictions"]) == 4
        assert s.request("GET", "/readyz")[0] == 200
        status, metrics = s.request("GET", "/metrics")
        text = metrics.decode()
        assert 'ordinal_serve_requests_total{endpoint="/v1/predict",status="413"} 2' in text
        assert 'variant="int8"' in text  # the bundle's default variant
        assert "ordinal_serve_batch_size_bucket" in text
    log = s.log()
    assert "intra_op_threads=1" in log and "inference_workers=1" in log


def test_appends_a_chained_consume_record(binaries, bundle, signing, tmp_path):
    from ordinal.release.audit import verify_records

    log = tmp_path / "audit" / "consume.jsonl"
    key = signing["release_fingerprint"]
    for variant in ("fp32", "int8"):
        with Service(
            binaries["ordinal-serve"],
            bundle,
            [key],
            ["--variant", variant, "--audit-log", str(log)],
            log_dir=tmp_path,
        ):
            pass
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert verify_records(records, where=str(log)) == 2
    digest = __import__("hashlib").sha256((bundle / "bundle.json").read_bytes()).hexdigest()
    assert [r["evidence"]["variant"] for r in records] == ["fp32", "int8"]
    for r in records:
        assert r["action"] == "consume"
        assert r["subject"] == {
            "name": "serving-demo",
            "version": "1.0.0",
            "digests": {"bundle.json": digest},
        }
        assert r["evidence"]["key_fingerprint"] == key and r["evidence"]["trusted"] is True


def test_sigterm_lets_accepted_requests_finish(binaries, bundle, signing, tmp_path):
    """Under load, SIGTERM gives every request either its answer or a 503, never a reset."""
    service = Service(
        binaries["ordinal-serve"],
        bundle,
        [signing["release_fingerprint"]],
        ["--inference-workers", "2"],
        log_dir=tmp_path,
    ).start()
    texts = ["a long review " * 40] * 32
    outcomes: list[object] = []
    started = threading.Event()

    def client():
        for _ in range(200):
            try:
                status, _ = service.request(
                    "POST", "/v1/predict", json.dumps({"texts": texts}).encode()
                )
            except ConnectionRefusedError:
                outcomes.append("refused")  # the listener is closed: after shutdown
                return
            except OSError as exc:  # a reset or a half answer would land here
                outcomes.append(f"error: {exc!r}")
                return
            outcomes.append(status)
            started.set()
            if status == 503:
                return

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    assert started.wait(30)
    code = service.stop()
    for t in threads:
        t.join(30)
    assert code == 0, service.log()
    assert all(o in (200, 503, "refused") for o in outcomes), outcomes
    assert outcomes.count(200) >= 1
    log = service.log()
    assert "SIGTERM received" in log and "drained; closing" in log and "stopped" in log
