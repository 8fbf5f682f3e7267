"""Rust end-to-end check of one bundle: the Rust service against Python ONNX Runtime.

For a bundle folder this

1. builds (or reuses) the Rust binaries;
2. checks the Rust tokenizer against the Hugging Face tokenizer of the bundle's
   ``preprocess/`` folder, id for id, on the parity corpus (:mod:`tests.serving.corpus`);
3. starts ``ordinal-serve`` on a free loopback port for each variant and replays held-out
   texts through it and through :class:`ordinal.release.BundlePredictor` (Python
   onnxruntime, same graph, same batches), comparing labels exactly and ``probs``,
   ``cum_probs`` and ``latent`` within ``PROBS_ATOL``;
4. writes the result, keyed by the bundle digest (sha256 of ``bundle.json``), to
   ``releases/serving-e2e/<digest>.json`` in the storage root (or ``--out``): the file the
   release policy's
   "Rust e2e" criterion reads.

Run it from the repository root::

    .venv/bin/python -m tests.serving.e2e --bundle DIR --trusted-key sha256:... [--out FILE]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tests.serving.corpus import parity_texts, replay_texts
from tests.serving.service import Service, build_binaries, ort_library

__all__ = [
    "PROBS_ATOL",
    "RESULTS_PREFIX",
    "RESULT_FORMAT",
    "default_result_key",
    "held_out_texts",
    "replay",
    "run_e2e",
    "tokenizer_parity",
]

PROBS_ATOL = 1e-5
RESULT_FORMAT = "ordinal-rust-e2e/1"
BATCH = 32


#: Where the release policy reads results (``deploy/release-policy.yaml``, ``rust_e2e``): a
#: key under the storage root, named by the bundle digest.
RESULTS_PREFIX = "releases/serving-e2e"


def default_result_key(digest: str) -> str:
    """``releases/serving-e2e/<digest>.json`` in the storage root."""
    return f"{RESULTS_PREFIX}/{digest}.json"


def held_out_texts(n: int = 600) -> list[str]:
    """Demo reviews the fixture model never saw (own seed), then the tricky replay corpus."""
    from ordinal.data.demo_text import make_review_records

    tricky = replay_texts(100)
    reviews = [r["text"] for r in make_review_records(max(n - len(tricky), 0), seed=424242)]
    return reviews + tricky


def tokenizer_parity(
    tokenize_binary: Path, preprocess_dir: Path, max_length: int, texts: Sequence[tuple[str, str]]
) -> dict[str, Any]:
    """Compare ``ordinal-tokenize`` with ``AutoTokenizer`` text by text.

    Returns ``{"texts", "mismatches", "by_category", "examples", "padded_batches_equal"}``.
    """
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(preprocess_dir)
    plain = [t for _, t in texts]
    expected = reference(plain, truncation=True, max_length=max_length)
    proc = subprocess.run(
        [str(tokenize_binary), str(preprocess_dir / "tokenizer.json"), str(max_length)],
        input="".join(json.dumps(t) + "\n" for t in plain).encode(),
        capture_output=True,
        check=True,
        timeout=300,
    )
    rows = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    if len(rows) != len(texts):
        raise AssertionError(f"ordinal-tokenize answered {len(rows)} rows for {len(texts)} texts")
    by_category: dict[str, list[int]] = {}
    examples = []
    for i, ((category, text), row) in enumerate(zip(texts, rows, strict=True)):
        ok = (
            row["ids"] == expected["input_ids"][i]
            and row["type_ids"] == expected["token_type_ids"][i]
        )
        counts = by_category.setdefault(category, [0, 0])
        counts[0] += 1
        counts[1] += 0 if ok else 1
        if not ok and len(examples) < 5:
            examples.append({"text": text, "python": expected["input_ids"][i], "rust": row["ids"]})
    # Padding: the batch the service builds equals the padded Python batch.
    padded_equal = True
    for start in range(0, min(len(texts), 320), BATCH):
        chunk = rows[start : start + BATCH]
        py = reference(
            plain[start : start + BATCH], truncation=True, max_length=max_length, padding=True
        )
        width = max(len(r["ids"]) for r in chunk)
        pad = reference.pad_token_id
        ids = [r["ids"] + [pad] * (width - len(r["ids"])) for r in chunk]
        mask = [[1] * len(r["ids"]) + [0] * (width - len(r["ids"])) for r in chunk]
        padded_equal &= ids == py["input_ids"] and mask == py["attention_mask"]
    mismatches = sum(c[1] for c in by_category.values())
    return {
        "texts": len(texts),
        "mismatches": mismatches,
        "by_category": {k: {"texts": v[0], "mismatches": v[1]} for k, v in by_category.items()},
        "examples": examples,
        "padded_batches_equal": bool(padded_equal),
    }


def replay(service: Service, predictor: Any, texts: Sequence[str]) -> dict[str, Any]:
    """Send ``texts`` in batches of :data:`BATCH` to ``service`` and to ``predictor``.

    Returns counts, label mismatches, the largest absolute differences per output and the
    labels seen (so a caller can check the replay is not vacuous).
    """
    diffs = {"probs": 0.0, "cum_probs": 0.0, "latent": 0.0}
    label_mismatches = 0
    labels_seen: set[int] = set()
    for start in range(0, len(texts), BATCH):
        batch = list(texts[start : start + BATCH])
        status, body = service.predict(batch)
        if status != 200:
            raise AssertionError(f"ordinal-serve answered {status}: {body}")
        rust = body["predictions"]
        python = predictor.run(batch)
        if len(rust) != len(batch):
            raise AssertionError(f"{len(rust)} predictions for {len(batch)} texts")
        rust_labels = np.array([p["label"] for p in rust], np.int64)
        label_mismatches += int((rust_labels != python["label"]).sum())
        labels_seen.update(int(x) for x in rust_labels)
        for name in diffs:
            if name not in python:
                continue
            got = np.array([p[name] for p in rust], np.float64)
            diffs[name] = max(
                diffs[name], float(np.abs(got - python[name].astype(np.float64)).max())
            )
        names = [p["label_name"] for p in rust]
        if names != [predictor.label_names[i] for i in rust_labels]:
            raise AssertionError(f"label_name does not name label: {names}")
    passed = label_mismatches == 0 and all(v <= PROBS_ATOL for v in diffs.values())
    return {
        "texts": len(texts),
        "label_mismatches": label_mismatches,
        "max_abs_diff": diffs,
        "labels_seen": sorted(labels_seen),
        "passed": passed,
    }


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_e2e(
    bundle: Path,
    trusted_keys: Sequence[str],
    *,
    out: Path | None = None,
    storage: str | None = None,
    texts: Sequence[str] | None = None,
    parity_count: int = 10_000,
    binaries: dict[str, Path] | None = None,
) -> dict[str, Any]:
    """Run the whole check on ``bundle``; write and return the result."""
    from ordinal.release import load_bundle

    bundle = Path(bundle).resolve()
    binaries = binaries or build_binaries()
    digest = _sha256(bundle / "bundle.json")
    meta = json.loads((bundle / "bundle.json").read_bytes())
    texts = list(texts) if texts is not None else held_out_texts()
    result: dict[str, Any] = {
        "format": RESULT_FORMAT,
        "bundle": {"name": meta["name"], "version": meta["version"], "digest": digest},
        "created_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "consumer": {
            "binary": "ordinal-serve",
            "binary_sha256": _sha256(binaries["ordinal-serve"]),
            "onnxruntime_library": ort_library().name,
        },
        "tolerance": {"probs_atol": PROBS_ATOL, "labels": "identical"},
    }
    prep = meta["preprocess"]
    result["tokenizer"] = tokenizer_parity(
        binaries["ordinal-tokenize"],
        bundle / "preprocess",
        int(prep["max_length"]),
        parity_texts(parity_count),
    )
    result["tokenizer"]["passed"] = (
        result["tokenizer"]["mismatches"] == 0 and result["tokenizer"]["padded_batches_equal"]
    )
    result["variants"] = {}
    with tempfile.TemporaryDirectory(prefix="rust-e2e-") as work:
        for variant in sorted(meta["variants"]):
            predictor = load_bundle(bundle, list(trusted_keys), variant=variant)
            service = Service(
                binaries["ordinal-serve"],
                bundle,
                trusted_keys,
                ["--variant", variant, "--max-batch", str(BATCH)],
                log_dir=Path(work),
            )
            with service:
                outcome = replay(service, predictor, texts)
            outcome["exit_code"] = service.proc.returncode if service.proc else None
            outcome["passed"] = outcome["passed"] and outcome["exit_code"] == 0
            result["variants"][variant] = outcome
    result["passed"] = result["tokenizer"]["passed"] and all(
        v["passed"] for v in result["variants"].values()
    )
    result["bundle_sha256"] = digest  # what the release policy matches
    body = (json.dumps(result, indent=2, sort_keys=True) + "\n").encode("utf-8")
    if out:
        target = Path(out)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_bytes(body)
        os.replace(tmp, target)
        result["written_to"] = str(target)
    else:
        from ordinal.artifacts import open_storage

        store = open_storage(storage)
        store.put_bytes(body, default_result_key(digest))  # atomic in every backend
        result["written_to"] = f"{store.url}/{default_result_key(digest)}"
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: exit 0 when the bundle passes, 1 when it does not."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", required=True, type=Path)
    parser.add_argument("--trusted-key", action="append", required=True, dest="keys")
    parser.add_argument("--out", type=Path, help="A file instead of the storage root")
    parser.add_argument("--storage", help="Storage root URL (default: the local store)")
    parser.add_argument("--texts", type=Path, help="JSON Lines of strings to replay")
    args = parser.parse_args(argv)
    texts = None
    if args.texts:
        texts = [json.loads(line) for line in args.texts.read_text().splitlines() if line.strip()]
    result = run_e2e(args.bundle, args.keys, out=args.out, storage=args.storage, texts=texts)
    print(json.dumps({k: result[k] for k in ("bundle", "passed", "written_to")}, indent=2))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
