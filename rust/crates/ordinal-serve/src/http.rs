//! HTTP endpoints, limits and graceful shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::HttpBody;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::service::{make_service_fn, service_fn};
use hyper::{Body, Method, Request, Response, Server, StatusCode};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::metrics::Metrics;
use crate::model::Model;

/// Request limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most texts in one predict request.
    pub max_batch: usize,
    /// Most bytes in one request body.
    pub max_body_bytes: usize,
}

/// Everything a request handler needs.
pub struct App {
    pub model: Model,
    pub limits: Limits,
    pub metrics: Metrics,
    /// `ordinal_serve_info` labels.
    pub info: Vec<(&'static str, String)>,
    /// At most this many graph runs at once (each uses the configured intra-op threads).
    pub inference: Semaphore,
    draining: AtomicBool,
    in_flight: AtomicUsize,
}

impl App {
    pub fn new(
        model: Model,
        limits: Limits,
        info: Vec<(&'static str, String)>,
        inference_workers: usize,
    ) -> App {
        App {
            model,
            limits,
            metrics: Metrics::default(),
            info,
            inference: Semaphore::new(inference_workers.max(1)),
            draining: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// Stop taking new predict requests (they get 503); `/readyz` turns 503.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Predict requests being answered now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// `{"error": {"code": ..., "message": ...}}` with `status`.
pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response<Body> {
    json_response(
        status,
        &json!({"error": {"code": code, "message": message.into()}}),
    )
}

/// A refused request: status, error code and message (turned into the JSON error body).
struct Rejection(StatusCode, &'static str, String);

fn reject(status: StatusCode, code: &'static str, message: impl Into<String>) -> Rejection {
    Rejection(status, code, message.into())
}

impl From<Rejection> for Response<Body> {
    fn from(r: Rejection) -> Response<Body> {
        error(r.0, r.1, r.2)
    }
}

/// Decrements the in-flight count however the handler exits.
struct InFlight<'a>(&'a AtomicUsize);
impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn read_body(body: &mut Body, limit: usize) -> Result<Vec<u8>, Rejection> {
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| {
            reject(
                StatusCode::BAD_REQUEST,
                "body_read_failed",
                format!("could not read the request body: {e}"),
            )
        })?;
        if bytes.len() + chunk.len() > limit {
            return Err(reject(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("request body exceeds {limit} bytes"),
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

fn parse_texts(bytes: &[u8], max_batch: usize) -> Result<Vec<String>, Rejection> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        reject(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("request body is not valid JSON: {e}"),
        )
    })?;
    let object = value.as_object().ok_or_else(|| {
        reject(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "request body must be a JSON object {\"texts\": [...]}",
        )
    })?;
    if let Some(extra) = object.keys().find(|k| k.as_str() != "texts") {
        return Err(reject(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            format!("unknown field {extra:?}; the body is {{\"texts\": [...]}}"),
        ));
    }
    let texts = object
        .get("texts")
        .ok_or_else(|| {
            reject(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                "missing field \"texts\"",
            )
        })?
        .as_array()
        .ok_or_else(|| {
            reject(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                "\"texts\" must be an array of strings",
            )
        })?;
    if texts.len() > max_batch {
        return Err(reject(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!(
                "{} texts exceed the batch limit of {max_batch}",
                texts.len()
            ),
        ));
    }
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            t.as_str().map(str::to_owned).ok_or_else(|| {
                reject(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_text",
                    format!("texts[{i}] is {}, not a string", kind(t)),
                )
            })
        })
        .collect()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

async fn predict(app: Arc<App>, mut req: Request<Body>) -> Response<Body> {
    if app.is_draining() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the service is shutting down",
        );
    }
    app.in_flight.fetch_add(1, Ordering::SeqCst);
    let _guard = InFlight(&app.in_flight);
    let limit = app.limits.max_body_bytes;
    if let Some(length) = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if length > limit as u64 {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("request body of {length} bytes exceeds {limit} bytes"),
            );
        }
    }
    let bytes = match read_body(req.body_mut(), limit).await {
        Ok(b) => b,
        Err(rejection) => return rejection.into(),
    };
    let texts = match parse_texts(&bytes, app.limits.max_batch) {
        Ok(t) => t,
        Err(rejection) => return rejection.into(),
    };
    let permit = match app.inference.acquire().await {
        Ok(p) => p,
        Err(_) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the service is shutting down",
            )
        }
    };
    let size = texts.len();
    // The graph runs on this worker thread (`block_in_place` hands the worker's other tasks
    // to another thread): one thread hand-off fewer per request than `spawn_blocking`, which
    // shows in the tail latency on small, busy machines. A panic is caught and answered 500.
    let result = tokio::task::block_in_place(|| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| app.model.predict(&texts)))
    });
    drop(permit);
    match result {
        Ok(Ok(predictions)) => {
            app.metrics.batch(size);
            json_response(StatusCode::OK, &json!({ "predictions": predictions }))
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "prediction failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "inference_failed",
                e.to_string(),
            )
        }
        Err(_) => {
            tracing::error!("prediction panicked");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "inference_failed",
                "the prediction task failed",
            )
        }
    }
}

/// Route one request.
pub async fn handle(app: Arc<App>, req: Request<Body>) -> Response<Body> {
    let started = Instant::now();
    let endpoint = match req.uri().path() {
        "/v1/predict" => "/v1/predict",
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        "/metrics" => "/metrics",
        _ => "other",
    };
    let response = match (req.method(), endpoint) {
        (&Method::POST, "/v1/predict") => predict(app.clone(), req).await,
        (&Method::GET, "/healthz") => json_response(StatusCode::OK, &json!({"status": "ok"})),
        (&Method::GET, "/readyz") => {
            if app.is_draining() {
                json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({"status": "draining"}),
                )
            } else {
                json_response(StatusCode::OK, &json!({"status": "ready"}))
            }
        }
        (&Method::GET, "/metrics") => {
            let text = app
                .metrics
                .render(&app.info, app.in_flight(), app.is_draining());
            let mut r = Response::new(Body::from(text));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        (_, "other") => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no endpoint {}", req.uri().path()),
        ),
        (method, path) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{method} is not allowed on {path}"),
        ),
    };
    app.metrics.request(
        endpoint,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// How long a drain lasts at least (within `grace`): new requests get 503 meanwhile.
const MIN_DRAIN: Duration = Duration::from_millis(1000);

/// Serve `app` on `listener` until `shutdown` resolves; then drain: new predict requests get
/// 503 while in-flight ones finish (at most `grace`, at least `MIN_DRAIN`), and the server
/// closes.
pub async fn serve(
    app: Arc<App>,
    listener: std::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> Result<(), hyper::Error> {
    let make = {
        let app = app.clone();
        make_service_fn(move |_conn| {
            let app = app.clone();
            async move {
                Ok::<_, Infallible>(service_fn(move |req| {
                    let app = app.clone();
                    async move { Ok::<_, Infallible>(handle(app, req).await) }
                }))
            }
        })
    };
    let drained = {
        let app = app.clone();
        async move {
            shutdown.await;
            app.start_draining();
            tracing::info!(
                in_flight = app.in_flight(),
                "draining: new requests get 503"
            );
            let began = Instant::now();
            let deadline = began + grace;
            // Keep answering 503 for a moment even when nothing is in flight: a client that
            // connected just before the signal sits in the accept backlog, and closing the
            // listener at once would reset it instead of telling it to go elsewhere.
            let linger = began + MIN_DRAIN.min(grace);
            while (app.in_flight() > 0 && Instant::now() < deadline) || Instant::now() < linger {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tracing::info!(in_flight = app.in_flight(), "drained; closing");
        }
    };
    listener.set_nonblocking(true).ok();
    // No Nagle delay on small JSON answers (latency at batch 1 is what the service is for).
    Server::from_tcp(listener)?
        .tcp_nodelay(true)
        .serve(make)
        .with_graceful_shutdown(drained)
        .await
}

/// The bound address of a listener (for the start-up log line).
pub fn local_addr(listener: &std::net::TcpListener) -> Option<SocketAddr> {
    listener.local_addr().ok()
}
