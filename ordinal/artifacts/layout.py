"""The one place that builds storage keys for datasets and models.

Keys are POSIX paths relative to the storage root, following the roadmap's layout::

    datasets/raw/{dataset}/{version}/...
    datasets/processed/{dataset}/{version}/{train,validation,test}/...
    datasets/processed/{dataset}/{version}/quarantine/...
    datasets/processed/{dataset}/calibration/...
    models/onnx/{experiment}/{fp32,int8}/...

Nothing else in the library joins these strings by hand: if the layout changes, it changes
here. Every name component is checked, so a dataset called ``../x`` cannot escape the root.
"""

from __future__ import annotations

import re
from typing import Literal

from ordinal.artifacts.errors import LayoutError

Split = Literal["train", "validation", "test"]
SPLITS: tuple[Split, ...] = ("train", "validation", "test")
Precision = Literal["fp32", "int8"]

MANIFEST_NAME = "manifest.json"

_COMPONENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_component(value: str, what: str = "name") -> str:
    """Return ``value`` if it is safe as one path component, else raise :class:`LayoutError`.

    >>> check_component("reviews")
    'reviews'
    >>> check_component("../etc")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ordinal.artifacts.errors.LayoutError: invalid name '../etc': ...
    """
    if not isinstance(value, str) or not _COMPONENT.match(value) or ".." in value:
        raise LayoutError(
            f"invalid {what} {value!r}: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def join(*parts: str) -> str:
    """Join key parts with ``/``, refusing empty, absolute or parent-relative parts.

    >>> join("datasets/raw/reviews/v1", "images/a.png")
    'datasets/raw/reviews/v1/images/a.png'
    """
    cleaned: list[str] = []
    for part in parts:
        for piece in part.split("/"):
            if piece in ("", ".", ".."):
                raise LayoutError(f"invalid key part {part!r} in {parts!r}")
            cleaned.append(piece)
    return "/".join(cleaned)


def raw_dir(dataset: str, version: str) -> str:
    """Key prefix of a raw dataset version (write-once)."""
    return join(
        "datasets", "raw", check_component(dataset, "dataset"), check_component(version, "version")
    )


def raw_manifest(dataset: str, version: str) -> str:
    """Key of a raw dataset version's manifest."""
    return join(raw_dir(dataset, version), MANIFEST_NAME)


def processed_dir(dataset: str, version: str) -> str:
    """Key prefix of a processed dataset version."""
    return join(
        "datasets",
        "processed",
        check_component(dataset, "dataset"),
        check_component(version, "version"),
    )


def processed_split(dataset: str, version: str, split: Split) -> str:
    """Key prefix of one split (``train``, ``validation`` or ``test``)."""
    if split not in SPLITS:
        raise LayoutError(f"unknown split {split!r}; expected one of {SPLITS}")
    return join(processed_dir(dataset, version), split)


def quarantine_dir(dataset: str, version: str) -> str:
    """Key prefix of the rejected records of a processed dataset version."""
    return join(processed_dir(dataset, version), "quarantine")


def reports_dir(dataset: str, version: str) -> str:
    """Key prefix of the preprocessing reports (label distribution, rejection summary)."""
    return join(processed_dir(dataset, version), "reports")


def processed_manifest(dataset: str, version: str) -> str:
    """Key of a processed dataset version's manifest."""
    return join(processed_dir(dataset, version), MANIFEST_NAME)


def calibration_dir(dataset: str) -> str:
    """Key prefix of a dataset's calibration set."""
    return join("datasets", "processed", check_component(dataset, "dataset"), "calibration")


def calibration_manifest(dataset: str) -> str:
    """Key of a dataset's calibration manifest."""
    return join(calibration_dir(dataset), MANIFEST_NAME)


def onnx_dir(experiment: str, precision: Precision) -> str:
    """Key prefix of an experiment's exported ONNX model (``fp32`` or ``int8``)."""
    if precision not in ("fp32", "int8"):
        raise LayoutError(f"unknown precision {precision!r}; expected 'fp32' or 'int8'")
    return join("models", "onnx", check_component(experiment, "experiment"), precision)


def model_dir(kind: str, experiment: str) -> str:
    """Key prefix for other model artefacts of an experiment (``checkpoints``, ``bundles``...)."""
    return join("models", check_component(kind, "kind"), check_component(experiment, "experiment"))
