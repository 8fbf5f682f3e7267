"""The image model's INT8 against its FP32 graph: throughput and accuracy, side by side.

The ViT counterpart of ``bench_inference.py``'s MiniLM comparison. It reads the FP32 and INT8
graphs a pipeline run stored (the image default: ``vit-shapes``, INT8 preset ``auto`` =
static QDQ for ViT) and the run's held-out split::

    .venv/bin/python benchmarks/bench_vit_int8.py     # runs the image pipeline first (~10 min)
    ORDINAL_HOME=.ordinal .venv/bin/python benchmarks/bench_vit_int8.py --run .ordinal/runs/X

In one process it then

1. **accuracy**: MAE, QWK and accuracy of both graphs on every held-out image (validation +
   test), with the INT8 gate's paired interval of the MAE difference (``mae_gate``);
2. **speed**, interleaved: each round times both graphs, in an order that alternates per
   round, at batch 32 (throughput) and batch 1 (latency); a throughput ratio is the median over
   rounds of the per-round ratio of median call times.

Writes ``benchmarks/results/vit_int8.json``; ``docs/demo-data.md`` has the table. The
machine is shared and noisy: read the ratios.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ordinal import metrics  # noqa: E402
from ordinal.artifacts import open_storage  # noqa: E402
from ordinal.data import load_split  # noqa: E402
from ordinal.export.parity import run_onnx  # noqa: E402
from ordinal.export.quantize import QuantizeSpec, mae_gate  # noqa: E402
from ordinal.presets import resolve_model  # noqa: E402


def _session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _median_ms(session: ort.InferenceSession, feed: dict[str, np.ndarray], reps: int) -> float:
    session.run(None, feed)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _run_pipeline() -> Path:
    """``ordinal run --source demo-shapes-large`` in the benchmark's own state folder."""
    import subprocess

    home = REPO / "benchmarks" / ".work" / "vit"
    os.environ["ORDINAL_HOME"] = str(home)
    run = home / "runs" / "bench-vit"
    if not (run / "quantize" / "outputs.json").is_file():
        print("running the image pipeline (ordinal run --source demo-shapes-large) ...", flush=True)
        subprocess.run(
            [str(Path(sys.executable).with_name("ordinal")), "run", "--source",
             "demo-shapes-large", "--run-id", "bench-vit"],
            check=True, env={**os.environ, "PREFECT_HOME": str(home / "prefect")},
        )  # fmt: skip
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--run", type=Path, help="a completed image run folder (default: run the pipeline)"
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--reps", type=int, default=10, help="calls per variant per round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/vit_int8.json")
    args = parser.parse_args()
    if args.run is None:
        args.run = _run_pipeline()

    outputs = {
        step: json.loads((args.run / step / "outputs.json").read_text())
        for step in ("train", "export", "quantize")
    }
    dataset, version = outputs["train"]["dataset"], outputs["train"]["version"]
    paths = {
        "fp32": Path(outputs["export"]["onnx_path"]),
        "int8": Path(outputs["quantize"]["int8_path"]),
    }
    store = open_storage(None)
    records = load_split(dataset, version, "validation", storage=store)
    records += load_split(dataset, version, "test", storage=store)
    processor = resolve_model(outputs["train"]["model_dir"]).processor
    pixels = np.asarray(
        processor(images=[r["image"].convert("RGB") for r in records], return_tensors="np")[
            "pixel_values"
        ],
        np.float32,
    )
    labels = np.asarray([int(r["label"]) for r in records])
    sessions = {k: _session(p, args.threads) for k, p in paths.items()}

    accuracy = {}
    predicted = {}
    for name, session in sessions.items():
        out = run_onnx(session, {"pixel_values": pixels}, 64)
        predicted[name] = out["label"]
        k = out["probs"].shape[1]
        accuracy[name] = {
            "mae": metrics.mae(labels, out["label"]),
            "qwk": metrics.qwk(labels, out["label"], num_classes=k),
            "accuracy": metrics.accuracy(labels, out["label"]),
        }
    delta, margin, verdict = mae_gate(labels, predicted["fp32"], predicted["int8"], QuantizeSpec())

    batch32 = {"pixel_values": pixels[:32]}
    batch1 = {"pixel_values": pixels[:1]}
    rounds = []
    for i in range(args.rounds):
        order = ["fp32", "int8"] if i % 2 == 0 else ["int8", "fp32"]
        row = {}
        for name in order:
            row[name] = {
                "batch32_ms": _median_ms(sessions[name], batch32, args.reps),
                "batch1_ms": _median_ms(sessions[name], batch1, args.reps),
            }
        row["throughput_ratio"] = row["fp32"]["batch32_ms"] / row["int8"]["batch32_ms"]
        row["latency_ratio"] = row["fp32"]["batch1_ms"] / row["int8"]["batch1_ms"]
        rounds.append(row)
        print(
            f"round {i + 1}: INT8 throughput {row['throughput_ratio']:.2f}x, "
            f"latency {row['latency_ratio']:.2f}x",
            flush=True,
        )

    result = {
        "benchmark": "vit_int8",
        "run": str(args.run),
        "dataset": f"{dataset}/{version}",
        "held_out": len(records),
        "threads": args.threads,
        "accuracy": accuracy,
        "mae_delta": delta.to_dict(),
        "mae_margin": margin,
        "verdict": verdict,
        "throughput_ratio_int8_over_fp32": statistics.median(r["throughput_ratio"] for r in rounds),
        "latency_ratio_fp32_over_int8": statistics.median(r["latency_ratio"] for r in rounds),
        "batch32_images_per_second": {
            n: 32_000 / statistics.median(r[n]["batch32_ms"] for r in rounds)
            for n in ("fp32", "int8")
        },
        "size_bytes": {n: p.stat().st_size for n, p in paths.items()},
        "rounds": rounds,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rounds"}, indent=2))


if __name__ == "__main__":
    main()
