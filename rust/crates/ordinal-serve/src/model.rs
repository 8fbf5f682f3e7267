//! The served model: a verified bundle's tokenizer and one graph variant.

use std::path::Path;
use std::sync::Arc;

use ordinal_bundle::{Preprocess, VerifiedBundle};
use ordinal_ort::{Backend, Requirement, Session, SessionOptions, Tensor, Version};
use ordinal_tokenize::Tokenizer;
use serde::Serialize;

/// Graph inputs the service knows how to feed (BERT family).
const KNOWN_INPUTS: [&str; 3] = ["input_ids", "attention_mask", "token_type_ids"];
/// Outputs every bundle graph has; `latent` is optional (absent for CORN).
const REQUIRED_OUTPUTS: [&str; 3] = ["probs", "cum_probs", "label"];

/// Why the model could not be set up or could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("bundle {bundle}: {reason}")]
    Bundle { bundle: String, reason: String },
    #[error(transparent)]
    Tokenizer(#[from] ordinal_tokenize::TokenizerError),
    #[error(transparent)]
    Runtime(#[from] ordinal_ort::OrtError),
    #[error("graph output {name}: {reason}")]
    Output { name: String, reason: String },
}

/// One answer of `POST /v1/predict`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Prediction {
    pub label: i64,
    pub label_name: String,
    pub probs: Vec<f32>,
    pub cum_probs: Vec<f32>,
    /// `null` for heads without a latent score (CORN).
    pub latent: Option<f32>,
}

/// Tokenizer + session + the facts from `bundle.json` needed to answer.
pub struct Model {
    tokenizer: Tokenizer,
    session: Box<dyn Session>,
    max_length: usize,
    label_names: Vec<String>,
    num_classes: usize,
    inputs: Vec<String>,
    outputs: Vec<&'static str>,
    /// The variant served (`fp32` or `int8`).
    pub variant: String,
    /// sha256 of the served graph file.
    pub variant_sha256: String,
}

/// The ONNX Runtime requirement a bundle states.
pub fn requirement(bundle: &VerifiedBundle) -> Result<Requirement, ModelError> {
    let ort = &bundle.manifest.onnxruntime;
    let min_version = Version::parse(&ort.min_version).ok_or_else(|| ModelError::Bundle {
        bundle: bundle.root.display().to_string(),
        reason: format!(
            "onnxruntime.min_version {:?} is not MAJOR.MINOR.PATCH",
            ort.min_version
        ),
    })?;
    Ok(Requirement {
        min_version,
        api_level: ort.api_version,
    })
}

impl Model {
    /// Set up `variant` (default: the bundle's `default_variant`) of a verified text bundle.
    pub fn load(
        bundle: &VerifiedBundle,
        backend: &dyn Backend,
        variant: Option<&str>,
        options: &SessionOptions,
    ) -> Result<Model, ModelError> {
        let m = &bundle.manifest;
        let fail = |reason: String| ModelError::Bundle {
            bundle: bundle.root.display().to_string(),
            reason,
        };
        let (tokenizer_path, max_length) = match &m.preprocess {
            Preprocess::Tokenizer {
                tokenizer,
                max_length,
                ..
            } => (tokenizer.as_str(), *max_length as usize),
            Preprocess::ImageProcessor { .. } => {
                return Err(fail(
                    "is an image bundle (preprocess.kind image_processor); ordinal-serve serves text bundles only".into(),
                ))
            }
        };
        if m.model.modality != "text" {
            return Err(fail(format!(
                "model.modality is {:?}; ordinal-serve serves text bundles only",
                m.model.modality
            )));
        }
        let tokenizer = Tokenizer::from_file(&bundle.path(tokenizer_path))?;
        if max_length <= tokenizer.special_token_count() {
            return Err(fail(format!(
                "preprocess.max_length {max_length} leaves no room after {} special tokens",
                tokenizer.special_token_count()
            )));
        }
        let variant = variant.unwrap_or(&m.default_variant).to_string();
        let spec = m.variant(&variant).ok_or_else(|| {
            fail(format!(
                "has no {variant:?} variant (variants: fp32{})",
                if m.variants.int8.is_some() {
                    ", int8"
                } else {
                    ""
                }
            ))
        })?;
        for input in &m.graph.inputs {
            if !KNOWN_INPUTS.contains(&input.name.as_str()) || input.dtype != "int64" {
                return Err(fail(format!(
                    "graph input {} ({}) is not one of {KNOWN_INPUTS:?} as int64",
                    input.name, input.dtype
                )));
            }
        }
        for name in REQUIRED_OUTPUTS {
            if m.output(name).is_none() {
                return Err(fail(format!("graph.outputs has no {name:?}")));
            }
        }
        let session = backend.load_session(&bundle.path(&spec.path), options)?;
        let declared: Vec<&str> = m.graph.inputs.iter().map(|t| t.name.as_str()).collect();
        let mut actual: Vec<&str> = session.input_names().iter().map(String::as_str).collect();
        let mut sorted_declared = declared.clone();
        sorted_declared.sort_unstable();
        actual.sort_unstable();
        if sorted_declared != actual {
            return Err(fail(format!(
                "{} has inputs {actual:?} but bundle.json declares {declared:?}",
                spec.path
            )));
        }
        let mut outputs: Vec<&'static str> = REQUIRED_OUTPUTS.to_vec();
        if m.output("latent").is_some() {
            outputs.push("latent");
        }
        for name in &outputs {
            if !session.output_names().iter().any(|o| o == name) {
                return Err(fail(format!("{} has no output {name:?}", spec.path)));
            }
        }
        Ok(Model {
            tokenizer,
            session,
            max_length,
            label_names: m.model.label_names.clone(),
            num_classes: m.model.num_classes as usize,
            inputs: m.graph.inputs.iter().map(|t| t.name.clone()).collect(),
            outputs,
            variant,
            variant_sha256: spec.sha256.clone(),
        })
    }

    /// Build a model from parts (used by tests with a stand-in session).
    pub fn from_parts(
        tokenizer: Tokenizer,
        session: Box<dyn Session>,
        max_length: usize,
        label_names: Vec<String>,
        with_latent: bool,
    ) -> Model {
        let inputs = session.input_names().to_vec();
        let mut outputs: Vec<&'static str> = REQUIRED_OUTPUTS.to_vec();
        if with_latent {
            outputs.push("latent");
        }
        Model {
            tokenizer,
            session,
            max_length,
            num_classes: label_names.len(),
            label_names,
            inputs,
            outputs,
            variant: "fp32".into(),
            variant_sha256: String::new(),
        }
    }

    /// Tokenize `texts`, run the graph and decode one prediction per text.
    pub fn predict(&self, texts: &[String]) -> Result<Vec<Prediction>, ModelError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let batch = self.tokenizer.encode_batch(texts, self.max_length);
        let shape = vec![batch.batch_size as i64, batch.seq_len as i64];
        let mut feeds: Vec<(&str, Tensor)> = Vec::with_capacity(self.inputs.len());
        for name in &self.inputs {
            let data = match name.as_str() {
                "input_ids" => batch.input_ids.clone(),
                "attention_mask" => batch.attention_mask.clone(),
                _ => batch.token_type_ids.clone(),
            };
            feeds.push((name.as_str(), Tensor::i64(shape.clone(), data)?));
        }
        let out = self.session.run(&feeds, &self.outputs)?;
        let n = texts.len();
        let k = self.num_classes;
        let sized = |index: usize, name: &str, want: usize| -> Result<&Tensor, ModelError> {
            let t = &out[index];
            let len = match &t.data {
                ordinal_ort::TensorData::F32(v) => v.len(),
                ordinal_ort::TensorData::I64(v) => v.len(),
            };
            if len != want {
                return Err(ModelError::Output {
                    name: name.into(),
                    reason: format!("has {len} values (shape {:?}); expected {want}", t.shape),
                });
            }
            Ok(t)
        };
        let probs = sized(0, "probs", n * k)?.as_f32("probs")?;
        let cum = sized(1, "cum_probs", n * (k - 1))?.as_f32("cum_probs")?;
        let labels = sized(2, "label", n)?.as_i64("label")?;
        let latent = if self.outputs.len() > 3 {
            Some(sized(3, "latent", n)?.as_f32("latent")?)
        } else {
            None
        };
        (0..n)
            .map(|i| {
                let label = labels[i];
                let label_name = usize::try_from(label)
                    .ok()
                    .and_then(|l| self.label_names.get(l))
                    .ok_or_else(|| ModelError::Output {
                        name: "label".into(),
                        reason: format!("{label} is not a class index 0..{k}"),
                    })?
                    .clone();
                Ok(Prediction {
                    label,
                    label_name,
                    probs: probs[i * k..(i + 1) * k].to_vec(),
                    cum_probs: cum[i * (k - 1)..(i + 1) * (k - 1)].to_vec(),
                    latent: latent.map(|l| l[i]),
                })
            })
            .collect()
    }
}

/// A model shared between request handlers.
pub type SharedModel = Arc<Model>;

/// Display helper for logs.
pub fn describe(bundle: &VerifiedBundle, path: &Path) -> String {
    format!(
        "{} {} ({}; bundle.json sha256 {})",
        bundle.manifest.name,
        bundle.manifest.version,
        path.display(),
        bundle.digest
    )
}
