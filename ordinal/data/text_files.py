"""Read a labelled text file (CSV or JSONL) straight into records, for quick runs.

``ordinal train --data`` and the export commands' ``--data`` take a file a user has at hand,
without registering it as a source. Its label values are matched with the data layer's label
rules (:mod:`ordinal.data.labels`): by name against a declared, ordered label set, or as
0-based positions when the declaration says ``index`` or no labels are given. Nothing is
guessed: a value outside the set is an error naming the file, the record and the value.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ordinal.data.columns import Columns
from ordinal.data.errors import DataFormatError
from ordinal.data.labels import LabelMatcher, LabelValues, check_label_declaration

__all__ = ["label_position", "read_text_records"]


def label_position(value: Any) -> int | None:
    """A 0-based label position read the data layer's ``index`` way, with no upper bound.

    The text ``"3"``, the number ``3`` or ``3.0`` is 3; anything else (a name, a negative or
    fractional number, a boolean) is None.

    >>> [label_position(v) for v in ("3", " 0 ", 2, 4.0, "1.0", -1, 2.5, True, "three")]
    [3, 0, 2, 4, None, None, None, None, None]
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        return int(text) if text.isascii() and text.isdigit() else None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    return None


def _rows(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".jsonl":
        rows = []
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate((x for x in handle if x.strip()), start=1):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataFormatError(str(path), f"invalid JSON: {exc}", row=number) from None
                if not isinstance(row, dict):
                    raise DataFormatError(str(path), "a record must be a JSON object", row=number)
                rows.append(row)
        return rows
    if path.suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as handle:
            return [
                {(k or "").strip(): v for k, v in row.items()} for row in csv.DictReader(handle)
            ]
    raise ValueError(f"{path}: expected a .csv or .jsonl file, got {path.suffix or 'no suffix'}")


def read_text_records(
    path: str | os.PathLike[str],
    *,
    labels: Sequence[str] | None = None,
    label_values: LabelValues = "name",
    num_classes: int | None = None,
    columns: Columns | Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Records ``{"id", "text", "label"}`` from a CSV or JSONL file; ``label`` is a position.

    Parameters
    ----------
    path : path
        A ``.csv`` (header row) or ``.jsonl`` file.
    labels : sequence of str, optional
        The ordered label set exactly as the data holds it, lowest first (``["1", ..., "10"]``,
        ``["low", "medium", "high"]``). Values are matched by name (or, with
        ``label_values="index"``, read as positions in it), with the rules of
        :class:`ordinal.data.LabelMatcher`: ``"10"`` is label ``"10"`` (position 9), never
        position 10.
    label_values : {"name", "index"}
        How values are read when ``labels`` is given.
    num_classes : int, optional
        Without ``labels``: the values are 0-based positions ``0..num_classes-1`` (labels
        ``"0"``..``"K-1"``, which read the same either way). Without either, any
        non-negative integer position is accepted.
    columns : Columns or mapping, optional
        Column names of the id, text and label (default ``id``, ``text``, ``label``). The id
        column is optional: records without it are numbered from 1.

    Returns
    -------
    list of dict
        ``{"id": str, "text": str, "label": int}`` in file order.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        An unsupported suffix, an ambiguous label declaration, a record without the text or
        label field, a label value outside the set (a :class:`DataFormatError` naming the
        file, record and field).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "stars.csv"
    >>> _ = f.write_text("id,text,label\\na,great,5\\nb,poor,1\\n")
    >>> [r["label"] for r in read_text_records(f, labels=["1", "2", "3", "4", "5"])]
    [4, 0]
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such data file: {path}")
    cols = columns if isinstance(columns, Columns) else Columns(**dict(columns or {}))
    id_col, text_col, label_col = cols.for_kind("text")
    matcher: LabelMatcher | None = None
    if labels is not None:
        try:
            matcher = LabelMatcher(
                check_label_declaration(list(labels), label_values), label_values
            )
        except ValueError as exc:
            raise ValueError(f"{path}: invalid label declaration: {exc}") from None
    elif num_classes is not None:
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        matcher = LabelMatcher(tuple(str(i) for i in range(num_classes)), "index")
    records = []
    for number, row in enumerate(_rows(path), start=1):
        missing = [c for c in (text_col, label_col) if c not in row]
        if missing:
            raise ValueError(f"{path}: record {number} lacks the field(s) {sorted(missing)}")
        value = row[label_col]
        if matcher is None:
            label = label_position(value)
            if label is None:
                raise DataFormatError(
                    str(path),
                    f"record {number} has a non-integer label {value!r}; without labels, "
                    "values are 0-based positions: pass the labels as the data holds them "
                    "(e.g. labels=['1', ..., '5']) to match them by name",
                    row=number,
                    field=label_col,
                )
        else:
            label = matcher.match(value)
            if label is None:
                how = "a 0-based position in" if matcher.label_values == "index" else "one of"
                raise DataFormatError(
                    str(path),
                    f"record {number} has the label {value!r}, which is not {how} the labels "
                    f"{list(matcher.labels)}",
                    row=number,
                    field=label_col,
                )
        rid = row.get(id_col)
        records.append(
            {
                "id": str(rid) if rid not in (None, "") else str(number),
                "text": row[text_col],
                "label": label,
            }
        )
    return records
