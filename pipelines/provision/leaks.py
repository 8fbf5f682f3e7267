"""What the project left alive: anything tagged for a run, and emulated instance processes.

A leak is a resource carrying the ``ordinal:run-id`` tag (only per-run resources carry it;
the platform's buckets, network and roles are meant to live) that is still alive:
an instance not ``terminated``, a security group, an EBS volume, an open or active spot
request; and, on the emulator, an instance process group still running.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["RUN_TAG", "find_leaks"]

RUN_TAG = "ordinal:run-id"
_FILTER = [{"Name": "tag-key", "Values": [RUN_TAG]}]


def _tag(tags: list[dict[str, str]] | None, key: str) -> str | None:
    return next((t["Value"] for t in tags or [] if t["Key"] == key), None)


def find_leaks(ec2: Any, instance_dir: Path | None = None) -> list[dict[str, Any]]:
    """Every live per-run resource; empty when nothing leaked.

    Parameters
    ----------
    ec2 : botocore client
        EC2 client for the region (emulated or real).
    instance_dir : Path or None
        The user-data runner's folder (emulator only).
    """
    leaks: list[dict[str, Any]] = []
    for page in ec2.get_paginator("describe_instances").paginate(Filters=_FILTER):
        for reservation in page["Reservations"]:
            for inst in reservation["Instances"]:
                state = inst["State"]["Name"]
                if state != "terminated":
                    leaks.append(
                        {
                            "kind": "instance",
                            "id": inst["InstanceId"],
                            "state": state,
                            "run_id": _tag(inst.get("Tags"), RUN_TAG),
                            "stage": _tag(inst.get("Tags"), "ordinal:stage"),
                            "type": inst.get("InstanceType"),
                        }
                    )
    for group in ec2.describe_security_groups(Filters=_FILTER)["SecurityGroups"]:
        leaks.append(
            {
                "kind": "security-group",
                "id": group["GroupId"],
                "run_id": _tag(group.get("Tags"), RUN_TAG),
            }
        )
    for volume in ec2.describe_volumes(Filters=_FILTER)["Volumes"]:
        if volume["State"] not in ("deleted", "deleting"):
            leaks.append(
                {
                    "kind": "volume",
                    "id": volume["VolumeId"],
                    "state": volume["State"],
                    "run_id": _tag(volume.get("Tags"), RUN_TAG),
                }
            )
    requests = ec2.describe_spot_instance_requests(Filters=_FILTER)["SpotInstanceRequests"]
    for request in requests:
        if request["State"] in ("open", "active"):
            leaks.append(
                {
                    "kind": "spot-request",
                    "id": request["SpotInstanceRequestId"],
                    "state": request["State"],
                    "run_id": _tag(request.get("Tags"), RUN_TAG),
                }
            )
    if instance_dir is not None and Path(instance_dir).is_dir():
        from pipelines.provision.emulation.userdata import UserDataRunner

        for instance_id in UserDataRunner(Path(instance_dir)).alive():
            leaks.append({"kind": "instance-process-group", "id": instance_id})
    return leaks
