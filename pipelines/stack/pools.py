"""Work pools and queues from the declarative ``deploy/pools.yaml``, applied idempotently."""

from __future__ import annotations

import asyncio
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ordinal.paths import project_file
from pipelines.stack import prefect_server
from pipelines.stack.config import StackConfig

DEFAULT_POOLS_FILE = project_file("deploy", "pools.yaml")


class QueueSpec(BaseModel):
    """A work queue inside a pool."""

    model_config = ConfigDict(extra="forbid")

    name: str
    priority: int = Field(ge=1)
    concurrency_limit: int | None = Field(default=None, ge=0)
    description: str = ""


class PoolSpec(BaseModel):
    """A work pool, its queues, and how many long-lived workers serve it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    type: str = "process"
    description: str = ""
    concurrency_limit: int | None = Field(default=None, ge=0)
    labels: dict[str, str] = Field(default_factory=dict)
    workers: int = Field(default=1, ge=0)
    worker_limit: int = Field(default=1, ge=1)
    queues: list[QueueSpec]

    @model_validator(mode="after")
    def _unique_queues(self) -> PoolSpec:
        names = [q.name for q in self.queues]
        if len(names) != len(set(names)):
            raise ValueError(f"pool {self.name!r} lists a queue twice: {names}")
        return self


class PoolsFile(BaseModel):
    """The whole declarative file."""

    model_config = ConfigDict(extra="forbid")

    pools: list[PoolSpec]


def load_pools(path: Path | None = None) -> PoolsFile:
    """Parse and validate the pools file (default ``deploy/pools.yaml``)."""
    return PoolsFile.model_validate(yaml.safe_load((path or DEFAULT_POOLS_FILE).read_text()))


def pools_file(config: StackConfig) -> Path:
    """The pools file in use: ``<root>/pools.yaml`` if an operator put one there."""
    local = config.path("pools.yaml")
    return local if local.exists() else DEFAULT_POOLS_FILE


def _base_job_template(pool: PoolSpec) -> dict:
    from prefect.workers.process import ProcessWorker

    template = ProcessWorker.get_default_base_job_template()
    # Labels are Prefect job labels: every flow run of the pool carries them.
    template["variables"]["properties"]["labels"]["default"] = pool.labels
    return template


async def _apply(config: StackConfig, spec: PoolsFile) -> dict[str, list[str]]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import (
        WorkPoolCreate,
        WorkPoolUpdate,
        WorkQueueUpdate,
    )
    from prefect.exceptions import ObjectNotFound

    applied: dict[str, list[str]] = {}
    async with get_client() as client:
        for pool in spec.pools:
            template = _base_job_template(pool)
            try:
                await client.read_work_pool(pool.name)
                await client.update_work_pool(
                    pool.name,
                    WorkPoolUpdate(
                        description=pool.description,
                        concurrency_limit=pool.concurrency_limit,
                        base_job_template=template,
                    ),
                )
            except ObjectNotFound:
                await client.create_work_pool(
                    WorkPoolCreate(
                        name=pool.name,
                        type=pool.type,
                        description=pool.description,
                        concurrency_limit=pool.concurrency_limit,
                        base_job_template=template,
                    )
                )
            existing = {q.name: q for q in await client.read_work_queues(work_pool_name=pool.name)}
            for queue in pool.queues:
                if queue.name in existing:
                    await client.update_work_queue(
                        existing[queue.name].id,
                        **WorkQueueUpdate(
                            priority=queue.priority,
                            concurrency_limit=queue.concurrency_limit,
                            description=queue.description,
                        ).model_dump(exclude_unset=True),
                    )
                else:
                    await client.create_work_queue(
                        name=queue.name,
                        work_pool_name=pool.name,
                        priority=queue.priority,
                        concurrency_limit=queue.concurrency_limit,
                        description=queue.description,
                    )
            applied[pool.name] = [q.name for q in pool.queues]
    return applied


def apply_pools(config: StackConfig, path: Path | None = None) -> dict[str, list[str]]:
    """Create or update every pool and queue of the file; return pool -> queue names."""
    spec = load_pools(path or pools_file(config))
    with prefect_server.client_settings(config):
        return asyncio.run(_apply(config, spec))
