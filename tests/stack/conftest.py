"""Fixtures for the control-plane tests: one real stack per test session, always torn down.

The stack starts once (session scope) because it costs ~1 minute on a loaded 2-core
machine; tests that must disturb it (PostgreSQL restart, restore drill) restore what they
change. The finaliser stops everything and fails the session if a process is left.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.stack import procs, stack
from pipelines.stack.config import StackConfig, load_config


def _make_root(prefix: str) -> Path:
    # Not pytest's tmp_path: /tmp/pytest-of-root is 0700 and the postgres user must
    # traverse to its data directory.
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    root.chmod(0o711)
    return root


def _teardown(config: StackConfig) -> tuple[list[str], list[int]]:
    """``ordinal stack down`` through the CLI, then a last sweep for stray processes."""
    from typer.testing import CliRunner

    from pipelines.stack.cli import stack_app

    stopped: list[str] = []
    try:
        result = CliRunner().invoke(stack_app, ["down", "--root", str(config.root)])
        assert result.exit_code == 0, result.output
        stopped = result.output.split(":", 1)[1].replace("\n", " ").split(",")
    finally:
        leftovers = procs.kill_leftovers(config)
    return [name.strip() for name in stopped], leftovers


@pytest.fixture(scope="session")
def stack_config() -> Iterator[StackConfig]:
    """A running stack (all services, pools, workers) under a temporary root."""
    base = _make_root("ordinal-stack-test-")
    config = load_config(base / "stack")
    try:
        stack.up(config)
        yield config
    finally:
        stopped, leftovers = _teardown(config)
        shutil.rmtree(base, ignore_errors=True)
        assert not leftovers, f"processes left after down: {leftovers}"
        # Workers go first, so no flow run loses its API mid-run; then every service.
        assert [n.startswith("worker-") for n in stopped[:2]] == [True, True], stopped
        assert set(stack.SERVICES) <= set(stopped), stopped


@pytest.fixture
def scratch_root() -> Iterator[Path]:
    """An empty stack root for tests that need their own state; processes are checked."""
    base = _make_root("ordinal-stack-scratch-")
    try:
        yield base / "stack"
    finally:
        config = load_config(base / "stack")
        leftovers = procs.kill_leftovers(config)
        shutil.rmtree(base, ignore_errors=True)
        assert not leftovers, f"processes left: {leftovers}"


@pytest.fixture
def alerting(stack_config: StackConfig):
    """The session stack's config with alerts routed to local webhook and SMTP receivers."""
    from .receivers import SMTPReceiver, WebhookReceiver

    with WebhookReceiver() as webhook, SMTPReceiver() as smtp:
        config = stack_config.model_copy(
            update={
                "alert_webhook_url": webhook.url,
                "smtp_host": "127.0.0.1",
                "smtp_port": smtp.port,
                "alert_email_to": "oncall@example.invalid",
            }
        )
        yield config, webhook, smtp
