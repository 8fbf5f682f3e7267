"""Tests of ordinal.metrics: hand-worked golden values, library cross-checks, validation."""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    cohen_kappa_score,
    mean_absolute_error,
    mean_squared_error,
)

from ordinal.exceptions import LabelError
from ordinal.metrics import (
    accuracy,
    compute_ordinal_metrics,
    macro_mae,
    mae,
    off_by_one_accuracy,
    per_class_mae,
    proba_to_label,
    qwk,
    ranked_probability_score,
    rmse,
    spearman,
)

# --------------------------------------------------------------------------- golden values
# The 6-sample example used below, K = 3:
#   y_true = [0, 0, 1, 1, 2, 2]
#   y_pred = [0, 1, 1, 1, 2, 0]
#   |error| = [0, 1, 0, 0, 0, 2]            sum 3, squares sum 0+1+0+0+0+4 = 5
Y_TRUE = [0, 0, 1, 1, 2, 2]
Y_PRED = [0, 1, 1, 1, 2, 0]


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        # MAE = 3 / 6
        (mae, 0.5),
        # RMSE = sqrt(5 / 6) = 0.912870929175...
        (rmse, 0.9128709291752769),
        # exact at indices 0, 2, 3, 4 -> 4 / 6
        (accuracy, 4 / 6),
        # |error| <= 1 everywhere but the last sample -> 5 / 6
        (off_by_one_accuracy, 5 / 6),
        # Confusion O (rows true, cols pred) = [[1,1,0],[0,2,0],[1,0,1]];
        # row sums r = [2,2,2], column sums c = [2,3,1], n = 6; E = outer(r, c) / 6, every row
        # [2/3, 1, 1/3]; W = (i-j)^2 = [[0,1,4],[1,0,1],[4,1,0]].
        # sum W*O = 1*O[0,1] + 4*O[2,0] = 1 + 4 = 5
        # sum W*E = (1 + 4/3) + (2/3 + 1/3) + (8/3 + 1) = 7/3 + 3/3 + 11/3 = 7
        # kappa = 1 - 5/7 = 2/7 = 0.285714...
        (qwk, 2 / 7),
        # ranks true = [1.5,1.5,3.5,3.5,5.5,5.5], ranks pred = [1.5,4,4,4,6,1.5] (means 3.5)
        # deviations: t = [-2,-2,0,0,2,2], p = [-2,.5,.5,.5,2.5,-2]
        # sum t*p = 4 - 1 + 0 + 0 + 5 - 4 = 4; sum t^2 = 16; sum p^2 = 4 + .75 + 6.25 + 4 = 15
        # rho = 4 / sqrt(16 * 15) = 1 / sqrt(15) = 0.258198...
        (spearman, 0.2581988897471611),
        # per class: class 0 |0|,|1| -> 0.5; class 1 -> 0; class 2 |0|,|2| -> 1; mean 0.5
        (macro_mae, 0.5),
    ],
)
def test_golden_six_samples(metric, expected):
    assert metric(Y_TRUE, Y_PRED) == pytest.approx(expected, abs=1e-12)


def test_off_by_one_tolerance():
    # |error| = [0, 1, 0, 0, 0, 2]: tolerance 0 -> 4/6 (accuracy), 2 -> 6/6
    assert off_by_one_accuracy(Y_TRUE, Y_PRED, tolerance=0) == pytest.approx(4 / 6)
    assert off_by_one_accuracy(Y_TRUE, Y_PRED, tolerance=2) == 1.0


def test_qwk_bounds_and_num_classes():
    assert qwk([0, 1, 2, 3], [0, 1, 2, 3]) == pytest.approx(1.0)
    # Fully reversed, K = 2: O = [[0,1],[1,0]], r = c = [1,1], E = all 1/2, W = [[0,1],[1,0]]
    # sum W*O = 2, sum W*E = 1 -> kappa = 1 - 2 = -1
    assert qwk([0, 1], [1, 0]) == pytest.approx(-1.0)
    # Classes with zero marginals leave kappa unchanged: K = 4 still gives 2/7.
    assert qwk(Y_TRUE, Y_PRED, num_classes=4) == pytest.approx(2 / 7)


def test_qwk_keeps_label_distances_across_unused_classes():
    # y_true = [0, 3], y_pred = [0, 1], K = 4 (classes 1, 2 never true, 2 never used).
    # O: (0,0) = 1, (3,1) = 1; r = [1,0,0,1], c = [1,1,0,0], n = 2; E = outer(r, c) / 2:
    # E[0,0] = E[0,1] = E[3,0] = E[3,1] = 0.5.
    # sum W*O = (3-1)^2 = 4; sum W*E = 0.5*(0 + 1 + 9 + 4) = 7 -> kappa = 1 - 4/7 = 3/7.
    # (sklearn's default labels, the values present {0, 1, 3}, would re-index 3 -> 2 and
    # give 2/3: the labels=range(K) argument matters.)
    assert qwk([0, 3], [0, 1]) == pytest.approx(3 / 7)
    assert qwk([0, 3], [0, 1], num_classes=6) == pytest.approx(3 / 7)


def test_qwk_single_shared_class_is_nan_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(qwk([1, 1, 1], [1, 1, 1]))


# --------------------------------------------------------------------------- cross-checks


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("num_classes", [2, 5, 10])
def test_matches_sklearn_and_scipy(seed, num_classes):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, num_classes, size=500)
    # correlated predictions, so kappa and rho are away from 0
    y_pred = np.clip(y_true + rng.integers(-1, 2, size=500), 0, num_classes - 1)
    assert mae(y_true, y_pred) == pytest.approx(mean_absolute_error(y_true, y_pred))
    assert rmse(y_true, y_pred) == pytest.approx(math.sqrt(mean_squared_error(y_true, y_pred)))
    assert accuracy(y_true, y_pred) == pytest.approx(accuracy_score(y_true, y_pred))
    assert qwk(y_true, y_pred) == pytest.approx(
        cohen_kappa_score(y_true, y_pred, weights="quadratic")
    )
    assert spearman(y_true, y_pred) == pytest.approx(spearmanr(y_true, y_pred).statistic)


@pytest.mark.parametrize("seed", [0, 1])
def test_macro_and_per_class_mae_match_masked_sklearn(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.choice(4, size=300, p=[0.7, 0.2, 0.08, 0.02])
    y_pred = rng.integers(0, 4, size=300)
    per_class = per_class_mae(y_true, y_pred)
    expected = {c: mean_absolute_error(y_true[y_true == c], y_pred[y_true == c]) for c in range(4)}
    assert per_class == pytest.approx(expected)
    assert macro_mae(y_true, y_pred) == pytest.approx(np.mean(list(expected.values())))


def test_rps_binary_equals_brier_score():
    # For K = 2 the sum has one term: (P(y=0) - 1[y=0])^2 = (P(y=1) - 1[y=1])^2: the Brier score.
    rng = np.random.default_rng(3)
    y_true = rng.integers(0, 2, size=400)
    p1 = rng.random(400)
    proba = np.column_stack([1 - p1, p1])
    assert ranked_probability_score(y_true, proba) == pytest.approx(brier_score_loss(y_true, p1))


def test_rps_matches_loop_definition():
    rng = np.random.default_rng(4)
    k = 6
    y_true = rng.integers(0, k, size=50)
    proba = rng.dirichlet(np.ones(k), size=50)
    total = 0.0
    for y, row in zip(y_true, proba, strict=True):
        cdf = 0.0
        for j in range(k - 1):
            cdf += row[j]
            total += (cdf - (1.0 if y <= j else 0.0)) ** 2 / (k - 1)
    assert ranked_probability_score(y_true, proba) == pytest.approx(total / len(y_true))


# --------------------------------------------------------------------------- RPS, macro MAE


def test_rps_hand_example():
    # K = 3, y_true = [0, 2]
    # row 0 [0.7, 0.2, 0.1]: CDF [0.7, 0.9], target 1[0 <= k] = [1, 1]
    #   (0.7-1)^2 + (0.9-1)^2 = 0.09 + 0.01 = 0.10, / (K-1) = 0.05
    # row 1 [0.2, 0.3, 0.5]: CDF [0.2, 0.5], target 1[2 <= k] = [0, 0]
    #   0.2^2 + 0.5^2 = 0.04 + 0.25 = 0.29, / 2 = 0.145
    # mean (0.05 + 0.145) / 2 = 0.0975
    proba = [[0.7, 0.2, 0.1], [0.2, 0.3, 0.5]]
    assert ranked_probability_score([0, 2], proba) == pytest.approx(0.0975, abs=1e-12)
    assert ranked_probability_score([0, 2], proba, num_classes=3) == pytest.approx(0.0975)


@pytest.mark.parametrize(
    ("y_true", "proba", "expected"),
    [
        # all mass on the true class: every CDF term equals its target -> 0
        ([1], [[0.0, 1.0, 0.0]], 0.0),
        # true 0, all mass on class 2: CDF [0, 0] vs target [1, 1] -> (1 + 1) / 2 = 1
        ([0], [[0.0, 0.0, 1.0]], 1.0),
        # true 0, all mass on class 1: CDF [0, 1] vs [1, 1] -> 1 / 2; nearer is cheaper
        ([0], [[0.0, 1.0, 0.0]], 0.5),
    ],
)
def test_rps_extremes(y_true, proba, expected):
    assert ranked_probability_score(y_true, proba) == pytest.approx(expected)


def test_macro_mae_imbalanced_differs_from_mae():
    # 8 samples of class 0 all right, one class-1 sample off by 1, one class-2 sample off by 2
    y_true = [0] * 8 + [1, 2]
    y_pred = [0] * 8 + [0, 0]
    # MAE = (1 + 2) / 10 = 0.3; the majority class hides the errors
    assert mae(y_true, y_pred) == pytest.approx(0.3)
    # macro MAE = (0 + 1 + 2) / 3 = 1.0
    assert macro_mae(y_true, y_pred) == pytest.approx(1.0)
    # classes absent from y_true do not count: K = 5 leaves the average over {0, 1, 2}
    assert macro_mae(y_true, y_pred, num_classes=5) == pytest.approx(1.0)


def test_per_class_mae_absent_class_is_nan():
    # class 0: |0-0|, |0-1| -> 0.5; class 1 absent; class 2: |2-2|, |2-0| -> 1.0; class 3 absent
    result = per_class_mae([0, 0, 2, 2], [0, 1, 2, 0], num_classes=4)
    assert list(result) == [0, 1, 2, 3]
    assert result[0] == pytest.approx(0.5)
    assert math.isnan(result[1])
    assert result[2] == pytest.approx(1.0)
    assert math.isnan(result[3])
    # without num_classes: K = max label + 1 = 3
    assert list(per_class_mae([0, 0, 2, 2], [0, 1, 2, 0])) == [0, 1, 2]
    # a class only predicted, never true, is still nan
    assert math.isnan(per_class_mae([0, 0], [0, 1])[1])


# --------------------------------------------------------------------------- proba_to_label


def test_proba_to_label_hand_example():
    proba = [
        [0.7, 0.2, 0.1],  # P(y>0) = 0.3, P(y>1) = 0.1 -> 0 thresholds above 0.5 -> 0
        [0.2, 0.3, 0.5],  # P(y>0) = 0.8, P(y>1) = 0.5 (not > 0.5) -> 1; argmax would say 2
        [0.45, 0.1, 0.45],  # P(y>0) = 0.55, P(y>1) = 0.45 -> 1; argmax would say 0
        [0.1, 0.1, 0.8],  # P(y>0) = 0.9, P(y>1) = 0.8 -> 2
    ]
    labels = proba_to_label(proba)
    assert labels.tolist() == [0, 1, 1, 2]
    assert labels.dtype == np.int64
    # K = 4, [0.3, 0.1, 0.1, 0.5]: P(y>0) = 0.7, P(y>1) = 0.6, P(y>2) = 0.5 -> 2
    assert proba_to_label([[0.3, 0.1, 0.1, 0.5]]).tolist() == [2]


def test_compute_ordinal_metrics_keys_and_values():
    proba = [[0.7, 0.2, 0.1], [0.2, 0.3, 0.5], [0.1, 0.1, 0.8], [0.1, 0.8, 0.1]]
    y_true = [0, 2, 2, 0]
    # median labels [0, 1, 2, 1] -> |errors| [0, 1, 0, 1]
    result = compute_ordinal_metrics(y_true, proba)
    assert list(result) == [
        "mae",
        "rmse",
        "accuracy",
        "off_by_one_accuracy",
        "qwk",
        "spearman",
        "rps",
        "macro_mae",
    ]
    assert all(isinstance(v, float) for v in result.values())
    assert result["mae"] == pytest.approx(0.5)  # (0 + 1 + 0 + 1) / 4
    assert result["rmse"] == pytest.approx(math.sqrt(0.5))  # sqrt(2 / 4)
    assert result["accuracy"] == pytest.approx(0.5)
    assert result["off_by_one_accuracy"] == pytest.approx(1.0)
    assert result["macro_mae"] == pytest.approx(0.5)  # class 0: 0.5, class 2: 0.5
    labels = [0, 1, 2, 1]
    assert result["qwk"] == pytest.approx(qwk(y_true, labels, num_classes=3))
    assert result["spearman"] == pytest.approx(spearman(y_true, labels))
    assert result["rps"] == pytest.approx(ranked_probability_score(y_true, proba))


def test_compute_ordinal_metrics_qwk_over_all_proba_columns():
    # median labels [0, 1] (row 1: P(y>0) = 0.9, P(y>1) = 0.0); y_true = [0, 3] is valid
    # because proba has K = 4 columns; kappa = 3/7 as worked out in the qwk test above.
    proba = [[0.9, 0.1, 0.0, 0.0], [0.1, 0.9, 0.0, 0.0]]
    result = compute_ordinal_metrics([0, 3], proba)
    assert result["qwk"] == pytest.approx(3 / 7)
    assert result["mae"] == pytest.approx(1.0)  # (0 + 2) / 2


# --------------------------------------------------------------------------- spearman nan


@pytest.mark.parametrize(
    ("y_true", "y_pred"),
    [([0, 1, 2], [1, 1, 1]), ([2, 2, 2], [0, 1, 2]), ([3], [3])],
)
def test_spearman_constant_input_is_nan_without_warning(y_true, y_pred):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(spearman(y_true, y_pred))


def test_compute_ordinal_metrics_constant_prediction_no_warning():
    # every row predicts label 0; y_true varied -> spearman nan, qwk defined (0: chance level)
    proba = [[0.9, 0.1]] * 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = compute_ordinal_metrics([0, 1, 0, 1], proba)
    assert math.isnan(result["spearman"])
    assert result["qwk"] == pytest.approx(0.0)


# --------------------------------------------------------------------------- input types


def test_torch_tensor_inputs():
    y_true = torch.tensor(Y_TRUE)
    y_pred = torch.tensor(Y_PRED)
    assert mae(y_true, y_pred) == pytest.approx(0.5)
    assert qwk(y_true, y_pred) == pytest.approx(2 / 7)
    assert per_class_mae(y_true, y_pred) == pytest.approx({0: 0.5, 1: 0.0, 2: 1.0})
    # float labels with integer values are accepted
    assert accuracy(y_true.float(), y_pred.double()) == pytest.approx(4 / 6)
    # bfloat16 has no NumPy dtype; it must still convert
    assert mae(y_true.bfloat16(), y_pred) == pytest.approx(0.5)
    # probabilities straight from a graph (requires_grad) in float32
    logits = torch.randn(6, 3, requires_grad=True)
    proba = torch.softmax(logits, dim=1)
    result = compute_ordinal_metrics(y_true, proba)
    assert result == pytest.approx(compute_ordinal_metrics(Y_TRUE, proba.detach().numpy()))
    assert proba_to_label(proba).tolist() == proba_to_label(proba.detach().numpy()).tolist()


def test_numpy_and_list_inputs_agree():
    assert rmse(np.array(Y_TRUE, dtype=np.uint8), np.array(Y_PRED, dtype=np.int32)) == (
        pytest.approx(rmse(Y_TRUE, Y_PRED))
    )
    assert mae(np.array(Y_TRUE, dtype=float), Y_PRED) == pytest.approx(0.5)


# --------------------------------------------------------------------------- validation

GOOD_PROBA = [[0.5, 0.5], [0.25, 0.75]]


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (lambda: mae([], []), "y_true is empty"),
        (lambda: mae([0], []), "y_pred is empty"),
        (lambda: mae([0, 1, 2], [0, 1]), "different lengths: 3 vs 2"),
        (lambda: ranked_probability_score([0, 1, 1], GOOD_PROBA), "different lengths: 3 vs 2"),
        (lambda: mae([0, 1, 2], [0, 1.5, 2]), "y_pred .*index 1: 1.5"),
        (lambda: mae([0, 2.25], [0, 1]), "y_true .*index 1: 2.25"),
        (lambda: mae([0, float("nan")], [0, 1]), "index 1: nan"),
        (lambda: mae([0, 1], [float("inf"), 1]), "index 0: inf"),
        (lambda: mae(["a", "b"], [0, 1]), "integer labels, got dtype <U1"),
        (lambda: mae([True, False], [0, 1]), "got dtype bool"),
        (lambda: mae([[0, 1]], [[0, 1]]), r"1-D .*shape \(1, 2\)"),
        (lambda: mae([0, -1, 2, -3], [0, 1, 2, 3]), r"y_true has negative labels: \[-3, -1\]"),
        (lambda: rmse([0, 1], [0, -2]), r"y_pred has negative labels: \[-2\]"),
        (lambda: qwk([0, 1, 5], [0, 1, 2], num_classes=3), r"y_true .*num_classes=3: \[5\]"),
        (lambda: macro_mae([0, 1], [0, 4], num_classes=3), r"y_pred .*num_classes=3: \[4\]"),
        (lambda: per_class_mae([0, 7], [0, 1], num_classes=2), r"num_classes=2: \[7\]"),
        (lambda: qwk([0, 1], [0, 1], num_classes=1), "num_classes must be an integer >= 2, got 1"),
        (lambda: qwk([0, 1], [0, 1], num_classes=2.0), "num_classes .*got 2.0"),
        (lambda: qwk([0, 1], [0, 1], num_classes=True), "num_classes .*got True"),
        (lambda: off_by_one_accuracy([0], [0], tolerance=-1), "tolerance .*got -1"),
        (lambda: ranked_probability_score([0, 1], [0.5, 0.5]), r"2-D .*shape \(2,\)"),
        (lambda: proba_to_label([[[0.5, 0.5]]]), r"2-D .*shape \(1, 1, 2\)"),
        (lambda: proba_to_label(np.zeros((0, 3))), "proba is empty"),
        (lambda: proba_to_label([[1.0]]), "at least 2 class columns, got 1"),
        (
            lambda: ranked_probability_score([0, 1], [[0.5, 0.5], [1.2, -0.2]]),
            r"negative probabilities; first in row 1 \(min -0.2, sum 1\)",
        ),
        (
            lambda: ranked_probability_score([0, 1], [[0.5, 0.5], [0.6, 0.3]]),
            "row 1 sums to 0.9",
        ),
        (
            lambda: proba_to_label([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5002]]),
            "row 2 sums to 1.0002",
        ),
        (lambda: proba_to_label([[0.5, float("nan")]]), "row 0 sums to nan"),
        (
            lambda: ranked_probability_score([0, 1], GOOD_PROBA, num_classes=3),
            "y_pred has 2 columns but num_classes=3",
        ),
        (
            lambda: compute_ordinal_metrics([0, 1], GOOD_PROBA, num_classes=4),
            "proba has 2 columns but num_classes=4",
        ),
        (
            lambda: compute_ordinal_metrics([0, 2], GOOD_PROBA),
            r"y_true has labels >= the number of columns of proba \(2\): \[2\]",
        ),
    ],
)
def test_validation_errors(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


def test_label_errors_are_label_error():
    # LabelError subclasses ValueError, so callers can catch either
    with pytest.raises(LabelError):
        mae([0, -1], [0, 1])


def test_error_lists_at_most_ten_distinct_values():
    with pytest.raises(ValueError, match=re.escape("-11, ... (20 distinct)]")) as info:
        mae(list(range(-20, 0)), [0] * 20)
    assert "-20, -19" in str(info.value)


def test_proba_within_tolerance_is_accepted():
    # rows off by less than 1e-4 (e.g. float32 softmax) are fine
    proba = np.array([[0.5, 0.49995], [0.25, 0.75004]])
    assert proba_to_label(proba).tolist() == [0, 1]
