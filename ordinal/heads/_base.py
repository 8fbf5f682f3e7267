"""Base classes: a decoder holds the ordinal parameters, a head adds the linear projection.

The split mirrors how a fine-tuned backbone is exported: the backbone and its linear
projection (``num_outputs`` scores) are a standard ``*ForSequenceClassification`` model; the
decoder (cutpoints or biases plus the link) is small and is saved in the model config so the
export step can append it as its own graph.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from ordinal._validation import check_num_classes
from ordinal.heads._output import OrdinalOutput, cumulative_to_label, cumulative_to_proba

__all__ = ["OrdinalDecoder", "OrdinalHead"]


class OrdinalDecoder(nn.Module):
    """Maps projected scores, shape=(batch, num_outputs), to an :class:`OrdinalOutput`."""

    #: Whether the linear projection in front of this decoder has a bias term.
    projection_bias: ClassVar[bool] = True

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = check_num_classes(num_classes)

    @classmethod
    def outputs_for(cls, num_classes: int) -> int:
        """Number of projected scores the decoder consumes for ``num_classes`` classes."""
        raise NotImplementedError

    @property
    def num_outputs(self) -> int:
        """Number of projected scores this decoder consumes."""
        return self.outputs_for(self.num_classes)

    @property
    def cutpoints(self) -> torch.Tensor | None:
        """Strictly increasing thresholds, shape=(K-1,), or ``None`` for heads without them."""
        return None

    def decode(
        self, scores: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Return ``(logits, cum_probs, latent)`` for ``scores`` shape=(batch, num_outputs)."""
        raise NotImplementedError

    def loss(
        self,
        scores: torch.Tensor,
        labels: torch.Tensor,
        class_weights: torch.Tensor | None = None,
        reduction: str = "mean",
    ) -> torch.Tensor:
        """The head's own loss for ``scores`` shape=(batch, num_outputs) and ``labels``."""
        raise NotImplementedError

    def config_state(self) -> dict[str, Any]:
        """JSON-serialisable parameters, stored in the model config for export."""
        return {}

    def load_config_state(self, state: dict[str, Any]) -> None:
        """Restore parameters from :meth:`config_state` output."""

    def init_from_class_prior(self, class_prior: torch.Tensor) -> None:
        """Start from the intercept-only fit of ``class_prior``, shape=(K,) (no-op by default)."""

    def log_values(self) -> dict[str, float]:
        """Scalars worth logging during training (cutpoints, biases)."""
        cutpoints = self.cutpoints
        if cutpoints is None:
            return {}
        return {f"cutpoint_{k}": float(v) for k, v in enumerate(cutpoints.detach().cpu())}

    def forward(self, scores: torch.Tensor, labels: torch.Tensor | None = None) -> OrdinalOutput:
        """Decode ``scores`` shape=(batch, num_outputs); with ``labels`` also the mean loss."""
        if scores.dim() != 2 or scores.shape[1] != self.num_outputs:
            raise ValueError(
                f"{type(self).__name__} expects scores of shape (batch, {self.num_outputs}), "
                f"got {tuple(scores.shape)}"
            )
        logits, cum_probs, latent = self.decode(scores)
        return OrdinalOutput(
            logits=logits,
            cum_probs=cum_probs,
            probs=cumulative_to_proba(cum_probs),
            label=cumulative_to_label(cum_probs),
            latent=latent,
            loss=None if labels is None else self.loss(scores, labels),
        )


class OrdinalHead(nn.Module):
    """A linear projection of features followed by an :class:`OrdinalDecoder`.

    Subclasses set ``decoder_cls`` and are registered with ``@register_head``.
    """

    name: ClassVar[str] = ""
    decoder_cls: ClassVar[type[OrdinalDecoder]]

    def __init__(self, in_features: int, num_classes: int, **decoder_options: Any) -> None:
        super().__init__()
        if in_features < 1:
            raise ValueError(f"in_features must be >= 1, got {in_features}")
        self.decoder = self.decoder_cls(num_classes, **decoder_options)
        self.projection = nn.Linear(
            in_features, self.decoder.num_outputs, bias=self.decoder.projection_bias
        )

    @property
    def num_classes(self) -> int:
        """Number of ordered classes ``K``."""
        return self.decoder.num_classes

    @property
    def cutpoints(self) -> torch.Tensor | None:
        """Strictly increasing thresholds, shape=(K-1,), where the head has them."""
        return self.decoder.cutpoints

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> OrdinalOutput:
        """Decode ``features`` shape=(batch, in_features); ``labels`` shape=(batch,) adds a loss."""
        return self.decoder(self.projection(features), labels)
