"""Evaluation metrics for ordinal classification: label errors, agreement, rank correlation, RPS.

Every metric takes integer class labels in ``[0, K)`` (and, for the probabilistic ones, class
probabilities of shape ``(n, K)``) as lists, NumPy arrays or torch tensors, validates them, and
returns plain Python floats. Inputs that are not valid labels or probabilities raise
``ValueError`` (label problems raise :class:`ordinal.exceptions.LabelError`, a ``ValueError``)
with a message that names the offending values.

:func:`compute_ordinal_metrics` is what the trainer calls at evaluation time: it turns class
probabilities into median labels with :func:`proba_to_label` and returns every metric in one
dictionary. ``docs/metrics.md`` has the definitions, ranges and directions.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats
from sklearn.metrics import cohen_kappa_score

from ordinal.exceptions import LabelError

__all__ = [
    "PROBA_ATOL",
    "accuracy",
    "compute_ordinal_metrics",
    "macro_mae",
    "mae",
    "off_by_one_accuracy",
    "per_class_mae",
    "proba_to_label",
    "qwk",
    "ranked_probability_score",
    "rmse",
    "spearman",
]

#: How far a row of class probabilities may sum from 1 and still be accepted.
PROBA_ATOL = 1e-4

_MAX_SHOWN = 10  # offending values listed in an error message

Labels = NDArray[np.int64]
Proba = NDArray[np.float64]


# --------------------------------------------------------------------------- validation


def _to_numpy(x: Any) -> np.ndarray:
    """Return ``x`` as a NumPy array; torch tensors are detected by duck typing."""
    if hasattr(x, "detach") and hasattr(x, "cpu") and hasattr(x, "numpy"):
        x = x.detach().cpu()
        if x.is_floating_point():
            x = x.double()  # bfloat16 has no NumPy dtype
        x = x.numpy()
    return np.asarray(x)


def _show(values: np.ndarray) -> str:
    """Format the distinct offending values for an error message, at most ``_MAX_SHOWN``."""
    uniq = np.unique(values)
    shown = ", ".join(str(v) for v in uniq[:_MAX_SHOWN].tolist())
    more = f", ... ({uniq.size} distinct)" if uniq.size > _MAX_SHOWN else ""
    return f"[{shown}{more}]"


def _as_labels(x: Any, name: str, limit: int | None, limit_desc: str) -> Labels:
    a = _to_numpy(x)
    if a.ndim != 1:
        raise LabelError(f"{name} must be a 1-D sequence of labels, got shape {a.shape}")
    if a.size == 0:
        raise LabelError(f"{name} is empty")
    if a.dtype.kind == "f":
        bad = ~np.isfinite(a) | (a != np.round(a))
        if bad.any():
            i = int(np.argmax(bad))
            raise LabelError(
                f"{name} must hold integer labels; first non-integer at index {i}: {float(a[i])}"
            )
    elif a.dtype.kind not in "iu":
        raise LabelError(f"{name} must hold integer labels, got dtype {a.dtype}")
    a = a.astype(np.int64, copy=False)
    if a.min() < 0:
        raise LabelError(f"{name} has negative labels: {_show(a[a < 0])}")
    if limit is not None and a.max() >= limit:
        raise LabelError(f"{name} has labels >= {limit_desc}: {_show(a[a >= limit])}")
    return a


def _as_proba(x: Any, name: str, num_classes: int | None) -> Proba:
    p = _to_numpy(x)
    if p.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D class probabilities of shape (n, K), got shape {p.shape}"
        )
    if p.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    if p.dtype.kind not in "iuf":
        raise ValueError(f"{name} must hold numeric probabilities, got dtype {p.dtype}")
    p = p.astype(np.float64, copy=False)
    k = p.shape[1]
    if num_classes is not None and k != num_classes:
        raise ValueError(f"{name} has {k} columns but num_classes={num_classes}")
    if k < 2:
        raise ValueError(f"{name} needs at least 2 class columns, got {k}")
    sums = p.sum(axis=1)
    negative = (p < 0).any(axis=1)
    if negative.any():
        i = int(np.argmax(negative))
        raise ValueError(
            f"{name} has negative probabilities; first in row {i} "
            f"(min {p[i].min():.8g}, sum {sums[i]:.8g})"
        )
    off = ~(np.abs(sums - 1.0) <= PROBA_ATOL)  # written so that NaN sums are caught too
    if off.any():
        i = int(np.argmax(off))
        raise ValueError(
            f"{name} rows must sum to 1 (within {PROBA_ATOL:g}); row {i} sums to {sums[i]:.8g}"
        )
    return p


def _check_int(value: Any, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _validate(
    y_true: Any,
    y_pred: Any,
    num_classes: int | None = None,
    *,
    proba: bool = False,
    pred_name: str = "y_pred",
) -> tuple[Labels, np.ndarray, int]:
    """Check and convert a metric's inputs; the one place where inputs are validated.

    Returns ``(y_true, y_pred, K)``: int64 labels, then int64 labels or float64 probabilities
    of shape ``(n, K)`` when ``proba``, and the number of classes (``num_classes``, else the
    column count of the probabilities, else the largest label in either array plus one).
    """
    if num_classes is not None:
        _check_int(num_classes, "num_classes", 2)
    desc = f"num_classes={num_classes}"
    if proba:
        pred = _as_proba(y_pred, pred_name, num_classes)
        k = pred.shape[1]
        if num_classes is None:
            desc = f"the number of columns of {pred_name} ({k})"
        true = _as_labels(y_true, "y_true", k, desc)
    else:
        true = _as_labels(y_true, "y_true", num_classes, desc)
        pred = _as_labels(y_pred, pred_name, num_classes, desc)
    if len(true) != len(pred):
        raise ValueError(
            f"y_true and {pred_name} have different lengths: {len(true)} vs {len(pred)}"
        )
    if not proba:
        k = num_classes if num_classes is not None else int(max(true.max(), pred.max())) + 1
    return true, pred, k


# --------------------------------------------------------------------------- kernels
# These take validated arrays; the public functions validate and call them.


def _mae(t: Labels, p: Labels) -> float:
    return float(np.mean(np.abs(t - p)))


def _rmse(t: Labels, p: Labels) -> float:
    return math.sqrt(float(np.mean(np.square(t - p, dtype=np.float64))))


def _accuracy(t: Labels, p: Labels) -> float:
    return float(np.mean(t == p))


def _within(t: Labels, p: Labels, tolerance: int) -> float:
    return float(np.mean(np.abs(t - p) <= tolerance))


def _qwk(t: Labels, p: Labels, k: int) -> float:
    if t.min() == t.max() == p.min() == p.max():
        return math.nan  # both raters use one and the same class: kappa is 0/0
    return float(cohen_kappa_score(t, p, labels=np.arange(k), weights="quadratic"))


def _spearman(t: Labels, p: Labels) -> float:
    if t.min() == t.max() or p.min() == p.max():
        return math.nan  # a constant input has no ranking; scipy would warn
    return float(stats.spearmanr(t, p).statistic)


def _rps(t: Labels, proba: Proba) -> float:
    k = proba.shape[1]
    cdf = np.cumsum(proba, axis=1)[:, :-1]
    observed = t[:, None] <= np.arange(k - 1)
    return float(np.mean(np.sum(np.square(cdf - observed), axis=1)) / (k - 1))


def _class_mae(t: Labels, p: Labels, k: int) -> NDArray[np.float64]:
    """MAE of each class's samples, ``nan`` where the class is absent from ``t``."""
    counts = np.bincount(t, minlength=k)
    sums = np.bincount(t, weights=np.abs(t - p).astype(np.float64), minlength=k)
    out = np.full(k, np.nan)
    present = counts > 0
    out[present] = sums[present] / counts[present]
    return out


def _macro_mae(t: Labels, p: Labels, k: int) -> float:
    return float(np.nanmean(_class_mae(t, p, k)))


def _median_label(proba: Proba) -> Labels:
    exceed = 1.0 - np.cumsum(proba, axis=1)[:, :-1]  # P(y > k) for k = 0 .. K-2
    return np.count_nonzero(exceed > 0.5, axis=1).astype(np.int64)


# --------------------------------------------------------------------------- public API


def mae(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean absolute error between integer labels.

    ``mean(|y_true - y_pred|)``, in classes; 0 is best.

    Parameters
    ----------
    y_true, y_pred : array-like of int, shape (n,)
        True and predicted labels (lists, NumPy arrays or torch tensors).

    Returns
    -------
    float
        The mean absolute error, in ``[0, K - 1]``.

    Raises
    ------
    ValueError
        If the inputs are empty, differ in length, or are not non-negative integer labels.

    Examples
    --------
    >>> mae([0, 1, 2, 3], [0, 1, 2, 1])
    0.5
    """
    t, p, _ = _validate(y_true, y_pred)
    return _mae(t, p)


def rmse(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Root mean squared error between integer labels.

    ``sqrt(mean((y_true - y_pred)^2))``, in classes; 0 is best. Large errors weigh more than
    in :func:`mae`.

    Parameters
    ----------
    y_true, y_pred : array-like of int, shape (n,)
        True and predicted labels.

    Returns
    -------
    float
        The root mean squared error, in ``[0, K - 1]``.

    Raises
    ------
    ValueError
        If the inputs are empty, differ in length, or are not non-negative integer labels.

    Examples
    --------
    >>> rmse([0, 1, 2, 3], [0, 1, 2, 1])
    1.0
    """
    t, p, _ = _validate(y_true, y_pred)
    return _rmse(t, p)


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Fraction of exactly correct labels.

    Parameters
    ----------
    y_true, y_pred : array-like of int, shape (n,)
        True and predicted labels.

    Returns
    -------
    float
        ``mean(y_true == y_pred)``, in ``[0, 1]``; 1 is best.

    Raises
    ------
    ValueError
        If the inputs are empty, differ in length, or are not non-negative integer labels.

    Examples
    --------
    >>> accuracy([0, 1, 2, 3], [0, 1, 2, 1])
    0.75
    """
    t, p, _ = _validate(y_true, y_pred)
    return _accuracy(t, p)


def off_by_one_accuracy(y_true: ArrayLike, y_pred: ArrayLike, tolerance: int = 1) -> float:
    """Fraction of labels within ``tolerance`` classes of the truth.

    Parameters
    ----------
    y_true, y_pred : array-like of int, shape (n,)
        True and predicted labels.
    tolerance : int, default 1
        Largest accepted ``|y_true - y_pred|``; 0 gives :func:`accuracy`.

    Returns
    -------
    float
        ``mean(|y_true - y_pred| <= tolerance)``, in ``[0, 1]``; 1 is best.

    Raises
    ------
    ValueError
        If ``tolerance`` is not a non-negative integer, or the labels are invalid.

    Examples
    --------
    >>> off_by_one_accuracy([0, 1, 2, 3], [1, 1, 2, 1])
    0.75
    """
    _check_int(tolerance, "tolerance", 0)
    t, p, _ = _validate(y_true, y_pred)
    return _within(t, p, tolerance)


def qwk(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int | None = None) -> float:
    """Quadratic weighted Cohen's kappa.

    ``1 - sum(W * O) / sum(W * E)`` with ``W[i, j] = (i - j)^2``, ``O`` the ``K x K``
    confusion matrix and ``E`` the outer product of its marginals divided by ``n``
    (computed by :func:`sklearn.metrics.cohen_kappa_score` over labels ``0 .. K-1``).

    Parameters
    ----------
    y_true, y_pred : array-like of int, shape (n,)
        True and predicted labels.
    num_classes : int, optional
        ``K``; by default the largest label in either array plus one. Labels must be below it.

    Returns
    -------
    float
        Kappa in ``[-1, 1]``; 1 is perfect agreement, 0 chance level. ``nan`` (without a
        warning) when both arrays hold one and the same single class, where kappa is 0/0.

    Raises
    ------
    ValueError
        If the labels are invalid or not below ``num_classes``.

    Examples
    --------
    >>> round(qwk([0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0]), 4)
    0.2857
    """
    t, p, k = _validate(y_true, y_pred, num_classes)
    return _qwk(t, p, k)


def spearman(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Spearman rank correlation between true and predicted labels.

    The Pearson correlation of the (tie-averaged) ranks, from :func:`scipy.stats.spearmanr`.

    Parameters
    ----------
    y_true, y_pred : array-like of int, shape (n,)
        True and predicted labels.

    Returns
    -------
    float
        Correlation in ``[-1, 1]``; 1 is best. ``nan``, without a warning, when either input
        is constant (including ``n == 1``).

    Raises
    ------
    ValueError
        If the inputs are empty, differ in length, or are not non-negative integer labels.

    Examples
    --------
    >>> round(spearman([0, 1, 2, 3], [0, 1, 3, 2]), 6)
    0.8
    >>> spearman([0, 1, 2], [1, 1, 1])
    nan
    """
    t, p, _ = _validate(y_true, y_pred)
    return _spearman(t, p)


def ranked_probability_score(
    y_true: ArrayLike, y_pred: ArrayLike, num_classes: int | None = None
) -> float:
    """Normalised ranked probability score of class probabilities.

    For ``K`` classes, with ``F_ik = sum_{j<=k} y_pred[i, j]`` the predicted CDF,

    ``RPS = mean_i [ 1/(K-1) * sum_{k=0}^{K-2} (F_ik - 1[y_true_i <= k])^2 ]``.

    It is the Brier score of the cumulative distribution: probability mass far from the true
    class costs more than mass next to it. For ``K = 2`` it equals the binary Brier score.

    Parameters
    ----------
    y_true : array-like of int, shape (n,)
        True labels in ``[0, K)``.
    y_pred : array-like of float, shape (n, K)
        Class probabilities; each row non-negative and summing to 1 (within ``PROBA_ATOL``).
    num_classes : int, optional
        ``K``; if given it must equal the number of columns of ``y_pred``.

    Returns
    -------
    float
        The score in ``[0, 1]``; 0 (all mass on the true class) is best.

    Raises
    ------
    ValueError
        If ``y_pred`` is not 2-D, has negative entries, rows not summing to 1, or a column
        count other than ``num_classes``; or if the labels are invalid or ``>= K``.

    Examples
    --------
    >>> round(ranked_probability_score([0, 2], [[0.7, 0.2, 0.1], [0.2, 0.3, 0.5]]), 6)
    0.0975
    """
    t, p, _ = _validate(y_true, y_pred, num_classes, proba=True)
    return _rps(t, p)


def macro_mae(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int | None = None) -> float:
    """Macro-averaged mean absolute error (Baccianella et al., 2009).

    The MAE of each class's samples, averaged over the classes present in ``y_true``, so that
    every class counts the same however rare it is.

    Parameters
    ----------
    y_true, y_pred : array-like of int, shape (n,)
        True and predicted labels.
    num_classes : int, optional
        ``K``; only used to check that labels are below it.

    Returns
    -------
    float
        In ``[0, K - 1]``; 0 is best.

    Raises
    ------
    ValueError
        If the labels are invalid or not below ``num_classes``.

    Examples
    --------
    >>> macro_mae([0, 0, 0, 1], [0, 0, 0, 0])  # plain MAE would be 0.25
    0.5
    """
    t, p, k = _validate(y_true, y_pred, num_classes)
    return _macro_mae(t, p, k)


def per_class_mae(
    y_true: ArrayLike, y_pred: ArrayLike, num_classes: int | None = None
) -> dict[int, float]:
    """Mean absolute error of each true class's samples.

    Parameters
    ----------
    y_true, y_pred : array-like of int, shape (n,)
        True and predicted labels.
    num_classes : int, optional
        ``K``, the classes reported; by default the largest label in either array plus one.

    Returns
    -------
    dict of int to float
        ``{c: mean(|y_true - y_pred| over samples with y_true == c)}`` for ``c`` in
        ``0 .. K-1``; ``nan`` for classes absent from ``y_true``.

    Raises
    ------
    ValueError
        If the labels are invalid or not below ``num_classes``.

    Examples
    --------
    >>> per_class_mae([0, 0, 2], [0, 1, 2])
    {0: 0.5, 1: nan, 2: 0.0}
    """
    t, p, k = _validate(y_true, y_pred, num_classes)
    return {c: float(v) for c, v in enumerate(_class_mae(t, p, k))}


def proba_to_label(proba: ArrayLike) -> Labels:
    """Median label of each row of class probabilities.

    The label is the number of thresholds ``k`` in ``0 .. K-2`` with
    ``P(y > k) = 1 - sum_{j<=k} proba[:, j] > 0.5``: the median of the predicted distribution
    (the lower median on an exact tie), which minimises expected absolute error, unlike argmax.

    Parameters
    ----------
    proba : array-like of float, shape (n, K)
        Class probabilities; each row non-negative and summing to 1 (within ``PROBA_ATOL``).

    Returns
    -------
    numpy.ndarray of int64, shape (n,)
        Labels in ``[0, K)``.

    Raises
    ------
    ValueError
        If ``proba`` is empty, not 2-D, has negative entries or rows not summing to 1.

    Examples
    --------
    >>> proba_to_label([[0.7, 0.2, 0.1], [0.45, 0.1, 0.45], [0.1, 0.1, 0.8]])
    array([0, 1, 2])
    """
    return _median_label(_as_proba(proba, "proba", None))


def compute_ordinal_metrics(
    y_true: ArrayLike, proba: ArrayLike, num_classes: int | None = None
) -> dict[str, float]:
    """Every ordinal metric at once, from true labels and predicted class probabilities.

    Labels are predicted with :func:`proba_to_label`; ``rps`` uses the probabilities.

    Parameters
    ----------
    y_true : array-like of int, shape (n,)
        True labels in ``[0, K)``.
    proba : array-like of float, shape (n, K)
        Class probabilities; each row non-negative and summing to 1 (within ``PROBA_ATOL``).
    num_classes : int, optional
        ``K``; if given it must equal the number of columns of ``proba``.

    Returns
    -------
    dict of str to float
        Keys ``"mae"``, ``"rmse"``, ``"accuracy"``, ``"off_by_one_accuracy"``, ``"qwk"``,
        ``"spearman"``, ``"rps"``, ``"macro_mae"``; ``qwk`` uses ``K`` classes.

    Raises
    ------
    ValueError
        On the conditions listed in :func:`ranked_probability_score`.

    Examples
    --------
    >>> m = compute_ordinal_metrics([0, 2], [[0.7, 0.2, 0.1], [0.2, 0.3, 0.5]])
    >>> m["mae"], round(m["rps"], 6)
    (0.5, 0.0975)
    """
    t, p, k = _validate(y_true, proba, num_classes, proba=True, pred_name="proba")
    labels = _median_label(p)
    return {
        "mae": _mae(t, labels),
        "rmse": _rmse(t, labels),
        "accuracy": _accuracy(t, labels),
        "off_by_one_accuracy": _within(t, labels, 1),
        "qwk": _qwk(t, labels, k),
        "spearman": _spearman(t, labels),
        "rps": _rps(t, p),
        "macro_mae": _macro_mae(t, labels, k),
    }
