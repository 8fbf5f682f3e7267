"""The parity gate: ONNX Runtime against PyTorch on real held-out samples, with diagnostics.

optimum's own export check runs one synthetic batch and only warns. This gate runs at least
``ParitySpec.min_samples`` (500) real records through both, compares every output with
``|ort - torch| <= atol + rtol * |torch|``, checks that predicted labels agree, writes a JSON
and a Markdown report plus the delta tensors, and raises :class:`ParityError` when anything is
beyond tolerance. The inputs and the PyTorch outputs are kept (``reference.npz``) so
:func:`recheck_parity` can spot-check a retained model against new dependency versions
without the PyTorch checkpoint.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from pydantic import BaseModel, ConfigDict, Field
from transformers import AutoConfig

from ordinal.artifacts import layout
from ordinal.artifacts.storage import Storage
from ordinal.export.errors import GraphError, ParityError
from ordinal.export.graph import load_onnx
from ordinal.models import backbone_family, load_ordinal_model, ordinal_forward
from ordinal.presets import resolve_model

__all__ = [
    "ParityReport",
    "ParitySpec",
    "check_parity",
    "fetch_for_recheck",
    "parity_prefix",
    "recheck_parity",
    "run_onnx",
    "store_parity_folder",
    "stored_parity_experiments",
]

COMPARED = ("latent", "ordinal_logits", "cum_probs", "probs")
REFERENCE_FILE = "reference.npz"
PARITY_DIR = "parity"
RECHECK_DIR = "parity-recheck"


class ParitySpec(BaseModel):
    """Tolerances and sample size of the parity gate (data, not literals in code)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    atol: float = Field(1e-5, gt=0)
    rtol: float = Field(1e-5, ge=0)
    min_samples: int = Field(500, ge=1)
    non_production: bool = Field(
        False, description="Allow fewer than min_samples; the report is labelled as such"
    )
    batch_size: int = Field(32, ge=1)
    max_length: int = Field(128, ge=2)
    worst: int = Field(10, ge=1, description="Worst samples listed in the report")

    @classmethod
    def production(cls) -> ParitySpec:
        """The release gate: >= 500 samples at atol = rtol = 1e-5."""
        return cls()

    @classmethod
    def smoke(cls, **overrides: Any) -> ParitySpec:
        """A clearly labelled non-production check on a handful of samples (tests, notebooks)."""
        return cls(non_production=True, **overrides)


@dataclass
class ParityReport:
    """The outcome of a parity run."""

    passed: bool
    num_samples: int
    non_production: bool
    outputs: dict[str, dict[str, Any]]
    label_agreement: float
    label_mismatches: list[str]
    failures: list[str]
    report_dir: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def title(self) -> str:
        """Report title; says so when the run was not a production-size check."""
        base = "Parity report: ONNX Runtime vs PyTorch"
        if self.non_production:
            return (
                f"NON-PRODUCTION {base} ({self.num_samples} samples, below the production minimum)"
            )
        return base


def _session(onnx_path: Path) -> ort.InferenceSession:
    load_onnx(onnx_path)  # clear error for a missing or corrupt file
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def _encode(
    model_dir: Path, records: Sequence[dict[str, Any]], spec: ParitySpec
) -> dict[str, np.ndarray]:
    """Model inputs for all records, padded to one length so every batch sees the same arrays."""
    family = backbone_family(AutoConfig.from_pretrained(model_dir))
    processor = resolve_model(model_dir).processor
    if family.modality == "text":
        texts = [str(r["text"]) for r in records]
        encoded = processor(
            texts,
            padding="longest",
            truncation=True,
            max_length=spec.max_length,
            return_tensors="np",
        )
        return {k: np.asarray(v, dtype=np.int64) for k, v in encoded.items()}
    images = [r["image"].convert("RGB") for r in records]
    return {
        "pixel_values": np.asarray(
            processor(images=images, return_tensors="np")["pixel_values"], np.float32
        )
    }


def run_onnx(
    session: ort.InferenceSession, inputs: dict[str, np.ndarray], batch_size: int
) -> dict[str, np.ndarray]:
    """Run ``session`` batch by batch; the graph's declared inputs must all be provided."""
    wanted = [i.name for i in session.get_inputs()]
    missing = [name for name in wanted if name not in inputs]
    if missing:
        raise GraphError(f"the graph needs inputs {missing}, the processor gives {sorted(inputs)}")
    names = [o.name for o in session.get_outputs()]
    total = len(next(iter(inputs.values())))
    chunks: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for start in range(0, total, batch_size):
        feed = {n: inputs[n][start : start + batch_size] for n in wanted}
        for name, value in zip(names, session.run(names, feed), strict=True):
            chunks[name].append(value)
    return {n: np.concatenate(v) for n, v in chunks.items()}


def _run_torch(
    model_dir: Path, inputs: dict[str, np.ndarray], batch_size: int
) -> dict[str, np.ndarray]:
    model = load_ordinal_model(model_dir).eval()
    accepted = set(inspect.signature(model.forward).parameters)
    inputs = {k: v for k, v in inputs.items() if k in accepted}  # e.g. no token_type_ids
    chunks: dict[str, list[np.ndarray]] = {n: [] for n in (*COMPARED, "label")}
    total = len(next(iter(inputs.values())))
    with torch.no_grad():
        for start in range(0, total, batch_size):
            batch = {k: torch.from_numpy(v[start : start + batch_size]) for k, v in inputs.items()}
            out = ordinal_forward(model, **batch)
            values = {
                "latent": out.latent,
                "ordinal_logits": out.logits,
                "cum_probs": out.cum_probs,
                "probs": out.probs,
                "label": out.label,
            }
            for name, value in values.items():
                if value is not None:
                    chunks[name].append(value.numpy())
    return {n: np.concatenate(v) for n, v in chunks.items() if v}


def _compare(
    reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray], spec: ParitySpec
) -> tuple[dict[str, dict[str, Any]], dict[str, np.ndarray], list[str]]:
    stats, deltas, failures = {}, {}, []
    for name in COMPARED:
        if name not in reference:
            continue
        if name not in candidate:
            failures.append(f"output {name!r} missing from the ONNX graph")
            continue
        ref, got = reference[name].astype(np.float64), candidate[name].astype(np.float64)
        delta = np.abs(got - ref)
        rel = delta / np.maximum(np.abs(ref), 1e-12)
        bad = delta > spec.atol + spec.rtol * np.abs(ref)
        per_sample = delta.reshape(len(delta), -1).max(axis=1)
        deltas[name] = got - ref
        stats[name] = {
            "max_abs": float(delta.max()),
            "max_rel": float(rel.max()),
            "mean_abs": float(delta.mean()),
            "violations": int(bad.sum()),
            "worst_sample": int(per_sample.argmax()),
            "atol": spec.atol,
            "rtol": spec.rtol,
            "passed": not bool(bad.any()),
        }
        if bad.any():
            failures.append(
                f"{name}: {int(bad.sum())} values beyond atol={spec.atol:g}+rtol={spec.rtol:g} "
                f"(max abs delta {delta.max():.3g})"
            )
    return stats, deltas, failures


def _label_check(
    reference: dict[str, np.ndarray],
    candidate: dict[str, np.ndarray],
    ids: list[str],
    spec: ParitySpec,
) -> tuple[float, list[str], list[str]]:
    agree = reference["label"] == candidate["label"]
    # A threshold sitting within tolerance of 0.5 may round either way; anything else is a bug.
    borderline = (np.abs(reference["cum_probs"] - 0.5) <= spec.atol).any(axis=1)
    real = ~agree & ~borderline
    mismatches = [ids[i] for i in np.flatnonzero(~agree)]
    failures = [f"label: {int(real.sum())} samples predict a different label"] if real.any() else []
    return float(agree.mean()), mismatches, failures


def _write_reports(
    report: ParityReport,
    out_dir: Path,
    ids: list[str],
    texts: list[str],
    reference: dict[str, np.ndarray],
    candidate: dict[str, np.ndarray],
    deltas: dict[str, np.ndarray],
    spec: ParitySpec,
) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {
        "title": report.title,
        "passed": report.passed,
        "num_samples": report.num_samples,
        "non_production": report.non_production,
        "spec": spec.model_dump(),
        "outputs": report.outputs,
        "label_agreement": report.label_agreement,
        "label_mismatches": report.label_mismatches,
        "failures": report.failures,
        "onnxruntime": ort.__version__,
        "torch": torch.__version__,
    }
    files = {
        "json": out_dir / "parity.json",
        "markdown": out_dir / "parity.md",
        "deltas": out_dir / "deltas.npz",
    }
    files["json"].write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    np.savez_compressed(files["deltas"], ids=np.asarray(ids), **deltas)
    lines = [
        f"# {report.title}",
        "",
        f"**{'PASSED' if report.passed else 'FAILED'}** on {report.num_samples} held-out samples; "
        f"tolerance `|ort - torch| <= {spec.atol:g} + {spec.rtol:g} * |torch|`; "
        f"onnxruntime {ort.__version__}, torch {torch.__version__}.",
        "",
        "| output | max abs delta | max rel delta | mean abs delta | beyond tolerance | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in report.outputs.items():
        lines.append(
            f"| {name} | {s['max_abs']:.3g} | {s['max_rel']:.3g} | {s['mean_abs']:.3g} | "
            f"{s['violations']} | {'pass' if s['passed'] else 'FAIL'} |"
        )
    lines += ["", f"Label agreement: {report.label_agreement:.4%}", ""]
    if report.failures:
        lines += ["## Failures", "", *[f"* {f}" for f in report.failures], ""]
    main = "probs" if "probs" in deltas else next(iter(deltas), None)
    if main is not None:
        worst = np.abs(deltas[main]).reshape(len(ids), -1).max(axis=1).argsort()[::-1][: spec.worst]
        lines += [
            f"## Worst {len(worst)} samples (by max abs delta of `{main}`)",
            "",
            "| id | input | torch probs | ort probs | max abs delta |",
            "|---|---|---|---|---|",
        ]
        for i in worst:
            shown = texts[i][:80].replace("|", "\\|").replace("\n", " ")
            lines.append(
                f"| {ids[i]} | {shown} | {np.round(reference[main][i], 6).tolist()} | "
                f"{np.round(candidate[main][i], 6).tolist()} | "
                f"{np.abs(deltas[main][i]).max():.3g} |"
            )
    lines += ["", "Delta tensors (ort - torch) per output: `deltas.npz`.", ""]
    files["markdown"].write_text("\n".join(lines))
    report.report_dir, report.files = out_dir, files


def check_parity(
    model_dir: str | Path,
    onnx_path: str | Path,
    records: Sequence[dict[str, Any]],
    spec: ParitySpec | None = None,
    out_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> ParityReport:
    """Compare the exported graph with the PyTorch model on ``records``; raise if beyond tolerance.

    Parameters
    ----------
    model_dir : path
        The PyTorch model that was exported.
    onnx_path : path
        The exported ``model.onnx`` (with the decoder graph).
    records : sequence of dict
        Held-out records with ``id`` and ``text`` (or ``image``).
    spec : ParitySpec
        Tolerances and sample size; default :meth:`ParitySpec.production`.
    out_dir : path, optional
        Where the reports, delta tensors and ``reference.npz`` go (default: beside the model).

    Raises
    ------
    ValueError
        Fewer than ``spec.min_samples`` records outside non-production mode.
    ParityError
        After writing the reports, when any output or label is beyond tolerance.
    """
    spec = spec or ParitySpec.production()
    say = progress or (lambda message: None)
    if len(records) < spec.min_samples and not spec.non_production:
        raise ValueError(
            f"parity needs at least {spec.min_samples} held-out samples, got {len(records)}; "
            "pass ParitySpec.smoke() for a labelled non-production check"
        )
    model_dir, onnx_path = Path(model_dir), Path(onnx_path)
    out_dir = Path(out_dir) if out_dir else onnx_path.parent / "parity"
    ids = [str(r.get("id", i)) for i, r in enumerate(records)]
    texts = [str(r.get("text", r.get("id", ""))) for r in records]
    say(f"encoding {len(records)} samples")
    inputs = _encode(model_dir, records, spec)
    say("running onnxruntime")
    candidate = run_onnx(_session(onnx_path), inputs, spec.batch_size)
    say("running PyTorch")
    reference = _run_torch(model_dir, inputs, spec.batch_size)
    report, deltas = _evaluate(reference, candidate, ids, spec)
    _write_reports(report, out_dir, ids, texts, reference, candidate, deltas, spec)
    np.savez_compressed(
        out_dir / REFERENCE_FILE,
        ids=np.asarray(ids),
        texts=np.asarray(texts),
        **{f"input/{k}": v for k, v in inputs.items()},
        **{f"output/{k}": v for k, v in reference.items()},
    )
    report.files["reference"] = out_dir / REFERENCE_FILE
    if not report.passed:
        raise ParityError("parity gate failed", report.files["markdown"], report.failures)
    return report


def _evaluate(
    reference: dict[str, np.ndarray],
    candidate: dict[str, np.ndarray],
    ids: list[str],
    spec: ParitySpec,
) -> tuple[ParityReport, dict[str, np.ndarray]]:
    stats, deltas, failures = _compare(reference, candidate, spec)
    agreement, mismatches, label_failures = _label_check(reference, candidate, ids, spec)
    failures += label_failures
    report = ParityReport(
        passed=not failures,
        num_samples=len(ids),
        non_production=len(ids) < spec.min_samples,
        outputs=stats,
        label_agreement=agreement,
        label_mismatches=mismatches,
        failures=failures,
    )
    return report, deltas


def recheck_parity(
    onnx_path: str | Path, spec: ParitySpec | None = None, out_dir: str | Path | None = None
) -> ParityReport:
    """Re-run a retained graph on its stored parity inputs against the stored PyTorch outputs.

    For scheduled spot-checks after a dependency upgrade (onnxruntime, CUDA): no PyTorch
    checkpoint is needed. Raises :class:`ParityError` (after writing reports) on drift.
    """
    spec = spec or ParitySpec.production()
    onnx_path = Path(onnx_path)
    reference_file = onnx_path.parent / "parity" / REFERENCE_FILE
    if not reference_file.is_file():
        raise FileNotFoundError(
            f"no stored parity reference at {reference_file}; run check_parity first"
        )
    with np.load(reference_file) as data:
        ids = [str(v) for v in data["ids"]]
        texts = [str(v) for v in data["texts"]]
        inputs = {k.removeprefix("input/"): data[k] for k in data.files if k.startswith("input/")}
        reference = {
            k.removeprefix("output/"): data[k] for k in data.files if k.startswith("output/")
        }
    candidate = run_onnx(_session(onnx_path), inputs, spec.batch_size)
    report, deltas = _evaluate(reference, candidate, ids, spec)
    out = Path(out_dir) if out_dir else onnx_path.parent / "parity-recheck"
    _write_reports(report, out, ids, texts, reference, candidate, deltas, spec)
    if not report.passed:
        raise ParityError("parity recheck failed", report.files["markdown"], report.failures)
    return report


def parity_prefix(experiment: str, folder: str = PARITY_DIR) -> str:
    """Key prefix of an experiment's parity folder: ``models/onnx/{experiment}/fp32/parity``.

    >>> parity_prefix("exp-1")
    'models/onnx/exp-1/fp32/parity'
    """
    if folder not in (PARITY_DIR, RECHECK_DIR):
        raise ValueError(
            f"unknown parity folder {folder!r}; expected {PARITY_DIR!r} or {RECHECK_DIR!r}"
        )
    return layout.join(layout.onnx_dir(experiment, "fp32"), folder)


def store_parity_folder(
    parity_dir: str | Path, experiment: str, storage: Storage, folder: str = PARITY_DIR
) -> list[str]:
    """Store the files of a parity report folder under ``models/onnx/{experiment}/fp32/parity/``.

    What :func:`check_parity` wrote (``parity.json``, ``parity.md``, ``deltas.npz`` and
    ``reference.npz``) goes where ``ordinal parity-recheck`` looks for it, in any storage
    root. Call it also when the gate failed: the reports are what a reviewer needs. Files that
    already are the stored ones (a local store, reports written beside the stored model) are
    left as they are.

    Parameters
    ----------
    parity_dir : path
        The local report folder (``ParityReport.report_dir``).
    experiment : str
        The experiment whose FP32 model was checked.
    storage : Storage
        The storage root that holds ``models/onnx/{experiment}/fp32/``.
    folder : str
        ``"parity"`` (the gate) or ``"parity-recheck"`` (a scheduled recheck).

    Returns
    -------
    list of str
        The storage keys of the stored files, sorted.

    Raises
    ------
    FileNotFoundError
        ``parity_dir`` is not a folder, or holds no files.
    """
    parity_dir = Path(parity_dir)
    files = sorted(p for p in parity_dir.rglob("*") if p.is_file()) if parity_dir.is_dir() else []
    if not files:
        raise FileNotFoundError(f"no parity reports in {parity_dir}: run check_parity first")
    prefix = parity_prefix(experiment, folder)
    keys = []
    for path in files:
        key = layout.join(prefix, path.relative_to(parity_dir).as_posix())
        local = storage.local_path(key)
        if local is None or local.resolve() != path.resolve():
            storage.put_file(path, key)
        keys.append(key)
    return keys


def stored_parity_experiments(storage: Storage) -> list[str]:
    """Experiments whose ``fp32/model.onnx`` and ``fp32/parity/reference.npz`` are both stored."""
    root = layout.join("models", "onnx")
    keys = set(storage.list(root))
    found = []
    for key in keys:
        parts = key.split("/")
        if (
            len(parts) == 6
            and parts[3:] == ["fp32", PARITY_DIR, REFERENCE_FILE]
            and layout.join(*parts[:4], "model.onnx") in keys
        ):
            found.append(parts[2])
    return sorted(found)


def fetch_for_recheck(storage: Storage, experiment: str, work_dir: str | Path) -> Path:
    """A local ``model.onnx`` of ``experiment`` with its stored ``parity/reference.npz`` beside it.

    The stored file itself on a local store; else the FP32 folder (graph, external data,
    tokenizer files) and the stored reference are downloaded into ``work_dir/fp32/``, leaving
    out the old reports. Raises :class:`FileNotFoundError` naming the storage and key when
    either is missing.
    """
    prefix = layout.onnx_dir(experiment, "fp32")
    model_key = layout.join(prefix, "model.onnx")
    reference_key = layout.join(parity_prefix(experiment), REFERENCE_FILE)
    for key in (model_key, reference_key):
        if not storage.exists(key):
            raise FileNotFoundError(f"{storage.url} has no {key}")
    local = storage.local_path(model_key)
    if local is not None:
        return local
    dest = Path(work_dir) / "fp32"
    reports = (layout.join(prefix, PARITY_DIR) + "/", layout.join(prefix, RECHECK_DIR) + "/")
    for key in storage.list(prefix):
        if key == reference_key or not key.startswith(reports):
            storage.download(key, dest / key[len(prefix) + 1 :])
    return dest / "model.onnx"
