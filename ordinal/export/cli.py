"""Commands ``ordinal export | parity | parity-recheck | quantize`` (a typer sub-app)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

export_app = typer.Typer()
console = Console()


def _records(data: Path | None, demo_size: int, demo_seed: int) -> list[dict[str, Any]]:
    from ordinal.data.text_files import read_text_records

    if data is not None:
        return read_text_records(data)
    from ordinal.data.demo_text import make_review_records

    # Held-out demo reviews: a seed the training demo does not use.
    return make_review_records(demo_size, seed=demo_seed)


def _say(message: str) -> None:
    console.print(f"[dim]·[/] {message}")


@export_app.command("export")
def export_cmd(
    model_dir: Annotated[
        Path, typer.Argument(help="A saved ordinal model (training run's model/)")
    ],
    experiment: Annotated[str, typer.Option(help="Experiment id: models/onnx/{experiment}/fp32/")],
    config: Annotated[
        Path | None, typer.Option(help="Export config (default: configs/export/{task}.yaml)")
    ] = None,
    storage: Annotated[
        str | None, typer.Option(help="Storage root URL (default: local store)")
    ] = None,
) -> None:
    """Export a model to FP32 ONNX with the ordinal decoder graph appended."""
    from ordinal.artifacts import open_storage
    from ordinal.export import export_onnx

    result = export_onnx(
        model_dir, experiment, config_path=config, storage=open_storage(storage), progress=_say
    )
    table = Table(title=f"FP32 export: {experiment}")
    table.add_column("output")
    table.add_column("dtype")
    table.add_column("dims")
    for out in result.signature["outputs"]:
        table.add_row(out["name"], out["dtype"], str(out["dims"]))
    console.print(table)
    print(f"model: {result.onnx_path}")


@export_app.command("parity")
def parity_cmd(
    model_dir: Annotated[Path, typer.Argument(help="The PyTorch model that was exported")],
    onnx_path: Annotated[
        Path | None,
        typer.Argument(help="The exported model.onnx (or give --experiment instead)"),
    ] = None,
    experiment: Annotated[
        str | None,
        typer.Option(
            help="Check the stored models/onnx/{experiment}/fp32/ model of the storage root; "
            "the reports are stored in its fp32/parity/"
        ),
    ] = None,
    storage: Annotated[
        str | None, typer.Option(help="Storage root URL with --experiment (default: local store)")
    ] = None,
    endpoint_url: Annotated[
        str | None, typer.Option(help="S3-compatible endpoint (default: $ORDINAL_S3_ENDPOINT_URL)")
    ] = None,
    data: Annotated[Path | None, typer.Option(help="Held-out CSV/JSONL (id,text,label)")] = None,
    demo_size: Annotated[
        int, typer.Option(help="Held-out demo reviews when --data is absent")
    ] = 500,
    demo_seed: Annotated[int, typer.Option(help="Seed of the held-out demo reviews")] = 1001,
    non_production: Annotated[
        bool, typer.Option(help="Allow < 500 samples (labelled report)")
    ] = False,
    out_dir: Annotated[
        Path | None, typer.Option(help="Report folder (default: beside the model)")
    ] = None,
) -> None:
    """Parity gate: ONNX Runtime vs PyTorch on >= 500 held-out samples at atol 1e-5."""
    from ordinal.artifacts import open_storage
    from ordinal.exceptions import OrdinalError
    from ordinal.export.errors import ParityError
    from ordinal.export.onnx_export import MODEL_FILE, local_model_folder
    from ordinal.export.parity import ParitySpec, check_parity

    if (onnx_path is None) == (experiment is None):
        console.print("[red]give either the ONNX path or --experiment (not both)[/]")
        raise typer.Exit(2)
    if experiment is None and (storage or endpoint_url):
        console.print("[red]--storage and --endpoint-url need --experiment[/]")
        raise typer.Exit(2)
    spec = ParitySpec(non_production=non_production)
    with tempfile.TemporaryDirectory(prefix="parity-") as work:
        store = None
        if experiment is not None:
            try:
                store = open_storage(storage, endpoint_url=endpoint_url)
                onnx_path = local_model_folder(store, experiment, "fp32", work) / MODEL_FILE
            except OrdinalError as exc:
                console.print(f"[red]{exc}: run `ordinal export` first[/]", soft_wrap=True)
                raise typer.Exit(2) from None
        assert onnx_path is not None
        report_dir = out_dir or onnx_path.parent / "parity"
        try:
            report = check_parity(
                model_dir,
                onnx_path,
                _records(data, demo_size, demo_seed),
                spec,
                report_dir,
                _say,
            )
        except ParityError as exc:
            console.print(f"[bold red]parity FAILED[/]: {exc}")
            _store_parity(store, experiment, report_dir)
            raise typer.Exit(1) from None
        except (ValueError, FileNotFoundError) as exc:  # too few samples, bad graph or inputs
            console.print(f"[bold red]parity not run[/]: {exc}")
            raise typer.Exit(2) from None
        _parity_table(report)
        _store_parity(store, experiment, report_dir)


def _store_parity(store: Any, experiment: str | None, report_dir: Path) -> None:
    """With --experiment: the reports and reference.npz go to the storage root's fp32/parity/."""
    from ordinal.export.parity import parity_prefix, store_parity_folder

    if store is None or experiment is None:
        return
    keys = store_parity_folder(report_dir, experiment, store)
    print(f"stored: {store.url}/{parity_prefix(experiment)}/ ({len(keys)} files)")


def _parity_table(report: Any) -> None:
    table = Table(title=report.title)
    for column in ("output", "max abs delta", "max rel delta", "verdict"):
        table.add_column(column)
    for name, s in report.outputs.items():
        table.add_row(
            name, f"{s['max_abs']:.3g}", f"{s['max_rel']:.3g}", "pass" if s["passed"] else "FAIL"
        )
    table.add_row("label agreement", f"{report.label_agreement:.2%}", "", "")
    console.print(table)
    print(f"report: {report.files['markdown']}")


@export_app.command("parity-recheck")
def parity_recheck_cmd(
    models_root: Annotated[
        str | None,
        typer.Argument(
            help="A models/onnx folder, one model.onnx, or a storage root URL (s3://...)"
        ),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(help="Recheck every retained model of this storage root (default: local)"),
    ] = None,
    endpoint_url: Annotated[
        str | None, typer.Option(help="S3-compatible endpoint (default: $ORDINAL_S3_ENDPOINT_URL)")
    ] = None,
) -> None:
    """Re-check retained models against their stored parity references (dependency drift)."""
    if models_root is not None and storage is not None:
        console.print("[red]give a models folder or --storage, not both[/]")
        raise typer.Exit(2)
    if models_root is not None and "://" not in models_root:
        _recheck_local(Path(models_root))
    else:
        _recheck_storage(models_root or storage, endpoint_url)


def _recheck_local(models_root: Path) -> None:
    from ordinal.export.errors import GraphError, ParityError
    from ordinal.export.parity import ParitySpec, recheck_parity

    paths = (
        [models_root]
        if models_root.suffix == ".onnx"
        else sorted(models_root.glob("*/fp32/model.onnx"))
    )
    if not paths:
        console.print(f"[red]no retained models under {models_root}[/]")
        raise typer.Exit(2)
    failed = 0
    for path in paths:
        try:
            report = recheck_parity(path, ParitySpec(non_production=True))
            console.print(f"[green]ok[/]   {path} ({report.num_samples} samples)")
        except (ParityError, FileNotFoundError, GraphError) as exc:
            failed += 1
            console.print(f"[red]FAIL[/] {path}: {exc}")
    if failed:
        raise typer.Exit(1)


def _recheck_storage(url: str | None, endpoint_url: str | None) -> None:
    """Every stored fp32 model with a stored parity reference, rechecked on a local copy."""
    from ordinal.artifacts import open_storage
    from ordinal.exceptions import OrdinalError
    from ordinal.export.errors import GraphError, ParityError
    from ordinal.export.parity import (
        RECHECK_DIR,
        ParitySpec,
        fetch_for_recheck,
        recheck_parity,
        store_parity_folder,
        stored_parity_experiments,
    )

    try:
        store = open_storage(url, endpoint_url=endpoint_url)
        experiments = stored_parity_experiments(store)
    except OrdinalError as exc:
        console.print(f"[red]{exc}[/]", soft_wrap=True)
        raise typer.Exit(2) from None
    if not experiments:
        console.print(
            f"[red]no retained models in {store.url}[/] "
            "(models/onnx/*/fp32/model.onnx with fp32/parity/reference.npz)"
        )
        raise typer.Exit(2)
    failed = 0
    for experiment in experiments:
        where = f"{store.url}/models/onnx/{experiment}/fp32"
        with tempfile.TemporaryDirectory(prefix="recheck-") as work:
            try:
                path = fetch_for_recheck(store, experiment, work)
                out = path.parent / RECHECK_DIR
                try:
                    report = recheck_parity(path, ParitySpec(non_production=True), out)
                finally:
                    if out.is_dir():
                        store_parity_folder(out, experiment, store, RECHECK_DIR)
                console.print(f"[green]ok[/]   {where} ({report.num_samples} samples)")
            except (ParityError, FileNotFoundError, GraphError, OrdinalError) as exc:
                failed += 1
                console.print(f"[red]FAIL[/] {where}: {exc}", soft_wrap=True)
    if failed:
        raise typer.Exit(1)


@export_app.command("quantize")
def quantize_cmd(
    experiment: Annotated[str, typer.Argument(help="Experiment whose fp32/ model to quantise")],
    calibration: Annotated[str, typer.Option(help="Dataset whose stored calibration set to use")],
    preset: Annotated[
        str,
        typer.Option(
            help="auto (the model family's default: fused for BERT-like, static for ViT), "
            "fused (static MatMul + fused QAttention), static, dynamic"
        ),
    ] = "auto",
    data: Annotated[
        Path | None, typer.Option(help="Held-out CSV/JSONL for the accuracy gate")
    ] = None,
    demo_size: Annotated[
        int, typer.Option(help="Held-out demo reviews when --data is absent")
    ] = 500,
    demo_seed: Annotated[int, typer.Option(help="Seed of the held-out demo reviews")] = 1001,
    storage: Annotated[
        str | None, typer.Option(help="Storage root URL (default: local store)")
    ] = None,
    non_production: Annotated[
        bool, typer.Option(help="Allow < 500 gate samples (labelled report)")
    ] = False,
    calibration_version: Annotated[
        str | None, typer.Option(help="Dataset version the calibration set must come from")
    ] = None,
    selection_dir: Annotated[
        Path | None,
        typer.Option(
            help="Committed calibration selections (default: the project's)",
            envvar="ORDINAL_CALIBRATION_DIR",
        ),
    ] = None,
) -> None:
    """Static INT8 quantisation on the stored calibration set, then the INT8 accuracy gate."""
    from ordinal.artifacts import open_storage
    from ordinal.exceptions import OrdinalError
    from ordinal.export.errors import ExportError, QuantizationError
    from ordinal.export.onnx_export import MODEL_FILE, local_model_folder
    from ordinal.export.quantize import (
        QuantizeSpec,
        evaluate_int8,
        load_calibration_set,
        model_family,
        quantize_onnx,
    )

    store = open_storage(storage)
    try:
        fp32_dir = local_model_folder(store, experiment, "fp32", tempfile.mkdtemp(prefix="fp32-"))
    except ExportError as exc:
        console.print(f"[red]{exc}: run `ordinal export` first[/]", soft_wrap=True)
        raise typer.Exit(2) from None
    fp32 = fp32_dir / MODEL_FILE
    try:
        spec = QuantizeSpec.preset(preset, family=model_family(fp32_dir))
        if non_production:
            spec = spec.smoke()
    except (ValueError, QuantizationError) as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    try:
        cal = load_calibration_set(
            calibration, store, selection_dir=selection_dir, version=calibration_version
        )
    except OrdinalError as exc:  # no committed selection, or a stored set that differs
        console.print(f"[bold red]calibration set refused[/]: {exc}", soft_wrap=True)
        raise typer.Exit(1) from None
    int8, _ = quantize_onnx(fp32.parent, cal, experiment, spec=spec, storage=store, progress=_say)
    if int8 is None:  # remote storage: the gate runs on a local copy of what was stored
        int8 = local_model_folder(store, experiment, "int8", fp32_dir.parent) / MODEL_FILE
    try:
        report = evaluate_int8(fp32, int8, _records(data, demo_size, demo_seed), spec)
    except QuantizationError as exc:  # too few samples for the gate
        console.print(f"[bold red]INT8 gate not run[/]: {exc}")
        raise typer.Exit(2) from None
    table = Table(title=f"INT8 ({preset}) vs FP32 on {report.num_samples} held-out samples")
    for column in ("", "MAE", "QWK", "accuracy", f"latency ms (batch {spec.latency_batch})"):
        table.add_column(column)
    for name in ("fp32", "int8"):
        s = getattr(report, name)
        table.add_row(
            name,
            f"{s['mae']:.4f}",
            f"{s['qwk']:.4f}",
            f"{s['accuracy']:.4f}",
            f"{report.latency_ms[name]:.1f}",
        )
    console.print(table)
    d = report.mae_delta
    console.print(
        f"MAE change {d['estimate']:+.4f} ({report.mae_increase:+.2%}), "
        f"{d['confidence']:.0%} interval [{d['low']:+.4f}, {d['high']:+.4f}] on {d['n']} samples "
        f"against a margin of {report.mae_margin:.4f}: {report.verdict}; "
        f"max probability delta {report.max_prob_delta:.3g}"
        + (
            " [yellow](NON-PRODUCTION: fewer samples than the gate needs)[/]"
            if report.non_production
            else ""
        )
    )
    print(f"model: {int8}")
    if not report.passed:
        console.print(f"[bold red]INT8 gate FAILED[/]: {'; '.join(report.failures)}")
        raise typer.Exit(1)
