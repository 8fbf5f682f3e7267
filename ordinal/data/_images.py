"""Image preprocessing: decode, check mode and size, de-duplicate by pixels, split.

Reads ``labels.csv`` (``id``, ``file``, ``label``) and the images it names.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import IO

from ordinal.artifacts import layout
from ordinal.artifacts.checksums import HashingReader, sha256_bytes
from ordinal.artifacts.errors import InputChangedError
from ordinal.data._readers import iter_csv
from ordinal.data._records import (
    Declaration,
    OutputWriter,
    PreprocessReport,
    PreprocessSpec,
    Progress,
    RecordValidator,
    check_labels,
    finish,
)
from ordinal.data.errors import DataFormatError
from ordinal.data.splits import assign_split

_SAFE_NAME = layout.check_component


def _image_name(rid: str, suffix: str) -> str:
    try:
        base = _SAFE_NAME(rid)
    except ValueError:
        base = "id-" + sha256_bytes(rid.encode("utf-8"))[:24]
    return base + suffix.lower()


def _run_images(
    labels_reader: HashingReader,
    name: str,
    read_image: Callable[[str], bytes | None],
    v: RecordValidator,
    out: Path,
    progress: Progress | None,
) -> None:
    from PIL import Image, UnidentifiedImageError

    spec = v.spec
    file_col = v.content_col
    lo, hi = spec.min_image_side, spec.max_image_side
    n = 0
    for row_no, rid, file, label, problem in iter_csv(
        labels_reader, name, (v.id_col, file_col, v.label_col)
    ):
        n += 1
        if progress is not None and n % 100 == 0:
            progress("images", n, 0)
        if problem is not None:
            reason, fld, value = problem
            v.reject(row_no, rid, reason, fld, value)
            continue
        rid = v.check_id(row_no, rid)
        if rid is None:
            continue
        idx = v.check_label(row_no, rid, label)
        if idx is None:
            continue
        file = file.strip()
        try:
            rel = layout.join(file) if file else ""
        except ValueError:
            rel = ""
        data = read_image(rel) if rel else None
        if data is None:
            v.reject(row_no, rid, "missing_file", file_col, file)
            continue
        try:
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
                mode = im.mode
                if mode not in spec.image_modes:
                    v.reject(row_no, rid, "image_mode_not_allowed", file_col, file, mode=mode)
                    continue
                if min(width, height) < lo:
                    v.reject(row_no, rid, "image_too_small", file_col, file, size=[width, height])
                    continue
                if max(width, height) > hi:
                    v.reject(row_no, rid, "image_too_large", file_col, file, size=[width, height])
                    continue
                im.load()
                pixels = im.tobytes()
        except (
            UnidentifiedImageError,
            OSError,
            ValueError,
            SyntaxError,
            Image.DecompressionBombError,
        ) as exc:
            v.reject(row_no, rid, "undecodable_image", file_col, file, detail=str(exc)[:200])
            continue
        key = hashlib.blake2b(
            f"{mode}:{width}x{height}:".encode() + pixels, digest_size=16
        ).digest()
        if v.check_duplicate(row_no, rid, key):
            continue
        target = _image_name(rid, Path(rel).suffix)
        split = assign_split(rid, spec.split)
        (out / split / "images").mkdir(parents=True, exist_ok=True)
        (out / split / "images" / target).write_bytes(data)
        v.accept(
            rid,
            idx,
            {
                "id": rid,
                "file": f"images/{target}",
                "label": idx,
                "width": width,
                "height": height,
                "sha256": sha256_bytes(data),
            },
        )
    if progress is not None:
        progress("images", n, n)


def preprocess_image_folder(
    folder: str | Path,
    out_dir: str | Path,
    *,
    labels: tuple[str, ...] | list[str] | None = None,
    spec: PreprocessSpec | None = None,
    progress: Progress | None = None,
) -> PreprocessReport:
    """Validate, de-duplicate and split an image folder (``labels.csv`` + image files).

    Writes ``{split}/records.jsonl`` and ``{split}/images/{id}.png`` (original bytes) and
    ``quarantine/rejected.jsonl`` into ``out_dir``. The labels file's columns, its label
    set and how its values are read come from ``spec`` (``columns``, ``label_values``;
    ``labels`` when the argument is None).
    """
    spec = spec or PreprocessSpec()
    decl = Declaration.resolve(spec, labels=labels, name=str(folder))
    root = Path(folder)
    labels_path = root / spec.labels_file
    if not labels_path.is_file():
        raise DataFormatError(str(labels_path), "labels file not found")

    def read_image(rel: str) -> bytes | None:
        p = root / rel
        return p.read_bytes() if p.is_file() else None

    return process_images(
        labels_path.open("rb"), str(labels_path), read_image, out_dir, decl, spec, progress
    )


def process_images(
    fh: IO[bytes],
    name: str,
    read_image: Callable[[str], bytes | None],
    out_dir: str | Path,
    decl: Declaration,
    spec: PreprocessSpec,
    progress: Progress | None,
    expected_sha256: str | None = None,
) -> PreprocessReport:
    with fh:
        matcher = check_labels(decl.labels, decl.label_values, name)
        columns = decl.columns_for("image", name)
        out = Path(out_dir)
        writer = OutputWriter(out, "jsonl", "image")
        v = RecordValidator(spec, matcher, columns, writer, "image")
        try:
            reader = HashingReader(fh)
            _run_images(reader, name, read_image, v, out, progress)
            if expected_sha256 is not None and reader.hexdigest() != expected_sha256:
                raise InputChangedError(name, expected_sha256, reader.hexdigest())
        finally:
            writer.close()
    return finish(v, name)
