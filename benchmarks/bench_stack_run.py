"""The same pipeline run locally and on the control-plane stack, side by side in one run.

Run from the repository root (as root, or a user that can run PostgreSQL)::

    .venv/bin/python benchmarks/bench_stack_run.py             # tiny BERT, 60 steps, 2 rounds
    .venv/bin/python benchmarks/bench_stack_run.py --rounds 1 --steps 20

A temporary stack is started (and always stopped). Each round runs ``ordinal run`` on the
embedded defaults (Prefect's temporary API server, a local MLflow store, local storage) and
``ordinal run --stack`` (the stack's Prefect server through TLS, the MLflow server with
artefacts in S3, the S3 data bucket) with the same parameters, alternating which goes first,
and records the pipeline seconds per step from each run's ``summary.json``. Writes
``benchmarks/results/stack_run.json``; ``docs/benchmarks-stack-run.md`` has the table. The
machine is shared and noisy: read the ratio, not the seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipelines.stack import procs, stack  # noqa: E402
from pipelines.stack.config import load_config  # noqa: E402

ORDINAL = Path(sys.executable).with_name("ordinal")


def run_once(home: Path, run_id: str, steps: int, extra: list[str]) -> dict:
    env = {**os.environ, "ORDINAL_HOME": str(home), "PREFECT_HOME": str(home / "prefect")}
    started = time.perf_counter()
    done = subprocess.run(
        [str(ORDINAL), "run", "--run-id", run_id, "--model", "bert-tiny", "--max-steps",
         str(steps), "--compute", "worker", "--set", "quantize_preset=dynamic", *extra],
        env=env, capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{run_id} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    summary = json.loads((home / "runs" / run_id / "summary.json").read_text())
    return {
        "wall_seconds": wall,
        "pipeline_seconds": summary["seconds"],
        "steps": {s["step"]: s["seconds"] for s in summary["steps"]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=60, help="training steps per run")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/stack_run.json")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="ordinal-bench-stack-run-", dir="/tmp"))
    base.chmod(0o711)  # the postgres user traverses to its data directory
    config = load_config(base / "stack")
    rounds = []
    try:
        print("starting the stack ...", flush=True)
        stack.up(config)
        for i in range(args.rounds):
            order = ["local", "stack"] if i % 2 == 0 else ["stack", "local"]
            row = {}
            for where in order:
                extra = ["--stack", "--stack-root", str(config.root)] if where == "stack" else []
                home = base / f"home-{where}-{i}"
                print(f"round {i + 1}: {where} ...", flush=True)
                row[where] = run_once(home, f"bench-{where}-{i}", args.steps, extra)
            row["ratio"] = row["stack"]["pipeline_seconds"] / row["local"]["pipeline_seconds"]
            print(f"round {i + 1}: stack/local = {row['ratio']:.2f}", flush=True)
            rounds.append(row)
    finally:
        stack.down(config)
        procs.kill_leftovers(config)
        shutil.rmtree(base, ignore_errors=True)

    ratios = [r["ratio"] for r in rounds]
    steps = sorted(rounds[0]["local"]["steps"])
    per_step = {
        s: {
            "local": statistics.median(r["local"]["steps"][s] for r in rounds),
            "stack": statistics.median(r["stack"]["steps"][s] for r in rounds),
        }
        for s in steps
    }
    result = {
        "benchmark": "stack_run",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "parameters": {"rounds": args.rounds, "training_steps": args.steps, "model": "bert-tiny"},
        "rounds": rounds,
        "median_ratio_stack_over_local": statistics.median(ratios),
        "per_step_median_seconds": per_step,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("\n| step | local s | stack s | stack/local |\n|---|---|---|---|")
    for s, v in per_step.items():
        ratio = v["stack"] / max(v["local"], 1e-9)
        print(f"| {s} | {v['local']:.1f} | {v['stack']:.1f} | {ratio:.2f} |")
    print(f"\nmedian pipeline ratio stack/local: {result['median_ratio_stack_over_local']:.2f}")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
