"""The reviewer's index page of a run: one place linking every rendered notebook and report.

``write_index`` writes ``{run_dir}/index.html`` and ``{run_dir}/summary.json`` atomically, on
every completion path (a failed run's page shows which step failed and links its rendered
notebook, error visible). The page leads with the verdict: what the run was asked to do,
the headline numbers of each gate (:func:`headline`) and the training figures; the step table
comes after.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, select_autoescape

if TYPE_CHECKING:
    from pipelines.flow import PipelineSummary

__all__ = ["headline", "teardown_lines", "write_index"]

TEMPLATE = Path(__file__).with_name("templates") / "index.html.j2"

KEY_METRICS = {
    "records_raw",
    "records_accepted",
    "records_rejected",
    "calibration_samples",
    "eval_mae",
    "eval_qwk",
    "eval_accuracy",
    "train_samples_per_second",
    "parity_max_abs_delta",
    "parity_label_agreement",
    "parity_num_samples",
    "mae_fp32",
    "mae_int8",
    "int8_mae_change",
    "int8_mae_delta",
    "int8_mae_delta_low",
    "int8_mae_delta_high",
    "int8_gate_samples",
    "int8_max_prob_delta",
    "int8_prob_delta_p99",
    "int8_label_agreement",
    "latency_ms_fp32",
    "latency_ms_int8",
}


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _status(summary: PipelineSummary, step: str) -> str:
    """A gate's outcome: a completed (or cached) step passed its gate; a failed one did not."""
    status = next((r.status for r in summary.steps if r.step == step), "pending")
    return "passed" if status in ("completed", "cached") else status


def headline(summary: PipelineSummary) -> list[dict[str, Any]]:
    """The numbers a reviewer reads first, one row per gate: ``{what, value, detail, status}``.

    ``status`` is ``passed`` when the step completed (a failed gate fails its step), else the
    step's (failed, skipped, pending); the values come from the
    steps' stable metric names, so a row is absent when its step did not run.
    """
    m = {r.step: r.metrics for r in summary.steps}
    train, parity, quant = m.get("train", {}), m.get("parity", {}), m.get("quantize", {})
    rows: list[dict[str, Any]] = []
    if "mae_fp32" in quant:
        n = int(quant.get("int8_gate_samples", 0))
        rows.append({
            "what": "FP32 model (ONNX) on held-out data",
            "value": f"MAE {quant['mae_fp32']:.3f} · QWK {quant.get('qwk_fp32', float('nan')):.3f}",
            "detail": f"n = {n}" if n else "",
            "status": _status(summary, "quantize"),
        })  # fmt: skip
    elif "eval_mae" in train:
        rows.append({
            "what": "Model on the validation split",
            "value": f"MAE {train['eval_mae']:.3f} · QWK {train.get('eval_qwk', float('nan')):.3f}",
            "detail": f"{train.get('global_step', 0):.0f} training steps",
            "status": _status(summary, "train"),
        })  # fmt: skip
    if "parity_max_abs_delta" in parity:
        rows.append(
            {
                "what": "Parity, ONNX Runtime vs PyTorch",
                "value": f"max |delta| {parity['parity_max_abs_delta']:.2g}",
                "detail": f"n = {parity.get('parity_num_samples', 0):.0f}, labels agree "
                f"{parity.get('parity_label_agreement', float('nan')):.1%}",
                "status": _status(summary, "parity"),
            }
        )
    elif _status(summary, "parity") == "failed":
        rows.append({"what": "Parity, ONNX Runtime vs PyTorch", "value": "FAILED",
                     "detail": "see the parity step's report", "status": "failed"})  # fmt: skip
    if "int8_mae_delta" in quant:
        ratio = quant.get("latency_ms_fp32", 0.0) / max(quant.get("latency_ms_int8", 0.0), 1e-9)
        rows.append(
            {
                "what": "INT8 vs FP32",
                "value": f"ΔMAE {quant['int8_mae_delta']:+.4f} "
                f"[{quant['int8_mae_delta_low']:+.4f}, {quant['int8_mae_delta_high']:+.4f}]",
                "detail": f"95% interval, n = {quant.get('int8_gate_samples', 0):.0f}, margin "
                f"{quant.get('int8_mae_margin', 0.0):.4f}; batch latency "
                + (f"{ratio:.2f}x faster" if ratio >= 1 else f"{1 / ratio:.2f}x slower")
                + " than FP32",
                "status": _status(summary, "quantize"),
            }
        )
    elif _status(summary, "quantize") == "failed":
        rows.append({"what": "INT8 vs FP32", "value": "FAILED",
                     "detail": "see the quantize step's report", "status": "failed"})  # fmt: skip
    return rows


def teardown_lines(teardown: dict[str, Any]) -> list[str]:
    """The run's teardown report (``summary.teardown``) as sentences for the index page.

    >>> teardown_lines({"provisioner": "local", "worker": "w-1", "worker_stopped": True,
    ...                 "deployment_deleted": True, "queue_deleted": True})
    ['worker w-1 stopped; its deployment deleted; its queue deleted']
    >>> for line in teardown_lines({
    ...     "provisioner": "tofu", "seconds": 0.7, "embedded_cloud_stopped": True,
    ...     "vms": {"train": {"already_destroyed": True, "instance_id": "i-1"}},
    ...     "destroy_seconds": {"train i-1": 23.8}}):
    ...     print(line)
    train VM i-1: destroyed in 23.8 s when its phase ended
    embedded emulated cloud stopped
    final check: 0.7 s, nothing left running
    >>> teardown_lines({"error": "destroy failed"})
    ['failed: destroy failed']
    """
    if not teardown:
        return ["not run"]
    if teardown.get("started") == "nothing":
        return ["nothing was started"]
    lines: list[str] = []
    if "vms" in teardown:  # the tofu provisioner
        timed = {k.split(" ", 1)[-1]: v for k, v in teardown.get("destroy_seconds", {}).items()}
        # In the order the VMs ran (train first), not the state files' alphabetical order.
        ran = [k.split(" ", 1)[0] for k in teardown.get("destroy_seconds", {})]
        order = {stage: i for i, stage in enumerate(ran)}
        vms = sorted(teardown["vms"].items(), key=lambda kv: order.get(kv[0], len(order)))
        for stage, vm in vms:
            vm_id = vm.get("instance_id") or "(no instance)"
            if vm.get("error"):
                lines.append(f"{stage} VM {vm_id}: destroy FAILED: {vm['error']}")
            elif vm.get("already_destroyed"):
                took = timed.get(vm_id)
                when = f" in {took:.1f} s" if isinstance(took, int | float) else ""
                lines.append(f"{stage} VM {vm_id}: destroyed{when} when its phase ended")
            else:
                lines.append(f"{stage} VM {vm_id}: destroyed by the teardown")
        if not teardown["vms"]:
            lines.append("no VM was applied")
        if teardown.get("embedded_cloud_stopped"):
            lines.append("embedded emulated cloud stopped")
        if teardown.get("instance_processes_killed"):
            lines.append(f"instance processes stopped: {teardown['instance_processes_killed']}")
    elif "worker" in teardown:  # the local provisioner
        done = [f"worker {teardown['worker']} " + (
            "stopped" if teardown.get("worker_stopped") else "was already gone"
        )]  # fmt: skip
        for what in ("deployment", "queue"):
            if f"{what}_deleted" in teardown:
                done.append(
                    f"its {what} " + ("deleted" if teardown[f"{what}_deleted"] else "not found")
                )
        lines.append("; ".join(done))
        if teardown.get("server_cleanup_error"):
            lines.append(f"server cleanup failed: {teardown['server_cleanup_error']}")
    if teardown.get("error"):
        lines.append(f"failed: {teardown['error']}")
    failed = teardown.get("error") or any(v.get("error") for v in teardown.get("vms", {}).values())
    if "seconds" in teardown and not failed:
        lines.append(f"final check: {teardown['seconds']:.1f} s, nothing left running")
    return lines or [json.dumps(teardown, default=str)]


def write_index(summary: PipelineSummary) -> list[Path]:
    """Write the run's ``index.html`` and ``summary.json``; return both paths."""
    root = Path(summary.run_dir)
    root.mkdir(parents=True, exist_ok=True)

    def rel(path: str) -> str:
        try:
            return Path(os.path.relpath(path, root)).as_posix()
        except ValueError:  # another drive: keep it absolute
            return Path(path).as_uri()

    env = Environment(autoescape=select_autoescape(default=True))
    html = env.from_string(TEMPLATE.read_text(encoding="utf-8")).render(
        s=summary,
        rel=rel,
        name=lambda p: Path(p).name,
        keys=KEY_METRICS,
        headline=headline(summary),
        teardown=teardown_lines(summary.teardown),
        figures=[
            (k, f) for r in summary.steps for k, f in r.figures.items() if Path(f["path"]).is_file()
        ],
    )
    index, data = root / "index.html", root / "summary.json"
    _atomic_write(index, html)
    _atomic_write(data, json.dumps(summary.to_dict(), indent=2, default=str) + "\n")
    return [index, data]
