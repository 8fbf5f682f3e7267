"""CORN head (Shi et al., 2021): conditional binary tasks combined by the chain rule."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ordinal.heads._base import OrdinalDecoder, OrdinalHead
from ordinal.heads._registry import register_head
from ordinal.losses import corn_loss

__all__ = ["CornDecoder", "CornHead"]


class CornDecoder(OrdinalDecoder):
    """``P(y > k) = prod_{j <= k} P(y > j | y > j-1)``, one intercept per conditional task.

    The conditional logits are the projected scores (weights per task, no bias) plus the
    decoder's K-1 ``intercepts``. Keeping the intercepts here, not as the projection's bias,
    lets them start at the class prior (:meth:`init_from_class_prior`) and train at the head
    learning rate without weight decay, like the cutpoints of the other heads. The chain-rule
    product is non-increasing in ``k`` without any constraint.
    """

    projection_bias = False

    def __init__(self, num_classes: int) -> None:
        super().__init__(num_classes)
        self.intercepts = nn.Parameter(torch.zeros(num_classes - 1))

    @classmethod
    def outputs_for(cls, num_classes: int) -> int:
        return num_classes - 1

    def conditional_logits(self, scores: torch.Tensor) -> torch.Tensor:
        """Logits of ``P(y > k | y > k-1)``, shape=(batch, K-1), for ``scores`` of that shape."""
        return scores + self.intercepts

    def decode(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        logits = self.conditional_logits(scores)
        return logits, torch.cumprod(torch.sigmoid(logits), dim=1), None

    def loss(
        self,
        scores: torch.Tensor,
        labels: torch.Tensor,
        class_weights: torch.Tensor | None = None,
        reduction: str = "mean",
    ) -> torch.Tensor:
        return corn_loss(
            self.conditional_logits(scores),
            labels,
            class_weights=class_weights,
            reduction=reduction,
        )

    def config_state(self) -> dict[str, Any]:
        return {"intercepts": [float(v) for v in self.intercepts.detach().cpu()]}

    def load_config_state(self, state: dict[str, Any]) -> None:
        values = state.get("intercepts")
        if values is None:
            return  # a config written before CORN had intercepts: they start at zero
        with torch.no_grad():
            self.intercepts.copy_(torch.as_tensor(values, dtype=self.intercepts.dtype))

    def init_from_class_prior(self, class_prior: torch.Tensor) -> None:
        """Intercepts at the conditional log-odds of the prior (the intercept-only fit).

        ``intercept_k = logit(P(y > k | y >= k))`` with ``P`` the normalised
        ``class_prior``, shape=(K,); an empty class counts as half a sample, so every
        intercept stays finite.

        >>> decoder = CornDecoder(3)
        >>> decoder.init_from_class_prior(torch.tensor([1.0, 1.0, 2.0]))
        >>> [round(v, 3) for v in decoder.intercepts.tolist()]
        [1.099, 0.693]
        """
        counts = torch.as_tensor(class_prior, dtype=torch.float64)
        counts = torch.where(counts > 0, counts, torch.full_like(counts, 0.5))
        at_least = counts.flip(0).cumsum(0).flip(0)  # n(y >= k)
        above = at_least[1:]  # n(y > k) = n(y >= k+1)
        intercepts = torch.log(above) - torch.log(at_least[:-1] - above)
        with torch.no_grad():
            self.intercepts.copy_(intercepts.to(self.intercepts.dtype))

    def log_values(self) -> dict[str, float]:
        return {f"intercept_{k}": float(v) for k, v in enumerate(self.intercepts.detach().cpu())}


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
