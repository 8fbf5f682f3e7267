"""Checksums (streaming, folder listing) and the storage layout."""

from __future__ import annotations

import hashlib
import io
import tracemalloc

import pytest

from ordinal.artifacts import layout
from ordinal.artifacts.checksums import (
    EMPTY_SHA256,
    HashingReader,
    digest_tree,
    listing_sha256,
    sha256_bytes,
    sha256_file,
    sha256_stream,
    sha256_tree,
)
from ordinal.artifacts.errors import LayoutError


def test_sha256_file_matches_hashlib_across_chunk_boundaries(tmp_path):
    data = bytes(range(256)) * 9000 + b"tail"  # not a multiple of the chunk size
    p = tmp_path / "f.bin"
    p.write_bytes(data)
    d = sha256_file(p, chunk_size=4096)
    assert d.sha256 == hashlib.sha256(data).hexdigest()
    assert d.size == len(data)
    assert d.path == "f.bin"
    assert sha256_file(tmp_path / "f.bin").sha256 == d.sha256
    assert sha256_stream(io.BytesIO(data))[0] == d.sha256


def test_hashing_streams_without_loading_the_file(tmp_path):
    p = tmp_path / "big.bin"
    with p.open("wb") as fh:
        fh.truncate(64 * 1024 * 1024)  # 64 MiB sparse file
    tracemalloc.start()
    d = sha256_file(p)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert d.size == 64 * 1024 * 1024
    assert peak < 4 * 1024 * 1024, f"hashing held {peak} bytes"


def test_empty_sha_constant():
    assert sha256_bytes(b"") == EMPTY_SHA256


def test_tree_checksum_is_canonical_listing(tmp_path):
    a = tmp_path / "a"
    (a / "images").mkdir(parents=True)
    (a / "labels.csv").write_bytes(b"id,file,label\n")
    (a / "images" / "x.png").write_bytes(b"x")
    # Same content created in another order gives the same checksum.
    b = tmp_path / "b"
    (b / "images").mkdir(parents=True)
    (b / "images" / "x.png").write_bytes(b"x")
    (b / "labels.csv").write_bytes(b"id,file,label\n")
    assert sha256_tree(a) == sha256_tree(b)
    listing = "".join(
        f"{hashlib.sha256(c).hexdigest()}  {len(c)}  {n}\n"
        for n, c in [("images/x.png", b"x"), ("labels.csv", b"id,file,label\n")]
    )
    assert sha256_tree(a) == hashlib.sha256(listing.encode()).hexdigest()
    assert [d.path for d in digest_tree(a)] == ["images/x.png", "labels.csv"]
    # One byte or one name changed: a different checksum.
    (b / "images" / "x.png").write_bytes(b"y")
    assert sha256_tree(a) != sha256_tree(b)
    (b / "images" / "x.png").rename(b / "images" / "z.png")
    assert sha256_tree(b) != listing_sha256(digest_tree(a))


def test_tree_refuses_symlinks(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "link").symlink_to(tmp_path)
    with pytest.raises(ValueError, match="symbolic links"):
        sha256_tree(tmp_path / "d")


def test_hashing_reader_tracks_bytes_and_last_byte():
    r = HashingReader(io.BytesIO(b"abc\n"))
    assert r.read() == b"abc\n"
    assert r.hexdigest() == sha256_bytes(b"abc\n")
    assert r.last_byte == b"\n"
    assert r.size == 4


def test_layout_keys():
    assert layout.raw_dir("reviews", "v1") == "datasets/raw/reviews/v1"
    assert layout.raw_manifest("reviews", "v1") == "datasets/raw/reviews/v1/manifest.json"
    assert (
        layout.processed_split("reviews", "v1", "validation")
        == "datasets/processed/reviews/v1/validation"
    )
    assert layout.quarantine_dir("r", "v1") == "datasets/processed/r/v1/quarantine"
    assert layout.reports_dir("r", "v1") == "datasets/processed/r/v1/reports"
    assert layout.calibration_dir("reviews") == "datasets/processed/reviews/calibration"
    assert layout.calibration_manifest("r") == "datasets/processed/r/calibration/manifest.json"
    assert layout.onnx_dir("exp-1", "int8") == "models/onnx/exp-1/int8"
    assert layout.model_dir("checkpoints", "exp-1") == "models/checkpoints/exp-1"


@pytest.mark.parametrize("bad", ["", "../x", "a/b", ".hidden", "a..b", "x" * 200, "sp ace"])
def test_layout_refuses_unsafe_names(bad):
    with pytest.raises(LayoutError):
        layout.raw_dir(bad, "v1")


def test_layout_refuses_bad_splits_and_parts():
    with pytest.raises(LayoutError):
        layout.processed_split("r", "v1", "holdout")  # type: ignore[arg-type]
    with pytest.raises(LayoutError):
        layout.onnx_dir("e", "fp16")  # type: ignore[arg-type]
    with pytest.raises(LayoutError):
        layout.join("datasets", "../../etc/passwd")
