//! `bundle.json` as typed structs mirroring `ordinal/schemas/bundle.v1.json`.
//!
//! Every object refuses unknown fields (the schema sets `additionalProperties: false`
//! everywhere), and [`parse`] adds the schema's patterns, bounds and cross-field rules that
//! types alone cannot express.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::{is_lower_hex, is_safe_path, BundleError, FORMAT};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub name: String,
    pub version: String,
    pub created_at: String,
    pub lineage: Lineage,
    pub model: Model,
    pub graph: Graph,
    pub onnxruntime: OnnxRuntime,
    pub preprocess: Preprocess,
    pub variants: Variants,
    pub default_variant: String,
    pub metrics: Metrics,
    pub evidence: Evidence,
    pub files: Vec<FileEntry>,
    pub signing: Signing,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lineage {
    pub run_id: String,
    pub experiment_id: String,
    pub git_sha: Option<String>,
    pub git_dirty: Option<bool>,
    pub dataset: Dataset,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    pub name: String,
    pub version: String,
    pub raw_sha256: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    pub modality: String,
    pub family: String,
    pub head: String,
    pub link: Option<String>,
    pub num_classes: u64,
    pub label_names: Vec<String>,
    pub cutpoints: Option<Vec<f64>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Graph {
    pub opset: u64,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: String,
    /// Integers (fixed) or dimension names (dynamic).
    pub shape: Vec<Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnnxRuntime {
    pub min_version: String,
    pub api_version: u32,
}

/// `preprocess`: a tokenizer (text) or an image processor.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", deny_unknown_fields)]
pub enum Preprocess {
    #[serde(rename = "tokenizer")]
    Tokenizer {
        tokenizer: String,
        max_length: u64,
        truncation: String,
        padding: String,
    },
    #[serde(rename = "image_processor")]
    ImageProcessor { processor: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variants {
    pub fp32: Variant,
    pub int8: Option<Variant>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub path: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    pub fp32: MetricValues,
    pub int8: Option<MetricValues>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricValues {
    pub n: u64,
    pub mae: f64,
    pub qwk: f64,
    pub accuracy: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    pub parity: Report,
    pub int8: Option<Report>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub path: String,
    pub sha256: String,
    pub passed: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub path: String,
    pub sha256: String,
    pub size: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signing {
    pub algorithm: String,
    pub key_fingerprint: String,
}

impl Manifest {
    /// Variant `name` (`"fp32"` or `"int8"`), if the bundle has it.
    pub fn variant(&self, name: &str) -> Option<&Variant> {
        match name {
            "fp32" => Some(&self.variants.fp32),
            "int8" => self.variants.int8.as_ref(),
            _ => None,
        }
    }

    /// The tensor spec of graph output `name`.
    pub fn output(&self, name: &str) -> Option<&TensorSpec> {
        self.graph.outputs.iter().find(|t| t.name == name)
    }
}

fn semver(text: &str, leading_zeros_ok: bool) -> bool {
    let parts: Vec<&str> = text.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_digit())
                && (leading_zeros_ok || *p == "0" || !p.starts_with('0'))
        })
}

fn rfc3339_utc(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

fn name_ok(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')
        })
}

fn sha_ok(s: &str) -> bool {
    s.len() == 64 && is_lower_hex(s)
}

pub(crate) fn parse(bytes: &[u8], path: &Path) -> Result<Manifest, BundleError> {
    let fail = |field: &str, reason: String| BundleError::Schema {
        path: path.to_path_buf(),
        field: field.into(),
        reason,
    };
    // The format is checked before the rest so a future format gets a clear refusal.
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| fail("(document)", format!("not JSON: {e}")))?;
    match value.get("format") {
        Some(Value::String(f)) if f == FORMAT => {}
        Some(other) => return Err(fail("format", format!("{other} is not \"{FORMAT}\""))),
        None => return Err(fail("format", "missing".into())),
    }
    let m: Manifest =
        serde_json::from_value(value).map_err(|e| fail("(structure)", e.to_string()))?;

    let check =
        |ok: bool, field: &str, reason: String| if ok { Ok(()) } else { Err(fail(field, reason)) };
    check(
        name_ok(&m.name),
        "name",
        format!("{:?} does not match ^[a-z0-9][a-z0-9._-]{{0,63}}$", m.name),
    )?;
    check(
        semver(&m.version, false),
        "version",
        format!("{:?} is not MAJOR.MINOR.PATCH", m.version),
    )?;
    check(
        rfc3339_utc(&m.created_at),
        "created_at",
        format!("{:?} is not YYYY-MM-DDTHH:MM:SSZ", m.created_at),
    )?;
    check(
        !m.lineage.run_id.is_empty(),
        "lineage.run_id",
        "empty".into(),
    )?;
    check(
        !m.lineage.experiment_id.is_empty(),
        "lineage.experiment_id",
        "empty".into(),
    )?;
    if let Some(sha) = &m.lineage.git_sha {
        check(
            sha.len() == 40 && is_lower_hex(sha),
            "lineage.git_sha",
            format!("{sha:?} is not 40 hex"),
        )?;
    }
    check(
        sha_ok(&m.lineage.dataset.raw_sha256),
        "lineage.dataset.raw_sha256",
        "not 64 lowercase hex".into(),
    )?;
    check(
        !m.lineage.dataset.name.is_empty() && !m.lineage.dataset.version.is_empty(),
        "lineage.dataset",
        "empty name or version".into(),
    )?;

    let model = &m.model;
    check(
        matches!(model.modality.as_str(), "text" | "image"),
        "model.modality",
        format!("{:?} is not text or image", model.modality),
    )?;
    check(!model.family.is_empty(), "model.family", "empty".into())?;
    check(
        matches!(model.head.as_str(), "cumulative_link" | "coral" | "corn"),
        "model.head",
        format!("{:?} is not cumulative_link, coral or corn", model.head),
    )?;
    if let Some(link) = &model.link {
        check(
            matches!(link.as_str(), "logit" | "probit" | "cloglog"),
            "model.link",
            format!("{link:?} is not logit, probit or cloglog"),
        )?;
    }
    check(
        model.num_classes >= 2,
        "model.num_classes",
        format!("{} < 2", model.num_classes),
    )?;
    check(
        model.label_names.len() as u64 == model.num_classes,
        "model.label_names",
        format!(
            "{} names for {} classes",
            model.label_names.len(),
            model.num_classes
        ),
    )?;
    if let Some(cut) = &model.cutpoints {
        check(
            cut.len() as u64 + 1 == model.num_classes,
            "model.cutpoints",
            format!("{} cutpoints for {} classes", cut.len(), model.num_classes),
        )?;
    }

    check(m.graph.opset >= 1, "graph.opset", "must be >= 1".into())?;
    for (side, list) in [
        ("graph.inputs", &m.graph.inputs),
        ("graph.outputs", &m.graph.outputs),
    ] {
        check(!list.is_empty(), side, "empty".into())?;
        for (i, t) in list.iter().enumerate() {
            let field = format!("{side}[{i}]");
            check(!t.name.is_empty(), &field, "empty name".into())?;
            check(
                matches!(t.dtype.as_str(), "int64" | "float32"),
                &field,
                format!("dtype {:?} is not int64 or float32", t.dtype),
            )?;
            for d in &t.shape {
                let ok = d.as_u64().is_some() || d.as_str().is_some_and(|s| !s.is_empty());
                check(
                    ok,
                    &field,
                    format!("shape entry {d} is neither a size nor a name"),
                )?;
            }
        }
    }

    check(
        semver(&m.onnxruntime.min_version, true),
        "onnxruntime.min_version",
        format!("{:?} is not MAJOR.MINOR.PATCH", m.onnxruntime.min_version),
    )?;
    check(
        m.onnxruntime.api_version >= 1,
        "onnxruntime.api_version",
        "must be >= 1".into(),
    )?;

    match &m.preprocess {
        Preprocess::Tokenizer {
            tokenizer,
            max_length,
            truncation,
            padding,
        } => {
            check(
                is_safe_path(tokenizer),
                "preprocess.tokenizer",
                format!("unsafe path {tokenizer:?}"),
            )?;
            check(
                *max_length >= 2,
                "preprocess.max_length",
                format!("{max_length} < 2"),
            )?;
            check(
                truncation == "longest_first",
                "preprocess.truncation",
                format!("{truncation:?} is not \"longest_first\""),
            )?;
            check(
                padding == "longest",
                "preprocess.padding",
                format!("{padding:?} is not \"longest\""),
            )?;
        }
        Preprocess::ImageProcessor { processor } => {
            check(
                is_safe_path(processor),
                "preprocess.processor",
                format!("unsafe path {processor:?}"),
            )?;
        }
    }

    let mut variants = vec![("variants.fp32", &m.variants.fp32)];
    if let Some(v) = &m.variants.int8 {
        variants.push(("variants.int8", v));
    }
    for (field, v) in variants {
        check(
            is_safe_path(&v.path),
            field,
            format!("unsafe path {:?}", v.path),
        )?;
        check(
            sha_ok(&v.sha256),
            field,
            "sha256 is not 64 lowercase hex".into(),
        )?;
    }
    check(
        matches!(m.default_variant.as_str(), "fp32" | "int8"),
        "default_variant",
        format!("{:?} is not int8 or fp32", m.default_variant),
    )?;
    let has_int8 = m.variants.int8.is_some();
    if has_int8 {
        check(
            m.metrics.int8.is_some(),
            "metrics.int8",
            "required when variants.int8 exists".into(),
        )?;
        check(
            m.evidence.int8.is_some(),
            "evidence.int8",
            "required when variants.int8 exists".into(),
        )?;
    } else {
        check(
            m.default_variant == "fp32",
            "default_variant",
            "must be fp32 without variants.int8".into(),
        )?;
    }
    let mut reports = vec![("evidence.parity", &m.evidence.parity)];
    if let Some(r) = &m.evidence.int8 {
        reports.push(("evidence.int8", r));
    }
    for (field, r) in reports {
        check(
            is_safe_path(&r.path),
            field,
            format!("unsafe path {:?}", r.path),
        )?;
        check(
            sha_ok(&r.sha256),
            field,
            "sha256 is not 64 lowercase hex".into(),
        )?;
    }

    check(!m.files.is_empty(), "files", "empty".into())?;
    for (i, f) in m.files.iter().enumerate() {
        let field = format!("files[{i}]");
        check(
            sha_ok(&f.sha256),
            &field,
            format!("sha256 of {:?} is not 64 lowercase hex", f.path),
        )?;
        if i > 0 {
            check(
                m.files[i - 1].path < f.path,
                &field,
                format!(
                    "{:?} is not sorted after {:?} (or repeats it)",
                    f.path,
                    m.files[i - 1].path
                ),
            )?;
        }
    }
    check(
        m.signing.algorithm == "ed25519",
        "signing.algorithm",
        format!("{:?} is not \"ed25519\"", m.signing.algorithm),
    )?;
    let fp = &m.signing.key_fingerprint;
    check(
        fp.strip_prefix("sha256:").is_some_and(sha_ok),
        "signing.key_fingerprint",
        format!("{fp:?} is not sha256:<64 lowercase hex>"),
    )?;
    Ok(m)
}
