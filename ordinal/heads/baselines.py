"""Baselines for benchmarks: the heads a user would pick without an ordinal model.

* ``nominal``: a K-way softmax classifier trained with cross-entropy; it predicts the most
  likely class (``argmax``) and knows nothing of the classes' order.
* ``regression``: one output trained with the mean squared error on the label index; it
  predicts the score rounded to the nearest class and clipped to ``[0, K-1]``.

They share the ordinal heads' interface (an :class:`~ordinal.heads.OrdinalDecoder` that
returns an :class:`~ordinal.heads.OrdinalOutput`, a loss, a class-prior start, decoder
parameters trained at the head learning rate), so :class:`ordinal.OrdinalRegressionTrainer`
trains them with the same backbone, data, seed and step budget as the ordinal heads; see
``benchmarks/bench_heads.py``.

**They are deliberately not in the head registry** (:func:`ordinal.available_heads`). A
registered head is accepted by ``TrainSpec`` and the ``ordinal run`` pipeline, which then
exports it with the ordinal decoder graph, gates it on parity and serves it from a bundle whose
consumers read ``P(y > k)`` and a median label. None of that exists for these baselines (the
decoder graph knows only the ordinal heads), so a registered baseline would fail deep inside a
pipeline run instead of at the start. Build them with :func:`build_baseline_model`; they are
for comparisons in memory, not for saving, exporting or serving.

>>> head = NominalHead(in_features=4, num_classes=3)
>>> out = head(torch.zeros(2, 4))
>>> tuple(out.probs.shape), tuple(out.cum_probs.shape), out.label.tolist()
((2, 3), (2, 2), [0, 0])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ordinal._validation import check_labels
from ordinal.heads._base import OrdinalDecoder, OrdinalHead
from ordinal.heads._output import OrdinalOutput

__all__ = [
    "BASELINE_HEADS",
    "NominalDecoder",
    "NominalHead",
    "RegressionDecoder",
    "RegressionHead",
    "build_baseline_model",
]


def _check_weights(weights: torch.Tensor | None, num_classes: int) -> None:
    if weights is not None and weights.shape != (num_classes,):
        raise ValueError(
            f"class_weights must have shape ({num_classes},), got {tuple(weights.shape)}"
        )


def _reduce(
    per_sample: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None, reduction: str
) -> torch.Tensor:
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    w = torch.ones_like(per_sample) if weights is None else weights.to(per_sample)[labels]
    if reduction == "none":
        return per_sample * w
    if reduction == "sum":
        return (per_sample * w).sum()
    return (per_sample * w).sum() / w.sum().clamp_min(torch.finfo(per_sample.dtype).tiny)


class NominalDecoder(OrdinalDecoder):
    """Softmax over ``K`` class scores plus a learnt per-class bias; predicts the argmax.

    The projection in front has ``K`` outputs and no bias: the class biases live here, start at
    the log of the training class frequencies (:meth:`init_from_class_prior`, the
    intercept-only fit, as the ordinal heads' cutpoints do) and train at the head learning
    rate, like the cutpoints.

    ``logits`` are the ``K`` class logits (shape=(batch, K), not K-1); ``cum_probs`` is
    ``P(y > k) = sum_{j > k} P(y = j)``; ``latent`` is ``None``.
    """

    projection_bias = False

    def __init__(self, num_classes: int) -> None:
        super().__init__(num_classes)
        self.class_bias = nn.Parameter(torch.zeros(num_classes))

    @classmethod
    def outputs_for(cls, num_classes: int) -> int:
        return num_classes

    def decode(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        logits = scores + self.class_bias
        probs = torch.softmax(logits, dim=1)
        # P(y > k): reverse cumulative sum, so the top class's share is exact.
        tail = torch.flip(torch.cumsum(torch.flip(probs, [1]), dim=1), [1])
        return logits, tail[:, 1:].clamp(0.0, 1.0), None

    def loss(
        self,
        scores: torch.Tensor,
        labels: torch.Tensor,
        class_weights: torch.Tensor | None = None,
        reduction: str = "mean",
    ) -> torch.Tensor:
        """Cross-entropy of the class logits, shape=(batch, K), against ``labels``."""
        labels = check_labels(labels, self.num_classes, scores.shape[0])
        _check_weights(class_weights, self.num_classes)
        per_sample = F.cross_entropy(scores + self.class_bias, labels, reduction="none")
        return _reduce(per_sample, labels, class_weights, reduction)

    def forward(self, scores: torch.Tensor, labels: torch.Tensor | None = None) -> OrdinalOutput:
        """As :meth:`OrdinalDecoder.forward`, with softmax ``probs`` and the ``argmax`` label."""
        if scores.dim() != 2 or scores.shape[1] != self.num_outputs:
            raise ValueError(
                f"NominalDecoder expects scores of shape (batch, {self.num_outputs}), "
                f"got {tuple(scores.shape)}"
            )
        logits, cum_probs, _ = self.decode(scores)
        return OrdinalOutput(
            logits=logits,
            cum_probs=cum_probs,
            probs=torch.softmax(logits, dim=1),
            label=logits.argmax(dim=1),
            latent=None,
            loss=None if labels is None else self.loss(scores, labels),
        )

    def config_state(self) -> dict[str, Any]:
        return {
            "baseline": True,
            "prediction": "argmax",
            "class_bias": [float(v) for v in self.class_bias.detach().cpu()],
        }

    def load_config_state(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.class_bias.copy_(torch.as_tensor(state["class_bias"]))

    def init_from_class_prior(self, class_prior: torch.Tensor) -> None:
        """Biases ``log p_k`` of the smoothed class frequencies: the intercept-only fit."""
        prior = torch.as_tensor(class_prior, dtype=torch.float64)
        prior = (prior / prior.sum() + 1e-3) / (1 + 1e-3 * self.num_classes)
        with torch.no_grad():
            self.class_bias.copy_(torch.log(prior).to(self.class_bias))

    def log_values(self) -> dict[str, float]:
        return {}


class RegressionDecoder(OrdinalDecoder):
    """A score ``s = w . h + c`` fitted to the label index with the mean squared error.

    The label is ``s`` rounded to the nearest class and clipped to ``[0, K-1]``: the number of
    rounding thresholds ``k + 0.5`` (``k = 0 .. K-2``) below ``s`` (a tie rounds down). The
    prediction is a point, so ``probs`` puts all mass on that label (its ranked probability
    score is ``|label - y| / (K-1)``); ``logits`` are ``s - (k + 0.5)`` and ``latent`` is ``s``.

    The offset ``c`` lives here (the projection has no bias), starts at the mean training label
    (:meth:`init_from_class_prior`) and trains at the head learning rate.
    """

    projection_bias = False

    def __init__(self, num_classes: int) -> None:
        super().__init__(num_classes)
        self.offset = nn.Parameter(torch.tensor((num_classes - 1) / 2))
        self.register_buffer(
            "thresholds", torch.arange(num_classes - 1, dtype=torch.float32) + 0.5, persistent=False
        )

    @classmethod
    def outputs_for(cls, num_classes: int) -> int:
        return 1

    def decode(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        latent = scores[:, 0] + self.offset
        logits = latent.unsqueeze(1) - self.thresholds.to(latent)
        return logits, (logits > 0).to(latent), latent

    def loss(
        self,
        scores: torch.Tensor,
        labels: torch.Tensor,
        class_weights: torch.Tensor | None = None,
        reduction: str = "mean",
    ) -> torch.Tensor:
        """Squared error between the score and the label index, shape=(batch,) -> scalar."""
        labels = check_labels(labels, self.num_classes, scores.shape[0])
        _check_weights(class_weights, self.num_classes)
        per_sample = (scores[:, 0] + self.offset - labels.to(scores)) ** 2
        return _reduce(per_sample, labels, class_weights, reduction)

    def config_state(self) -> dict[str, Any]:
        return {
            "baseline": True,
            "prediction": "round(clip(score, 0, K-1))",
            "offset": float(self.offset.detach()),
        }

    def load_config_state(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.offset.fill_(float(state["offset"]))

    def init_from_class_prior(self, class_prior: torch.Tensor) -> None:
        """Offset at the mean label of the class frequencies ``class_prior``, shape=(K,)."""
        prior = torch.as_tensor(class_prior, dtype=torch.float64)
        mean = float((prior * torch.arange(self.num_classes)).sum() / prior.sum())
        with torch.no_grad():
            self.offset.fill_(mean)

    def log_values(self) -> dict[str, float]:
        return {"regression_offset": float(self.offset.detach())}


class NominalHead(OrdinalHead):
    """Baseline: cross-entropy classifier over ``K`` unordered classes (argmax prediction)."""

    name = "nominal"
    decoder_cls = NominalDecoder

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__(in_features, num_classes)


class RegressionHead(OrdinalHead):
    """Baseline: MSE regression on the label index, rounded and clipped.

    >>> head = RegressionHead(in_features=2, num_classes=5)
    >>> with torch.no_grad():
    ...     _ = head.projection.weight.copy_(torch.tensor([[1.0, 0.0]]))
    >>> head(torch.tensor([[-9.0, 0.0], [-1.4, 0.0], [0.6, 0.0], [9.0, 0.0]])).label.tolist()
    [0, 1, 3, 4]
    """

    name = "regression"
    decoder_cls = RegressionDecoder

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__(in_features, num_classes)


#: The baseline heads by name; not part of :data:`ordinal.heads.HEADS` (see the module doc).
BASELINE_HEADS: dict[str, type[OrdinalHead]] = {
    "nominal": NominalHead,
    "regression": RegressionHead,
}


def build_baseline_model(
    source: str | Path | Any, num_classes: int, head: str, label_names: list[str] | None = None
) -> Any:
    """A backbone of a registered family with a baseline head, like
    :func:`ordinal.build_ordinal_model`.

    Parameters
    ----------
    source : path or PretrainedConfig
        A local model directory (MiniLM) or a config (random initialisation).
    num_classes : int
        ``K``.
    head : {"nominal", "regression"}
    label_names : list of str, optional

    Returns
    -------
    PreTrainedModel
        With the decoder at ``model.ordinal_decoder`` (so :func:`ordinal.ordinal_forward` and
        :class:`ordinal.OrdinalRegressionTrainer` work) and ``config.ordinal["baseline"]``
        true. It cannot be exported (the ONNX decoder graph has no baseline heads) nor loaded
        with :func:`ordinal.load_ordinal_model`.
    """
    import copy

    from transformers import AutoConfig, PretrainedConfig

    from ordinal.models import (
        CONFIG_FORMAT_VERSION,
        DECODER_ATTR,
        _replace_projection,
        backbone_family,
        sync_ordinal_config,
    )

    if head not in BASELINE_HEADS:
        raise ValueError(f"unknown baseline head {head!r}; choose one of {sorted(BASELINE_HEADS)}")
    decoder = BASELINE_HEADS[head].decoder_cls(num_classes)
    if label_names is not None and len(label_names) != num_classes:
        raise ValueError(
            f"label_names has {len(label_names)} entries for num_classes={num_classes}"
        )
    if isinstance(source, PretrainedConfig):
        family = backbone_family(source)
        config = copy.deepcopy(source)
        config.num_labels = decoder.num_outputs
        model = family.auto_class.from_config(config)
    else:
        path = Path(source)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"no model directory with a config.json at {path}")
        family = backbone_family(AutoConfig.from_pretrained(path))
        model = family.auto_class.from_pretrained(
            path, num_labels=decoder.num_outputs, ignore_mismatched_sizes=True
        )
    projection = _replace_projection(model, family, decoder.num_outputs)
    with torch.no_grad():
        projection.bias.zero_()
    projection.bias.requires_grad_(False)  # the decoder holds the bias (see the decoders)
    setattr(model, DECODER_ATTR, decoder.to(projection.weight.device))
    model.config.num_labels = decoder.num_outputs
    model.config.ordinal = {
        "format_version": CONFIG_FORMAT_VERSION,
        "head": head,
        "baseline": True,
        "num_classes": num_classes,
        "num_outputs": decoder.num_outputs,
        "label_names": list(label_names) if label_names else [str(k) for k in range(num_classes)],
        "family": family.name,
        "task": family.task,
        "projection": family.projection,
        "options": {},
    }
    sync_ordinal_config(model)
    return model
