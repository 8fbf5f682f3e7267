//! Prometheus text exposition of the service's counters and histograms.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Latency buckets in seconds (the 10 ms goal and 50 ms limit are bucket edges).
const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// Batch size buckets.
const BATCH_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, buckets: &[f64], value: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; buckets.len()];
        }
        for (i, edge) in buckets.iter().enumerate() {
            if value <= *edge {
                self.counts[i] += 1;
            }
        }
        self.sum += value;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str, buckets: &[f64]) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, edge) in buckets.iter().enumerate() {
            let c = self.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{edge}\"}} {c}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(String, u16), u64>,
    latency: BTreeMap<String, Histogram>,
    batch: Histogram,
    texts: u64,
}

/// All metrics, behind one mutex (updates are a few additions per request).
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    /// Count a finished request of `endpoint` with `status`, taking `seconds`.
    pub fn request(&self, endpoint: &str, status: u16, seconds: f64) {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *m.requests
            .entry((endpoint.to_string(), status))
            .or_default() += 1;
        m.latency
            .entry(endpoint.to_string())
            .or_default()
            .observe(&LATENCY_BUCKETS, seconds);
    }

    /// Record the size of a predicted batch.
    pub fn batch(&self, size: usize) {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        m.batch.observe(&BATCH_BUCKETS, size as f64);
        m.texts += size as u64;
    }

    /// The exposition text; `info` labels go on `ordinal_serve_info`.
    pub fn render(&self, info: &[(&str, String)], in_flight: usize, draining: bool) -> String {
        let m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        let labels: Vec<String> = info
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect();
        out.push_str("# HELP ordinal_serve_info The served bundle and runtime.\n# TYPE ordinal_serve_info gauge\n");
        let _ = writeln!(out, "ordinal_serve_info{{{}}} 1", labels.join(","));
        out.push_str("# HELP ordinal_serve_requests_total HTTP requests by endpoint and status.\n# TYPE ordinal_serve_requests_total counter\n");
        for ((endpoint, status), n) in &m.requests {
            let _ = writeln!(
                out,
                "ordinal_serve_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP ordinal_serve_request_duration_seconds Request latency by endpoint.\n# TYPE ordinal_serve_request_duration_seconds histogram\n");
        for (endpoint, h) in &m.latency {
            h.render(
                &mut out,
                "ordinal_serve_request_duration_seconds",
                &format!("endpoint=\"{endpoint}\""),
                &LATENCY_BUCKETS,
            );
        }
        out.push_str("# HELP ordinal_serve_batch_size Texts per predict request.\n# TYPE ordinal_serve_batch_size histogram\n");
        m.batch
            .render(&mut out, "ordinal_serve_batch_size", "", &BATCH_BUCKETS);
        out.push_str("# HELP ordinal_serve_texts_total Texts predicted.\n# TYPE ordinal_serve_texts_total counter\n");
        let _ = writeln!(out, "ordinal_serve_texts_total {}", m.texts);
        out.push_str("# HELP ordinal_serve_in_flight Predict requests being answered.\n# TYPE ordinal_serve_in_flight gauge\n");
        let _ = writeln!(out, "ordinal_serve_in_flight {in_flight}");
        out.push_str("# HELP ordinal_serve_draining 1 after SIGTERM while in-flight requests finish.\n# TYPE ordinal_serve_draining gauge\n");
        let _ = writeln!(out, "ordinal_serve_draining {}", u8::from(draining));
        out
    }
}
