"""Data-layer benchmarks: ingestion hashing vs ``sha256sum``, and text preprocessing throughput.

Run from the repository root::

    .venv/bin/python benchmarks/bench_data.py            # 1 GiB file, 1M rows (about 2 min)
    .venv/bin/python benchmarks/bench_data.py --quick    # 64 MiB, 100k rows (smoke run)

Writes ``benchmarks/results/data.json`` and ``docs/benchmarks-data.md``. Work files go to
``benchmarks/.work/`` (git-ignored). Targets (from the data-layer issue):

* hashing during ingestion >= 0.8x the throughput of ``sha256sum`` on the same 1 GiB file,
  measured side by side in one run (warm page cache for both, best of N);
* text preprocessing >= 50,000 rows/s on 1M rows with peak RSS < 1 GiB, measured in a
  subprocess so the RSS is the step's own (it includes importing the library).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import jsonschema  # noqa: E402, F401  (one-time import cost kept out of the timings)

from ordinal.artifacts import LocalStorage, sha256_file  # noqa: E402
from ordinal.artifacts.checksums import CHUNK_SIZE, HashingReader  # noqa: E402
from ordinal.data import ingest  # noqa: E402

HASH_TARGET_RATIO = 0.8
ROWS_TARGET = 50_000
RSS_TARGET_MIB = 1024
LABELS = ["1 star", "2 stars", "3 stars", "4 stars", "5 stars"]

CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    t0 = time.perf_counter()
    from ordinal.artifacts import LocalStorage
    from ordinal.data import preprocess
    import jsonschema  # noqa: F401  (a one-time ~2 s import; keep it out of the timed step)
    import_s = time.perf_counter() - t0
    rss_import = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    store = LocalStorage(sys.argv[1])
    t1, c1 = time.perf_counter(), time.process_time()
    res = preprocess(sys.argv[2], "v1", storage=store)
    seconds, cpu = time.perf_counter() - t1, time.process_time() - c1
    print(json.dumps({
        "seconds": seconds,
        "cpu_seconds": cpu,
        "import_seconds": import_s,
        "rss_after_import_mib": rss_import,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "record_counts": res.manifest.record_counts,
    }))
    """
)


def make_big_file(path: Path, size_mib: int) -> None:
    """Write ``size_mib`` MiB of pseudo-random bytes (content does not change sha256 speed)."""
    if path.exists() and path.stat().st_size == size_mib << 20:
        return
    block = random.Random(0).randbytes(64 << 20)
    with path.open("wb") as fh:
        left = size_mib << 20
        while left:
            n = min(left, len(block))
            fh.write(block[:n])
            left -= n


def bench_hashing(work: Path, size_mib: int, repeats: int) -> dict:
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    path = work / f"hash-{size_mib}mib.bin"
    make_big_file(path, size_mib)
    expected = sha256_file(path).sha256  # also warms the page cache
    ours, stream, theirs = [], [], []
    for _ in range(repeats):
        t = time.perf_counter()
        out = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True)
        theirs.append(time.perf_counter() - t)
        assert out.stdout.split()[0] == expected
        t = time.perf_counter()
        got = sha256_file(path).sha256
        ours.append(time.perf_counter() - t)
        assert got == expected
        # The copy path of ingestion and storage: a HashingReader read in CHUNK_SIZE pieces.
        t = time.perf_counter()
        with path.open("rb", buffering=0) as fh:
            reader = HashingReader(fh)
            while reader.read(CHUNK_SIZE):
                pass
        stream.append(time.perf_counter() - t)
        assert reader.hexdigest() == expected
    mib = size_mib
    best_ours, best_theirs = min(ours), min(theirs)

    # End to end: ingest the same file (stage copy + hash, then store copy + hash).
    reg = work / "hash-registry.yaml"
    store_root = work / "hash-store"
    shutil.rmtree(store_root, ignore_errors=True)
    reg.write_text(
        yaml.safe_dump(
            {
                "registry_version": 1,
                "sources": [
                    {
                        "name": "bench-big",
                        "dataset": "bench-big",
                        "version": "v1",
                        "uri": path.resolve().as_uri(),
                        "sha256": expected,
                        "format": "csv",
                        "labels": LABELS,
                        "label_values": "index",  # the rows hold positions 0..4
                        "licence": "n/a",
                        "owner": "bench",
                    }
                ],
            }
        )
    )
    t = time.perf_counter()
    ingest("bench-big", registry=reg, storage=LocalStorage(store_root))
    ingest_s = time.perf_counter() - t
    shutil.rmtree(store_root, ignore_errors=True)
    ratio = best_theirs / best_ours
    stream_ratio = best_theirs / min(stream)
    return {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average_at_start": load_at_start,
        "file_mib": mib,
        "repeats": repeats,
        "sha256sum_seconds": theirs,
        "ordinal_seconds": ours,
        "sha256sum_mib_per_s": round(mib / best_theirs, 1),
        "ordinal_mib_per_s": round(mib / best_ours, 1),
        "ratio": round(ratio, 3),
        "hashing_reader_seconds": stream,
        "hashing_reader_mib_per_s": round(mib / min(stream), 1),
        "hashing_reader_ratio": round(stream_ratio, 3),
        "target_ratio": HASH_TARGET_RATIO,
        "pass": min(ratio, stream_ratio) >= HASH_TARGET_RATIO,
        "ingest_end_to_end_seconds": round(ingest_s, 2),
        "ingest_end_to_end_mib_per_s": round(mib / ingest_s, 1),
        "median_ratio": round(statistics.median(theirs) / statistics.median(ours), 3),
    }


def make_rows(path: Path, n: int) -> None:
    """Write ``n`` review-like rows: ~1% with a bad label, ~2% duplicated text."""
    if path.exists():
        return
    rng = random.Random(0)
    words = [
        "great",
        "product",
        "works",
        "fine",
        "terrible",
        "broke",
        "after",
        "a",
        "week",
        "love",
        "it",
        "would",
        "buy",
        "again",
        "not",
        "worth",
        "the",
        "price",
        "sound",
        "quality",
        "battery",
        "life",
        "arrived",
        "late",
        "easy",
        "to",
        "use",
    ]
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["id", "text", "label"])
        last = "first"
        for i in range(n):
            r = rng.random()
            text = last if r < 0.02 else " ".join(rng.choices(words, k=rng.randint(5, 30)))
            text = text if r < 0.02 else f"{text} #{i}"
            label = 9 if 0.02 <= r < 0.03 else rng.randint(0, 4)
            w.writerow([f"rev-{i:07d}", text, label])
            last = text
    os.replace(tmp, path)


def bench_preprocess(work: Path, rows: int) -> dict:
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    src = work / f"rows-{rows}.csv"
    make_rows(src, rows)
    store_root = work / "pp-store"
    shutil.rmtree(store_root, ignore_errors=True)
    reg = work / "pp-registry.yaml"
    reg.write_text(
        yaml.safe_dump(
            {
                "registry_version": 1,
                "sources": [
                    {
                        "name": "bench-rows",
                        "dataset": "bench-rows",
                        "version": "v1",
                        "uri": src.resolve().as_uri(),
                        "sha256": sha256_file(src).sha256,
                        "format": "csv",
                        "labels": LABELS,
                        "label_values": "index",  # the rows hold positions 0..4
                        "licence": "n/a",
                        "owner": "bench",
                    }
                ],
            }
        )
    )
    ingest("bench-rows", registry=reg, storage=LocalStorage(store_root))
    env = {**os.environ, "ORDINAL_HOME": str(work / "home"), "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(store_root), "bench-rows"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    child = json.loads(out.stdout.strip().splitlines()[-1])
    shutil.rmtree(store_root, ignore_errors=True)
    rate = rows / child["seconds"]
    return {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average_at_start": load_at_start,
        "rows": rows,
        "input_mib": round(src.stat().st_size / 2**20, 1),
        "seconds": round(child["seconds"], 2),
        "rows_per_s": round(rate),
        "cpu_seconds": round(child["cpu_seconds"], 2),
        "rows_per_cpu_s": round(rows / child["cpu_seconds"]),
        "peak_rss_mib": round(child["peak_rss_mib"], 1),
        "rss_after_import_mib": round(child["rss_after_import_mib"], 1),
        "step_rss_mib": round(child["peak_rss_mib"] - child["rss_after_import_mib"], 1),
        "import_seconds": round(child["import_seconds"], 2),
        "record_counts": child["record_counts"],
        "target_rows_per_s": ROWS_TARGET,
        "target_peak_rss_mib": RSS_TARGET_MIB,
        "pass": rate >= ROWS_TARGET and child["peak_rss_mib"] < RSS_TARGET_MIB,
    }


def write_doc(results: dict, path: Path) -> None:
    h, p = results["hashing"], results["preprocess"]
    ok = {True: "pass", False: "**FAIL**"}
    m = results["machine"]
    rows = [
        (
            f"sha256 throughput: `sha256_file` (folder listings, verification) vs `sha256sum`, "
            f"same {h['file_mib']} MiB file, best of {h['repeats']}",
            f"{h['ordinal_mib_per_s']} vs {h['sha256sum_mib_per_s']} MiB/s = **{h['ratio']}x**",
            f">= {h['target_ratio']}x",
            ok[h["ratio"] >= h["target_ratio"]],
        ),
        (
            "sha256 throughput: `HashingReader` (hashes while ingestion and storage copy) vs "
            "`sha256sum`, same file",
            f"{h['hashing_reader_mib_per_s']} vs {h['sha256sum_mib_per_s']} MiB/s = "
            f"**{h['hashing_reader_ratio']}x**",
            f">= {h['target_ratio']}x",
            ok[h["hashing_reader_ratio"] >= h["target_ratio"]],
        ),
        (
            "`ingest()` end to end on the same file (stage copy + hash, store copy + hash, "
            "fsync, manifest)",
            f"{h['ingest_end_to_end_mib_per_s']} MiB/s ({h['ingest_end_to_end_seconds']} s)",
            "-",
            "info",
        ),
        (
            f"Text preprocessing: `preprocess()` on {p['rows']:,} CSV rows "
            f"({p['input_mib']} MiB) through local storage",
            f"**{p['rows_per_s']:,} rows/s** ({p['seconds']} s wall; "
            f"{p['rows_per_cpu_s']:,} rows per CPU-second)",
            f">= {p['target_rows_per_s']:,} rows/s",
            ok[p["rows_per_s"] >= p["target_rows_per_s"]],
        ),
        (
            "Peak RSS of the preprocessing subprocess",
            f"**{p['peak_rss_mib']} MiB** (after imports: {p['rss_after_import_mib']} MiB; "
            f"the step itself: +{p['step_rss_mib']} MiB)",
            f"< {p['target_peak_rss_mib']} MiB",
            ok[p["peak_rss_mib"] < p["target_peak_rss_mib"]],
        ),
    ]
    table = "\n".join("| " + " | ".join(r) + " |" for r in rows)
    text = f"""# Data-layer benchmarks

Generated by `benchmarks/bench_data.py` (raw numbers in `benchmarks/results/data.json`);
rerun it to refresh this page. Machine: {m["cpus"]} CPUs, {m["platform"]}, Python
{m["python"]}. Hashing measured {h.get("measured_at", "n/a")} (load average
{h.get("load_average_at_start", "n/a")}), preprocessing {p.get("measured_at", "n/a")} (load
average {p.get("load_average_at_start", "n/a")}).
The machine is shared with other work and noisy: compare ratios within one run, not
absolute numbers across runs.

| Benchmark | Measured | Target | Result |
|---|---|---|---|
{table}

Notes:

* Both hashers read the same file from a warm page cache, alternately, in one run; the ratio
  uses the best time of each (ratio of medians: {h["median_ratio"]}x). `sha256_file` reads
  1 MiB chunks into one reused buffer and feeds OpenSSL's sha256 through `hashlib`, which
  uses the CPU's SHA extensions; this machine's coreutils `sha256sum` does not, hence the
  large ratio.
* Preprocessing streams: rows are parsed, validated and written one at a time. What grows
  with the data is the set of seen ids and of 16-byte content hashes (for de-duplication).
  The input has ~1% invalid labels and ~2% duplicate texts, so the quarantine path is
  exercised ({p["record_counts"]["rejected"]:,} rejected of {p["rows"]:,}).
* Wall-clock rows/s depends on how much of a core the step gets on the shared machine;
  rows per CPU-second (user + system time of the step) is the load-independent figure.
* The timed step excludes interpreter start and imports ({p["import_seconds"]} s): importing
  `ordinal` pulls in torch and transformers through `ordinal/__init__.py`, and `jsonschema`
  compiles an IRI grammar on import (about 2 s). Both are paid once per process. The peak
  RSS includes them.
"""
    path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hash-mib", type=int, default=1024)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="64 MiB and 100k rows")
    ap.add_argument(
        "--only",
        choices=("hashing", "preprocess"),
        help="rerun one benchmark, keep the other's last result from --out",
    )
    ap.add_argument("--work", type=Path, default=REPO / "benchmarks" / ".work")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "data.json")
    ap.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks-data.md")
    args = ap.parse_args(argv)
    if args.quick:
        args.hash_mib, args.rows = 64, 100_000
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("ORDINAL_HOME", str(args.work / "home"))
    previous = json.loads(args.out.read_text()) if args.only and args.out.exists() else {}
    results = {
        "run_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
    }
    if args.only in (None, "hashing") or "hashing" not in previous:
        results["hashing"] = bench_hashing(args.work, args.hash_mib, args.repeats)
    else:
        results["hashing"] = previous["hashing"]
    if args.only in (None, "preprocess") or "preprocess" not in previous:
        results["preprocess"] = bench_preprocess(args.work, args.rows)
    else:
        results["preprocess"] = previous["preprocess"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    write_doc(results, args.doc)
    print(json.dumps({k: results[k] for k in ("hashing", "preprocess")}, indent=2))
    return 0 if results["hashing"]["pass"] and results["preprocess"]["pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
