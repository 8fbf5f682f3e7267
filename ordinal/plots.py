"""Figures for notebooks and reports: data, training, parity and INT8 diagnostics.

Every function returns a new :class:`matplotlib.figure.Figure` built with the object API
(``Figure`` and its axes, never ``pyplot``), so nothing is registered in pyplot's global
figure list and nothing leaks between cells or tests. In a notebook the figure is shown by
making it a cell's last expression (with the inline backend active). This module is the only
place in the library that imports matplotlib.

Inputs are validated: empty or mismatched inputs raise :class:`ValueError` naming what is
wrong, rather than drawing an empty or misleading plot.

Every figure carries a text description (:attr:`DescribedFigure.alt_text`): a notebook shows
it as the image's alternative text (rendered pages stay readable with a screen reader, and
nbconvert finds no image without one), and :meth:`DescribedFigure.save_png` writes the figure
for pages that embed it.
"""

from __future__ import annotations

import base64
import io
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from numpy.typing import ArrayLike

__all__ = [
    "DescribedFigure",
    "plot_confusion_matrix",
    "plot_cutpoints",
    "plot_int8_scatter",
    "plot_label_distribution",
    "plot_parity_deltas",
    "plot_reliability",
    "plot_training_curves",
]

_CUTPOINT = re.compile(r"^cutpoint_(\d+)$")
#: Deltas below this are drawn at it: exact zeros have no place on a log axis.
DELTA_FLOOR = 1e-12


class DescribedFigure(Figure):
    """A :class:`~matplotlib.figure.Figure` with a text description of what it shows.

    In a notebook it displays as a PNG whose output metadata carries ``alt`` (what the
    project's HTML template writes as the image's ``alt`` attribute) and whose plain-text
    form is the description.
    """

    #: Set by the plot functions; otherwise derived from the axes' titles and labels.
    description: str | None = None

    @property
    def alt_text(self) -> str:
        """The description, or one derived from the axes (title: y against x)."""
        if self.description:
            return self.description
        parts = []
        for ax in self.axes:
            title, x, y = ax.get_title(), ax.get_xlabel(), ax.get_ylabel()
            if title or x or y:
                parts.append(f"{title or 'plot'}: {y or 'value'} against {x or 'index'}")
        return "; ".join(parts) or "figure"

    def png_bytes(self, dpi: float | None = None) -> bytes:
        """The figure as PNG bytes."""
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=dpi or self.dpi)
        return buffer.getvalue()

    def save_png(self, path: str | os.PathLike[str], dpi: float | None = None) -> str:
        """Write the figure as a PNG at ``path``; return the path as a string."""
        with open(path, "wb") as fh:
            fh.write(self.png_bytes(dpi))
        return os.fspath(path)

    def _repr_mimebundle_(
        self, include: Any = None, exclude: Any = None
    ) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
        png = base64.b64encode(self.png_bytes()).decode("ascii")
        alt = self.alt_text
        return {"image/png": png, "text/plain": alt}, {"image/png": {"alt": alt}}


def _figure(width: float = 6.4, height: float = 4.0) -> DescribedFigure:
    return DescribedFigure(figsize=(width, height), layout="constrained")


def _labels_array(values: ArrayLike, name: str, num_classes: int | None = None) -> np.ndarray:
    a = np.asarray(values)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of labels, got shape {a.shape}")
    integral = a.dtype.kind in "iu" or (
        a.dtype.kind == "f" and bool(np.isfinite(a).all() and (a == np.round(a)).all())
    )
    if not integral:
        raise ValueError(f"{name} must hold integer labels, got {a.dtype} values")
    a = a.astype(np.int64)
    if num_classes is not None and (a.min() < 0 or a.max() >= num_classes):
        bad = sorted({int(v) for v in a if not 0 <= v < num_classes})[:10]
        raise ValueError(f"{name} has labels outside [0, {num_classes}): {bad}")
    return a


def _scores(values: ArrayLike, name: str) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} has {int((~np.isfinite(a)).sum())} non-finite values")
    return a


def plot_label_distribution(
    counts_by_split: Mapping[str, Mapping[str, int] | Sequence[int]],
    label_names: Sequence[str],
) -> DescribedFigure:
    """Grouped bars: how many records of each label every split holds.

    Parameters
    ----------
    counts_by_split : mapping
        ``{split: {label name: count}}`` (as in
        ``PreprocessReport.label_distribution(labels)["splits"]``) or
        ``{split: [count per label]}`` in label order. Missing names count 0.
    label_names : sequence of str
        The ordered label set; sets the bar order.

    Raises
    ------
    ValueError
        No splits or labels, an unknown label name, or a count list of the wrong length.
    """
    names = list(label_names)
    if not names or not counts_by_split:
        raise ValueError("plot_label_distribution needs at least one split and one label")
    table: dict[str, list[int]] = {}
    for split, counts in counts_by_split.items():
        if isinstance(counts, Mapping):
            unknown = sorted(set(counts) - set(names))
            if unknown:
                raise ValueError(f"split {split!r} counts unknown labels {unknown}")
            table[split] = [int(counts.get(n, 0)) for n in names]
        else:
            row = [int(c) for c in counts]
            if len(row) != len(names):
                raise ValueError(
                    f"split {split!r} has {len(row)} counts for {len(names)} labels {names}"
                )
            table[split] = row
    fig = _figure()
    ax = fig.subplots()
    x = np.arange(len(names))
    width = 0.8 / len(table)
    for i, (split, row) in enumerate(table.items()):
        bars = ax.bar(x + (i - (len(table) - 1) / 2) * width, row, width, label=split)
        ax.bar_label(bars, fontsize="x-small")
    ax.set_xticks(x, names)
    ax.set_xlabel("label")
    ax.set_ylabel("records")
    ax.set_title("Label distribution")
    ax.legend()
    return fig


def _series(log_history: Sequence[Mapping[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    rows = [(h["step"], h[key]) for h in log_history if key in h and "step" in h]
    steps = np.asarray([r[0] for r in rows], dtype=np.float64)
    values = np.asarray([r[1] for r in rows], dtype=np.float64)
    return steps, values


def plot_training_curves(log_history: Sequence[Mapping[str, Any]]) -> DescribedFigure:
    """Training loss against step, with evaluation loss and throughput where logged.

    Parameters
    ----------
    log_history : sequence of dict
        The trainer's ``state.log_history`` (``TrainResult.log_history``): training logs carry
        ``loss`` and ``step``; evaluation logs ``eval_loss``; training logs of an
        :class:`ordinal.OrdinalRegressionTrainer` also ``throughput_samples_per_second``,
        drawn on a second axis.

    Raises
    ------
    ValueError
        No entry has both ``loss`` and ``step``.
    """
    steps, loss = _series(log_history, "loss")
    if steps.size == 0:
        raise ValueError("log_history has no training loss (entries with 'loss' and 'step')")
    fig = _figure()
    ax = fig.subplots()
    ax.plot(steps, loss, marker="o", markersize=3, label="training loss")
    eval_steps, eval_loss = _series(log_history, "eval_loss")
    if eval_steps.size:
        ax.plot(eval_steps, eval_loss, marker="s", linestyle="--", label="evaluation loss")
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("loss (ordinal NLL)")
    ax.set_title("Training curves")
    handles, labels = ax.get_legend_handles_labels()
    rate_steps, rate = _series(log_history, "throughput_samples_per_second")
    if rate_steps.size:
        twin = ax.twinx()
        twin.plot(rate_steps, rate, color="tab:gray", alpha=0.6, label="throughput")
        twin.set_ylabel("samples / s")
        more_handles, more_labels = twin.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    # A figure legend above the axes: an axes legend would sit under the twin's line.
    fig.legend(handles, labels, loc="outside upper center", ncols=len(labels))
    fig.description = (
        f"Training loss against step: {loss[0]:.3g} at step {steps[0]:.0f}, "
        f"{loss[-1]:.3g} at step {steps[-1]:.0f} (lowest {loss.min():.3g})"
        + (f"; evaluation loss {eval_loss[-1]:.3g} at the end" if eval_steps.size else "")
    )
    return fig


def plot_cutpoints(
    log_history: Sequence[Mapping[str, Any]], label_names: Sequence[str] | None = None
) -> DescribedFigure:
    """Every logged cutpoint against step: one line per ``cutpoint_k``.

    Ordered cutpoints are the point of the heads: the lines must never cross.

    Parameters
    ----------
    log_history : sequence of dict
        The trainer's log history; training logs carry ``cutpoint_0 .. cutpoint_{K-2}``.
    label_names : sequence of str, optional
        The K ordered labels; cutpoint ``k`` is then named after the labels it separates.

    Raises
    ------
    ValueError
        No ``cutpoint_k`` key is logged (a head without cutpoints, or an empty history), or
        ``label_names`` does not have one more entry than there are cutpoints.
    """
    found = sorted({int(m.group(1)) for h in log_history for k in h if (m := _CUTPOINT.match(k))})
    if not found:
        raise ValueError("log_history has no cutpoint_k values (the CORN head logs none)")
    if label_names is not None and len(label_names) != found[-1] + 2:
        raise ValueError(
            f"{len(label_names)} label names for {found[-1] + 1} cutpoints; expected "
            f"{found[-1] + 2}"
        )
    fig = _figure(8.0, 4.0)  # room for the legend on the right
    ax = fig.subplots()
    for k in found:
        steps, values = _series(log_history, f"cutpoint_{k}")
        name = f"cutpoint_{k}"
        if label_names is not None:
            name += f" ({label_names[k]} | {label_names[k + 1]})"
        ax.plot(steps, values, marker="o", markersize=3, label=name)
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("cutpoint")
    ax.set_title("Cutpoints during training")
    fig.legend(loc="outside right center", fontsize="small")
    return fig


def plot_confusion_matrix(
    y_true: ArrayLike, y_pred: ArrayLike, label_names: Sequence[str]
) -> DescribedFigure:
    """Counts of (true, predicted) label pairs; the image's array is the count matrix.

    Parameters
    ----------
    y_true, y_pred : array-like, shape=(n,)
        Integer labels in ``[0, K)``.
    label_names : sequence of str
        The K ordered labels.

    Raises
    ------
    ValueError
        Empty, mismatched or non-integer labels, or labels outside ``[0, K)``.
    """
    k = len(label_names)
    if k < 2:
        raise ValueError(f"plot_confusion_matrix needs at least two label names, got {k}")
    t = _labels_array(y_true, "y_true", k)
    p = _labels_array(y_pred, "y_pred", k)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} labels, y_pred {p.size}")
    matrix = np.zeros((k, k), dtype=np.int64)
    np.add.at(matrix, (t, p), 1)
    fig = _figure(1.2 * k + 2.4, 1.0 * k + 1.6)
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    threshold = matrix.max() / 2
    for (i, j), count in np.ndenumerate(matrix):
        colour = "white" if count > threshold else "black"
        ax.text(j, i, str(count), ha="center", va="center", color=colour, fontsize="small")
    ax.set_xticks(range(k), label_names, rotation=30, ha="right")
    ax.set_yticks(range(k), label_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = float(np.trace(matrix) / matrix.sum())
    ax.set_title(f"Confusion matrix (n={t.size}, accuracy {accuracy:.1%})")
    fig.colorbar(image, ax=ax, shrink=0.8)
    within_one = float(sum(matrix[i, j] for i, j in np.ndindex(k, k) if abs(i - j) <= 1))
    fig.description = (
        f"Confusion matrix of true against predicted labels ({', '.join(map(str, label_names))})"
        f" on {t.size} samples: {accuracy:.1%} on the diagonal, "
        f"{within_one / matrix.sum():.1%} within one class"
    )
    return fig


def _load_deltas(
    deltas: Mapping[str, ArrayLike] | str | os.PathLike[str],
) -> dict[str, np.ndarray]:
    if isinstance(deltas, str | os.PathLike):
        with np.load(deltas) as data:
            raw = {k: data[k] for k in data.files}
    else:
        raw = {k: np.asarray(v) for k, v in deltas.items()}
    # deltas.npz also stores the sample ids: keep the numeric tensors only.
    out = {k: v.astype(np.float64) for k, v in raw.items() if v.dtype.kind in "fiu"}
    if not out:
        raise ValueError("no delta tensors to plot (expected e.g. 'probs', 'latent')")
    empty = [k for k, v in out.items() if v.size == 0 or v.ndim == 0]
    if empty:
        raise ValueError(f"delta tensors {empty} are empty or scalar; expected shape=(n, ...)")
    return out


def plot_parity_deltas(
    deltas: Mapping[str, ArrayLike] | str | os.PathLike[str], atol: float | None = None
) -> DescribedFigure:
    """ONNX Runtime against PyTorch: max abs delta per output, and per-sample histograms.

    Parameters
    ----------
    deltas : mapping or path
        ``{output: ort - torch}`` arrays of shape=(n, ...) (e.g. ``latent`` (n,), ``probs``
        (n, K)), or the ``deltas.npz`` that :func:`ordinal.export.parity.check_parity` writes
        (``ParityReport.files["deltas"]``; its ``ids`` entry is skipped).
    atol : float, optional
        The gate's absolute tolerance, drawn as a reference line.

    Raises
    ------
    ValueError
        No numeric delta tensor, or an empty one.

    Notes
    -----
    Both panels are on log scales; deltas below ``DELTA_FLOOR`` (exact zeros included) are
    drawn at the floor.
    """
    arrays = _load_deltas(deltas)
    per_sample = {
        name: np.maximum(np.abs(a).reshape(len(a), -1).max(axis=1), DELTA_FLOOR)
        for name, a in arrays.items()
    }
    fig = _figure(10.0, 4.0)
    left, right = fig.subplots(1, 2)
    names = list(per_sample)
    worst = [float(v.max()) for v in per_sample.values()]
    bars = left.bar(names, worst, color="tab:blue")
    left.bar_label(bars, labels=[f"{v:.2g}" for v in worst], fontsize="small")
    left.set_yscale("log")
    left.set_ylabel("max |ort - torch|")
    left.set_title("Worst delta per output")
    everything = np.concatenate(list(per_sample.values()))
    low, high = float(everything.min()), float(everything.max())
    if atol is not None:
        left.axhline(atol, color="tab:red", linestyle="--", label=f"atol {atol:g}")
        left.legend()
        low, high = min(low, atol), max(high, atol)
    edges = np.geomspace(low, high * 1.0001, 30) if high > low else np.asarray([low / 2, low * 2])
    for name, values in per_sample.items():
        right.hist(values, bins=edges, histtype="step", linewidth=1.5, label=name)
    if atol is not None:
        right.axvline(atol, color="tab:red", linestyle="--")
    right.set_xscale("log")
    right.set_xlabel(f"per-sample max |ort - torch| (floored at {DELTA_FLOOR:g})")
    right.set_ylabel("samples")
    right.set_title(f"Deltas over {len(next(iter(arrays.values())))} samples")
    right.legend(fontsize="small")
    return fig


def plot_int8_scatter(
    fp32_scores: ArrayLike, int8_scores: ArrayLike, *, name: str = "latent score"
) -> DescribedFigure:
    """INT8 against FP32 score per sample, with the ``y = x`` line they should sit on.

    Parameters
    ----------
    fp32_scores, int8_scores : array-like, shape=(n,)
        The same score from both graphs (``Int8Report.fp32_latent`` / ``int8_latent``).
    name : str
        What the score is, for the axis labels.

    Raises
    ------
    ValueError
        Empty, non-finite or mismatched inputs.
    """
    x = _scores(fp32_scores, "fp32_scores")
    y = _scores(int8_scores, "int8_scores")
    if x.shape != y.shape:
        raise ValueError(f"fp32_scores has {x.size} values, int8_scores {y.size}")
    fig = _figure(5.0, 5.0)
    ax = fig.subplots()
    lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
    ax.plot([lo, hi], [lo, hi], color="tab:gray", linestyle="--", linewidth=1, label="y = x")
    ax.scatter(x, y, s=8, alpha=0.6, label=f"{x.size} samples")
    ax.set_xlabel(f"FP32 {name}")
    ax.set_ylabel(f"INT8 {name}")
    # Scores of a barely trained model span a tiny range: few, tilted ticks stay readable.
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.yaxis.set_major_locator(MaxNLocator(5))
    ax.tick_params(axis="x", labelrotation=30)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(f"INT8 vs FP32 (max |diff| {float(np.abs(y - x).max()):.3g})")
    ax.legend()
    return fig


def _reliability_bins(
    confidence: np.ndarray, hit: np.ndarray, n_bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per non-empty equal-width bin: mean predicted probability, observed frequency, count."""
    index = np.clip((confidence * n_bins).astype(np.int64), 0, n_bins - 1)
    counts = np.bincount(index, minlength=n_bins)
    mean_p = np.bincount(index, confidence, n_bins)
    freq = np.bincount(index, hit.astype(np.float64), n_bins)
    keep = counts > 0
    return mean_p[keep] / counts[keep], freq[keep] / counts[keep], counts[keep]


def plot_reliability(
    probs: ArrayLike,
    labels: ArrayLike,
    *,
    n_bins: int = 10,
    per_class: bool = False,
    label_names: Sequence[str] | None = None,
) -> DescribedFigure:
    """Reliability diagram: predicted probability against observed frequency.

    By default the top class: the highest class probability of each sample against how often
    that class is the true one, with the expected calibration error (ECE) in the title. With
    ``per_class`` one line per class: ``P(y = k)`` against the frequency of ``y = k``. The
    lower panel shows how many samples fall in each bin.

    Parameters
    ----------
    probs : array-like, shape=(n, K)
        Class probabilities (rows sum to 1).
    labels : array-like, shape=(n,)
        True labels in ``[0, K)``.
    n_bins : int
        Equal-width probability bins.
    per_class : bool
        One line per class instead of the top class.
    label_names : sequence of str, optional
        The K ordered labels, for the legend.

    Raises
    ------
    ValueError
        ``probs`` not (n, K) with K >= 2, values outside [0, 1], mismatched or out-of-range
        labels, or ``n_bins`` < 1.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] < 2:
        raise ValueError(f"probs must have shape (n, K) with n >= 1, K >= 2, got {p.shape}")
    if not np.isfinite(p).all() or p.min() < 0 or p.max() > 1:
        raise ValueError("probs must be finite probabilities in [0, 1]")
    y = _labels_array(labels, "labels", p.shape[1])
    if y.size != p.shape[0]:
        raise ValueError(f"{y.size} labels for {p.shape[0]} rows of probs")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if label_names is not None and len(label_names) != p.shape[1]:
        raise ValueError(f"{len(label_names)} label names for {p.shape[1]} classes")
    names = list(label_names) if label_names is not None else [str(k) for k in range(p.shape[1])]
    fig = _figure(5.5, 6.0)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    top.plot([0, 1], [0, 1], color="tab:gray", linestyle="--", linewidth=1, label="calibrated")
    edges = np.linspace(0, 1, n_bins + 1)
    if per_class:
        for k in range(p.shape[1]):
            mean_p, freq, _ = _reliability_bins(p[:, k], y == k, n_bins)
            top.plot(mean_p, freq, marker="o", markersize=3, label=names[k])
        bottom.hist(p.ravel(), bins=edges, color="tab:gray")
        title = "Reliability per class"
    else:
        confidence = p.max(axis=1)
        hit = p.argmax(axis=1) == y
        mean_p, freq, counts = _reliability_bins(confidence, hit, n_bins)
        ece = float(np.sum(counts * np.abs(freq - mean_p)) / y.size)
        top.plot(mean_p, freq, marker="o", label="top class")
        bottom.hist(confidence, bins=edges, color="tab:gray")
        title = f"Reliability of the top class (ECE {ece:.3f})"
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("observed frequency")
    top.set_title(title)
    top.legend(fontsize="small")
    bottom.set_xlabel("predicted probability")
    bottom.set_ylabel("count")
    return fig
