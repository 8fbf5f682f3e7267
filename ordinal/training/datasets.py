"""Torch datasets that feed text or images with ordinal labels to the Trainer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from ordinal.training.augment import augment_image, check_augmentation

__all__ = ["ImageOrdinalDataset", "TextOrdinalDataset"]


def _int_labels(labels: Sequence[Any], size: int) -> list[int]:
    if len(labels) != size:
        raise ValueError(f"{len(labels)} labels for {size} inputs")
    out = []
    for index, value in enumerate(labels):
        if isinstance(value, bool) or int(value) != value:
            raise ValueError(f"label at index {index} is not an integer: {value!r}")
        out.append(int(value))
    return out


class TextOrdinalDataset(Dataset):
    """Texts tokenised once up front (unpadded), with integer labels.

    Pair it with ``transformers.DataCollatorWithPadding`` so each batch pads to its longest
    member only.

    Parameters
    ----------
    texts : sequence of str
    labels : sequence of int
        Labels in ``[0, K)``.
    tokenizer : PreTrainedTokenizerBase
    max_length : int
        Longer texts are truncated.
    """

    def __init__(
        self, texts: Sequence[str], labels: Sequence[int], tokenizer: Any, max_length: int = 64
    ) -> None:
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2, got {max_length}")
        self.labels = _int_labels(labels, len(texts))
        self.encodings = tokenizer(list(texts), truncation=True, max_length=max_length)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = {key: values[index] for key, values in self.encodings.items()}
        item["labels"] = self.labels[index]
        return item


class ImageOrdinalDataset(Dataset):
    """Images turned into ``pixel_values`` by an image processor on access.

    Parameters
    ----------
    images : sequence of PIL.Image.Image
    labels : sequence of int
    image_processor : BaseImageProcessor
    augment : {"none", "dihedral"}
        Label-preserving augmentation drawn afresh on every access, before the processor
        (:mod:`ordinal.training.augment`). Use it for training sets only.
    """

    def __init__(
        self,
        images: Sequence[Any],
        labels: Sequence[int],
        image_processor: Any,
        augment: str = "none",
    ) -> None:
        self.labels = _int_labels(labels, len(images))
        self.images = list(images)
        self.image_processor = image_processor
        self.augment = check_augmentation(augment)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image = augment_image(self.images[index].convert("RGB"), self.augment)
        pixels = self.image_processor(images=image, return_tensors="pt")
        return {
            "pixel_values": pixels["pixel_values"][0],
            "labels": torch.tensor(self.labels[index]),
        }
