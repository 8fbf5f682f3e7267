//! `ordinal-serve`: serves a verified `ordinal-bundle/1` text bundle over HTTP.
//!
//! `POST /v1/predict` tokenizes in Rust (`ordinal-tokenize`), runs the bundle's graph through
//! ONNX Runtime loaded at run time (`ordinal-ort`) and answers with the graph's own
//! probabilities and labels. See docs/serving.md.

pub mod audit;
pub mod http;
pub mod metrics;
pub mod model;
