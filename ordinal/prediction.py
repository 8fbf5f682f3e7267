"""Batch prediction from a saved PyTorch ordinal model or an exported ONNX graph.

One call turns texts (or images, for a ViT model) into labels, label names, class
probabilities, ``P(y > k)`` and the latent score, batch by batch, with the same encoding for
both backends:

* ``backend="torch"``: a model folder written by :func:`ordinal.save_ordinal_model` or a
  training run (``train/model/``), run with PyTorch;
* ``backend="onnx"``: a folder written by the export or quantisation step
  (``models/onnx/{experiment}/fp32/`` or ``int8/``: ``model.onnx``, ``ordinal.json``, the
  tokenizer or image processor), run with ONNX Runtime.

>>> from ordinal.prediction import Predictions
>>> import numpy as np
>>> p = Predictions(
...     labels=np.array([2]), probs=np.array([[0.1, 0.3, 0.6]]),
...     cum_probs=np.array([[0.9, 0.6]]), latent=None, class_names=("low", "mid", "high"))
>>> p.label_names.tolist(), len(p), p.num_classes
(['high'], 1, 3)
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ordinal.exceptions import OrdinalError

__all__ = [
    "ModelNotFoundError",
    "NotAnOrdinalModelError",
    "OnnxPredictor",
    "PredictionError",
    "PredictionInputError",
    "Predictions",
    "Predictor",
    "TorchPredictor",
    "load_predictor",
    "predict",
]

#: Batches above which ``progress=None`` shows a progress bar.
AUTO_PROGRESS_BATCHES = 8
#: Token limit per text when none is given (capped at the model's position embeddings).
DEFAULT_MAX_LENGTH = 128
ONNX_FILE = "model.onnx"
ONNX_METADATA = "ordinal.json"
#: Outputs an ONNX graph must have for the predictor (``latent`` only where the head has it).
ONNX_OUTPUTS = ("cum_probs", "probs", "label")

Progress = bool | Callable[[int, int], None] | None
"""``True``/``False`` shows or hides a bar; ``None`` shows one for long inputs; a callable
receives ``(items done, items in total)`` after every batch."""


class PredictionError(OrdinalError):
    """Base class of the batch-prediction errors."""


class ModelNotFoundError(PredictionError, FileNotFoundError):
    """The model folder or file does not exist, or lacks the files the backend needs."""


class NotAnOrdinalModelError(PredictionError, ValueError):
    """A folder or graph that holds a model, but not an ordinal one this library can run."""


class PredictionInputError(PredictionError, ValueError):
    """Inputs the model cannot take (text for an image model, a record without ``text``, ...).

    Attributes
    ----------
    index : int or None
        Position of the offending input, where one input is to blame.
    """

    def __init__(self, message: str, index: int | None = None) -> None:
        self.index = index
        super().__init__(message)


@dataclass(frozen=True)
class Predictions:
    """Predictions for ``n`` inputs of a model with ``K`` ordered classes.

    Attributes
    ----------
    labels : ndarray of int64, shape=(n,)
        Predicted class index in ``[0, K)`` (the head's own rule: the median of the predicted
        distribution for the ordinal heads).
    probs : ndarray of float32, shape=(n, K)
        Class probabilities ``P(y = k | x)``; rows sum to 1.
    cum_probs : ndarray of float32, shape=(n, K-1)
        ``P(y > k | x)`` for ``k = 0 .. K-2``; non-increasing along a row.
    latent : ndarray of float32, shape=(n,), or None
        The latent score ``eta`` (cumulative link, CORAL); ``None`` for CORN.
    class_names : tuple of str, length K
        Name of each class, lowest first (``config.ordinal.label_names``).
    """

    labels: np.ndarray
    probs: np.ndarray
    cum_probs: np.ndarray
    latent: np.ndarray | None
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        """``K``."""
        return len(self.class_names)

    @property
    def label_names(self) -> np.ndarray:
        """Name of each predicted label, ndarray of str, shape=(n,)."""
        return np.asarray(self.class_names, dtype=object)[self.labels].astype(str)

    def to_records(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per input: ``label``, ``label_name``, ``probs`` (and ``latent``).

        >>> Predictions(np.array([0]), np.array([[0.75, 0.25]]), np.array([[0.25]]),
        ...             np.array([-1.0]), ("no", "yes")).to_records()
        [{'label': 0, 'label_name': 'no', 'probs': [0.75, 0.25], 'latent': -1.0}]
        """
        names = self.label_names
        rows = []
        for i in range(len(self)):
            row: dict[str, Any] = {
                "label": int(self.labels[i]),
                "label_name": str(names[i]),
                "probs": [float(v) for v in self.probs[i]],
            }
            if self.latent is not None:
                row["latent"] = float(self.latent[i])
            rows.append(row)
        return rows


# --------------------------------------------------------------------------- inputs


def _is_image(value: Any) -> bool:
    from PIL import Image

    return isinstance(value, Image.Image)


def _texts(inputs: Sequence[Any]) -> list[str]:
    texts = []
    for index, item in enumerate(inputs):
        value = item.get("text") if isinstance(item, dict) else item
        if isinstance(item, dict) and "text" not in item:
            raise PredictionInputError(
                f"input {index} is a record without a 'text' field (keys {sorted(item)}); "
                "this is a text model",
                index,
            )
        if not isinstance(value, str):
            kind = "an image" if _is_image(value) else type(value).__name__
            raise PredictionInputError(
                f"input {index} is {kind}, not a string: this is a text model", index
            )
        texts.append(value)
    return texts


def _images(inputs: Sequence[Any]) -> list[Any]:
    from PIL import Image

    images = []
    for index, item in enumerate(inputs):
        value = item.get("image") if isinstance(item, dict) else item
        if isinstance(item, dict) and "image" not in item:
            raise PredictionInputError(
                f"input {index} is a record without an 'image' field (keys {sorted(item)}); "
                "this is an image model",
                index,
            )
        if isinstance(value, Path):
            if not value.is_file():
                raise PredictionInputError(f"input {index}: no image file at {value}", index)
            try:
                with Image.open(value) as handle:
                    value = handle.convert("RGB")
            except Exception as exc:
                raise PredictionInputError(
                    f"input {index}: {value} is not a readable image ({exc})", index
                ) from None
        if not _is_image(value):
            raise PredictionInputError(
                f"input {index} is {type(value).__name__}, not a PIL image or a pathlib.Path: "
                "this is an image model",
                index,
            )
        images.append(value.convert("RGB"))
    return images


def _progress_bar(progress: Progress, total: int, batches: int, desc: str):
    """``(update(done), close())`` for the chosen kind of progress report."""
    if callable(progress):
        return (lambda done: progress(done, total)), (lambda: None)
    show = progress if progress is not None else batches > AUTO_PROGRESS_BATCHES
    if not show:
        return (lambda done: None), (lambda: None)
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit="input")

    def update(done: int) -> None:
        bar.update(done - bar.n)

    return update, bar.close


# --------------------------------------------------------------------------- predictors


class Predictor:
    """Encodes inputs in batches and runs a backend; see :class:`TorchPredictor` and
    :class:`OnnxPredictor`.

    Parameters
    ----------
    processor : tokenizer or image processor
        What turns texts or images into model inputs.
    section : dict
        The model's ``config.ordinal`` (``head``, ``num_classes``, ``label_names``, ...).
    modality : {"text", "image"}
    batch_size : int
        Inputs per batch (>= 1).
    max_length : int
        Token limit per text; longer texts are truncated (text models only).
    """

    backend: str = ""

    def __init__(
        self,
        processor: Any,
        section: dict[str, Any],
        modality: str,
        batch_size: int = 32,
        max_length: int = 128,
    ) -> None:
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if int(max_length) < 2:
            raise ValueError(f"max_length must be >= 2, got {max_length}")
        self.processor = processor
        self.section = dict(section)
        self.modality = modality
        self.batch_size = int(batch_size)
        self.max_length = int(max_length)
        num_classes = int(section["num_classes"])
        names = section.get("label_names") or [str(k) for k in range(num_classes)]
        self.class_names: tuple[str, ...] = tuple(str(n) for n in names)

    @property
    def num_classes(self) -> int:
        """``K``."""
        return len(self.class_names)

    @property
    def head(self) -> str:
        """The head name recorded in ``config.ordinal``."""
        return str(self.section.get("head", ""))

    def encode(self, batch: Sequence[Any]) -> dict[str, np.ndarray]:
        """Model inputs for one batch, as NumPy arrays (``input_ids`` ... or ``pixel_values``)."""
        if self.modality == "text":
            encoded = self.processor(
                _texts(batch),
                padding="longest",
                truncation=True,
                max_length=self.max_length,
                return_tensors="np",
            )
            return {k: np.asarray(v, dtype=np.int64) for k, v in encoded.items()}
        pixels = self.processor(images=_images(batch), return_tensors="np")["pixel_values"]
        return {"pixel_values": np.asarray(pixels, dtype=np.float32)}

    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``cum_probs``, ``probs``, ``label`` (and ``latent``) for one encoded batch."""
        raise NotImplementedError

    def _batches(self, inputs: Sequence[Any]) -> Iterator[Sequence[Any]]:
        for start in range(0, len(inputs), self.batch_size):
            yield inputs[start : start + self.batch_size]

    def predict(self, inputs: Sequence[Any] | str | Any, progress: Progress = None) -> Predictions:
        """Predict every input, ``batch_size`` at a time.

        Parameters
        ----------
        inputs : sequence
            Texts (``str``) or records with a ``"text"`` field for a text model; PIL images,
            ``pathlib.Path`` image files or records with an ``"image"`` field for an image
            model. A single text or image is taken as a batch of one.
        progress : bool, callable or None
            See :data:`Progress`.

        Returns
        -------
        Predictions
            Arrays of ``n = len(inputs)`` rows, in input order.

        Raises
        ------
        PredictionInputError
            An input the model cannot take; the message names its position.
        """
        if isinstance(inputs, str | dict | Path) or _is_image(inputs):
            inputs = [inputs]
        inputs = list(inputs)
        total = len(inputs)
        chunks: dict[str, list[np.ndarray]] = {}
        update, close = _progress_bar(
            progress, total, math.ceil(total / self.batch_size), f"predict ({self.backend})"
        )
        done = 0
        try:
            for batch in self._batches(inputs):
                try:
                    outputs = self._run(self.encode(batch))
                except PredictionInputError as exc:
                    if exc.index is None:
                        raise
                    position = done + exc.index
                    message = str(exc).replace(f"input {exc.index}", f"input {position}", 1)
                    raise PredictionInputError(message, position) from None
                for name, value in outputs.items():
                    chunks.setdefault(name, []).append(value)
                done += len(batch)
                update(done)
        finally:
            close()
        k = self.num_classes
        if not chunks:
            empty = np.zeros((0, k), np.float32)
            latent = np.zeros(0, np.float32) if self.head != "corn" else None
            return Predictions(
                np.zeros(0, np.int64), empty, empty[:, :-1], latent, self.class_names
            )
        out = {name: np.concatenate(values) for name, values in chunks.items()}
        return Predictions(
            labels=out["label"].astype(np.int64),
            probs=out["probs"].astype(np.float32),
            cum_probs=out["cum_probs"].astype(np.float32),
            latent=out["latent"].astype(np.float32) if "latent" in out else None,
            class_names=self.class_names,
        )

    __call__ = predict


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise NotAnOrdinalModelError(f"cannot read {path}: {exc}") from None


def _ordinal_section(config_file: Path) -> dict[str, Any]:
    section = _read_json(config_file).get("ordinal")
    if not isinstance(section, dict) or "num_classes" not in section or "head" not in section:
        raise NotAnOrdinalModelError(
            f"{config_file} has no 'ordinal' section: {config_file.parent} is not an ordinal "
            "model (save one with ordinal.save_ordinal_model or train one)"
        )
    return section


def _processor(folder: Path) -> Any:
    from ordinal.presets import resolve_model

    try:
        return resolve_model(folder).processor
    except Exception as exc:
        raise ModelNotFoundError(
            f"{folder} has no usable tokenizer or image processor ({type(exc).__name__}: {exc}); "
            "save the model with its processor"
        ) from None


def _modality(config_file: Path) -> str:
    from transformers import AutoConfig

    from ordinal.models import backbone_family

    try:
        config = AutoConfig.from_pretrained(config_file.parent)
    except Exception as exc:
        raise NotAnOrdinalModelError(f"cannot read {config_file}: {exc}") from None
    return backbone_family(config).modality


def _resolve_max_length(max_length: int | None, limit: Any, where: Any) -> int:
    """``max_length``, or :data:`DEFAULT_MAX_LENGTH` capped at the model's position limit."""
    limit = limit if isinstance(limit, int) and limit > 0 else None
    if max_length is None:
        return min(DEFAULT_MAX_LENGTH, limit) if limit else DEFAULT_MAX_LENGTH
    if limit and max_length > limit:
        raise ValueError(
            f"max_length={max_length} exceeds the model's max_position_embeddings={limit} "
            f"({where}); pass max_length <= {limit}"
        )
    return int(max_length)


class TorchPredictor(Predictor):
    """Batch prediction with a PyTorch ordinal model (in memory or loaded from a folder).

    Parameters
    ----------
    model : PreTrainedModel
        An ordinal model (:func:`ordinal.build_ordinal_model`, :func:`ordinal.load_ordinal_model`).
    processor : tokenizer or image processor
    device : str
        Torch device, e.g. ``"cpu"`` or ``"cuda"``.
    batch_size : int
        As for :class:`Predictor`.
    max_length : int, optional
        Token limit per text; default 128, capped at the model's ``max_position_embeddings``.
    """

    backend = "torch"

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        batch_size: int = 32,
        max_length: int | None = None,
        device: str = "cpu",
    ) -> None:
        from ordinal.models import backbone_family, get_ordinal_decoder

        decoder = get_ordinal_decoder(model)
        section = dict(getattr(model.config, "ordinal", None) or {})
        section.setdefault("num_classes", decoder.num_classes)
        limit = getattr(model.config, "max_position_embeddings", None)
        super().__init__(
            processor,
            section,
            backbone_family(model.config).modality,
            batch_size,
            _resolve_max_length(max_length, limit, type(model).__name__),
        )
        self.device = device
        self.model = model.to(device).eval()
        self._accepted = set(inspect.signature(self.model.forward).parameters)

    @classmethod
    def from_folder(cls, folder: str | Path, **options: Any) -> TorchPredictor:
        """Load ``folder`` (a saved ordinal model with its tokenizer/image processor).

        Raises
        ------
        ModelNotFoundError
            No such folder, or no ``config.json``/weights in it.
        NotAnOrdinalModelError
            A model without a ``config.ordinal`` section, or with a head this library cannot
            load (e.g. a benchmark baseline).
        """
        from ordinal.heads import available_heads
        from ordinal.models import load_ordinal_model

        folder = Path(folder)
        config_file = folder / "config.json"
        if not folder.is_dir():
            raise ModelNotFoundError(f"no model folder at {folder}")
        if not config_file.is_file():
            raise ModelNotFoundError(f"{folder} has no config.json: not a saved model folder")
        section = _ordinal_section(config_file)
        if section["head"] not in available_heads():
            raise NotAnOrdinalModelError(
                f"{config_file} names head {section['head']!r}, which is not a registered "
                f"ordinal head ({', '.join(available_heads())})"
            )
        if not any((folder / n).is_file() for n in ("model.safetensors", "pytorch_model.bin")):
            raise ModelNotFoundError(f"{folder} has no model weights (model.safetensors)")
        processor = _processor(folder)
        return cls(load_ordinal_model(folder), processor, **options)

    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        from ordinal.models import ordinal_forward

        batch = {
            k: torch.from_numpy(v).to(self.device) for k, v in inputs.items() if k in self._accepted
        }
        with torch.inference_mode():
            out = ordinal_forward(self.model, **batch)
        values = {"cum_probs": out.cum_probs, "probs": out.probs, "label": out.label}
        if out.latent is not None:
            values["latent"] = out.latent
        return {
            k: v.detach().float().cpu().numpy() if k != "label" else v.cpu().numpy()
            for k, v in values.items()
        }


class OnnxPredictor(Predictor):
    """Batch prediction with an exported ordinal ONNX graph and ONNX Runtime.

    Build it with :meth:`from_folder` on an export (``fp32/``) or quantisation (``int8/``)
    folder, or on the ``model.onnx`` inside one.
    """

    backend = "onnx"

    def __init__(
        self,
        session: Any,
        processor: Any,
        section: dict[str, Any],
        modality: str,
        batch_size: int = 32,
        max_length: int = 128,
    ) -> None:
        super().__init__(processor, section, modality, batch_size, max_length)
        self.session = session
        self.input_names = [i.name for i in session.get_inputs()]
        outputs = [o.name for o in session.get_outputs()]
        missing = [name for name in ONNX_OUTPUTS if name not in outputs]
        if missing:
            raise NotAnOrdinalModelError(
                f"the graph's outputs {outputs} lack {missing}: not an ordinal graph (export it "
                "with ordinal.export.export_onnx, which appends the ordinal decoder)"
            )
        self.output_names = [n for n in ("latent", *ONNX_OUTPUTS) if n in outputs]

    @classmethod
    def from_folder(
        cls,
        path: str | Path,
        *,
        batch_size: int = 32,
        max_length: int | None = None,
        providers: Sequence[str] = ("CPUExecutionProvider",),
    ) -> OnnxPredictor:
        """Open ``path``: a folder with ``model.onnx``, or the ``.onnx`` file itself.

        Beside the graph there must be ``ordinal.json`` (or a ``config.json`` with an
        ``ordinal`` section) and the tokenizer or image processor, as the export step writes.

        Raises
        ------
        ModelNotFoundError
            No such folder or file, or a file the predictor needs is missing.
        NotAnOrdinalModelError
            A corrupt graph, one without the ordinal outputs, or no ordinal metadata.
        """
        import onnxruntime as ort

        from ordinal.export.errors import GraphError
        from ordinal.export.graph import load_onnx

        path = Path(path)
        onnx_file = path if path.suffix == ".onnx" else path / ONNX_FILE
        if not onnx_file.is_file():
            raise ModelNotFoundError(
                f"no ONNX graph at {onnx_file}" + ("" if path.exists() else f" ({path} is missing)")
            )
        folder = onnx_file.parent
        config_file = folder / "config.json"
        if (folder / ONNX_METADATA).is_file():
            section = _read_json(folder / ONNX_METADATA).get("ordinal")
            if not isinstance(section, dict) or "num_classes" not in section:
                raise NotAnOrdinalModelError(f"{folder / ONNX_METADATA} has no 'ordinal' section")
        elif config_file.is_file():
            section = _ordinal_section(config_file)
        else:
            raise ModelNotFoundError(
                f"{folder} has neither {ONNX_METADATA} nor config.json: the graph's classes and "
                "label names are unknown"
            )
        if not config_file.is_file():
            raise ModelNotFoundError(f"{folder} has no config.json (the backbone's config)")
        limit = _read_json(config_file).get("max_position_embeddings")
        max_length = _resolve_max_length(max_length, limit, config_file)
        modality = _modality(config_file)
        processor = _processor(folder)
        try:
            load_onnx(onnx_file)
        except GraphError as exc:
            raise NotAnOrdinalModelError(str(exc)) from None
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(str(onnx_file), options, providers=list(providers))
        return cls(session, processor, section, modality, batch_size, max_length)

    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [name for name in self.input_names if name not in inputs]
        if missing:
            raise PredictionInputError(
                f"the graph needs inputs {self.input_names}; the processor gives {sorted(inputs)} "
                f"(missing {missing})"
            )
        feed = {name: inputs[name] for name in self.input_names}
        try:
            values = self.session.run(self.output_names, feed)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidArgument types
            shapes = {k: tuple(v.shape) for k, v in feed.items()}
            raise PredictionInputError(
                f"the graph cannot take inputs of shapes {shapes}: {exc}"
            ) from None
        return dict(zip(self.output_names, values, strict=True))


def load_predictor(
    path: str | Path,
    backend: Literal["auto", "torch", "onnx"] = "auto",
    *,
    batch_size: int = 32,
    max_length: int | None = None,
    device: str = "cpu",
) -> Predictor:
    """A predictor for a saved model folder (PyTorch) or an exported graph (ONNX Runtime).

    Parameters
    ----------
    path : path
        A saved ordinal model folder, an export/quantisation folder with ``model.onnx``, or a
        ``.onnx`` file.
    backend : {"auto", "torch", "onnx"}
        ``"auto"`` picks ONNX Runtime where ``path`` holds a graph, else PyTorch.
    batch_size : int
        Inputs per batch.
    max_length : int, optional
        Token limit per text (text models); default 128, capped at the model's
        ``max_position_embeddings``; a larger value raises ``ValueError``.
    device : str
        Torch device (PyTorch backend only).

    Raises
    ------
    ModelNotFoundError, NotAnOrdinalModelError
        See :meth:`TorchPredictor.from_folder` and :meth:`OnnxPredictor.from_folder`.
    """
    path = Path(path)
    if backend not in ("auto", "torch", "onnx"):
        raise ValueError(f"backend must be 'auto', 'torch' or 'onnx', got {backend!r}")
    if not path.exists():
        raise ModelNotFoundError(f"no model folder or file at {path}")
    if backend == "auto":
        backend = "onnx" if path.suffix == ".onnx" or (path / ONNX_FILE).is_file() else "torch"
    if backend == "onnx":
        return OnnxPredictor.from_folder(path, batch_size=batch_size, max_length=max_length)
    return TorchPredictor.from_folder(
        path, batch_size=batch_size, max_length=max_length, device=device
    )


def predict(
    path: str | Path,
    inputs: Sequence[Any],
    backend: Literal["auto", "torch", "onnx"] = "auto",
    *,
    batch_size: int = 32,
    max_length: int | None = None,
    progress: Progress = None,
) -> Predictions:
    """Load the model at ``path`` and predict ``inputs`` in batches (see :func:`load_predictor`).

    Returns
    -------
    Predictions
        ``labels`` shape=(n,), ``probs`` shape=(n, K), ``cum_probs`` shape=(n, K-1), ``latent``
        shape=(n,) or ``None``, and ``label_names``.
    """
    predictor = load_predictor(path, backend, batch_size=batch_size, max_length=max_length)
    return predictor.predict(inputs, progress=progress)
