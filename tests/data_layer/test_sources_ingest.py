"""The approved-source registry and checksummed ingestion (write-once raw data)."""

from __future__ import annotations

import http.server
import shutil
import threading
from pathlib import Path

import boto3
import pytest
from dl_helpers import CutProxy, file_source, good_rows, make_registry, write_csv

from ordinal.artifacts import (
    EMPTY_SHA256,
    S3Storage,
    StorageError,
    layout,
    read_manifest,
    sha256_file,
    sha256_tree,
)
from ordinal.data import (
    EmptyDatasetError,
    RawDataConflictError,
    RegistryError,
    SourceChecksumError,
    SourceFetchError,
    SourceNotApprovedError,
    ingest,
    load_registry,
    write_reviews,
    write_shapes,
)
from ordinal.data.sources import (
    SourceSpec,
    default_registry_path,
    fetch_source,
    packaged_registry_path,
)

REPO = Path(__file__).resolve().parents[2]


def test_repository_registry_is_valid_and_has_the_demo_datasets():
    reg = load_registry(REPO / "sources" / "approved.yaml")
    assert {"demo-reviews", "demo-shapes"} <= set(reg.names())
    shapes = reg.get("demo-shapes")
    assert shapes.format == "image_folder"
    assert shapes.kind == "image"
    assert reg.for_dataset("reviews", "v1").name == "demo-reviews"
    assert reg.get("demo-reviews").kind == "text"


def test_recorded_demo_sums_match_the_generators(tmp_path, demo_store):
    reg = load_registry(REPO / "sources" / "approved.yaml")
    # demo_store ingested every registry entry: ingestion re-generated the bytes and compared
    # them with the pinned sha256 (it refuses a mismatch), and recorded what it found.
    for name in reg.names():
        spec = reg.get(name)
        m = read_manifest(demo_store, layout.raw_manifest(spec.dataset, spec.version))
        assert m.parameters["source_sha256"] == spec.sha256, f"{name}: update the registry"
        assert m.inputs[0].uri == spec.uri
    # And by hand, independent of URI parsing, for the file and the folder checksum:
    csv_path = write_reviews(tmp_path / "by-hand" / "reviews.csv", n=3000, seed=0, fmt="csv")
    assert sha256_file(csv_path).sha256 == reg.get("demo-reviews").sha256
    raw = demo_store.local_path(layout.raw_dir("shapes", "v1"))
    listing = [p for p in raw.rglob("*") if p.is_file() and p.name != "manifest.json"]
    assert len(listing) == 1001
    shutil.copytree(raw, tmp_path / "shapes", ignore=shutil.ignore_patterns("manifest.json"))
    assert sha256_tree(tmp_path / "shapes") == reg.get("demo-shapes").sha256


def test_demo_shapes_regenerate_identically(tmp_path):
    # A small folder twice: the generator is byte-deterministic, so the pin is meaningful.
    a = write_shapes(tmp_path / "a", n=20, seed=0, image_size=64)
    b = write_shapes(tmp_path / "b", n=20, seed=0, image_size=64)
    assert sha256_tree(a) == sha256_tree(b)


def test_default_registry_path(monkeypatch, tmp_path):
    """$ORDINAL_SOURCES, then ./sources/approved.yaml, then the copy inside the package:
    never a path relative to a repository checkout."""
    import ordinal.data

    monkeypatch.chdir(tmp_path)
    shipped = default_registry_path()
    assert shipped == packaged_registry_path()
    assert shipped.is_relative_to(Path(ordinal.data.__file__).resolve().parent)
    assert load_registry().names() == load_registry(REPO / "sources" / "approved.yaml").names()
    (tmp_path / "sources").mkdir()
    (tmp_path / "sources" / "approved.yaml").write_text("registry_version: 1\nsources: []\n")
    assert default_registry_path() == tmp_path / "sources" / "approved.yaml"
    assert load_registry().names() == []
    monkeypatch.setenv("ORDINAL_SOURCES", str(tmp_path / "r.yaml"))
    assert default_registry_path() == tmp_path / "r.yaml"


def test_repository_registry_is_the_packaged_one():
    """One source of truth: the checkout's sources/approved.yaml links to the package copy."""
    link = REPO / "sources" / "approved.yaml"
    assert link.is_symlink()
    assert link.resolve() == packaged_registry_path()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("sources: [", "not valid YAML"),
        ("- 1", "mapping"),
        ("registry_version: 1\nsources:\n  - name: x\n", "invalid registry"),
    ],
)
def test_malformed_registry(tmp_path, text, match):
    p = tmp_path / "r.yaml"
    p.write_text(text)
    with pytest.raises(RegistryError, match=match):
        load_registry(p)
    with pytest.raises(RegistryError, match="not found"):
        load_registry(tmp_path / "missing.yaml")


def test_registry_rules(tmp_path):
    f = write_csv(tmp_path / "a.csv", good_rows(3))
    base = file_source(f, "a")
    with pytest.raises(RegistryError, match="duplicate source names"):
        load_registry(make_registry(tmp_path / "r1.yaml", [base, base]))
    with pytest.raises(RegistryError, match="more than one source"):
        load_registry(
            make_registry(tmp_path / "r2.yaml", [base, {**base, "name": "b", "dataset": "a"}])
        )
    with pytest.raises(RegistryError, match="unsupported URI scheme"):
        load_registry(make_registry(tmp_path / "r3.yaml", [{**base, "uri": "ftp://x/y"}]))
    with pytest.raises(RegistryError, match="loopback"):
        load_registry(
            make_registry(tmp_path / "r4.yaml", [{**base, "uri": "http://example.com/a"}])
        )
    with pytest.raises(RegistryError, match="credentials in a source URI"):
        load_registry(
            make_registry(tmp_path / "r6.yaml", [{**base, "uri": "https://u:p@example.com/a.csv"}])
        )
    presigned = "https://b.s3.amazonaws.com/a.csv?X-Amz-Credential=AKIA&X-Amz-Signature=abc"
    with pytest.raises(RegistryError, match="secret-looking query parameters"):
        load_registry(make_registry(tmp_path / "r7.yaml", [{**base, "uri": presigned}]))
    with pytest.raises(RegistryError, match="labels must be unique"):
        load_registry(make_registry(tmp_path / "r5.yaml", [{**base, "labels": ["a", "a"]}]))


def test_source_not_approved(tmp_path, local_store):
    reg = make_registry(
        tmp_path / "r.yaml", [file_source(write_csv(tmp_path / "a.csv", good_rows(3)), "a")]
    )
    with pytest.raises(SourceNotApprovedError) as err:
        ingest("not-there", registry=reg, storage=local_store)
    assert err.value.source == "not-there"
    assert err.value.approved == ["a"]
    assert "not an approved source" in str(err.value)
    assert local_store.list("datasets") == []


def test_ingest_records_checksums_and_is_idempotent(tmp_path, local_store):
    f = write_csv(tmp_path / "src" / "data.csv", good_rows(20))
    reg = make_registry(tmp_path / "r.yaml", [file_source(f, "ds")])
    progress = []
    first = ingest("ds", registry=reg, storage=local_store, progress=lambda *a: progress.append(a))
    assert first.created
    assert progress == [("upload", 1, 1)]
    key = "datasets/raw/ds/v1/data.csv"
    assert local_store.get_bytes(key) == f.read_bytes()
    m = read_manifest(local_store, layout.raw_manifest("ds", "v1"))
    assert m.phase == "ingest"
    assert m.outputs[0].path == key
    assert m.outputs[0].sha256 == sha256_file(f).sha256
    assert m.outputs[0].size == f.stat().st_size
    assert m.inputs[0].uri == f.resolve().as_uri()
    assert m.parameters["licence"] == "CC0-1.0"
    assert m.parameters["owner"] == "tests"
    assert m.record_counts == {"files": 1, "bytes": f.stat().st_size}
    before = local_store.sha256(layout.raw_manifest("ds", "v1"))
    again = ingest("ds", registry=reg, storage=local_store)
    assert not again.created
    assert local_store.sha256(layout.raw_manifest("ds", "v1")) == before  # nothing rewritten
    assert again.size == f.stat().st_size
    assert len(again.files) == 1


def test_wrong_checksum_names_source_and_both_sums(tmp_path, local_store):
    f = write_csv(tmp_path / "data.csv", good_rows(5))
    reg = make_registry(tmp_path / "r.yaml", [{**file_source(f, "ds"), "sha256": "a" * 64}])
    with pytest.raises(SourceChecksumError) as err:
        ingest("ds", registry=reg, storage=local_store)
    msg = str(err.value)
    assert "'ds'" in msg
    assert "a" * 64 in msg
    assert sha256_file(f).sha256 in msg
    assert local_store.list("datasets") == []


def test_truncated_file_is_refused(tmp_path, local_store):
    f = write_csv(tmp_path / "data.csv", good_rows(50))
    reg = make_registry(tmp_path / "r.yaml", [file_source(f, "ds")])
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])  # a download cut short
    with pytest.raises(SourceChecksumError) as err:
        ingest("ds", registry=reg, storage=local_store)
    assert err.value.actual == sha256_file(f).sha256
    assert not local_store.exists(layout.raw_manifest("ds", "v1"))


def test_zero_byte_file_is_refused(tmp_path, local_store):
    f = tmp_path / "empty.csv"
    f.write_bytes(b"")
    reg = make_registry(tmp_path / "r.yaml", [{**file_source(f, "ds"), "sha256": EMPTY_SHA256}])
    with pytest.raises(EmptyDatasetError, match="0-byte"):
        ingest("ds", registry=reg, storage=local_store)
    assert local_store.list("datasets") == []


def test_missing_source_file(tmp_path, local_store):
    reg = make_registry(
        tmp_path / "r.yaml",
        [{"name": "ds", "uri": (tmp_path / "nope.csv").as_uri(), "sha256": "b" * 64}],
    )
    with pytest.raises(SourceFetchError, match="cannot fetch source 'ds'"):
        ingest("ds", registry=reg, storage=local_store)


def test_raw_is_write_once(tmp_path, local_store):
    a = write_csv(tmp_path / "a" / "data.csv", good_rows(5))
    b = write_csv(tmp_path / "b" / "data.csv", good_rows(6))
    ingest(
        "ds",
        registry=make_registry(tmp_path / "r1.yaml", [file_source(a, "ds")]),
        storage=local_store,
    )
    reg2 = make_registry(tmp_path / "r2.yaml", [file_source(b, "ds")])
    with pytest.raises(RawDataConflictError) as err:
        ingest("ds", registry=reg2, storage=local_store)
    old, new = sha256_file(a).sha256, sha256_file(b).sha256
    assert err.value.expected == old
    assert err.value.actual == new
    assert old in str(err.value)
    assert new in str(err.value)
    assert local_store.get_bytes("datasets/raw/ds/v1/data.csv") == a.read_bytes()


def test_ingest_image_folder_uses_listing_checksum(tmp_path, local_store):
    folder = write_shapes(tmp_path / "shapes", n=12, seed=1, image_size=32)
    reg = make_registry(tmp_path / "r.yaml", [file_source(folder, "shp", format="image_folder")])
    res = ingest("shp", registry=reg, storage=local_store)
    assert len(res.files) == 13  # 12 images + labels.csv
    assert res.manifest.parameters["source_sha256"] == sha256_tree(folder)
    assert local_store.exists("datasets/raw/shp/v1/images/img-000001.png")
    assert local_store.exists("datasets/raw/shp/v1/labels.csv")


def test_ingest_from_loopback_http(tmp_path, local_store):
    f = write_csv(tmp_path / "www" / "data.csv", good_rows(10))

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(tmp_path / "www"), **kw)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        entry = {**file_source(f, "web"), "uri": f"http://127.0.0.1:{port}/data.csv"}
        missing = {
            **entry,
            "name": "gone",
            "dataset": "gone",
            "uri": f"http://127.0.0.1:{port}/x.csv",
        }
        reg = make_registry(tmp_path / "r.yaml", [entry, missing])
        res = ingest("web", registry=reg, storage=local_store)
        assert res.created
        assert local_store.get_bytes("datasets/raw/web/v1/data.csv") == f.read_bytes()
        with pytest.raises(SourceFetchError, match="404"):
            ingest("gone", registry=reg, storage=local_store)
    finally:
        server.shutdown()


def test_ingest_s3_source_into_s3_storage(tmp_path, moto_endpoint, s3_store, monkeypatch):
    f = write_csv(tmp_path / "data.csv", good_rows(10))
    folder = write_shapes(tmp_path / "shapes", n=4, seed=2, image_size=16)
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="landing")
    client.upload_file(str(f), "landing", "drops/data.csv")
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            client.upload_file(
                str(p), "landing", f"drops/shapes/{p.relative_to(folder).as_posix()}"
            )
    reg = make_registry(
        tmp_path / "r.yaml",
        [
            {**file_source(f, "s3src"), "uri": "s3://landing/drops/data.csv"},
            {
                **file_source(folder, "s3img", format="image_folder"),
                "uri": "s3://landing/drops/shapes",
            },
            {**file_source(f, "s3gone"), "uri": "s3://landing/drops/none.csv"},
        ],
    )
    res = ingest("s3src", registry=reg, storage=s3_store, endpoint_url=moto_endpoint)
    assert res.created
    assert s3_store.get_bytes("datasets/raw/s3src/v1/data.csv") == f.read_bytes()
    # The secret key from the environment is nowhere in the manifest.
    raw = s3_store.get_bytes(layout.raw_manifest("s3src", "v1"))
    assert b"testing-secret" not in raw
    assert b"AWS" not in raw
    monkeypatch.setenv("ORDINAL_S3_ENDPOINT_URL", moto_endpoint)
    img = ingest("s3img", registry=reg, storage=s3_store)
    assert len(img.files) == 5
    with pytest.raises(SourceFetchError, match="s3gone"):
        ingest("s3gone", registry=reg, storage=s3_store)


def test_ingest_interrupted_upload_leaves_no_manifest(tmp_path, moto_endpoint):
    folder = write_shapes(tmp_path / "shapes", n=40, seed=3, image_size=64)
    reg = make_registry(tmp_path / "r.yaml", [file_source(folder, "shp", format="image_folder")])
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="cut-ingest")
    proxy = CutProxy(int(moto_endpoint.rsplit(":", 1)[1]), budget=60_000)
    store = S3Storage("cut-ingest", endpoint_url=proxy.url, max_attempts=2, connect_timeout=2)
    with pytest.raises(StorageError):
        ingest("shp", registry=reg, storage=store)
    direct = S3Storage("cut-ingest", endpoint_url=moto_endpoint)
    assert not direct.exists(layout.raw_manifest("shp", "v1"))
    # Whatever did arrive is complete objects only, each with the right bytes.
    for key in direct.list("datasets"):
        rel = key.split("datasets/raw/shp/v1/", 1)[1]
        assert direct.sha256(key).sha256 == sha256_file(folder / rel).sha256


def test_unknown_demo_dataset_and_bad_parameters(tmp_path):
    spec = SourceSpec(
        name="d",
        dataset="d",
        version="v1",
        uri="demo://unknown",
        sha256="0" * 64,
        format="csv",
        labels=("a", "b"),
        licence="x",
        owner="y",
    )
    with pytest.raises(SourceFetchError, match="unknown demo dataset"):
        fetch_source(spec, tmp_path / "a")
    bad = spec.model_copy(update={"uri": "demo://reviews?n=abc"})
    with pytest.raises(SourceFetchError):
        fetch_source(bad, tmp_path / "b")
