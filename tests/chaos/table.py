"""Render ``$ORDINAL_CHAOS_RESULTS`` (one JSON line per fault) as the table of docs/reliability.md.

.venv/bin/python -m tests.chaos.table build/chaos-results.jsonl
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HEADER = (
    "| fault | step | injected at | first attempt exit | resumed | recomputed work "
    "| checkpoint interval | detail | wall time (s) |\n"
    "|---|---|---|---|---|---|---|---|---|"
)


def _detail(row: dict) -> str:
    detail, fencing = row.get("detail") or {}, row.get("fencing") or {}
    if row["fault"] == "s3-cut":
        return f"cut at byte {detail.get('cut_at_byte')} of {detail.get('of_bytes')}"
    if row["fault"] == "disk-full":
        return f"filled {detail.get('filled_bytes', 0) / 2**20:.0f} MiB"
    if "restart" in row["fault"]:
        return f"down {detail.get('down_seconds')} s"
    return _fenced(fencing.get("line", ""))


def _fenced(line: str) -> str:
    """What the resume's fencing stopped, from its console line (a dict's repr)."""
    if not line:
        return "nothing to fence"
    killed = re.search(r"'processes_killed': \[([^\]]*)\]", line)
    n = len([p for p in killed.group(1).split(",") if p.strip()]) if killed else 0
    server = "prefect_server" in line.partition("'children_killed'")[2][:80]
    took = re.search(r"'seconds': ([0-9.]+)", line)
    what = f"{n} process(es)" + (" + API server" if server else "")
    return f"fenced {what}" + (f", {float(took.group(1)):.1f} s" if took else "")


def render(path: Path) -> str:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    out = [HEADER]
    for r in rows:
        at = f"unit {r['at_unit']}" if r["fault"] != "s3-cut" else "upload"
        out.append(
            f"| {r['fault']} | {r['step']} | {at} | {r['first_rc']} | "
            f"{'yes' if r['survived'] else 'NO'} | {r['recomputed_units']} units = "
            f"{r['recomputed_seconds']:.2f} s | {r['checkpoint_interval_seconds']} s | "
            f"{_detail(r)} | {r['seconds']:.0f} |"
        )
    return "\n".join(out)


if __name__ == "__main__":
    print(render(Path(sys.argv[1] if len(sys.argv) > 1 else "build/chaos-results.jsonl")))
