"""Ordinal losses: each a function plus an ``nn.Module`` wrapper.

Conventions shared by every loss:

* ``labels`` are integers in ``[0, K)``, shape=(batch,).
* ``class_weights``, shape=(K,), weighs each sample by its true class; with
  ``reduction="mean"`` the result is the weighted mean ``sum(w_i * l_i) / sum(w_i)``.
* ``reduction`` is ``"mean"``, ``"sum"`` or ``"none"`` (per-sample losses, shape=(batch,)).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ordinal._validation import check_labels, check_num_classes
from ordinal.links import Link, get_link

__all__ = [
    "CoralLoss",
    "CornLoss",
    "CumulativeLinkLoss",
    "coral_loss",
    "corn_loss",
    "cumulative_link_loss",
    "label_to_levels",
]

Reduction = Literal["mean", "sum", "none"]
_REDUCTIONS = ("mean", "sum", "none")
# Keeps log(1 - exp(x)) finite when two cutpoints round to the same probability.
_LOG1MEXP_MAX = -1e-7


def label_to_levels(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Extended binary targets ``1[y > k]``: shape=(batch,) -> shape=(batch, K-1).

    >>> label_to_levels(torch.tensor([0, 2, 1]), num_classes=3).tolist()
    [[0.0, 0.0], [1.0, 1.0], [1.0, 0.0]]
    """
    thresholds = torch.arange(num_classes - 1, device=labels.device)
    return (labels.unsqueeze(1) > thresholds).to(torch.get_default_dtype())


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _check_weights(weights: torch.Tensor | None, size: int, name: str) -> None:
    if weights is None:
        return
    if weights.shape != (size,):
        raise ValueError(f"{name} must have shape ({size},), got {tuple(weights.shape)}")
    if bool((weights < 0).any()) or not bool(torch.isfinite(weights).all()):
        raise ValueError(f"{name} must be finite and non-negative, got {weights.tolist()}")


def _reduce(
    per_sample: torch.Tensor,
    labels: torch.Tensor,
    class_weights: torch.Tensor | None,
    reduction: str,
    counts: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weight per-sample losses by class and reduce; ``counts`` normalises CORN's task sums."""
    weights = (
        torch.ones_like(per_sample)
        if class_weights is None
        else class_weights.to(per_sample)[labels]
    )
    weighted = per_sample * weights
    if reduction == "none":
        return weighted
    if reduction == "sum":
        return weighted.sum()
    denominator = (weights * counts).sum() if counts is not None else weights.sum()
    return weighted.sum() / denominator.clamp_min(torch.finfo(per_sample.dtype).tiny)


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(x))`` for ``x < 0``, accurate on both sides of ``-log 2``."""
    x = x.clamp(max=_LOG1MEXP_MAX)
    return torch.where(
        x > -0.6931471805599453, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x))
    )


def _log_interval(a: torch.Tensor, b: torch.Tensor, link: Link) -> torch.Tensor:
    """``log(F(b) - F(a))`` for ``a < b``, using ``1 - F`` on the right to avoid cancellation."""
    left = link.log_cdf(b) + _log1mexp(link.log_cdf(a) - link.log_cdf(b))
    right = link.log_sf(a) + _log1mexp(link.log_sf(b) - link.log_sf(a))
    return torch.where((a + b) < 0, left, right)


def cumulative_link_loss(
    latent: torch.Tensor,
    cutpoints: torch.Tensor,
    labels: torch.Tensor,
    link: str = "logit",
    class_weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Negative log-likelihood of the cumulative-link (proportional-odds) model.

    ``P(y = k) = F(theta_k - eta) - F(theta_{k-1} - eta)`` with ``theta_{-1} = -inf`` and
    ``theta_{K-1} = +inf``; computed in log space so it stays finite far in the tails.

    Parameters
    ----------
    latent : Tensor, shape=(batch,)
        The latent score ``eta``.
    cutpoints : Tensor, shape=(K-1,)
        Strictly increasing thresholds ``theta``.
    labels : LongTensor, shape=(batch,)
        Integer labels in ``[0, K)``.
    link : {"logit", "probit", "cloglog"}
    class_weights : Tensor, shape=(K,), optional
    reduction : {"mean", "sum", "none"}

    Returns
    -------
    Tensor, shape=() or shape=(batch,) for ``reduction="none"``

    Examples
    --------
    With ``eta = 0`` and cutpoints ``(-1, 1)``, label 1 has probability
    ``sigmoid(1) - sigmoid(-1) = 0.46212``, so the loss is ``-log(0.46212) = 0.77194``:

    >>> loss = cumulative_link_loss(torch.zeros(1), torch.tensor([-1.0, 1.0]), torch.tensor([1]))
    >>> round(loss.item(), 5)
    0.77194
    """
    _check_reduction(reduction)
    if cutpoints.dim() != 1:
        raise ValueError(f"cutpoints must have shape (K-1,), got {tuple(cutpoints.shape)}")
    num_classes = check_num_classes(cutpoints.shape[0] + 1)
    if latent.dim() != 1:
        raise ValueError(f"latent must have shape (batch,), got {tuple(latent.shape)}")
    labels = check_labels(labels, num_classes, latent.shape[0])
    _check_weights(class_weights, num_classes, "class_weights")
    fn = get_link(link)

    lower = cutpoints[(labels - 1).clamp(min=0)] - latent
    upper = cutpoints[labels.clamp(max=num_classes - 2)] - latent
    first = labels == 0
    last = labels == num_classes - 1
    # Finite stand-ins where an end class has no lower/upper cutpoint; those lanes are
    # replaced below, and finite values keep their gradients finite (zero) too.
    mid = _log_interval(
        torch.where(first, upper - 1.0, lower), torch.where(last, lower + 1.0, upper), fn
    )
    log_prob = torch.where(first, fn.log_cdf(upper), torch.where(last, fn.log_sf(lower), mid))
    return _reduce(-log_prob, labels, class_weights, reduction)


def coral_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    importance_weights: torch.Tensor | None = None,
    class_weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """CORAL loss (Cao et al., 2020): binary cross-entropy of each task ``y > k``.

    Summed over the K-1 tasks (each scaled by ``importance_weights``), then reduced over the
    batch.

    Parameters
    ----------
    logits : Tensor, shape=(batch, K-1)
        Logits of ``P(y > k)``.
    labels : LongTensor, shape=(batch,)
    importance_weights : Tensor, shape=(K-1,), optional
    class_weights : Tensor, shape=(K,), optional
    reduction : {"mean", "sum", "none"}

    Examples
    --------
    Zero logits give ``log 2`` per task; two tasks give ``2 log 2 = 1.38629``:

    >>> round(coral_loss(torch.zeros(3, 2), torch.tensor([0, 1, 2])).item(), 5)
    1.38629
    """
    _check_reduction(reduction)
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (batch, K-1), got {tuple(logits.shape)}")
    num_classes = check_num_classes(logits.shape[1] + 1)
    labels = check_labels(labels, num_classes, logits.shape[0])
    _check_weights(importance_weights, num_classes - 1, "importance_weights")
    _check_weights(class_weights, num_classes, "class_weights")
    levels = label_to_levels(labels, num_classes).to(logits)
    per_task = F.binary_cross_entropy_with_logits(logits, levels, reduction="none")
    if importance_weights is not None:
        per_task = per_task * importance_weights.to(per_task)
    return _reduce(per_task.sum(dim=1), labels, class_weights, reduction)


def corn_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    class_weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """CORN loss (Shi et al., 2021): conditional binary tasks on nested training subsets.

    Task ``k`` predicts ``y > k`` and is trained only on samples with ``y > k-1``. A sample
    with label ``y`` therefore joins tasks ``0 .. min(y, K-2)``. ``"none"`` returns each
    sample's summed task losses; ``"mean"`` divides the total by the number of
    (sample, task) pairs, as in the reference implementation.

    Parameters
    ----------
    logits : Tensor, shape=(batch, K-1)
        Logits of the conditional probabilities ``P(y > k | y > k-1)``.
    labels : LongTensor, shape=(batch,)
    class_weights : Tensor, shape=(K,), optional
    reduction : {"mean", "sum", "none"}

    Examples
    --------
    Zero logits cost ``log 2`` per (sample, task) pair, whatever the labels:

    >>> round(corn_loss(torch.zeros(3, 2), torch.tensor([0, 1, 2])).item(), 5)
    0.69315
    """
    _check_reduction(reduction)
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (batch, K-1), got {tuple(logits.shape)}")
    num_classes = check_num_classes(logits.shape[1] + 1)
    labels = check_labels(labels, num_classes, logits.shape[0])
    _check_weights(class_weights, num_classes, "class_weights")
    thresholds = torch.arange(num_classes - 1, device=logits.device)
    in_task = labels.unsqueeze(1) >= thresholds  # sample joins task k iff y > k-1
    targets = (labels.unsqueeze(1) > thresholds).to(logits)
    per_task = F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * in_task
    counts = in_task.sum(dim=1).to(logits)
    return _reduce(per_task.sum(dim=1), labels, class_weights, reduction, counts=counts)


class CumulativeLinkLoss(nn.Module):
    """Module form of :func:`cumulative_link_loss`."""

    def __init__(
        self,
        link: str = "logit",
        class_weights: torch.Tensor | None = None,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        get_link(link)
        _check_reduction(reduction)
        self.link = link
        self.reduction = reduction
        self.register_buffer("class_weights", class_weights)

    def forward(
        self, latent: torch.Tensor, cutpoints: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """Loss for ``latent`` shape=(batch,), ``cutpoints`` shape=(K-1,), ``labels``."""
        return cumulative_link_loss(
            latent, cutpoints, labels, self.link, self.class_weights, self.reduction
        )


class CoralLoss(nn.Module):
    """Module form of :func:`coral_loss`."""

    def __init__(
        self,
        importance_weights: torch.Tensor | None = None,
        class_weights: torch.Tensor | None = None,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        _check_reduction(reduction)
        self.reduction = reduction
        self.register_buffer("importance_weights", importance_weights)
        self.register_buffer("class_weights", class_weights)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Loss for ``logits`` shape=(batch, K-1) and ``labels`` shape=(batch,)."""
        return coral_loss(
            logits, labels, self.importance_weights, self.class_weights, self.reduction
        )


class CornLoss(nn.Module):
    """Module form of :func:`corn_loss`."""

    def __init__(
        self, class_weights: torch.Tensor | None = None, reduction: Reduction = "mean"
    ) -> None:
        super().__init__()
        _check_reduction(reduction)
        self.reduction = reduction
        self.register_buffer("class_weights", class_weights)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Loss for ``logits`` shape=(batch, K-1) and ``labels`` shape=(batch,)."""
        return corn_loss(logits, labels, self.class_weights, self.reduction)
