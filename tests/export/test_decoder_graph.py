"""The ONNX decoder graph computes what the PyTorch decoders compute, for every head and link."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from ordinal import CoralHead, CornHead, CumulativeLinkHead
from ordinal.export import build_decoder_graph, decoder_output_names
from ordinal.export.parity import ParitySpec
from ordinal.heads import available_heads

DECODERS = {
    "cumulative_link-logit": lambda: CumulativeLinkHead(4, 6, link="logit"),
    "cumulative_link-probit": lambda: CumulativeLinkHead(4, 6, link="probit"),
    "cumulative_link-cloglog": lambda: CumulativeLinkHead(4, 6, link="cloglog"),
    "coral": lambda: CoralHead(4, 6),
    "corn": lambda: CornHead(4, 6),
}


def test_every_registered_head_has_a_decoder_graph_test():
    assert {name.split("-")[0] for name in DECODERS} == set(available_heads())


@pytest.mark.parametrize("name", sorted(DECODERS))
@pytest.mark.parametrize("scale", [1.0, 8.0])
def test_decoder_graph_matches_pytorch(name, scale):
    torch.manual_seed(0)
    head = DECODERS[name]()
    decoder = head.decoder
    if decoder.cutpoints is not None:
        decoder.thresholds.set([-2.0, -0.7, 0.1, 1.3, 2.9])
    else:  # CORN: intercepts away from zero, so the graph must add them
        decoder.init_from_class_prior(torch.tensor([5.0, 20.0, 40.0, 20.0, 10.0, 5.0]))
    section = {"head": name.split("-")[0], "num_classes": 6, **decoder.config_state()}
    session = ort.InferenceSession(build_decoder_graph(section, 18, 9).SerializeToString())
    scores = torch.randn(257, decoder.num_outputs) * scale
    got = dict(
        zip(
            decoder_output_names(section),
            session.run(None, {"scores": scores.numpy()}),
            strict=True,
        )
    )
    with torch.no_grad():
        out = decoder(scores)
    want = {
        "latent": out.latent,
        "ordinal_logits": out.logits,
        "cum_probs": out.cum_probs,
        "probs": out.probs,
        "label": out.label,
    }
    tolerance = ParitySpec()
    for key, value in got.items():
        np.testing.assert_allclose(
            value, want[key].numpy(), atol=tolerance.atol, rtol=tolerance.rtol, err_msg=key
        )
    np.testing.assert_array_equal(got["label"], want["label"].numpy())


def test_bad_sections_are_refused():
    with pytest.raises(ValueError, match="has 2 cutpoints for K=5"):
        build_decoder_graph({"head": "coral", "num_classes": 5, "cutpoints": [0.0, 1.0]}, 18, 9)
    with pytest.raises(ValueError, match="has 1 intercepts for K=3"):
        build_decoder_graph({"head": "corn", "num_classes": 3, "intercepts": [0.5]}, 18, 9)
    with pytest.raises(ValueError, match="no ONNX decoder for head 'ordinalnet'"):
        build_decoder_graph({"head": "ordinalnet", "num_classes": 3}, 18, 9)
    with pytest.raises(ValueError, match="unknown link 'tanh'"):
        build_decoder_graph(
            {"head": "cumulative_link", "num_classes": 3, "cutpoints": [0, 1], "link": "tanh"},
            18,
            9,
        )
