//! BERT-family tokenization from a Hugging Face `tokenizer.json`.
//!
//! Implements exactly what such a file specifies for BERT's WordPiece family, following the
//! `tokenizers` library (the "fast" tokenizer `AutoTokenizer` returns):
//!
//! * added tokens (`[CLS]`, `[MASK]`, ...) are matched in the raw text first
//!   (leftmost-longest), and the text between them goes through the rest of the pipeline;
//! * normalizer `BertNormalizer`: `clean_text`, `handle_chinese_chars`, `strip_accents`
//!   (unset means "same as `lowercase`"), `lowercase` (per character, as `tokenizers` does);
//! * pre-tokenizer `BertPreTokenizer`: split on white space (removed) and on punctuation
//!   (isolated);
//! * model `WordPiece`: greedy longest-match-first with `continuing_subword_prefix`; a word
//!   longer than `max_input_chars_per_word` characters, or one that cannot be covered, is
//!   `unk_token`;
//! * post-processor `TemplateProcessing` (single-sequence template) or `BertProcessing`;
//! * truncation to `max_length` tokens including special tokens, padding on the right to the
//!   longest member of the batch (docs/bundle-format.md, "Preprocessing").
//!
//! Anything else in the file (another model, normalizer, pre-tokenizer, post-processor, an
//! added token with `lstrip`/`rstrip`/`single_word`/`normalized`) is refused at load.
//! The Unicode category tables come from the same `unicode_categories` crate `tokenizers`
//! uses, so control, punctuation and mark classification match character for character.

use std::collections::HashMap;
use std::path::Path;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use serde_json::Value;
use unicode_categories::UnicodeCategories;
use unicode_normalization::UnicodeNormalization;

/// Why a `tokenizer.json` was refused or could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("cannot read tokenizer file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("tokenizer file {path} is not valid JSON: {reason}")]
    Json { path: String, reason: String },
    #[error(
        "tokenizer file {path}: {field} is {found}; the Rust service implements only {supported}"
    )]
    Unsupported {
        path: String,
        field: String,
        found: String,
        supported: &'static str,
    },
    #[error("tokenizer file {path}: {field}: {reason}")]
    Invalid {
        path: String,
        field: String,
        reason: String,
    },
}

/// One tokenized batch, padded: every row has `seq_len` entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub batch_size: usize,
    pub seq_len: usize,
    /// Row-major `(batch_size, seq_len)`.
    pub input_ids: Vec<i64>,
    pub attention_mask: Vec<i64>,
    pub token_type_ids: Vec<i64>,
}

/// One text's encoding before padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoding {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
}

#[derive(Debug, Clone)]
struct Normalizer {
    clean_text: bool,
    handle_chinese_chars: bool,
    strip_accents: bool,
    lowercase: bool,
}

#[derive(Debug, Clone)]
enum Piece {
    Special { ids: Vec<u32>, type_id: u32 },
    Sequence { type_id: u32 },
}

/// A loaded WordPiece tokenizer.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    vocab: HashMap<String, u32>,
    unk_id: u32,
    prefix: String,
    max_input_chars_per_word: usize,
    normalizer: Option<Normalizer>,
    added: Option<AhoCorasick>,
    added_ids: Vec<u32>,
    template: Vec<Piece>,
    special_count: usize,
    pad_id: u32,
    pad_type_id: u32,
}

fn kind(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Object(map) => match map.get("type").and_then(Value::as_str) {
            Some(t) => format!("{t:?}"),
            None => "an object without \"type\"".into(),
        },
        other => other.to_string(),
    }
}

impl Tokenizer {
    /// Read and check `path`.
    pub fn from_file(path: &Path) -> Result<Tokenizer, TokenizerError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| TokenizerError::Read {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        Tokenizer::from_json(&text, &shown)
    }

    /// Parse a `tokenizer.json` document; `path` is only used in error messages.
    pub fn from_json(text: &str, path: &str) -> Result<Tokenizer, TokenizerError> {
        let root: Value = serde_json::from_str(text).map_err(|e| TokenizerError::Json {
            path: path.into(),
            reason: e.to_string(),
        })?;
        let unsupported =
            |field: &str, value: &Value, supported: &'static str| TokenizerError::Unsupported {
                path: path.into(),
                field: field.into(),
                found: kind(value),
                supported,
            };
        let invalid = |field: &str, reason: String| TokenizerError::Invalid {
            path: path.into(),
            field: field.into(),
            reason,
        };
        let null = Value::Null;
        let get = |value: &'_ Value, key: &str| -> Value {
            value.get(key).cloned().unwrap_or(Value::Null)
        };

        // Model: WordPiece.
        let model = root.get("model").unwrap_or(&null);
        if model.get("type").and_then(Value::as_str) != Some("WordPiece") {
            return Err(unsupported("model.type", model, "\"WordPiece\""));
        }
        let vocab_value = model
            .get("vocab")
            .and_then(Value::as_object)
            .ok_or_else(|| invalid("model.vocab", "missing or not an object".into()))?;
        let mut vocab = HashMap::with_capacity(vocab_value.len());
        for (token, id) in vocab_value {
            let id = id
                .as_u64()
                .and_then(|i| u32::try_from(i).ok())
                .ok_or_else(|| invalid("model.vocab", format!("id of {token:?} is not a u32")))?;
            vocab.insert(token.clone(), id);
        }
        let unk_token = model
            .get("unk_token")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("model.unk_token", "missing".into()))?;
        let unk_id = *vocab.get(unk_token).ok_or_else(|| {
            invalid(
                "model.unk_token",
                format!("{unk_token:?} is not in the vocab"),
            )
        })?;
        let prefix = model
            .get("continuing_subword_prefix")
            .and_then(Value::as_str)
            .unwrap_or("##")
            .to_string();
        let max_input_chars_per_word = model
            .get("max_input_chars_per_word")
            .and_then(Value::as_u64)
            .unwrap_or(100) as usize;

        // Normalizer: BertNormalizer (or none).
        let normalizer_value = root.get("normalizer").unwrap_or(&null);
        let normalizer = match normalizer_value {
            Value::Null => None,
            v if v.get("type").and_then(Value::as_str) == Some("BertNormalizer") => {
                let flag = |key: &str, default: bool| -> Result<bool, TokenizerError> {
                    match v.get(key) {
                        None | Some(Value::Null) => Ok(default),
                        Some(Value::Bool(b)) => Ok(*b),
                        Some(other) => Err(invalid(
                            &format!("normalizer.{key}"),
                            format!("{other} is not a boolean"),
                        )),
                    }
                };
                let lowercase = flag("lowercase", true)?;
                Some(Normalizer {
                    clean_text: flag("clean_text", true)?,
                    handle_chinese_chars: flag("handle_chinese_chars", true)?,
                    // `strip_accents: null` means "follow lowercase" in tokenizers.
                    strip_accents: flag("strip_accents", lowercase)?,
                    lowercase,
                })
            }
            other => {
                return Err(unsupported(
                    "normalizer",
                    other,
                    "\"BertNormalizer\" or null",
                ))
            }
        };

        // Pre-tokenizer: BertPreTokenizer.
        let pre = root.get("pre_tokenizer").unwrap_or(&null);
        if pre.get("type").and_then(Value::as_str) != Some("BertPreTokenizer") {
            return Err(unsupported("pre_tokenizer", pre, "\"BertPreTokenizer\""));
        }

        // Added tokens: exact, raw-text matches only.
        let mut patterns = Vec::new();
        let mut added_ids = Vec::new();
        let mut added_by_content = HashMap::new();
        if let Some(list) = root.get("added_tokens") {
            let list = list
                .as_array()
                .ok_or_else(|| invalid("added_tokens", "not an array".into()))?;
            for (i, token) in list.iter().enumerate() {
                let field = format!("added_tokens[{i}]");
                let content = token
                    .get("content")
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid(&field, "no content".into()))?;
                let id = token
                    .get("id")
                    .and_then(Value::as_u64)
                    .and_then(|i| u32::try_from(i).ok())
                    .ok_or_else(|| invalid(&field, "no u32 id".into()))?;
                for flag in ["lstrip", "rstrip", "single_word", "normalized"] {
                    if token.get(flag).and_then(Value::as_bool) == Some(true) {
                        return Err(TokenizerError::Unsupported {
                            path: path.into(),
                            field: format!("{field}.{flag} ({content:?})"),
                            found: "true".into(),
                            supported: "false (raw-text added tokens)",
                        });
                    }
                }
                if content.is_empty() {
                    return Err(invalid(&field, "empty content".into()));
                }
                added_by_content.insert(content.to_string(), id);
                patterns.push(content.to_string());
                added_ids.push(id);
            }
        }
        let added = if patterns.is_empty() {
            None
        } else {
            Some(
                AhoCorasickBuilder::new()
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(&patterns),
            )
        };
        let lookup = |token: &str| -> Option<u32> {
            added_by_content
                .get(token)
                .copied()
                .or_else(|| vocab.get(token).copied())
        };

        // Post-processor.
        let post = root.get("post_processor").unwrap_or(&null);
        let template = match post.get("type").and_then(Value::as_str) {
            Some("TemplateProcessing") => {
                let specials = post.get("special_tokens").and_then(Value::as_object);
                let single = post
                    .get("single")
                    .and_then(Value::as_array)
                    .ok_or_else(|| invalid("post_processor.single", "missing".into()))?;
                let mut pieces = Vec::new();
                let mut sequences = 0;
                for (i, item) in single.iter().enumerate() {
                    let field = format!("post_processor.single[{i}]");
                    let type_id = |v: &Value| {
                        v.get("type_id")
                            .and_then(Value::as_u64)
                            .and_then(|t| u32::try_from(t).ok())
                            .unwrap_or(0)
                    };
                    if let Some(special) = item.get("SpecialToken") {
                        let name = special
                            .get("id")
                            .and_then(Value::as_str)
                            .ok_or_else(|| invalid(&field, "SpecialToken without id".into()))?;
                        let ids = specials
                            .and_then(|s| s.get(name))
                            .and_then(|s| s.get("ids"))
                            .and_then(Value::as_array)
                            .ok_or_else(|| {
                                invalid(
                                    &field,
                                    format!("special token {name:?} not in special_tokens"),
                                )
                            })?
                            .iter()
                            .map(|v| v.as_u64().and_then(|i| u32::try_from(i).ok()))
                            .collect::<Option<Vec<u32>>>()
                            .ok_or_else(|| invalid(&field, format!("{name:?} has a bad id")))?;
                        pieces.push(Piece::Special {
                            ids,
                            type_id: type_id(special),
                        });
                    } else if let Some(seq) = item.get("Sequence") {
                        if seq.get("id").and_then(Value::as_str) != Some("A") {
                            return Err(invalid(
                                &field,
                                "single template names a sequence other than A".into(),
                            ));
                        }
                        sequences += 1;
                        pieces.push(Piece::Sequence {
                            type_id: type_id(seq),
                        });
                    } else {
                        return Err(invalid(&field, format!("unknown template piece {item}")));
                    }
                }
                if sequences != 1 {
                    return Err(invalid(
                        "post_processor.single",
                        format!("has {sequences} sequences; expected exactly one"),
                    ));
                }
                pieces
            }
            Some("BertProcessing") => {
                let pair = |key: &str| -> Result<u32, TokenizerError> {
                    post.get(key)
                        .and_then(Value::as_array)
                        .and_then(|a| a.get(1))
                        .and_then(Value::as_u64)
                        .and_then(|i| u32::try_from(i).ok())
                        .ok_or_else(|| {
                            invalid(&format!("post_processor.{key}"), "not [token, id]".into())
                        })
                };
                vec![
                    Piece::Special {
                        ids: vec![pair("cls")?],
                        type_id: 0,
                    },
                    Piece::Sequence { type_id: 0 },
                    Piece::Special {
                        ids: vec![pair("sep")?],
                        type_id: 0,
                    },
                ]
            }
            _ => {
                return Err(unsupported(
                    "post_processor",
                    post,
                    "\"TemplateProcessing\" or \"BertProcessing\"",
                ))
            }
        };
        let special_count = template
            .iter()
            .map(|p| match p {
                Piece::Special { ids, .. } => ids.len(),
                Piece::Sequence { .. } => 0,
            })
            .sum();

        // Padding token: the file's padding section, else its "[PAD]" token.
        let padding = get(&root, "padding");
        let (pad_id, pad_type_id) = match &padding {
            Value::Object(p) => (
                p.get("pad_id")
                    .and_then(Value::as_u64)
                    .and_then(|i| u32::try_from(i).ok())
                    .or_else(|| p.get("pad_token").and_then(Value::as_str).and_then(lookup))
                    .ok_or_else(|| invalid("padding", "no usable pad_id or pad_token".into()))?,
                p.get("pad_type_id")
                    .and_then(Value::as_u64)
                    .and_then(|i| u32::try_from(i).ok())
                    .unwrap_or(0),
            ),
            _ => (
                lookup("[PAD]").ok_or_else(|| {
                    invalid(
                        "padding",
                        "no padding section and no \"[PAD]\" token".into(),
                    )
                })?,
                0,
            ),
        };

        Ok(Tokenizer {
            vocab,
            unk_id,
            prefix,
            max_input_chars_per_word,
            normalizer,
            added,
            added_ids,
            template,
            special_count,
            pad_id,
            pad_type_id,
        })
    }

    /// Number of special tokens the post-processor adds to one sequence.
    pub fn special_token_count(&self) -> usize {
        self.special_count
    }

    /// Encode one text: tokens, truncated so that with special tokens it has at most
    /// `max_length` tokens, then wrapped by the post-processor.
    pub fn encode(&self, text: &str, max_length: usize) -> Encoding {
        let mut ids = Vec::new();
        self.tokenize_into(text, &mut ids);
        let budget = max_length.saturating_sub(self.special_count);
        ids.truncate(budget);
        let mut out = Encoding {
            ids: Vec::with_capacity(ids.len() + self.special_count),
            type_ids: Vec::with_capacity(ids.len() + self.special_count),
        };
        for piece in &self.template {
            match piece {
                Piece::Special {
                    ids: special,
                    type_id,
                } => {
                    out.ids.extend_from_slice(special);
                    out.type_ids
                        .extend(std::iter::repeat_n(*type_id, special.len()));
                }
                Piece::Sequence { type_id } => {
                    out.ids.extend_from_slice(&ids);
                    out.type_ids
                        .extend(std::iter::repeat_n(*type_id, ids.len()));
                }
            }
        }
        out
    }

    /// Encode a batch and pad it on the right to its longest member.
    pub fn encode_batch<S: AsRef<str>>(&self, texts: &[S], max_length: usize) -> Batch {
        let encodings: Vec<Encoding> = texts
            .iter()
            .map(|t| self.encode(t.as_ref(), max_length))
            .collect();
        let seq_len = encodings.iter().map(|e| e.ids.len()).max().unwrap_or(0);
        let total = seq_len * encodings.len();
        let mut batch = Batch {
            batch_size: encodings.len(),
            seq_len,
            input_ids: Vec::with_capacity(total),
            attention_mask: Vec::with_capacity(total),
            token_type_ids: Vec::with_capacity(total),
        };
        for e in &encodings {
            let pad = seq_len - e.ids.len();
            batch.input_ids.extend(e.ids.iter().map(|&i| i as i64));
            batch
                .input_ids
                .extend(std::iter::repeat_n(self.pad_id as i64, pad));
            batch
                .attention_mask
                .extend(std::iter::repeat_n(1, e.ids.len()));
            batch.attention_mask.extend(std::iter::repeat_n(0, pad));
            batch
                .token_type_ids
                .extend(e.type_ids.iter().map(|&i| i as i64));
            batch
                .token_type_ids
                .extend(std::iter::repeat_n(self.pad_type_id as i64, pad));
        }
        batch
    }

    /// Token ids of `text` without special tokens and without truncation.
    pub fn tokenize(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        self.tokenize_into(text, &mut ids);
        ids
    }

    fn tokenize_into(&self, text: &str, ids: &mut Vec<u32>) {
        let Some(added) = &self.added else {
            self.tokenize_segment(text, ids);
            return;
        };
        let mut last = 0;
        for m in added.find_iter(text) {
            self.tokenize_segment(&text[last..m.start()], ids);
            ids.push(self.added_ids[m.pattern()]);
            last = m.end();
        }
        self.tokenize_segment(&text[last..], ids);
    }

    fn tokenize_segment(&self, segment: &str, ids: &mut Vec<u32>) {
        if segment.is_empty() {
            return;
        }
        let normalized;
        let text = match &self.normalizer {
            Some(n) => {
                normalized = n.normalize(segment);
                normalized.as_str()
            }
            None => segment,
        };
        for word in text.split(char::is_whitespace).filter(|w| !w.is_empty()) {
            let mut start = 0;
            for (i, c) in word.char_indices() {
                if is_bert_punctuation(c) {
                    if start < i {
                        self.word_piece(&word[start..i], ids);
                    }
                    self.word_piece(&word[i..i + c.len_utf8()], ids);
                    start = i + c.len_utf8();
                }
            }
            if start < word.len() {
                self.word_piece(&word[start..], ids);
            }
        }
    }

    fn word_piece(&self, word: &str, ids: &mut Vec<u32>) {
        if word.chars().count() > self.max_input_chars_per_word {
            ids.push(self.unk_id);
            return;
        }
        let mark = ids.len();
        let mut start = 0;
        let mut candidate = String::with_capacity(word.len() + self.prefix.len());
        while start < word.len() {
            let mut end = word.len();
            let mut found = None;
            while start < end {
                candidate.clear();
                if start > 0 {
                    candidate.push_str(&self.prefix);
                }
                candidate.push_str(&word[start..end]);
                if let Some(&id) = self.vocab.get(candidate.as_str()) {
                    found = Some(id);
                    break;
                }
                // Step back one character (the slice ends on a char boundary).
                end -= word[start..end]
                    .chars()
                    .next_back()
                    .map_or(1, char::len_utf8);
            }
            match found {
                Some(id) => {
                    ids.push(id);
                    start = end;
                }
                None => {
                    ids.truncate(mark);
                    ids.push(self.unk_id);
                    return;
                }
            }
        }
    }
}

impl Normalizer {
    fn normalize(&self, text: &str) -> String {
        let mut cleaned = String::with_capacity(text.len() + 8);
        for c in text.chars() {
            if self.clean_text && (c == '\0' || c == '\u{fffd}' || is_control(c)) {
                continue;
            }
            let c = if self.clean_text && is_bert_whitespace(c) {
                ' '
            } else {
                c
            };
            if self.handle_chinese_chars && is_chinese_char(c) {
                cleaned.push(' ');
                cleaned.push(c);
                cleaned.push(' ');
            } else {
                cleaned.push(c);
            }
        }
        let mut out = String::with_capacity(cleaned.len());
        match (self.strip_accents, self.lowercase) {
            (true, true) => out.extend(
                cleaned
                    .nfd()
                    .filter(|c| !c.is_mark_nonspacing())
                    .flat_map(char::to_lowercase),
            ),
            (true, false) => out.extend(cleaned.nfd().filter(|c| !c.is_mark_nonspacing())),
            // Per character, as tokenizers does: no final-sigma rule of `str::to_lowercase`.
            (false, true) => out.extend(cleaned.chars().flat_map(char::to_lowercase)),
            (false, false) => return cleaned,
        }
        out
    }
}

fn is_bert_whitespace(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || c.is_whitespace()
}

fn is_control(c: char) -> bool {
    // Tab, newline and carriage return count as white space, not control (BERT).
    !matches!(c, '\t' | '\n' | '\r') && c.is_other()
}

fn is_bert_punctuation(c: char) -> bool {
    c.is_ascii_punctuation() || c.is_punctuation()
}

/// The CJK ranges `tokenizers` pads with spaces (its table, including its 0x2B920 start of
/// Extension E, which differs from the Python BERT's 0x2B820: parity is with `tokenizers`).
fn is_chinese_char(c: char) -> bool {
    matches!(
        c as u32,
        0x4E00..=0x9FFF
            | 0x3400..=0x4DBF
            | 0x20000..=0x2A6DF
            | 0x2A700..=0x2B73F
            | 0x2B740..=0x2B81F
            | 0x2B920..=0x2CEAF
            | 0xF900..=0xFAFF
            | 0x2F800..=0x2FA1F
    )
}

#[cfg(test)]
mod tests;
