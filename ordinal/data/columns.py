"""Which columns of a raw file hold the id, the content and the label.

A source declares them in the registry (``columns: {id: review_id, text: body, label:
stars}``; an image folder's ``labels.csv`` has ``file`` instead of ``text``). Preprocessing
reads those columns and always writes the canonical ones (``id``, ``text`` or ``file``,
``label``), so everything downstream of ``datasets/processed/`` is unchanged.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Columns"]

_NAME = r"^\S(.*\S)?$"  # not empty, no surrounding whitespace (header cells are stripped)


class Columns(BaseModel):
    """Column names of a raw file (defaults: ``id``, ``text``, ``label``, ``file``).

    Attributes
    ----------
    id : str
        The record id (unique per record).
    text : str
        The text (CSV, JSONL, Parquet sources).
    label : str
        The label value (matched to the declared labels; see :mod:`ordinal.data.labels`).
    file : str
        The image's path relative to the folder, in an image folder's labels file.

    >>> Columns(text="body").for_kind("text")
    ('id', 'body', 'label')
    >>> Columns().for_kind("image")
    ('id', 'file', 'label')
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(default="id", pattern=_NAME)
    text: str = Field(default="text", pattern=_NAME)
    label: str = Field(default="label", pattern=_NAME)
    file: str = Field(default="file", pattern=_NAME)

    def for_kind(self, kind: Literal["text", "image"]) -> tuple[str, str, str]:
        """The ``(id, content, label)`` columns read for a text or an image source.

        Raises
        ------
        ValueError
            If two of them are the same column.
        """
        content = self.file if kind == "image" else self.text
        names = (self.id, content, self.label)
        if len(set(names)) != 3:
            what = "id, file and label" if kind == "image" else "id, text and label"
            raise ValueError(f"the {what} columns must differ, got {list(names)}")
        return names
