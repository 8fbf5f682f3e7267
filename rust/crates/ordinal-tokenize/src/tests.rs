//! Unit tests on a hand-written vocabulary, so every expected id can be checked by eye.
//! (Plain fixture functions: Debian does not package `rstest`.) Id-for-id parity with the
//! Python tokenizer on the real MiniLM vocabulary is tests/serving/test_tokenizer_parity.py.

use super::*;

const VOCAB: &[&str] = &[
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "hello",
    "world",
    "un",
    "##aff",
    "##able",
    ",",
    "!",
    "cafe",
    "中",
    "文",
    "a",
    "##b",
    "σ",
    "i",
    "##stanbul",
    "x",
    "ς",
];

fn id(token: &str) -> u32 {
    VOCAB.iter().position(|t| *t == token).unwrap() as u32
}

fn json_with(normalizer: &str, post: &str, extra_added: &str) -> String {
    let vocab: Vec<String> = VOCAB
        .iter()
        .enumerate()
        .map(|(i, t)| format!("{}: {i}", serde_json::to_string(t).unwrap()))
        .collect();
    let added: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .iter()
        .map(|t| {
            format!(
                r#"{{"id": {}, "content": "{t}", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}}"#,
                id(t)
            )
        })
        .collect();
    format!(
        r###"{{"version": "1.0", "truncation": null, "padding": null,
            "added_tokens": [{}{extra_added}],
            "normalizer": {normalizer},
            "pre_tokenizer": {{"type": "BertPreTokenizer"}},
            "post_processor": {post},
            "decoder": null,
            "model": {{"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                       "max_input_chars_per_word": 10, "vocab": {{{}}}}}}}"###,
        added.join(","),
        vocab.join(",")
    )
}

const BERT_NORMALIZER: &str = r#"{"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": true}"#;
const TEMPLATE: &str = r#"{"type": "TemplateProcessing",
    "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
    "pair": [],
    "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]}, "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}}"#;

fn tokenizer() -> Tokenizer {
    Tokenizer::from_json(&json_with(BERT_NORMALIZER, TEMPLATE, ""), "test.json").unwrap()
}

fn ids(tokens: &[&str]) -> Vec<u32> {
    tokens.iter().map(|t| id(t)).collect()
}

#[test]
fn wordpiece_is_greedy_longest_match_first() {
    let t = tokenizer();
    assert_eq!(t.tokenize("unaffable"), ids(&["un", "##aff", "##able"]));
    assert_eq!(
        t.tokenize("Hello, World!"),
        ids(&["hello", ",", "world", "!"])
    );
    // A word that cannot be covered entirely is a single [UNK], not a partial match.
    assert_eq!(t.tokenize("unaffablez hello"), ids(&["[UNK]", "hello"]));
    // Longer than max_input_chars_per_word (10) characters: [UNK] without trying.
    assert_eq!(t.tokenize("abbbbbbbbbb ab"), ids(&["[UNK]", "a", "##b"]));
    assert_eq!(
        t.tokenize("abbbbbbbbb"),
        vec![id("a"); 1]
            .into_iter()
            .chain(vec![id("##b"); 9])
            .collect::<Vec<_>>()
    );
}

#[test]
fn normalizer_cleans_splits_cjk_strips_accents_and_lowercases() {
    let t = tokenizer();
    // Accents stripped (strip_accents null follows lowercase), zero-width/control chars
    // dropped (Cf/Cc), tab/newline are white space.
    assert_eq!(
        t.tokenize("CAFÉ\u{200b}\u{7}\tHello\n"),
        ids(&["cafe", "hello"])
    );
    // CJK ideographs become words of their own.
    assert_eq!(t.tokenize("a中文b"), ids(&["a", "中", "文", "[UNK]"]));
    // Lowercasing is per character: a final capital sigma becomes σ, not ς.
    assert_eq!(t.tokenize("Σ"), ids(&["σ"]));
    // İ decomposes to I + combining dot; the dot is a non-spacing mark and is stripped.
    assert_eq!(t.tokenize("İstanbul"), ids(&["i", "##stanbul"]));
    // U+FFFD and NUL are removed, not [UNK].
    assert_eq!(t.tokenize("x\u{fffd}\0x"), ids(&["[UNK]"]));
    assert_eq!(t.tokenize(""), Vec::<u32>::new());
    assert_eq!(t.tokenize(" \u{3000} \u{200b} "), Vec::<u32>::new());
}

#[test]
fn added_tokens_match_in_raw_text() {
    let t = tokenizer();
    assert_eq!(
        t.tokenize("hello[MASK]world"),
        ids(&["hello", "[MASK]", "world"])
    );
    // Matching is case-sensitive and on the raw text: "[mask]" is punctuation + word.
    assert_eq!(
        t.tokenize("[mask]"),
        vec![id("[UNK]"), id("[UNK]"), id("[UNK]")]
    );
}

#[test]
fn encode_adds_specials_truncates_and_pads_right() {
    let t = tokenizer();
    assert_eq!(t.special_token_count(), 2);
    let e = t.encode("hello world hello", 4);
    assert_eq!(e.ids, ids(&["[CLS]", "hello", "world", "[SEP]"]));
    assert_eq!(e.type_ids, vec![0; 4]);
    assert_eq!(t.encode("", 64).ids, ids(&["[CLS]", "[SEP]"]));
    let batch = t.encode_batch(&["hello", "", "hello world !"], 64);
    assert_eq!((batch.batch_size, batch.seq_len), (3, 5));
    let pad = id("[PAD]") as i64;
    let (cls, sep, hello) = (id("[CLS]") as i64, id("[SEP]") as i64, id("hello") as i64);
    assert_eq!(
        batch.input_ids,
        vec![
            cls,
            hello,
            sep,
            pad,
            pad, //
            cls,
            sep,
            pad,
            pad,
            pad, //
            cls,
            hello,
            id("world") as i64,
            id("!") as i64,
            sep
        ]
    );
    assert_eq!(
        batch.attention_mask,
        vec![1, 1, 1, 0, 0, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1]
    );
    assert_eq!(batch.token_type_ids, vec![0; 15]);
    let empty = t.encode_batch::<&str>(&[], 64);
    assert_eq!((empty.batch_size, empty.seq_len), (0, 0));
}

#[test]
fn bert_processing_is_supported() {
    let post = r#"{"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]}"#;
    let t = Tokenizer::from_json(&json_with(BERT_NORMALIZER, post, ""), "t.json").unwrap();
    assert_eq!(t.encode("hello", 8).ids, ids(&["[CLS]", "hello", "[SEP]"]));
}

#[test]
fn unsupported_files_are_refused_at_load_naming_the_field() {
    let cases = [
        (
            json_with(r#"{"type": "Lowercase"}"#, TEMPLATE, ""),
            "normalizer",
        ),
        (
            json_with(BERT_NORMALIZER, r#"{"type": "RobertaProcessing"}"#, ""),
            "post_processor",
        ),
        (
            json_with(BERT_NORMALIZER, TEMPLATE, "")
                .replace(r#""type": "WordPiece""#, r#""type": "BPE""#),
            "model.type",
        ),
        (
            json_with(BERT_NORMALIZER, TEMPLATE, "").replace("BertPreTokenizer", "ByteLevel"),
            "pre_tokenizer",
        ),
        (
            json_with(
                BERT_NORMALIZER,
                TEMPLATE,
                r#", {"id": 20, "content": "<x>", "single_word": false, "lstrip": true, "rstrip": false, "normalized": false, "special": true}"#,
            ),
            "lstrip",
        ),
    ];
    for (json, field) in cases {
        let err = Tokenizer::from_json(&json, "bundle/preprocess/tokenizer.json").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(field) && text.contains("bundle/preprocess/tokenizer.json"),
            "{text}"
        );
    }
    let err = Tokenizer::from_json("{", "t.json").unwrap_err();
    assert!(matches!(err, TokenizerError::Json { .. }));
    let err = Tokenizer::from_file(Path::new("/nonexistent/tokenizer.json")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/tokenizer.json"));
}
