//! ferrotune-core: the pure-Rust engine behind the `ferrotune` Python package.
//!
//! * [`engine::Engine`] wraps a `tokenizer.json` and encodes batches (truncation, overflow windows with
//!   stride, padding) straight into one contiguous buffer per output.
//! * [`pad`] holds the one padding kernel and [`pad::PadSpec`], transformers' padding arguments;
//!   [`collate::CollationPlan`] decides which columns are padded, with what, to what width: the work
//!   behind `tokenizer.pad`, the data collators and the streaming loader's batches.
//! * [`arrow`] reads Arrow arrays (the C data interface) in place, with every offset checked.
//! * [`fast_wordpiece::FastWordPiece`] encodes BERT WordPiece pipelines natively, bit-identical to
//!   the `tokenizers` crate and many times faster.
//! * [`fast_bpe::FastByteLevelBpe`] does the same for GPT-2 style byte-level BPE pipelines.
//!
//! * [`chat`] renders chat templates as transformers does, and [`conversations`] turns conversations
//!   into token ids and loss labels.
//! * [`stream`] plans, packs and collates the batches of the streaming loader.
//!
//! Nothing here depends on Python; the bindings live in `ferrotune-python`.

pub mod arrow;
pub mod buffers;
pub mod chat;
pub mod collate;
pub mod conversations;
pub mod direct;
pub mod engine;
pub mod error;
pub mod fast_bpe;
pub mod fast_wordpiece;
pub mod mlm;
pub mod pad;
pub mod parallel;
pub mod stream;
pub mod truncation;

pub use buffers::{Ragged, Side};
pub use collate::{CollationPlan, ColumnRule, Width};
pub use engine::{
    EncodeRequest, EncodedBatch, Engine, OutputSelection, Truncation, TruncationStrategy,
};
pub use error::{catch_panics, FerrotuneError, Result};
pub use fast_bpe::FastByteLevelBpe;
pub use fast_wordpiece::FastWordPiece;
pub use pad::{PadSpec, PadTarget, PaddedColumn, RowSource};
