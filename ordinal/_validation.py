"""Input checks shared by heads, losses and decoders, with errors that name the culprit."""

from __future__ import annotations

import torch

from ordinal.exceptions import LabelError

__all__ = ["check_labels", "check_num_classes"]


def check_num_classes(num_classes: int) -> int:
    """Return ``num_classes`` if it is an integer >= 2, else raise ``ValueError``."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int):
        raise ValueError(f"num_classes must be an int, got {num_classes!r}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2 for an ordinal problem, got {num_classes}")
    return num_classes


def check_labels(labels: torch.Tensor, num_classes: int, batch_size: int) -> torch.Tensor:
    """Check integer labels of shape ``(batch_size,)`` in ``[0, num_classes)``.

    Raises a ``LabelError`` (a ``ValueError``) that names the offending values and positions.
    """
    if not isinstance(labels, torch.Tensor):
        raise LabelError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    if labels.dim() != 1:
        raise LabelError(f"labels must have shape (batch,), got shape {tuple(labels.shape)}")
    if labels.numel() == 0:
        raise LabelError("empty batch: labels has no elements")
    if labels.shape[0] != batch_size:
        raise LabelError(
            f"mismatched shapes: {labels.shape[0]} labels for a batch of {batch_size} predictions"
        )
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        example = labels.flatten()[:5].tolist()
        raise LabelError(
            f"labels must be integers (torch.long), got dtype {labels.dtype} with values {example}"
        )
    bad = (labels < 0) | (labels >= num_classes)
    if bool(bad.any()):
        positions = torch.nonzero(bad).flatten()[:5].tolist()
        values = labels[bad][:5].tolist()
        raise LabelError(
            f"labels must lie in [0, {num_classes}); got {values} at positions {positions}"
        )
    return labels.long()
