//! Single-threaded throughput of `FastByteLevelBpe` against the `tokenizers` crate on the shared
//! SST-2 sentences and IMDB reviews, and the time both take on pathological inputs:
//!
//! ```text
//! cargo run --release -p ferrotune-core --example bpe_speed [-- TOKENIZER_JSON [DATA_DIR]]
//! ```
//!
//! The tokenizer defaults to `$FERROTUNE_GPT2_TOKENIZER`, else the shared GPT-2 tokenizer; the
//! data to `../shared/data` next to the repository.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ferrotune_core::FastByteLevelBpe;
use tokenizers::{PostProcessorWrapper, Tokenizer};

/// Passes over the corpus per engine; the best one is reported.
const REPEATS: usize = 3;

fn sst2_sentences(data: &Path) -> Vec<String> {
    let mut sentences = Vec::new();
    for split in ["train", "dev", "test"] {
        let path = data.join(format!("glue/SST-2/{split}.tsv"));
        let Ok(content) = std::fs::read_to_string(&path) else {
            eprintln!("missing {}", path.display());
            continue;
        };
        let mut lines = content.lines();
        let header: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
        let column = header.iter().position(|&h| h == "sentence").unwrap_or(0);
        sentences.extend(lines.filter_map(|line| line.split('\t').nth(column).map(str::to_owned)));
    }
    sentences
}

fn imdb_reviews(data: &Path) -> Vec<String> {
    let path = data.join("imdb/train.jsonl");
    let Ok(content) = std::fs::read_to_string(&path) else {
        eprintln!("missing {}", path.display());
        return Vec::new();
    };
    content
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|review| review["text"].as_str().map(str::to_owned))
        .collect()
}

/// Best of `REPEATS` passes: (tokens, seconds).
fn measure(texts: &[String], mut encode: impl FnMut(&str) -> usize) -> (usize, f64) {
    let mut best = f64::INFINITY;
    let mut tokens = 0;
    for _ in 0..REPEATS {
        let started = Instant::now();
        tokens = texts.iter().map(|text| encode(text)).sum();
        best = best.min(started.elapsed().as_secs_f64());
    }
    (tokens, best)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let data_default = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    let tokenizer_path = args
        .next()
        .or_else(|| std::env::var("FERROTUNE_GPT2_TOKENIZER").ok())
        .map(PathBuf::from)
        .unwrap_or_else(|| data_default.join("tokenizers/gpt2/tokenizer.json"));
    let data = args.next().map(PathBuf::from).unwrap_or(data_default);

    let mut tokenizer = match Tokenizer::from_file(&tokenizer_path) {
        Ok(tokenizer) => tokenizer,
        Err(err) => {
            eprintln!("cannot load {}: {err}", tokenizer_path.display());
            std::process::exit(1);
        }
    };
    tokenizer.with_post_processor(None::<PostProcessorWrapper>);
    if let Err(err) = tokenizer.with_truncation(None) {
        eprintln!("cannot remove truncation: {err}");
        std::process::exit(1);
    }
    tokenizer.with_padding(None);
    let started = Instant::now();
    let Some(fast) = FastByteLevelBpe::from_tokenizer(&tokenizer) else {
        eprintln!(
            "{} is not a byte-level BPE pipeline",
            tokenizer_path.display()
        );
        std::process::exit(1);
    };
    println!(
        "FastByteLevelBpe::from_tokenizer: {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );

    for (name, texts) in [
        ("SST-2", sst2_sentences(&data)),
        ("IMDB", imdb_reviews(&data)),
    ] {
        if texts.is_empty() {
            continue;
        }
        let megabytes = texts.iter().map(String::len).sum::<usize>() as f64 / 1e6;
        let mut ids = Vec::new();
        let (fast_tokens, fast_seconds) = measure(&texts, |text| {
            ids.clear();
            fast.encode_ids_into(text, &mut ids);
            ids.len()
        });
        let (fast_encoding_tokens, fast_encoding_seconds) =
            measure(&texts, |text| fast.encode(text, true).len());
        let (crate_tokens, crate_seconds) = measure(&texts, |text| {
            tokenizer
                .encode_fast(text, false)
                .map_or(0, |encoding| encoding.len())
        });
        assert_eq!(fast_tokens, crate_tokens, "{name}: token counts differ");
        assert_eq!(
            fast_encoding_tokens, crate_tokens,
            "{name}: token counts differ"
        );
        println!(
            "{name}: {} texts, {megabytes:.1} MB, {crate_tokens} tokens (single thread, best of {REPEATS})",
            texts.len()
        );
        let report = |label: &str, seconds: f64| {
            println!(
                "  {label:<36} {:6.2} M tokens/s {:7.2} MB/s",
                crate_tokens as f64 / seconds / 1e6,
                megabytes / seconds
            );
        };
        report("FastByteLevelBpe::encode_ids_into", fast_seconds);
        report("FastByteLevelBpe::encode(.., true)", fast_encoding_seconds);
        report("tokenizers encode_fast", crate_seconds);
        println!(
            "  speed-up (encode_ids_into)           {:6.1}x",
            crate_seconds / fast_seconds
        );
    }

    let mixed: String = (0..100_000u32)
        .map(|i| char::from(b'a' + ((i * 7 + i / 13) % 26) as u8))
        .collect();
    println!("pathological inputs (one pass each):");
    for (name, text) in [
        ("1 MB of \"a\"", "a".repeat(1 << 20)),
        ("100 kB word of mixed letters", mixed),
        ("1 MB of one emoji", "😀".repeat(1 << 18)),
        ("100 kB of spaces", " ".repeat(100_000)),
    ] {
        let started = Instant::now();
        let mut ids = Vec::new();
        fast.encode_ids_into(&text, &mut ids);
        let fast_seconds = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let expected = tokenizer.encode_fast(text.as_str(), false).ok();
        let crate_seconds = started.elapsed().as_secs_f64();
        let same = expected.is_some_and(|e| e.get_ids() == ids.as_slice());
        println!(
            "  {name:<30} fast {:8.1} ms   crate {:8.1} ms   {} tokens, {}",
            fast_seconds * 1e3,
            crate_seconds * 1e3,
            ids.len(),
            if same { "identical" } else { "DIFFERENT" }
        );
    }
}
