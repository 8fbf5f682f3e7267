"""Run in a (throwaway) interpreter: the parity recheck of one graph under its onnxruntime.

Usage: ``python -I _parity_child.py GRAPH OUT_DIR EXPECTED_VERSION SPEC_JSON``. ``GRAPH`` has
``parity/reference.npz`` beside it. Writes ``OUT_DIR/outputs.npz`` (the graph's outputs on
the stored parity inputs) and ``OUT_DIR/result.json`` (the onnxruntime version and where it
was imported from, the recheck's verdict and worst differences). Exits 3 when the imported
onnxruntime is not ``EXPECTED_VERSION`` (empty: any).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> int:
    graph, out_dir, expected, spec_json = sys.argv[1:5]
    import numpy as np
    import onnxruntime

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = {"onnxruntime": onnxruntime.__version__, "module": onnxruntime.__file__}
    if expected and onnxruntime.__version__ != expected:
        result["error"] = f"imported onnxruntime {onnxruntime.__version__}, expected {expected}"
        (out / "result.json").write_text(json.dumps(result), encoding="utf-8")
        return 3

    from ordinal.export.errors import ParityError
    from ordinal.export.parity import ParitySpec, recheck_parity, run_onnx

    spec = ParitySpec.model_validate_json(spec_json)
    try:
        report = recheck_parity(graph, spec, out / "recheck")
        result.update(passed=True, failures=[])
    except ParityError as exc:
        report = None
        result.update(passed=False, failures=[str(f) for f in exc.failures] or [str(exc)])
    if report is not None:
        result["num_samples"] = report.num_samples
        result["max_abs"] = {k: v["max_abs"] for k, v in report.outputs.items()}
    with np.load(Path(graph).parent / "parity" / "reference.npz") as data:
        inputs = {k.removeprefix("input/"): data[k] for k in data.files if k.startswith("input/")}
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    outputs = run_onnx(session, inputs, spec.batch_size)
    np.savez(out / "outputs.npz", **outputs)
    (out / "result.json").write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
