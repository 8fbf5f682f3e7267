//! Read and verify an `ordinal-bundle/1` deployment bundle (docs/bundle-format.md).
//!
//! [`verify`] runs the format's checks in its order and stops at the first failure, naming
//! the file and field that differ:
//!
//! 1. `bundle.json` parses and matches the schema (`ordinal/schemas/bundle.v1.json`, checked
//!    here by typed deserialisation that refuses unknown fields at every level, plus the
//!    schema's patterns and cross-field rules: no JSON Schema crate is packaged by Debian);
//! 2. `bundle.sig` parses, its fingerprint equals `signing.key_fingerprint` and the sha256
//!    of its public key, and the key is trusted;
//! 3. the Ed25519 signature verifies over the exact bytes of `bundle.json` (`ring`);
//! 4. every `files` entry has a safe path, exists as a regular file, with that size and sha256;
//! 5. no other file exists in the folder;
//! 6. `variants.*.sha256` and `evidence.*.sha256` equal the `files` entries of those paths.

mod manifest;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use manifest::{
    Dataset, Evidence, FileEntry, Graph, Lineage, Manifest, Metrics, Model, OnnxRuntime,
    Preprocess, Report, Signing, TensorSpec, Variant, Variants,
};

/// The metadata file.
pub const BUNDLE_FILE: &str = "bundle.json";
/// The detached signature.
pub const SIGNATURE_FILE: &str = "bundle.sig";
/// The only format this consumer reads.
pub const FORMAT: &str = "ordinal-bundle/1";

/// The first check a bundle failed, with the culprit named.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{path}: cannot read: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path}: schema violation at {field}: {reason}")]
    Schema {
        path: PathBuf,
        field: String,
        reason: String,
    },
    #[error("{path}: {reason}")]
    Signature { path: PathBuf, reason: String },
    #[error("{path}: signing key {fingerprint} is not trusted (trusted: {trusted})")]
    Untrusted {
        path: PathBuf,
        fingerprint: String,
        trusted: String,
    },
    #[error("{path}: unsafe path {entry:?} in {field}")]
    UnsafePath {
        path: PathBuf,
        field: String,
        entry: String,
    },
    #[error("{path}: listed file {entry} is missing or not a regular file")]
    Missing { path: PathBuf, entry: String },
    #[error("{path}: {entry}: size {found} differs from the listed {expected}")]
    Size {
        path: PathBuf,
        entry: String,
        found: u64,
        expected: u64,
    },
    #[error("{path}: {entry}: sha256 {found} differs from the listed {expected}")]
    Digest {
        path: PathBuf,
        entry: String,
        found: String,
        expected: String,
    },
    #[error("{path}: file {entry} is not listed in bundle.json")]
    Unlisted { path: PathBuf, entry: String },
    #[error("{path}: {field} sha256 {found} differs from the files entry of {entry} ({expected})")]
    CrossDigest {
        path: PathBuf,
        field: String,
        entry: String,
        found: String,
        expected: String,
    },
}

/// Which signing keys a verifier accepts.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    fingerprints: BTreeSet<String>,
    accept_any_self_signed: bool,
}

impl Trust {
    /// Trust exactly these keys, each `sha256:<hex>` or a base64 raw 32-byte public key.
    pub fn keys<I: IntoIterator<Item = S>, S: AsRef<str>>(keys: I) -> Result<Trust, String> {
        let mut fingerprints = BTreeSet::new();
        for key in keys {
            let key = key.as_ref().trim();
            if key.is_empty() {
                continue;
            }
            if let Some(hex_part) = key.strip_prefix("sha256:") {
                if hex_part.len() != 64 || !is_lower_hex(hex_part) {
                    return Err(format!(
                        "trusted key {key:?} is not sha256:<64 lowercase hex>"
                    ));
                }
                fingerprints.insert(key.to_string());
            } else {
                let raw = base64::decode(key).map_err(|_| {
                    format!("trusted key {key:?} is neither sha256:<hex> nor base64")
                })?;
                if raw.len() != 32 {
                    return Err(format!(
                        "trusted key {key:?} decodes to {} bytes, not a 32-byte Ed25519 key",
                        raw.len()
                    ));
                }
                fingerprints.insert(fingerprint(&raw));
            }
        }
        Ok(Trust {
            fingerprints,
            accept_any_self_signed: false,
        })
    }

    /// Accept any correctly self-signed bundle (reported in [`VerifiedBundle::trusted`]).
    pub fn any_self_signed() -> Trust {
        Trust {
            fingerprints: BTreeSet::new(),
            accept_any_self_signed: true,
        }
    }

    fn describe(&self) -> String {
        if self.fingerprints.is_empty() {
            "none configured".into()
        } else {
            self.fingerprints
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        }
    }
}

/// A bundle that passed every check.
#[derive(Debug, Clone)]
pub struct VerifiedBundle {
    /// The bundle folder.
    pub root: PathBuf,
    /// The parsed `bundle.json`.
    pub manifest: Manifest,
    /// sha256 of the exact `bundle.json` bytes: the bundle's identity.
    pub digest: String,
    /// The signing key's fingerprint.
    pub key_fingerprint: String,
    /// False when accepted only because any self-signed bundle was allowed.
    pub trusted: bool,
}

impl VerifiedBundle {
    /// Absolute path of a bundle-relative path from the manifest.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }
}

/// `sha256:` + hex sha256 of a raw public key.
pub fn fingerprint(public_key: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(public_key)))
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A relative POSIX path without `..`, `.`, empty components, a leading `/` or a backslash.
///
/// ```
/// use ordinal_bundle::is_safe_path;
/// assert!(is_safe_path("fp32/model.onnx"));
/// assert!(!is_safe_path("../x") && !is_safe_path("/x") && !is_safe_path("a//b") && !is_safe_path("a\\b"));
/// ```
pub fn is_safe_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\\')
        && !path.contains('\0')
        && path.split('/').all(|part| !matches!(part, "" | "." | ".."))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureFile {
    algorithm: String,
    key_fingerprint: String,
    public_key: String,
    signature: String,
}

fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buffer[..n]);
    }
    Ok((hex::encode(hasher.finalize()), size))
}

/// Every regular file under `root`, as sorted POSIX relative paths. Symbolic links and
/// other non-regular entries are reported as themselves so they count as unlisted.
fn walk(root: &Path) -> Result<Vec<String>, BundleError> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let entries = fs::read_dir(&dir).map_err(|e| BundleError::Read {
            path: dir.clone(),
            reason: e.to_string(),
        })?;
        for entry in entries {
            let entry = entry.map_err(|e| BundleError::Read {
                path: dir.clone(),
                reason: e.to_string(),
            })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let child = rel.join(&name);
            let kind = entry.file_type().map_err(|e| BundleError::Read {
                path: root.join(&child),
                reason: e.to_string(),
            })?;
            if kind.is_dir() {
                stack.push(child);
            } else {
                let parts: Vec<String> = child
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push(parts.join("/"));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Parse `bundle.json` bytes and check them against the schema rules.
pub fn parse_manifest(bytes: &[u8], path: &Path) -> Result<Manifest, BundleError> {
    manifest::parse(bytes, path)
}

/// Verify the bundle folder `root` against `trust` (see the crate docs for the checks).
pub fn verify(root: &Path, trust: &Trust) -> Result<VerifiedBundle, BundleError> {
    let root = root.to_path_buf();
    let meta_path = root.join(BUNDLE_FILE);
    let bytes = fs::read(&meta_path).map_err(|e| BundleError::Read {
        path: meta_path.clone(),
        reason: e.to_string(),
    })?;
    // 1. schema
    let manifest = parse_manifest(&bytes, &meta_path)?;

    // 2. signature file, fingerprints, trust
    let sig_path = root.join(SIGNATURE_FILE);
    let sig_bytes = fs::read(&sig_path).map_err(|e| BundleError::Read {
        path: sig_path.clone(),
        reason: e.to_string(),
    })?;
    let bad_sig = |reason: String| BundleError::Signature {
        path: sig_path.clone(),
        reason,
    };
    let sig: SignatureFile = serde_json::from_slice(&sig_bytes)
        .map_err(|e| bad_sig(format!("not a valid signature object: {e}")))?;
    if sig.algorithm != "ed25519" {
        return Err(bad_sig(format!(
            "algorithm {:?} is not \"ed25519\"",
            sig.algorithm
        )));
    }
    if sig.key_fingerprint != manifest.signing.key_fingerprint {
        return Err(bad_sig(format!(
            "key_fingerprint {} differs from bundle.json signing.key_fingerprint {}",
            sig.key_fingerprint, manifest.signing.key_fingerprint
        )));
    }
    let public_key = base64::decode(sig.public_key.trim())
        .map_err(|e| bad_sig(format!("public_key is not base64: {e}")))?;
    if public_key.len() != 32 {
        return Err(bad_sig(format!(
            "public_key is {} bytes, not a 32-byte Ed25519 key",
            public_key.len()
        )));
    }
    let actual = fingerprint(&public_key);
    if actual != sig.key_fingerprint {
        return Err(bad_sig(format!(
            "key_fingerprint {} is not the sha256 of public_key ({actual})",
            sig.key_fingerprint
        )));
    }
    let trusted = trust.fingerprints.contains(&actual);
    if !trusted && !trust.accept_any_self_signed {
        return Err(BundleError::Untrusted {
            path: sig_path.clone(),
            fingerprint: actual,
            trusted: trust.describe(),
        });
    }

    // 3. Ed25519 over the exact bytes
    let signature = base64::decode(sig.signature.trim())
        .map_err(|e| bad_sig(format!("signature is not base64: {e}")))?;
    if signature.len() != 64 {
        return Err(bad_sig(format!(
            "signature is {} bytes, not 64",
            signature.len()
        )));
    }
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &public_key)
        .verify(&bytes, &signature)
        .map_err(|_| bad_sig("the Ed25519 signature does not verify over bundle.json".into()))?;

    // 4. listed files
    let mut listed = BTreeMap::new();
    for (i, entry) in manifest.files.iter().enumerate() {
        if !is_safe_path(&entry.path) {
            return Err(BundleError::UnsafePath {
                path: meta_path.clone(),
                field: format!("files[{i}].path"),
                entry: entry.path.clone(),
            });
        }
        let file = root.join(&entry.path);
        let regular = fs::symlink_metadata(&file)
            .map(|m| m.file_type().is_file())
            .unwrap_or(false);
        if !regular {
            return Err(BundleError::Missing {
                path: root.clone(),
                entry: entry.path.clone(),
            });
        }
        let (digest, size) = sha256_file(&file).map_err(|e| BundleError::Read {
            path: file.clone(),
            reason: e.to_string(),
        })?;
        if size != entry.size {
            return Err(BundleError::Size {
                path: root.clone(),
                entry: entry.path.clone(),
                found: size,
                expected: entry.size,
            });
        }
        if digest != entry.sha256 {
            return Err(BundleError::Digest {
                path: root.clone(),
                entry: entry.path.clone(),
                found: digest,
                expected: entry.sha256.clone(),
            });
        }
        listed.insert(entry.path.as_str(), entry.sha256.as_str());
    }

    // 5. nothing unlisted
    for found in walk(&root)? {
        if found != BUNDLE_FILE && found != SIGNATURE_FILE && !listed.contains_key(found.as_str()) {
            return Err(BundleError::Unlisted {
                path: root.clone(),
                entry: found,
            });
        }
    }

    // 6. variants and evidence digests agree with the listing
    let mut cross: Vec<(String, &str, &str)> = vec![(
        "variants.fp32".into(),
        &manifest.variants.fp32.path,
        &manifest.variants.fp32.sha256,
    )];
    if let Some(v) = &manifest.variants.int8 {
        cross.push(("variants.int8".into(), &v.path, &v.sha256));
    }
    cross.push((
        "evidence.parity".into(),
        &manifest.evidence.parity.path,
        &manifest.evidence.parity.sha256,
    ));
    if let Some(r) = &manifest.evidence.int8 {
        cross.push(("evidence.int8".into(), &r.path, &r.sha256));
    }
    if let Preprocess::Tokenizer { tokenizer, .. } = &manifest.preprocess {
        if !listed.contains_key(tokenizer.as_str()) {
            return Err(BundleError::Missing {
                path: root.clone(),
                entry: format!("{tokenizer} (preprocess.tokenizer, not in files)"),
            });
        }
    }
    for (field, entry, digest) in cross {
        let expected = listed.get(entry).copied().unwrap_or("(not listed)");
        if expected != digest {
            return Err(BundleError::CrossDigest {
                path: meta_path.clone(),
                field,
                entry: entry.to_string(),
                found: digest.to_string(),
                expected: expected.to_string(),
            });
        }
    }

    Ok(VerifiedBundle {
        root,
        manifest,
        digest: hex::encode(Sha256::digest(&bytes)),
        key_fingerprint: actual,
        trusted,
    })
}
