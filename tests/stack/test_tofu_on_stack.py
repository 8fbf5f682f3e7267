"""``ordinal run --stack --provisioner tofu``: the run's VMs on the stack's own cloud.

The stack's ``moto_server`` is the AWS endpoint (it serves EC2 and IAM beside the stack's S3):
the platform root is applied there (state ``platform/platform.tfstate``) and each VM's state
is a key of the run in the stack's ``ordinal-tfstate`` bucket, locked. Emulated at the
boundary, as in ``tests/pipelines/test_pipeline_tofu.py``: each instance's user-data (the
Prefect worker bootstrap) runs as a local process group tied to its instance id; here the
workers register with the stack's real Prefect server through its TLS proxy. The step
notebooks are stand-ins (``toy_notebooks``): the real ones run on the stack in
``test_pipeline_on_stack.py`` and on VMs in ``test_pipeline_tofu.py``; this test is about
where the VMs and their state go.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import boto3
import pytest

from pipelines.provision import VmRecord, assert_sequential
from pipelines.stack.config import StackConfig
from pipelines.stack.stack import status
from pipelines.steps import NOTEBOOK_DIR_ENV
from tests.pipelines.helpers import ORDINAL, ordinal_run, processes_inside, read_summary
from tests.pipelines.toy_notebooks import write_toy_notebooks

pytestmark = pytest.mark.slow

RUN_ID = "tofu-on-stack"


def _client(config: StackConfig, service: str):
    return boto3.client(
        service,
        endpoint_url=config.s3_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_tofu_run_on_the_stack_keeps_vms_and_state_on_the_stacks_endpoint(
    stack_config: StackConfig, tmp_path, monkeypatch
):
    """GPU VM for train, destroyed, then the CPU VM, both applied on the stack's endpoint;
    their state in the stack's state bucket under the run's keys; nothing left alive there;
    the stack's endpoint keeps running after the run."""
    notebooks = write_toy_notebooks(tmp_path / "notebooks")
    home = Path(os.environ["ORDINAL_HOME"])
    env = {
        "ORDINAL_HOME": str(home),
        "PREFECT_HOME": str(tmp_path / "prefect"),
        NOTEBOOK_DIR_ENV: str(notebooks),  # the VMs' workers inherit it
    }
    done = ordinal_run(
        "--stack", "--stack-root", str(stack_config.root), "--run-id", RUN_ID,
        "--provisioner", "tofu", "--model", "bert-tiny", "--max-steps", "5",
        "--set", "non_production=true", env=env, timeout=1700,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    run_dir = home / "runs" / RUN_ID
    summary = read_summary(run_dir)
    assert summary["status"] == "completed", summary["steps"]

    vms = [VmRecord(**v) for v in summary["vms"]]
    assert [(v.stage, v.instance_type) for v in vms] == [
        ("train", "g4dn.xlarge"),
        ("export", "c6i.xlarge"),
    ]
    assert_sequential(vms)
    where = {s["step"]: s["where"] for s in summary["steps"]}
    assert f"{stack_config.s3_url}, the stack's" in where["provision"], where

    # The platform and every VM's state are in the stack's state bucket, the VMs' under the
    # run's keys; no lock object is left.
    s3 = _client(stack_config, "s3")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="ordinal-tfstate")["Contents"]}
    assert {"platform/platform.tfstate", f"runs/{RUN_ID}/train.tfstate",
            f"runs/{RUN_ID}/export.tfstate"} <= keys, keys  # fmt: skip
    assert not [k for k in keys if k.endswith(".tflock")], keys
    train_state = json.loads(
        s3.get_object(Bucket="ordinal-tfstate", Key=f"runs/{RUN_ID}/train.tfstate")["Body"].read()
    )
    assert train_state["resources"] == []  # destroyed

    # The instances were the stack endpoint's, and every one of the run's is terminated.
    reservations = _client(stack_config, "ec2").describe_instances(
        Filters=[{"Name": "tag:ordinal:run-id", "Values": [RUN_ID]}]
    )["Reservations"]
    states = {i["InstanceId"]: i["State"]["Name"] for r in reservations for i in r["Instances"]}
    assert set(states) == {v.instance_id for v in vms}
    assert set(states.values()) == {"terminated"}, states

    # The run attached to the stack's endpoint: the run folder records it, not an embedded
    # server of its own, and the stack's S3 is still up after the run's teardown.
    platform = json.loads((run_dir / "provision" / "platform.json").read_text())
    assert platform["attached"] == stack_config.s3_url and "embedded" not in platform
    assert {s.name: s.healthy for s in status(stack_config)}["s3"]
    leaks = subprocess.run(
        [str(ORDINAL), "infra", "leaks", "--stack",
         "--instance-dir", str(run_dir / "provision" / "cloud" / "instances")],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "ORDINAL_STACK_ROOT": str(stack_config.root)},
    )  # fmt: skip
    assert leaks.returncode == 0, leaks.stdout + leaks.stderr
    assert processes_inside(run_dir) == []
