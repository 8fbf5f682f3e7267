"""Streaming readers of raw text records (CSV, JSONL, Parquet).

Each yields ``(row, id, text, label, problem)``: ``problem`` is ``(reason, field, value)``
when the row cannot even be read as a record, so the caller quarantines it.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ordinal.artifacts.checksums import HashingReader
from ordinal.data._records import is_bad_utf8
from ordinal.data.errors import DataFormatError, EmptyDatasetError, MissingColumnError

Row = tuple[int, Any, Any, Any, tuple[str, str | None, Any] | None]
Cols = tuple[str, str, str]
"""The ``(id, content, label)`` column names to read (:meth:`Columns.for_kind`)."""


def _open_text(reader: HashingReader) -> io.TextIOWrapper:
    # surrogateescape keeps undecodable bytes as lone surrogates, so one bad row is
    # quarantined as invalid_utf8 instead of aborting the whole file.
    return io.TextIOWrapper(
        io.BufferedReader(reader, 1 << 20), encoding="utf-8", errors="surrogateescape", newline=""
    )


def iter_csv(reader: HashingReader, name: str, cols: Cols) -> Iterator[Row]:
    text = _open_text(reader)
    rows = csv.reader(text)
    try:
        header = next(rows)
    except StopIteration:
        raise EmptyDatasetError(name, "0-byte file") from None
    except csv.Error as exc:
        raise DataFormatError(name, f"cannot parse the CSV header: {exc}", row=0) from None
    if header and header[0].startswith("\ufeff"):
        header[0] = header[0][1:]
    header = [h.strip() for h in header]
    if len(set(header)) != len(header):
        raise DataFormatError(name, f"duplicate column names in header {header}", row=0)
    for required in cols:
        if required not in header:
            raise MissingColumnError(name, required, header)
    i_id, i_text, i_label = (header.index(c) for c in cols)
    width = len(header)
    row_no = 0
    pending: Row | None = None
    try:
        for fields in rows:
            if not fields:
                continue  # a blank line is not a record
            row_no += 1
            if pending is not None:
                yield pending
            if len(fields) != width:
                rid = fields[i_id] if len(fields) > i_id else None
                pending = (
                    row_no,
                    rid,
                    None,
                    None,
                    ("malformed_record", None, ",".join(fields)),
                )
            else:
                pending = (row_no, fields[i_id], fields[i_text], fields[i_label], None)
    except csv.Error as exc:
        raise DataFormatError(name, f"CSV parse error: {exc}", row=row_no + 1) from None
    if pending is not None:
        if reader.last_byte not in (b"\n", b"\r"):
            yield (pending[0], pending[1], None, None, ("truncated_record", None, pending[2]))
        else:
            yield pending


def iter_jsonl(reader: HashingReader, name: str, cols: Cols) -> Iterator[Row]:
    buffered = io.BufferedReader(reader, 1 << 20)
    fields = cols
    id_col, text_col, label_col = cols
    row_no = 0
    loads = json.loads
    for line in buffered:
        if not line.strip():
            continue
        row_no += 1
        truncated = not line.endswith(b"\n")
        try:
            decoded = line.decode("utf-8")
            bad_utf8 = False
        except UnicodeDecodeError:
            decoded = line.decode("utf-8", "surrogateescape")
            bad_utf8 = True
        try:
            obj = loads(decoded)
        except json.JSONDecodeError:
            reason = "truncated_record" if truncated else "malformed_record"
            yield (row_no, None, None, None, (reason, None, line.rstrip(b"\r\n")))
            continue
        if not isinstance(obj, dict):
            yield (row_no, None, None, None, ("malformed_record", None, decoded.rstrip()))
            continue
        rid = obj.get(id_col)
        missing = [f for f in fields if f not in obj]
        if missing:
            yield (row_no, rid, None, None, ("missing_field", missing[0], decoded.rstrip()))
            continue
        if bad_utf8:
            # JSON only carries text, so the bad bytes sit in one of the string values.
            where = next(
                (f for f in fields if isinstance(obj[f], str) and is_bad_utf8(obj[f])), None
            )
            yield (row_no, rid, None, None, ("invalid_utf8", where, line.rstrip(b"\r\n")))
            continue
        yield (row_no, rid, obj[text_col], obj[label_col], None)


def iter_parquet(path: Path, name: str, cols: Cols) -> Iterator[Row]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.stat().st_size == 0:
        raise EmptyDatasetError(name, "0-byte file")
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataFormatError(name, f"not a readable Parquet file: {exc}") from None
    columns = pf.schema_arrow.names
    for required in cols:
        if required not in columns:
            raise MissingColumnError(name, required, columns)
    row_no = 0
    try:
        for batch in pf.iter_batches(batch_size=65_536, columns=list(cols)):
            ids, texts, labels = (batch.column(i).to_pylist() for i in range(3))
            for rid, text, label in zip(ids, texts, labels, strict=True):
                row_no += 1
                if isinstance(text, bytes):
                    try:
                        text = text.decode("utf-8")
                    except UnicodeDecodeError:
                        yield (row_no, rid, None, None, ("invalid_utf8", cols[1], text))
                        continue
                yield (row_no, rid, text, label, None)
    except (pa.ArrowException, OSError) as exc:
        raise DataFormatError(name, f"Parquet read error: {exc}", row=row_no + 1) from None
