"""Golden replay: the Rust service and Python ONNX Runtime on the same signed bundle.

600 held-out texts (demo reviews with their own seed plus the tricky corpus) go through
``ordinal-serve`` and through :class:`ordinal.release.BundlePredictor` in the same batches:
FP32 and INT8 labels must be identical and probabilities within 1e-5. The result is written
where the release policy reads it (``releases/serving-e2e/<digest>.json`` in the storage
root), and the policy's "Rust e2e" criterion is checked to pass on it.
"""

from __future__ import annotations

import hashlib
import json

from tests.serving.e2e import PROBS_ATOL, RESULT_FORMAT, default_result_key, run_e2e


def test_rust_matches_python_on_the_same_bundle(binaries, bundle, signing, tmp_path, monkeypatch):
    from ordinal.artifacts import open_storage
    from ordinal.release.policy import _rust_e2e, load_policy
    from ordinal.release.registry import Registry

    monkeypatch.delenv("ORDINAL_SERVING_E2E_DIR", raising=False)
    store = open_storage(str(tmp_path / "store"))
    result = run_e2e(
        bundle,
        [signing["release_fingerprint"]],
        binaries=binaries,
        parity_count=1000,
        storage=store.url,
    )
    digest = hashlib.sha256((bundle / "bundle.json").read_bytes()).hexdigest()
    assert result["written_to"] == f"{store.url}/{default_result_key(digest)}"
    on_disk = json.loads(store.get_bytes(default_result_key(digest)))
    # The release policy finds it and reads it as passed for exactly this bundle.
    registry = Registry(store, [signing["release_fingerprint"]], tracking_uri="")
    criterion = _rust_e2e(registry, digest, load_policy()[0])
    assert criterion.status == "pass", criterion
    assert _rust_e2e(registry, "0" * 64, load_policy()[0]).status == "missing"
    assert on_disk["format"] == RESULT_FORMAT
    assert on_disk["bundle"] == {"name": "serving-demo", "version": "1.0.0", "digest": digest}
    assert on_disk["tokenizer"]["mismatches"] == 0 and on_disk["tokenizer"]["passed"]
    assert set(on_disk["variants"]) == {"fp32", "int8"}
    for variant, outcome in on_disk["variants"].items():
        assert outcome["texts"] >= 500, variant
        assert outcome["label_mismatches"] == 0, (variant, outcome)
        for name, diff in outcome["max_abs_diff"].items():
            assert diff <= PROBS_ATOL, (variant, name, diff)
        # Not vacuous: the texts reach several classes.
        assert len(outcome["labels_seen"]) >= 3, (variant, outcome["labels_seen"])
        assert outcome["exit_code"] == 0
    assert on_disk["passed"] is True


def test_a_failed_comparison_is_recorded_as_failed(binaries, bundle, signing, tmp_path):
    """The criterion can fail: a replay against the other variant's answers does not pass."""
    from ordinal.release import load_bundle
    from tests.serving.e2e import replay
    from tests.serving.service import Service

    fp32 = load_bundle(bundle, [signing["release_fingerprint"]], variant="fp32")
    texts = [f"review number {i}: {'great ' * (i % 7)}{'awful ' * (i % 5)}" for i in range(64)]
    with Service(
        binaries["ordinal-serve"],
        bundle,
        [signing["release_fingerprint"]],
        ["--variant", "int8"],
        log_dir=tmp_path,
    ) as service:
        outcome = replay(service, fp32, texts)
    assert outcome["max_abs_diff"]["probs"] > PROBS_ATOL
    assert outcome["passed"] is False
