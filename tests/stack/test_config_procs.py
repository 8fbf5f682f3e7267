"""Configuration, certificates and process supervision without the servers."""

from __future__ import annotations

import datetime as dt
import sys

import psutil
import pytest
from pydantic import ValidationError

from pipelines.stack import ca, procs
from pipelines.stack.config import PORT_NAMES, load_config
from pipelines.stack.files import atomic_write


def test_ports_are_chosen_once_and_persisted(tmp_path) -> None:
    first = load_config(tmp_path / "s").save()
    assert set(first.ports) == set(PORT_NAMES)
    assert len(set(first.ports.values())) == len(PORT_NAMES)
    again = load_config(tmp_path / "s").save()
    assert again.ports == first.ports
    override = load_config(tmp_path / "s", ports={"prefect": 45123})
    assert override.port("prefect") == 45123


def test_only_loopback_is_accepted(tmp_path) -> None:
    with pytest.raises(ValidationError, match="127.0.0.1"):
        load_config(tmp_path / "s", host="0.0.0.0")


def test_root_from_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ORDINAL_STACK_ROOT", str(tmp_path / "elsewhere"))
    assert load_config().root == (tmp_path / "elsewhere").resolve()


def test_atomic_write_sets_mode_before_rename(tmp_path) -> None:
    path = atomic_write(tmp_path / "a" / "secret", "x", mode=0o600)
    assert path.read_text() == "x" and (path.stat().st_mode & 0o777) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["secret"]


def test_server_certificate_chains_to_ca_and_renewal_window(tmp_path) -> None:
    from cryptography import x509

    config = load_config(tmp_path / "s").save()
    info = ca.issue_server_cert(config, days=30)
    cert = x509.load_pem_x509_certificate(info.path.read_bytes())
    root = x509.load_pem_x509_certificate(config.ca_cert.read_bytes())
    cert.verify_directly_issued_by(root)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    assert not ca.needs_renewal(config)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=17)
    assert ca.needs_renewal(config, now=later)
    assert (config.pki / "ca.key").stat().st_mode & 0o077 == 0


def test_stop_takes_down_the_whole_process_group(tmp_path) -> None:
    config = load_config(tmp_path / "s").save()
    # A parent that ignores SIGTERM and forks a child: stop must still clear both.
    script = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
        "time.sleep(300)\n"
    )
    spec = procs.ProcessSpec(
        name="sleeper", argv=[sys.executable, "-c", script], env=procs.base_env()
    )
    pid = procs.start(config, spec)
    procs.wait_until(
        lambda: len(psutil.Process(pid).children()) == 1, timeout=30, what="child started"
    )
    child = psutil.Process(pid).children()[0]
    assert procs.start(config, spec) == pid  # idempotent
    assert procs.stop(config, "sleeper", timeout=2.0)
    assert not psutil.pid_exists(child.pid) or child.status() == psutil.STATUS_ZOMBIE
    assert procs.read_pid(config, "sleeper") is None
    assert not procs.stop(config, "sleeper")


def test_stale_pid_file_is_ignored(tmp_path) -> None:
    config = load_config(tmp_path / "s").save()
    atomic_write(procs.pid_file(config, "ghost"), f"{psutil.Process().pid} 1.0\n")
    assert procs.read_pid(config, "ghost") is None  # our pid, but another start time


def test_status_and_down_on_a_stack_never_started(tmp_path) -> None:
    import json

    from typer.testing import CliRunner

    from pipelines.stack.cli import stack_app

    runner = CliRunner()
    root = str(tmp_path / "s")
    result = runner.invoke(stack_app, ["status", "--json", "--root", root])
    assert result.exit_code == 1
    rows = json.loads(result.output)["services"]
    assert rows and not any(row["healthy"] or row["running"] for row in rows)
    result = runner.invoke(stack_app, ["down", "--root", root])
    assert result.exit_code == 0 and "nothing was running" in result.output
