"""Notebook figures: what they draw is the data given, and bad input fails clearly."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from matplotlib.figure import Figure

from ordinal.plots import (
    DELTA_FLOOR,
    plot_confusion_matrix,
    plot_cutpoints,
    plot_int8_scatter,
    plot_label_distribution,
    plot_parity_deltas,
    plot_reliability,
    plot_training_curves,
)

LABELS = ["bad", "poor", "fine", "good"]

# Shaped like OrdinalRegressionTrainer.state.log_history: training logs, an evaluation, and
# the closing summary (which has no 'loss').
HISTORY = [
    {"loss": 1.6, "step": 2, "cutpoint_0": -1.0, "cutpoint_1": 0.0, "cutpoint_2": 1.0},
    {
        "loss": 1.4,
        "step": 4,
        "cutpoint_0": -1.2,
        "cutpoint_1": 0.1,
        "cutpoint_2": 1.3,
        "throughput_samples_per_second": 50.0,
    },
    {"eval_loss": 1.5, "eval_mae": 0.9, "step": 4},
    {"loss": 1.2, "step": 6, "cutpoint_0": -1.5, "cutpoint_1": 0.2, "cutpoint_2": 1.6},
    {"train_runtime": 1.0, "train_loss": 1.4, "step": 6},
]


def _render(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def test_confusion_matrix_cells_are_the_counts():
    y_true = [0, 0, 1, 2, 3, 3, 3]
    y_pred = [0, 1, 1, 2, 3, 2, 3]
    fig = plot_confusion_matrix(y_true, y_pred, LABELS)
    ax = fig.axes[0]
    expected = np.array([[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 2]])
    np.testing.assert_array_equal(ax.images[0].get_array(), expected)
    # The annotations, row by row, say the same numbers.
    assert [t.get_text() for t in ax.texts] == [str(v) for v in expected.ravel()]
    assert [t.get_text() for t in ax.get_xticklabels()] == LABELS
    assert "accuracy 71.4%" in ax.get_title()


def test_confusion_matrix_rejects_bad_labels():
    with pytest.raises(ValueError, match="y_true has 2 labels, y_pred 3"):
        plot_confusion_matrix([0, 1], [0, 1, 1], LABELS)
    with pytest.raises(ValueError, match=r"y_pred has labels outside \[0, 4\): \[4, 7\]"):
        plot_confusion_matrix([0, 1, 2], [4, 7, 1], LABELS)
    with pytest.raises(ValueError, match="y_true must be a non-empty"):
        plot_confusion_matrix([], [], LABELS)
    with pytest.raises(ValueError, match="integer labels"):
        plot_confusion_matrix([0.5, 1.0], [0, 1], LABELS)


def test_one_line_per_cutpoint_with_the_logged_values():
    fig = plot_cutpoints(HISTORY, label_names=LABELS)
    lines = fig.axes[0].get_lines()
    assert len(lines) == 3
    np.testing.assert_array_equal(lines[2].get_xdata(), [2, 4, 6])
    np.testing.assert_array_equal(lines[2].get_ydata(), [1.0, 1.3, 1.6])
    assert lines[0].get_label() == "cutpoint_0 (bad | poor)"


def test_cutpoints_errors():
    with pytest.raises(ValueError, match="no cutpoint_k"):
        plot_cutpoints([{"loss": 1.0, "step": 1}])
    with pytest.raises(ValueError, match="no cutpoint_k"):
        plot_cutpoints([])
    with pytest.raises(ValueError, match="3 label names for 3 cutpoints; expected 4"):
        plot_cutpoints(HISTORY, label_names=LABELS[:3])


def test_training_curves_plot_loss_eval_loss_and_throughput():
    fig = plot_training_curves(HISTORY)
    ax, twin = fig.axes
    train, evaluation = ax.get_lines()
    np.testing.assert_array_equal(train.get_xdata(), [2, 4, 6])
    np.testing.assert_array_equal(train.get_ydata(), [1.6, 1.4, 1.2])
    np.testing.assert_array_equal(evaluation.get_ydata(), [1.5])
    np.testing.assert_array_equal(twin.get_lines()[0].get_ydata(), [50.0])
    without_rate = [{k: v for k, v in h.items() if not k.startswith("through")} for h in HISTORY]
    assert len(plot_training_curves(without_rate).axes) == 1


def test_training_curves_need_a_loss():
    with pytest.raises(ValueError, match="no training loss"):
        plot_training_curves([{"eval_loss": 1.0, "step": 3}])


def test_label_distribution_bars_are_the_counts():
    counts = {
        "train": {"bad": 5, "poor": 1, "fine": 7, "good": 12},
        "test": [1, 0, 2, 3],
    }
    fig = plot_label_distribution(counts, LABELS)
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights == [5, 1, 7, 12, 1, 0, 2, 3]
    with pytest.raises(ValueError, match=r"split 'train' counts unknown labels \['great'\]"):
        plot_label_distribution({"train": {"great": 1}}, LABELS)
    with pytest.raises(ValueError, match="has 2 counts for 4 labels"):
        plot_label_distribution({"test": [1, 2]}, LABELS)
    with pytest.raises(ValueError, match="at least one split"):
        plot_label_distribution({}, LABELS)


def test_parity_deltas_from_the_npz_check_parity_writes(tmp_path):
    path = tmp_path / "deltas.npz"
    probs = np.zeros((4, 3))
    probs[2, 1] = -3e-7
    latent = np.array([1e-8, 0.0, 2e-6, 0.0])
    np.savez_compressed(path, ids=np.asarray(["a", "b", "c", "d"]), probs=probs, latent=latent)
    fig = plot_parity_deltas(path, atol=1e-5)
    bars, hist = fig.axes
    assert [t.get_text() for t in bars.get_xticklabels()] == ["probs", "latent"]
    assert [p.get_height() for p in bars.patches] == pytest.approx([3e-7, 2e-6])
    assert "4 samples" in hist.get_title()
    _render(fig)
    zeros = plot_parity_deltas({"probs": np.zeros((3, 2))})
    assert [p.get_height() for p in zeros.axes[0].patches] == [DELTA_FLOOR]
    _render(zeros)


def test_parity_deltas_errors():
    with pytest.raises(ValueError, match="no delta tensors"):
        plot_parity_deltas({"ids": np.asarray(["a"])})
    with pytest.raises(ValueError, match=r"\['probs'\] are empty"):
        plot_parity_deltas({"probs": np.zeros((0, 5))})


def test_int8_scatter_draws_the_points_and_the_diagonal():
    fp32 = np.array([-1.0, 0.0, 2.0])
    int8 = np.array([-0.9, 0.1, 2.0])
    fig = plot_int8_scatter(fp32, int8)
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.collections[0].get_offsets(), np.column_stack([fp32, int8]))
    diagonal = ax.get_lines()[0]
    np.testing.assert_array_equal(diagonal.get_xdata(), diagonal.get_ydata())
    assert "max |diff| 0.1" in ax.get_title()
    with pytest.raises(ValueError, match="fp32_scores has 3 values, int8_scores 2"):
        plot_int8_scatter(fp32, int8[:2])
    with pytest.raises(ValueError, match="non-empty 1-D"):
        plot_int8_scatter([], [])
    with pytest.raises(ValueError, match="1 non-finite"):
        plot_int8_scatter([1.0, np.nan], [1.0, 1.0])


def test_int8_report_carries_the_latents_for_the_scatter_but_not_in_its_json():
    from ordinal.export.quantize import Int8Report

    scores = {"mae": 0.5, "qwk": 0.7, "accuracy": 0.6}
    report = Int8Report(
        passed=True,
        num_samples=3,
        fp32=scores,
        int8=scores,
        mae_increase=0.0,
        max_prob_delta=1e-3,
        latency_ms={"fp32": 2.0, "int8": 1.0},
        failures=[],
        fp32_latent=np.array([0.1, 0.2, 0.3]),
        int8_latent=np.array([0.1, 0.25, 0.3]),
    )
    assert json.loads(report.to_json())["num_samples"] == 3
    assert "latent" not in report.to_json()
    fig = plot_int8_scatter(report.fp32_latent, report.int8_latent)
    assert "max |diff| 0.05" in fig.axes[0].get_title()


def test_reliability_points_are_bin_means_and_frequencies():
    # Ten samples at top probability 0.8, eight of them right: one point at (0.8, 0.8).
    probs = np.tile([0.8, 0.1, 0.1], (10, 1))
    labels = [0] * 8 + [1, 2]
    fig = plot_reliability(probs, labels)
    top = fig.axes[0]
    curve = top.get_lines()[1]
    np.testing.assert_allclose(curve.get_xdata(), [0.8])
    np.testing.assert_allclose(curve.get_ydata(), [0.8])
    assert "ECE 0.000" in top.get_title()
    per_class = plot_reliability(probs, labels, per_class=True, label_names=["a", "b", "c"])
    lines = per_class.axes[0].get_lines()[1:]
    assert [line.get_label() for line in lines] == ["a", "b", "c"]
    np.testing.assert_allclose(lines[1].get_xdata(), [0.1])
    np.testing.assert_allclose(lines[1].get_ydata(), [0.1])


def test_reliability_errors():
    with pytest.raises(ValueError, match=r"shape \(n, K\)"):
        plot_reliability(np.ones(3), [0, 0, 0])
    with pytest.raises(ValueError, match="2 labels for 3 rows"):
        plot_reliability(np.full((3, 2), 0.5), [0, 1])
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        plot_reliability(np.full((2, 2), 1.5), [0, 1])
    with pytest.raises(ValueError, match=r"outside \[0, 2\)"):
        plot_reliability(np.full((2, 2), 0.5), [0, 2])


def test_figures_render_and_leave_pyplot_untouched():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    figures = [
        plot_confusion_matrix([0, 1, 2, 3], [0, 1, 2, 2], LABELS),
        plot_cutpoints(HISTORY),
        plot_training_curves(HISTORY),
        plot_label_distribution({"train": [1, 2, 3, 4]}, LABELS),
        plot_int8_scatter([0.0, 1.0], [0.0, 1.1]),
        plot_reliability(np.full((4, 2), 0.5), [0, 1, 1, 0]),
    ]
    for fig in figures:
        assert isinstance(fig, Figure)
        assert _render(fig).startswith(b"\x89PNG")
    assert plt.get_fignums() == before
