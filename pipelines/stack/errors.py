"""Typed errors of the control-plane stack; each carries the context an operator needs."""

from __future__ import annotations


class StackError(RuntimeError):
    """Base class: something in the stack failed; ``context`` says where."""

    def __init__(self, message: str, **context: object) -> None:
        self.context = context
        detail = ", ".join(f"{key}={value}" for key, value in context.items())
        super().__init__(f"{message} ({detail})" if detail else message)


class ServiceStartError(StackError):
    """A service did not become healthy in time; the log path is in the context."""


class PermissionLayoutError(StackError):
    """The state directory is not reachable by the user a service runs as."""


class BackupError(StackError):
    """A backup could not be taken, uploaded or listed."""


class BackupTamperedError(BackupError):
    """A backup failed authentication: it was modified or encrypted with another key."""


class RestoreVerificationError(StackError):
    """A restored database differs from its source (row counts or checksums)."""


class RotationError(StackError):
    """A secret rotation failed; the old secret is kept (rolled back)."""


class BlockValidationError(StackError):
    """A block's value failed validation against its schema or its live endpoint."""


class LeakError(StackError):
    """A smoke run left a flow run unfinished or a provisioned resource behind."""
