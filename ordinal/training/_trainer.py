"""``OrdinalRegressionTrainer``: a ``transformers.Trainer`` for ordinal heads.

It overrides documented hooks only: ``compute_loss`` (the head's ordinal loss and class
probabilities as predictions), ``log`` (adds cutpoints and throughput to every training
log) and ``save_model`` (mirrors the decoder into ``config.ordinal`` before saving).
Checkpoint cadence and throughput timing live in callbacks.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from transformers import EvalPrediction, Trainer

from ordinal.metrics import compute_ordinal_metrics
from ordinal.models import get_ordinal_decoder, sync_ordinal_config
from ordinal.tracking import configure_mlflow
from ordinal.training.callbacks import (
    ProgressCallback,
    ThroughputCallback,
    WallClockCheckpointCallback,
)
from ordinal.training.spot import SpotInterruptionCallback, SpotSpec

__all__ = ["DegenerateLabelsWarning", "OrdinalRegressionTrainer", "ordinal_metrics"]


class DegenerateLabelsWarning(UserWarning):
    """Training labels that cannot identify an ordinal model (e.g. all one class)."""


def ordinal_metrics(prediction: EvalPrediction) -> dict[str, float]:
    """``compute_metrics`` for the Trainer: predictions are class probabilities (n, K)."""
    proba = prediction.predictions
    if isinstance(proba, tuple):
        proba = proba[0]
    labels = np.asarray(prediction.label_ids)
    return compute_ordinal_metrics(labels, proba, num_classes=proba.shape[1])


def _dataset_labels(dataset: Any) -> Iterable[int] | None:
    """Labels of a training set without tokenising it again, where that is cheap."""
    if dataset is None:
        return None
    if hasattr(dataset, "labels"):
        return [int(v) for v in dataset.labels]
    if "labels" in (getattr(dataset, "column_names", None) or ()):
        return [int(v) for v in dataset["labels"]]
    return None


class OrdinalRegressionTrainer(Trainer):
    """A ``Trainer`` that fits an ordinal model built by :func:`ordinal.build_ordinal_model`.

    Parameters
    ----------
    *args, **kwargs
        As for ``transformers.Trainer``. ``compute_metrics`` defaults to the ordinal metrics
        (MAE, RMSE, accuracy, off-by-one accuracy, QWK, Spearman, RPS, macro-MAE).
    class_weights : Tensor, shape=(K,), optional
        Per-class sample weights for the loss.
    checkpoint_interval_seconds : float or None
        Save a checkpoint at least this often by wall clock (default 300 s), in addition to
        ``save_steps``. ``None`` turns the wall-clock cadence off.
    progress_interval_seconds : float or None
        Print a progress line (step/total, loss, samples/s, ETA) at least this often
        (default 30 s; :class:`ordinal.training.callbacks.ProgressCallback`). ``None`` is
        silent.
    head_learning_rate : float or None
        Learning rate of the decoder's own parameters (cutpoints, CORAL biases). They start
        far from their fit and move too slowly at a fine-tuning rate; ``None`` uses the
        Trainer's rate for them too. They get no weight decay.
    spot_interruption : SpotSpec, bool or None
        Watch the spot two-minute warning (:mod:`ordinal.training.spot`): save, stop and
        raise :class:`ordinal.exceptions.SpotInterruptedError`. ``None`` (the default) watches
        only when the environment asks for it (``ORDINAL_METADATA_URL`` or
        ``ORDINAL_SPOT_INTERRUPTION=1``, set on provisioned VMs); ``False`` never;
        a :class:`SpotSpec` always, as specified.

    Notes
    -----
    Every training log carries ``cutpoint_k`` (where the head has cutpoints) and
    ``throughput_samples_per_second`` over the logging window. When ``report_to`` includes
    ``"mlflow"`` and no tracking URI is configured, runs go to the local store under
    :func:`ordinal.paths.state_dir`.
    """

    def __init__(
        self,
        *args: Any,
        class_weights: torch.Tensor | None = None,
        checkpoint_interval_seconds: float | None = 300.0,
        progress_interval_seconds: float | None = 30.0,
        head_learning_rate: float | None = None,
        spot_interruption: SpotSpec | bool | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("compute_metrics", ordinal_metrics)
        super().__init__(*args, **kwargs)
        self.decoder = get_ordinal_decoder(self.model)
        if class_weights is not None and class_weights.shape != (self.decoder.num_classes,):
            raise ValueError(
                f"class_weights must have shape ({self.decoder.num_classes},), "
                f"got {tuple(class_weights.shape)}"
            )
        self.class_weights = class_weights
        self.head_learning_rate = head_learning_rate
        # The loss is a per-batch mean: let the Trainer divide by accumulation steps itself.
        self.model_accepts_loss_kwargs = False
        self.throughput = ThroughputCallback()
        self.add_callback(self.throughput)
        if checkpoint_interval_seconds is not None:
            self.add_callback(WallClockCheckpointCallback(checkpoint_interval_seconds))
        if progress_interval_seconds is not None:
            self.add_callback(ProgressCallback(progress_interval_seconds))
        self.spot_watch: SpotInterruptionCallback | None = None
        if isinstance(spot_interruption, SpotSpec):
            self.spot_watch = SpotInterruptionCallback(spot_interruption)
        elif spot_interruption is None or spot_interruption is True:
            self.spot_watch = SpotInterruptionCallback.from_env()
            if self.spot_watch is None and spot_interruption is True:
                self.spot_watch = SpotInterruptionCallback()
        if self.spot_watch is not None:
            self.add_callback(self.spot_watch)
        if "mlflow" in (self.args.report_to or []):
            configure_mlflow()
        self._check_training_labels()

    def _check_training_labels(self) -> None:
        labels = _dataset_labels(self.train_dataset)
        if labels is None:
            return
        counts = Counter(labels)
        num_classes = self.decoder.num_classes
        outside = sorted(k for k in counts if not 0 <= k < num_classes)
        if outside:
            raise ValueError(f"training labels must lie in [0, {num_classes}); found {outside[:5]}")
        if len(counts) == 1:
            (only,) = counts
            warnings.warn(
                f"all {counts[only]} training labels are class {only}: the data cannot "
                "identify the other classes, so the model will only learn to put its mass on "
                f"class {only}; the cutpoints stay ordered but their spacing is not learnt",
                DegenerateLabelsWarning,
                stacklevel=3,
            )
        elif len(counts) < num_classes:
            missing = sorted(set(range(num_classes)) - set(counts))
            warnings.warn(
                f"classes {missing} never occur in the training labels; their cutpoints are "
                "only constrained by their neighbours",
                DegenerateLabelsWarning,
                stacklevel=3,
            )

    def create_optimizer(self) -> torch.optim.Optimizer:
        """The Trainer's optimizer, with the decoder in a group of its own: no weight decay
        (it would pull the cutpoint gaps towards softplus(0)), rate ``head_learning_rate``."""
        decoder_params = [p for p in self.decoder.parameters() if p.requires_grad]
        if self.optimizer is None and decoder_params:
            skip = {id(p) for p in decoder_params}
            decay = set(self.get_decay_parameter_names(self.model))
            named = [
                (n, p)
                for n, p in self.model.named_parameters()
                if p.requires_grad and id(p) not in skip
            ]
            groups = [
                {
                    "params": [p for n, p in named if n in decay],
                    "weight_decay": self.args.weight_decay,
                },
                {"params": [p for n, p in named if n not in decay], "weight_decay": 0.0},
                {
                    "params": decoder_params,
                    "weight_decay": 0.0,
                    "lr": self.head_learning_rate or self.args.learning_rate,
                },
            ]
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(
                self.args, self.model
            )
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return super().create_optimizer()

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The head's ordinal loss; predictions are the class probabilities (batch, K)."""
        labels = inputs["labels"]
        scores = model(**{k: v for k, v in inputs.items() if k != "labels"}).logits
        decoder = get_ordinal_decoder(model)
        loss = decoder.loss(scores, labels, class_weights=self.class_weights)
        if model.training:
            self.throughput.record(labels.shape[0])
        if not return_outputs:
            return loss
        return loss, {"loss": loss, "probs": decoder(scores).probs}

    def prediction_step(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """Class probabilities (batch, K) as predictions, with or without labels."""
        if "labels" in inputs:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            scores = model(**inputs).logits
            probs = get_ordinal_decoder(model)(scores).probs
        return None, (None if prediction_loss_only else probs), None

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add cutpoints and throughput to training logs, then log as usual."""
        if "loss" in logs:
            logs.update(self.decoder.log_values())
            rate = self.throughput.rate()
            if rate is not None:
                logs["throughput_samples_per_second"] = round(rate, 3)
        super().log(logs, start_time)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Mirror the decoder into ``config.ordinal``, then save as usual."""
        sync_ordinal_config(self.model)
        super().save_model(output_dir, _internal_call)
