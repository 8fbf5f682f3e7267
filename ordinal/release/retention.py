"""Retention policy maths: which released versions a sweep keeps, and why."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["RetentionPlan", "plan_retention", "semver_key"]


def semver_key(version: str) -> tuple[int, int, int]:
    """Sort key of ``MAJOR.MINOR.PATCH``.

    >>> sorted(["1.10.0", "1.2.0", "0.9.9"], key=semver_key)
    ['0.9.9', '1.2.0', '1.10.0']
    """
    major, minor, patch = (int(p) for p in version.split("."))
    return major, minor, patch


@dataclass
class RetentionPlan:
    """What a sweep keeps (with the reasons) and deletes."""

    kept: dict[str, list[str]] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)

    def rows(self) -> list[tuple[str, str, str]]:
        """``(version, keep|delete, reasons)`` for every version, newest first."""
        versions = sorted([*self.kept, *self.deleted], key=semver_key, reverse=True)
        return [
            (v, "keep", "; ".join(self.kept[v])) if v in self.kept else (v, "delete", "allowed")
            for v in versions
        ]


def plan_retention(
    versions: Iterable[str],
    ever_production: Iterable[str],
    *,
    keep_last: int = 3,
    current: Iterable[str] = (),
) -> RetentionPlan:
    """Keep the newest ``keep_last`` versions, every version that ever held production and
    every version that holds an alias now; everything else may go.

    >>> plan = plan_retention(["1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0"], ["1.0.0"])
    >>> plan.deleted, sorted(plan.kept)
    (['1.1.0'], ['1.0.0', '1.2.0', '1.3.0', '1.4.0'])
    """
    if keep_last < 3:
        raise ValueError(f"keep_last={keep_last}: the policy keeps at least the last 3 versions")
    ordered = sorted(set(versions), key=semver_key, reverse=True)
    production = set(ever_production)
    holding = set(current)
    plan = RetentionPlan()
    for index, version in enumerate(ordered):
        reasons = []
        if index < keep_last:
            reasons.append(f"one of the last {keep_last} releases")
        if version in production:
            reasons.append("held production")
        if version in holding:
            reasons.append("holds an alias now")
        if reasons:
            plan.kept[version] = reasons
        else:
            plan.deleted.append(version)
    plan.deleted.sort(key=semver_key)
    return plan
