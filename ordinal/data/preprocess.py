"""Preprocessing: validate raw records, quarantine rejects, de-duplicate, split, report.

Text comes as CSV, JSONL or Parquet with ``id``, ``text`` and ``label`` columns; images as a
folder with a ``labels.csv`` (``id``, ``file``, ``label``). Every record is checked (id
present and unique, text non-empty valid UTF-8 within length limits, label in the declared
ordered label set, image decodable with an allowed mode and size). A record that fails goes
to the quarantine file with a reason code (:data:`REASON_CODES`) and the offending value;
nothing is dropped silently: ``raw = accepted + rejected`` always holds and is recorded in
the manifest.

Records stream through: text rows are parsed, checked and written one at a time, so memory
grows only with the sets of seen ids and content hashes (a few dozen bytes per record), not
with the data. Outputs are byte-identical for the same inputs and spec.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from pathlib import Path
from typing import IO, Any, Literal

from ordinal.artifacts import layout
from ordinal.artifacts.checksums import HashingReader, sha256_bytes, sha256_file
from ordinal.artifacts.errors import InputChangedError, ObjectNotFoundError
from ordinal.artifacts.layout import SPLITS
from ordinal.artifacts.manifest import (
    FileEntry,
    Manifest,
    load_verified_manifest,
    manifest_entry,
    new_manifest,
    write_manifest,
)
from ordinal.artifacts.storage import Storage, open_storage, staging_dir
from ordinal.data._images import preprocess_image_folder, process_images
from ordinal.data._readers import Row, iter_csv, iter_jsonl, iter_parquet
from ordinal.data._records import (
    PREPROCESS_OPTIONS,
    PROGRESS_EVERY,
    REASON_CODES,
    Declaration,
    OutputWriter,
    PreprocessReport,
    PreprocessSpec,
    Progress,
    RecordValidator,
    check_labels,
    finish,
    is_bad_utf8,
    normalise_text,
)
from ordinal.data.errors import DataFormatError, EmptyDatasetError, RejectionThresholdError
from ordinal.data.splits import split_assigner

__all__ = [
    "PREPROCESS_OPTIONS",
    "REASON_CODES",
    "PreprocessReport",
    "PreprocessResult",
    "PreprocessSpec",
    "check_thresholds",
    "normalise_text",
    "preprocess",
    "preprocess_image_folder",
    "preprocess_text_file",
]


@dataclass(frozen=True)
class PreprocessResult:
    """What :func:`preprocess` wrote."""

    dataset: str
    version: str
    manifest_key: str
    manifest: Manifest
    report: PreprocessReport


def _run_text(rows: Iterator[Row], v: RecordValidator, progress: Progress | None) -> None:
    # The common path (a valid, new record) is inlined: at a million rows every attribute
    # lookup and call shows. Rejections go through the RecordValidator methods, which re-check
    # and record the reason.
    spec = v.spec
    min_c, max_c = spec.min_text_chars, spec.max_text_chars
    text_field = v.content_col
    blake = hashlib.blake2b
    normalise = normalise_text
    dedupe = spec.dedupe
    reject = v.reject
    seen_ids = v.seen_ids
    seen_content = v.seen_content
    lookup = v.lookup
    assign = split_assigner(spec.split)
    writer = v.writer
    files = writer._files if writer.format == "jsonl" else None
    enc = encode_basestring
    n_labels = len(v.labels)
    per_split = {s: [0] * n_labels for s in SPLITS}
    accepted = 0
    n = 0
    for row_no, rid, text, label, problem in rows:
        n += 1
        if progress is not None and n % PROGRESS_EVERY == 0:
            progress("records", n, 0)
        if problem is not None:
            reason, fld, value = problem
            reject(row_no, rid, reason, fld, value)
            continue
        if type(rid) is str and (rid := rid.strip()) and rid.isascii() and rid not in seen_ids:
            seen_ids.add(rid)
        else:
            rid = v.check_id(row_no, rid)
            if rid is None:
                continue
        if type(text) is not str:
            reason = "invalid_type" if text is not None else "empty_text"
            reject(row_no, rid, reason, text_field, text)
            continue
        if not text.isascii() and is_bad_utf8(text):
            reject(row_no, rid, "invalid_utf8", text_field, text)
            continue
        if not text.strip():
            reject(row_no, rid, "empty_text", text_field, text)
            continue
        length = len(text)
        if length < min_c:
            reject(row_no, rid, "text_too_short", text_field, text)
            continue
        if length > max_c:
            reject(row_no, rid, "text_too_long", text_field, text)
            continue
        tl = type(label)
        idx = lookup.get(label.strip() if tl is str else label) if tl is str or tl is int else None
        if idx is None:
            idx = v.check_label(row_no, rid, label)
            if idx is None:
                continue
        if dedupe:
            key = blake(normalise(text).encode("utf-8"), digest_size=16).digest()
            if key in seen_content:
                v.check_duplicate(row_no, rid, key)
                continue
            seen_content[key] = rid
        split = assign(rid)
        per_split[split][idx] += 1
        accepted += 1
        if files is not None:
            # Same bytes as json.dumps(record, ensure_ascii=False, separators=(",", ":")).
            files[split].write(
                '{"id":' + enc(rid) + ',"text":' + enc(text) + ',"label":' + str(idx) + "}\n"
            )
        else:
            writer.write(split, {"id": rid, "text": text, "label": idx})
    rep = v.report
    rep.raw += accepted
    rep.accepted += accepted
    for s, counts in per_split.items():
        rep.split_counts[s] += sum(counts)
        for i, c in enumerate(counts):
            if c:
                rep.label_counts[s][v.labels[i]] += c
    if progress is not None:
        progress("records", n, 0)


def preprocess_text_file(
    path: str | Path,
    out_dir: str | Path,
    *,
    labels: tuple[str, ...] | list[str] | None = None,
    spec: PreprocessSpec | None = None,
    fmt: Literal["csv", "jsonl", "parquet"] | None = None,
    expected_sha256: str | None = None,
    progress: Progress | None = None,
    declaration: Declaration | None = None,
) -> PreprocessReport:
    """Validate, de-duplicate and split one text file into ``out_dir`` (no storage involved).

    Writes ``{train,validation,test}/records.jsonl`` (or ``.parquet``) and
    ``quarantine/rejected.jsonl``. Thresholds are not applied here (see :func:`check_thresholds`).

    Parameters
    ----------
    path : path-like
        The raw file.
    out_dir : path-like
        Output folder.
    labels : sequence of str or None
        Ordered label set, values as they appear in the data (None: ``spec.labels``). How
        values are read (``spec.label_values``, default ``name``) and which columns hold
        the id, text and label (``spec.columns``) come from the spec.
    spec : PreprocessSpec or None
        Parameters (defaults if None).
    fmt : {"csv", "jsonl", "parquet"} or None
        File format; None takes it from the suffix.
    expected_sha256 : str or None
        If given, the bytes read are hashed in the same pass and must match (else
        :class:`InputChangedError`), so what was parsed is what the manifest lists.

    Raises
    ------
    EmptyDatasetError, MissingColumnError, DataFormatError, InputChangedError
    """
    spec = spec or PreprocessSpec()
    p = Path(path)
    fmt = fmt or p.suffix.lstrip(".").lower()  # type: ignore[assignment]
    if fmt not in ("csv", "jsonl", "parquet"):
        raise DataFormatError(str(p), f"unsupported text format {fmt!r}")
    decl = declaration or Declaration.resolve(spec, labels=labels, name=str(p))
    matcher = check_labels(decl.labels, decl.label_values, str(p))
    cols = decl.columns_for("text", str(p))
    out = Path(out_dir)
    writer = OutputWriter(out, spec.output_format, "text")
    v = RecordValidator(spec, matcher, cols, writer, "text")
    total = p.stat().st_size
    try:
        if fmt == "parquet":
            if expected_sha256 is not None:
                found = sha256_file(p).sha256
                if found != expected_sha256:
                    raise InputChangedError(str(p), expected_sha256, found)
            _run_text(iter_parquet(p, str(p), cols), v, progress)
        else:
            with p.open("rb", buffering=0) as fh:
                reader = HashingReader(fh)
                it = iter_csv if fmt == "csv" else iter_jsonl
                if total == 0:
                    raise EmptyDatasetError(str(p), "0-byte file")
                _run_text(it(reader, str(p), cols), v, progress)
                if expected_sha256 is not None and reader.hexdigest() != expected_sha256:
                    raise InputChangedError(
                        str(p), expected_sha256, reader.hexdigest(), detail="changed while read"
                    )
    finally:
        writer.close()
    return finish(v, str(p))


# --------------------------------------------------------------------------- pipeline


def check_thresholds(report: PreprocessReport, spec: PreprocessSpec) -> dict[str, Any] | None:
    """Return a failure report if a rejection threshold is exceeded, else None."""
    checks = (
        ("invalid", report.invalid, spec.max_rejected_fraction),
        ("duplicate", report.duplicates, spec.max_duplicate_fraction),
    )
    for kind, count, limit in checks:
        fraction = count / report.raw if report.raw else 0.0
        if fraction > limit:
            reasons = {
                k: c
                for k, c in report.reasons.items()
                if (k == "duplicate_content") == (kind == "duplicate")
            }
            return {
                "kind": f"{kind} record",
                "count": count,
                "raw": report.raw,
                "fraction": fraction,
                "threshold": limit,
                "reasons": reasons,
                "examples": report.examples,
            }
    return None


def _json_bytes(data: Any) -> bytes:
    return (json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def _role(rel: str) -> str:
    top = rel.split("/", 1)[0]
    if top in SPLITS:
        return f"split:{top}" if "/images/" not in f"/{rel}" else f"image:{top}"
    if top == "quarantine":
        return "quarantine"
    return "report:" + Path(rel).stem


def preprocess(
    dataset: str,
    version: str,
    *,
    storage: Storage | str | None = None,
    spec: PreprocessSpec | None = None,
    endpoint_url: str | None = None,
    progress: Progress | None = None,
) -> PreprocessResult:
    """Preprocess an ingested dataset version into ``datasets/processed/{dataset}/{version}/``.

    The raw manifest is schema-validated and every raw byte read is checked against its
    sha256. Outputs are staged locally, then published: the old manifest is removed first and
    the new one written last, so readers never see a mix.

    Raises
    ------
    ManifestError
        The raw manifest is missing or invalid.
    InputChangedError
        A raw file no longer matches its manifest.
    RejectionThresholdError
        Too many invalid (or duplicate) records; the quarantine file and report are still
        written under ``quarantine/`` and ``reports/`` for inspection.
    EmptyDatasetError, MissingColumnError, DataFormatError
        The raw data cannot be processed at all.
    """
    store = (
        storage
        if storage is not None and not isinstance(storage, str)
        else open_storage(storage, endpoint_url=endpoint_url)
    )
    raw_key = layout.raw_manifest(dataset, version)
    raw_manifest = load_verified_manifest(store, raw_key, phase="ingest", verify=False)
    params = raw_manifest.parameters
    base = spec or PreprocessSpec()
    decl = Declaration.resolve(base, recorded=params, name=raw_key)
    labels = decl.labels
    fmt = str(params.get("format", ""))
    raw_prefix = layout.raw_dir(dataset, version)
    raw_files = {o.path[len(raw_prefix) + 1 :]: o for o in raw_manifest.outputs if o.role == "raw"}
    used: list[FileEntry] = []

    with staging_dir("preprocess-") as tmp:
        stage = Path(tmp)
        out = stage / "out"
        if fmt == "image_folder":
            entry = raw_files.get(base.labels_file)
            if entry is None:
                raise DataFormatError(raw_prefix, f"raw dataset has no {base.labels_file}")
            local_dir = stage / "raw"

            def read_image(rel: str) -> bytes | None:
                e = raw_files.get(rel)
                if e is None or rel == base.labels_file:
                    return None
                local = store.local_path(e.path)
                data = local.read_bytes() if local is not None else store.get_bytes(e.path)
                found = sha256_bytes(data)
                if found != e.sha256:
                    raise InputChangedError(e.path, e.sha256, found, detail="raw image changed")
                used.append(e)
                return data

            fh = _open_raw(store, entry.path, local_dir)
            report = process_images(
                fh, entry.path, read_image, out, decl, base, progress, entry.sha256
            )
            used.append(entry)
        else:
            data_files = [e for rel, e in sorted(raw_files.items())]
            if len(data_files) != 1:
                raise DataFormatError(raw_prefix, f"expected one raw file, found {len(data_files)}")
            entry = data_files[0]
            local = store.local_path(entry.path)
            if local is None:
                local = store.download(entry.path, stage / "raw" / Path(entry.path).name)
            report = preprocess_text_file(
                local,
                out,
                spec=base,
                fmt=fmt,  # type: ignore[arg-type]
                expected_sha256=entry.sha256,
                progress=progress,
                declaration=decl,
            )
            used.append(entry)

        proc_prefix = layout.processed_dir(dataset, version)
        manifest_key = layout.processed_manifest(dataset, version)
        report_dict = report.to_dict(base, labels)
        (out / "reports").mkdir(parents=True, exist_ok=True)
        (out / "reports" / "preprocess_report.json").write_bytes(_json_bytes(report_dict))
        (out / "reports" / "label_distribution.json").write_bytes(
            _json_bytes(report_dict["label_distribution"])
        )
        failure = check_thresholds(report, base)
        if failure is not None:
            hint = _label_hint(report, decl)
            if hint:
                failure["hint"] = hint

        # Unpublish first: the manifest is what makes outputs valid, so it goes first.
        store.delete(manifest_key)
        store.delete_prefix(proc_prefix)
        files = sorted(p for p in out.rglob("*") if p.is_file())
        if failure is not None:
            files = [p for p in files if p.relative_to(out).parts[0] in ("quarantine", "reports")]
        outputs: list[FileEntry] = []
        for i, p in enumerate(files, start=1):
            rel = p.relative_to(out).as_posix()
            d = store.put_file(p, layout.join(proc_prefix, rel))
            outputs.append(FileEntry(path=d.path, sha256=d.sha256, size=d.size, role=_role(rel)))
            if progress is not None and i % 200 == 0:
                progress("publish", i, len(files))
        if failure is not None:
            raise RejectionThresholdError(
                failure, layout.join(layout.quarantine_dir(dataset, version), "rejected.jsonl")
            )

    inputs = [
        manifest_entry(raw_manifest, raw_key),
        *sorted({e.path: e for e in used}.values(), key=lambda e: e.path),
    ]
    manifest = new_manifest(
        phase="preprocess",
        dataset=dataset,
        version=version,
        inputs=inputs,
        outputs=outputs,
        record_counts=report.record_counts(),
        parameters={
            "format": fmt,
            "kind": report.kind,
            "labels": list(labels),
            "label_values": decl.label_values,
            "columns": decl.columns.model_dump(mode="json"),
            "spec": base.model_dump(mode="json"),
            "source": params.get("source"),
        },
        experiment_id=raw_manifest.experiment_id,
    )
    write_manifest(store, manifest_key, manifest)
    return PreprocessResult(dataset, version, manifest_key, manifest, report)


def _label_hint(report: PreprocessReport, decl: Declaration) -> str | None:
    """Say so when the refused labels look like the other ``label_values`` reading."""
    values = [
        str(e["value"]).strip()
        for e in report.examples
        if e.get("reason") == "label_not_in_set" and e.get("value") is not None
    ]
    if not values or report.reasons.get("label_not_in_set", 0) < report.invalid / 2:
        return None
    positions = {str(i) for i in range(len(decl.labels))}
    if decl.label_values == "name" and set(values) <= positions:
        return (
            f"the refused label values ({', '.join(sorted(set(values)))}) look like 0-based "
            "positions: if the data holds positions, declare label_values: index"
        )
    if decl.label_values == "index" and set(values) <= set(decl.labels):
        return (
            "the refused label values are label names: if the data holds the names, "
            "declare label_values: name"
        )
    return None


def _open_raw(store: Storage, key: str, local_dir: Path) -> IO[bytes]:
    local = store.local_path(key)
    if local is None:
        local = store.download(key, local_dir / Path(key).name)
    try:
        return local.open("rb", buffering=0)
    except FileNotFoundError:
        raise ObjectNotFoundError("raw file is gone", key=key) from None
