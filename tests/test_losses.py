"""Losses: golden values worked out by hand, stable tails, weights, reductions, errors."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import norm

from ordinal import (
    CoralLoss,
    CornLoss,
    CumulativeLinkLoss,
    coral_loss,
    corn_loss,
    cumulative_link_loss,
    label_to_levels,
)

CUTS = torch.tensor([-1.0, 1.0])


def test_cumulative_link_logit_golden():
    # eta = 0, theta = (-1, 1): P(0) = s(-1) = 0.2689414, P(1) = s(1) - s(-1) = 0.4621172,
    # P(2) = 1 - s(1) = 0.2689414  ->  -log: 1.3132617, 0.7719368, 1.3132617.
    per_sample = cumulative_link_loss(
        torch.zeros(3), CUTS, torch.tensor([0, 1, 2]), reduction="none"
    )
    torch.testing.assert_close(per_sample, torch.tensor([1.3132617, 0.7719368, 1.3132617]))
    mean = cumulative_link_loss(torch.zeros(3), CUTS, torch.tensor([0, 1, 2]))
    assert mean.item() == pytest.approx((2 * 1.3132617 + 0.7719368) / 3, abs=1e-6)


def test_cumulative_link_probit_against_scipy():
    eta = torch.tensor([0.5, -0.3, 2.0])
    labels = torch.tensor([0, 1, 2])
    got = cumulative_link_loss(eta, CUTS, labels, link="probit", reduction="none")
    want = [
        -norm.logcdf(-1 - 0.5),
        -math.log(norm.cdf(1 + 0.3) - norm.cdf(-1 + 0.3)),
        -norm.logsf(1 - 2.0),
    ]
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float32))


def test_cumulative_link_cloglog_golden():
    # F(z) = 1 - exp(-exp(z)); eta = 0, theta = (0, 1), label 1:
    # F(1) - F(0) = exp(-1) - exp(-e) = 0.3678794 - 0.0659880 = 0.3018914 -> 1.1976879.
    loss = cumulative_link_loss(
        torch.zeros(1), torch.tensor([0.0, 1.0]), torch.tensor([1]), "cloglog"
    )
    assert loss.item() == pytest.approx(1.1976879, abs=1e-5)


@pytest.mark.parametrize(
    ("link", "eta", "label", "expected"),
    [
        # logit, far right: P(0) = s(-1 - 200) -> -log = 201 (+ log1p(e^-201) ~ 0).
        ("logit", 200.0, 0, 201.0),
        # logit, middle class far out: s(-99) - s(-101) = e^-99 (1 - e^-2) -> 99 - log(1 - e^-2).
        ("logit", 100.0, 1, 99.0 - math.log(1 - math.exp(-2))),
        # probit, deep left tail of the last class: -log(1 - Phi(1 + 40)).
        ("probit", -40.0, 2, -norm.logsf(41.0)),
        # probit, middle class far out on the right: log(Phi(-39) - Phi(-41)).
        (
            "probit",
            40.0,
            1,
            -norm.logcdf(-39.0) - math.log1p(-math.exp(norm.logcdf(-41.0) - norm.logcdf(-39.0))),
        ),
    ],
)
def test_cumulative_link_is_finite_and_exact_in_the_tails(link, eta, label, expected):
    latent = torch.tensor([eta], requires_grad=True)
    loss = cumulative_link_loss(latent, CUTS, torch.tensor([label]), link)
    loss.backward()
    assert loss.item() == pytest.approx(expected, rel=1e-4)
    assert torch.isfinite(latent.grad).all()


def test_cumulative_link_class_weights_and_reductions():
    latent, labels = torch.zeros(3), torch.tensor([0, 1, 2])
    weights = torch.tensor([1.0, 3.0, 0.0])
    per = cumulative_link_loss(latent, CUTS, labels, reduction="none")
    weighted_mean = cumulative_link_loss(latent, CUTS, labels, class_weights=weights)
    assert weighted_mean.item() == pytest.approx((per[0] + 3 * per[1]).item() / 4, abs=1e-6)
    total = cumulative_link_loss(latent, CUTS, labels, class_weights=weights, reduction="sum")
    assert total.item() == pytest.approx((per[0] + 3 * per[1]).item(), abs=1e-6)


def test_coral_golden():
    # logits (2, -1), label 1 -> levels (1, 0):
    # log(1 + e^-2) + log(1 + e^-1) = 0.1269280 + 0.3132617 = 0.4401897.
    logits, labels = torch.tensor([[2.0, -1.0]]), torch.tensor([1])
    assert coral_loss(logits, labels).item() == pytest.approx(0.4401897, abs=1e-6)
    # importance (1, 0.5): 0.1269280 + 0.5 * 0.3132617 = 0.2835589.
    weighted = coral_loss(logits, labels, importance_weights=torch.tensor([1.0, 0.5]))
    assert weighted.item() == pytest.approx(0.2835589, abs=1e-6)


def test_corn_golden():
    # logits (1, -0.5). Label 0 joins task 0 only, target 0: log(1 + e^1) = 1.3132617.
    # Label 2 joins tasks 0 and 1, targets 1: log(1 + e^-1) + log(1 + e^0.5)
    # = 0.3132617 + 0.9740770 = 1.2873387. Mean over 3 (sample, task) pairs: 0.8668668.
    logits = torch.tensor([[1.0, -0.5], [1.0, -0.5]])
    labels = torch.tensor([0, 2])
    per = corn_loss(logits, labels, reduction="none")
    torch.testing.assert_close(per, torch.tensor([1.3132617, 1.2873387]))
    assert corn_loss(logits, labels).item() == pytest.approx(2.6006004 / 3, abs=1e-6)
    assert corn_loss(logits, labels, reduction="sum").item() == pytest.approx(2.6006004, abs=1e-6)


def _corn_reference(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The loop of the reference implementation (coral-pytorch ``corn_loss``)."""
    losses, examples = 0.0, 0
    for task in range(logits.shape[1]):
        mask = labels > task - 1
        if not mask.any():
            continue
        targets = (labels[mask] > task).float()
        pred = logits[mask, task]
        examples += int(mask.sum())
        losses += -torch.sum(
            torch.nn.functional.logsigmoid(pred) * targets
            + (torch.nn.functional.logsigmoid(pred) - pred) * (1 - targets)
        )
    return losses / examples


def test_corn_matches_reference_loop_on_random_data():
    torch.manual_seed(0)
    logits = torch.randn(50, 6)
    labels = torch.randint(0, 7, (50,))
    torch.testing.assert_close(corn_loss(logits, labels), _corn_reference(logits, labels))


def test_corn_class_weights_scale_each_sample():
    logits = torch.tensor([[1.0, -0.5], [1.0, -0.5]])
    labels = torch.tensor([0, 2])
    # weight 0 on class 0 leaves label 2's two tasks: 1.2873387 / 2.
    got = corn_loss(logits, labels, class_weights=torch.tensor([0.0, 1.0, 1.0]))
    assert got.item() == pytest.approx(1.2873387 / 2, abs=1e-6)


def test_module_wrappers_match_functions():
    torch.manual_seed(1)
    latent, logits = torch.randn(8), torch.randn(8, 3)
    labels = torch.randint(0, 4, (8,))
    cuts = torch.tensor([-1.0, 0.0, 1.5])
    weights = torch.tensor([1.0, 2.0, 1.0, 0.5])
    torch.testing.assert_close(
        CumulativeLinkLoss("probit", weights)(latent, cuts, labels),
        cumulative_link_loss(latent, cuts, labels, "probit", weights),
    )
    torch.testing.assert_close(
        CoralLoss(reduction="sum")(logits, labels), coral_loss(logits, labels, reduction="sum")
    )
    torch.testing.assert_close(
        CornLoss(weights)(logits, labels), corn_loss(logits, labels, weights)
    )


def test_label_to_levels():
    assert label_to_levels(torch.tensor([0, 3]), 4).tolist() == [[0, 0, 0], [1, 1, 1]]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda: cumulative_link_loss(torch.zeros(2), CUTS, torch.tensor([0, 3])),
            r"\[3\] at positions \[1\]",
        ),
        (lambda: cumulative_link_loss(torch.zeros(2), CUTS, torch.tensor([0.0, 1.0])), "integers"),
        (
            lambda: cumulative_link_loss(torch.zeros(3), CUTS, torch.tensor([0, 1])),
            "2 labels for a batch of 3",
        ),
        (
            lambda: cumulative_link_loss(torch.zeros(2, 1), CUTS, torch.tensor([0, 1])),
            r"latent must have shape",
        ),
        (
            lambda: cumulative_link_loss(torch.zeros(2), CUTS[None], torch.tensor([0, 1])),
            r"cutpoints must have shape",
        ),
        (
            lambda: cumulative_link_loss(torch.zeros(2), torch.zeros(0), torch.tensor([0, 0])),
            r"num_classes must be >= 2.*got 1",
        ),
        (
            lambda: cumulative_link_loss(
                torch.zeros(2), CUTS, torch.tensor([0, 1]), reduction="avg"
            ),
            "reduction",
        ),
        (
            lambda: cumulative_link_loss(
                torch.zeros(2), CUTS, torch.tensor([0, 1]), link="identity"
            ),
            "unknown link",
        ),
        (
            lambda: cumulative_link_loss(torch.zeros(0), CUTS, torch.zeros(0, dtype=torch.long)),
            "empty batch",
        ),
        (
            lambda: cumulative_link_loss(
                torch.zeros(2), CUTS, torch.tensor([0, 1]), class_weights=torch.ones(2)
            ),
            r"class_weights must have shape \(3,\)",
        ),
        (
            lambda: coral_loss(
                torch.zeros(2, 2),
                torch.tensor([0, 1]),
                importance_weights=torch.tensor([1.0, -1.0]),
            ),
            "non-negative",
        ),
        (
            lambda: coral_loss(torch.zeros(2), torch.tensor([0, 1])),
            r"logits must have shape \(batch, K-1\)",
        ),
        (
            lambda: corn_loss(torch.zeros(2), torch.tensor([0, 1])),
            r"logits must have shape \(batch, K-1\)",
        ),
        (lambda: corn_loss(torch.zeros(2, 2), torch.tensor([True, False])), "integers"),
        (lambda: coral_loss(torch.zeros(2, 2), [0, 1]), "must be a torch.Tensor"),
        (lambda: CornLoss(reduction="max"), "reduction"),
    ],
)
def test_bad_input_raises_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
