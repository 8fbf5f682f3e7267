"""Inference speed and INT8 accuracy of the fine-tuned MiniLM: PyTorch eager vs ONNX Runtime.

The questions (from the project's issue): is ONNX Runtime FP32 at least 1.3x the throughput of
PyTorch eager, and is static INT8 at least 1.8x the throughput of ONNX Runtime FP32 while the
MAE rises by less than 1%?

One run does everything (``docs/benchmarks-inference.md`` has the method and results):

1. **Model**: the real MiniLM with the cumulative-link head, fine-tuned for one epoch on
   1500 demo reviews (seed 0), then exported to FP32 ONNX with :func:`ordinal.export.export_onnx`
   and quantised with :func:`ordinal.export.quantize.quantize_onnx`: static INT8 calibrated on
   200 training reviews (:class:`CalibrationSet`), with the preset under test and with today's
   default, plus dynamic INT8 as the reference; the FP32 graph after onnxruntime's transformer
   fusion is timed too, for information. The trained model (and its export) is reused when
   the work folder already holds it; quantisation always runs again.
2. **Accuracy**: MAE, QWK and accuracy of every variant on 500 held-out reviews; deltas against
   ONNX Runtime FP32; Pearson correlation of each variant's latent score with FP32's.
3. **Speed**, interleaved: each round runs every variant, in an order rotated per round, for
   ``latency_reps`` calls at batch 1 x seq 64 (latency) and ``throughput_reps`` calls at batch
   32 x seq 128 (throughput). Inputs are real held-out reviews padded to the nominal length.
   Latency p50/p95 pool all calls; a throughput ratio is the median over rounds of the per-round
   ratio of median call times (drift slower than a round cancels), with a bootstrap 95% interval.
4. **Size** of each model on disk.

Run ``.venv/bin/python benchmarks/bench_inference.py`` (``--quick`` for a smoke run with fewer
rounds). Results go to ``benchmarks/results/inference.json``; the exit status is 0 when every
target passes and 1 when one fails. ``--sweep`` instead runs the static INT8 configuration
sweep (:data:`SWEEP`: accuracy and interleaved throughput of each ``QuantizeSpec``) and stores
it under ``int8_sweep`` in the same file.
"""

from __future__ import annotations

import os

# Set before transformers/onnxruntime are imported (ruff allows os.environ writes above
# imports): nothing may be fetched from a hub, the tokenizer's thread pool would compete with
# the measured threads, and onnxruntime would otherwise write a device id under ~/.cache.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["ORT_DISABLE_TELEMETRY"] = "1"
# The benchmark's own git-ignored state folder: the store, the training run, the INT8 models.
os.environ["ORDINAL_HOME"] = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), ".work", "inference"
)

import argparse
import json
import platform
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
import transformers
from transformers import AutoTokenizer
from transformers.utils import logging as hf_logging

from ordinal import TrainSpec, metrics, train_ordinal_model
from ordinal.artifacts import open_storage
from ordinal.data.demo_text import make_review_records
from ordinal.export import export_onnx
from ordinal.export.parity import run_onnx
from ordinal.export.quantize import CalibrationSet, QuantizeSpec, quantize_onnx
from ordinal.models import load_ordinal_model, ordinal_forward

WORK_DIR = Path(os.environ["ORDINAL_HOME"])
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "inference.json"
EXPERIMENT = "bench-inference"
NUM_CLASSES = 5
#: Variant names. ``int8_static`` uses the preset under test (``--static-preset``).
TORCH, FP32, FP32_FUSED = "pytorch_eager", "ort_fp32", "ort_fp32_fused"
STATIC, STATIC_DEFAULT, DYNAMIC = "ort_int8_static", "ort_int8_static_default", "ort_int8_dynamic"
INT8_SPECS: dict[str, Callable[[str], QuantizeSpec]] = {
    STATIC: lambda preset: getattr(QuantizeSpec, preset)(),
    STATIC_DEFAULT: lambda preset: QuantizeSpec.avx512_vnni(),
    DYNAMIC: lambda preset: QuantizeSpec.dynamic(),
}


@dataclass(frozen=True)
class Targets:
    """The issue's targets: data, not literals in the code."""

    ort_fp32_vs_torch_throughput: float = 1.3
    static_int8_vs_fp32_throughput: float = 1.8
    static_int8_max_mae_increase: float = 0.01  # relative to ORT FP32


@dataclass(frozen=True)
class BenchSpec:
    """Everything that defines a run; stored in the JSON next to the results."""

    train_reviews: int = 1500
    calibration_reviews: int = 200
    eval_reviews: int = 500
    epochs: float = 1.0
    train_max_length: int = 64
    seed: int = 0
    static_preset: str = "fused_vnni"
    threads: int = 2
    latency_batch: int = 1
    latency_seq: int = 64
    latency_reps: int = 20
    throughput_batch: int = 32
    throughput_seq: int = 128
    throughput_reps: int = 2
    rounds: int = 10
    warmup: int = 2
    eval_max_length: int = 128
    bootstrap: int = 2000

    def __post_init__(self) -> None:
        for name in ("train_reviews", "calibration_reviews", "eval_reviews", "rounds", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.calibration_reviews > self.train_reviews:
            raise ValueError("calibration reviews are drawn from the training reviews")
        if not callable(getattr(QuantizeSpec, self.static_preset, None)):
            raise ValueError(f"QuantizeSpec has no preset {self.static_preset!r}")

    @classmethod
    def quick(cls, **overrides: Any) -> BenchSpec:
        """A smoke run: same model and data, fewer timing rounds."""
        return cls(**{"rounds": 3, "latency_reps": 5, "throughput_reps": 1, **overrides})


# --------------------------------------------------------------------------- model


def train_model(spec: BenchSpec, records: list[dict[str, Any]], log: Callable[[str], None]):
    """The fine-tuned model directory, trained now or reused from the work folder."""
    run_dir = WORK_DIR / "train"
    model_dir = run_dir / "model"
    stamp = run_dir / "bench-spec.json"
    wanted = {k: getattr(spec, k) for k in ("train_reviews", "epochs", "train_max_length", "seed")}
    reusable = (model_dir / "config.json").is_file() and stamp.is_file()
    if reusable and json.loads(stamp.read_text()) == wanted:
        log(f"reusing the fine-tuned model in {model_dir}")
        return model_dir, None
    shutil.rmtree(run_dir, ignore_errors=True)
    log(f"fine-tuning MiniLM on {spec.train_reviews} reviews, {spec.epochs:g} epoch(s)")
    train_spec = TrainSpec(
        model="minilm",
        head="cumulative_link",
        num_classes=NUM_CLASSES,
        epochs=spec.epochs,
        max_length=spec.train_max_length,
        seed=spec.seed,
        report_to=[],
        checkpoint_interval_seconds=None,
        save_steps=100_000,
        eval_each_epoch=False,
        output_dir=run_dir,
        resume=False,
    )
    result = train_ordinal_model(train_spec, records)
    stamp.write_text(json.dumps(wanted))
    return result.model_dir, result.train_seconds


def export_model(model_dir: Path, fresh: bool, log: Callable[[str], None]) -> Path:
    """The FP32 ONNX model of ``model_dir`` (reused when it is newer than the weights)."""
    storage = open_storage()
    onnx_path = storage.local_path(f"models/onnx/{EXPERIMENT}/fp32/model.onnx")
    weights = model_dir / "model.safetensors"
    if (
        not fresh
        and onnx_path is not None
        and onnx_path.is_file()
        and onnx_path.stat().st_mtime > weights.stat().st_mtime
    ):
        log(f"reusing the FP32 export {onnx_path}")
        return onnx_path
    log("exporting FP32 ONNX")
    return export_onnx(model_dir, EXPERIMENT, dataset="demo-reviews", progress=log).onnx_path


def quantize_variants(
    fp32_path: Path, calibration: CalibrationSet, spec: BenchSpec, log: Callable[[str], None]
) -> tuple[dict[str, Path], dict[str, QuantizeSpec], dict[str, float]]:
    """Quantise the FP32 model once per INT8 variant; paths, specs and wall seconds."""
    paths, specs, seconds = {}, {}, {}
    for name, make in INT8_SPECS.items():
        qspec = make(spec.static_preset)
        if name == STATIC_DEFAULT and qspec == INT8_SPECS[STATIC](spec.static_preset):
            continue  # the preset under test is the default: nothing to compare
        log(f"quantising {name}")
        started = time.perf_counter()
        path, _ = quantize_onnx(fp32_path.parent, calibration, f"{EXPERIMENT}-{name}", spec=qspec)
        seconds[name] = time.perf_counter() - started
        paths[name], specs[name] = path, qspec
    return paths, specs, seconds


def fuse_fp32(fp32_path: Path, out: Path) -> Path:
    """The FP32 graph after onnxruntime's transformer fusion (for information: the export
    itself stays unfused)."""
    import logging

    from onnxruntime.transformers.optimizer import optimize_model

    # It warns that the producer is "ordinal", not "pytorch": expected for the merged graph.
    logging.getLogger("onnxruntime.transformers.optimizer").setLevel(logging.ERROR)
    config = json.loads((fp32_path.parent / "config.json").read_text())
    out.parent.mkdir(parents=True, exist_ok=True)
    optimize_model(
        str(fp32_path),
        model_type="bert",
        num_heads=config["num_attention_heads"],
        hidden_size=config["hidden_size"],
    ).save_model_to_file(str(out))
    return out


# --------------------------------------------------------------------------- runners


def ort_session(
    path: Path, threads: int, level: ort.GraphOptimizationLevel | None = None
) -> ort.InferenceSession:
    """A CPU session with ``threads`` intra-op threads (default: all graph optimisations)."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if level is not None:
        options.graph_optimization_level = level
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class TorchRunner:
    """PyTorch eager: the saved model plus the decoder, as :func:`ordinal_forward` runs it."""

    def __init__(self, model_dir: Path) -> None:
        self.model = load_ordinal_model(model_dir).eval()

    def __call__(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            out = ordinal_forward(self.model, **{k: torch.from_numpy(v) for k, v in feed.items()})
        return {"latent": out.latent.numpy(), "label": out.label.numpy()}


class OrtRunner:
    """An onnxruntime session called with the graph's declared inputs."""

    def __init__(
        self, path: Path, threads: int, level: ort.GraphOptimizationLevel | None = None
    ) -> None:
        self.path = path
        self.session = ort_session(path, threads, level)
        self.inputs = [i.name for i in self.session.get_inputs()]

    def __call__(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        latent, label = self.session.run(["latent", "label"], {n: feed[n] for n in self.inputs})
        return {"latent": latent, "label": label}


def encode(tokenizer: Any, records: list[dict[str, Any]], **kwargs: Any) -> dict[str, np.ndarray]:
    """Token ids, mask and type ids as int64 arrays, shape=(len(records), seq)."""
    encoded = tokenizer(
        [str(r["text"]) for r in records], truncation=True, return_tensors="np", **kwargs
    )
    return {k: np.asarray(v, np.int64) for k, v in encoded.items()}


# --------------------------------------------------------------------------- measurements


def accuracy(
    runners: dict[str, Any], inputs: dict[str, np.ndarray], labels: np.ndarray, batch: int
) -> dict[str, dict[str, float]]:
    """MAE/QWK/accuracy per variant, deltas against ORT FP32, Pearson of the latent score."""
    outputs = {}
    for name, runner in runners.items():
        if isinstance(runner, OrtRunner):
            outputs[name] = run_onnx(runner.session, inputs, batch)
        else:
            total = len(labels)
            parts = [
                runner({k: v[i : i + batch] for k, v in inputs.items()})
                for i in range(0, total, batch)
            ]
            outputs[name] = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    base = outputs[FP32]
    base_mae = metrics.mae(labels, base["label"])
    base_qwk = metrics.qwk(labels, base["label"], num_classes=NUM_CLASSES)
    scores = {}
    for name, out in outputs.items():
        mae = metrics.mae(labels, out["label"])
        qwk = metrics.qwk(labels, out["label"], num_classes=NUM_CLASSES)
        latent = out["latent"].ravel().astype(np.float64)
        reference = base["latent"].ravel().astype(np.float64)
        scores[name] = {
            "mae": mae,
            "qwk": qwk,
            "accuracy": metrics.accuracy(labels, out["label"]),
            "mae_increase_vs_fp32": (mae - base_mae) / base_mae,
            "qwk_delta_vs_fp32": qwk - base_qwk,
            "pearson_latent_vs_fp32": float(np.corrcoef(latent, reference)[0, 1]),
            "max_abs_latent_delta_vs_fp32": float(np.abs(latent - reference).max()),
            "label_agreement_vs_fp32": float((out["label"] == base["label"]).mean()),
        }
    return scores


def measure_speed(
    runners: dict[str, Any],
    latency_feeds: list[dict[str, np.ndarray]],
    throughput_feed: dict[str, np.ndarray],
    spec: BenchSpec,
    log: Callable[[str], None],
) -> tuple[dict[str, list[list[float]]], dict[str, list[list[float]]]]:
    """Call times (s) per variant per round: latency calls and throughput calls."""
    names = list(runners)
    for name in names:
        for _ in range(spec.warmup):
            runners[name](latency_feeds[0])
            runners[name](throughput_feed)
    latency: dict[str, list[list[float]]] = {n: [] for n in names}
    throughput: dict[str, list[list[float]]] = {n: [] for n in names}
    for r in range(spec.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            run = runners[name]
            times = []
            for i in range(spec.latency_reps):
                feed = latency_feeds[(r * spec.latency_reps + i) % len(latency_feeds)]
                start = time.perf_counter()
                run(feed)
                times.append(time.perf_counter() - start)
            latency[name].append(times)
            times = []
            for _ in range(spec.throughput_reps):
                start = time.perf_counter()
                run(throughput_feed)
                times.append(time.perf_counter() - start)
            throughput[name].append(times)
        log(f"round {r + 1}/{spec.rounds} done")
    return latency, throughput


def bootstrap_ci(values: np.ndarray, spec: BenchSpec) -> list[float]:
    """95% bootstrap interval of the median of ``values``."""
    rng = np.random.default_rng(spec.seed)
    picks = rng.integers(0, len(values), size=(spec.bootstrap, len(values)))
    medians = np.median(values[picks], axis=1)
    return [float(np.percentile(medians, 2.5)), float(np.percentile(medians, 97.5))]


def speed_stats(
    latency: dict[str, list[list[float]]],
    throughput: dict[str, list[list[float]]],
    spec: BenchSpec,
) -> dict[str, dict[str, float]]:
    """p50/p95 latency (ms) and throughput (samples/s) per variant."""
    stats = {}
    for name in latency:
        calls = np.concatenate([np.asarray(r) for r in latency[name]]) * 1000
        per_round = np.asarray([np.median(r) for r in throughput[name]])
        stats[name] = {
            "latency_p50_ms": float(np.percentile(calls, 50)),
            "latency_p95_ms": float(np.percentile(calls, 95)),
            "latency_mean_ms": float(calls.mean()),
            "throughput_samples_per_s": float(spec.throughput_batch / np.median(per_round)),
            "throughput_best_round_samples_per_s": float(spec.throughput_batch / per_round.min()),
        }
    return stats


def ratio(
    times: dict[str, list[list[float]]], faster: str, slower: str, spec: BenchSpec
) -> dict[str, Any]:
    """Speed of ``faster`` over ``slower``: per-round ratio of median call times."""
    per_round = np.asarray(
        [np.median(s) / np.median(f) for f, s in zip(times[faster], times[slower], strict=True)]
    )
    return {
        "variant": faster,
        "baseline": slower,
        "per_round_median": float(np.median(per_round)),
        "per_round_ci95": bootstrap_ci(per_round, spec),
        "per_round": [float(v) for v in per_round],
    }


def file_size(path: Path) -> int:
    """Bytes on disk of a model file or, for a directory, of its weights."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.glob("*.safetensors"))
    return path.stat().st_size


# --------------------------------------------------------------------------- reporting


def machine_info(spec: BenchSpec) -> dict[str, Any]:
    """What the numbers were measured on."""
    flags = ""
    if Path("/proc/cpuinfo").is_file():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                flags = line.split(":", 1)[1].strip()
                break
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    return {
        "platform": platform.platform(),
        "cpu_model": flags or platform.processor() or platform.machine(),
        "cpu_flags": [f for f in ("avx512_vnni", "avx_vnni", "amx_int8") if f in cpuinfo],
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "threads": spec.threads,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
    }


def verdicts(
    ratios: dict[str, dict[str, Any]], scores: dict[str, dict[str, float]], targets: Targets
) -> dict[str, Any]:
    """Pass/fail per target on the median ratio; says whether the interval clears it too."""

    def speed(entry: dict[str, Any], target: float) -> dict[str, Any]:
        low, high = entry["per_round_ci95"]
        return {
            "target": target,
            "measured": entry["per_round_median"],
            "ci95": entry["per_round_ci95"],
            "result": "pass" if entry["per_round_median"] >= target else "fail",
            "interval_clears_target": bool(low >= target or high < target),
        }

    mae = scores[STATIC]["mae_increase_vs_fp32"]
    out = {
        "ort_fp32_vs_torch_throughput": speed(
            ratios["throughput"]["ort_fp32_vs_torch"], targets.ort_fp32_vs_torch_throughput
        ),
        "static_int8_vs_fp32_throughput": speed(
            ratios["throughput"]["static_int8_vs_fp32"], targets.static_int8_vs_fp32_throughput
        ),
        "static_int8_mae_increase": {
            "target": f"< {targets.static_int8_max_mae_increase}",
            "measured": mae,
            "result": "pass" if mae < targets.static_int8_max_mae_increase else "fail",
        },
    }
    out["overall"] = "fail" if any(v["result"] == "fail" for v in out.values()) else "pass"
    return out


def print_table(report: dict[str, Any]) -> None:
    """A Markdown table of the run (the same one the docs show)."""
    p = report["parameters"]
    print(
        f"\n| variant | p50 ms (b{p['latency_batch']}xs{p['latency_seq']}) | p95 ms | "
        f"samples/s (b{p['throughput_batch']}xs{p['throughput_seq']}) | vs ORT FP32 | "
        "size MB | MAE | QWK | MAE vs FP32 | QWK delta | Pearson latent |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, s in report["variants"].items():
        vs = report["ratios"]["throughput"].get(f"{name}_vs_fp32", {}).get("per_round_median")
        print(
            f"| {name} | {s['latency_p50_ms']:.1f} | {s['latency_p95_ms']:.1f} | "
            f"{s['throughput_samples_per_s']:.1f} | {'1.00' if name == FP32 else f'{vs:.2f}'} | "
            f"{s['size_bytes'] / 1e6:.1f} | {s['mae']:.4f} | {s['qwk']:.4f} | "
            f"{s['mae_increase_vs_fp32']:+.2%} | {s['qwk_delta_vs_fp32']:+.4f} | "
            f"{s['pearson_latent_vs_fp32']:.4f} |"
        )
    for name, v in report["verdict"].items():
        if name != "overall":
            print(f"{name}: {v['measured']:.4g} (target {v['target']}) -> {v['result']}")
    print(f"overall: {report['verdict']['overall']}; run {report['run_seconds']:.0f} s")


def run(spec: BenchSpec, out: Path, targets: Targets, fresh: bool) -> dict[str, Any]:
    """The whole benchmark: model, quantisation, accuracy, interleaved speed, JSON."""
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {message}", flush=True)

    load_before = os.getloadavg()
    if fresh:
        shutil.rmtree(WORK_DIR, ignore_errors=True)
    total = spec.train_reviews + spec.eval_reviews
    records = make_review_records(total, seed=spec.seed)
    train, held_out = records[: spec.train_reviews], records[spec.train_reviews :]
    model_dir, train_seconds = train_model(spec, train, log)
    phase = {"train_s": train_seconds, "reused_model": train_seconds is None}
    t = time.perf_counter()
    fp32_path = export_model(model_dir, fresh=train_seconds is not None or fresh, log=log)
    phase["export_s"] = time.perf_counter() - t
    calibration = CalibrationSet(train[: spec.calibration_reviews], "demo-reviews-train")
    int8_paths, int8_specs, quantize_seconds = quantize_variants(fp32_path, calibration, spec, log)
    phase["quantize_s"] = quantize_seconds
    fused_path = fuse_fp32(fp32_path, WORK_DIR / "fp32-fused.onnx")

    torch.set_num_threads(spec.threads)
    runners: dict[str, Any] = {
        TORCH: TorchRunner(model_dir),
        FP32: OrtRunner(fp32_path, spec.threads),
        FP32_FUSED: OrtRunner(fused_path, spec.threads),
    }
    runners.update({name: OrtRunner(path, spec.threads) for name, path in int8_paths.items()})
    sizes = {TORCH: file_size(model_dir), FP32: file_size(fp32_path)}
    sizes[FP32_FUSED] = file_size(fused_path)
    sizes.update({name: file_size(path) for name, path in int8_paths.items()})

    tokenizer = AutoTokenizer.from_pretrained(fp32_path.parent)
    log(f"accuracy on {len(held_out)} held-out reviews")
    t = time.perf_counter()
    eval_inputs = encode(tokenizer, held_out, padding="longest", max_length=spec.eval_max_length)
    labels = np.asarray([int(r["label"]) for r in held_out])
    scores = accuracy(runners, eval_inputs, labels, 64)
    phase["accuracy_s"] = time.perf_counter() - t

    single = encode(tokenizer, held_out[:64], padding="max_length", max_length=spec.latency_seq)
    latency_feeds = [
        {k: v[i : i + spec.latency_batch] for k, v in single.items()}
        for i in range(0, 64 - spec.latency_batch + 1, spec.latency_batch)
    ]
    throughput_feed = encode(
        tokenizer,
        held_out[: spec.throughput_batch],
        padding="max_length",
        max_length=spec.throughput_seq,
    )
    log(f"speed: {spec.rounds} interleaved rounds over {len(runners)} variants")
    t = time.perf_counter()
    latency, throughput = measure_speed(runners, latency_feeds, throughput_feed, spec, log)
    phase["speed_s"] = time.perf_counter() - t
    load_after = os.getloadavg()

    stats = speed_stats(latency, throughput, spec)
    variants = {
        name: {**stats[name], **scores[name], "size_bytes": sizes[name]} for name in runners
    }
    ratios: dict[str, dict[str, Any]] = {"throughput": {}, "latency": {}}
    for kind, times in (("throughput", throughput), ("latency", latency)):
        ratios[kind]["ort_fp32_vs_torch"] = ratio(times, FP32, TORCH, spec)
        ratios[kind]["ort_fp32_fused_vs_torch"] = ratio(times, FP32_FUSED, TORCH, spec)
        for name in runners:
            if name != FP32:
                ratios[kind][f"{name}_vs_fp32"] = ratio(times, name, FP32, spec)
        ratios[kind]["static_int8_vs_fp32"] = ratios[kind][f"{STATIC}_vs_fp32"]
    report = {
        "benchmark": "inference",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            **machine_info(spec),
            "load_average_1_5_15_start": [round(v, 2) for v in load_before],
            "load_average_1_5_15_end": [round(v, 2) for v in load_after],
        },
        "parameters": {
            **asdict(spec),
            "model": "minilm (all-MiniLM-L6-v2) + cumulative_link head (logit)",
            "data": "make_review_records(seed) [:train_reviews] train, rest held out",
            "quantize_specs": {n: s.model_dump(mode="json") for n, s in int8_specs.items()},
        },
        "targets": asdict(targets),
        "variants": variants,
        "ratios": ratios,
        "verdict": verdicts(ratios, scores, targets),
        "phases_s": phase,
        "run_seconds": time.perf_counter() - started,
        "raw_times_s": {"latency": latency, "throughput": throughput},
    }
    if out.is_file():  # keep the last --sweep (it carries its own timestamp)
        previous = json.loads(out.read_text())
        if "int8_sweep" in previous:
            report["int8_sweep"] = previous["int8_sweep"]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print_table(report)
    print(f"wrote {out}")
    return report


# --------------------------------------------------------------------------- INT8 sweep

#: The static INT8 configurations the issue asked to try, plus dynamic INT8 for reference.
#: Every one is a plain :class:`QuantizeSpec`; ``@level`` runs a model under another
#: onnxruntime graph optimisation level.
SWEEP: dict[str, QuantizeSpec] = {
    "static default (QDQ, MatMul, float MatMul outputs)": QuantizeSpec.avx512_vnni(),
    "static QOperator (QLinearMatMul)": QuantizeSpec(quant_format="QOperator"),
    "static, weight MatMuls only (attention products float)": QuantizeSpec(
        nodes_to_exclude=("*/attention/self/MatMul", "*/attention/self/MatMul_1")
    ),
    "fused, static MatMul (Attention float)": QuantizeSpec(fuse_graph=True),
    "fused_vnni (fused, static MatMul + QAttention)": QuantizeSpec.fused_vnni(),
    "fused_vnni, layer.0 FFN output float": QuantizeSpec(
        fuse_graph=True, attention="dynamic", nodes_to_exclude=("*/layer.0/output/dense/*",)
    ),
    "fused_vnni, reduce_range": QuantizeSpec(
        fuse_graph=True, attention="dynamic", reduce_range=True
    ),
    "dynamic (reference)": QuantizeSpec.dynamic(),
    "dynamic, fused (MatMul + Attention)": QuantizeSpec(
        mode="dynamic", fuse_graph=True, op_types=("MatMul", "Attention")
    ),
}
#: Extra sessions: (label, sweep entry, onnxruntime graph optimisation level).
SWEEP_LEVELS = (
    ("fused_vnni @ ORT_ENABLE_BASIC", "fused_vnni (fused, static MatMul + QAttention)", "basic"),
    ("fused_vnni @ ORT_ENABLE_EXTENDED", "fused_vnni (fused, static MatMul + QAttention)", "ext"),
)
LEVELS = {
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "ext": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
}


def run_sweep(spec: BenchSpec, out: Path, rounds: int) -> dict[str, Any]:
    """Each :data:`SWEEP` configuration: accuracy on the held-out reviews and throughput at
    batch 32 x seq 128 against ORT FP32 (and the fused FP32 graph), interleaved over
    ``rounds``. Stored under ``int8_sweep`` of the report at ``out``."""
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[sweep {time.perf_counter() - started:6.1f}s] {message}", flush=True)

    records = make_review_records(spec.train_reviews + spec.eval_reviews, seed=spec.seed)
    train, held_out = records[: spec.train_reviews], records[spec.train_reviews :]
    model_dir, _ = train_model(spec, train, log)
    fp32_path = export_model(model_dir, fresh=False, log=log)
    calibration = CalibrationSet(train[: spec.calibration_reviews], "demo-reviews-train")
    paths: dict[str, Path] = {FP32: fp32_path}
    paths[FP32_FUSED] = fuse_fp32(fp32_path, WORK_DIR / "fp32-fused.onnx")
    quantize_seconds = {}
    for i, (name, qspec) in enumerate(SWEEP.items()):
        log(f"quantising {name}")
        t = time.perf_counter()
        paths[name], _ = quantize_onnx(
            fp32_path.parent, calibration, f"{EXPERIMENT}-sweep-{i}", spec=qspec
        )
        quantize_seconds[name] = time.perf_counter() - t
    runners: dict[str, Any] = {n: OrtRunner(p, spec.threads) for n, p in paths.items()}
    for label, source, level in SWEEP_LEVELS:
        runners[label] = OrtRunner(paths[source], spec.threads, LEVELS[level])
    tokenizer = AutoTokenizer.from_pretrained(fp32_path.parent)
    log(f"accuracy of {len(runners)} sessions on {len(held_out)} held-out reviews")
    eval_inputs = encode(tokenizer, held_out, padding="longest", max_length=spec.eval_max_length)
    labels = np.asarray([int(r["label"]) for r in held_out])
    scores = accuracy(runners, eval_inputs, labels, 64)
    feed = encode(
        tokenizer,
        held_out[: spec.throughput_batch],
        padding="max_length",
        max_length=spec.throughput_seq,
    )
    names = list(runners)
    for name in names:
        runners[name](feed)
    times: dict[str, list[list[float]]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t = time.perf_counter()
            runners[name](feed)
            times[name].append([time.perf_counter() - t])
        log(f"round {r + 1}/{rounds} done")
    rows = {}
    for name in names:
        per_round = np.asarray([v[0] for v in times[name]])
        rows[name] = {
            "throughput_samples_per_s": float(spec.throughput_batch / np.median(per_round)),
            "throughput_vs_fp32": ratio(times, name, FP32, spec),
            "size_bytes": file_size(runners[name].path),
            **{k: scores[name][k] for k in ("mae", "qwk", "mae_increase_vs_fp32")},
            "pearson_latent_vs_fp32": scores[name]["pearson_latent_vs_fp32"],
            "label_agreement_vs_fp32": scores[name]["label_agreement_vs_fp32"],
            "quantize_s": quantize_seconds.get(name),
            "spec": SWEEP[name].model_dump(mode="json") if name in SWEEP else None,
        }
    sweep = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "rounds": rounds,
        "batch": spec.throughput_batch,
        "seq": spec.throughput_seq,
        "load_average_1_5_15_end": [round(v, 2) for v in os.getloadavg()],
        "configurations": rows,
        "run_seconds": time.perf_counter() - started,
    }
    report = json.loads(out.read_text()) if out.is_file() else {"benchmark": "inference"}
    report["int8_sweep"] = sweep
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print("\n| configuration | samples/s | vs ORT FP32 | Pearson latent | MAE vs FP32 | QWK |")
    print("|---|---|---|---|---|---|")
    for name, row in rows.items():
        print(
            f"| {name} | {row['throughput_samples_per_s']:.1f} | "
            f"{row['throughput_vs_fp32']['per_round_median']:.2f} | "
            f"{row['pearson_latent_vs_fp32']:.4f} | {row['mae_increase_vs_fp32']:+.2%} | "
            f"{row['qwk']:.4f} |"
        )
    print(f"sweep: {sweep['run_seconds']:.0f} s; wrote {out}")
    return sweep


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = BenchSpec()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer timing rounds (smoke run)")
    parser.add_argument("--rounds", type=int, help=f"timing rounds (default {defaults.rounds})")
    parser.add_argument(
        "--static-preset",
        default=defaults.static_preset,
        help="QuantizeSpec preset of the static INT8 variant under test",
    )
    parser.add_argument("--threads", type=int, default=defaults.threads)
    parser.add_argument("--fresh", action="store_true", help="retrain and re-export from scratch")
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="instead of the main run, the INT8 configuration sweep (stored under int8_sweep)",
    )
    parser.add_argument("--sweep-rounds", type=int, default=8)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides: dict[str, Any] = {"static_preset": args.static_preset, "threads": args.threads}
    spec = BenchSpec.quick(**overrides) if args.quick else BenchSpec(**overrides)
    if args.rounds:
        spec = replace(spec, rounds=args.rounds)
    hf_logging.set_verbosity_error()  # "newly initialized classifier" is expected here
    if args.sweep:
        run_sweep(spec, args.out, args.sweep_rounds)
        return 0
    report = run(spec, args.out, Targets(), args.fresh)
    return 0 if report["verdict"]["overall"] == "pass" else 1


if __name__ == "__main__":
    sys.exit(main())
