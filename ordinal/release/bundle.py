"""Build and verify deployment bundles (``ordinal-bundle/1``, ``docs/bundle-format.md``).

:func:`build_bundle` assembles a folder from a run's verified artefacts
(:func:`ordinal.release.collect_run`): both graphs, the preprocessing assets, the gate
reports, the model card and the signed canonical ``bundle.json``. The same inputs, key and
``SOURCE_DATE_EPOCH`` give byte-identical folders. :func:`verify_bundle` runs the contract's
checks in order and raises a typed error naming the first thing that differs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ordinal.artifacts.checksums import sha256_bytes, sha256_file
from ordinal.export.graph import graph_signature, load_onnx
from ordinal.release.canonical import canonical_json
from ordinal.release.errors import (
    BundleBuildError,
    DigestMismatchError,
    FileMissingError,
    SchemaViolationError,
    SignatureError,
    UnlistedFileError,
    UnsafePathError,
    UntrustedKeyError,
)
from ordinal.release.model_card import render_model_card
from ordinal.release.run_source import RunInputs
from ordinal.release.schema import BUNDLE_FORMAT, bundle_schema_errors
from ordinal.release.signing import (
    TrustedKeys,
    fingerprint,
    load_private_key,
    sign_document,
    verify_document,
)

__all__ = [
    "BUNDLE_FILE",
    "SIGNATURE_FILE",
    "VerifiedBundle",
    "build_bundle",
    "bundle_dir_name",
    "is_safe_path",
    "min_onnxruntime",
    "verify_bundle",
]

BUNDLE_FILE = "bundle.json"
SIGNATURE_FILE = "bundle.sig"
PROCESSOR_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "merges.txt",
    "vocab.json",
    "preprocessor_config.json",
)
#: Oldest ONNX Runtime release implementing each opset of the default domain (the ONNX
#: Runtime compatibility table).
_ORT_FOR_OPSET = {
    15: (1, 10),
    16: (1, 11),
    17: (1, 12),
    18: (1, 14),
    19: (1, 15),
    20: (1, 17),
    21: (1, 18),
    22: (1, 20),
    23: (1, 22),
}
_SEMVER = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$")


def bundle_dir_name(name: str, version: str) -> str:
    """``{name}-{version}``, the bundle folder's conventional name."""
    return f"{name}-{version}"


def min_onnxruntime(opset: int) -> tuple[str, int]:
    """The oldest ONNX Runtime (``MAJOR.MINOR.PATCH``) and C API level for ``opset``.

    >>> min_onnxruntime(18)
    ('1.14.0', 14)
    """
    if opset not in _ORT_FOR_OPSET:
        raise BundleBuildError(f"no known ONNX Runtime release for opset {opset}")
    major, minor = _ORT_FOR_OPSET[opset]
    return f"{major}.{minor}.0", minor


def is_safe_path(path: Any) -> bool:
    """A relative POSIX path without ``..``, ``.``, empty components or a leading ``/``.

    >>> [is_safe_path(p) for p in ("fp32/model.onnx", "../x", "/x", "a//b", "a\\\\b")]
    [True, False, False, False, False]
    """
    if not isinstance(path, str) or not path or path.startswith("/") or "\\" in path:
        return False
    return all(part not in ("", ".", "..") for part in path.split("/"))


def _tensors(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"name": e["name"], "dtype": e["dtype"], "shape": list(e["dims"])} for e in entries]


def _metrics(inputs: RunInputs) -> dict[str, Any]:
    if inputs.int8_report is not None:
        report = json.loads(inputs.int8_report.read_text(encoding="utf-8"))
        n = int(report["num_samples"])
        return {
            variant: {
                "n": n,
                "mae": float(report[variant]["mae"]),
                "qwk": float(report[variant]["qwk"]),
                "accuracy": float(report[variant]["accuracy"]),
            }
            for variant in ("fp32", "int8")
        }
    m = inputs.train_metrics
    try:
        return {
            "fp32": {
                "n": inputs.validation_records,
                "mae": float(m["eval_mae"]),
                "qwk": float(m["eval_qwk"]),
                "accuracy": float(m["eval_accuracy"]),
            }
        }
    except KeyError as exc:
        raise BundleBuildError(
            f"the train step recorded no {exc.args[0]!r} metric and there is no INT8 report"
        ) from None


def _stage(inputs: RunInputs, stage: Path) -> dict[str, Any]:
    """Copy the files into ``stage``; return the metadata parts that depend on them."""
    ordinal_json = json.loads((inputs.fp32_dir / "ordinal.json").read_text(encoding="utf-8"))
    section = ordinal_json["ordinal"]
    fp32_graph = load_onnx(inputs.fp32_dir / "model.onnx")
    signature = graph_signature(fp32_graph)
    (stage / "fp32").mkdir(parents=True)
    shutil.copyfile(inputs.fp32_dir / "model.onnx", stage / "fp32" / "model.onnx")
    opset = signature["opset"]
    if inputs.int8_dir is not None:
        int8_signature = graph_signature(load_onnx(inputs.int8_dir / "model.onnx"))
        for side in ("inputs", "outputs"):
            if int8_signature[side] != signature[side]:
                raise BundleBuildError(
                    f"the INT8 graph's {side} {int8_signature[side]} differ from the FP32 "
                    f"graph's {signature[side]}"
                )
        opset = max(opset, int8_signature["opset"])
        (stage / "int8").mkdir()
        shutil.copyfile(inputs.int8_dir / "model.onnx", stage / "int8" / "model.onnx")
    (stage / "preprocess").mkdir()
    for name in PROCESSOR_FILES:
        if (inputs.fp32_dir / name).is_file():
            shutil.copyfile(inputs.fp32_dir / name, stage / "preprocess" / name)
    (stage / "reports").mkdir()
    shutil.copyfile(inputs.parity_report, stage / "reports" / "parity.json")
    if inputs.parity_reference is not None:
        shutil.copyfile(inputs.parity_reference, stage / "reports" / "parity-reference.npz")
    if inputs.int8_report is not None:
        shutil.copyfile(inputs.int8_report, stage / "reports" / "int8.json")
    modality = "text" if section.get("task", "text-classification").startswith("text") else "image"
    if modality == "text":
        if not (stage / "preprocess" / "tokenizer.json").is_file():
            raise BundleBuildError(f"{inputs.fp32_dir} has no tokenizer.json for a text model")
        preprocess = {
            "kind": "tokenizer",
            "tokenizer": "preprocess/tokenizer.json",
            "max_length": inputs.max_length,
            "truncation": "longest_first",
            "padding": "longest",
        }
    else:
        if not (stage / "preprocess" / "preprocessor_config.json").is_file():
            raise BundleBuildError(f"{inputs.fp32_dir} has no preprocessor_config.json")
        preprocess = {"kind": "image_processor", "processor": "preprocess/preprocessor_config.json"}
    head = section["head"]
    label_names = [str(n) for n in section.get("label_names") or range(section["num_classes"])]
    cutpoints = section.get("cutpoints")
    return {
        "model": {
            "modality": modality,
            "family": str(section.get("family") or "unknown"),
            "head": head,
            "link": section.get("link") if head == "cumulative_link" else None,
            "num_classes": int(section["num_classes"]),
            "label_names": label_names,
            "cutpoints": [float(c) for c in cutpoints] if cutpoints is not None else None,
        },
        "graph": {
            "opset": int(signature["opset"]),
            "inputs": _tensors(signature["inputs"]),
            "outputs": _tensors(signature["outputs"]),
        },
        "opset": opset,
        "preprocess": preprocess,
    }


def _listing(stage: Path) -> list[dict[str, Any]]:
    files = []
    for path in sorted(stage.rglob("*")):
        if path.is_file():
            rel = path.relative_to(stage).as_posix()
            if rel in (BUNDLE_FILE, SIGNATURE_FILE):
                continue
            digest = sha256_file(path)
            files.append({"path": rel, "sha256": digest.sha256, "size": digest.size})
    return sorted(files, key=lambda f: f["path"])


def build_bundle(
    inputs: RunInputs,
    out_dir: str | os.PathLike[str],
    *,
    name: str,
    version: str,
    signing_key: Ed25519PrivateKey | str | os.PathLike[str],
    default_variant: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Assemble, sign and write the bundle folder ``out_dir``; return it.

    Parameters
    ----------
    inputs : RunInputs
        The run's verified artefacts (:func:`ordinal.release.collect_run`).
    out_dir : path
        The bundle folder to create (conventionally ``{name}-{version}``); written through a
        temporary sibling and renamed, so a failure leaves nothing half-written.
    name, version : str
        Release name (``^[a-z0-9][a-z0-9._-]{0,63}$``) and semantic version.
    signing_key : Ed25519PrivateKey or path
        The release signing key (:func:`ordinal.release.generate_signing_key`).
    default_variant : {"int8", "fp32"}, optional
        Default ``int8`` when the run has an INT8 graph, else ``fp32``.
    overwrite : bool
        Replace an existing ``out_dir``.

    Raises
    ------
    BundleBuildError
        Bad name or version, inconsistent graphs, or metadata that fails the schema.
    """
    if not re.match(r"^[a-z0-9][a-z0-9._-]{0,63}$", name or ""):
        raise BundleBuildError(f"invalid release name {name!r}: use ^[a-z0-9][a-z0-9._-]{{0,63}}$")
    if not _SEMVER.match(version or ""):
        raise BundleBuildError(f"invalid version {version!r}: use MAJOR.MINOR.PATCH")
    key = (
        signing_key if isinstance(signing_key, Ed25519PrivateKey) else load_private_key(signing_key)
    )
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise BundleBuildError(f"{out} exists; pass overwrite=True to replace it")
    default = default_variant or ("int8" if inputs.int8_dir is not None else "fp32")
    if default not in ("int8", "fp32") or (default == "int8" and inputs.int8_dir is None):
        raise BundleBuildError(f"default variant {default!r} is not in this run")
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        parts = _stage(inputs, stage)
        min_version, api = min_onnxruntime(parts["opset"])
        git = inputs.fp32_manifest.git
        meta: dict[str, Any] = {
            "format": BUNDLE_FORMAT,
            "name": name,
            "version": version,
            "created_at": inputs.created_at,
            "lineage": {
                "run_id": inputs.run_id,
                "experiment_id": inputs.experiment_id,
                "git_sha": git.sha,
                "git_dirty": git.dirty,
                "dataset": dict(inputs.dataset),
            },
            "model": parts["model"],
            "graph": parts["graph"],
            "onnxruntime": {"min_version": min_version, "api_version": api},
            "preprocess": parts["preprocess"],
            "default_variant": default,
            "metrics": _metrics(inputs),
        }
        variants = {"fp32": {"path": "fp32/model.onnx", "sha256": ""}}
        evidence: dict[str, Any] = {
            "parity": {"path": "reports/parity.json", "sha256": "", "passed": True}
        }
        if inputs.int8_dir is not None:
            variants["int8"] = {"path": "int8/model.onnx", "sha256": ""}
            evidence["int8"] = {"path": "reports/int8.json", "sha256": "", "passed": True}
        for table in (variants, evidence):
            for entry in table.values():
                entry["sha256"] = sha256_file(stage / entry["path"]).sha256
        for entry in evidence.values():
            entry["passed"] = bool(json.loads((stage / entry["path"]).read_text())["passed"])
        meta["variants"], meta["evidence"] = variants, evidence
        (stage / "README.md").write_text(render_model_card(meta), encoding="utf-8")
        meta["files"] = _listing(stage)
        meta["signing"] = {"algorithm": "ed25519", "key_fingerprint": fingerprint(key)}
        errors = bundle_schema_errors(meta)
        if errors:
            raise BundleBuildError(
                "bundle metadata fails the schema:\n  - " + "\n  - ".join(errors)
            )
        data = canonical_json(meta)
        (stage / BUNDLE_FILE).write_bytes(data)
        (stage / SIGNATURE_FILE).write_bytes(sign_document(data, key))
        for path in stage.rglob("*"):
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        os.chmod(stage, 0o755)
        if out.exists():
            shutil.rmtree(out)
        os.replace(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return out


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle that passed :func:`verify_bundle`.

    Attributes
    ----------
    path : Path
        The bundle folder.
    metadata : dict
        The parsed ``bundle.json``.
    digest : str
        sha256 of the exact ``bundle.json`` bytes: the bundle's identity (it lists every
        file's digest).
    key_fingerprint : str
        The signing key.
    trusted : bool
        False when accepted only because any self-signed bundle was allowed.
    """

    path: Path
    metadata: dict[str, Any]
    digest: str
    key_fingerprint: str
    trusted: bool

    @property
    def name(self) -> str:
        """Release name."""
        return self.metadata["name"]

    @property
    def version(self) -> str:
        """Release version."""
        return self.metadata["version"]

    def file_digest(self, path: str) -> str:
        """The recorded sha256 of ``path`` inside the bundle."""
        for entry in self.metadata["files"]:
            if entry["path"] == path:
                return entry["sha256"]
        raise KeyError(path)


def _read(path: Path, what: str, error: type) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise error(f"{what} is missing", path=path.name, bundle=str(path.parent)) from None


def _unsafe_paths(meta: Any) -> list[str]:
    if not isinstance(meta, dict):
        return []
    found = []
    for index, entry in enumerate(meta.get("files") or []):
        if isinstance(entry, dict) and "path" in entry and not is_safe_path(entry["path"]):
            found.append((f"files/{index}/path", entry["path"]))
    for table in ("variants", "evidence"):
        for key, entry in (
            (meta.get(table) or {}).items() if isinstance(meta.get(table), dict) else ()
        ):
            if isinstance(entry, dict) and "path" in entry and not is_safe_path(entry["path"]):
                found.append((f"{table}/{key}/path", entry["path"]))
    prep = meta.get("preprocess")
    if isinstance(prep, dict):
        for key in ("tokenizer", "processor"):
            if key in prep and not is_safe_path(prep[key]):
                found.append((f"preprocess/{key}", prep[key]))
    return [f"{where}={value!r}" for where, value in found]


def verify_bundle(path: str | os.PathLike[str], trusted_keys: Any = None) -> VerifiedBundle:
    """Verify a bundle folder; raise a typed error naming the first thing that differs.

    Checks, in the contract's order: the schema and format; ``bundle.sig`` (its fingerprint
    equals ``signing.key_fingerprint`` and its key; the key is trusted); the signature over
    the exact bytes of ``bundle.json``; every listed file's presence, size and sha256; no
    unlisted file; the variant and evidence digests against ``files``.

    Parameters
    ----------
    path : path
        The bundle folder.
    trusted_keys : TrustedKeys, key, fingerprint, path, or an iterable of them
        What to trust. None trusts nothing (every bundle is refused);
        ``TrustedKeys.any_self_signed()`` accepts any correctly self-signed bundle and the
        result says ``trusted=False``.

    Raises
    ------
    SchemaViolationError, SignatureError, UntrustedKeyError, UnsafePathError,
    FileMissingError, DigestMismatchError, UnlistedFileError
        All subclasses of :class:`~ordinal.release.errors.BundleVerificationError`.
    """
    root = Path(path)
    trust = TrustedKeys.coerce(trusted_keys)
    where = str(root)
    if not root.is_dir():
        raise FileMissingError("the bundle folder does not exist", path=where)
    data = _read(root / BUNDLE_FILE, BUNDLE_FILE, SchemaViolationError)
    try:
        meta = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SchemaViolationError(
            f"bundle.json is not JSON: {exc}", path=BUNDLE_FILE, bundle=where
        ) from None
    unsafe = _unsafe_paths(meta)
    if unsafe:
        raise UnsafePathError(
            f"unsafe path(s) in bundle.json: {', '.join(unsafe)}", path=unsafe[0], bundle=where
        )
    if isinstance(meta, dict) and meta.get("format") != BUNDLE_FORMAT:
        raise SchemaViolationError(
            f"format {meta.get('format')!r}, expected {BUNDLE_FORMAT!r}",
            path="format",
            expected=BUNDLE_FORMAT,
            actual=str(meta.get("format")),
            bundle=where,
        )
    errors = bundle_schema_errors(meta)
    if errors:
        raise SchemaViolationError(
            "bundle.json does not match bundle.v1.json",
            errors=errors,
            path=BUNDLE_FILE,
            bundle=where,
        )
    sig = _read(root / SIGNATURE_FILE, SIGNATURE_FILE, SignatureError)
    recorded = meta["signing"]["key_fingerprint"]
    try:
        signed_by = json.loads(sig).get("key_fingerprint")
    except (ValueError, AttributeError):
        signed_by = None  # malformed: verify_document below names the problem
    if signed_by is not None and signed_by != recorded:
        raise SignatureError(
            "bundle.sig names another key than signing.key_fingerprint",
            path=SIGNATURE_FILE,
            expected=recorded,
            actual=str(signed_by),
            bundle=where,
        )
    if signed_by is not None and not trust.trusts(recorded):
        raise UntrustedKeyError(
            f"signed by {recorded}, which is not among the trusted keys ({trust!r})",
            path=SIGNATURE_FILE,
            actual=recorded,
            bundle=where,
        )
    info = verify_document(data, sig)
    if info.key_fingerprint != recorded:  # pragma: no cover - covered by the check above
        raise SignatureError("bundle.sig key differs from signing.key_fingerprint", bundle=where)
    if not trust.trusts(info.key_fingerprint):  # pragma: no cover - checked above
        raise UntrustedKeyError(f"signed by untrusted {info.key_fingerprint}", bundle=where)
    listed = {}
    for entry in meta["files"]:
        rel = entry["path"]
        if rel in listed:
            raise DigestMismatchError(f"{rel} is listed twice in files", path=rel, bundle=where)
        listed[rel] = entry
        target = root / rel
        if target.is_symlink():
            raise UnsafePathError(f"{rel} is a symbolic link", path=rel, bundle=where)
        if not target.is_file():
            raise FileMissingError(f"{rel} is listed in files but absent", path=rel, bundle=where)
        got = sha256_file(target)
        if got.size != entry["size"]:
            raise DigestMismatchError(
                f"{rel} has {got.size} bytes, bundle.json records {entry['size']}",
                path=rel,
                expected=str(entry["size"]),
                actual=str(got.size),
                bundle=where,
            )
        if got.sha256 != entry["sha256"]:
            raise DigestMismatchError(
                f"{rel} has sha256 {got.sha256}, bundle.json records {entry['sha256']}",
                path=rel,
                expected=entry["sha256"],
                actual=got.sha256,
                bundle=where,
            )
    for found in sorted(root.rglob("*")):
        rel = found.relative_to(root).as_posix()
        if rel in (BUNDLE_FILE, SIGNATURE_FILE) or rel in listed or found.is_dir():
            continue
        raise UnlistedFileError(f"{rel} is in the folder but not in files", path=rel, bundle=where)
    for table in ("variants", "evidence"):
        for key, entry in meta[table].items():
            rel = entry["path"]
            if rel not in listed:
                raise FileMissingError(
                    f"{table}.{key} names {rel}, which files does not list", path=rel, bundle=where
                )
            if listed[rel]["sha256"] != entry["sha256"]:
                raise DigestMismatchError(
                    f"{table}.{key}.sha256 differs from the files entry of {rel}",
                    path=f"{table}/{key}",
                    expected=listed[rel]["sha256"],
                    actual=entry["sha256"],
                    bundle=where,
                )
    return VerifiedBundle(
        path=root.resolve(),
        metadata=meta,
        digest=sha256_bytes(data),
        key_fingerprint=info.key_fingerprint,
        trusted=info.key_fingerprint in trust.fingerprints,
    )
