//! Bundle verification: one plain fixture builder (Debian does not package `rstest`) writes a
//! small signed bundle exactly per docs/bundle-format.md; each test breaks one thing and
//! checks that the verifier names it.

use std::fs;
use std::path::Path;

use ordinal_bundle::{fingerprint, verify, BundleError, Trust};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const SEED: [u8; 32] = [7; 32];

fn key() -> Ed25519KeyPair {
    Ed25519KeyPair::from_seed_unchecked(&SEED).unwrap()
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Write a bundle into `dir`; `edit` changes the metadata before it is signed.
fn build(dir: &Path, edit: impl FnOnce(&mut Value)) {
    let files: Vec<(&str, &[u8])> = vec![
        ("README.md", b"---\nlicense: apache-2.0\n---\n# model\n"),
        ("fp32/model.onnx", b"fp32 graph bytes"),
        ("int8/model.onnx", b"int8 graph bytes"),
        ("preprocess/tokenizer.json", b"{}"),
        ("reports/int8.json", b"{\"passed\": true}"),
        ("reports/parity.json", b"{\"passed\": true}"),
    ];
    for (path, bytes) in &files {
        let p = dir.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, bytes).unwrap();
    }
    let listing: Vec<Value> = files
        .iter()
        .map(|(p, b)| json!({"path": p, "sha256": sha(b), "size": b.len()}))
        .collect();
    let kp = key();
    let fp = fingerprint(kp.public_key().as_ref());
    let digest = |p: &str| sha(files.iter().find(|(q, _)| *q == p).unwrap().1);
    let mut meta = json!({
        "format": "ordinal-bundle/1",
        "name": "reviews",
        "version": "1.2.3",
        "created_at": "2026-11-30T12:00:00Z",
        "lineage": {"run_id": "r1", "experiment_id": "e1", "git_sha": null, "git_dirty": null,
                    "dataset": {"name": "d", "version": "1", "raw_sha256": sha(b"raw")}},
        "model": {"modality": "text", "family": "bert", "head": "cumulative_link", "link": "logit",
                  "num_classes": 3, "label_names": ["bad", "ok", "good"], "cutpoints": [-1.0, 1.0]},
        "graph": {"opset": 18,
                  "inputs": [{"name": "input_ids", "dtype": "int64", "shape": ["batch", "seq"]}],
                  "outputs": [{"name": "probs", "dtype": "float32", "shape": ["batch", 3]}]},
        "onnxruntime": {"min_version": "1.14.0", "api_version": 14},
        "preprocess": {"kind": "tokenizer", "tokenizer": "preprocess/tokenizer.json",
                       "max_length": 64, "truncation": "longest_first", "padding": "longest"},
        "variants": {"fp32": {"path": "fp32/model.onnx", "sha256": digest("fp32/model.onnx")},
                     "int8": {"path": "int8/model.onnx", "sha256": digest("int8/model.onnx")}},
        "default_variant": "int8",
        "metrics": {"fp32": {"n": 10, "mae": 0.5, "qwk": 0.7, "accuracy": 0.6},
                    "int8": {"n": 10, "mae": 0.5, "qwk": 0.7, "accuracy": 0.6}},
        "evidence": {"parity": {"path": "reports/parity.json", "sha256": digest("reports/parity.json"), "passed": true},
                     "int8": {"path": "reports/int8.json", "sha256": digest("reports/int8.json"), "passed": true}},
        "files": listing,
        "signing": {"algorithm": "ed25519", "key_fingerprint": fp},
    });
    edit(&mut meta);
    // serde_json's map is sorted by key and `to_string` is compact: canonical for ASCII data.
    let bytes = serde_json::to_string(&meta).unwrap().into_bytes();
    fs::write(dir.join("bundle.json"), &bytes).unwrap();
    let sig = json!({
        "algorithm": "ed25519",
        "key_fingerprint": fp,
        "public_key": base64::encode(kp.public_key().as_ref()),
        "signature": base64::encode(kp.sign(&bytes).as_ref()),
    });
    fs::write(dir.join("bundle.sig"), sig.to_string()).unwrap();
}

fn trust() -> Trust {
    Trust::keys([fingerprint(key().public_key().as_ref())]).unwrap()
}

fn fresh(edit: impl FnOnce(&mut Value)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), edit);
    dir
}

#[test]
fn a_good_bundle_verifies_and_reports_its_digest() {
    let dir = fresh(|_| {});
    let bundle = verify(dir.path(), &trust()).unwrap();
    assert!(bundle.trusted);
    assert_eq!(bundle.manifest.name, "reviews");
    assert_eq!(
        bundle.digest,
        sha(&fs::read(dir.path().join("bundle.json")).unwrap())
    );
    assert_eq!(
        bundle.key_fingerprint,
        fingerprint(key().public_key().as_ref())
    );
    // Trusting the base64 public key instead of its fingerprint is the same.
    let by_key = Trust::keys([base64::encode(key().public_key().as_ref())]).unwrap();
    assert!(verify(dir.path(), &by_key).unwrap().trusted);
}

#[test]
fn untrusted_keys_are_refused_unless_any_self_signed_is_allowed() {
    let dir = fresh(|_| {});
    let err = verify(dir.path(), &Trust::default()).unwrap_err();
    assert!(matches!(err, BundleError::Untrusted { .. }), "{err}");
    assert!(err.to_string().contains("none configured"));
    let other = Trust::keys([format!("sha256:{}", "0".repeat(64))]).unwrap();
    assert!(matches!(
        verify(dir.path(), &other),
        Err(BundleError::Untrusted { .. })
    ));
    let bundle = verify(dir.path(), &Trust::any_self_signed()).unwrap();
    assert!(!bundle.trusted);
    assert!(Trust::keys(["sha256:xyz"]).is_err());
    assert!(Trust::keys(["AAAA"]).is_err());
}

fn expect_schema(edit: impl FnOnce(&mut Value), field: &str) {
    let dir = fresh(edit);
    let err = verify(dir.path(), &trust()).unwrap_err();
    match &err {
        BundleError::Schema { field: f, .. } => assert!(f.contains(field), "{err}"),
        other => panic!("expected a schema error at {field}, got {other}"),
    }
    assert!(err.to_string().contains("bundle.json"));
}

#[test]
fn schema_violations_name_the_field() {
    expect_schema(|m| m["format"] = json!("ordinal-bundle/2"), "format");
    expect_schema(|m| m["surprise"] = json!(1), "(structure)");
    expect_schema(|m| m["model"]["surprise"] = json!(1), "(structure)");
    expect_schema(|m| m["name"] = json!("Bad Name"), "name");
    expect_schema(|m| m["version"] = json!("1.2"), "version");
    expect_schema(
        |m| m["created_at"] = json!("2026-11-30 12:00"),
        "created_at",
    );
    expect_schema(
        |m| m["model"]["label_names"] = json!(["a", "b"]),
        "model.label_names",
    );
    expect_schema(
        |m| m["graph"]["inputs"][0]["dtype"] = json!("int32"),
        "graph.inputs[0]",
    );
    expect_schema(
        |m| m["preprocess"]["padding"] = json!("max_length"),
        "preprocess.padding",
    );
    expect_schema(
        |m| m["preprocess"]["tokenizer"] = json!("../tokenizer.json"),
        "preprocess.tokenizer",
    );
    expect_schema(
        |m| m["variants"]["fp32"]["path"] = json!("/etc/passwd"),
        "variants.fp32",
    );
    expect_schema(
        |m| {
            m["metrics"].as_object_mut().unwrap().remove("int8");
        },
        "metrics.int8",
    );
    expect_schema(|m| m["files"].as_array_mut().unwrap().reverse(), "files[1]");
    expect_schema(
        |m| m["signing"]["key_fingerprint"] = json!("md5:00"),
        "signing.key_fingerprint",
    );
    let dir = fresh(|_| {});
    fs::write(dir.path().join("bundle.json"), b"{not json").unwrap();
    assert!(matches!(
        verify(dir.path(), &trust()),
        Err(BundleError::Schema { .. })
    ));
}

#[test]
fn a_changed_byte_breaks_the_signature() {
    let dir = fresh(|_| {});
    let path = dir.path().join("bundle.json");
    let text = fs::read_to_string(&path)
        .unwrap()
        .replace("\"mae\":0.5", "\"mae\":0.4");
    fs::write(&path, text).unwrap();
    let err = verify(dir.path(), &trust()).unwrap_err();
    assert!(err.to_string().contains("does not verify"), "{err}");

    // A signature file whose fingerprint does not match its key.
    let dir = fresh(|_| {});
    let sig_path = dir.path().join("bundle.sig");
    let mut sig: Value = serde_json::from_slice(&fs::read(&sig_path).unwrap()).unwrap();
    sig["public_key"] = json!(base64::encode([9u8; 32]));
    fs::write(&sig_path, sig.to_string()).unwrap();
    let err = verify(dir.path(), &trust()).unwrap_err();
    assert!(
        err.to_string().contains("is not the sha256 of public_key"),
        "{err}"
    );

    let dir =
        fresh(|m| m["signing"]["key_fingerprint"] = json!(format!("sha256:{}", "1".repeat(64))));
    let err = verify(dir.path(), &trust()).unwrap_err();
    assert!(
        err.to_string()
            .contains("differs from bundle.json signing.key_fingerprint"),
        "{err}"
    );
}

#[test]
fn file_checks_name_the_file() {
    let dir = fresh(|_| {});
    fs::write(dir.path().join("fp32/model.onnx"), b"fp32 graph bytez").unwrap();
    let err = verify(dir.path(), &trust()).unwrap_err();
    assert!(
        matches!(&err, BundleError::Digest { entry, .. } if entry == "fp32/model.onnx"),
        "{err}"
    );

    let dir = fresh(|_| {});
    fs::write(dir.path().join("int8/model.onnx"), b"short").unwrap();
    let err = verify(dir.path(), &trust()).unwrap_err();
    assert!(
        matches!(&err, BundleError::Size { entry, .. } if entry == "int8/model.onnx"),
        "{err}"
    );

    let dir = fresh(|_| {});
    fs::remove_file(dir.path().join("reports/int8.json")).unwrap();
    let err = verify(dir.path(), &trust()).unwrap_err();
    assert!(
        matches!(&err, BundleError::Missing { entry, .. } if entry == "reports/int8.json"),
        "{err}"
    );

    let dir = fresh(|_| {});
    fs::write(dir.path().join("preprocess/extra.txt"), b"x").unwrap();
    let err = verify(dir.path(), &trust()).unwrap_err();
    assert!(
        matches!(&err, BundleError::Unlisted { entry, .. } if entry == "preprocess/extra.txt"),
        "{err}"
    );

    let dir = fresh(|_| {});
    std::os::unix::fs::symlink("/etc/hostname", dir.path().join("link")).unwrap();
    let err = verify(dir.path(), &trust()).unwrap_err();
    assert!(
        matches!(&err, BundleError::Unlisted { entry, .. } if entry == "link"),
        "{err}"
    );

    let dir = fresh(|m| m["files"][0]["path"] = json!("../README.md"));
    let err = verify(dir.path(), &trust()).unwrap_err();
    assert!(
        matches!(&err, BundleError::UnsafePath { entry, .. } if entry == "../README.md"),
        "{err}"
    );
}

#[test]
fn variant_and_evidence_digests_must_match_the_listing() {
    let dir = fresh(|m| m["variants"]["int8"]["sha256"] = json!(sha(b"something else")));
    let err = verify(dir.path(), &trust()).unwrap_err();
    assert!(
        matches!(&err, BundleError::CrossDigest { field, .. } if field == "variants.int8"),
        "{err}"
    );
    let dir = fresh(|m| m["evidence"]["parity"]["sha256"] = json!(sha(b"x")));
    let err = verify(dir.path(), &trust()).unwrap_err();
    assert!(
        matches!(&err, BundleError::CrossDigest { field, .. } if field == "evidence.parity"),
        "{err}"
    );
}
