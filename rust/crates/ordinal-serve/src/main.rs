//! The `ordinal-serve` command line.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use ordinal_bundle::{verify, Trust};
use ordinal_ort::{Backend, DynamicBackend, SessionOptions};
use ordinal_serve::audit;
use ordinal_serve::http::{self, App, Limits};
use ordinal_serve::model::{self, Model};
use serde_json::json;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Variant {
    Int8,
    Fp32,
}

/// Serve an ordinal-bundle/1 text bundle over HTTP (docs/serving.md).
#[derive(Parser, Debug)]
#[command(name = "ordinal-serve", version)]
struct Cli {
    /// The bundle folder (holding bundle.json and bundle.sig).
    #[arg(long, env = "ORDINAL_BUNDLE")]
    bundle: PathBuf,
    /// Graph variant to serve; default: the bundle's default_variant.
    #[arg(long, value_enum, env = "ORDINAL_VARIANT")]
    variant: Option<Variant>,
    /// Address to listen on.
    #[arg(long, env = "ORDINAL_ADDR", default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Trusted signing keys: sha256:<hex> fingerprints or base64 public keys (comma-separated
    /// or repeated). With none, every bundle is refused.
    #[arg(
        long = "trusted-key",
        env = "ORDINAL_TRUSTED_KEYS",
        value_delimiter = ','
    )]
    trusted_keys: Vec<String>,
    /// Accept any correctly self-signed bundle (development only; logged as untrusted).
    #[arg(long, env = "ORDINAL_ALLOW_ANY_SELF_SIGNED")]
    allow_any_self_signed: bool,
    /// ONNX Runtime shared library (rust/scripts/ort-bootstrap prints it).
    #[arg(long, env = "ORT_DYLIB_PATH")]
    ort_dylib_path: PathBuf,
    /// Threads inside one graph operator (ONNX Runtime intra_op_num_threads; 0 = ORT decides).
    #[arg(long, env = "ORDINAL_INTRA_OP_THREADS", default_value_t = 1)]
    intra_op_threads: usize,
    /// Threads across graph operators (ONNX Runtime inter_op_num_threads).
    #[arg(long, env = "ORDINAL_INTER_OP_THREADS", default_value_t = 1)]
    inter_op_threads: usize,
    /// Graph runs allowed at once (each uses intra-op-threads threads).
    #[arg(long, env = "ORDINAL_INFERENCE_WORKERS", default_value_t = 1)]
    inference_workers: usize,
    /// Threads answering HTTP (tokio workers).
    #[arg(long, env = "ORDINAL_HTTP_THREADS", default_value_t = 2)]
    http_threads: usize,
    /// Most texts in one request (more get 413).
    #[arg(long, env = "ORDINAL_MAX_BATCH", default_value_t = 64)]
    max_batch: usize,
    /// Most bytes in one request body (more get 413).
    #[arg(long, env = "ORDINAL_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    max_body_bytes: usize,
    /// Seconds in-flight requests get to finish after SIGTERM.
    #[arg(long, env = "ORDINAL_SHUTDOWN_GRACE_SECONDS", default_value_t = 30)]
    shutdown_grace_seconds: u64,
    /// Append a hash-chained `consume` record to this JSON Lines audit log at start.
    #[arg(long, env = "ORDINAL_AUDIT_LOG")]
    audit_log: Option<PathBuf>,
    /// Actor recorded in the audit log.
    #[arg(long, env = "ORDINAL_ACTOR", default_value = "ordinal-serve")]
    actor: String,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_target(false)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("ordinal-serve: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    if cli.max_batch == 0 || cli.max_body_bytes == 0 {
        bail!("--max-batch and --max-body-bytes must be positive");
    }
    let trust = if cli.allow_any_self_signed {
        Trust::any_self_signed()
    } else {
        Trust::keys(&cli.trusted_keys).map_err(anyhow::Error::msg)?
    };
    let bundle = verify(&cli.bundle, &trust)
        .with_context(|| format!("refusing bundle {}", cli.bundle.display()))?;
    if !bundle.trusted {
        tracing::warn!(
            key = %bundle.key_fingerprint,
            "bundle accepted only because --allow-any-self-signed is set: its key is not trusted"
        );
    }
    tracing::info!(bundle = %model::describe(&bundle, &cli.bundle), key = %bundle.key_fingerprint, "bundle verified");
    let requirement = model::requirement(&bundle)?;
    let backend = DynamicBackend::load(&cli.ort_dylib_path, &requirement)?;
    tracing::info!(
        path = %backend.location().display(),
        version = %backend.version(),
        api_level = backend.api_level(),
        required = %requirement.min_version,
        "ONNX Runtime loaded"
    );
    let options = SessionOptions {
        intra_op_threads: cli.intra_op_threads,
        inter_op_threads: cli.inter_op_threads,
    };
    let variant = cli.variant.map(|v| match v {
        Variant::Int8 => "int8",
        Variant::Fp32 => "fp32",
    });
    let model = Model::load(&bundle, &backend, variant, &options)?;
    tracing::info!(
        variant = %model.variant,
        intra_op_threads = cli.intra_op_threads,
        inter_op_threads = cli.inter_op_threads,
        inference_workers = cli.inference_workers,
        http_threads = cli.http_threads,
        max_batch = cli.max_batch,
        max_body_bytes = cli.max_body_bytes,
        "model loaded; thread counts"
    );
    if let Some(log) = &cli.audit_log {
        let subject = json!({
            "name": bundle.manifest.name,
            "version": bundle.manifest.version,
            "digests": {"bundle.json": bundle.digest},
        });
        let evidence = json!({
            "consumer": "ordinal-serve",
            "consumer_version": env!("CARGO_PKG_VERSION"),
            "variant": model.variant,
            "variant_sha256": model.variant_sha256,
            "key_fingerprint": bundle.key_fingerprint,
            "trusted": bundle.trusted,
            "onnxruntime": backend.version().to_string(),
            "addr": cli.addr.to_string(),
            "pid": std::process::id(),
        });
        audit::append_consume(log, &cli.actor, subject, evidence)
            .with_context(|| format!("cannot append to audit log {}", log.display()))?;
        tracing::info!(log = %log.display(), "consume event appended to the audit log");
    }
    let info = vec![
        ("bundle", bundle.manifest.name.clone()),
        ("version", bundle.manifest.version.clone()),
        ("digest", bundle.digest.clone()),
        ("variant", model.variant.clone()),
        ("onnxruntime", backend.version().to_string()),
    ];
    let app = Arc::new(App::new(
        model,
        Limits {
            max_batch: cli.max_batch,
            max_body_bytes: cli.max_body_bytes,
        },
        info,
        cli.inference_workers,
    ));
    let listener =
        TcpListener::bind(cli.addr).with_context(|| format!("cannot listen on {}", cli.addr))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.http_threads.max(1))
        .max_blocking_threads(cli.inference_workers.max(1) + cli.http_threads.max(1))
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let grace = Duration::from_secs(cli.shutdown_grace_seconds);
    runtime.block_on(async move {
        let addr = http::local_addr(&listener);
        tracing::info!(addr = ?addr, "listening");
        http::serve(app, listener, shutdown_signal(), grace).await
    })?;
    // Keep the backend (and the loaded library) alive until the server is done.
    drop(backend);
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot listen for SIGTERM: {e}");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
