"""Canonical JSON, Ed25519 keys, fingerprints, ``bundle.sig`` and trust."""

from __future__ import annotations

import base64
import json
import math
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ordinal.release import (
    SignatureError,
    SigningKeyError,
    TrustedKeys,
    canonical_json,
    fingerprint,
    generate_signing_key,
    load_private_key,
    load_public_key,
    sign_document,
    verify_document,
)


def test_canonical_json_is_sorted_compact_ascii():
    data = {"b": [1, 2.5, 1e-5], "a": {"é": True, "z": None}, "c": 10**20}
    out = canonical_json(data)
    assert out == (
        b'{"a":{"z":null,"\\u00e9":true},"b":[1,2.5,1e-05],"c":100000000000000000000}'
    )  # keys by code point: "z" (U+007A) before "é" (U+00E9)
    assert json.loads(out) == data
    assert canonical_json(json.loads(out)) == out  # a round trip gives the same bytes


@pytest.mark.parametrize("bad", [math.nan, math.inf, {1: "x"}, {"a": [{2: 1}]}])
def test_canonical_json_refuses_non_json(bad):
    with pytest.raises(ValueError):
        canonical_json(bad)


def test_generate_and_load_keys(tmp_path):
    path = tmp_path / "k" / "release.pem"
    fp = generate_signing_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = load_private_key(path)
    assert (
        fingerprint(key) == fp == fingerprint(load_public_key(tmp_path / "k" / "release.pem.pub"))
    )
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert fingerprint(load_public_key(raw)) == fp
    with pytest.raises(SigningKeyError, match="refusing to replace"):
        generate_signing_key(path)
    assert generate_signing_key(path, overwrite=True) != fp


def test_key_errors_name_the_file(tmp_path):
    with pytest.raises(SigningKeyError, match="no signing key"):
        load_private_key(tmp_path / "absent.pem")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key")
    with pytest.raises(SigningKeyError, match="junk.pem"):
        load_private_key(junk)
    with pytest.raises(SigningKeyError, match="not a PEM public key"):
        load_public_key(junk)
    other = tmp_path / "ec.pem"
    ec_key = ec.generate_private_key(ec.SECP256R1())
    other.write_bytes(
        ec_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(SigningKeyError, match="not an Ed25519 key"):
        load_private_key(other)
    pub = ec_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(SigningKeyError, match="not Ed25519"):
        load_public_key(pub)


def test_sign_and_verify(tmp_path):
    generate_signing_key(tmp_path / "k.pem")
    key = load_private_key(tmp_path / "k.pem")
    data = canonical_json({"name": "demo"})
    sig = sign_document(data, key)
    assert sign_document(data, key) == sig  # Ed25519 is deterministic
    info = verify_document(data, sig)
    assert info.key_fingerprint == fingerprint(key)
    with pytest.raises(SignatureError, match="does not verify"):
        verify_document(data + b" ", sig)


def _sig_with(sig: bytes, **changes) -> bytes:
    doc = json.loads(sig)
    doc.update(changes)
    return canonical_json({k: v for k, v in doc.items() if v is not None})


def test_malformed_signatures_are_named(tmp_path):
    generate_signing_key(tmp_path / "k.pem")
    key = load_private_key(tmp_path / "k.pem")
    data = b"{}"
    sig = sign_document(data, key)
    cases = {
        b"not json": "not JSON",
        b"[]": "exactly the fields",
        _sig_with(sig, signature=None): "exactly the fields",
        _sig_with(sig, algorithm="rsa"): "algorithm",
        _sig_with(sig, public_key="***"): "bad base64",
        _sig_with(sig, signature=base64.b64encode(b"x" * 10).decode()): "64",
        _sig_with(sig, key_fingerprint="sha256:" + "0" * 64): "does not match its public_key",
    }
    for bad, message in cases.items():
        with pytest.raises(SignatureError, match=message):
            verify_document(data, bad)


def test_trusted_keys(tmp_path):
    fp = generate_signing_key(tmp_path / "k.pem")
    key = load_private_key(tmp_path / "k.pem")
    assert TrustedKeys.coerce(fp).trusts(fp)
    assert TrustedKeys.coerce(tmp_path / "k.pem.pub").trusts(fp)
    assert TrustedKeys.coerce(str(tmp_path / "k.pem.pub")).trusts(fp)
    assert TrustedKeys.coerce([key.public_key()]).trusts(fp)
    assert TrustedKeys.coerce(key).trusts(fp)
    assert TrustedKeys.coerce((tmp_path / "k.pem.pub").read_bytes()).trusts(fp)
    assert not TrustedKeys.coerce(None).trusts(fp)
    anyone = TrustedKeys.any_self_signed()
    assert anyone.trusts(fp) and TrustedKeys.coerce(anyone) is anyone
    assert "any self-signed" in repr(anyone) and "1 keys" in repr(TrustedKeys([fp]))
    with pytest.raises(SigningKeyError, match="malformed fingerprint"):
        TrustedKeys(["sha256:xyz"])
    with pytest.raises(SigningKeyError, match="no public key file"):
        TrustedKeys([tmp_path / "absent.pub"])
    with pytest.raises(SigningKeyError, match="cannot trust"):
        TrustedKeys([42])
