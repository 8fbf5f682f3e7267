"""The spot fallback policy's error classification and next placement (pure functions)."""

from __future__ import annotations

import pytest

from pipelines.provision.fallback import ErrorClass, Placement, classify, next_placement
from pipelines.provision.runner import parse_provider_errors

SUBNETS = [("us-east-1a", "subnet-a"), ("us-east-1b", "subnet-b")]


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("InsufficientInstanceCapacity", ErrorClass.CAPACITY),
        ("InsufficientCapacity", ErrorClass.CAPACITY),
        ("UnfulfillableCapacity", ErrorClass.CAPACITY),
        ("InsufficientHostCapacity", ErrorClass.CAPACITY),
        ("MaxSpotInstanceCountExceeded", ErrorClass.SPOT_QUOTA),
        ("SpotMaxPriceTooLow", ErrorClass.SPOT_QUOTA),
        ("InvalidAMIID.NotFound", ErrorClass.FATAL),
        ("InvalidAMIID.Malformed", ErrorClass.FATAL),
        ("InvalidParameterValue", ErrorClass.FATAL),
        ("InvalidParameterCombination", ErrorClass.FATAL),
        ("InvalidSubnetID.NotFound", ErrorClass.FATAL),
        ("UnauthorizedOperation", ErrorClass.FATAL),
        ("AccessDenied", ErrorClass.FATAL),
        ("SomethingNobodyHasSeen", ErrorClass.FATAL),
    ],
)
def test_classification_table(code, expected):
    assert classify(code) is expected


@pytest.mark.parametrize(
    ("current", "code", "tried", "expected"),
    [
        # capacity on spot: another zone first, then on-demand
        (
            Placement("spot", *SUBNETS[0]),
            "InsufficientInstanceCapacity",
            {"us-east-1a"},
            Placement("spot", *SUBNETS[1]),
        ),
        (
            Placement("spot", *SUBNETS[1]),
            "UnfulfillableCapacity",
            {"us-east-1a", "us-east-1b"},
            Placement("on-demand", *SUBNETS[1]),
        ),
        # spot quota or price: no point in another zone
        (
            Placement("spot", *SUBNETS[0]),
            "MaxSpotInstanceCountExceeded",
            {"us-east-1a"},
            Placement("on-demand", *SUBNETS[0]),
        ),
        (
            Placement("spot", *SUBNETS[0]),
            "SpotMaxPriceTooLow",
            {"us-east-1a"},
            Placement("on-demand", *SUBNETS[0]),
        ),
        # on-demand capacity: another zone, still on-demand
        (
            Placement("on-demand", *SUBNETS[0]),
            "InsufficientInstanceCapacity",
            set(),
            Placement("on-demand", *SUBNETS[1]),
        ),
        # fatal errors: no next attempt
        (Placement("spot", *SUBNETS[0]), "InvalidAMIID.NotFound", {"us-east-1a"}, None),
        (Placement("on-demand", *SUBNETS[0]), "UnauthorizedOperation", set(), None),
    ],
)
def test_next_placement(current, code, tried, expected):
    assert next_placement(current, code, SUBNETS, tried) == expected


def test_provider_errors_parsed_from_terraform_output():
    output = (
        "Error: creating EC2 Instance: operation error EC2: RunInstances, https response "
        "error StatusCode: 500, RequestID: 1, api error InsufficientInstanceCapacity: We "
        "currently do not have sufficient g4dn.xlarge capacity.\n\n"
        "  with module.vm.aws_instance.this\n"
    )
    (error,) = parse_provider_errors(output)
    assert error.code == "InsufficientInstanceCapacity"
    assert error.message.startswith("We currently do not have sufficient g4dn.xlarge")
    assert parse_provider_errors("Error: Invalid value for variable") == []
