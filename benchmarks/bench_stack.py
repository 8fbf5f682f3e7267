"""Control-plane benchmarks: ``stack up`` to all-healthy, stack memory, restore-drill scaling.

Run from the repository root (as root or a user that can run PostgreSQL)::

    .venv/bin/python benchmarks/bench_stack.py            # 10k, 100k, 1M rows (about 5 min)
    .venv/bin/python benchmarks/bench_stack.py --quick    # 10k, 100k rows

Writes ``benchmarks/results/stack.json``; ``docs/benchmarks-stack.md`` discusses it. The
stack runs under a temporary root in /tmp and is always stopped. Targets (from the issue):

* ``ordinal stack up`` to all-healthy < 60 s; resident memory of the whole stack < 2 GiB;
* restore drill at 1M rows < 1 minute (decrypt, ``pg_restore``, row counts and checksums
  of every table), reported with its steps for 10k, 100k and 1M rows, plus the extra step a
  Prefect-database drill adds (booting a Prefect server on the copy and reading back).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from psycopg2 import sql  # noqa: E402

from pipelines.stack import backup, postgres, procs, restore, stack  # noqa: E402
from pipelines.stack.config import load_config  # noqa: E402

TARGETS = {"up_seconds": 60.0, "rss_bytes": 2 * 2**30, "drill_1m_seconds": 60.0}


def make_table(config, database: str, rows: int) -> None:
    """A database with one table of ``rows`` rows (typical column mix of a run table)."""
    conn = postgres.connect(config)
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(database)))
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    finally:
        conn.close()
    conn = postgres.connect(config, database)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "CREATE TABLE run_metric (id bigint PRIMARY KEY, run_id uuid, key text, "
                "value double precision, step int, ts timestamptz)"
            )
            cur.execute(
                "INSERT INTO run_metric SELECT g, md5(g::text)::uuid, 'loss_' || mod(g, 7), "
                "random(), mod(g, 1000), now() - g * interval '1 second' "
                "FROM generate_series(1, %s) g",
                (rows,),
            )
            cur.execute("ANALYZE run_metric")
    finally:
        conn.close()


def bench(sizes: list[int]) -> dict:
    base = Path(tempfile.mkdtemp(prefix="ordinal-stack-bench-", dir="/tmp"))
    base.chmod(0o711)
    config = load_config(base / "stack")
    result: dict = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "targets": TARGETS,
    }
    try:
        t0 = time.monotonic()
        steps = stack.up(config)
        result["up_cold"] = {"seconds": round(time.monotonic() - t0, 2), "steps": steps}
        result["rss_bytes"] = stack.resident_memory(config)
        stack.down(config)
        t0 = time.monotonic()
        steps = stack.up(config)
        result["up_warm"] = {"seconds": round(time.monotonic() - t0, 2), "steps": steps}
        assert all(row.healthy for row in stack.status(config)), "stack not healthy"
        result["rss_bytes_warm"] = stack.resident_memory(config)
        drills = {}
        for rows in sizes:
            database = f"bench_{rows}"
            make_table(config, database, rows)
            t0 = time.monotonic()
            record = backup.take_backup(config, database)
            backup_seconds = time.monotonic() - t0
            report = restore.restore_drill(config, database, record=record, boot_prefect=False)
            drills[str(rows)] = {
                "backup_seconds": round(backup_seconds, 2),
                "backup_bytes": record.size,
                "drill_seconds": report.elapsed,
                "steps": report.steps,
                "rows_verified": report.rows,
            }
            print(f"{rows:>8} rows: backup {backup_seconds:.1f} s, drill {report.elapsed:.1f} s")
        result["drills"] = drills
        backup.take_backup(config, "prefect")
        prefect_drill = restore.restore_drill(config, "prefect")
        result["prefect_drill"] = {
            "seconds": prefect_drill.elapsed,
            "steps": prefect_drill.steps,
            "rows": prefect_drill.rows,
        }
    finally:
        stack.down(config)
        procs.kill_leftovers(config)
        shutil.rmtree(base, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k and 100k rows only")
    args = parser.parse_args()
    sizes = [10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000]
    result = bench(sizes)
    out = REPO / "benchmarks" / "results" / "stack.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
