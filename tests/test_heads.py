"""Heads: ordered cutpoints by construction, valid probabilities, the registry contract."""

from __future__ import annotations

import pytest
import torch

from ordinal import CoralHead, CornHead, CumulativeLinkHead, available_heads, get_link
from ordinal.heads import OrderedCutpoints, default_cutpoints, get_head_class, register_head

# Every registered head must have a factory here: the contract test below enforces it.
HEAD_FACTORIES = {
    "cumulative_link": lambda d, k: CumulativeLinkHead(d, k),
    "coral": lambda d, k: CoralHead(d, k),
    "corn": lambda d, k: CornHead(d, k),
}
ALL_HEADS = [
    *(
        pytest.param(lambda d, k, link=link: CumulativeLinkHead(d, k, link=link), id=f"clm-{link}")
        for link in ("logit", "probit", "cloglog")
    ),
    pytest.param(HEAD_FACTORIES["coral"], id="coral"),
    pytest.param(HEAD_FACTORIES["corn"], id="corn"),
]


def test_every_registered_head_is_tested():
    assert set(available_heads()) == set(HEAD_FACTORIES)


def _assert_valid(out, batch: int, num_classes: int) -> None:
    assert out.probs.shape == (batch, num_classes)
    assert out.cum_probs.shape == (batch, num_classes - 1)
    assert torch.isfinite(out.probs).all()
    assert (out.probs >= 0).all()
    torch.testing.assert_close(out.probs.sum(1), torch.ones(batch), atol=1e-5, rtol=0)
    assert (out.cum_probs[:, 1:] <= out.cum_probs[:, :-1]).all(), "P(y > k) must not increase"
    assert ((out.label >= 0) & (out.label < num_classes)).all()


@pytest.mark.parametrize("factory", ALL_HEADS)
@pytest.mark.parametrize("num_classes", [2, 5, 100])
@pytest.mark.parametrize("optimiser", ["sgd-1e3", "adam-10"])
def test_cutpoints_stay_ordered_under_extreme_learning_rates(factory, num_classes, optimiser):
    torch.manual_seed(0)
    head = factory(8, num_classes)
    features = torch.randn(64, 8) * 3
    labels = torch.randint(0, num_classes, (64,))
    opt = (
        torch.optim.SGD(head.parameters(), lr=1e3)
        if optimiser == "sgd-1e3"
        else torch.optim.Adam(head.parameters(), lr=10.0)
    )
    for _ in range(25):
        opt.zero_grad()
        out = head(features, labels)
        assert torch.isfinite(out.loss), "loss must stay finite"
        out.loss.backward()
        for p in head.parameters():
            if p.grad is not None:
                assert torch.isfinite(p.grad).all()
        opt.step()
        if head.cutpoints is not None:
            assert (head.cutpoints[1:] > head.cutpoints[:-1]).all(), head.cutpoints
    with torch.no_grad():
        _assert_valid(head(features), 64, num_classes)


@pytest.mark.parametrize("factory", ALL_HEADS)
def test_probabilities_valid_for_extreme_features(factory):
    torch.manual_seed(1)
    head = factory(4, 6)
    with torch.no_grad():
        for scale in (1e-6, 1.0, 1e3):
            _assert_valid(head(torch.randn(32, 4) * scale), 32, 6)


@pytest.mark.parametrize("link", ["logit", "probit", "cloglog"])
def test_cumulative_link_convention(link):
    """P(y <= k) = F(theta_k - eta) with eta = w . h and no bias."""
    torch.manual_seed(2)
    head = CumulativeLinkHead(3, 4, link=link)
    assert head.projection.bias is None
    head.decoder.thresholds.set([-1.0, 0.2, 1.5])
    features = torch.randn(10, 3)
    with torch.no_grad():
        out = head(features)
        eta = features @ head.projection.weight[0]
        expected = get_link(link).cdf(torch.tensor([-1.0, 0.2, 1.5]) - eta[:, None])
    torch.testing.assert_close(out.latent, eta)
    torch.testing.assert_close(1 - out.cum_probs, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.label, (out.cum_probs > 0.5).sum(1))


def test_coral_biases_are_the_negated_cutpoints_and_decreasing():
    head = CoralHead(5, 4)
    assert head.projection.bias is None
    torch.testing.assert_close(head.decoder.biases, -head.cutpoints)
    assert (head.decoder.biases[1:] < head.decoder.biases[:-1]).all()
    assert set(head.decoder.config_state()) >= {"cutpoints", "biases"}


def test_corn_has_per_task_projection_and_no_cutpoints():
    head = CornHead(5, 4)
    assert head.cutpoints is None
    assert head.projection.out_features == 3
    # The intercepts are the decoder's (head learning rate, prior start), not the projection's.
    assert head.projection.bias is None
    assert set(head.decoder.log_values()) == {"intercept_0", "intercept_1", "intercept_2"}


def test_corn_prior_start_reproduces_the_class_frequencies():
    """Hand-checked: the intercept-only CORN fit predicts exactly the training frequencies."""
    prior = torch.tensor([10.0, 30.0, 40.0, 20.0])
    head = CornHead(3, 4)
    head.decoder.init_from_class_prior(prior)
    # P(y > 0 | y >= 0) = 90/100, P(y > 1 | y >= 1) = 60/90, P(y > 2 | y >= 2) = 20/60
    expected = torch.logit(torch.tensor([0.9, 60 / 90, 20 / 60]))
    torch.testing.assert_close(head.decoder.intercepts.detach(), expected)
    with torch.no_grad():
        head.projection.weight.zero_()
        out = head(torch.randn(2, 3))
    torch.testing.assert_close(out.probs[0], prior / prior.sum())
    # An empty class keeps every intercept finite.
    head.decoder.init_from_class_prior(torch.tensor([0.0, 5.0, 5.0, 0.0]))
    assert torch.isfinite(head.decoder.intercepts).all()


def test_corn_intercepts_round_trip_through_the_config():
    head = CornHead(3, 4)
    head.decoder.init_from_class_prior(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    state = head.decoder.config_state()
    other = CornHead(3, 4)
    other.decoder.load_config_state(state)
    torch.testing.assert_close(other.decoder.intercepts, head.decoder.intercepts)


def test_identical_labels_train_without_nan_and_keep_order():
    torch.manual_seed(3)
    head = CumulativeLinkHead(4, 5)
    opt = torch.optim.Adam(head.parameters(), lr=0.5)
    features, labels = torch.randn(32, 4), torch.full((32,), 2)
    for _ in range(200):
        opt.zero_grad()
        loss = head(features, labels).loss
        loss.backward()
        opt.step()
    assert torch.isfinite(loss)
    assert (head.cutpoints[1:] > head.cutpoints[:-1]).all()
    with torch.no_grad():
        assert (head(features).label == 2).all()


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (torch.tensor([0, 5, 1]), r"\[0, 5\).*\[5\] at positions \[1\]"),
        (torch.tensor([0, -1, 1]), r"\[-1\] at positions \[1\]"),
        (torch.tensor([0.0, 1.5, 1.0]), r"integers.*float32.*1\.5"),
        (torch.tensor([0, 1]), r"mismatched shapes: 2 labels for a batch of 3"),
        (torch.tensor([[0, 1, 2]]), r"shape \(batch,\)"),
    ],
)
@pytest.mark.parametrize("name", sorted(HEAD_FACTORIES))
def test_bad_labels_raise_value_error_naming_values(name, labels, match):
    head = HEAD_FACTORIES[name](4, 5)
    with pytest.raises(ValueError, match=match):
        head(torch.randn(3, 4), labels)


@pytest.mark.parametrize("name", sorted(HEAD_FACTORIES))
def test_empty_batch_and_bad_sizes(name):
    head = HEAD_FACTORIES[name](4, 3)
    with pytest.raises(ValueError, match="empty batch"):
        head(torch.randn(0, 4), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match=r"num_classes must be >= 2.*got 1"):
        HEAD_FACTORIES[name](4, 1)
    with pytest.raises(ValueError, match="in_features must be >= 1"):
        HEAD_FACTORIES[name](0, 3)
    with pytest.raises(ValueError, match=r"expects scores of shape \(batch, \d\)"):
        head.decoder(torch.randn(2, 7))


def test_num_classes_must_be_an_int():
    with pytest.raises(ValueError, match="num_classes must be an int"):
        CumulativeLinkHead(4, 2.5)


def test_unknown_link_and_head_list_choices():
    with pytest.raises(ValueError, match=r"unknown link 'tanh'.*cloglog"):
        CumulativeLinkHead(4, 3, link="tanh")
    with pytest.raises(ValueError, match=r"unknown ordinal head 'nope'.*coral"):
        get_head_class("nope")


def test_register_head_refuses_a_second_class_under_a_taken_name():
    with pytest.raises(ValueError, match="already registered"):
        register_head("coral")(type("Other", (CoralHead,), {}))


def test_ordered_cutpoints_set_validates():
    cuts = OrderedCutpoints(3, torch.tensor([-1.0, 0.0, 1.0]))
    torch.testing.assert_close(cuts(), torch.tensor([-1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="increase by more than min_gap"):
        cuts.set([0.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="expected 3 cutpoints"):
        cuts.set([0.0, 1.0])
    with pytest.raises(ValueError, match="finite"):
        cuts.set([0.0, 1.0, float("inf")])
    with pytest.raises(ValueError, match="min_gap"):
        OrderedCutpoints(3, torch.zeros(3), min_gap=0.0)
    with pytest.raises(ValueError, match="at least one cutpoint"):
        OrderedCutpoints(0, torch.zeros(0))


@pytest.mark.parametrize("link", ["logit", "probit", "cloglog"])
def test_default_cutpoints_reproduce_the_class_prior(link):
    prior = torch.tensor([0.1, 0.2, 0.3, 0.4])
    cuts = default_cutpoints(4, link, prior)
    cdf = get_link(link).cdf(cuts)
    torch.testing.assert_close(cdf, torch.tensor([0.1, 0.3, 0.6]), atol=5e-3, rtol=0)
    with pytest.raises(ValueError, match="class_prior"):
        default_cutpoints(4, link, torch.tensor([1.0, -1.0, 0.0, 0.0]))


def test_init_from_class_prior_handles_absent_classes():
    head = CumulativeLinkHead(2, 4)
    head.decoder.init_from_class_prior(torch.tensor([10.0, 0.0, 5.0, 5.0]))
    cuts = head.cutpoints
    assert (cuts[1:] > cuts[:-1]).all()
    CornHead(2, 4).decoder.init_from_class_prior(torch.ones(4))  # no parameters: a no-op
