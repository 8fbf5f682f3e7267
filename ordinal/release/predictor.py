"""Load a verified bundle into a ready ONNX Runtime predictor (for tests and notebooks).

The graph bytes are read once, hashed, compared with ``bundle.json`` and handed to ONNX
Runtime from memory, so the graph that runs is the graph that was verified.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ordinal.artifacts.checksums import sha256_bytes
from ordinal.release.bundle import VerifiedBundle, verify_bundle
from ordinal.release.errors import DigestMismatchError, ReleaseError

__all__ = ["BundlePredictor", "Prediction", "load_bundle"]


@dataclass(frozen=True)
class Prediction:
    """Predictions for a batch.

    Attributes
    ----------
    label_ids : numpy.ndarray
        shape=(batch,), int64: the predicted label index.
    labels : list of str
        The label names of ``label_ids``.
    probs : numpy.ndarray
        shape=(batch, K), float32: class probabilities.
    """

    label_ids: np.ndarray
    labels: list[str]
    probs: np.ndarray


class BundlePredictor:
    """An ONNX Runtime session over one variant of a verified bundle.

    Attributes
    ----------
    bundle : VerifiedBundle
        The verification result (name, version, digest, key).
    variant : str
        ``fp32`` or ``int8``.
    """

    def __init__(self, bundle: VerifiedBundle, variant: str | None = None) -> None:
        import onnxruntime as ort

        meta = bundle.metadata
        self.bundle = bundle
        self.variant = variant or meta["default_variant"]
        if self.variant not in meta["variants"]:
            raise ReleaseError(
                f"{bundle.path} has no {self.variant!r} variant; it has {sorted(meta['variants'])}"
            )
        entry = meta["variants"][self.variant]
        graph = (bundle.path / entry["path"]).read_bytes()
        if sha256_bytes(graph) != entry["sha256"]:
            raise DigestMismatchError(
                f"{entry['path']} changed after verification",
                path=entry["path"],
                expected=entry["sha256"],
                actual=sha256_bytes(graph),
                bundle=str(bundle.path),
            )
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        self.input_names = [i["name"] for i in meta["graph"]["inputs"]]
        self.label_names: list[str] = list(meta["model"]["label_names"])
        self._encode = self._encoder(meta)

    def _encoder(self, meta: dict[str, Any]) -> Callable[[Sequence[Any]], dict[str, np.ndarray]]:
        prep = meta["preprocess"]
        folder = self.bundle.path / "preprocess"
        if prep["kind"] == "tokenizer":
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(folder)
            max_length = int(prep["max_length"])

            def encode_text(texts: Sequence[Any]) -> dict[str, np.ndarray]:
                encoded = tokenizer(
                    [str(t) for t in texts],
                    truncation=True,
                    max_length=max_length,
                    padding=True,
                    return_tensors="np",
                )
                return {k: np.asarray(v, np.int64) for k, v in encoded.items()}

            return encode_text
        from transformers import AutoImageProcessor

        processor = AutoImageProcessor.from_pretrained(folder)

        def encode_images(images: Sequence[Any]) -> dict[str, np.ndarray]:
            pixels = processor(images=[i.convert("RGB") for i in images], return_tensors="np")
            return {"pixel_values": np.asarray(pixels["pixel_values"], np.float32)}

        return encode_images

    def run(self, items: Sequence[Any]) -> dict[str, np.ndarray]:
        """Every graph output for ``items`` (texts or PIL images), by output name."""
        if len(items) == 0:
            raise ValueError("predict needs at least one input")
        encoded = self._encode(items)
        missing = [n for n in self.input_names if n not in encoded]
        if missing:
            raise ReleaseError(f"the preprocessor gives no {missing} for the graph's inputs")
        feed = {n: encoded[n] for n in self.input_names}
        names = [o.name for o in self.session.get_outputs()]
        return dict(zip(names, self.session.run(names, feed), strict=True))

    def predict(self, items: Sequence[Any]) -> Prediction:
        """Labels and class probabilities for a batch of texts (or images)."""
        out = self.run(items)
        ids = np.asarray(out["label"], np.int64)
        return Prediction(
            label_ids=ids, labels=[self.label_names[i] for i in ids], probs=out["probs"]
        )


def load_bundle(
    path: str | os.PathLike[str],
    trusted_keys: Any = None,
    *,
    variant: str | None = None,
    on_verified: Callable[[VerifiedBundle], None] | None = None,
) -> BundlePredictor:
    """Verify the bundle at ``path`` and return a ready predictor.

    An unverified bundle is refused: the schema, the signature by a trusted key and every
    file digest are checked first (:func:`ordinal.release.verify_bundle`), and the error
    raised names what differs. With no ``trusted_keys`` every bundle is refused.

    Parameters
    ----------
    path : path
        The bundle folder.
    trusted_keys : TrustedKeys, fingerprint, key, path, or iterable of them
        The keys to trust.
    variant : {"fp32", "int8"}, optional
        Default: the bundle's ``default_variant``.
    on_verified : callable, optional
        Called with the verification result, e.g. to append a ``consume`` audit record.

    >>> load_bundle("/nonexistent")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ordinal.release.errors.FileMissingError: missing: the bundle folder does not exist...
    """
    verified = verify_bundle(Path(path), trusted_keys)
    predictor = BundlePredictor(verified, variant)
    if on_verified is not None:
        on_verified(verified)
    return predictor
