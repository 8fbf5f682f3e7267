"""Label-preserving image augmentation for training.

``"dihedral"`` applies one of the 8 symmetries of the square (identity, 3 rotations by
multiples of 90 degrees, 4 reflections), drawn uniformly per image each time it is read. It
keeps every count-like or orientation-free label (the demo shape counts), and it moves no
pixel off the canvas, so nothing the label depends on is cropped away. Do not use it where
orientation carries the label (digits, text, upright scenes).

Draws come from torch's global random generator, as torchvision's transforms do: seeded by
the Trainer's ``set_seed``, saved in and restored from its checkpoints, and split per
``DataLoader`` worker by torch itself.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from PIL import Image

__all__ = [
    "AUGMENTATIONS",
    "ImageAugmentation",
    "augment_image",
    "check_augmentation",
    "dihedral_transform",
]

ImageAugmentation = Literal["none", "dihedral"]
"""Names of the image augmentations :func:`augment_image` knows."""

AUGMENTATIONS: tuple[str, ...] = get_args(ImageAugmentation)

_DIHEDRAL = (
    None,
    Image.Transpose.ROTATE_90,
    Image.Transpose.ROTATE_180,
    Image.Transpose.ROTATE_270,
    Image.Transpose.FLIP_LEFT_RIGHT,
    Image.Transpose.FLIP_TOP_BOTTOM,
    Image.Transpose.TRANSPOSE,
    Image.Transpose.TRANSVERSE,
)


def dihedral_transform(image: Image.Image, index: int) -> Image.Image:
    """The ``index``-th (``0..7``) symmetry of the square applied to ``image``; 0 is identity.

    >>> image = Image.new("RGB", (3, 2))
    >>> image.putpixel((0, 0), (255, 0, 0))
    >>> [dihedral_transform(image, k).size for k in (0, 1)]
    [(3, 2), (2, 3)]
    >>> sorted(dihedral_transform(image, k).getpixel((0, 0)) for k in range(8)).count((255, 0, 0))
    2
    """
    if not 0 <= index < len(_DIHEDRAL):
        raise ValueError(f"index must be in 0..{len(_DIHEDRAL) - 1}, got {index}")
    method = _DIHEDRAL[index]
    return image.copy() if method is None else image.transpose(method)


def augment_image(image: Image.Image, augmentation: str) -> Image.Image:
    """Apply the named augmentation with a fresh random draw (torch's global generator).

    Parameters
    ----------
    image : PIL.Image.Image
    augmentation : {"none", "dihedral"}

    Returns
    -------
    PIL.Image.Image
        ``image`` itself for ``"none"``; otherwise a new image.

    Raises
    ------
    ValueError
        For an unknown name, listing the known ones.

    >>> _ = torch.manual_seed(0)
    >>> augment_image(Image.new("RGB", (4, 2)), "dihedral").size in {(4, 2), (2, 4)}
    True
    """
    check_augmentation(augmentation)
    if augmentation == "none":
        return image
    return dihedral_transform(image, int(torch.randint(len(_DIHEDRAL), ())))


def check_augmentation(augmentation: str) -> str:
    """``augmentation`` if it names a known augmentation, else a ``ValueError`` naming it.

    >>> check_augmentation("dihedral")
    'dihedral'
    """
    if augmentation not in AUGMENTATIONS:
        raise ValueError(
            f"unknown image augmentation {augmentation!r}; choose one of {list(AUGMENTATIONS)}"
        )
    return augmentation
