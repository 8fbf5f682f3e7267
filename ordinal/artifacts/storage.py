"""Where artefacts live: a local folder (the embedded default) or an S3-compatible bucket.

One storage root URL decides the backend:

* a path or ``file://`` URL -> :class:`LocalStorage` (default ``state_dir() / "store"``);
* ``s3://bucket/prefix`` -> :class:`S3Storage` on AWS S3 or any S3-compatible endpoint
  (``endpoint_url``, e.g. a ``moto_server`` or MinIO on loopback).

Both implement :class:`Storage`, whose keys are the POSIX paths built by
:mod:`ordinal.artifacts.layout`. Writes are atomic: a local write goes to a temporary name in
the same folder and is renamed into place; an S3 object only exists once its PUT (or the
final step of a multipart upload) succeeded, so a broken upload leaves no partial object.

Credentials come from the usual AWS chain (environment, profile, instance role). They are
never stored on these objects' repr, never logged and never written into manifests.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Protocol, runtime_checkable
from urllib.parse import urlparse

from ordinal.artifacts import layout
from ordinal.artifacts.checksums import CHUNK_SIZE, FileDigest, HashingReader, sha256_stream
from ordinal.artifacts.errors import ObjectNotFoundError, StorageError
from ordinal.paths import state_dir

STORAGE_URL_ENV = "ORDINAL_STORAGE_URL"
S3_ENDPOINT_ENV = "ORDINAL_S3_ENDPOINT_URL"


@runtime_checkable
class Storage(Protocol):
    """What every storage backend offers. Keys are relative POSIX paths."""

    url: str

    def exists(self, key: str) -> bool:
        """Return True if an object exists at ``key``."""
        ...

    def size(self, key: str) -> int:
        """Return the size in bytes of the object at ``key``."""
        ...

    def put_file(self, src: str | os.PathLike[str], key: str) -> FileDigest:
        """Copy a local file to ``key`` atomically; return its digest (path = key)."""
        ...

    def put_bytes(self, data: bytes, key: str) -> FileDigest:
        """Write ``data`` to ``key`` atomically; return its digest (path = key)."""
        ...

    def get_bytes(self, key: str) -> bytes:
        """Return the whole object at ``key`` (for small objects such as manifests)."""
        ...

    def download(self, key: str, dest: str | os.PathLike[str]) -> Path:
        """Copy the object at ``key`` to the local file ``dest``; return ``dest``."""
        ...

    def open_read(self, key: str) -> contextlib.AbstractContextManager[BinaryIO]:
        """Open the object at ``key`` for streaming binary reads."""
        ...

    def list(self, prefix: str) -> list[str]:
        """Return every key under ``prefix`` (recursively), sorted."""
        ...

    def sha256(self, key: str) -> FileDigest:
        """Stream the object at ``key`` and return its digest (path = key)."""
        ...

    def delete(self, key: str) -> bool:
        """Delete the object at ``key``; return False if there was none."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix``; return how many were deleted."""
        ...

    def local_path(self, key: str) -> Path | None:
        """Return a local file path for ``key`` if the backend has one, else None."""
        ...


def _digest_of(key: str, src: Path) -> FileDigest:
    with src.open("rb", buffering=0) as fh:
        sha, size = sha256_stream(fh)
    return FileDigest(path=key, sha256=sha, size=size)


class LocalStorage:
    """Storage in a local folder; atomic writes by temporary name and ``os.replace``.

    Parameters
    ----------
    root : path-like
        The folder that plays the role of the bucket; created if missing.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.url = self.root.as_uri()

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root / layout.join(key)

    def exists(self, key: str) -> bool:
        """Return True if a file exists at ``key``."""
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        """Return the size in bytes of the file at ``key``."""
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            raise ObjectNotFoundError("no such object", key=key, root=self.url) from None

    @contextlib.contextmanager
    def _atomic_target(self, key: str) -> Iterator[Path]:
        final = self._path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        # Same folder as the target so os.replace is a rename on one file system (atomic).
        tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex}"
        try:
            yield tmp
            os.replace(tmp, final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def put_file(self, src: str | os.PathLike[str], key: str) -> FileDigest:
        """Copy ``src`` to ``key`` atomically, hashing the bytes as they are copied."""
        with self._atomic_target(key) as tmp, Path(src).open("rb") as fin, tmp.open("wb") as fout:
            reader = HashingReader(fin)
            shutil.copyfileobj(reader, fout, CHUNK_SIZE)
            fout.flush()
            os.fsync(fout.fileno())
        return FileDigest(path=key, sha256=reader.hexdigest(), size=reader.size)

    def put_bytes(self, data: bytes, key: str) -> FileDigest:
        """Write ``data`` to ``key`` atomically."""
        with self._atomic_target(key) as tmp, tmp.open("wb") as fout:
            fout.write(data)
            fout.flush()
            os.fsync(fout.fileno())
        from ordinal.artifacts.checksums import sha256_bytes

        return FileDigest(path=key, sha256=sha256_bytes(data), size=len(data))

    def get_bytes(self, key: str) -> bytes:
        """Return the bytes of the file at ``key``."""
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFoundError("no such object", key=key, root=self.url) from None

    def download(self, key: str, dest: str | os.PathLike[str]) -> Path:
        """Copy the file at ``key`` to ``dest``."""
        src = self._path(key)
        if not src.is_file():
            raise ObjectNotFoundError("no such object", key=key, root=self.url)
        out = Path(dest)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, out)
        return out

    def open_read(self, key: str) -> contextlib.AbstractContextManager[BinaryIO]:
        """Open the file at ``key`` for binary reads."""
        path = self._path(key)
        if not path.is_file():
            raise ObjectNotFoundError("no such object", key=key, root=self.url)
        return path.open("rb")

    def list(self, prefix: str) -> list[str]:
        """Return every key under ``prefix``, sorted; temporary files are skipped."""
        base = self._path(prefix)
        if not base.is_dir():
            return []
        keys = []
        for p in base.rglob("*"):
            if p.is_file() and not (p.name.startswith(".") and ".tmp-" in p.name):
                keys.append(p.relative_to(self.root).as_posix())
        return sorted(keys)

    def sha256(self, key: str) -> FileDigest:
        """Stream the file at ``key`` and return its digest."""
        path = self._path(key)
        if not path.is_file():
            raise ObjectNotFoundError("no such object", key=key, root=self.url)
        return _digest_of(key, path)

    def delete(self, key: str) -> bool:
        """Delete the file at ``key``; return False if there was none."""
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            return False
        return True

    def delete_prefix(self, prefix: str) -> int:
        """Delete every file under ``prefix``."""
        keys = self.list(prefix)
        for key in keys:
            self._path(key).unlink()
        return len(keys)

    def local_path(self, key: str) -> Path | None:
        """Return the file path of ``key`` (local storage reads in place)."""
        return self._path(key)


class S3Storage:
    """Storage in an S3 bucket (AWS or any S3-compatible endpoint).

    Parameters
    ----------
    bucket : str
        Bucket name (must exist unless ``create_bucket``).
    prefix : str
        Key prefix inside the bucket ("" for the bucket root).
    endpoint_url : str or None
        S3-compatible endpoint, e.g. ``http://127.0.0.1:9000``; None for AWS S3.
    region_name : str or None
        Region; defaults to the AWS chain, then ``us-east-1``.
    max_attempts : int
        botocore retry attempts per request (``standard`` mode).
    multipart_threshold : int
        Files at least this big are uploaded in parts (each part ``multipart_chunksize``).
    create_bucket : bool
        Create the bucket if it does not exist (tests and the embedded stack only).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        max_attempts: int = 3,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        multipart_threshold: int = 64 * 1024 * 1024,
        multipart_chunksize: int = 16 * 1024 * 1024,
        create_bucket: bool = False,
        client: Any | None = None,
    ) -> None:
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        config = Config(
            retries={"max_attempts": max_attempts, "mode": "standard"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # Path-style addressing works on every S3-compatible server, including loopback IPs.
            s3={"addressing_style": "path" if endpoint_url else "auto"},
        )
        region = region_name or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        self._client = client or boto3.client(
            "s3", endpoint_url=endpoint_url, region_name=region, config=config
        )
        self._transfer = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=multipart_chunksize,
            # One thread: the machine is small and ordering keeps failures easy to reason about.
            use_threads=False,
        )
        if create_bucket:
            self._ensure_bucket(region)

    def __repr__(self) -> str:
        return f"S3Storage({self.url!r}, endpoint_url={self.endpoint_url!r})"

    def _ensure_bucket(self, region: str) -> None:
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except Exception:
            kwargs: dict[str, Any] = {"Bucket": self.bucket}
            if region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
            self._call("create bucket", None, self._client.create_bucket, **kwargs)

    def _key(self, key: str) -> str:
        key = layout.join(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _rel(self, full: str) -> str:
        return full[len(self.prefix) + 1 :] if self.prefix else full

    def _call(self, what: str, key: str | None, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(*args, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchKey", "NotFound"):
                raise ObjectNotFoundError("no such object", key=key, root=self.url) from None
            raise StorageError(f"S3 {what} failed: {code or exc}", key=key, root=self.url) from exc
        except (BotoCoreError, S3UploadFailedError) as exc:
            endpoint = self.endpoint_url or "AWS S3"
            raise StorageError(
                f"S3 {what} failed against {endpoint}: {type(exc).__name__}: {exc}",
                key=key,
                root=self.url,
            ) from exc

    def exists(self, key: str) -> bool:
        """Return True if an object exists at ``key``."""
        try:
            self._call(
                "head", key, self._client.head_object, Bucket=self.bucket, Key=self._key(key)
            )
        except ObjectNotFoundError:
            return False
        return True

    def size(self, key: str) -> int:
        """Return the size in bytes of the object at ``key``."""
        head = self._call(
            "head", key, self._client.head_object, Bucket=self.bucket, Key=self._key(key)
        )
        return int(head["ContentLength"])

    def put_file(self, src: str | os.PathLike[str], key: str) -> FileDigest:
        """Upload ``src`` to ``key``; the object appears only when the upload completes."""
        digest = _digest_of(key, Path(src))
        self._call(
            "upload",
            key,
            self._client.upload_file,
            str(src),
            self.bucket,
            self._key(key),
            ExtraArgs={"Metadata": {"sha256": digest.sha256}},
            Config=self._transfer,
        )
        return digest

    def put_bytes(self, data: bytes, key: str) -> FileDigest:
        """Upload ``data`` to ``key`` in one PUT (atomic on S3)."""
        from ordinal.artifacts.checksums import sha256_bytes

        sha = sha256_bytes(data)
        self._call(
            "put",
            key,
            self._client.put_object,
            Bucket=self.bucket,
            Key=self._key(key),
            Body=data,
            Metadata={"sha256": sha},
        )
        return FileDigest(path=key, sha256=sha, size=len(data))

    def get_bytes(self, key: str) -> bytes:
        """Return the whole object at ``key``."""
        resp = self._call(
            "get", key, self._client.get_object, Bucket=self.bucket, Key=self._key(key)
        )
        return resp["Body"].read()

    def download(self, key: str, dest: str | os.PathLike[str]) -> Path:
        """Download ``key`` to ``dest`` (through a temporary name, then renamed)."""
        out = Path(dest)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex}"
        try:
            self._call(
                "download",
                key,
                self._client.download_file,
                self.bucket,
                self._key(key),
                str(tmp),
                Config=self._transfer,
            )
            os.replace(tmp, out)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return out

    @contextlib.contextmanager
    def _stream(self, key: str) -> Iterator[BinaryIO]:
        resp = self._call(
            "get", key, self._client.get_object, Bucket=self.bucket, Key=self._key(key)
        )
        body = resp["Body"]
        try:
            yield body
        finally:
            body.close()

    def open_read(self, key: str) -> contextlib.AbstractContextManager[BinaryIO]:
        """Open the object at ``key`` as a streaming body."""
        return self._stream(key)

    def list(self, prefix: str) -> list[str]:
        """Return every key under ``prefix`` (paginated), sorted."""
        full = self._key(prefix) + "/"
        paginator = self._client.get_paginator("list_objects_v2")
        keys: list[str] = []

        def _collect() -> None:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                keys.extend(self._rel(obj["Key"]) for obj in page.get("Contents", []))

        self._call("list", prefix, _collect)
        return sorted(keys)

    def sha256(self, key: str) -> FileDigest:
        """Stream the object at ``key`` through sha256."""
        with self.open_read(key) as body:
            reader = HashingReader(body)
            while reader.read(CHUNK_SIZE):
                pass
        return FileDigest(path=key, sha256=reader.hexdigest(), size=reader.size)

    def delete(self, key: str) -> bool:
        """Delete the object at ``key``; return False if there was none."""
        if not self.exists(key):
            return False
        self._call(
            "delete", key, self._client.delete_object, Bucket=self.bucket, Key=self._key(key)
        )
        return True

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix``."""
        keys = self.list(prefix)
        for start in range(0, len(keys), 1000):
            batch = [{"Key": self._key(k)} for k in keys[start : start + 1000]]
            self._call(
                "delete",
                prefix,
                self._client.delete_objects,
                Bucket=self.bucket,
                Delete={"Objects": batch, "Quiet": True},
            )
        return len(keys)

    def local_path(self, key: str) -> Path | None:
        """Return None: S3 objects have no local path."""
        return None


def default_storage_url() -> str:
    """Return the storage root URL: ``$ORDINAL_STORAGE_URL`` or ``state_dir()/store``."""
    return os.environ.get(STORAGE_URL_ENV) or str(state_dir() / "store")


def open_storage(url: str | None = None, *, endpoint_url: str | None = None, **s3_options: Any):
    """Return the storage backend for a root URL.

    Parameters
    ----------
    url : str or None
        ``s3://bucket/prefix``, ``file:///path`` or a plain path. None means
        :func:`default_storage_url`.
    endpoint_url : str or None
        S3-compatible endpoint; defaults to ``$ORDINAL_S3_ENDPOINT_URL``, then
        ``$AWS_ENDPOINT_URL`` (read by boto3 itself), then AWS S3.
    **s3_options
        Passed to :class:`S3Storage` (``max_attempts``, ``multipart_threshold``, ...).

    Returns
    -------
    Storage
        :class:`LocalStorage` or :class:`S3Storage`.
    """
    url = url or default_storage_url()
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise StorageError(f"S3 URL without a bucket: {url!r}")
        endpoint = endpoint_url or os.environ.get(S3_ENDPOINT_ENV) or None
        return S3Storage(parsed.netloc, parsed.path, endpoint_url=endpoint, **s3_options)
    if parsed.scheme == "file":
        return LocalStorage(parsed.path)
    if parsed.scheme in ("",) or (len(parsed.scheme) == 1 and os.name == "nt"):
        return LocalStorage(url)
    raise StorageError(f"unsupported storage URL scheme {parsed.scheme!r} in {url!r}")


def staging_dir(prefix: str = "stage-") -> tempfile.TemporaryDirectory[str]:
    """Return a temporary folder for work files, under the state folder (same disk as the store).

    Staging next to the store keeps the final rename local and avoids filling a small ``/tmp``.
    """
    base = state_dir() / "tmp"
    base.mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(prefix=prefix, dir=base)
