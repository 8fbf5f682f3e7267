"""The bundle's model card: ``README.md`` with YAML front matter (Hugging Face convention)."""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["render_model_card"]


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def render_model_card(meta: dict[str, Any]) -> str:
    """The model card for bundle metadata ``meta`` (everything but ``files``/``signing``).

    The front matter carries the Hugging Face card keys (``library_name``, ``pipeline_tag``,
    ``tags``) plus an ``ordinal`` block a tool can read without parsing ``bundle.json``.
    The same metadata gives the same text.
    """
    model, lineage = meta["model"], meta["lineage"]
    task = "text-classification" if model["modality"] == "text" else "image-classification"
    front = {
        "library_name": "onnxruntime",
        "pipeline_tag": task,
        "tags": ["ordinal-regression", "onnx", model["head"].replace("_", "-"), model["family"]],
        "datasets": [lineage["dataset"]["name"]],
        "ordinal": {
            "name": meta["name"],
            "version": meta["version"],
            "format": meta["format"],
            "head": model["head"],
            "link": model["link"],
            "labels": model["label_names"],
            "default_variant": meta["default_variant"],
            "run_id": lineage["run_id"],
            "experiment_id": lineage["experiment_id"],
            "git_sha": lineage["git_sha"],
        },
    }
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=True, allow_unicode=False).rstrip(),
        "---",
        "",
        f"# {meta['name']} {meta['version']}",
        "",
        f"An ordinal regression model ({model['family']} backbone, {model['head']} head"
        + (f", {model['link']} link" if model["link"] else "")
        + f") predicting one of {model['num_classes']} ordered labels: "
        + ", ".join(f"`{name}`" for name in model["label_names"])
        + ".",
        "",
        "The ONNX graphs output class probabilities (`probs`) and the predicted label index "
        "(`label`) directly; no link-function code is needed to serve them. The bundle format is "
        "`ordinal-bundle/1` (see `docs/bundle-format.md` in the ordinal repository).",
        "",
        "## Lineage",
        "",
        f"* run: `{lineage['run_id']}`, experiment: `{lineage['experiment_id']}`",
        f"* code: `{lineage['git_sha']}`"
        + (" (uncommitted changes)" if lineage["git_dirty"] else ""),
        f"* data: `{lineage['dataset']['name']}` version `{lineage['dataset']['version']}` "
        f"(raw manifest sha256 `{lineage['dataset']['raw_sha256']}`)",
        f"* created: {meta['created_at']}",
        "",
        "## Metrics (held-out split)",
        "",
        "| variant | n | MAE | QWK | accuracy |",
        "|---|---|---|---|---|",
    ]
    for variant, m in sorted(meta["metrics"].items()):
        cells = [variant, m["n"], _fmt(m["mae"]), _fmt(m["qwk"]), _fmt(m["accuracy"])]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += ["", "## Evidence", ""]
    for gate, report in sorted(meta["evidence"].items()):
        verdict = "passed" if report["passed"] else "FAILED"
        lines.append(f"* {gate} gate {verdict}: `{report['path']}` (sha256 `{report['sha256']}`)")
    if model["cutpoints"] is not None:
        cut = ", ".join(f"{c:.4f}" for c in model["cutpoints"])
        lines += ["", "## Cutpoints", "", f"`[{cut}]`"]
    graph = meta["graph"]
    lines += [
        "",
        "## Serving",
        "",
        f"* inputs: {', '.join(i['name'] for i in graph['inputs'])}; opset {graph['opset']}",
        f"* ONNX Runtime >= {meta['onnxruntime']['min_version']} "
        f"(C API level {meta['onnxruntime']['api_version']})",
        f"* variants: {', '.join(sorted(meta['variants']))}; default `{meta['default_variant']}`",
        "",
        "```python",
        "from ordinal.release import load_bundle",
        "",
        'predictor = load_bundle("path/to/bundle", trusted_keys=["sha256:..."])',
        'predictor.predict(["some text"]).labels',
        "```",
        "",
    ]
    return "\n".join(lines)
