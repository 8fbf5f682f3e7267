"""The output record every ordinal head returns, and the conversions between its fields."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["OrdinalOutput", "cumulative_to_label", "cumulative_to_proba"]


@dataclass
class OrdinalOutput:
    """What an ordinal head computes for a batch.

    Attributes
    ----------
    logits : Tensor, shape=(batch, K-1)
        Per-threshold scores. Cumulative link: ``theta_k - eta`` (the argument of ``F`` in
        ``P(y <= k) = F(theta_k - eta)``). CORAL: ``eta + b_k``, the logit of ``P(y > k)``.
        CORN: the logit of the conditional ``P(y > k | y > k-1)``.
    cum_probs : Tensor, shape=(batch, K-1)
        ``P(y > k | x)`` for ``k = 0 .. K-2`` for every head; non-increasing in ``k``.
    probs : Tensor, shape=(batch, K)
        Class probabilities ``P(y = k | x)``; non-negative, rows sum to 1.
    label : Tensor, shape=(batch,)
        Predicted label: the median of the predicted distribution, i.e. the number of
        thresholds with ``P(y > k) > 0.5`` (rank-consistent, minimises expected absolute error).
    latent : Tensor or None, shape=(batch,)
        The shared latent score ``eta`` (cumulative link, CORAL); ``None`` for CORN.
    loss : Tensor or None, shape=()
        The head's loss when labels were given.
    """

    logits: torch.Tensor
    cum_probs: torch.Tensor
    probs: torch.Tensor
    label: torch.Tensor
    latent: torch.Tensor | None = None
    loss: torch.Tensor | None = None


def cumulative_to_proba(cum_probs: torch.Tensor) -> torch.Tensor:
    """Turn ``P(y > k)``, shape=(batch, K-1), into class probabilities, shape=(batch, K).

    ``P(y = k) = P(y > k-1) - P(y > k)`` with ``P(y > -1) = 1`` and ``P(y > K-1) = 0``.

    >>> cumulative_to_proba(torch.tensor([[0.75, 0.25]])).tolist()
    [[0.25, 0.5, 0.25]]
    """
    ones = torch.ones_like(cum_probs[:, :1])
    zeros = torch.zeros_like(cum_probs[:, :1])
    upper = torch.cat([ones, cum_probs], dim=1)
    lower = torch.cat([cum_probs, zeros], dim=1)
    return (upper - lower).clamp_min(0.0)


def cumulative_to_label(cum_probs: torch.Tensor) -> torch.Tensor:
    """Median label from ``P(y > k)``, shape=(batch, K-1) -> shape=(batch,).

    >>> cumulative_to_label(torch.tensor([[0.9, 0.6, 0.2], [0.4, 0.1, 0.0]])).tolist()
    [2, 0]
    """
    return (cum_probs > 0.5).sum(dim=1)
