//! `FastByteLevelBpe` must give exactly what the `tokenizers` crate gives for the same
//! tokenizer.json: these tests compare the two on the real GPT-2 tokenizer, on variants of it
//! (prefix space, offsets trimming, `ignore_merges`, extra added tokens of both passes, special
//! tokens left as text), on the real GLUE and IMDB data, on every vocabulary entry, on generated
//! Unicode text and on pathological inputs.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ferrotune_core::FastByteLevelBpe;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use rayon::prelude::*;
use serde_json::{json, Value};
use tokenizers::{PostProcessorWrapper, Tokenizer};

fn shared_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data")
}

/// The GPT-2 tokenizer.json, parsed; None (with a message) when it cannot be found.
fn gpt2_json() -> Option<&'static Value> {
    static JSON: OnceLock<Option<Value>> = OnceLock::new();
    JSON.get_or_init(|| {
        let path = std::env::var_os("FERROTUNE_GPT2_TOKENIZER")
            .map(PathBuf::from)
            .unwrap_or_else(|| shared_data().join("tokenizers/gpt2/tokenizer.json"));
        let Ok(text) = std::fs::read_to_string(&path) else {
            eprintln!(
                "skipping: {} not found (set FERROTUNE_GPT2_TOKENIZER)",
                path.display()
            );
            return None;
        };
        Some(serde_json::from_str(&text).expect("tokenizer.json is JSON"))
    })
    .as_ref()
}

/// The crate's tokenizer as the caller of `FastByteLevelBpe` uses it: no post-processor,
/// truncation or padding.
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
    fast: FastByteLevelBpe,
}

impl Pair {
    fn new(name: &'static str, json: &Value) -> Self {
        Self::from_reference(name, reference_tokenizer(json))
    }

    fn from_reference(name: &'static str, reference: Tokenizer) -> Self {
        let fast = FastByteLevelBpe::from_tokenizer(&reference)
            .unwrap_or_else(|| panic!("{name}: FastByteLevelBpe must accept this pipeline"));
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
        let shown: String = if text.len() > 300 {
            format!(
                "{:?}... ({} bytes)",
                &text[..floor_char_boundary(text, 300)],
                text.len()
            )
        } else {
            format!("{text:?}")
        };
        let fail = |what: &str, got: &dyn std::fmt::Debug, want: &dyn std::fmt::Debug| {
            Err(format!(
                "[{name}] {what} differ for {shown}\n fast:  {got:?}\n crate: {want:?}\n crate tokens: {:?}",
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
        if with_offsets.get_word_ids() != expected_offsets.get_word_ids() {
            return fail(
                "word ids",
                &with_offsets.get_word_ids(),
                &expected_offsets.get_word_ids(),
            );
        }
        if expected_offsets.get_ids() != expected.get_ids() {
            return Err(format!("crate disagrees with itself on {shown}"));
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

/// The largest character boundary of `text` at or before `at` (`str::floor_char_boundary` is
/// newer than the crate's minimum Rust).
fn floor_char_boundary(text: &str, at: usize) -> usize {
    (0..=at.min(text.len()))
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0)
}

/// GPT-2's tokenizer.json with `edit` applied.
fn variant(json: &Value, edit: impl FnOnce(&mut Value)) -> Value {
    let mut json = json.clone();
    edit(&mut json);
    json
}

/// Extra added tokens: special and not, matched raw (`normalized: false`) and in the second pass
/// (`normalized: true`), one a prefix of another, one overlapping `<|endoftext|>`, non-ASCII ones.
const EXTRA_ADDED: &[(u32, &str, bool, bool)] = &[
    // (id, content, special, normalized)
    (50257, "<|pad|>", true, false),
    (50258, "<|end", true, false),
    (50259, "<|pad|><|pad|>", true, false),
    (50260, "日本", true, false),
    (50261, "é!", false, false),
    (50262, "text|>", false, true),
    (50263, " world", false, true),
    (50264, "ab", false, false),
    (50265, "😀", true, true),
];

fn with_extra_added(json: &Value) -> Value {
    variant(json, |j| {
        let added = j["added_tokens"].as_array_mut().expect("added_tokens list");
        for &(id, content, special, normalized) in EXTRA_ADDED {
            added.push(json!({
                "id": id, "content": content, "special": special, "single_word": false,
                "lstrip": false, "rstrip": false, "normalized": normalized
            }));
        }
    })
}

/// The real tokenizer and its variants. The first two cover the real data and the vocabulary;
/// all of them the hand-picked and generated texts.
fn all_pairs() -> Option<&'static [Pair]> {
    static PAIRS: OnceLock<Option<Vec<Pair>>> = OnceLock::new();
    PAIRS
        .get_or_init(|| {
            let base = gpt2_json()?;
            let prefix_space = variant(base, |j| {
                j["pre_tokenizer"]["add_prefix_space"] = json!(true)
            });
            let mut special_as_text = reference_tokenizer(&with_extra_added(base));
            special_as_text.set_encode_special_tokens(true);
            let pairs = vec![
                Pair::new("gpt2", base),
                Pair::new("add_prefix_space", &prefix_space),
                Pair::new(
                    "trim_offsets false",
                    &variant(base, |j| j["pre_tokenizer"]["trim_offsets"] = json!(false)),
                ),
                Pair::new(
                    "ignore_merges",
                    &variant(base, |j| j["model"]["ignore_merges"] = json!(true)),
                ),
                // Every byte has its token, so the unknown token and byte fallback never apply.
                Pair::new(
                    "unk_token, fuse_unk, byte_fallback",
                    &variant(base, |j| {
                        j["model"]["unk_token"] = json!("<|endoftext|>");
                        j["model"]["fuse_unk"] = json!(true);
                        j["model"]["byte_fallback"] = json!(true);
                    }),
                ),
                Pair::new("extra added tokens", &with_extra_added(base)),
                Pair::new(
                    "extra added tokens, add_prefix_space",
                    &with_extra_added(&prefix_space),
                ),
                Pair::from_reference("encode_special_tokens", special_as_text),
                // A byte with no token (SmolLM2 lacks some): skipped, or the unknown token.
                Pair::new("byte without token", &without_byte_tokens(base)),
                Pair::new(
                    "byte without token, unk_token",
                    &variant(&without_byte_tokens(base), |j| {
                        j["model"]["unk_token"] = json!("<|endoftext|>");
                    }),
                ),
                // SmolLM2 / StarCoder: `Sequence[Digits, ByteLevel]`.
                Pair::new("digits individual", &with_digits(base, true)),
                Pair::new("digits contiguous", &with_digits(base, false)),
                Pair::new(
                    "digits individual, add_prefix_space",
                    &with_digits(&prefix_space, true),
                ),
            ];
            Some(pairs)
        })
        .as_deref()
}

/// `json` without the tokens of bytes 0x00 (`Ā`), 0x04 (`Ą`), 0x0A (`Ċ`) and 0xF5 (`õ`), nor the
/// merges that use them.
fn without_byte_tokens(json: &Value) -> Value {
    variant(json, |j| {
        let vocab = j["model"]["vocab"].as_object_mut().expect("vocab map");
        for c in ["Ā", "Ą", "Ċ", "õ"] {
            vocab.remove(c);
        }
        let merges = j["model"]["merges"].as_array_mut().expect("merges");
        merges.retain(|m| {
            let text = m.to_string();
            !["Ā", "Ą", "Ċ", "õ"].iter().any(|c| text.contains(c))
        });
    })
}

/// `json` with a `Digits` pre-tokenizer before its `ByteLevel` one.
fn with_digits(json: &Value, individual_digits: bool) -> Value {
    variant(json, |j| {
        let byte_level = j["pre_tokenizer"].clone();
        j["pre_tokenizer"] = json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": individual_digits}, byte_level
        ]});
    })
}

fn check_all(pairs: &[Pair], text: &str) -> Result<(), String> {
    pairs.iter().try_for_each(|pair| pair.check(text))
}

#[test]
fn rejects_pipelines_it_does_not_reproduce() {
    let Some(base) = gpt2_json() else { return };
    let rejected = [
        variant(base, |j| j["normalizer"] = json!({"type": "NFC"})),
        variant(base, |j| j["pre_tokenizer"] = json!({"type": "Whitespace"})),
        variant(base, |j| j["pre_tokenizer"]["use_regex"] = json!(false)),
        variant(
            base,
            |j| {
                j["pre_tokenizer"] =
                    json!({"type": "Sequence", "pretokenizers": [base["pre_tokenizer"]]})
            },
        ),
        variant(base, |j| {
            j["pre_tokenizer"] = json!({"type": "Sequence", "pretokenizers": [
                base["pre_tokenizer"], {"type": "Digits", "individual_digits": true}
            ]})
        }),
        variant(base, |j| {
            j["pre_tokenizer"] = json!({"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true}, {"type": "Whitespace"}
            ]})
        }),
        variant(base, |j| j["model"]["dropout"] = json!(0.5)),
        variant(base, |j| j["model"]["end_of_word_suffix"] = json!("</w>")),
        variant(base, |j| j["added_tokens"][0]["lstrip"] = json!(true)),
        variant(base, |j| j["added_tokens"][0]["rstrip"] = json!(true)),
        variant(base, |j| j["added_tokens"][0]["single_word"] = json!(true)),
    ];
    for json in &rejected {
        let tokenizer = reference_tokenizer(json);
        assert!(
            FastByteLevelBpe::from_tokenizer(&tokenizer).is_none(),
            "must reject {:?} / {:?} / {:?}",
            json["normalizer"],
            json["pre_tokenizer"],
            json["added_tokens"][0]
        );
    }
    let accepted = [
        variant(base, |j| j["model"]["dropout"] = json!(0.0)),
        variant(base, |j| {
            j["model"]["continuing_subword_prefix"] = Value::Null
        }),
        variant(base, |j| j["added_tokens"][0]["normalized"] = json!(false)),
        variant(base, |j| j["added_tokens"][0]["special"] = json!(false)),
    ];
    for json in &accepted {
        assert!(FastByteLevelBpe::from_tokenizer(&reference_tokenizer(json)).is_some());
    }
}

#[test]
fn hand_picked_texts() {
    let Some(pairs) = all_pairs() else { return };
    let texts = [
        "",
        " ",
        "  ",
        "\t\n\r ",
        "Hello world",
        " Hello world",
        "Hello, world!",
        "hello  world   ",
        "a\n\nb \n c\t\td",
        "don't can't won't it's I'm you're we've they'll he'd",
        "DON'T IT'S I'M YOU'RE WE'VE THEY'LL HE'D 'S 'T 'Re",
        "''s 's' ' 's '' 'll'll 're're",
        "x's 's's ' s",
        "<|endoftext|>",
        "<|endoftext|><|endoftext|>",
        "Hello<|endoftext|>world <|endoftext|> x",
        "  <|endoftext|>  ",
        "<|endoftext|",
        "<|end <|endoftext|><|pad|><|pad|><|pad|>",
        "hello world! é! é!é abab 日本語 😀😀 text|> context|>",
        "café é! é!é",
        "中文字符 and 漢字 ideographs 豈",
        "한국어 텍스트",
        "日本語のひらがなとカタカナ",
        "emoji 😀👍🏽 👨‍👩‍👧‍👦 family",
        "zero\u{200B}width\u{200D}joiner\u{FEFF}bom",
        "nul\0char \u{1}ctrl \u{7f}del \u{85}nel \u{fffd}replacement",
        "tab\tnew\nline\rcr\u{a0}nbsp\u{2028}ls\u{3000}ideographic\u{2000}\u{200A}x",
        "\u{a0}\u{a0}x \u{2003} y\u{3000}",
        "$100 ^caret `tick` ~tilde ¿qué? «quote» em—dash",
        "a\u{301}\u{316}b \u{1D165}\u{301}\u{1D16D} \u{0F72}\u{0F73}",
        "\u{301}leading mark",
        "١٢٣ ٤٥ １２３ 四 Ⅻ ½ ²",
        "1,234.56 3.14159 2024-01-01",
        "e-mail user@example.com http://example.com/path?q=1",
        &"a".repeat(300),
        &" ".repeat(300),
        &"é".repeat(301),
        &format!("{}x", " ".repeat(10)),
    ];
    for text in texts {
        for pair in pairs {
            pair.assert_matches(text);
        }
    }
}

/// What a byte-level vocabulary entry stands for, if it is valid UTF-8.
fn decode_byte_level(
    entry: &str,
    byte_of_char: &std::collections::HashMap<char, u8>,
) -> Option<String> {
    let bytes: Option<Vec<u8>> = entry
        .chars()
        .map(|c| byte_of_char.get(&c).copied())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// GPT-2's `bytes_to_unicode`, inverted.
fn byte_level_decoder() -> std::collections::HashMap<char, u8> {
    let mut map = std::collections::HashMap::new();
    let mut next = 256u32;
    for byte in 0..=255u8 {
        let printable = matches!(byte, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let code = if printable {
            u32::from(byte)
        } else {
            next += 1;
            next - 1
        };
        map.insert(char::from_u32(code).expect("a char"), byte);
    }
    map
}

#[test]
fn every_vocabulary_entry() {
    let Some(pairs) = all_pairs() else { return };
    let decoder = byte_level_decoder();
    let vocab: Vec<String> = pairs[0]
        .reference
        .get_vocab(true)
        .into_keys()
        .filter_map(|entry| decode_byte_level(&entry, &decoder))
        .collect();
    let checked = &pairs[..2];
    let failures: Vec<String> = vocab
        .par_iter()
        .flat_map_iter(|entry| {
            [
                entry.clone(),
                format!("x{entry} {entry}y"),
                format!("The {entry} is{entry}here."),
            ]
        })
        .filter_map(|text| check_all(checked, &text).err())
        .collect();
    eprintln!("checked {} vocabulary entries, 3 texts each", vocab.len());
    assert!(
        failures.is_empty(),
        "{} failures, first: {}",
        failures.len(),
        failures[0]
    );
}

/// The shared GLUE and IMDB data, one text per TSV line or IMDB review.
fn real_texts() -> Option<Vec<String>> {
    let data = shared_data();
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
    // GPT-2 as released and with a prefix space cover the data; the other variants get
    // generated text.
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
fn end_of_text_marker_in_real_sentences() {
    let Some(pairs) = all_pairs() else { return };
    let Some(texts) = real_texts() else { return };
    let failures: Vec<String> = texts
        .par_iter()
        .step_by(97)
        .enumerate()
        .map(|(i, text)| {
            let cut = floor_char_boundary(text, i % text.len().max(1));
            format!("{}<|endoftext|>{}<|endoftext|>", &text[..cut], &text[cut..])
        })
        .filter_map(|text| check_all(pairs, &text).err())
        .collect();
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
    let mixed: String = (0..100_000u32)
        .map(|i| char::from(b'a' + ((i * 7 + i / 13) % 26) as u8))
        .collect();
    let texts = [
        "a".repeat(1 << 20),
        mixed,
        "😀".repeat(1 << 18),
        " ".repeat(100_000),
        format!("{}x", " ".repeat(100_000)),
        "ab".repeat(1 << 19),
        "<|endoftext|>".repeat(1 << 14),
        "'s".repeat(1 << 17),
        // Long digit runs: every digit is a piece of its own where `Digits` splits them.
        "1234567890".repeat(1 << 17),
        format!("a{}", "٣".repeat(1 << 18)),
    ];
    let digits = pairs.iter().filter(|p| p.name == "digits individual");
    for text in &texts {
        for pair in pairs[..2].iter().chain(digits.clone()) {
            let started = Instant::now();
            let mut ids = Vec::new();
            pair.fast.encode_ids_into(text, &mut ids);
            let _ = pair.fast.encode(text, true);
            let elapsed = started.elapsed();
            eprintln!(
                "[{}] {} bytes starting {:?}: {elapsed:?}",
                pair.name,
                text.len(),
                text.chars().take(3).collect::<String>()
            );
            // Linear time is some 0.3 s for the megabyte of "a" (release, one core); the bound
            // leaves room for a loaded machine and unoptimized builds, and is still far below
            // what a quadratic merge would take.
            let limit = Duration::from_secs(if cfg!(debug_assertions) { 60 } else { 5 });
            assert!(elapsed < limit, "{} bytes took {elapsed:?}", text.len());
            pair.assert_matches(text);
        }
    }
}

/// Fragments chosen to hit every special case of the pipeline.
const PALETTE: &[&str] = &[
    "a", "Z", "hello", "World", "the", " the", "ing", "0", "42", "2024", " ", "  ", "   ", "\t",
    "\n", "\r", "\r\n", "\u{b}", "\u{c}", "\u{a0}", "\u{85}", "\u{1680}", "\u{2000}", "\u{2005}",
    "\u{200A}", "\u{2028}", "\u{2029}", "\u{202F}", "\u{205F}", "\u{3000}", "\u{180E}",
    "\u{200B}", "\u{200C}", "\u{200D}", "\u{2060}", "\u{FEFF}", "'", "'s", "'t", "'re", "'ve",
    "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ve", "'M", "'LL", "'D", "’s", "\u{301}", "\u{308}",
    "\u{316}", "e\u{301}", "é", "Å", "ǅ", "İ", "ß", "Σ", "ﬁ", "\u{0903}", "\u{0E31}", "中",
    "国", "豈", "\u{2F800}", "한", "국어", "ひ", "カ", "😀", "👍🏽", "👨‍👩‍👧", "🏳️‍🌈", "١",
    "٢٣", "۴", "१", "１", "２３", "Ⅻ", "½", "²", "\u{fffd}", "\0", "\u{1}", "\u{7f}", "\u{9f}",
    "\u{1f}", "$", "^", "`", "~", "¿", "«", "—", ".", ",", "!", "?", "...", "-", "<", "|", ">",
    "<|endoftext|>", "<|endoftext|", "<|pad|>", "<|end", "日本", "é!", "text|>", " world",
    "ab", "\u{E000}", "\u{10FFFF}",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "telecommunications", "antidisestablishmentarianism", "Pneumonoultramicroscopicsilicovolcanoconiosis",
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

    #[test]
    fn long_words_match(
        text in prop::collection::vec(prop::sample::select(&["a", "b", "e", "r", "t", "h", " ", "é", "😀", "1"][..]), 0..600)
            .prop_map(|parts| parts.concat())
    ) {
        let Some(pairs) = all_pairs() else { return Ok(()) };
        if let Err(message) = check_all(&pairs[..2], &text) {
            prop_assert!(false, "{}", message);
        }
    }
}

/// The real cl100k tokenizer (a `Split` with cl100k's regex, then `ByteLevel` without its own), and
/// the same vocabulary with Qwen2's regex (single digits), on the real data, LIMA's conversations
/// and every vocabulary entry.
#[test]
fn cl100k_and_qwen2_patterns_match_the_crate() {
    let folder = shared_data().join("tokenizers/cl100k");
    let Ok(text) = std::fs::read_to_string(folder.join("tokenizer.json")) else {
        eprintln!("skipping: {} is absent", folder.display());
        return;
    };
    let json: Value = serde_json::from_str(&text).expect("tokenizer.json is JSON");
    let qwen2 = variant(&json, |j| {
        j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = json!(
            r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
        )
    });
    let pairs = [
        Pair::new("cl100k", &json),
        Pair::new("qwen2 pattern", &qwen2),
    ];
    // Refused: a prefix space before every word, an unknown regex, a ByteLevel with its own regex.
    for edit in [
        |j: &mut Value| j["pre_tokenizer"]["pretokenizers"][1]["add_prefix_space"] = json!(true),
        |j: &mut Value| j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = json!(r"\s+"),
        |j: &mut Value| j["pre_tokenizer"]["pretokenizers"][1]["use_regex"] = json!(true),
        |j: &mut Value| j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = json!("Removed"),
    ] {
        let refused = reference_tokenizer(&variant(&json, edit));
        assert!(FastByteLevelBpe::from_tokenizer(&refused).is_none());
    }
    let mut texts = real_texts().unwrap_or_default();
    if let Ok(lima) = std::fs::read_to_string(shared_data().join("sft/lima.jsonl")) {
        for line in lima.lines() {
            let row: Value = serde_json::from_str(line).expect("LIMA line is JSON");
            for message in row["messages"].as_array().expect("messages") {
                texts.push(message["content"].as_str().unwrap_or("").to_owned());
            }
        }
    }
    let decoder = byte_level_decoder();
    texts.extend(
        pairs[0]
            .reference
            .get_vocab(true)
            .into_keys()
            .filter_map(|entry| decode_byte_level(&entry, &decoder))
            .map(|entry| format!("x{entry} 1234{entry}'S\r\n")),
    );
    let stride = if cfg!(debug_assertions) { 16 } else { 1 };
    let failures: Vec<String> = texts
        .par_iter()
        .step_by(stride)
        .filter_map(|text| pairs.iter().try_for_each(|pair| pair.check(text)).err())
        .collect();
    eprintln!("checked {} texts", texts.len().div_ceil(stride));
    assert!(
        failures.is_empty(),
        "{} failures, first: {}",
        failures.len(),
        failures[0]
    );
    for text in ["9".repeat(1 << 20), format!("{}x", "\n ".repeat(1 << 18))] {
        let started = Instant::now();
        let mut ids = Vec::new();
        pairs[0].fast.encode_ids_into(&text, &mut ids);
        let limit = Duration::from_secs(if cfg!(debug_assertions) { 60 } else { 5 });
        assert!(
            started.elapsed() < limit,
            "{} bytes took {:?}",
            text.len(),
            started.elapsed()
        );
        pairs[0].assert_matches(&text);
    }
}

/// The real SmolLM2 tokenizer (`Sequence[Digits(individual), ByteLevel]`, ChatML special tokens),
/// on the real data, LIMA's conversations written out in ChatML, and every vocabulary entry.
#[test]
fn smollm2_matches_the_crate() {
    let folder = shared_data().join("tokenizers/smollm2-135m-instruct");
    let Ok(text) = std::fs::read_to_string(folder.join("tokenizer.json")) else {
        eprintln!("skipping: {} is absent", folder.display());
        return;
    };
    let json: Value = serde_json::from_str(&text).expect("tokenizer.json is JSON");
    let pair = Pair::new("smollm2", &json);
    let mut texts = real_texts().unwrap_or_default();
    if let Ok(lima) = std::fs::read_to_string(shared_data().join("sft/lima.jsonl")) {
        for line in lima.lines() {
            let row: Value = serde_json::from_str(line).expect("LIMA line is JSON");
            let mut chat = String::new();
            for message in row["messages"].as_array().expect("messages") {
                let role = message["role"].as_str().unwrap_or("user");
                let content = message["content"].as_str().unwrap_or("");
                chat.push_str(&format!("<|im_start|>{role}\n{content}<|im_end|>\n"));
            }
            texts.push(chat);
        }
    }
    let decoder = byte_level_decoder();
    let vocab: Vec<String> = pair
        .reference
        .get_vocab(true)
        .into_keys()
        .filter_map(|entry| decode_byte_level(&entry, &decoder))
        .flat_map(|entry| [entry.clone(), format!("x{entry} 12{entry}3y")])
        .collect();
    texts.extend(vocab);
    let stride = if cfg!(debug_assertions) { 16 } else { 1 };
    let failures: Vec<String> = texts
        .par_iter()
        .step_by(stride)
        .filter_map(|text| pair.check(text).err())
        .collect();
    eprintln!("checked {} texts", texts.len().div_ceil(stride));
    assert!(
        failures.is_empty(),
        "{} failures, first: {}",
        failures.len(),
        failures[0]
    );
}
