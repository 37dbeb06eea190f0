//! Property-based fuzzing of the core's untrusted inputs: `tokenizer.json` text and line-based data
//! files. Whatever the bytes, the core must answer with `Ok` or a `FerrotuneError` — never a panic,
//! never an allocation sized by a number read from the file — and what it accepts must be right.
//!
//! CI runs the default case count; `PROPTEST_CASES=20000 cargo test --release --test
//! fuzz_boundaries` is the long run.

use std::io::Write;
use std::time::Instant;

use ferrotune_core::stream::index_rows;
use ferrotune_core::{
    catch_panics, EncodeRequest, Engine, FerrotuneError, OutputSelection, PadSpec, Side, Truncation,
};
use proptest::prelude::*;

/// A small valid byte-level BPE tokenizer: every byte's character, a few merges, one special token.
fn byte_level_json(extra_ids: &[(String, u64)]) -> String {
    let mut vocab = serde_json::Map::new();
    let chars: Vec<char> = (0u32..256)
        .map(|b| {
            // GPT-2's printable mapping of bytes to characters.
            let printable =
                (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
            if printable {
                char::from_u32(b).unwrap()
            } else {
                let shift = (0..b)
                    .filter(|&x| {
                        !((33..=126).contains(&x)
                            || (161..=172).contains(&x)
                            || (174..=255).contains(&x))
                    })
                    .count();
                char::from_u32(256 + shift as u32).unwrap()
            }
        })
        .collect();
    for (i, c) in chars.iter().enumerate() {
        vocab.insert(c.to_string(), serde_json::json!(i));
    }
    let merges = ["h e", "l l", "he ll", "Ġ w", "o r"];
    let mut next = 256u64;
    for merge in merges {
        let (a, b) = merge.split_once(' ').unwrap();
        vocab.insert(format!("{a}{b}"), serde_json::json!(next));
        next += 1;
    }
    for (token, id) in extra_ids {
        vocab.insert(token.clone(), serde_json::json!(id));
    }
    serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [{"id": next + 100, "content": "<|end|>", "single_word": false, "lstrip": false,
                          "rstrip": false, "normalized": false, "special": true}],
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": merges}
    })
    .to_string()
}

fn request() -> EncodeRequest {
    EncodeRequest {
        add_special_tokens: true,
        truncation: Some(Truncation {
            max_length: 16,
            stride: 2,
            strategy: ferrotune_core::engine::TruncationStrategy::LongestFirst,
            side: Side::Right,
        }),
        padding: PadSpec::longest(None, Side::Right),
        pad_id: 0,
        pad_type_id: 0,
        outputs: OutputSelection {
            attention_mask: true,
            offsets: true,
            overflowing: true,
            ..Default::default()
        },
    }
}

/// Loads `json` and, if it loads, encodes `texts` (and pickles it back to JSON): `Ok` or an error.
fn load_and_use(json: &str, texts: &[String]) -> Result<(), FerrotuneError> {
    let engine = Engine::from_json(json)?;
    engine.encode_batch(texts, None, &request())?;
    engine.to_json()?;
    Ok(())
}

fn no_panic(json: &str, texts: &[String]) -> Result<(), TestCaseError> {
    let started = Instant::now();
    // A panic inside would be a bug: catch it here to report the input rather than abort the run.
    let outcome = catch_panics(|| load_and_use(json, texts));
    if let Err(FerrotuneError::Internal(message)) = &outcome {
        return Err(TestCaseError::fail(format!("panic: {message}")));
    }
    prop_assert!(
        started.elapsed().as_secs_f64() < 5.0,
        "took {:?} on a tokenizer.json of {} bytes",
        started.elapsed(),
        json.len()
    );
    Ok(())
}

#[test]
fn an_absurd_vocabulary_id_is_refused_quickly_with_a_clear_error() {
    let json = byte_level_json(&[("Ġhello".to_string(), 2_000_000_000)]);
    let started = Instant::now();
    let Err(err) = Engine::from_json(&json) else {
        panic!("an id of 2e9 in a 300-entry vocabulary was accepted");
    };
    assert!(
        started.elapsed().as_secs_f64() < 1.0,
        "{:?}",
        started.elapsed()
    );
    let message = err.to_string();
    assert!(
        matches!(err, FerrotuneError::TokenizerFormat { .. }),
        "{message}"
    );
    assert!(
        message.contains("2000000000") && message.contains("Ġhello"),
        "{message}"
    );
    // Holes of ordinary size stay accepted.
    let holes = byte_level_json(&[("Ġhello".to_string(), 70_000)]);
    let engine = Engine::from_json(&holes).expect("a vocabulary with holes");
    assert_eq!(engine.encoder_name(), "fast-bpe");
}

fn texts() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(
        proptest::string::string_regex("(hello|world| |<\\|end\\|>|[a-z]{1,6}|\\PC){0,12}")
            .unwrap(),
        1..4,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    /// Any ids, any tokens: loads (and encodes) or refuses; ids are never used to size a table.
    #[test]
    fn tokenizer_json_with_arbitrary_vocabulary_ids(
        extra in proptest::collection::vec(("[a-zĠ]{1,5}", prop_oneof![0u64..400, 0u64..u32::MAX as u64, Just(u32::MAX as u64), Just(u64::MAX)]), 0..6),
        texts in texts(),
    ) {
        no_panic(&byte_level_json(&extra), &texts)?;
    }

    /// Cut anywhere: a clear format error (or, rarely, a still-valid prefix), never a panic.
    #[test]
    fn tokenizer_json_truncated_anywhere(cut in 0.0f64..1.0, texts in texts()) {
        let json = byte_level_json(&[]);
        let mut end = (json.len() as f64 * cut) as usize;
        while !json.is_char_boundary(end) {
            end -= 1;
        }
        no_panic(&json[..end], &texts)?;
    }

    /// Single-byte damage anywhere in the text (a digit, a quote, a bracket, a letter).
    #[test]
    fn tokenizer_json_with_damaged_bytes(
        edits in proptest::collection::vec((0.0f64..1.0, prop_oneof![Just('9'), Just('"'), Just('['), Just('}'), Just('-'), Just('x'), Just('0')]), 1..4),
        texts in texts(),
    ) {
        let mut json: Vec<char> = byte_level_json(&[]).chars().collect();
        for (at, c) in edits {
            let i = ((json.len() - 1) as f64 * at) as usize;
            json[i] = c;
        }
        no_panic(&json.into_iter().collect::<String>(), &texts)?;
    }

    /// The row indexer on arbitrary bytes (quotes, newlines, CRs, blanks): it never panics; what it
    /// returns covers the file with monotonic offsets and counts the rows a plain scan counts.
    #[test]
    fn row_index_of_arbitrary_bytes(
        bytes in proptest::collection::vec(prop_oneof![Just(b'"'), Just(b'\n'), Just(b'\r'), Just(b' '), Just(b'a'), Just(b','), any::<u8>()], 0..400),
        quoted in any::<bool>(),
        has_header in any::<bool>(),
        rows_per_unit in 1usize..7,
    ) {
        let mut file = tempfile_in_target();
        file.1.write_all(&bytes).unwrap();
        file.1.flush().unwrap();
        let quote = quoted.then_some(b'"');
        let outcome = catch_panics(|| index_rows(&file.0, quote, has_header, rows_per_unit));
        let _ = std::fs::remove_file(&file.0);
        let expected = reference_rows(&bytes, quote, has_header);
        match (outcome, expected) {
            (Err(FerrotuneError::Internal(message)), _) => prop_assert!(false, "panic: {}", message),
            (Err(_), None) => {}
            (Err(err), Some(_)) => prop_assert!(false, "refused a well-formed file: {}", err),
            (Ok(_), None) => prop_assert!(false, "accepted an unclosed quote"),
            (Ok(index), Some(rows)) => {
                prop_assert_eq!(index.total_rows(), rows);
                prop_assert_eq!(index.unit_offsets.len(), index.unit_rows.len() + 1);
                prop_assert_eq!(*index.unit_offsets.last().unwrap(), bytes.len() as u64);
                prop_assert!(index.unit_offsets.windows(2).all(|w| w[0] <= w[1]));
                prop_assert!(index.unit_rows.iter().all(|&n| n >= 1 && n <= rows_per_unit));
                prop_assert!(index.header_end <= bytes.len() as u64);
            }
        }
    }
}

/// Rows a straightforward scan finds: lines ending at a newline outside quotes that hold a
/// non-whitespace byte or a quote; the first such line is the header when there is one.
fn reference_rows(bytes: &[u8], quote: Option<u8>, has_header: bool) -> Option<usize> {
    let mut in_quotes = false;
    let mut lines = 0usize;
    let mut content = false;
    for &b in bytes {
        if Some(b) == quote {
            in_quotes = !in_quotes;
            content = true;
        } else if b == b'\n' && !in_quotes {
            lines += usize::from(content);
            content = false;
        } else if !b.is_ascii_whitespace() {
            content = true;
        }
    }
    if in_quotes {
        return None;
    }
    lines += usize::from(content);
    Some(if has_header {
        lines.saturating_sub(1)
    } else {
        lines
    })
}

fn tempfile_in_target() -> (std::path::PathBuf, std::fs::File) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!("ferrotune-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("rows-{}.csv", NEXT.fetch_add(1, Ordering::Relaxed)));
    let file = std::fs::File::create(&path).unwrap();
    (path, file)
}
