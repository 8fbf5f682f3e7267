//! HTTP behaviour over real sockets: limits, JSON errors, probes, metrics and draining.
//!
//! The graph behind the service is a stand-in implementing the `ordinal_ort::Session`
//! trait (a deterministic function of the token ids, optionally slow), so these tests can
//! hold a request in flight while SIGTERM-style draining starts. The real ONNX Runtime path
//! is covered by `ordinal-ort`'s loader tests and by tests/serving (the real binary and
//! bundle against Python). Plain fixtures: Debian does not package `rstest`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use ordinal_ort::{OrtError, Session, Tensor};
use ordinal_serve::http::{self, App, Limits};
use ordinal_serve::model::Model;
use ordinal_tokenize::Tokenizer;
use serde_json::Value;

const TOKENIZER: &str = r###"{
  "added_tokens": [{"id": 0, "content": "[PAD]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}],
  "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
  "pre_tokenizer": {"type": "BertPreTokenizer"},
  "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]},
  "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##", "max_input_chars_per_word": 100,
            "vocab": {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "good": 4, "bad": 5}}
}"###;

/// Stand-in graph: label = (number of real tokens) mod 3, probs one-hot-ish.
struct StandIn {
    inputs: Vec<String>,
    outputs: Vec<String>,
    delay: Duration,
}

impl Session for StandIn {
    fn input_names(&self) -> &[String] {
        &self.inputs
    }
    fn output_names(&self) -> &[String] {
        &self.outputs
    }
    fn run(&self, inputs: &[(&str, Tensor)], outputs: &[&str]) -> Result<Vec<Tensor>, OrtError> {
        std::thread::sleep(self.delay);
        let mask = inputs.iter().find(|(n, _)| *n == "attention_mask").unwrap();
        let (b, s) = (mask.1.shape[0] as usize, mask.1.shape[1] as usize);
        let m = mask.1.as_i64("attention_mask")?;
        let labels: Vec<i64> = (0..b)
            .map(|i| m[i * s..(i + 1) * s].iter().sum::<i64>() % 3)
            .collect();
        outputs
            .iter()
            .map(|name| match *name {
                "probs" => Tensor::f32(
                    vec![b as i64, 3],
                    labels
                        .iter()
                        .flat_map(|&l| (0..3).map(move |k| if k == l { 0.8 } else { 0.1 }))
                        .collect(),
                ),
                "cum_probs" => Tensor::f32(
                    vec![b as i64, 2],
                    labels
                        .iter()
                        .flat_map(|&l| {
                            [
                                if l >= 1 { 0.9 } else { 0.1 },
                                if l >= 2 { 0.9 } else { 0.1 },
                            ]
                        })
                        .collect(),
                ),
                "label" => Tensor::i64(vec![b as i64], labels.clone()),
                "latent" => Tensor::f32(vec![b as i64], labels.iter().map(|&l| l as f32).collect()),
                other => Err(OrtError::Invalid {
                    what: other.into(),
                    reason: "unknown".into(),
                }),
            })
            .collect()
    }
}

struct Server {
    addr: SocketAddr,
    app: Arc<App>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(delay: Duration) -> Server {
        let tokenizer = Tokenizer::from_json(TOKENIZER, "test-tokenizer.json").unwrap();
        let session = StandIn {
            inputs: vec!["input_ids".into(), "attention_mask".into()],
            outputs: vec![
                "probs".into(),
                "cum_probs".into(),
                "label".into(),
                "latent".into(),
            ],
            delay,
        };
        let model = Model::from_parts(
            tokenizer,
            Box::new(session),
            8,
            vec!["low".into(), "mid".into(), "high".into()],
            true,
        );
        let limits = Limits {
            max_batch: 4,
            max_body_bytes: 256,
        };
        let app = Arc::new(App::new(model, limits, vec![("bundle", "test".into())], 2));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let served = app.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(http::serve(
                served,
                listener,
                async {
                    rx.await.ok();
                },
                Duration::from_secs(10),
            ))
            .unwrap();
        });
        Server {
            addr,
            app,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    fn raw(&self, request: &[u8]) -> (u16, String) {
        raw(self.addr, request)
    }

    fn request(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        send(self.addr, method, path, body)
    }

    fn stop(mut self) {
        self.stop.take().unwrap().send(()).ok();
        self.thread.take().unwrap().join().unwrap();
    }
}

/// Send raw bytes; return (status, body).
fn raw(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn send(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    raw(addr, &req)
}

fn error_code(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    v["error"]["code"].as_str().unwrap().to_string()
}

#[test]
fn predict_answers_one_prediction_per_text() {
    let server = Server::start(Duration::ZERO);
    let (status, body) = server.request(
        "POST",
        "/v1/predict",
        br#"{"texts": ["good", "good bad", ""]}"#,
    );
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let p = v["predictions"].as_array().unwrap();
    assert_eq!(p.len(), 3);
    // [CLS] good [SEP] = 3 tokens -> label 0; 4 tokens -> 1; [CLS][SEP] -> 2.
    let labels: Vec<i64> = p.iter().map(|x| x["label"].as_i64().unwrap()).collect();
    assert_eq!(labels, [0, 1, 2]);
    assert_eq!(p[1]["label_name"], "mid");
    assert_eq!(p[2]["probs"].as_array().unwrap().len(), 3);
    assert_eq!(p[2]["cum_probs"].as_array().unwrap().len(), 2);
    assert_eq!(p[1]["latent"], 1.0);
    let (status, body) = server.request("POST", "/v1/predict", br#"{"texts": []}"#);
    assert_eq!((status, body.as_str()), (200, r#"{"predictions":[]}"#));
    server.stop();
}

#[test]
fn bad_requests_get_typed_json_errors() {
    let server = Server::start(Duration::ZERO);
    let cases: [(&[u8], u16, &str); 8] = [
        (b"{not json", 400, "invalid_json"),
        (b"", 400, "invalid_json"),
        (br#"["good"]"#, 422, "invalid_request"),
        (br#"{"text": ["good"]}"#, 422, "invalid_request"),
        (br#"{"texts": "good"}"#, 422, "invalid_request"),
        (br#"{"texts": ["good", 5]}"#, 422, "invalid_text"),
        (
            br#"{"texts": ["a", "b", "c", "d", "e"]}"#,
            413,
            "batch_too_large",
        ),
        (&[b'x'; 300], 413, "body_too_large"),
    ];
    for (body, status, code) in cases {
        let (got, text) = server.request("POST", "/v1/predict", body);
        assert_eq!((got, error_code(&text).as_str()), (status, code), "{text}");
    }
    let (_, text) = server.request("POST", "/v1/predict", br#"{"texts": ["good", null]}"#);
    assert!(text.contains("texts[1] is null"), "{text}");
    // A chunked body over the limit is cut off while streaming.
    let mut chunked = b"POST /v1/predict HTTP/1.1\r\nHost: t\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        chunked.extend_from_slice(b"64\r\n");
        chunked.extend_from_slice(&[b' '; 100]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (status, text) = server.raw(&chunked);
    assert_eq!(
        (status, error_code(&text).as_str()),
        (413, "body_too_large")
    );
    let (status, text) = server.request("GET", "/v1/predict", b"");
    assert_eq!(
        (status, error_code(&text).as_str()),
        (405, "method_not_allowed")
    );
    let (status, text) = server.request("GET", "/nope", b"");
    assert_eq!((status, error_code(&text).as_str()), (404, "not_found"));
    server.stop();
}

#[test]
fn garbage_never_takes_the_service_down() {
    let server = Server::start(Duration::ZERO);
    let mut seed = 12345u64;
    for i in 0..200 {
        let len = (i * 7) % 250;
        let body: Vec<u8> = (0..len)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (seed >> 33) as u8
            })
            .collect();
        let (status, _) = server.request("POST", "/v1/predict", &body);
        assert!(
            (400..500).contains(&status),
            "status {status} for garbage body {i}"
        );
    }
    // Odd but valid strings: lone control chars, huge words, unicode escapes.
    let (status, body) = server.request(
        "POST",
        "/v1/predict",
        "{\"texts\": [\"\\u0000\", \"\\ud83d\\ude00\", \"x\\u200b\", \"goodgoodgoodgoodgoodgoodgood\"]}".as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    let (status, _) = server.request("GET", "/healthz", b"");
    assert_eq!(status, 200);
    server.stop();
}

#[test]
fn probes_and_metrics() {
    let server = Server::start(Duration::ZERO);
    assert_eq!(server.request("GET", "/healthz", b"").0, 200);
    assert_eq!(server.request("GET", "/readyz", b"").0, 200);
    server.request("POST", "/v1/predict", br#"{"texts": ["good", "bad"]}"#);
    server.request("POST", "/v1/predict", b"{");
    let (status, text) = server.request("GET", "/metrics", b"");
    assert_eq!(status, 200);
    for needle in [
        "ordinal_serve_info{bundle=\"test\"} 1",
        "ordinal_serve_requests_total{endpoint=\"/v1/predict\",status=\"200\"} 1",
        "ordinal_serve_requests_total{endpoint=\"/v1/predict\",status=\"400\"} 1",
        "ordinal_serve_request_duration_seconds_count{endpoint=\"/v1/predict\"} 2",
        "ordinal_serve_batch_size_bucket{le=\"2\"} 1",
        "ordinal_serve_batch_size_bucket{le=\"1\"} 0",
        "ordinal_serve_texts_total 2",
        "ordinal_serve_draining 0",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    server.stop();
}

#[test]
fn draining_finishes_in_flight_requests_and_refuses_new_ones() {
    let server = Server::start(Duration::from_millis(600));
    let addr = server.addr;
    let slow =
        std::thread::spawn(move || send(addr, "POST", "/v1/predict", br#"{"texts": ["good"]}"#));
    // Wait until the slow request is in flight, then start draining as SIGTERM would.
    for _ in 0..200 {
        if server.app.in_flight() > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(server.app.in_flight(), 1);
    server.app.start_draining();
    let (status, text) = server.request("POST", "/v1/predict", br#"{"texts": ["good"]}"#);
    assert_eq!((status, error_code(&text).as_str()), (503, "shutting_down"));
    assert_eq!(server.request("GET", "/readyz", b"").0, 503);
    let (status, body) = slow.join().unwrap();
    assert_eq!(status, 200, "{body}");
    server.stop();
}
