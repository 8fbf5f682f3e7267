"""``add-source``: checksum, validate and append an entry to a registry, keeping the file."""

from __future__ import annotations

import http.server
import shutil
import threading
from pathlib import Path

import boto3
import pytest
import yaml
from dl_helpers import write_csv
from typer.testing import CliRunner

from ordinal.artifacts.checksums import sha256_file, sha256_tree
from ordinal.data import (
    MissingColumnError,
    RegistryError,
    SourceExistsError,
    add_source,
    ingest,
    load_registry,
    load_split,
    packaged_registry_path,
    preprocess,
    write_shapes,
)
from ordinal.data.cli import data_app

REPO = Path(__file__).resolve().parents[2]
WHO = {"licence": "CC-BY-4.0", "owner": "data team"}
SCALE10 = [str(i) for i in range(1, 11)]


def _ratings(path: Path, n: int = 40) -> Path:
    rows = [(f"u{i}", f"my review {i}", str(1 + i % 10)) for i in range(n)]
    return write_csv(path, rows, header="review_id,body,stars")


def _repo_registry_copy(tmp_path: Path) -> Path:
    target = tmp_path / "approved.yaml"
    shutil.copyfile(packaged_registry_path(), target)
    return target


def test_appends_to_a_commented_registry_and_ingests(tmp_path, local_store):
    reg = _repo_registry_copy(tmp_path)
    before = reg.read_text()
    src = _ratings(tmp_path / "data" / "ratings.csv")
    added = add_source(
        src,
        name="my-ratings",
        dataset="ratings",
        labels=SCALE10,
        columns={"id": "review_id", "text": "body", "label": "stars"},
        registry=reg,
        **WHO,
    )
    after = reg.read_text()
    old_version = yaml.safe_load(before)["registry_version"]
    # Everything that was there is still there, byte for byte, except the bumped version.
    bumped = before.replace(
        f"registry_version: {old_version}", f"registry_version: {old_version + 1}", 1
    )
    assert after.startswith(bumped)
    assert after.count("#") == before.count("#")
    assert added.registry_version == old_version + 1
    spec = load_registry(reg).get("my-ratings")
    assert spec.sha256 == sha256_file(src).sha256
    assert spec.uri == src.resolve().as_uri()
    assert spec.format == "csv" and spec.label_values == "name"
    assert spec.columns.text == "body"
    assert load_registry(reg).names() == sorted(
        [*load_registry(packaged_registry_path()).names(), "my-ratings"]
    )
    assert added.label_counts == dict.fromkeys(SCALE10, 4) and added.unmatched == {}
    ingest("my-ratings", registry=reg, storage=local_store)
    preprocess("ratings", "v1", storage=local_store)
    rows = {
        r["id"]: r["label"]
        for s in ("train", "validation", "test")
        for r in load_split("ratings", "v1", s, storage=local_store)
    }
    assert rows["u9"] == 9 and rows["u0"] == 0


def test_folder_uses_the_listing_checksum_and_creates_the_registry(tmp_path):
    folder = write_shapes(tmp_path / "shapes", n=6, seed=3, image_size=16)
    reg = tmp_path / "new" / "sources.yaml"
    added = add_source(
        folder,
        name="shp",
        dataset="shp",
        labels=["1 shape", "2 shapes", "3 shapes", "4 shapes", "5 shapes"],
        label_values="index",
        registry=reg,
        **WHO,
    )
    assert added.created and added.registry_version == 1
    spec = load_registry(reg).get("shp")
    assert spec.format == "image_folder"
    assert spec.sha256 == sha256_tree(folder)
    assert added.records == 6 and sum(added.label_counts.values()) == 6


def test_refusals_leave_the_registry_untouched(tmp_path):
    reg = _repo_registry_copy(tmp_path)
    src = _ratings(tmp_path / "ratings.csv")
    cols = {"id": "review_id", "text": "body", "label": "stars"}
    add_source(
        src, name="mine", dataset="ratings", labels=SCALE10, columns=cols, registry=reg, **WHO
    )
    before = reg.read_bytes()
    with pytest.raises(SourceExistsError, match="a source named 'mine'"):
        add_source(
            src, name="mine", dataset="other", labels=SCALE10, columns=cols, registry=reg, **WHO
        )
    with pytest.raises(SourceExistsError, match="already makes ratings/v1"):
        add_source(
            src, name="mine2", dataset="ratings", labels=SCALE10, columns=cols, registry=reg, **WHO
        )
    with pytest.raises(SourceExistsError, match="demo-reviews"):
        add_source(
            src, name="demo-reviews", dataset="x", labels=SCALE10, columns=cols, registry=reg, **WHO
        )
    with pytest.raises(RegistryError, match="source 'bad'.*not '0'..'9'") as err:
        add_source(
            src,
            name="bad",
            dataset="b",
            labels=SCALE10,
            label_values="index",
            columns=cols,
            registry=reg,
            **WHO,
        )
    assert err.value.entries == ["source 'bad'"]
    with pytest.raises(RegistryError, match="licence"):
        add_source(
            src,
            name="nolic",
            dataset="n",
            labels=SCALE10,
            columns=cols,
            registry=reg,
            licence="",
            owner="x",
        )
    with pytest.raises(MissingColumnError) as missing:
        add_source(src, name="nocol", dataset="n", labels=SCALE10, registry=reg, **WHO)
    assert missing.value.field == "id" and "review_id" in missing.value.available
    with pytest.raises(RegistryError, match="unsupported URI scheme"):
        add_source("ftp://host/x.csv", name="ftp", dataset="f", labels=SCALE10, registry=reg, **WHO)
    assert reg.read_bytes() == before
    assert not list(tmp_path.glob(".approved.yaml.*"))  # no temporary file left behind


def test_a_linked_registry_stays_a_link(tmp_path):
    real = _repo_registry_copy(tmp_path)
    (tmp_path / "sources").mkdir()
    link = tmp_path / "sources" / "approved.yaml"
    link.symlink_to(real)
    src = _ratings(tmp_path / "ratings.csv")
    add_source(
        src,
        name="mine",
        dataset="r",
        labels=SCALE10,
        columns={"id": "review_id", "text": "body", "label": "stars"},
        registry=link,
        **WHO,
    )
    assert link.is_symlink()
    assert "mine" in load_registry(real).names()


def test_concurrent_additions_both_land(tmp_path):
    reg = _repo_registry_copy(tmp_path)
    cols = {"id": "review_id", "text": "body", "label": "stars"}
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            src = _ratings(tmp_path / f"r{i}.csv", n=20 + i)
            add_source(
                src,
                name=f"s{i}",
                dataset=f"d{i}",
                labels=SCALE10,
                columns=cols,
                registry=reg,
                **WHO,
            )
        except BaseException as exc:  # collected and re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    loaded = load_registry(reg)
    assert {f"s{i}" for i in range(4)} <= set(loaded.names())
    old = yaml.safe_load(packaged_registry_path().read_text())["registry_version"]
    assert loaded.registry_version == old + 4


def test_uris_are_fetched_once_to_be_hashed(tmp_path, moto_endpoint):
    src = _ratings(tmp_path / "www" / "ratings.csv")
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="drops")
    client.upload_file(str(src), "drops", "in/ratings.csv")
    reg = tmp_path / "r.yaml"
    cols = {"id": "review_id", "text": "body", "label": "stars"}
    added = add_source(
        "s3://drops/in/ratings.csv",
        name="s3r",
        dataset="s3r",
        labels=SCALE10,
        columns=cols,
        registry=reg,
        endpoint_url=moto_endpoint,
        **WHO,
    )
    assert added.source.sha256 == sha256_file(src).sha256

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(tmp_path / "www"), **kw)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        uri = f"http://127.0.0.1:{server.server_address[1]}/ratings.csv"
        added = add_source(
            uri, name="web", dataset="web", labels=SCALE10, columns=cols, registry=reg, **WHO
        )
    finally:
        server.shutdown()
        server.server_close()
    assert added.source.sha256 == sha256_file(src).sha256 and added.source.uri == uri
    assert load_registry(reg).names() == ["s3r", "web"]


# ------------------------------------------------------------------ the commands


def _run(*args):
    return CliRunner().invoke(data_app, list(args))


def test_cli_add_source_ingest_preprocess(tmp_path, monkeypatch):
    """The user's path from a folder of their own: register, ingest, preprocess with options."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("ORDINAL_STORAGE_URL", str(tmp_path / "store"))
    rows = [(f"u{i}", f"my review {i}", str(1 + i % 10)) for i in range(60)]
    rows += [("x1", "out of scale", "11"), ("x2", "", "3")]
    write_csv(tmp_path / "ratings.csv", rows, header="review_id,body,stars")
    res = _run(
        "add-source", "ratings.csv", "--name", "mine", "--dataset", "ratings", "--labels", "1..10",
        "--id-column", "review_id", "--text-column", "body", "--label-column", "stars",
        "--licence", "CC0-1.0", "--owner", "me",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "'11' x1" in res.output and "created" in res.output
    assert (tmp_path / "sources" / "approved.yaml").is_file()  # ./sources/approved.yaml
    res = _run(
        "add-source",
        "ratings.csv",
        "--name",
        "mine",
        "--dataset",
        "r2",
        "--labels",
        "1..10",
        "--licence",
        "x",
        "--owner",
        "y",
    )
    assert res.exit_code == 1 and "SourceExistsError" in res.output
    res = _run(
        "add-source",
        "ratings.csv",
        "--name",
        "bad",
        "--dataset",
        "r3",
        "--labels",
        "1..10",
        "--label-values",
        "index",
        "--licence",
        "x",
        "--owner",
        "y",
    )
    assert res.exit_code == 2 and "source 'bad'" in res.output
    assert _run("ingest", "mine").exit_code == 0  # found in ./sources/approved.yaml
    res = _run("preprocess", "ratings", "--min-text-chars", "12")
    assert res.exit_code == 1 and "RejectionThresholdError" in res.output
    res = _run(
        "preprocess", "ratings", "--max-rejected-fraction", "0.25", "--train", "0.6",
        "--validation", "0.2", "--test", "0.2", "--min-text-chars", "12",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "text_too_short" in res.output and "label_not_in_set" in res.output
    assert "│ accepted                   │ 50 " in res.output  # 62 - 10 short - 2
    assert "id=review_id, text=body, label=stars" in res.output


def test_every_preprocess_option_is_on_the_command_line(tmp_path, monkeypatch):
    """Each PreprocessSpec option (PREPROCESS_OPTIONS) is a `preprocess` option and reaches
    the spec recorded in the processed manifest."""
    import typer.main

    from ordinal.artifacts import LocalStorage, layout, read_manifest
    from ordinal.data import PREPROCESS_OPTIONS, PreprocessSpec

    command = typer.main.get_command(data_app).commands["preprocess"]  # type: ignore[attr-defined]
    params = {p.name for p in command.params if getattr(p, "param_type_name", "") == "option"}
    assert set(PREPROCESS_OPTIONS) <= params
    # Every spec field is reachable from the flat options.
    assert set(PreprocessSpec.model_fields) <= {*PREPROCESS_OPTIONS, "columns", "split"}
    monkeypatch.setenv("ORDINAL_STORAGE_URL", str(tmp_path / "store"))
    write_csv(
        tmp_path / "d.csv",
        [(f"k{i}", f"t{i} body", ["lo", "hi"][i % 2]) for i in range(40)],
        header="k,t,y",
    )
    reg = tmp_path / "r.yaml"
    monkeypatch.setenv("ORDINAL_SOURCES", str(reg))
    assert (
        _run(
            "add-source",
            str(tmp_path / "d.csv"),
            "--name",
            "d",
            "--dataset",
            "d",
            "--labels",
            "lo,hi",
            "--id-column",
            "k",
            "--text-column",
            "t",
            "--label-column",
            "y",
            "--licence",
            "x",
            "--owner",
            "y",
        ).exit_code
        == 0
    )
    assert _run("ingest", "d").exit_code == 0
    args = {
        "--labels": "lo,hi", "--label-values": "name", "--id-column": "k", "--text-column": "t",
        "--label-column": "y", "--file-column": "f", "--labels-file": "l.csv",
        "--min-text-chars": "2", "--max-text-chars": "30", "--max-rejected-fraction": "0.2",
        "--max-duplicate-fraction": "0.3", "--train": "0.5", "--validation": "0.25",
        "--test": "0.25", "--split-salt": "s1", "--format": "parquet", "--image-modes": "RGB,L",
        "--min-image-side": "4", "--max-image-side": "64",
    }  # fmt: skip
    res = _run("preprocess", "d", "--no-dedupe", *[x for kv in args.items() for x in kv])
    assert res.exit_code == 0, res.output
    store = LocalStorage(tmp_path / "store")
    manifest = read_manifest(store, layout.processed_manifest("d", "v1"))
    spec = PreprocessSpec.model_validate(manifest.parameters["spec"])
    assert spec == PreprocessSpec(
        labels=("lo", "hi"), label_values="name",
        columns={"id": "k", "text": "t", "label": "y", "file": "f"}, labels_file="l.csv",
        min_text_chars=2, max_text_chars=30, max_rejected_fraction=0.2,
        max_duplicate_fraction=0.3, dedupe=False,
        split={"train": 0.5, "validation": 0.25, "test": 0.25, "salt": "s1"},
        output_format="parquet", image_modes=("RGB", "L"), min_image_side=4, max_image_side=64,
    )  # fmt: skip


def test_the_packaged_registry_ships_in_the_wheel_and_is_found_outside_the_repo(tmp_path):
    """Installed (not editable) and run from another folder, the default registry is the copy
    inside the installed package. Builds a wheel of the checkout without build isolation."""
    import subprocess
    import sys
    import tomllib

    src = tmp_path / "src"
    src.mkdir()
    project = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))
    data_files = project["tool"]["setuptools"].get("data-files", {})
    tops = {"ordinal", "pipelines"} | {g.split("/")[0] for v in data_files.values() for g in v}
    skip = shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints", "*.egg-info")
    for name in sorted(tops):
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = ["wheel", "--no-deps", "--no-build-isolation", str(src), "-w", str(tmp_path / "w")]
    subprocess.run([*pip, *build], check=True, capture_output=True)
    wheel = next((tmp_path / "w").glob("ordinal-*.whl"))
    import zipfile

    shipped = "ordinal/data/registry/approved.yaml"
    assert shipped in zipfile.ZipFile(wheel).namelist(), (
        'the wheel lacks the registry: pyproject.toml needs "data/registry/*.yaml" in '
        "[tool.setuptools.package-data] ordinal"
    )
    install = ["install", "--no-deps", "--no-compile", "--target", str(tmp_path / "site")]
    subprocess.run([*pip, *install, str(wheel)], check=True, capture_output=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = (
        "import ordinal.data as d; from ordinal.data.cli import data_app; "
        "p = d.default_registry_path(); print(d.__file__); print(p); "
        "print(','.join(d.load_registry().names())); "
        "data_app(['ingest', 'demo-reviews', '--storage', 'store'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=elsewhere,
        env={
            "PYTHONPATH": str(tmp_path / "site"),
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "COLUMNS": "200",
            "ORDINAL_HOME": str(elsewhere / ".ordinal"),
        },
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    module, registry, names = out.stdout.splitlines()[:3]
    assert module.startswith(str(tmp_path / "site"))
    assert registry == str(tmp_path / "site" / "ordinal" / "data" / "registry" / "approved.yaml")
    assert "demo-reviews" in names.split(",")
    assert (elsewhere / "store" / "datasets" / "raw" / "reviews" / "v1" / "manifest.json").is_file()
