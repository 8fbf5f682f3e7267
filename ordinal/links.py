"""Link functions of cumulative-link models, with numerically stable log-CDFs.

A link is the inverse of a CDF ``F`` on the real line. The cumulative-link model says
``P(y <= k | x) = F(theta_k - eta)``. Each link here gives ``F`` itself and the two
log-probabilities the likelihood needs, ``log F(z)`` and ``log(1 - F(z))``, computed without
forming ``1 - F`` in floating point, so the loss stays finite far in the tails.

>>> import torch
>>> get_link("logit").cdf(torch.tensor([0.0])).item()
0.5
>>> sorted(LINKS)
['cloglog', 'logit', 'probit']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["LINKS", "Link", "get_link"]

# Beyond this argument, exp(z) would overflow float32 in the complementary log-log link.
_CLOGLOG_MAX = 80.0
# Below this argument, log(1 - exp(-exp(z))) equals z to float32 precision.
_CLOGLOG_TAIL = -20.0
# log_ndtr's backward squares its argument; past this bound that overflows float32 into a
# NaN gradient. The log-probability there (-5e7) is already far beyond any useful tail.
_PROBIT_BOUND = 1e4

Tensor = torch.Tensor


@dataclass(frozen=True)
class Link:
    """A link function: the CDF ``F`` and its stable ``log F`` and ``log(1 - F)``."""

    name: str
    cdf: Callable[[Tensor], Tensor]
    log_cdf: Callable[[Tensor], Tensor]
    log_sf: Callable[[Tensor], Tensor]


def _logit_cdf(z: Tensor) -> Tensor:
    return torch.sigmoid(z)


def _logit_log_cdf(z: Tensor) -> Tensor:
    return F.logsigmoid(z)


def _logit_log_sf(z: Tensor) -> Tensor:
    return F.logsigmoid(-z)


def _probit_cdf(z: Tensor) -> Tensor:
    return torch.special.ndtr(z)


def _probit_log_cdf(z: Tensor) -> Tensor:
    return torch.special.log_ndtr(z.clamp(-_PROBIT_BOUND, _PROBIT_BOUND))


def _probit_log_sf(z: Tensor) -> Tensor:
    return torch.special.log_ndtr(-z.clamp(-_PROBIT_BOUND, _PROBIT_BOUND))


def _cloglog_cdf(z: Tensor) -> Tensor:
    # F(z) = 1 - exp(-exp(z)); -expm1 keeps precision where F is tiny.
    return -torch.expm1(-torch.exp(z.clamp(max=_CLOGLOG_MAX)))


def _cloglog_log_cdf(z: Tensor) -> Tensor:
    # In the far left tail log F(z) -> z; evaluating the exact form there gives log(0).
    tail = z < _CLOGLOG_TAIL
    safe = torch.where(tail, torch.zeros_like(z), z.clamp(max=_CLOGLOG_MAX))
    exact = torch.log(-torch.expm1(-torch.exp(safe)))
    return torch.where(tail, z, exact)


def _cloglog_log_sf(z: Tensor) -> Tensor:
    return -torch.exp(z.clamp(max=_CLOGLOG_MAX))


LINKS: dict[str, Link] = {
    "logit": Link("logit", _logit_cdf, _logit_log_cdf, _logit_log_sf),
    "probit": Link("probit", _probit_cdf, _probit_log_cdf, _probit_log_sf),
    "cloglog": Link("cloglog", _cloglog_cdf, _cloglog_log_cdf, _cloglog_log_sf),
}


def get_link(name: str) -> Link:
    """Return the link called ``name``; a ``ValueError`` lists the known ones otherwise.

    >>> get_link("probit").name
    'probit'
    """
    try:
        return LINKS[name]
    except KeyError:
        raise ValueError(f"unknown link {name!r}; choose one of {sorted(LINKS)}") from None
