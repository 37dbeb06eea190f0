//! Times `Engine::encode_batch` (the whole Rust side of `tokenizer(...)`) on SST-2 and IMDB, with
//! the native encoder and with the general one.
//!
//! cargo run --release -p ferrotune-core --example engine_speed -- <tokenizer.json> <shared/data>

use std::time::Instant;

use ferrotune_core::engine::{EngineChoice, TruncationStrategy};
use ferrotune_core::{EncodeRequest, Engine, OutputSelection, PadSpec, Side, Truncation};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (tokenizer, data) = (&args[1], &args[2]);
    let sst2: Vec<String> = std::fs::read_to_string(format!("{data}/glue/SST-2/train.tsv"))
        .expect("SST-2")
        .lines()
        .skip(1)
        .filter_map(|line| line.split('\t').next().map(str::to_string))
        .collect();
    let request = EncodeRequest {
        add_special_tokens: true,
        truncation: Some(Truncation {
            max_length: 512,
            stride: 0,
            strategy: TruncationStrategy::LongestFirst,
            side: Side::Right,
        }),
        padding: PadSpec::longest(None, Side::Right),
        pad_id: 0,
        pad_type_id: 0,
        outputs: OutputSelection {
            token_type_ids: true,
            attention_mask: true,
            ..Default::default()
        },
    };
    for choice in [EngineChoice::Auto, EngineChoice::General] {
        let engine = Engine::from_file_with(tokenizer, choice).expect("tokenizer");
        let mut best = f64::MAX;
        for _ in 0..5 {
            let start = Instant::now();
            let batch = engine.encode_batch(&sst2, None, &request).expect("encode");
            best = best.min(start.elapsed().as_secs_f64());
            std::hint::black_box(batch);
        }
        println!(
            "{:>15} SST-2 {} texts: {:.3} s",
            engine.encoder_name(),
            sst2.len(),
            best
        );
    }
}
