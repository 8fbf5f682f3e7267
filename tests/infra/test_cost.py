"""Cost per 1,000 training samples against a rolling baseline, and the cost alert.

The alert goes to a real webhook receiver on loopback (the one the stack's alert tests use)
through the stack's own alert code; the history is stored in a real local storage root and
in a real ``moto_server`` bucket.
"""

from __future__ import annotations

import datetime as dt
import json
import logging

import pytest

from ordinal.artifacts import LocalStorage, S3Storage
from pipelines.provision.cost import (
    CostError,
    CostSpec,
    baseline_of,
    check_run_cost,
    cost_per_thousand,
    deviation,
    exceeds,
    load_history,
)
from pipelines.provision.tofu import VmRecord
from pipelines.stack.config import StackConfig
from tests.stack.receivers import WebhookReceiver

SPEC = CostSpec()
CLOCK = lambda: dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)  # noqa: E731


def _vm(cost: float, itype: str = "g4dn.xlarge", market: str = "spot", **kw) -> VmRecord:
    return VmRecord(
        run_id=kw.pop("run_id", "r"),
        stage=kw.pop("stage", "train"),
        instance_type=itype,
        market=market,
        billed_seconds=kw.pop("billed_seconds", 600),
        cost_usd=cost,
        **kw,
    )


# --- the maths ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "baseline", "alert"),
    [
        (1.05, 1.00, False),  # exactly +5 %: not an alert
        (0.95, 1.00, False),  # exactly -5 %
        (1.0501, 1.00, True),  # +5.01 %
        (0.9499, 1.00, True),  # -5.01 %
        (1.0499, 1.00, False),
        (0.105, 0.1, False),  # exactly 5 % at another scale (float error must not tip it)
        (0.10501, 0.1, True),
        (2.1, 2.0, False),
        (2.1002, 2.0, True),
        (1.0, 1.0, False),
        (0.0, 1.0, True),  # a run that cost nothing is a deviation too
    ],
)
def test_deviation_table(value: float, baseline: float, alert: bool) -> None:
    assert exceeds(deviation(value, baseline), SPEC.tolerance) is alert


def test_tolerance_is_data_on_the_spec() -> None:
    assert exceeds(deviation(1.08, 1.0), CostSpec(tolerance=0.1).tolerance) is False
    assert exceeds(deviation(1.08, 1.0), CostSpec(tolerance=0.05).tolerance) is True
    with pytest.raises(CostError, match="tolerance"):
        CostSpec(tolerance=5)
    with pytest.raises(CostError, match="window"):
        CostSpec(window=0)


def test_cost_per_thousand_and_its_errors() -> None:
    # 0.2264 $/h for 3600 s over 72,000 samples: 0.2264 * 1000 / 72000 (hand-checked)
    assert cost_per_thousand(0.2264, 72_000) == pytest.approx(0.0031444444)
    for bad in (0, -3, 1.5, True):
        with pytest.raises(CostError, match="sample count"):
            cost_per_thousand(1.0, bad)
    with pytest.raises(CostError, match="cost"):
        cost_per_thousand(float("nan"), 10)


def test_records_without_cost_are_refused_by_name(tmp_path) -> None:
    record = _vm(0.1)
    record.cost_usd = None
    record.instance_id = "i-0abc"
    with pytest.raises(CostError, match="no cost yet") as caught:
        check_run_cost([record], 100, LocalStorage(tmp_path), run_id="r1")
    assert "i-0abc" in str(caught.value)
    assert not (tmp_path / SPEC.history_key).exists()  # nothing half-written


# --- the baseline -------------------------------------------------------------------------
def test_first_run_has_no_baseline_and_starts_one(tmp_path) -> None:
    store = LocalStorage(tmp_path)
    (check,) = check_run_cost([_vm(0.30)], 10_000, store, run_id="r1", now=CLOCK)
    assert check.status == "no-baseline"
    assert check.baseline_per_1k is None and check.deviation is None and check.alerted is None
    assert check.cost_per_1k == pytest.approx(0.03)
    history = load_history(store)
    assert history == {
        "g4dn.xlarge/spot": [
            {
                "run_id": "r1",
                "cost_per_1k": pytest.approx(0.03),
                "cost_usd": 0.30,
                "samples": 10_000,
                "billed_seconds": 600,
                "recorded_at": "2026-11-30T12:00:00+00:00",
            }
        ]
    }


def test_baseline_rolls_over_the_last_n_runs(tmp_path) -> None:
    store = LocalStorage(tmp_path)
    spec = CostSpec(window=3)
    costs = [1.0, 1.0, 1.0, 2.0, 2.0, 2.0]
    checks = [
        check_run_cost([_vm(c)], 1000, store, run_id=f"r{i}", spec=spec, now=CLOCK)[0]
        for i, c in enumerate(costs)
    ]
    assert [c.baseline_runs for c in checks] == [0, 1, 2, 3, 3, 3]
    # r3 doubles: +100 % from 1.0; r4's baseline is mean(1, 1, 2); r5's mean(1, 2, 2).
    assert [c.baseline_per_1k for c in checks[3:]] == pytest.approx([1.0, 4 / 3, 5 / 3])
    assert [c.status for c in checks] == [
        "no-baseline",
        "ok",
        "ok",
        "deviates",
        "deviates",
        "deviates",
    ]
    entries = load_history(store, spec)["g4dn.xlarge/spot"]
    assert [e["run_id"] for e in entries] == ["r3", "r4", "r5"]  # only the last N are kept
    # Settled at the new price: within tolerance again.
    assert check_run_cost([_vm(2.0)], 1000, store, run_id="r6", spec=spec)[0].status == "ok"


def test_classes_and_markets_have_their_own_baselines(tmp_path) -> None:
    store = LocalStorage(tmp_path)
    first = [_vm(1.0), _vm(2.0, market="on-demand"), _vm(0.1, "c6i.xlarge", "spot", stage="export")]
    check_run_cost(first, 1000, store, run_id="a")
    # Two spot VMs of one class in one run (an interruption) are summed: 0.6 + 0.4 = 1.0.
    second = [
        _vm(0.6),
        _vm(0.4),
        _vm(2.0, market="on-demand"),
        _vm(0.2, "c6i.xlarge", stage="export"),
    ]
    checks = {c.key: c for c in check_run_cost(second, 1000, store, run_id="b")}
    assert checks["g4dn.xlarge/spot"].vms == 2
    assert checks["g4dn.xlarge/spot"].status == "ok"
    assert checks["g4dn.xlarge/on-demand"].status == "ok"
    assert checks["c6i.xlarge/spot"].status == "deviates"
    assert checks["c6i.xlarge/spot"].deviation == pytest.approx(1.0)


def test_a_rerun_of_the_check_replaces_its_own_entry(tmp_path) -> None:
    store = LocalStorage(tmp_path)
    check_run_cost([_vm(1.0)], 1000, store, run_id="a")
    check_run_cost([_vm(3.0)], 1000, store, run_id="b")
    again = check_run_cost([_vm(3.0)], 1000, store, run_id="b")[0]
    assert again.baseline_runs == 1 and again.baseline_per_1k == pytest.approx(1.0)
    assert [e["run_id"] for e in load_history(store)["g4dn.xlarge/spot"]] == ["a", "b"]


def test_unreadable_history_is_a_typed_error(tmp_path) -> None:
    (tmp_path / "costs").mkdir()
    (tmp_path / "costs" / "baseline.json").write_text('{"version": 99, "entries": {}}')
    with pytest.raises(CostError, match="history") as caught:
        check_run_cost([_vm(1.0)], 1000, LocalStorage(tmp_path), run_id="a")
    assert "costs/baseline.json" in str(caught.value)


def test_history_on_s3(tmp_path) -> None:
    """The storage root of runs on the stack is a bucket: a real moto_server here."""
    from pipelines.provision.emulation.moto import MotoServer

    with MotoServer(log_path=tmp_path / "moto.log") as moto:
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=moto.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        client.create_bucket(Bucket="costs-test")
        store = S3Storage("costs-test", "team", client=client)
        check_run_cost([_vm(1.0)], 1000, store, run_id="a")
        (check,) = check_run_cost([_vm(1.2)], 1000, store, run_id="b")
        assert check.status == "deviates" and check.alerted is False
        body = client.get_object(Bucket="costs-test", Key="team/costs/baseline.json")["Body"]
        assert [e["run_id"] for e in json.loads(body.read())["entries"]["g4dn.xlarge/spot"]] == [
            "a",
            "b",
        ]


# --- the alert ----------------------------------------------------------------------------
def test_deviation_alerts_through_the_stack_channels(tmp_path) -> None:
    store = LocalStorage(tmp_path / "store")
    check_run_cost([_vm(1.00)], 20_000, store, run_id="base")
    within = check_run_cost([_vm(1.05)], 20_000, store, run_id="same")[0]
    assert within.status == "ok" and within.alerted is None
    with WebhookReceiver() as webhook:
        config = StackConfig(root=tmp_path / "stack", alert_webhook_url=webhook.url)
        (check,) = check_run_cost([_vm(1.20)], 20_000, store, run_id="run-42", alert=config)
        (quiet,) = check_run_cost([_vm(1.10)], 20_000, store, run_id="run-43", alert=config)
    assert check.status == "deviates" and check.alerted is True
    assert check.channels == {"webhook": True, "email": None}
    assert check.deviation == pytest.approx(1.2 / 1.025 - 1, abs=1e-9)
    assert quiet.status == "ok"  # baseline mean(1.0, 1.05, 1.2) = 1.0833: 1.10 is +1.5 %
    assert len(webhook.received) == 1  # the run within tolerance sent nothing
    text = webhook.received[0]["text"]
    assert "run-42" in text and "g4dn.xlarge/spot" in text and "+17.1%" in text
    assert "Runbook:" in text


def test_without_the_stack_a_deviation_is_logged_and_returned(tmp_path, caplog) -> None:
    store = LocalStorage(tmp_path)
    check_run_cost([_vm(1.0)], 1000, store, run_id="a")
    with caplog.at_level(logging.WARNING, logger="pipelines.provision.cost"):
        (check,) = check_run_cost([_vm(0.5)], 1000, store, run_id="b")
    assert check.status == "deviates" and check.alerted is False
    assert check.deviation == pytest.approx(-0.5)
    assert "cost alert for run b" in caplog.text and "-50.00%" in caplog.text


def test_baseline_of_is_a_plain_mean() -> None:
    assert baseline_of([{"cost_per_1k": 3}], 10) == (3.0, 1)


# --- the committed benchmark table ---------------------------------------------------------
def test_cost_table_in_docs_matches_the_committed_results() -> None:
    """docs/cost.md shows benchmarks/results/cost.json; GPU rows say they are assumed."""
    from pathlib import Path

    from pipelines.provision.prices import load_prices

    repo = Path(__file__).resolve().parents[2]
    result = json.loads((repo / "benchmarks" / "results" / "cost.json").read_text())
    doc = (repo / "docs" / "cost.md").read_text()
    prices = load_prices()
    region = result["parameters"]["region"]
    for row in result["rows"]:
        itype = row["instance_type"]
        (line,) = [ln for ln in doc.splitlines() if ln.startswith(f"| {itype} ")]
        assert row["on_demand_per_hour"] == prices.hourly(region, itype, "on-demand")
        assert row["spot_per_hour"] == prices.hourly(region, itype, "spot")
        for value in (row["per_1k_on_demand"], row["per_1k_spot"]):
            assert f"{value:.5f}" in line, (itype, value, line)
        assert row["per_1k_spot"] == pytest.approx(
            row["spot_per_hour"] / (row["samples_per_second"] * 3.6)
        )
        assert f"{row['samples_per_second']:.0f} (" in line
        assert ("not measured" in line) is (not row["measured"]), line
    # The FLOPs count behind the GPU rows, recomputed from MiniLM's shape (6 x 384, FFN 1536).
    n = 6 * (4 * 384 * 384 + 2 * 384 * 1536)
    assert result["model"]["non_embedding_params"] == n == 10_616_832
    seq = result["parameters"]["seq_len"]
    assert result["model"]["flops_per_sample"] == 6 * n * seq + 6 * 6 * 2 * seq * seq * 384
