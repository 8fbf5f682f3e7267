"""CORN head (Shi et al., 2021): conditional binary tasks combined by the chain rule."""

from __future__ import annotations

import torch

from ordinal.heads._base import OrdinalDecoder, OrdinalHead
from ordinal.heads._registry import register_head
from ordinal.losses import corn_loss

__all__ = ["CornDecoder", "CornHead"]


class CornDecoder(OrdinalDecoder):
    """``P(y > k) = prod_{j <= k} P(y > j | y > j-1)``; no parameters of its own.

    The K-1 conditional logits come straight from the projection (weights and biases per
    task), so the chain-rule product is non-increasing in ``k`` without any constraint.
    """

    projection_bias = True

    @classmethod
    def outputs_for(cls, num_classes: int) -> int:
        return num_classes - 1

    def decode(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        return scores, torch.cumprod(torch.sigmoid(scores), dim=1), None

    def loss(
        self,
        scores: torch.Tensor,
        labels: torch.Tensor,
        class_weights: torch.Tensor | None = None,
        reduction: str = "mean",
    ) -> torch.Tensor:
        return corn_loss(scores, labels, class_weights=class_weights, reduction=reduction)


@register_head("corn")
class CornHead(OrdinalHead):
    """CORN: K-1 conditional binary classifiers, rank-consistent by the chain rule.

    >>> head = CornHead(in_features=4, num_classes=4)
    >>> out = head(torch.randn(2, 4))
    >>> head.cutpoints is None, tuple(out.cum_probs.shape)
    (True, (2, 3))
    """

    decoder_cls = CornDecoder

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__(in_features, num_classes)
