//! Consumption events appended to a hash-chained JSON Lines audit log.
//!
//! The record has the fields and chaining of the release audit log
//! (`ordinal/release/audit.py`): `seq`, `time`, `actor`, `action`, `subject`, `evidence`,
//! `prev_hash`, `hash`, where `hash` is the sha256 of the record's canonical JSON without
//! `hash` and `prev_hash` the previous record's hash (64 zeros for the first). So
//! `ordinal.release.audit.verify_records` checks a log this service appends to. The file is
//! locked (`flock`) while the last record is read and the new one appended.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Canonical JSON as `ordinal.release.canonical_json` writes it for records without floats:
/// sorted keys, no white space, non-ASCII escaped as `\uXXXX`.
pub fn canonical(value: &Value) -> String {
    // serde_json's default map is ordered by key, and `to_string` is compact.
    let text = value.to_string();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC) for `t`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_micros()
    )
}

/// Append one `consume` record; returns it.
pub fn append_consume(
    log: &Path,
    actor: &str,
    subject: Value,
    evidence: Value,
) -> std::io::Result<Value> {
    if let Some(parent) = log.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)?;
        }
    }
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(log)?;
    // SAFETY: flock on a file descriptor we own; released when the file is closed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut text = String::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_string(&mut text)?;
    let (seq, prev_hash) = match text.lines().rfind(|l| !l.trim().is_empty()) {
        None => (1, GENESIS.to_string()),
        Some(line) => {
            let last: Value = serde_json::from_str(line).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: last record is not JSON: {e}", log.display()),
                )
            })?;
            let seq = last.get("seq").and_then(Value::as_u64);
            let hash = last.get("hash").and_then(Value::as_str);
            match (seq, hash) {
                (Some(s), Some(h)) => (s + 1, h.to_string()),
                _ => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{}: last record has no seq/hash", log.display()),
                    ))
                }
            }
        }
    };
    let mut record = Map::new();
    record.insert("seq".into(), json!(seq));
    record.insert("time".into(), json!(rfc3339(SystemTime::now())));
    record.insert("actor".into(), json!(actor));
    record.insert("action".into(), json!("consume"));
    record.insert("subject".into(), subject);
    record.insert("evidence".into(), evidence);
    record.insert("prev_hash".into(), json!(prev_hash));
    let hash = hex::encode(Sha256::digest(
        canonical(&Value::Object(record.clone())).as_bytes(),
    ));
    record.insert("hash".into(), json!(hash));
    let record = Value::Object(record);
    // One write of the whole line (O_APPEND), under the lock.
    file.write_all(format!("{}\n", canonical(&record)).as_bytes())?;
    file.sync_data()?;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_format_matches_python() {
        let t = UNIX_EPOCH + std::time::Duration::from_micros(1_764_504_000_123_456);
        assert_eq!(rfc3339(t), "2025-11-30T12:00:00.123456Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn canonical_sorts_keys_and_escapes_non_ascii() {
        let v = json!({"b": 1, "a": ["é", "😀"], "c": {"z": null, "y": true}});
        assert_eq!(
            canonical(&v),
            r#"{"a":["\u00e9","\ud83d\ude00"],"b":1,"c":{"y":true,"z":null}}"#
        );
    }

    #[test]
    fn records_chain() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit/consume.jsonl");
        let a = append_consume(&log, "svc", json!({"name": "x"}), json!({})).unwrap();
        let b = append_consume(&log, "svc", json!({"name": "y"}), json!({})).unwrap();
        assert_eq!(a["seq"], 1);
        assert_eq!(a["prev_hash"], GENESIS);
        assert_eq!(b["seq"], 2);
        assert_eq!(b["prev_hash"], a["hash"]);
        let mut body = b.as_object().unwrap().clone();
        let hash = body.remove("hash").unwrap();
        assert_eq!(
            hash,
            json!(hex::encode(Sha256::digest(
                canonical(&Value::Object(body)).as_bytes()
            )))
        );
        assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 2);
    }
}
