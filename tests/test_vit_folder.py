"""``--model PATH`` for a local Hugging Face ViT folder: resolve, head replacement, training.

No pretrained ViT can be downloaded here, so each test saves a small ViT built from a config
with ``save_pretrained`` and its ``ViTImageProcessor`` beside it, as a user would on a machine
that can download one (``ViTModel`` backbones such as ``vit-base-patch16-224-in21k``, or
``ViTForImageClassification`` checkpoints with their own 1000-class classifier).
"""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from transformers import (
    ViTConfig,
    ViTForImageClassification,
    ViTImageProcessor,
    ViTModel,
)

from ordinal import (
    TrainSpec,
    build_ordinal_model,
    load_ordinal_model,
    ordinal_forward,
    resolve_model,
    train_ordinal_model,
)
from ordinal.data.demo_images import make_shape_records

IMAGE_SIZE = 48  # not a preset's size: the folder's own size must be what is used
MEAN, STD = [0.25, 0.5, 0.75], [0.2, 0.3, 0.4]
PATCH_WEIGHT = "embeddings.patch_embeddings.projection.weight"


def _config(**extra: object) -> ViTConfig:
    return ViTConfig(
        image_size=IMAGE_SIZE,
        patch_size=16,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        **extra,
    )


def _save_vit(folder, kind: str) -> dict[str, torch.Tensor]:
    """Save a ViT of ``kind`` and its processor to ``folder``; return its backbone weights."""
    torch.manual_seed(7)
    if kind == "backbone":
        model = ViTModel(_config())
        weights = model.state_dict()
    else:  # a classification checkpoint with a classifier of its own (10 classes)
        model = ViTForImageClassification(_config(num_labels=10))
        prefix = "vit."
        weights = {k[len(prefix) :]: v for k, v in model.state_dict().items() if k[:4] == prefix}
    model.save_pretrained(folder)
    size = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    ViTImageProcessor(size=size, image_mean=MEAN, image_std=STD).save_pretrained(folder)
    return {k: v.clone() for k, v in weights.items()}


@pytest.mark.parametrize("kind", ["backbone", "classifier"])
def test_a_saved_vit_folder_gets_an_ordinal_head(kind, tmp_path):
    saved = _save_vit(tmp_path, kind)
    resolved = resolve_model(tmp_path)
    assert resolved.source == tmp_path
    assert type(resolved.processor) is ViTImageProcessor
    assert resolved.processor.size == {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    assert resolved.processor.image_mean == MEAN and resolved.processor.image_std == STD
    assert resolved.augment == "none"  # a user's images: no augmentation assumed

    model = build_ordinal_model(resolved.source, 5, label_names=[f"{k + 1}" for k in range(5)])
    assert model.config.image_size == IMAGE_SIZE
    # The pretrained backbone is loaded, the classifier replaced by the 1-unit projection.
    loaded = model.vit.state_dict()[PATCH_WEIGHT]
    torch.testing.assert_close(loaded, saved[PATCH_WEIGHT], rtol=0, atol=0)
    assert model.classifier.out_features == 1
    assert model.config.ordinal["family"] == "vit"
    assert model.config.ordinal["num_classes"] == 5

    # Images of another size are resized to the folder's 48 x 48 by its own processor.
    images = [r["image"] for r in make_shape_records(n=3, seed=1, image_size=64)]
    inputs = resolved.processor(images=images, return_tensors="pt")
    assert inputs["pixel_values"].shape == (3, 3, IMAGE_SIZE, IMAGE_SIZE)
    with torch.no_grad():
        out = ordinal_forward(model.eval(), **inputs)
    assert out.probs.shape == (3, 5)
    torch.testing.assert_close(out.probs.sum(dim=1), torch.ones(3))


def test_training_from_a_vit_folder_saves_its_processor(tmp_path):
    folder = tmp_path / "vit"
    saved = _save_vit(folder, "backbone")
    records = make_shape_records(n=24, seed=0, image_size=64)
    spec = TrainSpec(
        model=str(folder),
        max_steps=3,
        batch_size=8,
        learning_rate=1e-3,
        report_to=[],
        checkpoint_interval_seconds=None,
        progress_interval_seconds=None,
        output_dir=tmp_path / "run",
    )
    result = train_ordinal_model(spec, records[:16], records[16:])
    assert result.global_step == 3
    assert 0.0 <= result.metrics["eval_mae"] <= 4.0
    # The trained model keeps the folder's size and normalisation, and it moved.
    processor = json.loads((result.model_dir / "preprocessor_config.json").read_text())
    assert processor["size"] == {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    assert processor["image_mean"] == MEAN
    trained = load_ordinal_model(result.model_dir)
    assert trained.config.image_size == IMAGE_SIZE
    assert not torch.equal(trained.vit.state_dict()[PATCH_WEIGHT], saved[PATCH_WEIGHT])
    assert resolve_model(result.model_dir).processor.size == processor["size"]


def test_a_vit_folder_with_a_mismatched_or_missing_processor_is_refused(tmp_path):
    _save_vit(tmp_path, "backbone")
    other = {"height": 32, "width": 32}
    ViTImageProcessor(size=other).save_pretrained(tmp_path)
    with pytest.raises(
        ValueError, match=r"preprocessor_config.json resizes images to 32x32.*48x48"
    ):
        resolve_model(tmp_path)
    (tmp_path / "preprocessor_config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"image model \('vit'\).*preprocessor_config"):
        resolve_model(tmp_path)


def test_the_image_default_preset_is_a_small_vit_with_dihedral_augmentation():
    resolved = resolve_model("vit-shapes")
    config = resolved.source
    assert (config.image_size, config.patch_size) == (64, 8)
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (64, 4, 4)
    assert resolved.processor.size == {"height": 64, "width": 64}
    assert resolved.augment == "dihedral"
    assert resolve_model("vit-tiny").augment == "none"  # the test preset stays plain
    image = Image.new("RGB", (64, 64))
    pixels = resolved.processor(images=image, return_tensors="pt")["pixel_values"]
    assert pixels.shape == (1, 3, 64, 64)
