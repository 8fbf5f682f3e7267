"""Record-level rules shared by text and image preprocessing.

The spec (limits and thresholds), the reason codes, the per-record checks with the seen-id
and seen-content sets, the run report, and the writer of split and quarantine files.
"""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ordinal.artifacts.layout import SPLITS
from ordinal.data.errors import DataFormatError, EmptyDatasetError
from ordinal.data.splits import SplitSpec, assign_split

REASON_CODES: dict[str, str] = {
    "malformed_record": "the row cannot be parsed (wrong field count, invalid JSON, not an object)",
    "truncated_record": "the last record of a file that does not end with a newline",
    "missing_field": "a JSONL record without a required key",
    "invalid_utf8": "a field holds bytes that are not valid UTF-8",
    "missing_id": "the id is empty",
    "duplicate_id": "the id was already seen earlier in the file (the first one is kept)",
    "empty_text": "the text is empty or only whitespace",
    "text_too_short": "the text has fewer characters than min_text_chars",
    "text_too_long": "the text has more characters than max_text_chars",
    "invalid_type": "a field has the wrong type (e.g. a number where text is expected)",
    "missing_label": "the label is empty",
    "label_not_in_set": "the label is not an index into (or a name of) the declared label set",
    "missing_file": "the image file named in labels.csv is not in the raw dataset",
    "undecodable_image": "the image bytes cannot be decoded",
    "image_mode_not_allowed": "the image mode (e.g. 'L', 'RGBA') is not in image_modes",
    "image_too_small": "an image side is below min_image_side",
    "image_too_large": "an image side is above max_image_side",
    "duplicate_content": "same normalised content as an earlier record (the first one is kept)",
}

_VALUE_LIMIT = 200  # characters of an offending value kept in the quarantine file
PROGRESS_EVERY = 20_000

Progress = Callable[[str, int, int], None]


class PreprocessSpec(BaseModel):
    """Parameters of preprocessing; thresholds and limits are data here, never literals.

    Attributes
    ----------
    labels : tuple of str or None
        Ordered label set; None takes the one recorded at ingestion.
    id_field, text_field, label_field, file_field : str
        Column names.
    min_text_chars, max_text_chars : int
        Text length limits in characters (code points).
    max_rejected_fraction : float
        Fail when invalid records / raw records exceeds this (default 5%).
    max_duplicate_fraction : float
        Fail when duplicate-content records / raw records exceeds this. Kept apart from
        ``max_rejected_fraction`` because duplicates are expected in real text (short
        reviews such as "Great!"); they are still quarantined and counted as rejected.
    dedupe : bool
        Drop records whose normalised content (NFKC, case-folded, whitespace collapsed;
        decoded pixels for images) was already seen.
    split : SplitSpec
        Split fractions and hash salt.
    output_format : {"jsonl", "parquet"}
        Format of the split files (text); images always get a JSONL index.
    image_modes : tuple of str
        Allowed PIL modes.
    min_image_side, max_image_side : int
        Bounds on width and height in pixels.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    labels: tuple[str, ...] | None = None
    id_field: str = "id"
    text_field: str = "text"
    label_field: str = "label"
    file_field: str = "file"
    labels_file: str = "labels.csv"
    min_text_chars: int = Field(default=1, ge=1)
    max_text_chars: int = Field(default=5000, ge=1)
    max_rejected_fraction: float = Field(default=0.05, ge=0.0, le=1.0)
    max_duplicate_fraction: float = Field(default=0.5, ge=0.0, le=1.0)
    dedupe: bool = True
    split: SplitSpec = Field(default_factory=SplitSpec)
    output_format: Literal["jsonl", "parquet"] = "jsonl"
    image_modes: tuple[str, ...] = ("RGB",)
    min_image_side: int = Field(default=8, ge=1)
    max_image_side: int = Field(default=4096, ge=1)

    @field_validator("labels")
    @classmethod
    def _labels_ok(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and (len(value) < 2 or len(set(value)) != len(value)):
            raise ValueError("labels must hold at least two distinct names")
        return value

    @model_validator(mode="after")
    def _bounds(self) -> PreprocessSpec:
        if self.min_text_chars > self.max_text_chars:
            raise ValueError("min_text_chars must not exceed max_text_chars")
        if self.min_image_side > self.max_image_side:
            raise ValueError("min_image_side must not exceed max_image_side")
        if len({self.id_field, self.text_field, self.label_field}) != 3:
            raise ValueError("id_field, text_field and label_field must differ")
        return self


@dataclass
class PreprocessReport:
    """Counts of one preprocessing run (``raw == accepted + rejected``).

    ``rejected`` includes ``duplicates``; ``invalid = rejected - duplicates``.
    """

    kind: str
    raw: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    split_counts: Counter[str] = field(default_factory=Counter)
    label_counts: dict[str, Counter[str]] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def invalid(self) -> int:
        """Rejected records other than duplicates."""
        return self.rejected - self.duplicates

    def record_counts(self) -> dict[str, int]:
        """Counts for the manifest."""
        out = {
            "raw": self.raw,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "rejected_invalid": self.invalid,
            "rejected_duplicate": self.duplicates,
        }
        out.update({s: self.split_counts.get(s, 0) for s in SPLITS})
        return out

    def to_dict(self, spec: PreprocessSpec, labels: tuple[str, ...]) -> dict[str, Any]:
        """The full report (written to ``reports/preprocess_report.json``)."""
        return {
            "kind": self.kind,
            "record_counts": self.record_counts(),
            "rejected_by_reason": dict(sorted(self.reasons.items())),
            "invalid_fraction": self.invalid / self.raw if self.raw else 0.0,
            "duplicate_fraction": self.duplicates / self.raw if self.raw else 0.0,
            "max_rejected_fraction": spec.max_rejected_fraction,
            "max_duplicate_fraction": spec.max_duplicate_fraction,
            "examples": self.examples,
            "label_distribution": self.label_distribution(labels),
        }

    def label_distribution(self, labels: tuple[str, ...]) -> dict[str, Any]:
        """Accepted records per label, overall and per split, in label order."""
        overall = Counter()
        for counts in self.label_counts.values():
            overall.update(counts)
        total = sum(overall.values())
        return {
            "labels": list(labels),
            "overall": {name: overall.get(name, 0) for name in labels},
            "overall_fraction": {
                name: (overall.get(name, 0) / total if total else 0.0) for name in labels
            },
            "splits": {
                s: {name: self.label_counts.get(s, Counter()).get(name, 0) for name in labels}
                for s in SPLITS
            },
        }


# --------------------------------------------------------------------------- helpers


def _show(value: Any) -> Any:
    """Make an offending value printable in JSON (bad UTF-8 shown as ``\\xNN``), truncated."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "backslashreplace")
    elif isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    elif value is None or isinstance(value, bool | int | float):
        return value
    else:
        value = repr(value)
    return value if len(value) <= _VALUE_LIMIT else value[:_VALUE_LIMIT] + "..."


def is_bad_utf8(value: str) -> bool:
    if value.isascii():
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def normalise_text(text: str) -> str:
    """Return the de-duplication key text: NFKC, case-folded, whitespace collapsed.

    >>> normalise_text("  Great\\u00a0PRODUCT!\\n")
    'great product!'
    """
    # ASCII is its own NFKC form and casefolds to lower(); the shortcut halves the cost.
    folded = text.lower() if text.isascii() else unicodedata.normalize("NFKC", text).casefold()
    return " ".join(folded.split())


def _label_lookup(labels: tuple[str, ...]) -> dict[Any, int]:
    lookup: dict[Any, int] = {}
    names_are_numbers = any(name.strip().lstrip("-").isdigit() for name in labels)
    if not names_are_numbers:
        # Names are accepted as values only when they cannot be confused with indices.
        lookup.update({name: i for i, name in enumerate(labels)})
    for i in range(len(labels)):
        lookup[i] = i
        lookup[str(i)] = i
    return lookup


class OutputWriter:
    """Per-split output files and the quarantine file, written in a fixed format."""

    def __init__(self, out: Path, output_format: str, kind: str) -> None:
        self.out = out
        self.format = output_format if kind == "text" else "jsonl"
        self.kind = kind
        self._files: dict[str, IO[str]] = {}
        self._rows: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
        self._pq: dict[str, Any] = {}
        for s in SPLITS:
            (out / s).mkdir(parents=True, exist_ok=True)
            if self.format == "jsonl":
                self._files[s] = (out / s / "records.jsonl").open(
                    "w", encoding="utf-8", newline="\n", buffering=1 << 20
                )
        (out / "quarantine").mkdir(parents=True, exist_ok=True)
        self.quarantine = (out / "quarantine" / "rejected.jsonl").open(
            "w", encoding="utf-8", newline="\n", buffering=1 << 20
        )

    def write(self, split: str, record: dict[str, Any]) -> None:
        if self.format == "jsonl":
            self._files[split].write(
                json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
            )
        else:
            rows = self._rows[split]
            rows.append(record)
            if len(rows) >= 65_536:
                self._flush_parquet(split)

    def _flush_parquet(self, split: str) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema([("id", pa.string()), ("text", pa.string()), ("label", pa.int64())])
        rows = self._rows[split]
        table = pa.Table.from_pylist(rows, schema=schema)
        writer = self._pq.get(split)
        if writer is None:
            # Fixed options so the same rows give the same bytes (no timestamps in Parquet).
            writer = pq.ParquetWriter(
                self.out / split / "records.parquet",
                schema,
                compression="zstd",
                compression_level=3,
                use_dictionary=False,
                write_statistics=True,
                version="2.6",
            )
            self._pq[split] = writer
        writer.write_table(table, row_group_size=65_536)
        rows.clear()

    def reject(self, row: int, rid: Any, reason: str, fld: str | None, value: Any, **extra: Any):
        entry = {
            "row": row,
            "id": _show(rid),
            "reason": reason,
            "field": fld,
            "value": _show(value),
        }
        entry.update(extra)
        self.quarantine.write(json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n")
        return entry

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        if self.format == "parquet":
            for s in SPLITS:
                if self._rows[s] or s not in self._pq:
                    self._flush_parquet(s)
                self._pq[s].close()
        self.quarantine.close()


def check_labels(labels: tuple[str, ...], name: str) -> tuple[str, ...]:
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise DataFormatError(
            name, f"an ordered set of at least two distinct labels is needed, got {list(labels)}"
        )
    return labels


class RecordValidator:
    """Record checks shared by text and images; keeps the seen-id and seen-content sets."""

    def __init__(
        self, spec: PreprocessSpec, labels: tuple[str, ...], writer: OutputWriter, kind: str
    ):
        self.spec = spec
        self.labels = labels
        self.lookup = _label_lookup(labels)
        self.writer = writer
        self.report = PreprocessReport(kind=kind)
        self.report.label_counts = {s: Counter() for s in SPLITS}
        self.seen_ids: set[str] = set()
        self.seen_content: dict[bytes, str] = {}

    def reject(self, row: int, rid: Any, reason: str, fld: str | None, value: Any, **extra):
        rep = self.report
        rep.raw += 1
        rep.rejected += 1
        rep.reasons[reason] += 1
        if reason == "duplicate_content":
            rep.duplicates += 1
        entry = self.writer.reject(row, rid, reason, fld, value, **extra)
        if len(rep.examples) < 20:
            rep.examples.append(entry)

    def check_id(self, row: int, rid: Any) -> str | None:
        """Return the id as text, or None after quarantining the record."""
        if isinstance(rid, bool) or not isinstance(rid, str | int):
            self.reject(row, rid, "invalid_type", self.spec.id_field, rid)
            return None
        rid = str(rid).strip()
        if not rid:
            self.reject(row, rid, "missing_id", self.spec.id_field, rid)
            return None
        if is_bad_utf8(rid):
            self.reject(row, rid, "invalid_utf8", self.spec.id_field, rid)
            return None
        if rid in self.seen_ids:
            self.reject(row, rid, "duplicate_id", self.spec.id_field, rid)
            return None
        self.seen_ids.add(rid)
        return rid

    def check_label(self, row: int, rid: str, label: Any) -> int | None:
        """Return the label index, or None after quarantining the record."""
        key = label.strip() if isinstance(label, str) else label
        if key is None or key == "":
            self.reject(row, rid, "missing_label", self.spec.label_field, label)
            return None
        if isinstance(key, bool):
            self.reject(row, rid, "label_not_in_set", self.spec.label_field, label)
            return None
        try:
            return self.lookup[key]
        except (KeyError, TypeError):
            if isinstance(key, str) and is_bad_utf8(key):
                self.reject(row, rid, "invalid_utf8", self.spec.label_field, label)
            else:
                self.reject(row, rid, "label_not_in_set", self.spec.label_field, label)
            return None

    def check_duplicate(self, row: int, rid: str, key: bytes) -> bool:
        """Return True (after quarantining) if the content key was already seen."""
        if not self.spec.dedupe:
            return False
        first = self.seen_content.get(key)
        if first is not None:
            self.reject(row, rid, "duplicate_content", None, None, duplicate_of=first)
            return True
        self.seen_content[key] = rid
        return False

    def accept(self, rid: str, label: int, record: dict[str, Any]) -> str:
        rep = self.report
        rep.raw += 1
        rep.accepted += 1
        split = assign_split(rid, self.spec.split)
        rep.split_counts[split] += 1
        rep.label_counts[split][self.labels[label]] += 1
        self.writer.write(split, record)
        return split


def finish(v: RecordValidator, name: str) -> PreprocessReport:
    rep = v.report
    if rep.raw == 0:
        raise EmptyDatasetError(name, "no records (header only or empty)")
    assert rep.raw == rep.accepted + rep.rejected
    return rep
