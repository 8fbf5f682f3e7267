"""Cutpoints that are strictly increasing by construction.

``theta_0 = first`` and ``theta_k = theta_{k-1} + softplus(raw_k) + floor_k``: every
increment is positive whatever values the optimiser gives ``raw``, so no step can reorder
the cutpoints and nothing is ever clamped after a step.

The floor keeps each increment representable in float32 when ``softplus`` underflows or the
cutpoints are huge (a diverging run): ``floor_k = min_gap + REL_GAP * S_{k-1}`` with
``S_{k-1} = |theta_0| + sum_{j<k} softplus(raw_j)``, which bounds the magnitude of
``theta_{k-1}``. ``REL_GAP`` (1e-5) is far above float32's relative spacing (6e-8), so
``theta_k > theta_{k-1}`` holds in floating point too, at any scale.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ordinal.links import get_link

__all__ = ["OrderedCutpoints", "default_cutpoints"]


def default_cutpoints(
    num_classes: int, link: str = "logit", class_prior: torch.Tensor | None = None
) -> torch.Tensor:
    """Cutpoints that reproduce ``class_prior`` at ``eta = 0``, shape=(K-1,).

    Without a prior every class is equally likely. With the training label frequencies as
    the prior this is the maximum-likelihood fit of an intercept-only model, a good start.

    >>> [round(v, 4) for v in default_cutpoints(3).tolist()]
    [-0.6931, 0.6931]

    A prior of (0.5, 0.25, 0.25) gives ``logit(0.5) = 0`` and ``logit(0.75) = 1.0986``, moved
    slightly by the smoothing that keeps absent classes finite:

    >>> prior = torch.tensor([0.5, 0.25, 0.25])
    >>> [round(v, 3) for v in default_cutpoints(3, class_prior=prior).tolist()]
    [-0.002, 1.097]
    """
    fn = get_link(link)
    if class_prior is None:
        p = torch.arange(1, num_classes, dtype=torch.float64) / num_classes
    else:
        prior = torch.as_tensor(class_prior, dtype=torch.float64)
        if prior.shape != (num_classes,) or bool((prior < 0).any()) or float(prior.sum()) <= 0:
            raise ValueError(f"class_prior must be {num_classes} non-negative weights, got {prior}")
        # Smooth so an absent class still gets a finite, ordered cutpoint.
        prior = (prior / prior.sum() + 1e-3) / (1 + 1e-3 * num_classes)
        p = torch.cumsum(prior, 0)[:-1]
    # Invert F at p = (k+1)/K by bisection on the link's own CDF, so every link works alike.
    lo = torch.full_like(p, -40.0)
    hi = torch.full_like(p, 40.0)
    for _ in range(100):
        mid = (lo + hi) / 2
        below = fn.cdf(mid) < p
        lo = torch.where(below, mid, lo)
        hi = torch.where(below, hi, mid)
    return ((lo + hi) / 2).to(torch.get_default_dtype())


#: Relative part of the increment floor (see the module docstring).
REL_GAP = 1e-5


def _inverse_softplus(y: torch.Tensor) -> torch.Tensor:
    return y + torch.log(-torch.expm1(-y))


class OrderedCutpoints(nn.Module):
    """``K-1`` learnable, strictly increasing thresholds."""

    def __init__(self, num_cutpoints: int, init: torch.Tensor, min_gap: float = 1e-3) -> None:
        super().__init__()
        if num_cutpoints < 1:
            raise ValueError(f"need at least one cutpoint, got {num_cutpoints}")
        if not (min_gap > 0 and math.isfinite(min_gap)):
            raise ValueError(f"min_gap must be a positive finite number, got {min_gap}")
        self.min_gap = float(min_gap)
        self.first = nn.Parameter(torch.zeros(()))
        self.raw_gaps = nn.Parameter(torch.zeros(num_cutpoints - 1))
        self.set(init)

    def forward(self) -> torch.Tensor:
        """The cutpoints, shape=(K-1,)."""
        soft = F.softplus(self.raw_gaps)
        running = torch.cumsum(soft, dim=0) - soft  # sum_{j<k} softplus(raw_j)
        gaps = soft + self.min_gap + REL_GAP * (self.first.abs() + running)
        return torch.cat([self.first.reshape(1), self.first + torch.cumsum(gaps, dim=0)])

    @torch.no_grad()
    def set(self, values: torch.Tensor | list[float]) -> None:
        """Set the cutpoints to ``values`` (strictly increasing, gaps above ``min_gap``)."""
        values = torch.as_tensor(values, dtype=self.first.dtype)
        expected = self.raw_gaps.numel() + 1
        if values.shape != (expected,):
            raise ValueError(f"expected {expected} cutpoints, got shape {tuple(values.shape)}")
        if not bool(torch.isfinite(values).all()):
            raise ValueError(f"cutpoints must be finite, got {values.tolist()}")
        exact = values.double()
        running = exact[0].abs()
        soft = []
        for k, gap in enumerate((exact[1:] - exact[:-1]).tolist(), start=1):
            part = gap - self.min_gap - REL_GAP * float(running)
            # Cutpoints saved from a model whose gap sat at its floor come back a few float32
            # ulps short of it: treat that as the floor, refuse anything clearly below.
            rounding = 4 * torch.finfo(torch.float32).eps * max(1.0, abs(float(exact[k])))
            if 0 < gap and -rounding < part <= 0:
                part = 1e-12
            if part <= 0:
                raise ValueError(
                    f"cutpoints must increase by more than min_gap={self.min_gap} "
                    f"(plus {REL_GAP:g} of their magnitude), got {values.tolist()}"
                )
            soft.append(part)
            running = running + part
        self.first.copy_(values[0])
        self.raw_gaps.copy_(_inverse_softplus(torch.tensor(soft, dtype=torch.float64)).to(values))
