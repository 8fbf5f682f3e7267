"""Deterministic train/validation/test assignment by a hash of the record id.

A record's split depends only on its id and the spec's salt, never on the other records or
their order: adding records to a dataset never moves an old record to another split.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ordinal.artifacts.layout import SPLITS, Split

_SCALE = float(1 << 64)


class SplitSpec(BaseModel):
    """Split fractions and the salt of the id hash.

    Attributes
    ----------
    train, validation, test : float
        Fractions in ``[0, 1]`` summing to 1 (train must be positive).
    salt : str
        Mixed into the hash; change it to draw a different (still stable) split.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    train: float = Field(default=0.8, gt=0.0, le=1.0)
    validation: float = Field(default=0.1, ge=0.0, le=1.0)
    test: float = Field(default=0.1, ge=0.0, le=1.0)
    salt: str = "ordinal-split-v1"

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitSpec:
        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"split fractions must sum to 1, got {total}")
        return self

    def edges(self) -> tuple[float, float]:
        """Upper bucket edges of train and validation."""
        return (self.train, self.train + self.validation)


def split_bucket(record_id: str, salt: str) -> float:
    """Map a record id to a number in ``[0, 1)`` with sha256 (stable across runs and hosts).

    >>> split_bucket("rev-000001", "salt-a") == split_bucket("rev-000001", "salt-a")
    True
    >>> 0.0 <= split_bucket("x", "s") < 1.0
    True
    """
    digest = hashlib.sha256(f"{salt}\x00{record_id}".encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def assign_split(record_id: str, spec: SplitSpec) -> Split:
    """Return the split (``train``, ``validation`` or ``test``) of one record id.

    >>> assign_split("rev-000001", SplitSpec(train=1.0, validation=0.0, test=0.0))
    'train'
    """
    return SPLITS[min(bisect_right(spec.edges(), split_bucket(record_id, spec.salt)), 2)]


def split_assigner(spec: SplitSpec) -> Callable[[str], Split]:
    """Return a fast ``assign(record_id) -> split`` equivalent to :func:`assign_split`.

    The salted hash state is built once and copied per record, which matters at a million
    records.

    >>> spec = SplitSpec()
    >>> all(split_assigner(spec)(i) == assign_split(i, spec) for i in ("a", "b", "c", "d"))
    True
    """
    base = hashlib.sha256(f"{spec.salt}\x00".encode())
    train_edge, validation_edge = spec.edges()
    scale = _SCALE
    from_bytes = int.from_bytes

    def assign(record_id: str) -> Split:
        h = base.copy()
        h.update(record_id.encode("utf-8", "surrogateescape"))
        bucket = from_bytes(h.digest()[:8], "big") / scale
        if bucket < train_edge:
            return "train"
        return "validation" if bucket < validation_edge else "test"

    return assign
