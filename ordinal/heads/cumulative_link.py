"""Cumulative-link (proportional-odds) head: ``P(y <= k | x) = F(theta_k - eta)``."""

from __future__ import annotations

from typing import Any

import torch

from ordinal.heads._base import OrdinalDecoder, OrdinalHead
from ordinal.heads._cutpoints import OrderedCutpoints, default_cutpoints
from ordinal.heads._registry import register_head
from ordinal.links import get_link
from ordinal.losses import cumulative_link_loss

__all__ = ["CumulativeLinkDecoder", "CumulativeLinkHead"]


class CumulativeLinkDecoder(OrdinalDecoder):
    """Cutpoints and link of a cumulative-link model.

    The latent score is ``eta = w . h`` with **no bias** (the cutpoints absorb it), so the
    projection in front of this decoder has one output and no bias term.
    """

    projection_bias = False

    def __init__(self, num_classes: int, link: str = "logit", min_gap: float = 1e-3) -> None:
        super().__init__(num_classes)
        self.link = get_link(link).name
        self.thresholds = OrderedCutpoints(
            num_classes - 1, default_cutpoints(num_classes, link), min_gap
        )

    @classmethod
    def outputs_for(cls, num_classes: int) -> int:
        return 1

    @property
    def cutpoints(self) -> torch.Tensor:
        return self.thresholds()

    def decode(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        latent = scores[:, 0]
        logits = self.cutpoints - latent.unsqueeze(1)
        cum_probs = torch.exp(get_link(self.link).log_sf(logits))  # P(y > k) = 1 - F(.)
        return logits, cum_probs, latent

    def loss(
        self,
        scores: torch.Tensor,
        labels: torch.Tensor,
        class_weights: torch.Tensor | None = None,
        reduction: str = "mean",
    ) -> torch.Tensor:
        return cumulative_link_loss(
            scores[:, 0], self.cutpoints, labels, self.link, class_weights, reduction
        )

    def config_state(self) -> dict[str, Any]:
        return {
            "link": self.link,
            "min_gap": self.thresholds.min_gap,
            "cutpoints": [float(v) for v in self.cutpoints.detach().cpu()],
        }

    def load_config_state(self, state: dict[str, Any]) -> None:
        self.thresholds.set(state["cutpoints"])

    def init_from_class_prior(self, class_prior: torch.Tensor) -> None:
        self.thresholds.set(default_cutpoints(self.num_classes, self.link, class_prior))


@register_head("cumulative_link")
class CumulativeLinkHead(OrdinalHead):
    """Proportional-odds head with a ``logit``, ``probit`` or ``cloglog`` link.

    ``P(y <= k | x) = F(theta_k - eta)``, ``eta = w . h`` (no bias), cutpoints ``theta``
    strictly increasing by construction. ``cum_probs`` holds ``P(y > k)``.

    >>> head = CumulativeLinkHead(in_features=4, num_classes=3, link="probit")
    >>> out = head(torch.zeros(2, 4))
    >>> tuple(out.probs.shape), tuple(head.cutpoints.shape)
    ((2, 3), (2,))
    """

    decoder_cls = CumulativeLinkDecoder

    def __init__(
        self, in_features: int, num_classes: int, link: str = "logit", min_gap: float = 1e-3
    ) -> None:
        super().__init__(in_features, num_classes, link=link, min_gap=min_gap)
