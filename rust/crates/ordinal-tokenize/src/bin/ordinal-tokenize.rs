//! `ordinal-tokenize TOKENIZER_JSON MAX_LENGTH`: encode texts for parity tests.
//!
//! Reads one JSON string per line on stdin and writes one JSON object per line on stdout:
//! `{"ids": [...], "type_ids": [...]}` (special tokens added, truncated, not padded).

use std::io::{BufRead, BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;

use ordinal_tokenize::Tokenizer;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: ordinal-tokenize TOKENIZER_JSON MAX_LENGTH < texts.jsonl");
        return ExitCode::from(2);
    }
    let Ok(max_length) = args[2].parse::<usize>() else {
        eprintln!("error: MAX_LENGTH {:?} is not a positive integer", args[2]);
        return ExitCode::from(2);
    };
    let tokenizer = match Tokenizer::from_file(Path::new(&args[1])) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let stdin = std::io::stdin();
    let mut out = BufWriter::new(std::io::stdout().lock());
    for (number, line) in stdin.lock().lines().enumerate() {
        let text: String = match line
            .map_err(|e| e.to_string())
            .and_then(|l| serde_json::from_str(&l).map_err(|e| e.to_string()))
        {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: stdin line {}: {e}", number + 1);
                return ExitCode::from(1);
            }
        };
        let e = tokenizer.encode(&text, max_length);
        let row = serde_json::json!({"ids": e.ids, "type_ids": e.type_ids});
        if writeln!(out, "{row}").is_err() {
            return ExitCode::from(1);
        }
    }
    if out.flush().is_err() {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
