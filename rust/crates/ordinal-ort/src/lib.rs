//! ONNX Runtime for the ordinal service, loaded at run time from a shared library.
//!
//! The service talks to ONNX Runtime only through the [`Backend`] and [`Session`] traits.
//! [`DynamicBackend`] implements them by loading `libonnxruntime.so` with `libloading` from
//! `ORT_DYLIB_PATH` (the same contract as the `ort` crate's `load-dynamic` feature), checking
//! the library's version and the C API level the bundle asks for before anything is called.
//! Where the crates.io registry is reachable, an implementation of the same traits on top of
//! the `ort` crate can replace it without touching the service (see docs/serving.md).

mod dynamic;
pub mod sys;

use std::fmt;
use std::path::{Path, PathBuf};

pub use dynamic::DynamicBackend;

/// The environment variable naming the ONNX Runtime shared library.
pub const ORT_DYLIB_PATH: &str = "ORT_DYLIB_PATH";

/// Errors from loading ONNX Runtime or running a graph. Each names what it was about.
#[derive(Debug, thiserror::Error)]
pub enum OrtError {
    #[error("{ORT_DYLIB_PATH} is not set: point it at libonnxruntime.so (rust/scripts/ort-bootstrap prints it)")]
    PathNotSet,
    #[error("ONNX Runtime library {path} does not exist (version required: >= {required})")]
    LibraryMissing { path: PathBuf, required: Version },
    #[error("{path} could not be loaded as a shared library (version required: >= {required}): {reason}")]
    LibraryOpen {
        path: PathBuf,
        required: Version,
        reason: String,
    },
    #[error("{path} is not ONNX Runtime: symbol {symbol} not found (version required: >= {required}): {reason}")]
    NotOnnxRuntime {
        path: PathBuf,
        symbol: &'static str,
        required: Version,
        reason: String,
    },
    #[error("ONNX Runtime at {path} reports version {found:?}, which is not MAJOR.MINOR.PATCH (version required: >= {required})")]
    BadVersion {
        path: PathBuf,
        found: String,
        required: Version,
    },
    #[error(
        "ONNX Runtime at {path} is too old: version found {found}, version required >= {required}"
    )]
    TooOld {
        path: PathBuf,
        found: Version,
        required: Version,
    },
    #[error("ONNX Runtime at {path} (version found {found}) returned no C API for level {api_level} (version required: >= {required})")]
    NoApi {
        path: PathBuf,
        found: Version,
        api_level: u32,
        required: Version,
    },
    #[error("ONNX Runtime at {path} (version {found}) hands out an API table with null entries: {missing:?}")]
    IncompleteApi {
        path: PathBuf,
        found: Version,
        missing: Vec<&'static str>,
    },
    #[error("ONNX Runtime call {call} failed (code {code}): {message}")]
    Call {
        call: &'static str,
        code: i32,
        message: String,
    },
    #[error("invalid input for {what}: {reason}")]
    Invalid { what: String, reason: String },
}

/// A `MAJOR.MINOR.PATCH` version, ordered numerically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    /// Parse `MAJOR.MINOR.PATCH`; anything else (pre-release tags included) is `None`.
    ///
    /// ```
    /// use ordinal_ort::Version;
    /// assert_eq!(Version::parse("1.32.0"), Some(Version { major: 1, minor: 32, patch: 0 }));
    /// assert_eq!(Version::parse("1.32"), None);
    /// ```
    pub fn parse(text: &str) -> Option<Version> {
        let mut parts = text.trim().split('.');
        let mut next = || -> Option<u32> {
            let part = parts.next()?;
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            part.parse().ok()
        };
        let version = Version {
            major: next()?,
            minor: next()?,
            patch: next()?,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(version)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// What a consumer needs from the library: the bundle's `onnxruntime.min_version` and
/// `onnxruntime.api_version`.
#[derive(Debug, Clone, Copy)]
pub struct Requirement {
    pub min_version: Version,
    pub api_level: u32,
}

/// Session settings that the service exposes on its command line.
#[derive(Debug, Clone, Copy)]
pub struct SessionOptions {
    /// Threads inside one operator (`intra_op_num_threads`); 0 lets ONNX Runtime choose.
    pub intra_op_threads: usize,
    /// Threads across operators (`inter_op_num_threads`); 0 lets ONNX Runtime choose.
    pub inter_op_threads: usize,
}

/// A dense CPU tensor, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<i64>,
    pub data: TensorData,
}

/// Element storage of a [`Tensor`]; the graphs only use these two types.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

impl Tensor {
    /// An int64 tensor, checking that `shape` matches the element count.
    pub fn i64(shape: Vec<i64>, data: Vec<i64>) -> Result<Tensor, OrtError> {
        Tensor::checked(shape, TensorData::I64(data))
    }

    /// A float32 tensor, checking that `shape` matches the element count.
    pub fn f32(shape: Vec<i64>, data: Vec<f32>) -> Result<Tensor, OrtError> {
        Tensor::checked(shape, TensorData::F32(data))
    }

    fn checked(shape: Vec<i64>, data: TensorData) -> Result<Tensor, OrtError> {
        let len = match &data {
            TensorData::F32(v) => v.len(),
            TensorData::I64(v) => v.len(),
        };
        let expected = shape.iter().try_fold(1usize, |acc, &d| {
            usize::try_from(d).ok().and_then(|d| acc.checked_mul(d))
        });
        if expected != Some(len) {
            return Err(OrtError::Invalid {
                what: "tensor".into(),
                reason: format!("shape {shape:?} does not hold {len} elements"),
            });
        }
        Ok(Tensor { shape, data })
    }

    /// The float32 elements, or an error naming `name` when the tensor holds another type.
    pub fn as_f32(&self, name: &str) -> Result<&[f32], OrtError> {
        match &self.data {
            TensorData::F32(v) => Ok(v),
            TensorData::I64(_) => Err(OrtError::Invalid {
                what: name.into(),
                reason: "expected float32, got int64".into(),
            }),
        }
    }

    /// The int64 elements, or an error naming `name` when the tensor holds another type.
    pub fn as_i64(&self, name: &str) -> Result<&[i64], OrtError> {
        match &self.data {
            TensorData::I64(v) => Ok(v),
            TensorData::F32(_) => Err(OrtError::Invalid {
                what: name.into(),
                reason: "expected int64, got float32".into(),
            }),
        }
    }
}

/// An inference runtime: ONNX Runtime loaded dynamically here, the `ort` crate elsewhere.
pub trait Backend: Send + Sync {
    /// The runtime's version as the library reports it.
    fn version(&self) -> Version;
    /// The C API level in use.
    fn api_level(&self) -> u32;
    /// Where the runtime was loaded from (for logs).
    fn location(&self) -> &Path;
    /// Load a graph.
    fn load_session(
        &self,
        model: &Path,
        options: &SessionOptions,
    ) -> Result<Box<dyn Session>, OrtError>;
}

/// A loaded graph. `run` may be called from several threads at once (ONNX Runtime allows
/// concurrent `Run` calls on one session).
pub trait Session: Send + Sync {
    fn input_names(&self) -> &[String];
    fn output_names(&self) -> &[String];
    /// Run the graph on named inputs; returns the requested outputs in the order asked.
    fn run(&self, inputs: &[(&str, Tensor)], outputs: &[&str]) -> Result<Vec<Tensor>, OrtError>;
}
