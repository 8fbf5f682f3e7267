"""The spot fallback policy: which provider errors are worth another attempt, and how.

Capacity errors are about one zone at one moment: try another zone's subnet, then give up
on spot and launch on-demand. Spot quota and price errors are not about a zone: go straight
to on-demand. Parameter, image and permission errors fail at once, with the provider's
message: retrying cannot fix them. Unknown codes fail at once too (never retry blindly).
Everything happens within :data:`MAX_ATTEMPTS` orchestration attempts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "MAX_ATTEMPTS",
    "Attempt",
    "ErrorClass",
    "Placement",
    "classify",
    "next_placement",
]

MAX_ATTEMPTS = 3


class ErrorClass(StrEnum):
    """How the fallback policy treats an error code."""

    CAPACITY = "capacity"  # another zone, then on-demand
    SPOT_QUOTA = "spot-quota"  # on-demand
    FATAL = "fatal"  # fail at once with the provider's message


_CAPACITY = {
    "InsufficientInstanceCapacity",
    "InsufficientCapacity",
    "InsufficientHostCapacity",
    "UnfulfillableCapacity",
    "InsufficientCapacityOnHost",
}
_SPOT_QUOTA = {
    "MaxSpotInstanceCountExceeded",
    "SpotMaxPriceTooLow",
    "InsufficientFreeAddressesInSubnet",
}


def classify(code: str) -> ErrorClass:
    """The class of an EC2 error code (see the module docstring).

    >>> classify("InsufficientInstanceCapacity").value
    'capacity'
    >>> classify("SpotMaxPriceTooLow").value
    'spot-quota'
    >>> classify("InvalidAMIID.NotFound").value
    'fatal'
    """
    if code in _CAPACITY:
        return ErrorClass.CAPACITY
    if code in _SPOT_QUOTA:
        return ErrorClass.SPOT_QUOTA
    return ErrorClass.FATAL


@dataclass(frozen=True)
class Placement:
    """Where and how an attempt launches."""

    market: str
    zone: str
    subnet_id: str


@dataclass
class Attempt:
    """One orchestration attempt and its outcome (recorded in the run summary)."""

    number: int
    market: str
    zone: str
    subnet_id: str
    outcome: str  # "ok" or the error code
    error_class: str | None = None
    message: str | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


def next_placement(
    current: Placement, error_code: str, subnets: list[tuple[str, str]], tried_zones: set[str]
) -> Placement | None:
    """The next placement after ``error_code``, or ``None`` when the error is fatal.

    Parameters
    ----------
    current : Placement
        The attempt that failed.
    error_code : str
        The provider's error code.
    subnets : list of (zone, subnet_id)
        Candidate subnets, in preference order.
    tried_zones : set of str
        Zones already tried on spot.
    """
    kind = classify(error_code)
    if kind is ErrorClass.FATAL:
        return None
    if current.market == "spot" and kind is ErrorClass.CAPACITY:
        for zone, subnet in subnets:
            if zone not in tried_zones:
                return Placement("spot", zone, subnet)
    if current.market == "spot":
        return Placement("on-demand", current.zone, current.subnet_id)
    # On-demand capacity in this zone is short: another zone, on-demand.
    if kind is ErrorClass.CAPACITY:
        for zone, subnet in subnets:
            if zone != current.zone:
                return Placement("on-demand", zone, subnet)
    return None
