"""INT8 quantisation with onnxruntime, calibrated on the committed calibration set, and its gate.

Static INT8 is calibrated on the data layer's calibration samples (reused, never re-sampled:
the calibration manifest is verified and its checksum recorded). Defaults follow what was
measured on this CPU class (``docs/benchmarks-inference.md``): QDQ format, only ``MatMul``
quantised, per-channel signed weights, unsigned activations, and MatMul *outputs* left in
float, which removes most of the accuracy loss of naive static INT8. The decoder graph is
never quantised (it has no MatMul). :meth:`QuantizeSpec.fused_vnni` adds an optional pre-step,
onnxruntime's transformer graph fusion, and quantises the fused ``Attention`` nodes too (with a
dynamic input scale: the static op registry has no ``Attention``), which is faster at the
same accuracy.

The accuracy gate compares INT8 with FP32 on the same held-out records (at least
``min_samples``, 500, unless the run is labelled non-production). It reads the paired
difference ``MAE(int8) - MAE(fp32)`` with a bootstrap confidence interval and fails when
that interval lies wholly above the tolerated margin, ``max_mae_increase`` (1%) of the FP32
MAE: INT8 is then worse beyond tolerance with the stated confidence, which one moved
prediction cannot bring about. Class probabilities within ``prob_atol`` (1e-2) when set, QWK
reported, and a latency smoke test at a realistic batch.
"""

from __future__ import annotations

import fnmatch
import io
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ordinal import metrics
from ordinal.artifacts import layout
from ordinal.artifacts.checksums import sha256_file
from ordinal.artifacts.errors import ManifestError, StorageError
from ordinal.artifacts.manifest import (
    FileEntry,
    Manifest,
    new_manifest,
    read_manifest,
    write_manifest,
)
from ordinal.artifacts.storage import Storage, open_storage, staging_dir
from ordinal.export.errors import QuantizationError
from ordinal.export.graph import load_onnx
from ordinal.export.onnx_export import MODEL_FILE
from ordinal.export.parity import run_onnx
from ordinal.intervals import Interval, paired_mae_difference
from ordinal.presets import resolve_model

__all__ = [
    "CalibrationSet",
    "Int8Report",
    "QuantizeSpec",
    "evaluate_int8",
    "load_calibration_set",
    "mae_gate",
    "model_family",
    "presets_for",
    "quantize_onnx",
]

MIN_CALIBRATION = 100


class QuantizeSpec(BaseModel):
    """Quantisation settings and the INT8 accuracy gate (thresholds are data)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["static", "dynamic"] = "static"
    quant_format: Literal["QDQ", "QOperator"] = "QDQ"
    op_types: tuple[str, ...] = ("MatMul",)
    per_channel: bool = True
    activation_type: Literal["uint8", "int8"] = "uint8"
    weight_type: Literal["int8", "uint8"] = "int8"
    calibration_method: Literal["minmax", "entropy", "percentile"] = "minmax"
    exclude_output_quantization: tuple[str, ...] = ("MatMul",)
    calibration_batch_size: int = Field(8, ge=1)
    max_length: int = Field(128, ge=2)
    max_mae_increase: float = Field(
        0.01,
        ge=0,
        description="Tolerated MAE increase, relative to the FP32 MAE (the gate's margin)",
    )
    min_samples: int = Field(500, ge=2, description="Held-out samples the gate needs")
    non_production: bool = Field(
        False, description="Allow fewer than min_samples; the report is labelled as such"
    )
    confidence: float = Field(0.95, gt=0.5, lt=1, description="Two-sided interval level")
    bootstrap_resamples: int = Field(2000, ge=100)
    seed: int = Field(0, description="Seed of the bootstrap resampling")
    prob_atol: float | None = Field(
        1e-2,
        gt=0,
        description="Max |p_int8 - p_fp32| allowed (the CI verification's tolerance); None "
        "reports the deltas without gating them (production gates on MAE)",
    )
    latency_batch: int = Field(32, ge=1)
    latency_runs: int = Field(5, ge=1)
    fuse_graph: bool = Field(
        False,
        description="Fuse the FP32 graph first (onnxruntime.transformers: Attention, "
        "SkipLayerNormalization, BiasGelu, EmbedLayerNormalization)",
    )
    attention: Literal["float", "dynamic"] = Field(
        "float",
        description="Fused Attention nodes: keep float, or quantise them to QAttention with a "
        "dynamic input scale (the static registry has no Attention); needs fuse_graph",
    )
    nodes_to_exclude: tuple[str, ...] = Field(
        (), description="fnmatch patterns of node names kept in float (sensitive nodes)"
    )
    reduce_range: bool = Field(False, description="7-bit weights (for CPUs without VNNI)")

    @model_validator(mode="after")
    def _consistent(self) -> QuantizeSpec:
        if self.attention == "dynamic" and not self.fuse_graph:
            raise ValueError("attention='dynamic' needs fuse_graph=True (Attention nodes)")
        if self.attention == "dynamic" and self.mode == "dynamic":
            raise ValueError("mode='dynamic' quantises Attention through op_types, not attention")
        return self

    @classmethod
    def avx512_vnni(cls) -> QuantizeSpec:
        """Static QDQ, MatMul only, float MatMul outputs: the accurate default on x86 VNNI."""
        return cls()

    @classmethod
    def fused_vnni(cls) -> QuantizeSpec:
        """Fused graph, static QDQ MatMuls, QAttention with a dynamic input scale (hybrid).

        The fastest INT8 with calibrated MatMuls measured on x86 VNNI
        (``docs/benchmarks-inference.md``): as fast as dynamic INT8 (1.6-1.8x FP32
        throughput), faster than :meth:`avx512_vnni`, at the same accuracy. Only the
        Attention input scale is computed at run time; everything else is static.
        """
        return cls(fuse_graph=True, attention="dynamic")

    def smoke(self) -> QuantizeSpec:
        """This spec as a clearly labelled non-production check (fewer samples allowed)."""
        return self.model_copy(update={"non_production": True})

    @classmethod
    def dynamic(cls) -> QuantizeSpec:
        """Dynamic per-channel INT8 (no calibration): the speed reference."""
        return cls(mode="dynamic", activation_type="uint8")

    @classmethod
    def preset(cls, name: str, family: str | None = None) -> QuantizeSpec:
        """The named preset: ``fused`` (:meth:`fused_vnni`), ``static`` (:meth:`avx512_vnni`),
        ``dynamic``, or ``auto``: the family's default (:func:`presets_for`).

        With ``family`` (a backbone family such as ``bert`` or ``vit``), a preset that does not
        apply to that family's graphs is refused here, before any work.

        >>> QuantizeSpec.preset("fused").attention
        'dynamic'
        >>> QuantizeSpec.preset("auto", family="vit").fuse_graph
        False
        >>> QuantizeSpec.preset("fused", family="vit")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ordinal.export.errors.QuantizationError: quantisation preset 'fused' does not apply ...
        """
        presets = {"fused": cls.fused_vnni, "static": cls.avx512_vnni, "dynamic": cls.dynamic}
        if name not in (*presets, "auto"):
            raise ValueError(
                f"unknown quantisation preset {name!r}; choose one of {['auto', *sorted(presets)]}"
            )
        if family is None:
            if name == "auto":
                raise ValueError("preset 'auto' needs the model family (family=...)")
            return presets[name]()
        fitting = presets_for(family)
        if name == "auto":
            name = fitting[0]
        elif name not in fitting:
            raise QuantizationError(
                f"quantisation preset {name!r} does not apply to {family} models: "
                f"{_WHY_NOT.get((name, family), 'its graph does not have what it needs')}; "
                f"presets for {family}: {', '.join(fitting)} (default {fitting[0]})"
            )
        return presets[name]()


#: Families whose exported graphs onnxruntime's transformer optimizer fuses into ``Attention``
#: nodes (what the ``fused`` preset quantises). Its ViT pass finds no Attention pattern in the
#: graphs optimum exports for Hugging Face ViT, so ViTs get static QDQ MatMuls.
FUSABLE_FAMILIES = frozenset({"bert", "distilbert", "roberta"})
_WHY_NOT = {
    ("fused", "vit"): "onnxruntime's graph fusion finds no Attention in exported ViT graphs",
}


def presets_for(family: str) -> tuple[str, ...]:
    """The quantisation presets that apply to a backbone family, its default first.

    >>> presets_for("bert"), presets_for("vit")
    (('fused', 'static', 'dynamic'), ('static', 'dynamic'))
    """
    if family in FUSABLE_FAMILIES:
        return ("fused", "static", "dynamic")
    return ("static", "dynamic")


def model_family(model_dir: str | Path) -> str:
    """The backbone family (``config.json``'s ``model_type``) of a model or export folder."""
    path = Path(model_dir) / "config.json"
    try:
        return str(json.loads(path.read_text(encoding="utf-8"))["model_type"])
    except (OSError, ValueError, KeyError) as exc:
        raise QuantizationError(f"cannot read the model family from {path}: {exc}") from None


@dataclass
class CalibrationSet:
    """Calibration records plus where they came from (recorded in the INT8 manifest)."""

    records: list[dict[str, Any]]
    dataset: str
    manifest_sha256: str | None = None
    selection_ids_sha256: str | None = None
    version: str | None = None
    selection_path: str | None = None
    selection_status: Literal["committed", "proposed"] | None = None


def load_calibration_set(
    dataset: str,
    storage: Storage | None = None,
    selection_dir: str | Path | None = None,
    *,
    version: str | None = None,
    proposal_dir: str | Path | None = None,
) -> CalibrationSet:
    """The stored calibration samples of ``dataset``, verified, never re-sampled.

    The calibration manifest is schema-validated and every file it lists re-hashed, and the
    stored selection must equal the committed selection of its dataset version
    (``{selection_dir}/{dataset}@{version}.yaml``;
    :func:`ordinal.data.verify_calibration_set`). A missing committed selection is an error.

    Parameters
    ----------
    dataset : str
        Dataset name.
    storage : Storage, optional
        Storage backend (default: the local store).
    selection_dir : path, optional
        Folder of committed selections; None or ``''``: ``$ORDINAL_CALIBRATION_DIR``, else
        the project's ``calibration/``.
    version : str, optional
        The dataset version the set must come from; None takes the stored set's version
        (still checked against that version's committed selection).
    proposal_dir : path, optional
        Check against the selection *proposed* in this folder instead (a run that proposed
        its selection); recorded as ``selection_status="proposed"``.

    Raises
    ------
    ordinal.data.SelectionMissingError, ordinal.data.SelectionMismatchError
        No committed selection; a stored selection that differs from it (with the difference).
    ordinal.data.CalibrationError
        A stored set of another version, or samples that are not its selection.
    """
    import hashlib

    from PIL import Image

    from ordinal.data.calibration import verify_calibration_set

    storage = storage or open_storage()
    checked = verify_calibration_set(
        dataset,
        version,
        storage=storage,
        selection_dir=selection_dir,
        proposal_dir=proposal_dir,
    )
    manifest = checked.manifest
    samples = manifest.output("samples")
    lines = storage.get_bytes(samples.path).decode("utf-8").splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    if manifest.parameters.get("kind") == "image":
        for record in records:
            data = storage.get_bytes(layout.join(layout.calibration_dir(dataset), record["file"]))
            record["image"] = Image.open(io.BytesIO(data)).convert("RGB")
    ids = sorted(str(r["id"]) for r in records)
    return CalibrationSet(
        records=records,
        dataset=dataset,
        manifest_sha256=hashlib.sha256(storage.get_bytes(checked.manifest_key)).hexdigest(),
        selection_ids_sha256=hashlib.sha256("\n".join(ids).encode()).hexdigest(),
        version=checked.selection.version,
        selection_path=str(checked.selection_path),
        selection_status=checked.status,
    )


class _Reader(CalibrationDataReader):
    def __init__(self, inputs: dict[str, np.ndarray], names: list[str], batch: int) -> None:
        total = len(next(iter(inputs.values())))
        self._batches = iter(
            [{n: inputs[n][i : i + batch] for n in names} for i in range(0, total, batch)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def _encode(
    processor: Any, records: Sequence[dict[str, Any]], max_length: int
) -> dict[str, np.ndarray]:
    if "image" in records[0]:
        images = [r["image"].convert("RGB") for r in records]
        return {
            "pixel_values": np.asarray(
                processor(images=images, return_tensors="np")["pixel_values"], np.float32
            )
        }
    encoded = processor(
        [str(r["text"]) for r in records],
        padding="longest",
        truncation=True,
        max_length=max_length,
        return_tensors="np",
    )
    return {k: np.asarray(v, np.int64) for k, v in encoded.items()}


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _quant_type(name: str) -> QuantType:
    return QuantType.QUInt8 if name == "uint8" else QuantType.QInt8


#: Hugging Face ``model_type`` -> onnxruntime.transformers optimizer ``model_type``.
_FUSION_TYPES = {"bert": "bert", "distilbert": "bert", "roberta": "bert", "vit": "vit"}


def _fuse(fp32_path: Path, fp32_dir: Path, out: Path) -> None:
    """onnxruntime's transformer fusion of ``fp32_path`` (the decoder graph passes through)."""
    import logging

    from onnxruntime.transformers.optimizer import MODEL_TYPES, optimize_model
    from transformers import AutoConfig

    # AutoConfig maps family-specific names (DistilBERT's n_heads/dim) to the common ones.
    config = AutoConfig.from_pretrained(fp32_dir)
    model_type = _FUSION_TYPES.get(config.model_type)
    if model_type not in MODEL_TYPES:
        raise QuantizationError(f"no graph fusion for model_type {config.model_type!r}")
    # The optimizer warns that the producer is "ordinal", not "pytorch": expected here.
    logging.getLogger("onnxruntime.transformers.optimizer").setLevel(logging.ERROR)
    fused = optimize_model(
        str(fp32_path),
        model_type=model_type,
        num_heads=int(config.num_attention_heads),
        hidden_size=int(config.hidden_size),
    )
    before = [o.name for o in load_onnx(fp32_path).graph.output]
    after = [o.name for o in fused.model.graph.output]
    if after != before:
        raise QuantizationError(f"graph fusion changed the outputs {before} to {after}")
    fused.save_model_to_file(str(out))


def _excluded(model_path: Path, patterns: Sequence[str]) -> list[str]:
    """Names of the nodes of ``model_path`` that match any fnmatch pattern."""
    if not patterns:
        return []
    names = [n.name for n in load_onnx(model_path).graph.node]
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]


def quantize_onnx(
    fp32_dir: str | Path,
    calibration: CalibrationSet,
    experiment: str,
    *,
    spec: QuantizeSpec | None = None,
    storage: Storage | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[Path | None, Manifest]:
    """Quantise ``fp32_dir/model.onnx`` to INT8 under ``models/onnx/{experiment}/int8/``.

    Returns the local path of the INT8 model (``None`` on remote storage) and its manifest.

    Raises
    ------
    QuantizationError
        Calibration set smaller than 100 (static mode), or onnxruntime failing.
    """
    spec = spec or QuantizeSpec()
    say = progress or (lambda message: None)
    fp32_dir = Path(fp32_dir)
    fp32_path = fp32_dir / MODEL_FILE
    load_onnx(fp32_path)
    family = model_family(fp32_dir)
    if spec.fuse_graph and family not in FUSABLE_FAMILIES:
        raise QuantizationError(
            f"graph fusion does not apply to {family} models ({fp32_path}): "
            f"{_WHY_NOT.get(('fused', family), 'no fusable attention')}; presets for {family}: "
            f"{', '.join(presets_for(family))}"
        )
    if spec.mode == "static" and len(calibration.records) < MIN_CALIBRATION:
        raise QuantizationError(
            f"calibration set {calibration.dataset!r} has {len(calibration.records)} samples; "
            f"static INT8 needs at least {MIN_CALIBRATION}"
        )
    storage = storage or open_storage()
    prefix = layout.onnx_dir(experiment, "int8")
    fp32_input = _fp32_provenance(storage, experiment, fp32_path)  # before anything is written
    with staging_dir("quantize-") as tmp:
        work = Path(tmp)
        source = fp32_path
        if spec.fuse_graph:
            say("fusing the FP32 graph (Attention, SkipLayerNormalization, BiasGelu)")
            source = work / "fused.onnx"
            try:
                _fuse(fp32_path, fp32_dir, source)
            except QuantizationError:
                raise
            except Exception as exc:
                raise QuantizationError(f"graph fusion failed on {fp32_path}: {exc}") from None
            if spec.attention == "dynamic" and not any(
                n.op_type == "Attention" for n in load_onnx(source).graph.node
            ):
                raise QuantizationError(f"graph fusion found no Attention in {fp32_path}")
        # quant_pre_process fails on unfused transformers graphs with symbolic shape inference
        # on; a fused graph needs it, or the outputs of the contrib ops (Attention, ...) have no
        # type and the MatMuls after them are silently left in float.
        say("pre-processing the FP32 graph")
        pre = work / "pre.onnx"
        cwd = os.getcwd()
        try:
            os.chdir(work)  # a failed pre-process leaves large *.data files in the cwd
            quant_pre_process(
                str(source), str(pre), skip_symbolic_shape=not spec.fuse_graph, auto_merge=True
            )
        except Exception as exc:
            raise QuantizationError(f"quant_pre_process failed on {source}: {exc}") from None
        finally:
            os.chdir(cwd)
        exclude = _excluded(pre, spec.nodes_to_exclude)
        stage = work / "int8"
        stage.mkdir()
        out = stage / MODEL_FILE
        try:
            if spec.mode == "dynamic":
                say("dynamic INT8 quantisation")
                quantize_dynamic(
                    str(pre),
                    str(out),
                    op_types_to_quantize=list(spec.op_types),
                    per_channel=spec.per_channel,
                    reduce_range=spec.reduce_range,
                    weight_type=_quant_type(spec.weight_type),
                    nodes_to_exclude=exclude,
                )
            else:
                processor = resolve_model(fp32_dir).processor
                inputs = _encode(processor, calibration.records, spec.max_length)
                names = [i.name for i in _session(fp32_path).get_inputs()]
                say(f"static INT8 quantisation, calibrating on {len(calibration.records)} samples")
                static_out = work / "static.onnx" if spec.attention == "dynamic" else out
                quantize_static(
                    str(pre),
                    str(static_out),
                    _Reader(inputs, names, spec.calibration_batch_size),
                    quant_format=QuantFormat.QDQ
                    if spec.quant_format == "QDQ"
                    else QuantFormat.QOperator,
                    op_types_to_quantize=list(spec.op_types),
                    per_channel=spec.per_channel,
                    activation_type=_quant_type(spec.activation_type),
                    weight_type=_quant_type(spec.weight_type),
                    calibrate_method={
                        "minmax": CalibrationMethod.MinMax,
                        "entropy": CalibrationMethod.Entropy,
                        "percentile": CalibrationMethod.Percentile,
                    }[spec.calibration_method],
                    reduce_range=spec.reduce_range,
                    nodes_to_exclude=exclude,
                    extra_options={
                        "OpTypesToExcludeOutputQuantization": list(spec.exclude_output_quantization)
                    },
                )
                if spec.attention == "dynamic":
                    # QAttention is only in the dynamic (IntegerOps) registry: a second pass
                    # quantises the fused Attention nodes, leaving the static MatMuls as they are
                    # (onnxruntime then logs "check if the model is already quantized": expected).
                    say("quantising Attention to QAttention (dynamic input scale)")
                    quantize_dynamic(
                        str(static_out),
                        str(out),
                        op_types_to_quantize=["Attention"],
                        per_channel=spec.per_channel,
                        reduce_range=spec.reduce_range,
                        weight_type=_quant_type(spec.weight_type),
                        nodes_to_exclude=exclude,
                    )
        except Exception as exc:
            raise QuantizationError(
                f"onnxruntime quantisation failed: {type(exc).__name__}: {exc}"
            ) from None
        for name in os.listdir(fp32_dir):
            if name not in (MODEL_FILE, layout.MANIFEST_NAME) and (fp32_dir / name).is_file():
                (stage / name).write_bytes((fp32_dir / name).read_bytes())
        storage.delete_prefix(prefix)  # a re-run replaces the folder, nothing stale survives
        outputs = []
        for path in sorted(stage.iterdir()):
            digest = storage.put_file(path, layout.join(prefix, path.name))
            outputs.append(
                FileEntry.from_digest(digest, role="model" if path.name == MODEL_FILE else "asset")
            )
    manifest = new_manifest(
        phase="quantize",
        dataset=calibration.dataset,
        version="calibration",
        experiment_id=experiment,
        inputs=[fp32_input],
        outputs=outputs,
        record_counts={"calibration_samples": len(calibration.records)},
        parameters={
            "quantization": spec.model_dump(mode="json"),
            "calibration_dataset": calibration.dataset,
            "calibration_version": calibration.version,
            "calibration_selection": calibration.selection_status,
            "calibration_manifest_sha256": calibration.manifest_sha256,
            "calibration_ids_sha256": calibration.selection_ids_sha256,
        },
    )
    write_manifest(storage, layout.join(prefix, layout.MANIFEST_NAME), manifest)
    return storage.local_path(layout.join(prefix, MODEL_FILE)), manifest


def _fp32_provenance(storage: Storage, experiment: str, fp32_path: Path) -> FileEntry:
    """The quantised FP32 graph as a manifest input.

    It is named by its storage key when it is the experiment's stored FP32 model: the stored
    file itself (local storage), or a byte-identical copy of it, such as the download a
    quantise step works from on S3 (checked against the FP32 export manifest). A graph from
    anywhere else is named by its local path.
    """
    digest = sha256_file(fp32_path)
    fp32_dir = layout.onnx_dir(experiment, "fp32")
    fp32_key = layout.join(fp32_dir, MODEL_FILE)
    path = str(fp32_path.resolve())
    stored = storage.local_path(fp32_key)
    if stored is not None and stored.resolve() == fp32_path.resolve():
        path = fp32_key
    else:
        try:
            manifest = read_manifest(storage, layout.join(fp32_dir, layout.MANIFEST_NAME))
            recorded: FileEntry | None = manifest.output("model")
        except (ManifestError, StorageError):  # no usable record: say where the file is
            recorded = None
        if recorded is not None and (recorded.path, recorded.sha256, recorded.size) == (
            fp32_key,
            digest.sha256,
            digest.size,
        ):
            path = fp32_key
    return FileEntry(path=path, sha256=digest.sha256, size=digest.size, role="fp32-model")


@dataclass
class Int8Report:
    """INT8 against FP32 on held-out records.

    ``fp32_latent`` and ``int8_latent`` (shape=(n,), the graphs' ``latent`` output per sample;
    None for heads without one, such as CORN) are for plots and are not part of the JSON.
    """

    passed: bool
    num_samples: int
    fp32: dict[str, float]
    int8: dict[str, float]
    mae_increase: float
    max_prob_delta: float
    latency_ms: dict[str, float]
    failures: list[str]
    prob_delta_p99: float = 0.0
    label_agreement: float = 1.0
    #: ``MAE(int8) - MAE(fp32)`` in label units with its paired bootstrap interval.
    mae_delta: dict[str, float] = field(default_factory=dict)
    #: The tolerated MAE increase in label units (``max_mae_increase`` x FP32 MAE).
    mae_margin: float = 0.0
    #: ``equivalent`` (interval below the margin), ``inconclusive`` (straddles it) or
    #: ``worse`` (wholly above it: the gate fails).
    verdict: str = "equivalent"
    non_production: bool = False
    fp32_latent: np.ndarray | None = field(default=None, repr=False)
    int8_latent: np.ndarray | None = field(default=None, repr=False)

    def to_json(self) -> str:
        """The report as JSON (the summary; the per-sample arrays are left out)."""
        arrays = ("fp32_latent", "int8_latent")
        data = {k: v for k, v in self.__dict__.items() if k not in arrays}
        return json.dumps(data, indent=2, sort_keys=True)


def _latency(
    session: ort.InferenceSession, inputs: dict[str, np.ndarray], spec: QuantizeSpec
) -> float:
    names = [i.name for i in session.get_inputs()]
    feed = {n: inputs[n][: spec.latency_batch] for n in names}
    session.run(None, feed)  # warm-up
    times = []
    for _ in range(spec.latency_runs):
        start = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def evaluate_int8(
    fp32_path: str | Path,
    int8_path: str | Path,
    records: Sequence[dict[str, Any]],
    spec: QuantizeSpec | None = None,
) -> Int8Report:
    """The INT8 accuracy gate: paired MAE difference with its interval, QWK, probability
    deltas and a latency smoke test.

    Raises
    ------
    QuantizationError
        Fewer than ``spec.min_samples`` records and the spec is not ``non_production``.
    """
    spec = spec or QuantizeSpec()
    if len(records) < spec.min_samples and not spec.non_production:
        raise QuantizationError(
            f"the INT8 gate needs at least {spec.min_samples} held-out samples, got "
            f"{len(records)}: below that its interval is too wide to gate a release "
            "(use QuantizeSpec(...).smoke() / --non-production for a labelled check)"
        )
    if len(records) < 2:
        raise QuantizationError(f"the INT8 gate needs at least 2 samples, got {len(records)}")
    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    processor = resolve_model(fp32_path.parent).processor
    inputs = _encode(processor, records, spec.max_length)
    labels = np.asarray([int(r["label"]) for r in records])
    sessions = {"fp32": _session(fp32_path), "int8": _session(int8_path)}
    outs = {k: run_onnx(s, inputs, 64) for k, s in sessions.items()}
    scores = {
        k: {
            "mae": metrics.mae(labels, o["label"]),
            "qwk": metrics.qwk(labels, o["label"], num_classes=o["probs"].shape[1]),
            "accuracy": metrics.accuracy(labels, o["label"]),
        }
        for k, o in outs.items()
    }
    base = scores["fp32"]["mae"]
    increase = (scores["int8"]["mae"] - base) / base if base > 0 else scores["int8"]["mae"]
    per_sample = np.abs(outs["int8"]["probs"] - outs["fp32"]["probs"]).max(axis=1)
    prob_delta = float(per_sample.max())
    latency = {k: _latency(s, inputs, spec) for k, s in sessions.items()}
    delta, margin, verdict = mae_gate(labels, outs["fp32"]["label"], outs["int8"]["label"], spec)
    failures = []
    if verdict == "worse":
        failures.append(
            f"MAE rose by {delta.estimate:+.4f} ({increase:+.2%}); its {delta.confidence:.0%} "
            f"interval [{delta.low:+.4f}, {delta.high:+.4f}] on {delta.n} samples lies above "
            f"the tolerated {margin:.4f} ({spec.max_mae_increase:.0%} of the FP32 MAE)"
        )
    if spec.prob_atol is not None and prob_delta > spec.prob_atol:
        failures.append(
            f"class probabilities differ by up to {prob_delta:.3g} (> {spec.prob_atol:g})"
        )
    return Int8Report(
        passed=not failures,
        num_samples=len(records),
        fp32=scores["fp32"],
        int8=scores["int8"],
        mae_increase=float(increase),
        max_prob_delta=prob_delta,
        latency_ms=latency,
        failures=failures,
        prob_delta_p99=float(np.quantile(per_sample, 0.99)),
        label_agreement=float(np.mean(outs["int8"]["label"] == outs["fp32"]["label"])),
        fp32_latent=outs["fp32"].get("latent"),
        int8_latent=outs["int8"].get("latent"),
        mae_delta=delta.to_dict(),
        mae_margin=float(margin),
        verdict=verdict,
        non_production=len(records) < spec.min_samples,
    )


def mae_gate(
    labels: Any, fp32_labels: Any, int8_labels: Any, spec: QuantizeSpec | None = None
) -> tuple[Interval, float, str]:
    """The MAE part of the INT8 gate: the paired difference, the margin and the verdict.

    Parameters
    ----------
    labels, fp32_labels, int8_labels : array-like of int, shape=(n,)
        True labels and each graph's predicted labels on the same samples.

    Returns
    -------
    (Interval, float, str)
        ``MAE(int8) - MAE(fp32)`` with its paired bootstrap interval; the tolerated increase
        in label units (``spec.max_mae_increase`` x the FP32 MAE); and the verdict:
        ``worse`` when the whole interval lies above the margin (the gate fails),
        ``equivalent`` when it lies at or below it, ``inconclusive`` otherwise.

    >>> y = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] * 14 + [0, 9]  # 142 samples, 10 classes
    >>> fp32 = [min(v + 1, 9) if i % 4 == 0 else v for i, v in enumerate(y)]
    >>> int8 = list(fp32); int8[1] += 1  # one sample moves by one class
    >>> mae_gate(y, fp32, int8)[2]  # noise, not evidence
    'inconclusive'
    """
    spec = spec or QuantizeSpec()
    delta = paired_mae_difference(
        labels,
        fp32_labels,
        int8_labels,
        confidence=spec.confidence,
        n_resamples=spec.bootstrap_resamples,
        seed=spec.seed,
    )
    base = metrics.mae(labels, fp32_labels)
    margin = spec.max_mae_increase * base if base > 0 else spec.max_mae_increase
    if delta.low > margin:
        verdict = "worse"
    elif delta.high <= margin:
        verdict = "equivalent"
    else:
        verdict = "inconclusive"
    return delta, float(margin), verdict
