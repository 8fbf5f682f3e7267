"""Local and S3 storage behind one protocol; atomic writes; a failing S3 endpoint."""

from __future__ import annotations

import os

import boto3
import pytest
from dl_helpers import CutProxy

from ordinal.artifacts import (
    LocalStorage,
    ObjectNotFoundError,
    S3Storage,
    Storage,
    StorageError,
    default_storage_url,
    open_storage,
    sha256_bytes,
)
from ordinal.artifacts.checksums import sha256_file


def _exercise(store: Storage, tmp_path):
    src = tmp_path / "payload.bin"
    src.write_bytes(b"hello world" * 1000)
    d = store.put_file(src, "a/b/payload.bin")
    assert d.sha256 == sha256_file(src).sha256
    assert d.size == 11000
    assert store.exists("a/b/payload.bin")
    assert not store.exists("a/b/missing.bin")
    assert store.size("a/b/payload.bin") == 11000
    assert store.sha256("a/b/payload.bin").sha256 == d.sha256
    assert store.put_bytes(b"x", "a/c.txt").sha256 == sha256_bytes(b"x")
    assert store.get_bytes("a/c.txt") == b"x"
    assert store.list("a") == ["a/b/payload.bin", "a/c.txt"]
    assert store.list("nothing-here") == []
    with store.open_read("a/c.txt") as fh:
        assert fh.read() == b"x"
    out = store.download("a/b/payload.bin", tmp_path / "dl" / "p.bin")
    assert out.read_bytes() == src.read_bytes()
    with pytest.raises(ObjectNotFoundError):
        store.get_bytes("a/none")
    with pytest.raises(ObjectNotFoundError):
        store.sha256("a/none")
    with pytest.raises(ObjectNotFoundError):
        store.download("a/none", tmp_path / "x")
    with pytest.raises(ObjectNotFoundError):
        store.size("a/none")
    assert store.delete("a/c.txt") is True
    assert store.delete("a/c.txt") is False
    assert store.delete_prefix("a") == 1
    assert store.list("a") == []


def test_local_storage_operations(local_store, tmp_path):
    assert isinstance(local_store, Storage)
    _exercise(local_store, tmp_path)
    with pytest.raises(ObjectNotFoundError):
        local_store.open_read("nope")


def test_local_writes_are_atomic_and_leave_no_temp_files(local_store, tmp_path):
    local_store.put_bytes(b"one", "k/v.txt")
    local_store.put_bytes(b"two", "k/v.txt")  # replaced in one rename
    assert local_store.get_bytes("k/v.txt") == b"two"
    assert sorted(p.name for p in (local_store.root / "k").iterdir()) == ["v.txt"]

    class BoomError(Exception):
        pass

    def half_write():
        with local_store._atomic_target("k/v.txt") as tmp:
            tmp.write_bytes(b"partial")
            raise BoomError

    # A write that fails half-way leaves the old object and no temporary file.
    with pytest.raises(BoomError):
        half_write()
    assert local_store.get_bytes("k/v.txt") == b"two"
    assert sorted(p.name for p in (local_store.root / "k").iterdir()) == ["v.txt"]


def test_open_storage_picks_backend(tmp_path, monkeypatch, moto_endpoint):
    assert isinstance(open_storage(str(tmp_path / "s")), LocalStorage)
    assert isinstance(open_storage((tmp_path / "s2").as_uri()), LocalStorage)
    # Default: the state folder's store (ORDINAL_HOME is set by the isolation fixture).
    assert default_storage_url() == str(tmp_path / "home" / "store")
    assert open_storage().root == tmp_path / "home" / "store"
    monkeypatch.setenv("ORDINAL_STORAGE_URL", str(tmp_path / "env-store"))
    assert open_storage().root == tmp_path / "env-store"
    s3 = open_storage("s3://bkt/some/prefix", endpoint_url=moto_endpoint)
    assert isinstance(s3, S3Storage)
    assert (s3.bucket, s3.prefix, s3.url) == ("bkt", "some/prefix", "s3://bkt/some/prefix")
    monkeypatch.setenv("ORDINAL_S3_ENDPOINT_URL", moto_endpoint)
    assert open_storage("s3://bkt").endpoint_url == moto_endpoint
    with pytest.raises(StorageError, match="scheme"):
        open_storage("ftp://host/x")
    with pytest.raises(StorageError, match="bucket"):
        open_storage("s3:///x")


def test_s3_storage_operations(s3_store, tmp_path):
    assert isinstance(s3_store, Storage)
    _exercise(s3_store, tmp_path)
    assert s3_store.local_path("a") is None
    # Secrets never show up in what gets printed or logged.
    assert "testing-secret" not in repr(s3_store) + s3_store.url


def test_s3_unknown_bucket_is_a_clear_error(moto_endpoint):
    store = S3Storage("no-such-bucket", endpoint_url=moto_endpoint, max_attempts=1)
    with pytest.raises(StorageError, match="NoSuchBucket"):
        store.put_bytes(b"x", "k")


def _raw_client(endpoint):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


@pytest.mark.parametrize(
    ("size", "budget"),
    [
        (1024 * 1024, 200 * 1024),  # single PUT cut after 200 KiB
        (12 * 1024 * 1024, 7 * 1024 * 1024),  # multipart: part 1 done, part 2 cut
    ],
    ids=["single-put", "multipart"],
)
def test_s3_endpoint_refusing_mid_upload_leaves_no_object(moto_endpoint, tmp_path, size, budget):
    bucket = f"cut-{size}"
    _raw_client(moto_endpoint).create_bucket(Bucket=bucket)
    port = int(moto_endpoint.rsplit(":", 1)[1])
    proxy = CutProxy(port, budget)
    store = S3Storage(
        bucket,
        "p",
        endpoint_url=proxy.url,
        max_attempts=2,
        connect_timeout=2,
        read_timeout=5,
        multipart_threshold=5 * 1024 * 1024,
        multipart_chunksize=5 * 1024 * 1024,
    )
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(size))
    with pytest.raises(StorageError) as err:
        store.put_file(src, "datasets/raw/x/v1/big.bin")
    assert proxy.cut.is_set()
    msg = str(err.value)
    assert "upload failed" in msg
    assert proxy.url in msg
    assert "big.bin" in msg
    # Straight to the server: nothing was left under the key.
    listing = _raw_client(moto_endpoint).list_objects_v2(Bucket=bucket)
    assert listing.get("KeyCount", 0) == 0
