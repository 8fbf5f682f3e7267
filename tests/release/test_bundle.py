"""Bundles from a real run: layout, schema, determinism, verification failures, loading."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import yaml
from transformers import AutoTokenizer

from ordinal.release import (
    BundleBuildError,
    DigestMismatchError,
    FileMissingError,
    ReleaseError,
    SchemaViolationError,
    SignatureError,
    TrustedKeys,
    UnlistedFileError,
    UnsafePathError,
    UntrustedKeyError,
    build_bundle,
    bundle_schema_errors,
    canonical_json,
    collect_run,
    find_run_dir,
    load_bundle,
    load_private_key,
    min_onnxruntime,
    sign_document,
    verify_bundle,
)
from ordinal.release.run_source import source_date


def _resign_from_current(bundle: Path, key_path: Path, change) -> None:
    """Edit bundle.json with ``change(meta)`` and sign it again (a well-formed forgery)."""
    meta = json.loads((bundle / "bundle.json").read_bytes())
    change(meta)
    data = canonical_json(meta)
    (bundle / "bundle.json").write_bytes(data)
    (bundle / "bundle.sig").write_bytes(sign_document(data, load_private_key(key_path)))


def test_layout_and_metadata(built_bundle: Path, run_dir: Path, fingerprint_of):
    files = sorted(
        p.relative_to(built_bundle).as_posix() for p in built_bundle.rglob("*") if p.is_file()
    )
    assert files == [
        "README.md",
        "bundle.json",
        "bundle.sig",
        "fp32/model.onnx",
        "int8/model.onnx",
        "preprocess/special_tokens_map.json",
        "preprocess/tokenizer.json",
        "preprocess/tokenizer_config.json",
        "preprocess/vocab.txt",
        "reports/int8.json",
        "reports/parity-reference.npz",
        "reports/parity.json",
    ]
    raw = (built_bundle / "bundle.json").read_bytes()
    meta = json.loads(raw)
    assert raw == canonical_json(meta) and not raw.endswith(b"\n")
    assert bundle_schema_errors(meta) == []
    assert meta["created_at"] == "2026-01-01T00:00:00Z"  # SOURCE_DATE_EPOCH=1767225600
    assert meta["lineage"]["run_id"] == run_dir.name
    assert meta["lineage"]["dataset"]["name"] == "reviews"
    assert meta["model"]["head"] == "cumulative_link" and meta["model"]["link"] == "logit"
    assert meta["model"]["num_classes"] == 5 == len(meta["model"]["label_names"])
    cut = meta["model"]["cutpoints"]
    assert len(cut) == 4 and cut == sorted(cut)
    assert [i["name"] for i in meta["graph"]["inputs"]] == [
        "input_ids",
        "attention_mask",
        "token_type_ids",
    ]
    assert {o["name"] for o in meta["graph"]["outputs"]} >= {"probs", "label", "cum_probs"}
    assert meta["onnxruntime"] == {"min_version": "1.14.0", "api_version": 14}
    assert meta["preprocess"]["max_length"] == 64  # the training step's max_length
    assert meta["default_variant"] == "int8"
    int8 = json.loads((run_dir / "quantize" / "int8_report.json").read_text())
    assert meta["metrics"]["int8"]["mae"] == int8["int8"]["mae"]
    assert meta["metrics"]["fp32"]["n"] == int8["num_samples"] == 500
    assert meta["evidence"]["parity"]["passed"] is True
    assert meta["signing"]["key_fingerprint"] == fingerprint_of["release"]
    assert [f["path"] for f in meta["files"]] == sorted(f["path"] for f in meta["files"])


def test_model_card_front_matter(built_bundle: Path):
    text = (built_bundle / "README.md").read_text()
    _, front, body = text.split("---\n", 2)
    card = yaml.safe_load(front)
    assert card["pipeline_tag"] == "text-classification"
    assert card["ordinal"]["name"] == "demo" and card["ordinal"]["version"] == "1.0.0"
    assert "| int8 | 500 |" in body and "## Cutpoints" in body


def test_same_run_same_bytes(run_dir: Path, keys, built_bundle: Path, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")
    again = build_bundle(
        collect_run(run_dir),
        tmp_path / "again",
        name="demo",
        version="1.0.0",
        signing_key=keys["release"],
    )
    for path in built_bundle.rglob("*"):
        if path.is_file():
            rel = path.relative_to(built_bundle)
            assert (again / rel).read_bytes() == path.read_bytes(), rel
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767312000")
    later = build_bundle(
        collect_run(run_dir),
        tmp_path / "later",
        name="demo",
        version="1.0.0",
        signing_key=keys["release"],
    )
    assert json.loads((later / "bundle.json").read_bytes())["created_at"] == "2026-01-02T00:00:00Z"


def test_build_refusals(run_dir: Path, keys, tmp_path, monkeypatch):
    inputs = collect_run(run_dir)
    for name, version, message in (
        ("Demo", "1.0.0", "invalid release name"),
        ("demo", "1.0", "invalid version"),
        ("demo", "01.0.0", "invalid version"),
    ):
        with pytest.raises(BundleBuildError, match=message):
            build_bundle(
                inputs, tmp_path / "x", name=name, version=version, signing_key=keys["release"]
            )
    (tmp_path / "exists").mkdir()
    with pytest.raises(BundleBuildError, match="exists"):
        build_bundle(
            inputs, tmp_path / "exists", name="demo", version="1.0.0", signing_key=keys["release"]
        )
    with pytest.raises(BundleBuildError, match="default variant"):
        build_bundle(
            inputs,
            tmp_path / "y",
            name="demo",
            version="1.0.0",
            signing_key=keys["release"],
            default_variant="fp16",
        )
    assert not any(p.name.startswith(".y") for p in tmp_path.iterdir())  # nothing half-written
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(BundleBuildError, match="SOURCE_DATE_EPOCH"):
        source_date(0)


def _copy_run(run_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run_dir, tmp_path / run_dir.name))


def test_collect_run_refuses_what_it_cannot_vouch_for(run_dir: Path, tmp_path: Path):
    with pytest.raises(BundleBuildError, match="no run folder"):
        find_run_dir("run-none", tmp_path)
    assert find_run_dir(run_dir.name, run_dir.parent) == run_dir
    # A failed run.
    failed = _copy_run(run_dir, tmp_path / "a")
    summary = json.loads((failed / "summary.json").read_text())
    (failed / "summary.json").write_text(json.dumps({**summary, "status": "failed"}))
    with pytest.raises(BundleBuildError, match="status 'failed'"):
        collect_run(failed)
    # A step that never ran.
    partial = _copy_run(run_dir, tmp_path / "b")
    (partial / "parity" / "outputs.json").unlink()
    with pytest.raises(BundleBuildError, match="'parity' step has not completed"):
        collect_run(partial)
    # A parity gate that failed.
    gated = _copy_run(run_dir, tmp_path / "c")
    report = Path(json.loads((gated / "parity" / "outputs.json").read_text())["report_json"])
    copy = gated / "parity" / "parity.json"
    copy.write_text(json.dumps({**json.loads(report.read_text()), "passed": False}))
    outputs = json.loads((gated / "parity" / "outputs.json").read_text())
    (gated / "parity" / "outputs.json").write_text(
        json.dumps({**outputs, "report_json": str(copy)})
    )
    with pytest.raises(BundleBuildError, match="parity gate failed"):
        collect_run(gated)
    # The parity gate checked another graph.
    other = _copy_run(run_dir, tmp_path / "d")
    onnx_copy = other / "export" / "model.onnx"
    onnx_copy.write_bytes(b"other graph")
    outputs = json.loads((other / "export" / "outputs.json").read_text())
    (other / "export" / "outputs.json").write_text(
        json.dumps({**outputs, "onnx_path": str(onnx_copy)})
    )
    with pytest.raises(BundleBuildError, match="not the stored FP32 graph"):
        collect_run(other)


def test_collect_run_refuses_a_changed_stored_graph(run_dir: Path, tmp_path: Path):
    store = tmp_path / "store"
    shutil.copytree(run_dir.parents[1] / "store", store)
    model = next(store.glob("models/onnx/*/int8/model.onnx"))
    model.write_bytes(model.read_bytes()[:-1] + b"\0")
    with pytest.raises(BundleBuildError, match="int8/model.onnx"):
        collect_run(run_dir, storage=str(store))


def test_verify_passes_and_reports_trust(built_bundle: Path, fingerprint_of, keys):
    verified = verify_bundle(built_bundle, [fingerprint_of["release"]])
    assert verified.trusted and verified.name == "demo" and verified.version == "1.0.0"
    assert (
        verified.file_digest("fp32/model.onnx") == verified.metadata["variants"]["fp32"]["sha256"]
    )
    with pytest.raises(KeyError):
        verified.file_digest("nope")
    assert verify_bundle(built_bundle, Path(f"{keys['release']}.pub")).trusted
    anyone = verify_bundle(built_bundle, TrustedKeys.any_self_signed())
    assert not anyone.trusted and anyone.digest == verified.digest


def test_verify_without_trust_refuses(built_bundle: Path, fingerprint_of):
    with pytest.raises(UntrustedKeyError, match=fingerprint_of["release"]):
        verify_bundle(built_bundle)
    with pytest.raises(UntrustedKeyError):
        verify_bundle(built_bundle, [fingerprint_of["rogue"]])


@pytest.mark.parametrize(
    ("tamper", "error", "path"),
    [
        (
            lambda b: (b / "fp32/model.onnx").write_bytes(
                (b / "fp32/model.onnx").read_bytes()[:-1] + b"\1"
            ),
            DigestMismatchError,
            "fp32/model.onnx",
        ),
        (
            lambda b: (b / "reports/parity.json").write_text("{}"),
            DigestMismatchError,
            "reports/parity.json",
        ),
        (lambda b: (b / "preprocess/vocab.txt").unlink(), FileMissingError, "preprocess/vocab.txt"),
        (
            lambda b: (b / "preprocess/extra.txt").write_text("x"),
            UnlistedFileError,
            "preprocess/extra.txt",
        ),
        (lambda b: (b / "bundle.sig").unlink(), SignatureError, "bundle.sig"),
        (lambda b: (b / "bundle.json").write_bytes(b"{"), SchemaViolationError, "bundle.json"),
        (
            lambda b: (b / "bundle.json").write_bytes(
                (b / "bundle.json").read_bytes().replace(b'"1.0.0"', b'"1.0.1"')
            ),
            SignatureError,
            "bundle.json",
        ),
    ],
    ids=[
        "edited-graph",
        "edited-report",
        "missing-file",
        "unlisted-file",
        "no-signature",
        "not-json",
        "edited-metadata",
    ],
)
def test_verify_names_what_differs(bundle_copy, fingerprint_of, tamper, error, path):
    tamper(bundle_copy)
    with pytest.raises(error) as info:
        verify_bundle(bundle_copy, [fingerprint_of["release"]])
    assert info.value.path == path
    assert path in str(info.value) or error in (SignatureError, SchemaViolationError)


def test_verify_refuses_well_signed_but_wrong_metadata(bundle_copy, keys, fingerprint_of):
    trusted = [fingerprint_of["release"]]
    original = (bundle_copy / "bundle.json").read_bytes()

    def _resign(bundle, key, change):  # each case starts from the original metadata
        (bundle / "bundle.json").write_bytes(original)
        _resign_from_current(bundle, key, change)

    def variant_digest(meta):
        meta["variants"]["fp32"]["sha256"] = "0" * 64

    _resign(bundle_copy, keys["release"], variant_digest)
    with pytest.raises(DigestMismatchError, match="variants.fp32.sha256") as info:
        verify_bundle(bundle_copy, trusted)
    assert info.value.expected != info.value.actual

    _resign(bundle_copy, keys["release"], lambda m: m.update(extra="field"))
    with pytest.raises(SchemaViolationError, match="extra") as schema:
        verify_bundle(bundle_copy, trusted)
    assert schema.value.errors

    _resign(bundle_copy, keys["release"], lambda m: m.update(format="ordinal-bundle/2"))
    with pytest.raises(SchemaViolationError, match="ordinal-bundle/2"):
        verify_bundle(bundle_copy, trusted)

    def escape(meta):
        meta["files"][0]["path"] = "../outside.md"

    _resign(bundle_copy, keys["release"], escape)
    with pytest.raises(UnsafePathError, match=r"\.\./outside\.md"):
        verify_bundle(bundle_copy, trusted)

    def evidence_elsewhere(meta):
        meta["evidence"]["parity"]["path"] = "reports/other.json"

    _resign(bundle_copy, keys["release"], evidence_elsewhere)
    with pytest.raises(FileMissingError, match="reports/other.json"):
        verify_bundle(bundle_copy, trusted)


def test_verify_refuses_a_rogue_resigning(bundle_copy, keys, fingerprint_of):
    # Same metadata, signed by another key and the fingerprint field left alone.
    data = (bundle_copy / "bundle.json").read_bytes()
    (bundle_copy / "bundle.sig").write_bytes(sign_document(data, load_private_key(keys["rogue"])))
    with pytest.raises(SignatureError, match="another key") as info:
        verify_bundle(bundle_copy, [fingerprint_of["release"], fingerprint_of["rogue"]])
    assert info.value.actual == fingerprint_of["rogue"]
    # Fingerprint field updated too: now it is a correctly signed bundle of an untrusted key.
    _resign_from_current(
        bundle_copy,
        keys["rogue"],
        lambda m: m["signing"].update(key_fingerprint=fingerprint_of["rogue"]),
    )
    with pytest.raises(UntrustedKeyError):
        verify_bundle(bundle_copy, [fingerprint_of["release"]])


def test_verify_refuses_symlinks_and_missing_folder(bundle_copy, fingerprint_of, tmp_path):
    target = bundle_copy / "preprocess" / "vocab.txt"
    outside = tmp_path / "vocab.txt"
    shutil.move(target, outside)
    os.symlink(outside, target)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        verify_bundle(bundle_copy, [fingerprint_of["release"]])
    with pytest.raises(FileMissingError, match="does not exist"):
        verify_bundle(tmp_path / "absent", [fingerprint_of["release"]])


def test_load_bundle_predicts_like_the_stored_graph(built_bundle: Path, fingerprint_of, run_dir):
    seen = []
    predictor = load_bundle(
        built_bundle, [fingerprint_of["release"]], variant="fp32", on_verified=seen.append
    )
    assert seen and seen[0].digest == predictor.bundle.digest
    texts = ["great, would buy again", "broke after a day", "it is fine I guess"]
    prediction = predictor.predict(texts)
    # Reference: the run's stored FP32 graph with the tokenizer it was exported with.
    fp32_dir = collect_run(run_dir).fp32_dir
    tokenizer = AutoTokenizer.from_pretrained(fp32_dir)
    feed = dict(tokenizer(texts, truncation=True, max_length=64, padding=True, return_tensors="np"))
    session = ort.InferenceSession(str(fp32_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    probs, labels = session.run(
        ["probs", "label"], {k: v.astype(np.int64) for k, v in feed.items()}
    )
    np.testing.assert_array_equal(prediction.probs, probs)
    np.testing.assert_array_equal(prediction.label_ids, labels)
    assert prediction.labels == [predictor.label_names[i] for i in labels]
    assert np.allclose(prediction.probs.sum(axis=1), 1.0, atol=1e-5)
    int8 = load_bundle(built_bundle, [fingerprint_of["release"]])
    assert int8.variant == "int8"
    assert int8.predict(texts).probs.shape == (3, 5)
    with pytest.raises(ValueError, match="at least one"):
        int8.predict([])


def test_load_bundle_refuses(bundle_copy, fingerprint_of):
    with pytest.raises(UntrustedKeyError):
        load_bundle(bundle_copy)
    with pytest.raises(ReleaseError, match="no 'fp16' variant"):
        load_bundle(bundle_copy, [fingerprint_of["release"]], variant="fp16")
    (bundle_copy / "int8/model.onnx").write_bytes(b"tampered")
    with pytest.raises(DigestMismatchError, match="int8/model.onnx"):
        load_bundle(bundle_copy, [fingerprint_of["release"]])


def test_min_onnxruntime_unknown_opset():
    assert min_onnxruntime(21) == ("1.18.0", 18)
    with pytest.raises(BundleBuildError, match="opset 99"):
        min_onnxruntime(99)


def test_bundle_from_a_run_on_s3(moto_endpoint, aws_env, run_dir, keys, tmp_path, monkeypatch):
    """A run whose store is an S3 bucket (moto_server): the manifests' files are downloaded,
    re-hashed and bundled; a run without INT8 gives an FP32-only bundle. The session run's
    store is uploaded to the bucket as it is (same keys, same manifests)."""
    import boto3

    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="runs")
    local_store = run_dir.parents[1] / "store"
    for path in local_store.rglob("*"):
        if path.is_file():
            key = "store/" + path.relative_to(local_store).as_posix()
            client.upload_file(str(path), "runs", key)
    monkeypatch.setenv("ORDINAL_S3_ENDPOINT_URL", moto_endpoint)
    run = Path(shutil.copytree(run_dir, tmp_path / "runs" / run_dir.name))
    (run / "quantize" / "outputs.json").unlink()  # this run stopped after parity
    result = json.loads((run / "train" / "result.json").read_text())
    result["params"]["storage"] = "s3://runs/store"
    (run / "train" / "result.json").write_text(json.dumps(result))
    with pytest.raises(BundleBuildError, match="pass work_dir"):
        collect_run(run)
    inputs = collect_run(run, work_dir=tmp_path / "downloads")
    assert inputs.storage_url == "s3://runs/store" and inputs.int8_dir is None
    assert inputs.fp32_dir == tmp_path / "downloads" / "export"
    out = build_bundle(
        inputs, tmp_path / "b", name="demo", version="2.0.0", signing_key=keys["release"]
    )
    meta = verify_bundle(out, Path(f"{keys['release']}.pub")).metadata
    assert sorted(meta["variants"]) == ["fp32"] and meta["default_variant"] == "fp32"
    assert meta["metrics"] == {"fp32": {"n": 300, "mae": 1.2, "qwk": 0.1, "accuracy": 0.3}}
    assert "int8" not in meta["evidence"]
    with pytest.raises(BundleBuildError, match="not in this run"):
        build_bundle(
            inputs,
            tmp_path / "c",
            name="demo",
            version="2.0.0",
            signing_key=keys["release"],
            default_variant="int8",
        )
    # An object changed in the bucket after its manifest: refused, naming it.
    model_key = next(
        k
        for k in (
            o["Key"]
            for o in client.list_objects_v2(Bucket="runs", Prefix="store/models/onnx")["Contents"]
        )
        if k.endswith("fp32/model.onnx")
    )
    client.put_object(Bucket="runs", Key=model_key, Body=b"changed")
    with pytest.raises(BundleBuildError, match="fp32/model.onnx"):
        collect_run(run, work_dir=tmp_path / "downloads2")


def test_image_bundle(release_home, keys, tmp_path):
    """A ViT run gives an image bundle (preprocessor_config.json) that loads and predicts."""
    from ordinal.data.demo_images import make_shape_records
    from tests.release.run_fixture import make_run

    run = make_run(tmp_path, "run-vit", family="vit", int8=False)
    out = build_bundle(
        collect_run(run),
        tmp_path / "vit",
        name="shapes",
        version="0.1.0",
        signing_key=keys["release"],
    )
    predictor = load_bundle(out, Path(f"{keys['release']}.pub"))
    meta = predictor.bundle.metadata
    assert meta["model"]["modality"] == "image" and meta["model"]["family"] == "vit"
    assert meta["preprocess"] == {
        "kind": "image_processor",
        "processor": "preprocess/preprocessor_config.json",
    }
    assert [i["name"] for i in meta["graph"]["inputs"]] == ["pixel_values"]
    images = [r["image"] for r in make_shape_records(3, seed=5, image_size=32)]
    prediction = predictor.predict(images)
    assert prediction.probs.shape == (3, 5) and len(prediction.labels) == 3
