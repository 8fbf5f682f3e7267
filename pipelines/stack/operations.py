"""Deploy the scheduled operations flows (backups, drills, renewal, rotation) to ``control``."""

from __future__ import annotations

from pathlib import Path

from pipelines.stack import prefect_server
from pipelines.stack.backup import BACKUP_CRON
from pipelines.stack.config import StackConfig

SOURCE_DIR = Path(__file__).resolve().parent / "flows"
# (flow function, deployment name, cron or None for on-demand only)
OPERATIONS = (
    ("stack_backup", "hourly", BACKUP_CRON),
    ("stack_restore_drill", "weekly", "30 4 * * 1"),
    ("stack_renew_certs", "twice-daily", "0 3,15 * * *"),
    ("stack_rotate_db_password", "on-demand", None),
)
FLOW_NAMES = {
    "stack_backup": "stack-backup",
    "stack_restore_drill": "stack-restore-drill",
    "stack_renew_certs": "stack-renew-certs",
    "stack_rotate_db_password": "stack-rotate-db-password",
}


def deploy_operations(config: StackConfig) -> list[str]:
    """Deploy every operations flow to the control pool's ``critical`` queue (idempotent)."""
    from prefect import flow as prefect_flow

    names = []
    with prefect_server.client_settings(config):
        for function, name, cron in OPERATIONS:
            remote = prefect_flow.from_source(
                source=str(SOURCE_DIR), entrypoint=f"stack_flows.py:{function}"
            )
            remote.deploy(
                name=name,
                work_pool_name="control",
                work_queue_name="critical",
                cron=cron,
                parameters={"root": str(config.root)},
                tags=["operations"],
                print_next_steps=False,
                ignore_warnings=True,
            )
            names.append(f"{FLOW_NAMES[function]}/{name}")
    return names
