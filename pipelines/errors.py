"""Typed errors of the pipeline layer; each carries what an operator needs to act."""

from __future__ import annotations

import errno
from pathlib import Path

from ordinal.exceptions import OrdinalError

__all__ = [
    "MissingOutputsError",
    "NotebookStepError",
    "PipelineError",
    "StepParametersError",
    "is_disk_full",
]


class PipelineError(OrdinalError):
    """Base class of the pipeline's errors."""


class StepParametersError(PipelineError, ValueError):
    """Parameters that do not fit a step's (or the flow's) parameter model.

    Raised before any kernel starts; ``problems`` lists ``(field, message)`` pairs.
    """

    def __init__(self, what: str, problems: list[tuple[str, str]]) -> None:
        self.what = what
        self.problems = problems
        lines = "\n".join(f"  - {field}: {message}" for field, message in problems)
        super().__init__(f"invalid parameters for {what}:\n{lines}")

    @classmethod
    def from_validation(cls, what: str, exc: object) -> StepParametersError:
        """Build from a pydantic ``ValidationError`` (one line per field problem)."""
        problems = []
        for error in exc.errors():  # type: ignore[attr-defined]
            field = ".".join(str(p) for p in error["loc"]) or "(model)"
            message = error["msg"]
            if error.get("type") != "missing" and "input" in error:
                message += f" (got {error['input']!r})"
            problems.append((field, message))
        return cls(what, problems)

    def __reduce__(self):  # picklable across Prefect's process boundaries
        return (type(self), (self.what, self.problems))


class NotebookStepError(PipelineError):
    """A step's notebook failed; the executed notebook and its HTML are kept.

    Attributes
    ----------
    step : str
    cell_index : int or None
        Index of the failing cell in the executed notebook (None when the kernel died).
    ename, evalue : str
        The exception's name and message inside the kernel.
    notebook, html : Path
        The executed notebook and its rendering, error included.
    """

    def __init__(
        self,
        step: str,
        cell_index: int | None,
        ename: str,
        evalue: str,
        notebook: Path,
        html: Path | None,
    ) -> None:
        self.step = step
        self.cell_index = cell_index
        self.ename = ename
        self.evalue = evalue
        self.notebook = Path(notebook)
        self.html = Path(html) if html is not None else None
        where = f"cell {cell_index}" if cell_index is not None else "the kernel"
        super().__init__(
            f"step {step!r} failed in {where}: {ename}: {evalue} (rendered: {html or notebook})"
        )

    def __reduce__(self):
        return (
            type(self),
            (self.step, self.cell_index, self.ename, self.evalue, self.notebook, self.html),
        )


class MissingOutputsError(PipelineError):
    """A step's notebook ran but did not leave the outputs its step declares."""

    def __init__(
        self,
        step: str,
        missing: list[Path],
        notebook: Path | None = None,
        html: Path | None = None,
    ) -> None:
        self.step = step
        self.missing = [Path(p) for p in missing]
        self.notebook = Path(notebook) if notebook is not None else None
        self.html = Path(html) if html is not None else None
        names = ", ".join(str(p) for p in self.missing)
        super().__init__(f"step {step!r} finished without its declared outputs: {names}")

    def __reduce__(self):
        return (type(self), (self.step, self.missing, self.notebook, self.html))


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what caused it, also inside a notebook's kernel) is a full disk.

    A full disk is not a transient error: retrying writes to the same full disk again, so
    the pipeline's retries stop at it, and ``ordinal run`` says how to resume.

    >>> is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    True
    >>> is_disk_full(RuntimeError("cell failed: OSError: [Errno 28] No space left on device"))
    True
    >>> is_disk_full(TimeoutError("read timed out"))
    False
    """
    seen = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno == errno.ENOSPC:
            return True
        if "No space left on device" in str(seen):  # a kernel's error, as text
            return True
        seen = seen.__cause__ or seen.__context__
    return False
