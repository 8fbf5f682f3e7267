"""Record-level rules shared by text and image preprocessing.

The spec (limits and thresholds), the reason codes, the per-record checks with the seen-id
and seen-content sets, the run report, and the writer of split and quarantine files.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ordinal.artifacts.layout import SPLITS
from ordinal.data.columns import Columns
from ordinal.data.errors import DataFormatError, EmptyDatasetError
from ordinal.data.labels import LabelMatcher, LabelValues, check_label_declaration
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
    "label_not_in_set": (
        "the label is not one of the declared labels (with label_values: index, not a "
        "position 0..K-1 in them)"
    ),
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

    Every field is also a flat option (:meth:`from_options`): what ``ordinal data
    preprocess`` takes on its command line and a pipeline passes through.

    Attributes
    ----------
    labels : tuple of str or None
        Ordered label set, values as they appear in the data; None takes the one declared in
        the registry (recorded at ingestion).
    label_values : {"name", "index"} or None
        How label values are read (:mod:`ordinal.data.labels`); None takes the registry's
        declaration (``name`` when there is none).
    columns : Columns or None
        Column names of the raw file. Each column given replaces that one of the registry's
        declaration (recorded at ingestion); the others stay as declared (``id``, ``text``,
        ``label``, and ``file`` for image folders, when nothing is declared).
    labels_file : str
        The labels file of an image folder.
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
    label_values: LabelValues | None = None
    columns: Columns | None = None
    labels_file: str = Field(default="labels.csv", min_length=1)
    min_text_chars: int = Field(default=1, ge=1)
    max_text_chars: int = Field(default=5000, ge=1)
    max_rejected_fraction: float = Field(default=0.05, ge=0.0, le=1.0)
    max_duplicate_fraction: float = Field(default=0.5, ge=0.0, le=1.0)
    dedupe: bool = True
    split: SplitSpec = Field(default_factory=SplitSpec)
    output_format: Literal["jsonl", "parquet"] = "jsonl"
    image_modes: tuple[str, ...] = Field(default=("RGB",), min_length=1)
    min_image_side: int = Field(default=8, ge=1)
    max_image_side: int = Field(default=4096, ge=1)

    @model_validator(mode="after")
    def _bounds(self) -> PreprocessSpec:
        if self.min_text_chars > self.max_text_chars:
            raise ValueError("min_text_chars must not exceed max_text_chars")
        if self.min_image_side > self.max_image_side:
            raise ValueError("min_image_side must not exceed max_image_side")
        if self.labels is not None:
            check_label_declaration(self.labels, self.label_values or "name")
        if self.columns is not None:
            self.columns.for_kind("text")
            self.columns.for_kind("image")
        return self

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None = None, **more: Any) -> PreprocessSpec:
        """Build a spec from flat options (see :data:`PREPROCESS_OPTIONS`).

        Unset options (absent, None or ``""``) keep their defaults; a column option replaces
        that column of the registry's declaration only.

        >>> split = {"train": 0.7, "validation": 0.2, "test": 0.1}
        >>> s = PreprocessSpec.from_options(split, label_column="stars", max_text_chars=300)
        >>> s.split.train, s.columns.label, s.columns.text, s.max_text_chars
        (0.7, 'stars', 'text', 300)

        Raises
        ------
        pydantic.ValidationError
            For an unknown option or an invalid value.
        """
        # None and "" both mean "not given" (papermill parameters default to "").
        flat = {k: v for k, v in {**(options or {}), **more}.items() if v is not None and v != ""}
        unknown = sorted(set(flat) - set(PREPROCESS_OPTIONS))
        if unknown:
            raise ValidationError.from_exception_data(
                cls.__name__,
                [
                    {"type": "extra_forbidden", "loc": (name,), "input": flat[name]}
                    for name in unknown
                ],
            )
        data: dict[str, Any] = {}
        columns = {c: flat.pop(f"{c}_column") for c in _COLUMNS if f"{c}_column" in flat}
        if columns:
            data["columns"] = columns
        split = {k: flat.pop(k) for k in ("train", "validation", "test") if k in flat}
        if "split_salt" in flat:
            split["salt"] = flat.pop("split_salt")
        if split:  # fractions not given keep their defaults; the three must still sum to 1
            data["split"] = {**SplitSpec().model_dump(), **split}
        for key in ("labels", "image_modes"):
            if isinstance(flat.get(key), str):
                flat[key] = parse_list(flat[key])
        data.update(flat)
        return cls.model_validate(data)

    def to_options(self) -> dict[str, Any]:
        """The flat options that rebuild this spec with :meth:`from_options`.

        >>> options = PreprocessSpec(max_text_chars=9).to_options()
        >>> PreprocessSpec.from_options(options) == PreprocessSpec(max_text_chars=9)
        True
        """
        out = self.model_dump(mode="json", exclude={"columns", "split"})
        if self.columns is not None:
            out.update({f"{c}_column": getattr(self.columns, c) for c in _COLUMNS})
        out.update(
            train=self.split.train,
            validation=self.split.validation,
            test=self.split.test,
            split_salt=self.split.salt,
        )
        return out


_COLUMNS = ("id", "text", "label", "file")
_RANGE = re.compile(r"(-?\d+)\.\.(-?\d+)")


def parse_list(text: str) -> list[str]:
    """A list option written as text: ``a,b,c``, a JSON list, or an integer range.

    >>> parse_list("low, medium,high"), parse_list("1..4"), parse_list('["a, b", "c"]')
    (['low', 'medium', 'high'], ['1', '2', '3', '4'], ['a, b', 'c'])

    Raises
    ------
    ValueError
        A ``[`` that does not start a JSON list.
    """
    text = text.strip()
    if text.startswith("["):
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not a JSON list: {exc}") from None
        if not isinstance(values, list):
            raise ValueError("expected a JSON list")
        return [v if isinstance(v, str) else json.dumps(v) for v in values]
    span = _RANGE.fullmatch(text)
    if span:
        return [str(i) for i in range(int(span.group(1)), int(span.group(2)) + 1)]
    return [v.strip() for v in text.split(",")]


PREPROCESS_OPTIONS: tuple[str, ...] = (
    "labels",
    "label_values",
    "id_column",
    "text_column",
    "label_column",
    "file_column",
    "labels_file",
    "min_text_chars",
    "max_text_chars",
    "max_rejected_fraction",
    "max_duplicate_fraction",
    "dedupe",
    "train",
    "validation",
    "test",
    "split_salt",
    "output_format",
    "image_modes",
    "min_image_side",
    "max_image_side",
)
"""Every preprocessing option by its flat name (:meth:`PreprocessSpec.from_options`)."""


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


@dataclass(frozen=True)
class Declaration:
    """What a run reads from the raw data: the label set, how values are read, the columns.

    Resolved from the spec first, then the source's declaration recorded at ingestion,
    then the defaults (:meth:`resolve`).
    """

    labels: tuple[str, ...]
    label_values: str = "name"
    columns: Columns = field(default_factory=Columns)

    @classmethod
    def resolve(
        cls,
        spec: PreprocessSpec,
        *,
        labels: Any = None,
        recorded: Mapping[str, Any] | None = None,
        name: str,
    ) -> Declaration:
        """Combine explicit ``labels``, the spec and the ``recorded`` raw-manifest parameters.

        Raises
        ------
        DataFormatError
            No label set anywhere, or the recorded declaration is malformed.
        """
        if recorded is not None and "label_values" not in recorded and not spec.label_values:
            # Ingested before sources declared label_values: its values were read as indices
            # or names by guesswork. Never guess again; the registry's declaration decides.
            source = recorded.get("source") or "<source>"
            raise DataFormatError(
                name,
                "the raw manifest records no label_values (ingested by an older version); "
                f"run `ordinal data ingest {source}` again to record the registry's "
                "declaration, or pass label_values ('name' or 'index') explicitly",
            )
        recorded = recorded or {}
        found = labels if labels is not None else spec.labels or recorded.get("labels")
        if not found:
            raise DataFormatError(name, "no label set: declare labels in the registry or spec")
        label_values = spec.label_values or recorded.get("label_values") or "name"
        columns = Columns()
        if recorded.get("columns"):
            try:
                columns = Columns.model_validate(recorded["columns"])
            except ValueError as exc:
                raise DataFormatError(name, f"invalid recorded columns: {exc}") from None
        if spec.columns is not None:
            # Each column the spec names replaces that one; the others stay as declared.
            given = {k: getattr(spec.columns, k) for k in spec.columns.model_fields_set}
            columns = Columns.model_validate({**columns.model_dump(), **given})
        return cls(tuple(found), str(label_values), columns)

    def columns_for(self, kind: Literal["text", "image"], name: str) -> tuple[str, str, str]:
        """The ``(id, content, label)`` columns, or :class:`DataFormatError` naming ``name``."""
        try:
            return self.columns.for_kind(kind)
        except ValueError as exc:
            raise DataFormatError(name, str(exc)) from None


def check_labels(labels: Any, label_values: str, name: str) -> LabelMatcher:
    """The matcher of a label declaration, or :class:`DataFormatError` naming ``name``."""
    try:
        return LabelMatcher(tuple(labels), label_values)  # type: ignore[arg-type]
    except (ValueError, TypeError) as exc:
        raise DataFormatError(name, f"invalid label declaration: {exc}") from None


class RecordValidator:
    """Record checks shared by text and images; keeps the seen-id and seen-content sets."""

    def __init__(
        self,
        spec: PreprocessSpec,
        matcher: LabelMatcher,
        columns: tuple[str, str, str],
        writer: OutputWriter,
        kind: str,
    ):
        self.spec = spec
        self.matcher = matcher
        self.labels = matcher.labels
        self.lookup = matcher.lookup
        self.id_col, self.content_col, self.label_col = columns
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
            self.reject(row, rid, "invalid_type", self.id_col, rid)
            return None
        rid = str(rid).strip()
        if not rid:
            self.reject(row, rid, "missing_id", self.id_col, rid)
            return None
        if is_bad_utf8(rid):
            self.reject(row, rid, "invalid_utf8", self.id_col, rid)
            return None
        if rid in self.seen_ids:
            self.reject(row, rid, "duplicate_id", self.id_col, rid)
            return None
        self.seen_ids.add(rid)
        return rid

    def check_label(self, row: int, rid: str, label: Any) -> int | None:
        """Return the label index, or None after quarantining the record."""
        key = label.strip() if isinstance(label, str) else label
        if key is None or key == "":
            self.reject(row, rid, "missing_label", self.label_col, label)
            return None
        idx = self.matcher.match(key)
        if idx is not None:
            return idx
        if isinstance(key, str) and is_bad_utf8(key):
            self.reject(row, rid, "invalid_utf8", self.label_col, label)
        else:
            self.reject(row, rid, "label_not_in_set", self.label_col, label)
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
