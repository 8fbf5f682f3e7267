"""Hourly cost and cost per 1,000 training samples of each compute class.

The question (issue 11, "Cost"): what does an hour of each instance class cost, on demand
and on spot, and what does that make 1,000 training samples of the pipeline's model cost?
It is also the starting point of the rolling baseline that ``pipelines.provision.cost``
alerts against.

* **Prices** come from the committed price table (``deploy/prices.yaml``, with its date and
  source), for ``--region``.
* **Throughput** is MiniLM fine-tuning with the pipeline's default head (cumulative link,
  logit), batch 16, sequence 64, AdamW: forward, loss, backward, optimizer step.

  - ``c6i.xlarge`` (4 vCPU = 2 physical cores): **measured here**, per core (one torch
    thread, the process's CPU time, so that other agents' load on this shared machine does
    not count), in ``--rounds`` rounds of ``--steps`` steps after a warm-up; the median round
    counts, times the class's two physical cores (linear scaling assumed). This machine is
    not a c6i (see the JSON's CPU model): the figure stands in for one and says so.
  - ``g4dn.xlarge`` (T4) and ``g6.xlarge`` (L4): **not measured** (no GPU here). The figure
    is a stated assumption: the model's training FLOPs per sample (6 x non-embedding
    parameters x tokens, plus attention scores, counted from the real model's config)
    divided into the GPU's dense FP16 tensor peak from NVIDIA's datasheet times an assumed
    utilisation (``--gpu-utilisation``, default 10 %, low because a 22M-parameter model at
    1,024 tokens per step cannot fill a GPU). Replace it with a measurement on the class.
    For scale, the JSON also gives the GFLOP/s one CPU core achieves.

Cost per 1,000 samples = hourly price / (samples per second x 3600) x 1000.

Run ``.venv/bin/python benchmarks/bench_cost.py`` (about a minute). Results go to
``benchmarks/results/cost.json``; ``--markdown`` prints the table that ``docs/cost.md``
shows. Exit status 0.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import argparse
import json
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import transformers
from rich.console import Console
from rich.table import Table
from transformers import AutoConfig, AutoTokenizer

from ordinal import build_ordinal_model
from ordinal.data.demo_text import make_review_records
from ordinal.models import get_ordinal_decoder
from ordinal.presets import minilm_path
from pipelines.provision.prices import PRICES_FILE, load_prices

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "cost.json"
NUM_CLASSES = 5

#: Dense FP16 tensor-core peak (TFLOPS) of each GPU class's card, from NVIDIA's datasheets.
GPU_PEAK = {
    "g4dn.xlarge": {
        "gpu": "NVIDIA T4",
        "fp16_tensor_tflops": 65.0,
        "source": "NVIDIA T4 Tensor Core GPU datasheet: 65 TFLOPS mixed precision (FP16/FP32)",
    },
    "g6.xlarge": {
        "gpu": "NVIDIA L4",
        "fp16_tensor_tflops": 121.0,
        "source": "NVIDIA L4 Tensor Core GPU datasheet: 242 TFLOPS FP16 tensor with sparsity, "
        "121 dense",
    },
}
USES = {
    "g4dn.xlarge": "train",
    "g6.xlarge": "train",
    "c6i.xlarge": "export, parity, quantise",
}
CPU_CLASS = "c6i.xlarge"
#: Physical cores of a c6i.xlarge (4 vCPU, two threads per core).
C6I_CORES = 2


@dataclass(frozen=True)
class BenchSpec:
    """What defines a run (stored in the JSON)."""

    region: str = "us-east-1"
    batch_size: int = 16
    seq_len: int = 64
    rounds: int = 3
    steps: int = 8
    warmup: int = 2
    seed: int = 0
    learning_rate: float = 2e-5
    gpu_utilisation: float = 0.10

    def __post_init__(self) -> None:
        for name in ("batch_size", "seq_len", "rounds", "steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.gpu_utilisation <= 1:
            raise ValueError(f"gpu_utilisation must be in (0, 1], got {self.gpu_utilisation}")


def training_flops_per_sample(config: Any, seq_len: int) -> dict[str, float]:
    """Training FLOPs of one sample: 6 x non-embedding parameters x tokens + attention.

    The usual estimate (forward 2 FLOPs per parameter and token, backward twice that); the
    attention scores add 6 x layers x 2 x seq_len^2 x hidden per sample.
    """
    hidden, layers = config.hidden_size, config.num_hidden_layers
    inter = config.intermediate_size
    per_layer = 4 * hidden * hidden + 2 * hidden * inter  # Q, K, V, O and the two FFN matrices
    non_embedding = layers * per_layer
    dense = 6.0 * non_embedding * seq_len
    attention = 6.0 * layers * 2 * seq_len * seq_len * hidden
    return {
        "non_embedding_params": float(non_embedding),
        "flops_per_sample": dense + attention,
    }


def measure_cpu(spec: BenchSpec, log) -> dict[str, Any]:
    """Samples per second of MiniLM fine-tuning on one core of this machine.

    One torch thread, timed by wall clock and by the process's CPU time. On this shared
    machine other agents' processes take the cores away for seconds at a time, so the wall
    figure varies by a factor of several; CPU time counts only the time the step ran, and is
    the figure the table uses (per core; ``C6I_CORES`` cores for the class).
    """
    torch.set_num_threads(1)
    path = minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(spec.seed)
    model = build_ordinal_model(path, NUM_CLASSES, head="cumulative_link", link="logit").train()
    decoder = get_ordinal_decoder(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.learning_rate)
    records = make_review_records(n=spec.batch_size * 4, seed=spec.seed)
    encoded = tokenizer(
        [r["text"] for r in records],
        padding="max_length",
        truncation=True,
        max_length=spec.seq_len,
        return_tensors="pt",
    )
    labels = torch.tensor([int(r["label"]) for r in records], dtype=torch.long)
    batches = [
        (
            {k: v[i : i + spec.batch_size] for k, v in encoded.items()},
            labels[i : i + spec.batch_size],
        )
        for i in range(0, len(records), spec.batch_size)
    ]

    def step(i: int) -> None:
        features, y = batches[i % len(batches)]
        loss = decoder.loss(model(**features).logits, y)
        loss.backward()
        optimizer.step()
        model.zero_grad()

    for i in range(spec.warmup):
        step(i)
    wall, cpu = [], []
    for r in range(spec.rounds):
        started, cpu_started = time.perf_counter(), time.process_time()
        for i in range(spec.steps):
            step(i)
        samples = spec.batch_size * spec.steps
        wall.append(samples / (time.perf_counter() - started))
        cpu.append(samples / (time.process_time() - cpu_started))
        log(
            f"round {r + 1}/{spec.rounds}: {cpu[-1]:.1f} samples per CPU-second, "
            f"{wall[-1]:.1f} per wall second"
        )
    return {
        "samples_per_cpu_second_one_core": statistics.median(cpu),
        "samples_per_wall_second_one_core": statistics.median(wall),
        "rounds_cpu": cpu,
        "rounds_wall": wall,
        "torch_threads": 1,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def build_rows(spec: BenchSpec, cpu: dict[str, Any]) -> tuple[list[dict[str, Any]], dict]:
    """One row per class: prices, throughput with its provenance, cost per 1,000 samples."""
    prices = load_prices()
    config = AutoConfig.from_pretrained(minilm_path())
    flops = training_flops_per_sample(config, spec.seq_len)
    per_core = cpu["samples_per_cpu_second_one_core"]
    cpu_gflops = per_core * flops["flops_per_sample"] / 1e9
    rows = []
    for itype in ("g4dn.xlarge", "g6.xlarge", CPU_CLASS):
        on_demand = prices.hourly(spec.region, itype, "on-demand")
        spot = prices.hourly(spec.region, itype, "spot")
        if itype == CPU_CLASS:
            throughput = per_core * C6I_CORES
            provenance = {
                "measured": True,
                "how": f"measured per core on this machine ({_cpu_model()}, one torch thread, "
                f"CPU time) x {C6I_CORES} physical cores of a c6i.xlarge (assumes linear "
                "scaling over two cores; this CPU is not a c6i's Ice Lake)",
            }
        else:
            peak = GPU_PEAK[itype]
            throughput = (
                peak["fp16_tensor_tflops"] * 1e12 * spec.gpu_utilisation / flops["flops_per_sample"]
            )
            provenance = {
                "measured": False,
                "how": f"NOT MEASURED: assumption = {peak['gpu']} dense FP16 peak "
                f"{peak['fp16_tensor_tflops']:.0f} TFLOPS x {spec.gpu_utilisation:.0%} "
                f"utilisation / {flops['flops_per_sample'] / 1e9:.2f} GFLOP per sample",
                "source": peak["source"],
            }
        rows.append(
            {
                "instance_type": itype,
                "use": USES[itype],
                "on_demand_per_hour": on_demand,
                "spot_per_hour": spot,
                "samples_per_second": throughput,
                "per_1k_on_demand": on_demand / (throughput * 3.6),
                "per_1k_spot": spot / (throughput * 3.6),
                **provenance,
            }
        )
    model = {**flops, "cpu_achieved_gflops_one_core": cpu_gflops}
    return rows, model


def markdown(rows: list[dict[str, Any]], region: str) -> str:
    """The table of docs/cost.md."""
    lines = [
        f"| Class ({region}) | Use | On-demand $/h | Spot $/h | Samples/s (MiniLM fine-tuning) "
        "| $ / 1,000 samples on-demand | $ / 1,000 samples spot |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        source = "measured here (CPU stand-in)" if r["measured"] else "**assumed, not measured**"
        lines.append(
            f"| {r['instance_type']} | {r['use']} | {r['on_demand_per_hour']:.4f} "
            f"| {r['spot_per_hour']:.4f} | {r['samples_per_second']:.0f} ({source}) "
            f"| {r['per_1k_on_demand']:.5f} | {r['per_1k_spot']:.5f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--region", default=BenchSpec.region)
    parser.add_argument("--rounds", type=int, default=BenchSpec.rounds)
    parser.add_argument("--steps", type=int, default=BenchSpec.steps)
    parser.add_argument("--gpu-utilisation", type=float, default=BenchSpec.gpu_utilisation)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--markdown", action="store_true", help="Print the docs table too.")
    args = parser.parse_args(argv)
    spec = BenchSpec(
        region=args.region,
        rounds=args.rounds,
        steps=args.steps,
        gpu_utilisation=args.gpu_utilisation,
    )
    console = Console()
    started = time.monotonic()
    load_start = os.getloadavg()
    cpu = measure_cpu(spec, lambda m: console.print(m))
    rows, model = build_rows(spec, cpu)
    prices = load_prices()
    result = {
        "benchmark": "cost",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpu_model": _cpu_model(),
            "cpus_usable": len(os.sched_getaffinity(0)),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "load_average_1_5_15_start": list(load_start),
            "load_average_1_5_15_end": list(os.getloadavg()),
        },
        "parameters": asdict(spec),
        "prices": {"file": PRICES_FILE.name, "date": prices.date, "source": prices.source},
        "model": {
            **model,
            "note": "FLOPs per sample counted from the MiniLM config; GPU throughput = "
            "peak x utilisation / FLOPs per sample",
        },
        "cpu_measurement": cpu,
        "rows": rows,
        "run_seconds": round(time.monotonic() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    tmp.replace(args.out)

    table = Table(title=f"cost per class ({spec.region}, prices of {prices.date})")
    for column in (
        "class",
        "on-demand $/h",
        "spot $/h",
        "samples/s",
        "$/1k od",
        "$/1k spot",
        "source",
    ):
        table.add_column(column)
    for r in rows:
        table.add_row(
            r["instance_type"],
            f"{r['on_demand_per_hour']:.4f}",
            f"{r['spot_per_hour']:.4f}",
            f"{r['samples_per_second']:.0f}",
            f"{r['per_1k_on_demand']:.5f}",
            f"{r['per_1k_spot']:.5f}",
            "measured" if r["measured"] else "ASSUMED",
        )
    console.print(table)
    console.print(f"results: {args.out}")
    if args.markdown:
        print(markdown(rows, spec.region))
    return 0


if __name__ == "__main__":
    sys.exit(main())
