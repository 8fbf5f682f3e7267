"""The emulation at the boundary, without Terraform: fault injector, metadata, user-data.

moto_server runs on loopback (the emulated AWS endpoint); the injector and the metadata
stand-in are the loopback boundary emulations the provisioner and the training callback
talk to; the user-data runner stands in for a VM's boot.
"""

from __future__ import annotations

import json
import sys
import time

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from pipelines.provision.emulation import SPOT_ERRORS, FaultInjector, MetadataStandIn, MotoServer
from pipelines.provision.emulation.userdata import UserDataRunner


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    with MotoServer(tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield server


def _ec2(url):
    return boto3.client(
        "ec2",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
    )


_AMI: list[str] = []


def _ami(ec2):
    if not _AMI:
        images = ec2.describe_images(
            Owners=["amazon"], Filters=[{"Name": "name", "Values": ["ubuntu/*"]}]
        )["Images"]
        _AMI.append(sorted(i["ImageId"] for i in images)[0])
    return _AMI[0]


@pytest.mark.parametrize("code", sorted(SPOT_ERRORS))
def test_injector_fails_next_spot_requests_with_aws_errors(moto, code):
    with FaultInjector(moto.url) as injector:
        ec2 = _ec2(injector.url)
        ami = _ami(ec2)
        spot = {"MarketType": "spot", "SpotOptions": {"SpotInstanceType": "one-time"}}
        injector.arm(code, 1)
        # On-demand requests pass untouched even while armed.
        od = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="c6i.xlarge")
        with pytest.raises(ClientError) as caught:
            ec2.run_instances(
                ImageId=ami,
                MinCount=1,
                MaxCount=1,
                InstanceType="g4dn.xlarge",
                InstanceMarketOptions=spot,
            )
        assert caught.value.response["Error"]["Code"] == code
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == SPOT_ERRORS[code][0]
        # Only the next N: the following spot request reaches moto.
        ok = ec2.run_instances(
            ImageId=ami,
            MinCount=1,
            MaxCount=1,
            InstanceType="g4dn.xlarge",
            InstanceMarketOptions=spot,
        )
        ids = [od["Instances"][0]["InstanceId"], ok["Instances"][0]["InstanceId"]]
        ec2.terminate_instances(InstanceIds=ids)
        assert injector.injected == [
            {"code": code, "instance_type": "g4dn.xlarge", "status": SPOT_ERRORS[code][0]}
        ]
        status = httpx.get(f"{injector.url}/__faults__").json()
        assert status["armed"] == [] and status["spot_requests"] == 2


def test_injector_armed_over_http(moto):
    with FaultInjector(moto.url) as injector:
        reply = httpx.post(
            f"{injector.url}/__faults__", json={"code": "SpotMaxPriceTooLow", "count": 2}
        )
        assert reply.json()["armed"] == ["SpotMaxPriceTooLow"] * 2
        bad = httpx.post(f"{injector.url}/__faults__", json={"code": "NoSuchCode"})
        assert bad.status_code == 400 and "NoSuchCode" in bad.json()["error"]


def test_metadata_stand_in_contract():
    with MetadataStandIn("i-0abc", "spot") as imds:
        action = f"{imds.url}/latest/meta-data/spot/instance-action"
        assert httpx.get(action).status_code == 401  # IMDSv2: a token is required
        token = httpx.put(
            f"{imds.url}/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"}
        ).text
        headers = {"X-aws-ec2-metadata-token": token}
        assert httpx.get(action, headers=headers).status_code == 404
        assert (
            httpx.get(f"{imds.url}/latest/meta-data/instance-id", headers=headers).text == "i-0abc"
        )
        before = time.time()
        notice = httpx.post(f"{imds.url}/__interrupt__", json={"in_seconds": 120}).json()
        reply = httpx.get(action, headers=headers)
        assert reply.status_code == 200 and reply.json() == notice
        assert notice["action"] == "terminate"
        when = time.mktime(time.strptime(notice["time"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
        assert 110 <= when - before <= 130
        assert imds.polls == 2


def test_user_data_runner_ties_process_group_to_instance(tmp_path):
    runner = UserDataRunner(tmp_path)
    script = (
        "#!/bin/bash\n"
        f"'{sys.executable}' -c 'import time; time.sleep(600)' &\n"
        'echo "started $ORDINAL_INSTANCE_ID emulated=$ORDINAL_EMULATED_INSTANCE"\n'
        "sleep 600\n"
    )
    pid = runner.start("i-0123", script)
    assert runner.start("i-0123", script) == pid  # once per instance
    deadline = time.time() + 10
    while "started" not in (tmp_path / "i-0123" / "console.log").read_text():
        assert time.time() < deadline
        time.sleep(0.05)
    assert "started i-0123 emulated=1" in (tmp_path / "i-0123" / "console.log").read_text()
    assert runner.alive() == ["i-0123"]
    # A fresh runner (another process) finds the group from the files alone.
    assert UserDataRunner(tmp_path).terminate("i-0123") is True
    assert runner.alive() == []
    assert UserDataRunner(tmp_path).terminate("i-0123") is False


def test_user_data_runner_follows_ec2_states(moto, tmp_path):
    ec2 = _ec2(moto.url)
    script = "#!/bin/bash\nsleep 600\n"
    reply = ec2.run_instances(
        ImageId=_ami(ec2),
        MinCount=1,
        MaxCount=1,
        InstanceType="c6i.xlarge",
        UserData=script,
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "ordinal:run-id", "Value": "t-follow"}]}
        ],
    )
    instance_id = reply["Instances"][0]["InstanceId"]
    runner = UserDataRunner(tmp_path)
    assert instance_id in runner.reconcile(ec2)["started"]
    assert (tmp_path / instance_id / "user-data.sh").read_text() == script
    assert instance_id in runner.alive()
    ec2.terminate_instances(InstanceIds=[instance_id])
    assert runner.reconcile(ec2)["killed"] == [instance_id]
    assert runner.alive() == []
    json.dumps(runner.instances())


def test_injector_sdk_retries_of_one_request_get_the_same_error(moto):
    """A retry carries the same ClientToken: same error, no second fault consumed."""
    with FaultInjector(moto.url) as injector:
        ec2 = _ec2(injector.url)
        spot = {"MarketType": "spot", "SpotOptions": {"SpotInstanceType": "one-time"}}
        request = {
            "ImageId": _ami(ec2),
            "MinCount": 1,
            "MaxCount": 1,
            "InstanceType": "g6.xlarge",
            "InstanceMarketOptions": spot,
        }
        injector.arm("InsufficientInstanceCapacity", 1)
        for _ in range(2):
            with pytest.raises(ClientError, match="InsufficientInstanceCapacity"):
                ec2.run_instances(ClientToken="attempt-1", **request)
        assert injector.retries == 1 and len(injector.injected) == 1
        ok = ec2.run_instances(ClientToken="attempt-2", **request)
        ec2.terminate_instances(InstanceIds=[ok["Instances"][0]["InstanceId"]])
        assert injector.spot_requests == 2
