"""The platform file a tofu run reads: missing fields and real credentials are refused."""

from __future__ import annotations

import json

import pytest

from pipelines.errors import PipelineError
from pipelines.provision.vms import load_platform

BASE = {
    "region": "us-east-1",
    "vpc_id": "vpc-1",
    "subnets": [["subnet-a", "us-east-1a"]],
    "instance_profiles": {"train": "ordinal-train"},
    "ami_id": "ami-1",
    "state_bucket": "ordinal-tfstate",
}


def _write(tmp_path, **values):
    path = tmp_path / "platform.json"
    path.write_text(json.dumps({**BASE, **values}), encoding="utf-8")
    return path


def test_an_emulated_platform_may_carry_the_emulators_keys(tmp_path):
    keys = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    platform = load_platform(_write(tmp_path, env="emulated", credentials=keys))
    assert platform.credentials == keys and platform.subnets == [("subnet-a", "us-east-1a")]


def test_real_credentials_never_travel_with_the_platform(tmp_path):
    """The platform is copied into the run folder and every VM's state file."""
    path = _write(tmp_path, env="aws", credentials={"AWS_SECRET_ACCESS_KEY": "x"})
    with pytest.raises(PipelineError, match="only for an emulated endpoint"):
        load_platform(path)
    assert load_platform(_write(tmp_path, env="aws")).credentials == {}


def test_a_missing_field_is_named(tmp_path):
    path = tmp_path / "platform.json"
    path.write_text(json.dumps({k: v for k, v in BASE.items() if k != "ami_id"}))
    with pytest.raises(PipelineError, match="lacks ami_id, env"):
        load_platform(path)
