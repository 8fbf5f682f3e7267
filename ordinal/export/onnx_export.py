"""FP32 ONNX export: ``optimum-cli export onnx`` from a versioned config, plus the decoder graph.

The backbone and its linear projection are exported unchanged by optimum; the ordinal
decoder (cutpoints, link) is appended as its own small graph built from ``config.ordinal``
(:mod:`ordinal.export.decoder_graph`) and joined with ``onnx.compose``. The result lands under
``models/onnx/{experiment}/fp32/`` with a schema-validated manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import onnx
import yaml
from onnx import compose
from pydantic import BaseModel, ConfigDict, Field
from transformers import AutoConfig

from ordinal.artifacts import layout
from ordinal.artifacts.manifest import FileEntry, Manifest, new_manifest, write_manifest
from ordinal.artifacts.storage import Storage, open_storage, staging_dir
from ordinal.export.decoder_graph import DECODER_INPUT, build_decoder_graph, decoder_output_names
from ordinal.export.errors import ExportError, GraphError
from ordinal.export.graph import graph_signature, load_onnx
from ordinal.models import backbone_family
from ordinal.paths import project_file

__all__ = [
    "CONFIG_DIR",
    "ExportConfig",
    "ExportResult",
    "default_export_config",
    "export_onnx",
    "local_model_folder",
    "read_ordinal_section",
]

#: Versioned export configurations, one per task.
CONFIG_DIR = project_file("configs", "export")
MODEL_FILE = "model.onnx"
METADATA_FILE = "ordinal.json"
_PROCESSOR_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "merges.txt",
    "vocab.json",
    "preprocessor_config.json",
)


class ExportConfig(BaseModel):
    """An export configuration file (``configs/export/*.yaml``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: Literal["text-classification", "image-classification"]
    opset: int = Field(18, ge=15, le=21)  # the decoder graph's Shape(start, end) needs 15
    optimize: Literal["O1", "O2", "O3", "O4"] | None = None
    dynamic_axes: dict[str, list[str]] = Field(default_factory=dict)
    constant_folding: bool = True

    @classmethod
    def load(cls, path: str | Path) -> tuple[ExportConfig, str]:
        """Parse ``path``; return the config and the sha256 of the file's bytes."""
        path = Path(path)
        if not path.is_file():
            raise ExportError(f"no export config at {path}")
        data = path.read_bytes()
        try:
            return cls.model_validate(yaml.safe_load(data) or {}), hashlib.sha256(data).hexdigest()
        except Exception as exc:
            raise ExportError(f"{path}: invalid export config: {exc}") from None

    def cli_args(self) -> list[str]:
        """The ``optimum-cli export onnx`` options this config stands for."""
        args = ["--task", self.task, "--opset", str(self.opset)]
        if self.optimize:
            args += ["--optimize", self.optimize]
        if not self.constant_folding:
            args.append("--no-constant-folding")
        return args


def local_model_folder(
    storage: Storage, experiment: str, precision: str, cache_dir: str | Path
) -> Path:
    """A local folder holding ``models/onnx/{experiment}/{precision}/`` from ``storage``.

    The stored folder itself when the storage is local, else a download of every object
    under the prefix into ``cache_dir/{precision}/`` (what onnxruntime and the tokenizer
    loaders need: files on disk). Raises :class:`ExportError` naming the storage and key when
    there is no model there.
    """
    prefix = layout.onnx_dir(experiment, precision)
    key = layout.join(prefix, MODEL_FILE)
    local = storage.local_path(key)
    if local is not None:
        if not local.is_file():
            raise ExportError(
                f"no {precision} model for experiment {experiment!r} in {storage.url} "
                f"(looked for {key})"
            )
        return local.parent
    keys = storage.list(prefix)
    if key not in keys:
        raise ExportError(
            f"no {precision} model for experiment {experiment!r} in {storage.url} "
            f"(looked for {key})"
        )
    dest = Path(cache_dir) / precision
    for item in keys:
        storage.download(item, dest / item[len(prefix) + 1 :])
    return dest


def default_export_config(task: str) -> Path:
    """The repository's config file for ``task``."""
    return CONFIG_DIR / f"{task}.yaml"


def read_ordinal_section(model_dir: str | Path) -> tuple[dict[str, Any], Any]:
    """``config.ordinal`` and the backbone family of a saved ordinal model directory.

    Raises :class:`ExportError` for a missing/unreadable directory or a non-ordinal model, and
    :class:`ordinal.UnsupportedArchitectureError` (listing the supported types) otherwise.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ExportError(f"model directory {model_dir} does not exist")
    if not (model_dir / "config.json").is_file():
        raise ExportError(f"model directory {model_dir} has no config.json")
    try:
        config = AutoConfig.from_pretrained(model_dir)
    except Exception as exc:
        raise ExportError(f"cannot read {model_dir / 'config.json'}: {exc}") from None
    family = backbone_family(config)
    section = getattr(config, "ordinal", None)
    if not section:
        raise ExportError(
            f"{model_dir} is not an ordinal model: config.json has no 'ordinal' section"
        )
    return dict(section), family


@dataclass
class ExportResult:
    """Where the FP32 model went and what it looks like."""

    onnx_path: Path
    directory: Path
    key_prefix: str
    manifest: Manifest
    signature: dict[str, Any]


def _run_optimum(model_dir: Path, out_dir: Path, config: ExportConfig) -> None:
    # The real `optimum-cli`, run as a module of this interpreter: the same program as the
    # console script, found whether or not the environment's scripts folder is on PATH.
    command = [
        sys.executable,
        "-m",
        "optimum.commands.optimum_cli",
        "export",
        "onnx",
        "--model",
        str(model_dir),
        *config.cli_args(),
        str(out_dir),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0 or not (out_dir / MODEL_FILE).is_file():
        tail = (proc.stderr or proc.stdout)[-2000:]
        raise ExportError(f"optimum-cli export onnx failed (exit {proc.returncode}):\n{tail}")


def merge_decoder(backbone: onnx.ModelProto, section: dict[str, Any]) -> onnx.ModelProto:
    """Append the decoder graph to an exported backbone whose output is ``logits``."""
    names = [o.name for o in backbone.graph.output]
    if names != ["logits"]:
        raise ExportError(f"expected the backbone graph to output ['logits'], got {names}")
    opset = max(o.version for o in backbone.opset_import if o.domain in ("", "ai.onnx"))
    decoder = build_decoder_graph(section, opset, backbone.ir_version)
    decoder = compose.add_prefix(decoder, "ordinal/", rename_inputs=False, rename_outputs=False)
    merged = compose.merge_models(
        backbone,
        decoder,
        io_map=[("logits", DECODER_INPUT)],
        outputs=decoder_output_names(section),
        producer_name="ordinal",
        producer_version=_version(),
    )
    # merge_models concatenates opset imports; tools (the quantiser) want one per domain.
    unique = {(o.domain or ""): o.version for o in merged.opset_import}
    del merged.opset_import[:]
    merged.opset_import.extend(onnx.helper.make_opsetid(d, v) for d, v in sorted(unique.items()))
    onnx.checker.check_model(merged)
    return merged


def _check_dynamic_axes(signature: dict[str, Any], config: ExportConfig, source: Path) -> None:
    """Every axis the config declares dynamic must be a named (symbolic) dimension."""
    inputs = {i["name"]: i["dims"] for i in signature["inputs"]}
    for name, axes in config.dynamic_axes.items():
        if name not in inputs:
            if name == "token_type_ids":
                continue  # DistilBERT and RoBERTa graphs have no token_type_ids input
            raise GraphError(f"{source} declares input {name!r}; the graph has {sorted(inputs)}")
        if inputs[name][: len(axes)] != axes:
            raise GraphError(f"input {name!r} has dims {inputs[name]}, {source} declares {axes}")


def _version() -> str:
    from ordinal import __version__

    return __version__


def export_onnx(
    model_dir: str | Path,
    experiment: str,
    *,
    config_path: str | Path | None = None,
    storage: Storage | None = None,
    dataset: str = "unknown",
    dataset_version: str = "unknown",
    progress: Callable[[str], None] | None = None,
) -> ExportResult:
    """Export a saved ordinal model to FP32 ONNX under ``models/onnx/{experiment}/fp32/``.

    Parameters
    ----------
    model_dir : path
        A model saved by :func:`ordinal.save_ordinal_model` or a training run's ``model/``.
    experiment : str
        Experiment id; names the output folder.
    config_path : path, optional
        Export config; default ``configs/export/{task}.yaml`` for the model's family.
    storage : Storage, optional
        Destination; default the embedded local store (:func:`open_storage`).
    dataset, dataset_version : str
        The training data the model came from, recorded in the manifest.
    progress : callable, optional
        Receives a short message as each stage starts.
    """
    say = progress or (lambda message: None)
    model_dir = Path(model_dir)
    section, family = read_ordinal_section(model_dir)
    config_file = Path(config_path) if config_path else default_export_config(family.task)
    config, config_sha = ExportConfig.load(config_file)
    if config.task != family.task:
        raise ExportError(f"{config_file} is for {config.task}, but the model is {family.task}")
    storage = storage or open_storage()
    prefix = layout.onnx_dir(experiment, "fp32")

    with staging_dir("export-") as tmp:
        work = Path(tmp)
        say(f"optimum-cli export onnx --task {config.task} --opset {config.opset}")
        _run_optimum(model_dir, work / "optimum", config)
        say("appending the ordinal decoder graph")
        backbone = load_onnx(work / "optimum" / MODEL_FILE)
        try:
            merged = merge_decoder(backbone, section)
        except ExportError:
            raise
        except Exception as exc:
            raise ExportError(f"appending the decoder graph failed: {exc}") from None
        stage = work / "fp32"
        stage.mkdir()
        onnx.save(merged, str(stage / MODEL_FILE))
        signature = graph_signature(merged)
        _check_dynamic_axes(signature, config, config_file)
        metadata = {
            "ordinal": section,
            "signature": signature,
            "export_config": {
                "path": _display_path(config_file),
                "sha256": config_sha,
                **config.model_dump(),
            },
        }
        (stage / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
        for name in ("config.json", *_PROCESSOR_FILES):
            if (model_dir / name).is_file():
                shutil.copy2(model_dir / name, stage / name)
        say(f"writing {prefix}/")
        # A re-export replaces the folder: no stale parity reference or asset survives.
        storage.delete_prefix(prefix)
        outputs = []
        for path in sorted(stage.iterdir()):
            digest = storage.put_file(path, layout.join(prefix, path.name))
            role = (
                "model"
                if path.name == MODEL_FILE
                else "metadata"
                if path.name == METADATA_FILE
                else "asset"
            )
            outputs.append(FileEntry.from_digest(digest, role=role))
    manifest = new_manifest(
        phase="export",
        dataset=dataset,
        version=dataset_version,
        experiment_id=experiment,
        outputs=outputs,
        parameters={
            "export_config": _display_path(config_file),
            "export_config_sha256": config_sha,
            "task": config.task,
            "opset": signature["opset"],
            "optimize": config.optimize,
            "constant_folding": config.constant_folding,
            "head": section["head"],
            "link": section.get("link"),
            "num_classes": section["num_classes"],
            "cutpoints": section.get("cutpoints"),
            "signature": signature,
            "source_model": str(model_dir.resolve()),
        },
    )
    write_manifest(storage, layout.join(prefix, layout.MANIFEST_NAME), manifest)
    local = storage.local_path(layout.join(prefix, MODEL_FILE))
    return ExportResult(
        onnx_path=local if local else Path(prefix) / MODEL_FILE,
        directory=local.parent if local else Path(prefix),
        key_prefix=prefix,
        manifest=manifest,
        signature=signature,
    )


def _display_path(path: Path) -> str:
    """Repository-relative path when inside the repository (stable across checkouts)."""
    try:
        return str(path.resolve().relative_to(CONFIG_DIR.parents[1]))
    except ValueError:
        return str(path)
