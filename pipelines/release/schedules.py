"""Deploy the scheduled release flows (nightly parity, quarterly resilience) to Prefect."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["RELEASE_SCHEDULES", "deploy_release_schedules"]

SOURCE_DIR = Path(__file__).resolve().parent
# (flow function, deployment name, cron)
RELEASE_SCHEDULES = (
    ("nightly_parity", "nightly", "0 2 * * *"),
    ("quarterly_resilience", "quarterly", "0 5 1 1,4,7,10 *"),
)
FLOW_NAMES = {
    "nightly_parity": "release-nightly-parity",
    "quarterly_resilience": "release-resilience",
}
#: Deployments earlier versions scheduled and these replace (removed on deploy, else an
#: upgraded stack would run the rollback drill twice a quarter).
RETIRED_DEPLOYMENTS = ("release-rollback-drill/quarterly",)


@contextlib.contextmanager
def _api(config: Any) -> Iterator[None]:
    if config is None:
        yield
        return
    from pipelines.stack import prefect_server

    with prefect_server.client_settings(config):
        yield


def deploy_release_schedules(
    storage: str,
    *,
    report_dir: str,
    config: Any = None,
    work_pool: str = "control",
    work_queue: str = "default",
    wheel_cache: str = "",
) -> list[str]:
    """Deploy both release flows with their schedules (idempotent); return their names.

    Parameters
    ----------
    storage : str
        The storage root holding the registry (the stack's bucket).
    report_dir : str
        Where each run writes its JSON and HTML report (linked from the stack's pages).
    config : StackConfig, optional
        The stack to deploy to (its API, its S3 credentials, the release keys it trusts in
        ``<root>/release/trusted/*.pub``, and its alert channels); None uses the current
        Prefect settings and environment and sends no alerts.
    wheel_cache : str, optional
        Where the dependency-upgrade rehearsal keeps downloaded wheels.
    """
    from prefect import flow as prefect_flow

    names = []
    stack_root = str(config.root) if config is not None else ""
    with _api(config):
        for function, name, cron in RELEASE_SCHEDULES:
            remote = prefect_flow.from_source(
                source=str(SOURCE_DIR), entrypoint=f"flows.py:{function}"
            )
            remote.deploy(
                name=name,
                work_pool_name=work_pool,
                work_queue_name=work_queue,
                cron=cron,
                parameters={
                    "storage": storage,
                    "report_dir": report_dir,
                    "stack_root": stack_root,
                    **({"wheel_cache": wheel_cache} if function == "quarterly_resilience" else {}),
                },
                tags=["release"],
                print_next_steps=False,
                ignore_warnings=True,
            )
            names.append(f"{FLOW_NAMES[function]}/{name}")
        _remove_retired()
    return names


def _remove_retired() -> None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        for full_name in RETIRED_DEPLOYMENTS:
            try:
                client.delete_deployment(client.read_deployment_by_name(full_name).id)
            except ObjectNotFound:
                continue
