//! Batch encoding of texts and text pairs into contiguous buffers.
//!
//! Tokenization itself (normalizer, pre-tokenizer, model, post-processor, truncation with overflow
//! windows) is the `tokenizers` crate's, configured exactly as transformers configures it, so ids are
//! bit-identical. What ferrotune adds is everything after: padding, flattening of overflow windows
//! and writing every output straight into one flat buffer per key, with no per-row allocation.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use tokenizers::utils::parallelism::MaybeParallelIterator;
use tokenizers::utils::truncation::{
    TruncationDirection, TruncationParams, TruncationStrategy as TkStrategy,
};
use tokenizers::{EncodeInput, Encoding, InputSequence, PostProcessorWrapper, Tokenizer};

use crate::buffers::{Ragged, Side};
use crate::direct::{build_row, DirectRow, Template, Words};
use crate::error::{FerrotuneError, Result};
use crate::fast_bpe::FastByteLevelBpe;
use crate::fast_wordpiece::FastWordPiece;
use crate::pad::{pad_rows, PadSpec, RowSource};
pub use crate::truncation::{Truncation, TruncationStrategy};

/// Distinct truncation settings kept ready at once; more than this and the cache starts over.
const MAX_CACHED_CONFIGURATIONS: usize = 16;

/// Which outputs to produce besides `input_ids`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutputSelection {
    pub token_type_ids: bool,
    pub attention_mask: bool,
    pub special_tokens_mask: bool,
    pub offsets: bool,
    /// Emit every overflow window as a row of its own, with `overflow_to_sample_mapping`.
    pub overflowing: bool,
    pub length: bool,
    /// Word ids and sequence ids of every row (`word_ids()`, `sequence_ids()` and the other
    /// alignment methods), only when asked for: from the native encoder's `Encoding` where the
    /// pipeline has one (it records the word of every token where it splits words), from the
    /// tokenizers crate's otherwise.
    pub alignment: bool,
    /// The token strings of every row (`tokens()`): always the tokenizers crate's `Encoding` (the
    /// native encoders leave token strings empty), so asked for apart from `alignment`.
    pub tokens: bool,
}

#[derive(Debug, Clone)]
pub struct EncodeRequest {
    pub add_special_tokens: bool,
    pub truncation: Option<Truncation>,
    pub padding: PadSpec,
    pub pad_id: i64,
    pub pad_type_id: i64,
    pub outputs: OutputSelection,
}

/// One sequence of an input: a text, or a text already split into words (`is_split_into_words`,
/// the tokenizers crate's pre-tokenized input: each word is encoded on its own, offsets count from
/// the start of each word, and every token of word `i` has word id `i`).
trait Sequence: Sync {
    fn input(&self) -> InputSequence<'_>;
    fn fast_ids_into(&self, fast: &FastEncoder, out: &mut Vec<u32>);
    /// The ids and the word of each, as `fast_encoding` would report them.
    fn fast_ids_words_into(&self, fast: &FastEncoder, ids: &mut Vec<u32>, words: &mut Vec<u32>);
    fn fast_encoding(&self, fast: &FastEncoder, char_offsets: bool) -> Encoding;
}

impl Sequence for String {
    fn input(&self) -> InputSequence<'_> {
        self.as_str().into()
    }
    fn fast_ids_into(&self, fast: &FastEncoder, out: &mut Vec<u32>) {
        fast.encode_ids_into(self, out);
    }
    fn fast_ids_words_into(&self, fast: &FastEncoder, ids: &mut Vec<u32>, words: &mut Vec<u32>) {
        fast.encode_ids_words_into(self, ids, words);
    }
    fn fast_encoding(&self, fast: &FastEncoder, char_offsets: bool) -> Encoding {
        fast.encode(self, char_offsets)
    }
}

impl Sequence for Vec<String> {
    fn input(&self) -> InputSequence<'_> {
        self.as_slice().into()
    }
    fn fast_ids_into(&self, fast: &FastEncoder, out: &mut Vec<u32>) {
        for word in self {
            fast.encode_ids_into(word, out);
        }
    }
    fn fast_ids_words_into(&self, fast: &FastEncoder, ids: &mut Vec<u32>, words: &mut Vec<u32>) {
        // Every token of given word `i` has word id `i`, as in `fast_encoding`.
        for (index, word) in self.iter().enumerate() {
            fast.encode_ids_into(word, ids);
            words.resize(ids.len(), index as u32);
        }
    }
    fn fast_encoding(&self, fast: &FastEncoder, char_offsets: bool) -> Encoding {
        // What the crate does with pre-tokenized input: each word encoded alone, merged without
        // growing offsets.
        Encoding::merge(
            self.iter().enumerate().map(|(index, word)| {
                let mut encoding = fast.encode(word, char_offsets);
                encoding
                    .get_word_ids_mut()
                    .iter_mut()
                    .for_each(|id| *id = Some(index as u32));
                encoding
            }),
            false,
        )
    }
}

/// The outputs of one batch. Row `i` of every per-token output is `[starts[i], starts[i+1])`
/// (offsets hold two values per token). `uniform_width` is set when every row has the same length,
/// so the buffers can be viewed as `rows x width` matrices without a copy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncodedBatch {
    pub starts: Vec<usize>,
    pub uniform_width: Option<usize>,
    pub input_ids: Vec<i64>,
    pub token_type_ids: Option<Vec<i64>>,
    pub attention_mask: Option<Vec<i64>>,
    pub special_tokens_mask: Option<Vec<i64>>,
    pub offsets: Option<Vec<i64>>,
    pub overflow_to_sample_mapping: Option<Vec<i64>>,
    pub length: Option<Vec<i64>>,
    /// With [`OutputSelection::alignment`]: word index of each token (-1 for none: special tokens,
    /// padding), laid out as `input_ids`.
    pub word_ids: Option<Vec<i64>>,
    /// With [`OutputSelection::alignment`]: sequence index of each token (-1 for none).
    pub sequence_ids: Option<Vec<i64>>,
    /// With [`OutputSelection::tokens`]: the token strings (padding gives `pad_token`).
    pub tokens: Option<Vec<String>>,
    /// With [`OutputSelection::alignment`]: per row, how many sequence ranges its `Encoding`
    /// records (0 when none: a single sequence with no post-processor, where the crate's
    /// `token_to_sequence` answers 0 for every token although `sequence_ids` are all None).
    pub sequence_ranges: Option<Vec<i64>>,
}

impl EncodedBatch {
    pub fn rows(&self) -> usize {
        self.starts.len() - 1
    }
}

/// ferrotune's native encoders, each used only for the pipelines it reproduces exactly.
#[derive(Debug, Clone)]
enum FastEncoder {
    WordPiece(Box<FastWordPiece>),
    ByteLevelBpe(Box<FastByteLevelBpe>),
}

impl FastEncoder {
    /// `plain` is the tokenizer without its post-processor (what the encoders reproduce), `base`
    /// the full one.
    fn from_tokenizer(plain: &Tokenizer, base: &Tokenizer) -> Option<Self> {
        if let Some(encoder) = FastWordPiece::from_tokenizer(plain) {
            return Some(FastEncoder::WordPiece(Box::new(encoder)));
        }
        // Offset trimming in a post-processor (ByteLevel / RoBERTa with trim_offsets) reads the
        // token strings, which the native encoders leave empty: such pipelines stay general.
        let trims_offsets = base.get_post_processor().is_some_and(|processor| {
            serde_json::to_value(processor).map_or(true, |value| {
                value.get("trim_offsets").and_then(|v| v.as_bool()) != Some(false)
                    && value.get("type").and_then(|t| t.as_str()) != Some("TemplateProcessing")
            })
        });
        if trims_offsets {
            return None;
        }
        FastByteLevelBpe::from_tokenizer(plain)
            .map(|encoder| FastEncoder::ByteLevelBpe(Box::new(encoder)))
    }

    fn name(&self) -> &'static str {
        match self {
            FastEncoder::WordPiece(_) => "fast-wordpiece",
            FastEncoder::ByteLevelBpe(_) => "fast-bpe",
        }
    }

    fn encode(&self, text: &str, char_offsets: bool) -> Encoding {
        match self {
            FastEncoder::WordPiece(encoder) => encoder.encode(text, char_offsets),
            FastEncoder::ByteLevelBpe(encoder) => encoder.encode(text, char_offsets),
        }
    }

    fn encode_ids_words_into(&self, text: &str, ids: &mut Vec<u32>, words: &mut Vec<u32>) {
        match self {
            FastEncoder::WordPiece(encoder) => encoder.encode_ids_words_into(text, ids, words),
            FastEncoder::ByteLevelBpe(encoder) => encoder.encode_ids_words_into(text, ids, words),
        }
    }

    fn encode_ids_into(&self, text: &str, out: &mut Vec<u32>) {
        match self {
            FastEncoder::WordPiece(encoder) => encoder.encode_ids_into(text, out),
            FastEncoder::ByteLevelBpe(encoder) => encoder.encode_ids_into(text, out),
        }
    }
}

/// A `tokenizer.json` ready to encode batches.
pub struct Engine {
    /// The tokenizer with no truncation or padding of its own: transformers overrides whatever the
    /// file says on every call, and so do we.
    base: Tokenizer,
    /// `base` without its post-processor: encodes each sequence of an input on its own, so that
    /// truncation can then run once, on whole sequences (see [`Engine::encode_truncated`]).
    plain: Tokenizer,
    /// Clones of `base` with a truncation configured, one per distinct setting used so far.
    truncating: RwLock<HashMap<Truncation, Arc<Tokenizer>>>,
    /// The native encoder for the pipeline, when there is one that reproduces it exactly (it then
    /// replaces `plain`'s encoding of each sequence).
    fast: Option<FastEncoder>,
    /// The post-processor as a template on ids, for the direct path (see [`crate::direct`]).
    template: Option<Template>,
}

/// Which encoder an [`Engine`] uses for the sequences of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineChoice {
    /// The native encoder when the pipeline has one, the tokenizers crate otherwise.
    Auto,
    /// Always the tokenizers crate (the reference the native encoders are tested against).
    General,
}

impl EngineChoice {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "auto" => Ok(EngineChoice::Auto),
            "general" => Ok(EngineChoice::General),
            other => Err(FerrotuneError::InvalidArgument(format!(
                "engine must be 'auto' or 'general', got {other:?}"
            ))),
        }
    }
}

fn tokenization_error(err: tokenizers::Error) -> FerrotuneError {
    FerrotuneError::Tokenization(err.to_string())
}

/// Ids up to this bound are accepted whatever the vocabulary's size (holes are allowed).
const ID_BOUND_FLOOR: u64 = 1 << 24;

/// Refuses ids far beyond the vocabulary: the tokenizers crate serializes a vocabulary by walking
/// every id up to the largest and listing the holes, so one id of 2,000,000,000 in a 50k vocabulary
/// costs gigabytes and seconds (pickling, the native encoders) before any error could be raised.
fn check_ids(tokenizer: &Tokenizer) -> std::result::Result<(), String> {
    use tokenizers::Model;
    let vocab = tokenizer.get_model().get_vocab();
    let added = tokenizer.get_added_tokens_decoder();
    let entries = (vocab.len() + added.len()) as u64;
    let bound = ID_BOUND_FLOOR.max(entries.saturating_mul(16));
    let largest = vocab
        .iter()
        .map(|(token, &id)| (id, token.as_str()))
        .chain(
            added
                .iter()
                .map(|(&id, token)| (id, token.content.as_str())),
        )
        .max_by_key(|&(id, _)| id);
    match largest {
        Some((id, token)) if u64::from(id) >= bound => Err(format!(
            "token {token:?} has id {id}, far beyond the {entries} entries of the vocabulary \
             (ids must stay below {bound}); the file is damaged or hand-edited: fix that id"
        )),
        _ => Ok(()),
    }
}

impl Engine {
    pub fn from_file_with(path: impl AsRef<Path>, choice: EngineChoice) -> Result<Self> {
        let path = path.as_ref();
        let json =
            std::fs::read_to_string(path).map_err(|source| FerrotuneError::TokenizerFileIo {
                path: path.to_path_buf(),
                source,
            })?;
        Self::parse(&json, Some(path), choice)
    }

    pub fn from_json(json: &str) -> Result<Self> {
        Self::parse(json, None, EngineChoice::Auto)
    }

    pub fn from_json_with(json: &str, choice: EngineChoice) -> Result<Self> {
        Self::parse(json, None, choice)
    }

    fn parse(json: &str, path: Option<&Path>, choice: EngineChoice) -> Result<Self> {
        let format_error = |message: String| FerrotuneError::TokenizerFormat {
            path: path.map(Path::to_path_buf),
            message,
        };
        // The tokenizers crate panics on some malformed sections (a decoder that is no object, ...):
        // that is a damaged file, not a bug, so it is reported as one.
        let parsed = std::panic::catch_unwind(|| json.parse::<Tokenizer>()).map_err(|payload| {
            format_error(format!(
                "the tokenizers library cannot read it ({}); the file is damaged or not a tokenizer.json",
                crate::error::panic_message(payload.as_ref())
            ))
        })?;
        let mut tokenizer: Tokenizer =
            parsed.map_err(|err: tokenizers::Error| format_error(err.to_string()))?;
        check_ids(&tokenizer).map_err(format_error)?;
        tokenizer
            .with_truncation(None)
            .map_err(tokenization_error)?
            .with_padding(None);
        let mut plain = tokenizer.clone();
        plain.with_post_processor(None::<PostProcessorWrapper>);
        let fast = match choice {
            EngineChoice::Auto => FastEncoder::from_tokenizer(&plain, &tokenizer),
            EngineChoice::General => None,
        };
        let template = fast
            .as_ref()
            .and_then(|_| Template::from_tokenizer(&tokenizer));
        Ok(Engine {
            plain,
            base: tokenizer,
            truncating: RwLock::new(HashMap::new()),
            fast,
            template,
        })
    }

    /// The encoder in use: `"fast-wordpiece"`, `"fast-bpe"` or `"general"` (the tokenizers crate).
    pub fn encoder_name(&self) -> &'static str {
        self.fast.as_ref().map_or("general", FastEncoder::name)
    }

    /// The tokenizer as `tokenizer.json` text (without truncation or padding settings).
    pub fn to_json(&self) -> Result<String> {
        self.base.to_string(false).map_err(tokenization_error)
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.base
    }

    /// Number of special tokens the post-processor adds to a single sequence or a pair.
    pub fn num_special_tokens_to_add(&self, is_pair: bool) -> usize {
        use tokenizers::PostProcessor;
        self.base
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(is_pair))
    }

    /// The tokenizer configured for `truncation`, built once per distinct setting.
    fn configured(&self, truncation: Truncation) -> Result<Arc<Tokenizer>> {
        if let Some(found) = self.truncating.read().map_err(poisoned)?.get(&truncation) {
            return Ok(Arc::clone(found));
        }
        let mut tokenizer = self.base.clone();
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: truncation.max_length,
                stride: truncation.stride,
                strategy: match truncation.strategy {
                    TruncationStrategy::LongestFirst => TkStrategy::LongestFirst,
                    TruncationStrategy::OnlyFirst => TkStrategy::OnlyFirst,
                    TruncationStrategy::OnlySecond => TkStrategy::OnlySecond,
                },
                direction: match truncation.side {
                    Side::Left => TruncationDirection::Left,
                    Side::Right => TruncationDirection::Right,
                },
            }))
            .map_err(|err| FerrotuneError::InvalidArgument(err.to_string()))?;
        let tokenizer = Arc::new(tokenizer);
        let mut cache = self.truncating.write().map_err(poisoned)?;
        if cache.len() >= MAX_CACHED_CONFIGURATIONS {
            cache.clear();
        }
        cache.insert(truncation, Arc::clone(&tokenizer));
        Ok(tokenizer)
    }

    /// Encodes a batch of texts (and, optionally, the second text of each pair).
    pub fn encode_batch(
        &self,
        texts: &[String],
        pairs: Option<&[String]>,
        request: &EncodeRequest,
    ) -> Result<EncodedBatch> {
        self.encode_sequences(texts, pairs, request)
    }

    /// Without special tokens, truncation or padding: each text's ids and their BYTE spans (two
    /// values per token), from the native byte-level BPE encoder; None where the pipeline has none
    /// (its offsets are then the general path's, in characters). The spans are those `encode`
    /// reports, before conversion to characters: the post-processors a native pipeline may have
    /// leave them alone without special tokens.
    pub fn encode_byte_spans(&self, texts: &[String]) -> Option<Vec<(Vec<i64>, Vec<i64>)>> {
        let Some(FastEncoder::ByteLevelBpe(encoder)) = &self.fast else {
            return None;
        };
        Some(
            (0..texts.len())
                .into_maybe_par_iter()
                .map(|i| {
                    let (mut ids, mut spans) = (Vec::new(), Vec::new());
                    encoder.encode_spans_into(&texts[i], &mut ids, &mut spans);
                    (ids.into_iter().map(i64::from).collect(), spans)
                })
                .collect(),
        )
    }

    /// Encodes a batch of texts already split into words (transformers' `is_split_into_words`),
    /// optionally with the second sequence of each pair, also split into words.
    pub fn encode_words_batch(
        &self,
        words: &[Vec<String>],
        pairs: Option<&[Vec<String>]>,
        request: &EncodeRequest,
    ) -> Result<EncodedBatch> {
        self.encode_sequences(words, pairs, request)
    }

    fn encode_sequences<S: Sequence>(
        &self,
        texts: &[S],
        pairs: Option<&[S]>,
        request: &EncodeRequest,
    ) -> Result<EncodedBatch> {
        if let Some(pairs) = pairs {
            if pairs.len() != texts.len() {
                return Err(FerrotuneError::InvalidInput(format!(
                    "batch length of `text`: {} does not match batch length of `text_pair`: {}",
                    texts.len(),
                    pairs.len()
                )));
            }
        }
        self.check_truncation(request, pairs.is_some())?;
        if let (Some(fast), Some(template)) = (&self.fast, &self.template) {
            let outputs = request.outputs;
            // Word and sequence ids come along on the direct path; offsets, overflow windows and
            // token strings need `Encoding`s.
            if !outputs.offsets && !outputs.overflowing && !outputs.tokens {
                if let Some(truncation) = request.truncation {
                    // The crate's own checks of the setting (stride against the room left), so
                    // both paths refuse the same arguments with the same message.
                    self.configured(truncation)?;
                }
                let rows = encode_direct(fast, template, texts, pairs, request)?;
                return Ok(assemble(&rows, request, ""));
            }
        }
        let encodings = match request.truncation {
            None if self.fast.is_some() => {
                self.encode_in_two_steps(texts, pairs, &self.base, request)
            }
            None => {
                let inputs: Vec<EncodeInput> = match pairs {
                    None => texts
                        .iter()
                        .map(|t| EncodeInput::Single(t.input()))
                        .collect(),
                    Some(pairs) => texts
                        .iter()
                        .zip(pairs)
                        .map(|(t, p)| EncodeInput::Dual(t.input(), p.input()))
                        .collect(),
                };
                // Character offsets are what transformers reports; skip computing them when not asked for.
                if request.outputs.offsets || request.outputs.alignment || request.outputs.tokens {
                    self.base
                        .encode_batch_char_offsets(inputs, request.add_special_tokens)
                } else {
                    self.base
                        .encode_batch_fast(inputs, request.add_special_tokens)
                }
            }
            Some(truncation) => {
                let configured = self.configured(truncation)?;
                // The tokenizers crate panics when `stride` does not fit in the room one sequence has
                // left; report that as the bad argument it is.
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.encode_in_two_steps(texts, pairs, &configured, request)
                }))
                .map_err(|payload| stride_error(payload, truncation.stride))?
            }
        }
        .map_err(tokenization_error)?;
        let pad_token = match request.outputs.tokens {
            true => u32::try_from(request.pad_id)
                .ok()
                .and_then(|id| self.base.id_to_token(id))
                .unwrap_or_default(),
            false => String::new(),
        };
        Ok(assemble(&encodings, request, &pad_token))
    }

    /// Encodes in two steps: each sequence whole (no post-processor, no truncation; natively when
    /// the pipeline has a fast encoder), then the configured tokenizer's `post_process` (truncation
    /// with overflow windows, special tokens), exactly what `encode` does inside the crate. With
    /// truncation this is also a fix: the tokenizers crate (0.23.2) would otherwise stop tokenizing
    /// at `max_length` while encoding, which ignores `stride` and loses overflow windows that
    /// transformers returns.
    ///
    /// Word and sequence ids come from the native encoder too (it numbers words as the crate's
    /// pre-tokenizer does); token strings take the crate's encoding of each sequence even where a
    /// native encoder exists: the `Encoding` is then the crate's in every field.
    fn encode_in_two_steps<S: Sequence>(
        &self,
        texts: &[S],
        pairs: Option<&[S]>,
        configured: &Tokenizer,
        request: &EncodeRequest,
    ) -> tokenizers::Result<Vec<Encoding>> {
        let outputs = request.outputs;
        let encode_one = |text: &S| match &self.fast {
            Some(fast) if !outputs.tokens => Ok(text.fast_encoding(fast, outputs.offsets)),
            _ if outputs.offsets || outputs.alignment || outputs.tokens => {
                self.plain.encode_char_offsets(text.input(), false)
            }
            _ => self.plain.encode_fast(text.input(), false),
        };
        (0..texts.len())
            .into_maybe_par_iter()
            .map(|i| {
                let first = encode_one(&texts[i])?;
                let Some(pairs) = pairs else {
                    return configured.post_process(first, None, request.add_special_tokens);
                };
                let mut second = encode_one(&pairs[i])?;
                // The second sequence of a pair carries type id 1 from the start, as in `encode`;
                // its overflow windows keep it.
                second.set_type_ids(vec![1; second.len()]);
                configured.post_process(first, Some(second), request.add_special_tokens)
            })
            .collect()
    }

    /// A `max_length` that cannot even hold the special tokens is refused up front: the tokenizers
    /// crate would subtract past zero and silently stop truncating.
    fn check_truncation(&self, request: &EncodeRequest, is_pair: bool) -> Result<()> {
        let Some(truncation) = request.truncation else {
            return Ok(());
        };
        // Without special tokens nothing is subtracted from max_length, so any max_length >= 1 works.
        if !request.add_special_tokens {
            return Ok(());
        }
        let added = self.num_special_tokens_to_add(is_pair);
        let added_single = self.num_special_tokens_to_add(false);
        if truncation.max_length < added || truncation.max_length < added_single {
            return Err(FerrotuneError::InvalidArgument(format!(
                "max_length={} is too small: this tokenizer adds {} special tokens to a {}",
                truncation.max_length,
                added.max(added_single),
                if is_pair && added >= added_single {
                    "pair of sequences"
                } else {
                    "sequence"
                }
            )));
        }
        Ok(())
    }

    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.base
            .decode(ids, skip_special_tokens)
            .map_err(tokenization_error)
    }

    /// Token strings joined by the tokenizer's decoder (`##` continuations, byte-level bytes, ...), as
    /// transformers' `convert_tokens_to_string`; without a decoder, joined by spaces.
    pub fn decode_tokens(&self, tokens: Vec<String>) -> Result<String> {
        use tokenizers::tokenizer::Decoder;
        match self.base.get_decoder() {
            Some(decoder) => decoder.decode(tokens).map_err(tokenization_error),
            None => Ok(tokens.join(" ")),
        }
    }

    pub fn decode_batch(
        &self,
        sequences: &[Vec<u32>],
        skip_special_tokens: bool,
    ) -> Result<Vec<String>> {
        let refs: Vec<&[u32]> = sequences.iter().map(Vec::as_slice).collect();
        self.base
            .decode_batch(&refs, skip_special_tokens)
            .map_err(tokenization_error)
    }
}

fn stride_error(payload: Box<dyn std::any::Any + Send>, stride: usize) -> FerrotuneError {
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    if message.contains("stride") {
        FerrotuneError::InvalidArgument(format!(
            "stride={stride} is too large: after truncation a sequence has fewer tokens left than the stride ({message})"
        ))
    } else {
        FerrotuneError::Internal(message)
    }
}

/// The direct path (no offsets, no overflow windows): native ids, truncation and special tokens on
/// id vectors.
fn encode_direct<S: Sequence>(
    fast: &FastEncoder,
    template: &Template,
    texts: &[S],
    pairs: Option<&[S]>,
    request: &EncodeRequest,
) -> Result<Vec<DirectRow>> {
    (0..texts.len())
        .into_maybe_par_iter()
        .map(|i| {
            let mut first = Vec::new();
            let words = if request.outputs.alignment {
                let mut words = Words {
                    first: Vec::new(),
                    second: None,
                };
                texts[i].fast_ids_words_into(fast, &mut first, &mut words.first);
                Some(words)
            } else {
                texts[i].fast_ids_into(fast, &mut first);
                None
            };
            let mut words = words;
            let second = pairs.map(|pairs| {
                let mut second = Vec::new();
                match &mut words {
                    Some(words) => {
                        let mut second_words = Vec::new();
                        pairs[i].fast_ids_words_into(fast, &mut second, &mut second_words);
                        words.second = Some(second_words);
                    }
                    None => pairs[i].fast_ids_into(fast, &mut second),
                }
                second
            });
            build_row(
                template,
                first,
                second,
                request.truncation.as_ref(),
                request.add_special_tokens,
                words,
            )
        })
        .collect()
}

/// What [`assemble`] reads of an encoded example.
trait TokenRow: Sync {
    fn ids(&self) -> &[u32];
    fn type_ids(&self) -> &[u32];
    fn attention_mask(&self) -> &[u32];
    fn special_tokens_mask(&self) -> &[u32];
    fn offsets(&self) -> &[(usize, usize)];
    fn word_ids(&self) -> &[Option<u32>];
    fn sequence_ids(&self) -> Vec<Option<usize>>;
    fn sequence_ranges(&self) -> usize;
    fn tokens(&self) -> &[String];
    fn overflowing(&self) -> &[Self]
    where
        Self: Sized;
    fn len(&self) -> usize {
        self.ids().len()
    }
}

impl TokenRow for Encoding {
    fn ids(&self) -> &[u32] {
        self.get_ids()
    }
    fn type_ids(&self) -> &[u32] {
        self.get_type_ids()
    }
    fn attention_mask(&self) -> &[u32] {
        self.get_attention_mask()
    }
    fn special_tokens_mask(&self) -> &[u32] {
        self.get_special_tokens_mask()
    }
    fn offsets(&self) -> &[(usize, usize)] {
        self.get_offsets()
    }
    fn word_ids(&self) -> &[Option<u32>] {
        self.get_word_ids()
    }
    fn sequence_ids(&self) -> Vec<Option<usize>> {
        self.get_sequence_ids()
    }
    fn sequence_ranges(&self) -> usize {
        // No range holds the position past the end: an answer there means there are no ranges.
        if self.token_to_sequence(self.len()).is_some() {
            0
        } else {
            self.n_sequences()
        }
    }
    fn tokens(&self) -> &[String] {
        self.get_tokens()
    }
    fn overflowing(&self) -> &[Self] {
        self.get_overflowing()
    }
}

impl TokenRow for DirectRow {
    fn ids(&self) -> &[u32] {
        &self.ids
    }
    fn type_ids(&self) -> &[u32] {
        &self.type_ids
    }
    fn attention_mask(&self) -> &[u32] {
        &self.attention_mask
    }
    fn special_tokens_mask(&self) -> &[u32] {
        &self.special_tokens_mask
    }
    fn offsets(&self) -> &[(usize, usize)] {
        &[]
    }
    fn word_ids(&self) -> &[Option<u32>] {
        &self.word_ids
    }
    fn sequence_ids(&self) -> Vec<Option<usize>> {
        self.sequence_ids.clone()
    }
    fn sequence_ranges(&self) -> usize {
        // The template is the tokenizer's post-processor, which gives every sequence a range (as
        // `PostProcessor::process` does) whether or not special tokens are added.
        self.sequences
    }
    fn tokens(&self) -> &[String] {
        &[]
    }
    fn overflowing(&self) -> &[Self] {
        &[]
    }
}

fn poisoned<T>(_: T) -> FerrotuneError {
    FerrotuneError::Internal("tokenizer cache lock poisoned by an earlier panic".into())
}

/// One per-token output of encoded rows, read in place by the padding kernel: `values` gives a
/// row's values, `per_token` of them per token (two for offsets).
struct RowsOf<'a, T, V> {
    rows: &'a [&'a T],
    values: fn(&T) -> &[V],
    per_token: usize,
}

/// A per-token value as the int64 written to the outputs.
trait OutputValue: Copy {
    fn write(values: &[Self], out: &mut [i64]);
}

impl OutputValue for u32 {
    #[inline]
    fn write(values: &[u32], out: &mut [i64]) {
        for (slot, &v) in out.iter_mut().zip(values) {
            *slot = i64::from(v);
        }
    }
}

impl OutputValue for (usize, usize) {
    #[inline]
    fn write(values: &[(usize, usize)], out: &mut [i64]) {
        for (slot, &(start, end)) in out.chunks_exact_mut(2).zip(values) {
            slot[0] = start as i64;
            slot[1] = end as i64;
        }
    }
}

impl OutputValue for Option<u32> {
    #[inline]
    fn write(values: &[Option<u32>], out: &mut [i64]) {
        for (slot, &v) in out.iter_mut().zip(values) {
            *slot = v.map_or(-1, i64::from);
        }
    }
}

impl<T: Sync, V: OutputValue> RowSource for RowsOf<'_, T, V> {
    fn rows(&self) -> usize {
        self.rows.len()
    }

    fn row_len(&self, row: usize) -> usize {
        (self.values)(self.rows[row]).len() * self.per_token
    }

    fn write_row(&self, row: usize, out: &mut [i64]) {
        V::write((self.values)(self.rows[row]), out)
    }
}

/// Flattens encodings (and their overflow windows when requested) into padded contiguous buffers.
///
/// `pad_token` is the token string of padding positions when token strings are requested.
fn assemble<T: TokenRow>(
    encodings: &[T],
    request: &EncodeRequest,
    pad_token: &str,
) -> EncodedBatch {
    let outputs = request.outputs;
    let mut rows: Vec<&T> = Vec::with_capacity(encodings.len());
    let mut mapping: Vec<i64> = Vec::new();
    for (sample, encoding) in encodings.iter().enumerate() {
        rows.push(encoding);
        if outputs.overflowing {
            mapping.push(sample as i64);
            // Only the first level, as transformers reads `encoding.overflowing`: windows merged
            // from pairs carry nested copies of other combinations.
            for window in encoding.overflowing() {
                rows.push(window);
                mapping.push(sample as i64);
            }
        }
    }

    let spec = request.padding;
    let width = spec.width(rows.iter().map(|e| e.len()));
    let pad = |values: fn(&T) -> &[u32], pad_value: i64| {
        let column = RowsOf {
            rows: &rows,
            values,
            per_token: 1,
        };
        pad_rows("", &column, width, pad_value, spec.side)
    };
    let input_ids = pad(T::ids, request.pad_id);
    let starts = input_ids.starts;
    // Unpadded rows of one length are a matrix too.
    let uniform_width = input_ids.uniform_width.or_else(|| {
        let first = starts.get(1).copied()?;
        starts
            .windows(2)
            .all(|w| w[1] - w[0] == first)
            .then_some(first)
    });
    let token_type_ids = outputs
        .token_type_ids
        .then(|| pad(T::type_ids, request.pad_type_id).values);
    let attention_mask = outputs
        .attention_mask
        .then(|| pad(T::attention_mask, 0).values);
    let special_tokens_mask = outputs
        .special_tokens_mask
        .then(|| pad(T::special_tokens_mask, 1).values);
    let offsets = outputs.offsets.then(|| {
        let column = RowsOf {
            rows: &rows,
            values: T::offsets,
            per_token: 2,
        };
        pad_rows("", &column, 2 * width, 0, spec.side).values
    });
    let length = outputs
        .length
        .then(|| starts.windows(2).map(|w| (w[1] - w[0]) as i64).collect());
    let sequence_ranges = outputs.alignment.then(|| {
        rows.iter()
            .map(|row| row.sequence_ranges() as i64)
            .collect()
    });
    let (word_ids, sequence_ids) = if outputs.alignment {
        let column = RowsOf {
            rows: &rows,
            values: T::word_ids,
            per_token: 1,
        };
        let word_ids = pad_rows("", &column, width, -1, spec.side).values;
        let sequence_rows: Vec<Vec<i64>> = rows
            .iter()
            .map(|row| {
                row.sequence_ids()
                    .iter()
                    .map(|id| id.map_or(-1, |id| id as i64))
                    .collect()
            })
            .collect();
        let sequence_ids =
            pad_rows("", &Ragged::from_rows(&sequence_rows), width, -1, spec.side).values;
        (Some(word_ids), Some(sequence_ids))
    } else {
        (None, None)
    };
    let tokens = outputs
        .tokens
        .then(|| pad_tokens(&rows, &starts, pad_token, spec.side));
    EncodedBatch {
        starts,
        uniform_width,
        input_ids: input_ids.values,
        token_type_ids,
        attention_mask,
        special_tokens_mask,
        offsets,
        overflow_to_sample_mapping: outputs.overflowing.then_some(mapping),
        length,
        word_ids,
        sequence_ids,
        tokens,
        sequence_ranges,
    }
}

/// The token strings of `rows` laid out as the padded `input_ids` (row `i` fills
/// `starts[i]..starts[i+1]`), padding positions holding `pad_token`.
fn pad_tokens<T: TokenRow>(
    rows: &[&T],
    starts: &[usize],
    pad_token: &str,
    side: Side,
) -> Vec<String> {
    let mut out = Vec::with_capacity(starts.last().copied().unwrap_or(0));
    for (row, bounds) in rows.iter().zip(starts.windows(2)) {
        let tokens = row.tokens();
        let fill = (bounds[1] - bounds[0]).saturating_sub(tokens.len());
        let padding = std::iter::repeat_n(pad_token.to_string(), fill);
        match side {
            Side::Left => out.extend(padding.chain(tokens.iter().cloned())),
            Side::Right => out.extend(tokens.iter().cloned().chain(padding)),
        }
    }
    out
}
