"""``ordinal infra`` commands (the typer app the lead mounts as ``ordinal infra``).

moto_server on loopback is the emulated AWS endpoint the commands talk to.
"""

from __future__ import annotations

import json

import boto3
import pytest
import yaml
from typer.testing import CliRunner

from pipelines.provision.checks import Suppression, load_suppressions
from pipelines.provision.cli import infra_app
from pipelines.provision.emulation import MotoServer
from pipelines.provision.errors import ToolError

runner = CliRunner()


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    with MotoServer(tmp_path_factory.mktemp("moto-cli") / "moto.log") as server:
        yield server


def test_leaks_exit_status_follows_what_is_alive(moto, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    ec2 = boto3.client("ec2", endpoint_url=moto.url, region_name="us-east-1")
    ami = sorted(
        i["ImageId"]
        for i in ec2.describe_images(Owners=["amazon"])["Images"]
        if "ubuntu" in i["Name"].lower()
    )[0]
    # Untagged or platform resources are not leaks.
    ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="c6i.xlarge")
    clean = runner.invoke(infra_app, ["leaks", "--endpoint", moto.url, "--json"])
    assert clean.exit_code == 0, clean.output
    assert json.loads(clean.output) == []

    tags = [
        {"Key": "ordinal:run-id", "Value": "r-leak"},
        {"Key": "ordinal:stage", "Value": "train"},
    ]
    leaked = ec2.run_instances(
        ImageId=ami,
        MinCount=1,
        MaxCount=1,
        InstanceType="g4dn.xlarge",
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )["Instances"][0]["InstanceId"]
    found = runner.invoke(infra_app, ["leaks", "--endpoint", moto.url, "--json"])
    assert found.exit_code == 1
    (leak,) = json.loads(found.output)
    assert leak["id"] == leaked and leak["run_id"] == "r-leak" and leak["stage"] == "train"
    table = runner.invoke(infra_app, ["leaks", "--endpoint", moto.url])
    assert table.exit_code == 1 and leaked in table.output

    ec2.terminate_instances(InstanceIds=[leaked])
    assert runner.invoke(infra_app, ["leaks", "--endpoint", moto.url]).exit_code == 0


def test_leaks_names_a_missing_stack_or_an_unreachable_endpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("ORDINAL_STACK_ROOT", str(tmp_path / "no-stack"))
    missing = runner.invoke(infra_app, ["leaks", "--stack"])
    assert missing.exit_code == 2, missing.output
    assert "no stack at" in missing.output and "ordinal stack up" in missing.output
    assert missing.exception is None or isinstance(missing.exception, SystemExit)

    from pipelines.provision.emulation.moto import free_port

    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    down = runner.invoke(infra_app, ["leaks", "--endpoint", endpoint])
    assert down.exit_code == 2, down.output
    assert f"could not list instances on {endpoint}" in " ".join(down.output.split())

    both = runner.invoke(infra_app, ["leaks", "--stack", "--endpoint", endpoint])
    assert both.exit_code == 2, both.output
    assert "--stack and --endpoint" in " ".join(both.output.split())


def test_prices_command_shows_date_and_source():
    result = runner.invoke(infra_app, ["prices"])
    assert result.exit_code == 0, result.output
    assert "g4dn.xlarge" in result.output and "source:" in result.output


def test_committed_suppressions_each_have_a_reason():
    entries = load_suppressions()
    assert entries and all(len(e.reason) >= 20 and e.resources for e in entries)
    entry = Suppression("CKV_AWS_126", ("module.vm.aws_instance.*",), "reason " * 5)
    assert entry.matches("CKV_AWS_126", "module.vm.aws_instance.this")
    assert not entry.matches("CKV_AWS_126", "aws_instance.host")
    assert not entry.matches("CKV_AWS_8", "module.vm.aws_instance.this")


def test_suppression_without_reason_is_refused(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"suppressions": [{"id": "CKV_AWS_18", "resources": ["x"]}]}))
    with pytest.raises(ToolError, match="reason"):
        load_suppressions(path)
