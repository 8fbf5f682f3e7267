"""Allow/deny tables per stage, evaluated against the stages' policy documents.

The evaluator covers what our policies use: Allow/Deny statements with ``Action`` and
``Resource`` lists (``*`` and ``?`` wildcards in resources) and ``StringEquals`` /
``StringLike`` / ``StringNotEquals`` conditions. An explicit Deny wins, then an Allow, else
the implicit deny (IAM's order). The bucket policy's own guardrails (COMPLIANCE lock on
raw data and releases) are on top of this and are not evaluated here.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ROLES",
    "TABLE",
    "Case",
    "check_tables",
    "decide",
    "merge_policies",
    "role_policies",
    "wildcard_actions",
]


@dataclass(frozen=True)
class Case:
    """One row: can ``stage`` do ``action`` on ``key`` (``None``: the bucket itself)?"""

    stage: str
    action: str
    key: str | None
    expected: bool
    context: tuple[tuple[str, str], ...] = ()


ROLES = ("ingest", "preprocess", "train", "export", "quantise", "release", "backup", "cpu")


def merge_policies(*documents: dict[str, Any] | str) -> dict[str, Any]:
    """One document with every statement of ``documents`` (a role's inline policies)."""
    statements: list[Any] = []
    for doc in documents:
        parsed = json.loads(doc) if isinstance(doc, str) else doc
        statements.extend(_listify(parsed["Statement"]))
    return {"Version": "2012-10-17", "Statement": statements}


def _lock(mode: str = "COMPLIANCE") -> tuple[tuple[str, str], ...]:
    return (("s3:object-lock-mode", mode),)


# The roadmap's examples and the reason for each prefix; the context is what the request
# carries (an ingest/release write names its COMPLIANCE lock).
TABLE: list[Case] = [
    Case("ingest", "s3:PutObject", "datasets/raw/reviews/v1/data.csv", True, _lock()),
    Case("ingest", "s3:PutObject", "datasets/raw/reviews/v1/data.csv", False, _lock("GOVERNANCE")),
    Case("ingest", "s3:PutObject", "datasets/processed/reviews/v1/x.parquet", False),
    Case("ingest", "s3:DeleteObject", "datasets/raw/reviews/v1/data.csv", False),
    Case("preprocess", "s3:GetObject", "datasets/raw/reviews/v1/data.csv", True),
    Case("preprocess", "s3:PutObject", "datasets/processed/reviews/v1/x.parquet", True),
    Case("preprocess", "s3:PutObject", "datasets/raw/reviews/v1/data.csv", False, _lock()),
    Case("train", "s3:GetObject", "datasets/processed/reviews/v1/x.parquet", True),
    Case("train", "s3:PutObject", "datasets/raw/reviews/v1/data.csv", False, _lock()),
    Case("train", "s3:PutObject", "models/checkpoints/exp1/step-100/model.safetensors", True),
    Case("train", "s3:DeleteObject", "models/checkpoints/exp1/step-100/model.safetensors", True),
    Case("train", "s3:PutObject", "models/onnx/exp1/fp32/model.onnx", False),
    Case("train", "s3:PutObject", "releases/reviews/1.0.0/bundle.json", False, _lock()),
    Case("train", "s3:GetObject", "backups/prefect/2026.dump.enc", False),
    Case("export", "s3:GetObject", "models/trained/exp1/model.safetensors", True),
    Case("export", "s3:PutObject", "models/onnx/exp1/fp32/model.onnx", True),
    Case("export", "s3:PutObject", "models/onnx/exp1/int8/model.onnx", False),
    Case("export", "s3:DeleteObject", "models/onnx/exp1/fp32/model.onnx", False),
    Case("export", "s3:DeleteObject", "models/trained/exp1/model.safetensors", False),
    Case("export", "s3:PutObject", "releases/reviews/1.0.0/bundle.json", False, _lock()),
    Case("quantise", "s3:GetObject", "models/onnx/exp1/fp32/model.onnx", True),
    Case("quantise", "s3:PutObject", "models/onnx/exp1/int8/model.onnx", True),
    Case("quantise", "s3:PutObject", "models/onnx/exp1/fp32/model.onnx", False),
    Case("quantise", "s3:PutObject", "releases/reviews/1.0.0/bundle.json", False, _lock()),
    Case("release", "s3:GetObject", "models/onnx/exp1/int8/model.onnx", True),
    Case("release", "s3:PutObject", "releases/reviews/1.0.0/bundle.json", True, _lock()),
    Case("release", "s3:PutObject", "releases/reviews/1.0.0/bundle.json", False),
    Case("release", "s3:DeleteObject", "releases/reviews/1.0.0/bundle.json", False),
    Case("release", "s3:PutObject", "models/onnx/exp1/int8/model.onnx", False),
    Case("backup", "s3:PutObject", "backups/prefect/2026.dump.enc", True),
    Case("backup", "s3:DeleteObject", "backups/prefect/2026.dump.enc", True),
    Case("backup", "s3:GetObject", "datasets/raw/reviews/v1/data.csv", False),
    # The CPU VM's role (export, parity and quantise in a row) is the union of two stages.
    Case("cpu", "s3:PutObject", "models/onnx/exp1/fp32/model.onnx", True),
    Case("cpu", "s3:PutObject", "models/onnx/exp1/int8/model.onnx", True),
    Case("cpu", "s3:GetObject", "models/trained/exp1/model.safetensors", True),
    Case("cpu", "s3:DeleteObject", "models/onnx/exp1/fp32/model.onnx", False),
    Case("cpu", "s3:PutObject", "models/trained/exp1/model.safetensors", False),
    Case("cpu", "s3:PutObject", "releases/reviews/1.0.0/bundle.json", False, _lock()),
    Case("cpu", "s3:PutObject", "datasets/raw/reviews/v1/data.csv", False, _lock()),
    *[
        Case(stage, "s3:BypassGovernanceRetention", "models/onnx/exp1/fp32/model.onnx", False)
        for stage in ROLES
    ],
    *[
        Case(stage, "s3:DeleteObjectVersion", "datasets/raw/reviews/v1/data.csv", False)
        for stage in ROLES
    ],
]


def _listify(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _condition_ok(condition: dict[str, Any] | None, context: dict[str, str]) -> bool:
    for operator, tests in (condition or {}).items():
        for key, expected in tests.items():
            values = [str(v) for v in _listify(expected)]
            actual = context.get(key)
            if operator == "StringEquals":
                ok = actual is not None and actual in values
            elif operator == "StringLike":
                ok = actual is not None and any(fnmatch.fnmatchcase(actual, v) for v in values)
            elif operator == "StringNotEquals":
                ok = actual is None or actual not in values
            else:
                raise ValueError(f"condition operator {operator!r} is not supported here")
            if not ok:
                return False
    return True


def _matches(
    statement: dict[str, Any], action: str, resource: str, context: dict[str, str]
) -> bool:
    actions = _listify(statement.get("Action", []))
    if not any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in actions):
        return False
    resources = _listify(statement.get("Resource", []))
    if not any(fnmatch.fnmatchcase(resource, r) for r in resources):
        return False
    return _condition_ok(statement.get("Condition"), context)


def decide(
    policy: dict[str, Any] | str,
    action: str,
    resource: str,
    context: dict[str, str] | None = None,
) -> bool:
    """Whether ``policy`` allows ``action`` on ``resource`` (explicit deny wins)."""
    doc = json.loads(policy) if isinstance(policy, str) else policy
    context = context or {}
    allowed = False
    for statement in _listify(doc["Statement"]):
        if _matches(statement, action, resource, context):
            if statement["Effect"] == "Deny":
                return False
            allowed = True
    return allowed


def wildcard_actions(policies: dict[str, Any]) -> list[tuple[str, str]]:
    """``(stage, action)`` for every action containing ``*`` (must be empty)."""
    found = []
    for stage, policy in policies.items():
        doc = json.loads(policy) if isinstance(policy, str) else policy
        for statement in _listify(doc["Statement"]):
            for action in _listify(statement.get("Action", [])):
                if "*" in action or "?" in action:
                    found.append((stage, action))
    return found


def check_tables(
    policies: dict[str, Any], bucket: str, table: list[Case] | None = None
) -> list[dict[str, Any]]:
    """Evaluate every row; return one dict per row with ``ok`` (expected == actual)."""
    rows = []
    for case in table or TABLE:
        resource = f"arn:aws:s3:::{bucket}" + ("" if case.key is None else f"/{case.key}")
        actual = decide(policies[case.stage], case.action, resource, dict(case.context))
        rows.append(
            {
                "stage": case.stage,
                "action": case.action,
                "key": case.key,
                "context": dict(case.context),
                "expected": "allow" if case.expected else "deny",
                "actual": "allow" if actual else "deny",
                "ok": actual == case.expected,
            }
        )
    return rows


def role_policies(iam: Any, role_names: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Every role's inline policies, merged per role, read back from IAM.

    ``role_names`` maps a table key (stage or ``cpu``) to the role's name.
    """
    out = {}
    for key, role in role_names.items():
        names = iam.list_role_policies(RoleName=role)["PolicyNames"]
        docs = [iam.get_role_policy(RoleName=role, PolicyName=n)["PolicyDocument"] for n in names]
        out[key] = merge_policies(*docs)
    return out
