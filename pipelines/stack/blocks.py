"""Prefect block schemas per environment (secrets, bucket endpoints, Terraform variables).

``deploy/blocks.yaml`` declares, per environment, which secrets, buckets and Terraform
variables exist; :func:`populate` reads the values from an approved source, validates them
(bucket endpoints for real, with a ``HeadBucket``), saves the blocks, and alerts on failure.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from ordinal.paths import project_file
from pipelines.stack import alerts, prefect_server, s3
from pipelines.stack.config import StackConfig
from pipelines.stack.credentials import get_secret
from pipelines.stack.errors import BlockValidationError
from pipelines.stack.sources import SecretSource

DEFAULT_BLOCKS_FILE = project_file("deploy", "blocks.yaml")


class BucketSpec(BaseModel):
    """A bucket an environment uses; credentials come from the stack or the source."""

    model_config = ConfigDict(extra="forbid")

    bucket: str
    credentials: str = Field(default="source", pattern="^(stack|source)$")
    endpoint: str | None = None


class TerraformSpec(BaseModel):
    """Plain Terraform variables and the names of the sensitive ones (from the source)."""

    model_config = ConfigDict(extra="forbid")

    variables: dict[str, Any] = Field(default_factory=dict)
    sensitive: list[str] = Field(default_factory=list)


class EnvironmentSpec(BaseModel):
    """Everything one environment's blocks hold."""

    model_config = ConfigDict(extra="forbid")

    secrets: list[str] = Field(default_factory=list)
    bucket_endpoints: dict[str, BucketSpec] = Field(default_factory=dict)
    terraform: TerraformSpec = Field(default_factory=TerraformSpec)


class BlocksFile(BaseModel):
    """The declarative blocks file."""

    model_config = ConfigDict(extra="forbid")

    environments: dict[str, EnvironmentSpec]


def load_blocks(path: Path | None = None) -> BlocksFile:
    """Parse and validate ``deploy/blocks.yaml`` (or ``path``)."""
    return BlocksFile.model_validate(yaml.safe_load((path or DEFAULT_BLOCKS_FILE).read_text()))


@functools.cache
def _block_classes():
    # Defined lazily: importing prefect costs seconds and the CLI's other commands skip it.
    from prefect.blocks.core import Block
    from prefect.blocks.fields import SecretDict

    class BucketEndpoint(Block):
        """An S3-compatible bucket and the credentials to reach it."""

        _block_type_name = "Ordinal Bucket Endpoint"
        _block_type_slug = "ordinal-bucket-endpoint"

        endpoint_url: str
        bucket: str
        region: str = "us-east-1"
        access_key_id: SecretStr
        secret_access_key: SecretStr

    class TerraformVariables(Block):
        """Variables for the OpenTofu/Terraform modules of one environment."""

        _block_type_name = "Ordinal Terraform Variables"
        _block_type_slug = "ordinal-terraform-variables"

        variables: dict[str, Any]
        sensitive: SecretDict

    return BucketEndpoint, TerraformVariables


def block_name(environment: str, name: str) -> str:
    """Block names carry their environment: ``dev-mlflow-db-password``."""
    return f"{environment}-{name}"


def check_bucket(endpoint: str, bucket: str, key_id: str, secret: str) -> None:
    """Validate a bucket endpoint for real: ``HeadBucket`` with the given credentials."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        region_name=s3.REGION,
        config=Config(connect_timeout=5, retries={"max_attempts": 1}),
    )
    try:
        client.head_bucket(Bucket=bucket)
    except (ClientError, BotoCoreError) as exc:
        raise BlockValidationError(
            "bucket endpoint failed validation", bucket=bucket, error=type(exc).__name__
        ) from None


def populate(
    config: StackConfig,
    environment: str,
    source: SecretSource,
    blocks_file: Path | None = None,
) -> list[str]:
    """Create or update every block of ``environment``; return the block names saved.

    Raises
    ------
    BlockValidationError
        After alerting, when a secret is missing or a bucket endpoint fails its check.
        Nothing is saved unless everything validates.
    """
    spec = load_blocks(blocks_file).environments.get(environment)
    if spec is None:
        raise BlockValidationError("environment not declared", environment=environment)
    try:
        secrets = {name: source.get(environment, name) for name in spec.secrets}
        sensitive = {name: source.get(environment, name) for name in spec.terraform.sensitive}
        buckets = {}
        for name, bucket in spec.bucket_endpoints.items():
            if bucket.credentials == "stack":
                key_id = get_secret(config, "s3_access_key")
                secret = get_secret(config, "s3_secret_key")
            else:
                key_id = source.get(environment, f"{name}-access-key-id")
                secret = source.get(environment, f"{name}-secret-access-key")
            endpoint = bucket.endpoint or config.s3_url
            check_bucket(endpoint, bucket.bucket, key_id, secret)
            buckets[name] = (endpoint, bucket.bucket, key_id, secret)
    except BlockValidationError as exc:
        alerts.send_alert(
            config,
            alerts.Alert(
                kind="block-validation",
                summary=f"block validation failed for environment {environment}",
                context={k: str(v) for k, v in exc.context.items()}
                | {"source": source.description},
            ),
        )
        raise
    from prefect.blocks.system import Secret

    BucketEndpoint, TerraformVariables = _block_classes()
    saved = []
    with prefect_server.client_settings(config):
        for name, value in secrets.items():
            Secret(value=value).save(block_name(environment, name), overwrite=True)
            saved.append(f"secret/{block_name(environment, name)}")
        for name, (endpoint, bucket, key_id, secret) in buckets.items():
            BucketEndpoint(
                endpoint_url=endpoint,
                bucket=bucket,
                access_key_id=key_id,
                secret_access_key=secret,
            ).save(block_name(environment, name), overwrite=True)
            saved.append(f"ordinal-bucket-endpoint/{block_name(environment, name)}")
        TerraformVariables(variables=spec.terraform.variables, sensitive=sensitive).save(
            block_name(environment, "terraform"), overwrite=True
        )
        saved.append(f"ordinal-terraform-variables/{block_name(environment, 'terraform')}")
    return saved
