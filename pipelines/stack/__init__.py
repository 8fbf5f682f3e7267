"""Control-plane stack: PostgreSQL, Prefect server, MLflow server, S3 store and a TLS proxy.

Everything runs on loopback with state under one directory (``StackConfig.root``). The
command-line entry point is :data:`pipelines.stack.cli.stack_app`.
"""

from __future__ import annotations

from pipelines.stack.config import StackConfig, load_config
from pipelines.stack.errors import StackError

__all__ = ["StackConfig", "StackError", "load_config"]
