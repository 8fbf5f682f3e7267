"""CORAL head (Cao et al., 2020): one shared weight vector and K-1 ordered biases."""

from __future__ import annotations

from typing import Any

import torch

from ordinal.heads._base import OrdinalDecoder, OrdinalHead
from ordinal.heads._cutpoints import OrderedCutpoints, default_cutpoints
from ordinal.heads._registry import register_head
from ordinal.losses import coral_loss

__all__ = ["CoralDecoder", "CoralHead"]


class CoralDecoder(OrdinalDecoder):
    """The K-1 biases of CORAL: ``logit P(y > k) = eta + b_k``.

    The paper proves the optimal biases are non-increasing, which makes predictions
    rank-consistent. Here they are kept strictly decreasing at every step by construction
    (``b_k = -theta_k`` with ``theta`` built like cumulative-link cutpoints), so
    ``P(y > k)`` is monotone in ``k`` during training too. ``cutpoints`` returns ``theta``.
    """

    projection_bias = False

    def __init__(self, num_classes: int, min_gap: float = 1e-3) -> None:
        super().__init__(num_classes)
        self.thresholds = OrderedCutpoints(
            num_classes - 1, default_cutpoints(num_classes, "logit"), min_gap
        )

    @classmethod
    def outputs_for(cls, num_classes: int) -> int:
        return 1

    @property
    def cutpoints(self) -> torch.Tensor:
        return self.thresholds()

    @property
    def biases(self) -> torch.Tensor:
        """The CORAL biases ``b_k = -theta_k``, shape=(K-1,), strictly decreasing."""
        return -self.thresholds()

    def decode(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        latent = scores[:, 0]
        logits = latent.unsqueeze(1) + self.biases
        return logits, torch.sigmoid(logits), latent

    def loss(
        self,
        scores: torch.Tensor,
        labels: torch.Tensor,
        class_weights: torch.Tensor | None = None,
        reduction: str = "mean",
    ) -> torch.Tensor:
        logits = scores[:, :1] + self.biases
        return coral_loss(logits, labels, class_weights=class_weights, reduction=reduction)

    def config_state(self) -> dict[str, Any]:
        return {
            "min_gap": self.thresholds.min_gap,
            "cutpoints": [float(v) for v in self.cutpoints.detach().cpu()],
            "biases": [float(v) for v in self.biases.detach().cpu()],
        }

    def load_config_state(self, state: dict[str, Any]) -> None:
        self.thresholds.set(state["cutpoints"])

    def init_from_class_prior(self, class_prior: torch.Tensor) -> None:
        self.thresholds.set(default_cutpoints(self.num_classes, "logit", class_prior))


@register_head("coral")
class CoralHead(OrdinalHead):
    """CORAL: ``P(y > k | x) = sigmoid(w . h + b_k)`` with shared ``w`` and ordered ``b``.

    >>> head = CoralHead(in_features=4, num_classes=5)
    >>> out = head(torch.randn(3, 4))
    >>> bool((out.cum_probs[:, 1:] <= out.cum_probs[:, :-1]).all())
    True
    """

    decoder_cls = CoralDecoder

    def __init__(self, in_features: int, num_classes: int, min_gap: float = 1e-3) -> None:
        super().__init__(in_features, num_classes, min_gap=min_gap)
