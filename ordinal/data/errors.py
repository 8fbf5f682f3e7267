"""Typed errors of the data layer: sources, ingestion, preprocessing and calibration.

Every error carries what a user needs to fix the input: the source, file, row and field
involved and, for checksum problems, both sums.
"""

from __future__ import annotations

from typing import Any

from ordinal.artifacts.errors import ChecksumMismatchError, ImmutableArtifactError
from ordinal.exceptions import OrdinalError


class DataError(OrdinalError):
    """Base class of data-layer errors."""


class RegistryError(DataError, ValueError):
    """An approved-source registry file that is missing or malformed.

    Attributes
    ----------
    path : str or None
        The registry file.
    entries : list of str
        The refused entries (``source 'name' (entry N)``), when entries are at fault.
    """

    def __init__(
        self, message: str, *, path: str | None = None, entries: list[str] | None = None
    ) -> None:
        self.path = path
        self.entries = list(entries or [])
        super().__init__(f"{message} ({path})" if path else message)


class SourceExistsError(RegistryError):
    """``add-source`` refused: the registry already has that name (or dataset version)."""

    def __init__(self, source: str, path: str, what: str) -> None:
        self.source = source
        super().__init__(
            f"{what} is already in the registry; pick another name (or version)",
            path=path,
            entries=[f"source {source!r}"],
        )


class SourceNotApprovedError(DataError, PermissionError):
    """A source name (or URI) that is not in the approved-source registry."""

    def __init__(self, source: str, approved: list[str], registry: str | None = None) -> None:
        self.source = source
        self.approved = sorted(approved)
        self.registry = registry
        where = f" in {registry}" if registry else ""
        super().__init__(
            f"source {source!r} is not an approved source{where}; approved: "
            + (", ".join(self.approved) or "<none>")
        )


class SourceChecksumError(ChecksumMismatchError, DataError):
    """Fetched source bytes whose sha256 is not the one the registry expects."""

    def __init__(self, source: str, uri: str, expected: str, actual: str) -> None:
        self.source = source
        self.uri = uri
        super().__init__(f"source {source!r} ({uri})", expected, actual)


class SourceFetchError(DataError, OSError):
    """A source that could not be read (missing file, HTTP error, S3 error)."""

    def __init__(self, source: str, uri: str, reason: str) -> None:
        self.source = source
        self.uri = uri
        self.reason = reason
        super().__init__(f"cannot fetch source {source!r} from {uri}: {reason}")


class RawDataConflictError(ImmutableArtifactError, DataError):
    """Different bytes for a dataset version that was already ingested (raw is write-once)."""

    def __init__(self, dataset: str, version: str, existing: str, new: str) -> None:
        self.dataset = dataset
        self.version = version
        super().__init__(
            f"raw dataset {dataset}/{version}",
            existing,
            new,
            detail="raw data is write-once: register the new bytes as a new version",
        )


class EmptyDatasetError(DataError, ValueError):
    """A 0-byte file, a file with a header and no rows, or a folder with no records."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"empty dataset {path}: {reason}")


class DataFormatError(DataError, ValueError):
    """A file that cannot be parsed as a whole (corrupt Parquet, missing column, bad header).

    Attributes
    ----------
    path : str
        The file.
    row : int or None
        1-based record number where parsing stopped, if known.
    field : str or None
        The column involved, if any.
    """

    def __init__(
        self, path: str, message: str, *, row: int | None = None, field: str | None = None
    ) -> None:
        self.path = path
        self.row = row
        self.field = field
        where = "".join(
            [f", row {row}" if row is not None else "", f", field {field!r}" if field else ""]
        )
        super().__init__(f"{path}{where}: {message}")


class MissingColumnError(DataFormatError):
    """A required column that the file does not have."""

    def __init__(self, path: str, field: str, available: list[str]) -> None:
        self.available = list(available)
        super().__init__(
            path, f"missing required column; columns found: {self.available}", field=field
        )


class RejectionThresholdError(DataError):
    """Preprocessing stopped because too many records were rejected.

    Attributes
    ----------
    report : dict
        Counts by reason code, the threshold, the fraction found and example rejects.
    quarantine_key : str or None
        Where the quarantined records were written for inspection.
    """

    def __init__(self, report: dict[str, Any], quarantine_key: str | None = None) -> None:
        self.report = report
        self.quarantine_key = quarantine_key
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(report["reasons"].items()))
        super().__init__(
            f"{report['kind']} fraction {report['fraction']:.2%} exceeds the threshold "
            f"{report['threshold']:.2%} ({report['count']} of {report['raw']} records; "
            f"{reasons}); rejected records written to {quarantine_key}"
            + (f". Hint: {report['hint']}" if report.get("hint") else "")
        )


class CalibrationError(DataError, ValueError):
    """A calibration request that cannot be met (too few records, selection mismatch)."""


class SelectionMissingError(CalibrationError):
    """No committed calibration selection for a dataset version (a check cannot be skipped).

    Attributes
    ----------
    dataset, version : str
        The dataset version.
    path : str
        Where the committed selection was looked for.
    next_step : str
        The command that proposes a selection for review.
    legacy : str or None
        A selection in the old one-file-per-dataset layout, if one is there.
    """

    def __init__(
        self,
        dataset: str,
        version: str,
        path: str,
        *,
        next_step: str,
        legacy: str | None = None,
    ) -> None:
        self.dataset = dataset
        self.version = version
        self.path = path
        self.next_step = next_step
        self.legacy = legacy
        old = (
            f" ({legacy} is a selection in the old per-dataset layout: if it is this "
            f"version's, move it to {path})"
            if legacy
            else ""
        )
        super().__init__(
            f"no committed calibration selection for {dataset}/{version}: {path} does not "
            f"exist{old}. Next step: draw one for review with `{next_step}` (library: "
            f"calibrate(..., propose=True)), review the file it writes and commit it as {path}"
        )


class SelectionMismatchError(CalibrationError):
    """A drawn (or stored) calibration selection that differs from the committed one.

    Attributes
    ----------
    dataset, version : str
        The dataset version.
    path : str or None
        The committed selection file.
    diff : ordinal.data.selection.SelectionDiff
        What differs: counts, ids added and removed, spec fields, other fields, strata.
    next_step : str
        The command that proposes the drawn selection for review.
    """

    def __init__(
        self,
        dataset: str,
        version: str,
        path: str | None,
        diff: Any,
        *,
        next_step: str,
        what: str = "drawn",
    ) -> None:
        self.dataset = dataset
        self.version = version
        self.path = path
        self.diff = diff
        self.next_step = next_step
        where = f" ({path})" if path else ""
        lines = "\n".join(diff.lines(what))
        super().__init__(
            f"the {what} calibration selection of {dataset}/{version} differs from the "
            f"committed one{where}:\n{lines}\nIf the new selection is intended, propose it "
            f"for review: `{next_step}` (library: calibrate(..., propose=True))"
        )
