"""One call from records to a trained, evaluated and saved ordinal model."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import DataCollatorWithPadding, TrainerCallback, TrainingArguments, set_seed

from ordinal.config import TrainSpec
from ordinal.exceptions import CheckpointError
from ordinal.models import (
    backbone_family,
    build_ordinal_model,
    get_ordinal_decoder,
    save_ordinal_model,
)
from ordinal.presets import resolve_model
from ordinal.tracking import configure_mlflow
from ordinal.training._trainer import OrdinalRegressionTrainer
from ordinal.training.checkpoint_store import restore_from_env
from ordinal.training.checkpoints import latest_checkpoint
from ordinal.training.datasets import ImageOrdinalDataset, TextOrdinalDataset

__all__ = ["TrainResult", "planned_steps", "train_ordinal_model"]

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a training run produced.

    Attributes
    ----------
    metrics : dict
        Final evaluation metrics (``eval_mae``, ``eval_qwk``, ...).
    model_dir : Path
        The saved model (weights, config with its ``ordinal`` section, tokenizer/processor).
    checkpoint_dir : Path
        Where checkpoints were written (resume from here).
    resumed_from : Path or None
        The checkpoint this run resumed from.
    global_step : int
    train_seconds : float
    cutpoints : list of float or None
    mlflow_run_id : str or None
    log_history : list of dict
    """

    metrics: dict[str, float]
    model_dir: Path
    checkpoint_dir: Path
    resumed_from: Path | None
    global_step: int
    train_seconds: float
    cutpoints: list[float] | None
    mlflow_run_id: str | None = None
    log_history: list[dict[str, float]] = field(default_factory=list)


def _dataset(
    records: Sequence[dict[str, Any]],
    modality: str,
    processor: Any,
    spec: TrainSpec,
    augment: str = "none",
):
    labels = [r["label"] for r in records]
    if modality == "text":
        return TextOrdinalDataset([r["text"] for r in records], labels, processor, spec.max_length)
    return ImageOrdinalDataset([r["image"] for r in records], labels, processor, augment)


# What a resumed run may change: how long it runs, where it logs and how often it saves.
_RESUMABLE_CHANGES = {
    "epochs", "max_steps", "output_dir", "resume", "report_to", "run_name", "experiment",
    "checkpoint_interval_seconds", "logging_steps", "save_steps", "save_total_limit",
    "eval_each_epoch", "eval_batch_size", "progress_interval_seconds",
}  # fmt: skip
#: Written beside the checkpoints: the settings a resume must keep (``TRAIN_SPEC_FILE``).
SPEC_FILE = "train_spec.json"
TRAIN_SPEC_FILE = SPEC_FILE


def _spec_fingerprint(spec: TrainSpec) -> dict[str, Any]:
    return {k: v for k, v in spec.model_dump(mode="json").items() if k not in _RESUMABLE_CHANGES}


def _check_same_spec(checkpoint_dir: Path, spec: TrainSpec) -> None:
    """Refuse to resume checkpoints written with other hyperparameters (learning rate, ...)."""
    path = checkpoint_dir / SPEC_FILE
    if not path.is_file():
        return
    stored = json.loads(path.read_text(encoding="utf-8"))
    wanted = _spec_fingerprint(spec)
    changed = sorted(k for k in stored.keys() | wanted.keys() if stored.get(k) != wanted.get(k))
    if changed:
        details = ", ".join(f"{k}: {stored.get(k)!r} -> {wanted.get(k)!r}" for k in changed)
        raise CheckpointError(
            f"{checkpoint_dir} holds checkpoints of a run with other settings ({details}); "
            "train into a new output_dir, or set resume=False to start over"
        )


def _check_resumable(checkpoint: Path, section: dict[str, Any]) -> None:
    """Refuse a checkpoint of another head, link or class count: the weights would load."""
    saved = json.loads((checkpoint / "config.json").read_text(encoding="utf-8")).get("ordinal", {})
    for key in ("head", "num_classes", "link"):
        if saved.get(key) != section.get(key):
            raise CheckpointError(
                f"{checkpoint} was trained with {key}={saved.get(key)!r}, this run asks for "
                f"{section.get(key)!r}; use another output_dir or resume=False"
            )


def planned_steps(spec: TrainSpec, num_records: int) -> int:
    """Optimiser steps a run of ``spec`` on ``num_records`` takes (as the Trainer counts).

    >>> planned_steps(TrainSpec(epochs=2, batch_size=16), 100)
    14
    >>> planned_steps(TrainSpec(max_steps=5), 100)
    5
    """
    if spec.max_steps > 0:
        return spec.max_steps
    per_epoch = max(math.ceil(num_records / spec.batch_size), 1)
    return math.ceil(spec.epochs * per_epoch)


def _checkpoint_step(checkpoint: Path) -> int:
    state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    return int(state.get("global_step", 0))


def _load_checkpoint(trainer: OrdinalRegressionTrainer, checkpoint: Path) -> None:
    """Weights and trainer state of a finished run's last checkpoint, without training."""
    from safetensors.torch import load_file
    from transformers import TrainerState

    weights = load_file(str(checkpoint / "model.safetensors"))
    missing, unexpected = trainer.model.load_state_dict(weights, strict=False)
    tied = set(getattr(trainer.model, "_tied_weights_keys", None) or [])
    if unexpected or set(missing) - tied:
        raise CheckpointError(
            f"{checkpoint} does not match the model: missing {sorted(set(missing) - tied)}, "
            f"unexpected {sorted(unexpected)}"
        )
    trainer.state = TrainerState.load_from_json(str(checkpoint / "trainer_state.json"))


def training_arguments(spec: TrainSpec, checkpoint_dir: Path, has_eval: bool) -> TrainingArguments:
    """``TrainingArguments`` for ``spec``: deterministic, CPU-friendly, checkpointing."""
    return TrainingArguments(
        output_dir=str(checkpoint_dir),
        num_train_epochs=spec.epochs,
        max_steps=spec.max_steps,
        per_device_train_batch_size=spec.batch_size,
        per_device_eval_batch_size=spec.eval_batch_size,
        learning_rate=spec.learning_rate,
        weight_decay=spec.weight_decay,
        warmup_ratio=spec.warmup_ratio,
        logging_steps=spec.logging_steps,
        save_strategy="steps",
        save_steps=spec.save_steps,
        save_total_limit=spec.save_total_limit,
        eval_strategy="epoch" if (has_eval and spec.eval_each_epoch) else "no",
        seed=spec.seed,
        data_seed=spec.seed,
        report_to=list(spec.report_to),
        run_name=spec.run_name,
        dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=False,
    )


@contextlib.contextmanager
def _mlflow_run(spec: TrainSpec) -> Iterator[str | None]:
    """One MLflow run around training and the final evaluation (if tracking is on)."""
    if "mlflow" not in spec.report_to:
        yield None
        return
    import mlflow

    configure_mlflow(spec.experiment)
    with mlflow.start_run(run_name=spec.run_name) as run:
        mlflow.log_params({f"ordinal.{k}": v for k, v in spec.model_dump(mode="json").items()})
        yield run.info.run_id


def train_ordinal_model(
    spec: TrainSpec,
    train_records: Sequence[dict[str, Any]],
    eval_records: Sequence[dict[str, Any]] | None = None,
    callbacks: Sequence[TrainerCallback] = (),
) -> TrainResult:
    """Fine-tune an ordinal model on records and save it under ``spec.output_dir/model``.

    Parameters
    ----------
    spec : TrainSpec
    train_records, eval_records : sequence of dict
        Each ``{"text": str, "label": int}`` for text models or ``{"image": PIL.Image,
        "label": int}`` for image models, labels in ``[0, K)``.
    callbacks : sequence of TrainerCallback
        Extra callbacks (progress, tests).

    Notes
    -----
    With ``spec.resume`` and ``ORDINAL_CHECKPOINT_UPLOAD_URL`` set, the newest checkpoint
    uploaded there (:mod:`ordinal.training.checkpoint_store`) is restored into
    ``output_dir/checkpoints`` first, unless a local one is as new; training resumes from it.

    Returns
    -------
    TrainResult
    """
    if not train_records:
        raise ValueError("train_records is empty: nothing to train on")
    set_seed(spec.seed)
    resolved = resolve_model(spec.model)
    model = build_ordinal_model(
        resolved.source, spec.num_classes, spec.head, spec.label_names, **spec.head_options
    )
    modality = backbone_family(model.config).modality
    # The preset's training augmentation (e.g. vit-shapes: dihedral); never for evaluation.
    train_ds = _dataset(train_records, modality, resolved.processor, spec, resolved.augment)
    eval_ds = _dataset(eval_records, modality, resolved.processor, spec) if eval_records else None
    if spec.init_cutpoints_from_labels:
        labels = torch.tensor(train_ds.labels)
        # Out-of-range labels are skipped here and reported clearly by the trainer.
        if int(labels.min()) >= 0 and int(labels.max()) < spec.num_classes:
            prior = torch.bincount(labels, minlength=spec.num_classes)
            get_ordinal_decoder(model).init_from_class_prior(prior.float())

    output_dir = Path(spec.output_dir)
    checkpoint_dir = output_dir / "checkpoints"
    trainer = OrdinalRegressionTrainer(
        model=model,
        args=training_arguments(spec, checkpoint_dir, eval_ds is not None),
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        data_collator=DataCollatorWithPadding(resolved.processor) if modality == "text" else None,
        processing_class=resolved.processor,
        callbacks=list(callbacks),
        checkpoint_interval_seconds=spec.checkpoint_interval_seconds,
        progress_interval_seconds=spec.progress_interval_seconds,
        head_learning_rate=spec.head_learning_rate,
    )
    if spec.resume:
        # A fresh VM has no local checkpoints: fetch the newest one an interrupted VM uploaded
        # (only when ORDINAL_CHECKPOINT_UPLOAD_URL is set; a local one as new is kept).
        restored = restore_from_env(checkpoint_dir)
        if restored is not None:
            log.info("restored %s from the checkpoint store", restored)
    resume = latest_checkpoint(checkpoint_dir) if spec.resume else None
    finished = False
    if resume is not None:
        _check_resumable(resume, model.config.ordinal)
        _check_same_spec(checkpoint_dir, spec)
        finished = _checkpoint_step(resume) >= planned_steps(spec, len(train_ds))
        log.info("resuming from %s%s", resume, " (training already complete)" if finished else "")
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    (checkpoint_dir / SPEC_FILE).write_text(
        json.dumps(_spec_fingerprint(spec), indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    with _mlflow_run(spec) as run_id:
        started = time.perf_counter()
        if finished:
            # Resuming at the last step would train one step more (the Trainer takes a step
            # before it checks max_steps): load the final checkpoint instead.
            _load_checkpoint(trainer, resume)
        else:
            trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        seconds = time.perf_counter() - started
        metrics = trainer.evaluate() if eval_ds is not None else {}
    model_dir = save_ordinal_model(trainer.model, output_dir / "model", resolved.processor)
    cutpoints = get_ordinal_decoder(trainer.model).cutpoints
    return TrainResult(
        metrics={k: float(v) for k, v in metrics.items()},
        model_dir=model_dir,
        checkpoint_dir=checkpoint_dir,
        resumed_from=resume,
        global_step=trainer.state.global_step,
        train_seconds=seconds,
        cutpoints=None if cutpoints is None else [float(v) for v in cutpoints.detach().cpu()],
        mlflow_run_id=run_id,
        log_history=list(trainer.state.log_history),
    )
