"""Training-set image augmentation: the dihedral group, seeded, training data only."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import ViTImageProcessor

from ordinal.training import ImageOrdinalDataset
from ordinal.training.augment import AUGMENTATIONS, augment_image, dihedral_transform


def _image() -> Image.Image:
    """An asymmetric 4 x 4 image: every symmetry of the square gives different pixels."""
    pixels = np.arange(48, dtype=np.uint8).reshape(4, 4, 3) * 5
    return Image.fromarray(pixels)


def test_the_eight_symmetries_are_distinct_and_keep_the_pixels():
    image = _image()
    results = [np.asarray(dihedral_transform(image, k)) for k in range(8)]
    assert len({r.tobytes() for r in results}) == 8
    assert all(sorted(r.ravel()) == sorted(np.asarray(image).ravel()) for r in results)
    np.testing.assert_array_equal(results[0], np.asarray(image))
    np.testing.assert_array_equal(results[1], np.rot90(np.asarray(image)))  # 90 degrees
    with pytest.raises(ValueError, match=r"index must be in 0\.\.7, got 8"):
        dihedral_transform(image, 8)


def test_augmented_dataset_draws_symmetries_reproducibly():
    processor = ViTImageProcessor(size={"height": 4, "width": 4}, do_normalize=False)
    plain = ImageOrdinalDataset([_image()], [2], processor)
    augmented = ImageOrdinalDataset([_image()], [2], processor, augment="dihedral")
    originals = {
        processor(images=dihedral_transform(_image(), k), return_tensors="pt")["pixel_values"][0]
        .numpy()
        .tobytes()
        for k in range(8)
    }

    def draws(seed: int) -> list[bytes]:
        torch.manual_seed(seed)
        return [augmented[0]["pixel_values"].numpy().tobytes() for _ in range(40)]

    first = draws(0)
    assert set(first) <= originals  # always one of the 8 symmetries
    assert len(set(first)) >= 6  # and not stuck on a few (40 draws of 8 equally likely)
    assert draws(0) == first  # seeded: the same draws again
    assert augmented[0]["labels"].item() == 2
    # Without augmentation the image is the original every time.
    assert {plain[0]["pixel_values"].numpy().tobytes() for _ in range(5)} == {
        processor(images=_image(), return_tensors="pt")["pixel_values"][0].numpy().tobytes()
    }


def test_unknown_augmentation_is_named():
    assert AUGMENTATIONS == ("none", "dihedral")
    with pytest.raises(ValueError, match=r"unknown image augmentation 'flip'.*'dihedral'"):
        ImageOrdinalDataset([_image()], [0], None, augment="flip")
    with pytest.raises(ValueError, match="'rotate'"):
        augment_image(_image(), "rotate")
