//! ferrotune-core: the pure-Rust engine behind the `ferrotune` Python package.
//!
//! * [`engine::Engine`] wraps a `tokenizer.json` and encodes batches (truncation, overflow windows with
//!   stride, padding) straight into one contiguous buffer per output.
//! * [`pad::pad_columns`] pads already-tokenized ragged rows, the work behind `tokenizer.pad` and the
//!   data collators.
//! * [`fast_wordpiece::FastWordPiece`] encodes BERT WordPiece pipelines natively, bit-identical to
//!   the `tokenizers` crate and many times faster.
//! * [`fast_bpe::FastByteLevelBpe`] does the same for GPT-2 style byte-level BPE pipelines.
//!
//! * [`stream`] plans, packs and collates the batches of the streaming loader.
//!
//! Nothing here depends on Python; the bindings live in `ferrotune-python`.

pub mod buffers;
pub mod direct;
pub mod engine;
pub mod error;
pub mod fast_bpe;
pub mod fast_wordpiece;
pub mod mlm;
pub mod pad;
pub mod parallel;
pub mod stream;

pub use buffers::{Ragged, Side};
pub use engine::{
    EncodeRequest, EncodedBatch, Engine, OutputSelection, Padding, Truncation, TruncationStrategy,
};
pub use error::{catch_panics, FerrotuneError, Result};
pub use fast_bpe::FastByteLevelBpe;
pub use fast_wordpiece::FastWordPiece;
pub use pad::{pad_columns, PadTarget, PaddedColumn};
