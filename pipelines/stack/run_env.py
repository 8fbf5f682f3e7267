"""What ``ordinal run --stack`` needs from the running stack: its clients' environment.

A run on the stack registers its flow and compute steps with the stack's Prefect server
(through the TLS proxy, with the stack's CA and API auth), tracks to the stack's MLflow server
(artefacts proxied into S3), and keeps datasets, models and reports in the stack's data bucket.
Nothing here starts a service: the stack must be up (``ordinal stack up``).
"""

from __future__ import annotations

from pipelines.stack import prefect_server, s3
from pipelines.stack.config import StackConfig
from pipelines.stack.errors import StackError

__all__ = ["EMULATED_CLOUD_ENV", "check_running", "run_environment"]

#: Set when the stack runs its own emulated endpoint (``moto_server``, which serves EC2 and
#: IAM beside S3): where ``--provisioner tofu`` applies its VMs on the stack.
EMULATED_CLOUD_ENV = "ORDINAL_STACK_EMULATED_CLOUD"

#: Services a run needs; the stack's long-lived workers are not needed (a run starts its own).
REQUIRED = ("postgres", "s3", "prefect", "mlflow", "proxy")


def check_running(config: StackConfig) -> None:
    """Raise :class:`StackError` naming every service a run needs that is not healthy."""
    from pipelines.stack.stack import status

    if not config.config_file.is_file():
        raise StackError(
            f"no stack at {config.root} (no stack.json): start one with `ordinal stack up`"
        )
    down = [f"{s.name} ({s.detail or 'not running'})" for s in status(config)
            if s.name in REQUIRED and not s.healthy]  # fmt: skip
    if down:
        raise StackError(
            f"the stack at {config.root} is not ready: {', '.join(down)}; "
            "check `ordinal stack status` or start it with `ordinal stack up`"
        )


def run_environment(config: StackConfig) -> dict[str, str]:
    """Environment variables that point a run (flow, kernels, its worker) at the stack.

    Secrets are read from the stack's secret files into the process environment only; they
    never become flow parameters, notebook parameters or logged values.
    """
    return {
        **prefect_server.client_env(config),
        "MLFLOW_TRACKING_URI": config.mlflow_url,
        "REQUESTS_CA_BUNDLE": str(config.ca_cert),
        **s3.client_env(config),
        "ORDINAL_S3_ENDPOINT_URL": config.s3_url,
        "ORDINAL_STORAGE_URL": s3.data_storage_url(),
        **({} if config.s3_endpoint else {EMULATED_CLOUD_ENV: config.s3_url}),
    }
