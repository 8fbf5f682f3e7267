"""``ordinal infra check`` end to end, as ``make test`` runs it.

Everything is real: terraform fmt, validate of every root and the modules' ``terraform
test`` suites (mocked providers: no endpoint); checkov from its own venv
(``.ordinal/checkov-venv``, made by ``make test``) on the plan JSON of the emulated roots,
planned against a throw-away ``moto_server`` on loopback (the emulated boundary); and the
IAM allow/deny tables on the policy documents IAM stored after an apply there.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.provision import checks
from pipelines.provision.checks import STEP_ORDER, Suppression, load_suppressions
from pipelines.provision.cli import infra_app
from pipelines.provision.errors import ToolError

pytestmark = pytest.mark.slow  # Terraform applies against the emulated cloud: minutes


def test_infra_check_passes_end_to_end(tmp_path: Path) -> None:
    """The command itself, in this process (so coverage sees it); its tools are real."""
    result = CliRunner().invoke(infra_app, ["check", "--work-dir", str(tmp_path / "work")])
    out = result.output
    assert result.exit_code == 0, out[-6000:]
    for step in STEP_ORDER:
        assert f"ok {step} (" in out, f"{step} missing or failed:\n{out[-4000:]}"
    assert "FAILED" not in out
    assert "0 failed" in out  # checkov: zero failed checks
    assert "as expected, no wildcard action" in out  # the IAM tables
    assert "roots valid" in out and "modules/storage: Success!" in out
    assert "all infrastructure checks passed" in out


def test_fmt_step_fails_on_unformatted_hcl(tmp_path: Path, monkeypatch) -> None:
    """The check is not vacuous: a badly formatted file fails the fmt step."""
    (tmp_path / "tofu").mkdir()
    (tmp_path / "tofu" / "main.tf").write_text('variable "x" {\ntype=string\n}\n')
    monkeypatch.setattr(checks, "TOFU_ROOT", tmp_path / "tofu")
    step = checks._fmt(tmp_path / "work", checks.find_binary())
    assert not step.ok
    assert "main.tf" in step.detail


def test_suppressions_need_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("suppressions:\n  - id: CKV_AWS_18\n    resources: ['a.b']\n    reason: ok\n")
    with pytest.raises(ToolError, match="reason"):
        load_suppressions(path)
    accepted = load_suppressions()  # the committed file: every entry has its reason
    assert accepted and all(len(s.reason) >= 20 for s in accepted)
    rule = Suppression("CKV_AWS_18", ("module.storage.aws_s3_bucket.dr",), "x" * 20)
    assert rule.matches("CKV_AWS_18", "module.storage.aws_s3_bucket.dr")
    assert not rule.matches("CKV_AWS_18", "module.storage.aws_s3_bucket.data")


def test_jobs_setting_is_checked(monkeypatch) -> None:
    monkeypatch.setenv("ORDINAL_INFRA_CHECK_JOBS", "0")
    with pytest.raises(ToolError, match="at least 1"):
        checks.default_jobs()
    monkeypatch.setenv("ORDINAL_INFRA_CHECK_JOBS", "3")
    assert checks.default_jobs() == 3
