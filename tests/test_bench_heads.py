"""The heads benchmark (quick mode, for real) and the baseline heads it compares against."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import BertConfig

from ordinal import available_heads, ordinal_forward
from ordinal.heads.baselines import (
    BASELINE_HEADS,
    NominalDecoder,
    NominalHead,
    RegressionDecoder,
    RegressionHead,
    build_baseline_model,
)
from ordinal.intervals import Interval

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "heads.json"


@pytest.fixture(scope="module")
def bench():
    """``benchmarks/bench_heads.py`` imported as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("bench_heads", ROOT / "benchmarks/bench_heads.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_heads"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("bench_heads", None)


def _check_report(report: dict, bench) -> None:
    """The JSON's shape, and every interval containing its estimate."""
    expected = [*bench.ARMS, *bench.DERIVED]
    assert list(report["arms"]) == expected
    params = report["parameters"]
    assert params["baseline"] == bench.BASELINE
    n = params["held_out_records"]
    assert sum(params["held_out_label_counts"]) == n
    assert params["train_records"] + n == params["num_records"]
    for name, arm in report["arms"].items():
        assert arm["kind"] in ("ordinal", "baseline", "derived")
        assert sum(arm["predicted_label_counts"]) == n
        assert 0.0 <= arm["accuracy"] <= 1.0
        assert arm["training"]["steps"] == params["steps"]
        intervals = [arm["metrics"][m] for m in bench.METRICS]
        if name == bench.BASELINE:
            assert "vs_baseline" not in arm
        else:
            diffs = arm["vs_baseline"]
            assert {d["verdict"] for d in diffs.values()} <= {
                "better",
                "worse",
                "no clear difference",
            }
            intervals += [diffs[m] for m in bench.METRICS]
        for iv in intervals:
            assert iv["n"] == n and iv["confidence"] == params["confidence"]
            assert iv["low"] <= iv["estimate"] <= iv["high"], (name, iv)
            assert all(math.isfinite(iv[k]) for k in ("low", "estimate", "high"))
    # Ordinal decoding of the nominal model's own probabilities: same RPS, by construction.
    assert (
        report["arms"]["nominal_median"]["metrics"]["rps"]
        == report["arms"]["nominal"]["metrics"]["rps"]
    )


def test_quick_mode_writes_the_report(bench, tmp_path, capsys):
    out = tmp_path / "heads.json"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["benchmark"] == "heads"
    assert report["parameters"]["model"] == "bert-tiny"
    assert report["parameters"]["steps"] == bench.QUICK.steps
    _check_report(report, bench)
    printed = capsys.readouterr().out
    assert "| `cumulative_link` |" in printed and f"wrote {out}" in printed
    assert not list(tmp_path.glob("*.tmp"))  # written atomically


def test_recorded_run_has_the_same_shape(bench):
    """The committed MiniLM run (docs/benchmarks-heads.md reads it) is complete and sound."""
    report = json.loads(RESULTS.read_text())
    assert report["parameters"]["model"] == "minilm"
    _check_report(report, bench)


def test_verdict_reads_the_interval(bench):
    assert bench.verdict(Interval(-0.1, -0.2, -0.05, 0.95, 100), "mae") == "better"
    assert bench.verdict(Interval(-0.1, -0.2, -0.05, 0.95, 100), "qwk") == "worse"
    assert bench.verdict(Interval(0.1, 0.05, 0.2, 0.95, 100), "qwk") == "better"
    assert bench.verdict(Interval(0.1, -0.05, 0.2, 0.95, 100), "rps") == "no clear difference"
    with pytest.raises(ValueError, match="steps must be >= 1"):
        bench.BenchSpec(steps=0)


# --------------------------------------------------------------------------- baselines


def test_baselines_stay_out_of_the_head_registry():
    assert not set(BASELINE_HEADS) & set(available_heads())


def test_nominal_head_is_softmax_cross_entropy_with_argmax():
    torch.manual_seed(0)
    decoder = NominalDecoder(4)
    with torch.no_grad():
        decoder.class_bias.copy_(torch.tensor([0.5, -0.2, 0.1, 0.0]))
    scores = torch.randn(6, 4)
    labels = torch.tensor([0, 1, 2, 3, 1, 0])
    logits = scores + decoder.class_bias
    out = decoder(scores, labels)
    assert torch.allclose(out.probs, torch.softmax(logits, dim=1))
    assert out.label.tolist() == logits.argmax(dim=1).tolist()
    expected_tail = 1 - torch.cumsum(out.probs, dim=1)[:, :-1]
    assert torch.allclose(out.cum_probs, expected_tail, atol=1e-6)
    assert torch.isclose(out.loss, F.cross_entropy(logits, labels))
    assert decoder.loss(scores, labels, reduction="none").shape == (6,)
    assert torch.isclose(decoder.loss(scores, labels, reduction="sum"), out.loss * 6)
    weights = torch.tensor([1.0, 0.0, 0.0, 0.0])
    weighted = decoder.loss(scores, labels, class_weights=weights)
    only_zero = F.cross_entropy(logits[labels == 0], labels[labels == 0])
    assert torch.isclose(weighted, only_zero)
    with pytest.raises(ValueError, match=r"class_weights must have shape \(4,\)"):
        decoder.loss(scores, labels, class_weights=torch.ones(3))
    with pytest.raises(ValueError, match="reduction must be"):
        decoder.loss(scores, labels, reduction="max")
    with pytest.raises(ValueError, match="labels must lie in"):
        decoder.loss(scores, torch.tensor([0, 1, 2, 3, 4, 0]))
    with pytest.raises(ValueError, match=r"shape \(batch, 4\)"):
        decoder(torch.zeros(2, 3))


def test_nominal_prior_start_reproduces_the_class_frequencies():
    decoder = NominalDecoder(3)
    decoder.init_from_class_prior(torch.tensor([60.0, 30.0, 10.0]))
    probs = decoder(torch.zeros(1, 3)).probs[0]
    assert torch.allclose(probs, torch.tensor([0.6, 0.3, 0.1]), atol=2e-3)
    state = decoder.config_state()
    assert state["baseline"] and state["prediction"] == "argmax"
    other = NominalDecoder(3)
    other.load_config_state(state)
    assert torch.allclose(other.class_bias, decoder.class_bias)
    assert decoder.log_values() == {}
    assert NominalHead(8, 3).projection.bias is None  # the decoder owns the biases


def test_regression_head_rounds_and_clips_a_mse_fit():
    decoder = RegressionDecoder(5)
    decoder.init_from_class_prior(torch.tensor([0.0, 1.0, 0.0, 1.0, 2.0]))  # mean label 3.0
    assert decoder.offset.item() == pytest.approx(3.0)
    scores = torch.tensor([[-9.0], [-1.4], [-0.6], [0.4], [0.5], [7.0]])  # s = 3 + score
    out = decoder(scores)
    assert out.latent.tolist() == pytest.approx([-6.0, 1.6, 2.4, 3.4, 3.5, 10.0])
    assert out.label.tolist() == [0, 2, 2, 3, 3, 4]  # rounded (a tie down), clipped to [0, 4]
    assert torch.equal(out.probs, F.one_hot(out.label, 5).float())
    labels = torch.tensor([0, 1, 2, 3, 4, 4])
    assert torch.isclose(decoder.loss(scores, labels), ((out.latent - labels) ** 2).mean())
    state = decoder.config_state()
    other = RegressionDecoder(5)
    other.load_config_state(state)
    assert other.offset.item() == pytest.approx(3.0)
    assert decoder.log_values() == {"regression_offset": pytest.approx(3.0)}
    assert RegressionHead(4, 5).projection.out_features == 1


def test_build_baseline_model_trains_with_the_ordinal_machinery():
    config = BertConfig(
        vocab_size=30, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32,
    )  # fmt: skip
    ids = torch.randint(0, 30, (3, 7), generator=torch.Generator().manual_seed(0))
    for head, outputs in (("nominal", 5), ("regression", 1)):
        model = build_baseline_model(config, 5, head, list("abcde"))
        section = model.config.ordinal
        assert section["baseline"] is True and section["head"] == head
        assert section["num_outputs"] == outputs == model.classifier.out_features
        assert not model.classifier.bias.requires_grad
        out = ordinal_forward(model, input_ids=ids, labels=torch.tensor([0, 2, 4]))
        assert out.probs.shape == (3, 5) and out.loss is not None
    with pytest.raises(ValueError, match="unknown baseline head 'corn'"):
        build_baseline_model(config, 5, "corn")
    with pytest.raises(ValueError, match="label_names has 2 entries"):
        build_baseline_model(config, 5, "nominal", ["a", "b"])
    with pytest.raises(FileNotFoundError, match="no model directory"):
        build_baseline_model("/nonexistent/model", 5, "nominal")
