//! A native encoder for the BERT WordPiece pipeline (`BertNormalizer` + `BertPreTokenizer` +
//! `WordPiece`), bit-identical to the `tokenizers` crate but several times faster.
//!
//! The `tokenizers` crate builds a `NormalizedString` with a byte-level alignment table for every
//! input and allocates a `String` per token. Here ASCII input (the common case) is normalized,
//! split and looked up in one pass over its bytes with no per-token allocation. Any other input
//! takes an exact replica of the crate's alignment bookkeeping, one alignment per character, so
//! that offsets agree even where normalization expands, removes or reorders characters.
//!
//! What is reproduced, stage by stage, as `Tokenizer::encode` runs it for a single sequence:
//! 1. added tokens are cut out of the raw text (leftmost-longest match; only tokens that are
//!    special, not normalized, and neither strip nor single-word are accepted);
//! 2. each piece between them is normalized (`BertNormalizer`);
//! 3. split on whitespace, every punctuation character isolated (`BertPreTokenizer`);
//! 4. every word is cut greedily, longest match first, into WordPiece tokens.

use rustc_hash::FxHashMap;
use tokenizers::models::ModelWrapper;
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{Encoding, Model, Tokenizer};
use unicode_categories::UnicodeCategories;
use unicode_normalization_alignments::UnicodeNormalization;

/// A range of bytes of the original text.
type Span = (usize, usize);

/// What the pipeline does with one ASCII byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AsciiClass {
    /// Part of a word; the byte to look up in the vocabulary (lowercased if configured).
    Word(u8),
    /// Ends the current word and is dropped.
    Space,
    /// Ends the current word and is a word of its own.
    Punctuation(u8),
    /// Dropped by `clean_text` without ending the word (control characters).
    Removed,
}

/// The WordPiece vocabulary split by position: pieces that start a word, and pieces that continue
/// one (stored without the continuing-subword prefix, so no key has to be built per lookup).
#[derive(Clone)]
struct Vocabulary {
    initial: FxHashMap<Box<[u8]>, u32>,
    continuation: FxHashMap<Box<[u8]>, u32>,
    /// The longest key of each map, in bytes: no match can be longer, which bounds the search.
    longest_initial: usize,
    longest_continuation: usize,
}

impl Vocabulary {
    fn new(vocab: impl IntoIterator<Item = (String, u32)>, prefix: &str) -> Self {
        let mut initial = FxHashMap::default();
        let mut continuation = FxHashMap::default();
        for (piece, id) in vocab {
            if let Some(rest) = piece.strip_prefix(prefix) {
                continuation.insert(rest.as_bytes().into(), id);
            }
            initial.insert(piece.into_bytes().into_boxed_slice(), id);
        }
        let longest = |map: &FxHashMap<Box<[u8]>, u32>| map.keys().map(|k| k.len()).max();
        Self {
            longest_initial: longest(&initial).unwrap_or(0),
            longest_continuation: longest(&continuation).unwrap_or(0),
            initial,
            continuation,
        }
    }
}

/// Where tokens go: ids only (the hot path) or a full `Encoding`.
trait TokenSink {
    /// Whether offsets are wanted; when not, the encoder skips computing them.
    const WANTS_OFFSETS: bool;
    fn len(&self) -> usize;
    fn truncate(&mut self, len: usize);
    /// `span` is in bytes of the original text; `word` the index of the pre-tokenized split.
    fn push(&mut self, id: u32, span: Span, word: u32);
}

struct IdSink<'a>(&'a mut Vec<u32>);

impl TokenSink for IdSink<'_> {
    const WANTS_OFFSETS: bool = false;
    #[inline]
    fn len(&self) -> usize {
        self.0.len()
    }
    #[inline]
    fn truncate(&mut self, len: usize) {
        self.0.truncate(len);
    }
    #[inline]
    fn push(&mut self, id: u32, _span: Span, _word: u32) {
        self.0.push(id);
    }
}

/// Ids and the word of each (`Encoding::get_word_ids`), no offsets: the direct path's alignment.
struct WordSink<'a> {
    ids: &'a mut Vec<u32>,
    words: &'a mut Vec<u32>,
}

impl TokenSink for WordSink<'_> {
    const WANTS_OFFSETS: bool = false;
    #[inline]
    fn len(&self) -> usize {
        self.ids.len()
    }
    #[inline]
    fn truncate(&mut self, len: usize) {
        self.ids.truncate(len);
        self.words.truncate(len);
    }
    #[inline]
    fn push(&mut self, id: u32, _span: Span, word: u32) {
        self.ids.push(id);
        self.words.push(word);
    }
}

#[derive(Default)]
struct FullSink {
    ids: Vec<u32>,
    offsets: Vec<Span>,
    words: Vec<Option<u32>>,
}

impl TokenSink for FullSink {
    const WANTS_OFFSETS: bool = true;
    fn len(&self) -> usize {
        self.ids.len()
    }
    fn truncate(&mut self, len: usize) {
        self.ids.truncate(len);
        self.offsets.truncate(len);
        self.words.truncate(len);
    }
    fn push(&mut self, id: u32, span: Span, word: u32) {
        self.ids.push(id);
        self.offsets.push(span);
        self.words.push(Some(word));
    }
}

/// Per-call working buffers, reused across the words of one text.
#[derive(Default)]
struct Scratch {
    /// The normalized bytes of the current word.
    word: Vec<u8>,
    /// For each byte of `word`, the original bytes it comes from (only filled when offsets are
    /// wanted on the ASCII path, always on the general path).
    word_spans: Vec<Span>,
    /// The normalized characters of a non-ASCII piece, each with its original bytes.
    chars: Vec<(char, Span)>,
    chars_tmp: Vec<(char, Span)>,
    /// The index of the next pre-tokenized split (what `Encoding::get_word_ids` reports).
    next_word: u32,
}

/// A native encoder for tokenizers whose pipeline is exactly BERT's; see the module docs.
#[derive(Clone)]
pub struct FastWordPiece {
    clean_text: bool,
    handle_chinese_chars: bool,
    strip_accents: bool,
    lowercase: bool,
    ascii_classes: [AsciiClass; 128],
    vocab: Vocabulary,
    unk_id: u32,
    max_input_chars_per_word: usize,
    /// Added tokens matched in the raw text: content and id.
    added_tokens: Vec<(Box<[u8]>, u32)>,
    /// Which bytes start an added token, to skip quickly to the next candidate.
    added_token_first_bytes: [bool; 256],
}

impl std::fmt::Debug for FastWordPiece {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastWordPiece")
            .field("clean_text", &self.clean_text)
            .field("handle_chinese_chars", &self.handle_chinese_chars)
            .field("strip_accents", &self.strip_accents)
            .field("lowercase", &self.lowercase)
            .field("vocab_size", &self.vocab.initial.len())
            .field("unk_id", &self.unk_id)
            .field("max_input_chars_per_word", &self.max_input_chars_per_word)
            .field("added_tokens", &self.added_tokens.len())
            .finish_non_exhaustive()
    }
}

impl FastWordPiece {
    /// Some(..) only when the tokenizer's pipeline is one this encoder reproduces exactly:
    /// normalizer = `BertNormalizer` (any settings), pre_tokenizer = `BertPreTokenizer`,
    /// model = `WordPiece` (with its unknown token in the vocabulary), and added tokens that are
    /// all special, not normalized, and neither single-word nor stripping — otherwise None.
    ///
    /// The post-processor, truncation and padding configured on `tokenizer` are not applied:
    /// they are the caller's concern, as for `Engine`, which removes them before encoding.
    pub fn from_tokenizer(tokenizer: &Tokenizer) -> Option<Self> {
        let Some(NormalizerWrapper::BertNormalizer(normalizer)) = tokenizer.get_normalizer() else {
            return None;
        };
        let Some(PreTokenizerWrapper::BertPreTokenizer(_)) = tokenizer.get_pre_tokenizer() else {
            return None;
        };
        let ModelWrapper::WordPiece(model) = tokenizer.get_model() else {
            return None;
        };
        let vocab = model.get_vocab();
        let unk_id = *vocab.get(&model.unk_token)?;

        let mut added_tokens: Vec<(Box<[u8]>, u32)> = Vec::new();
        for (id, token) in tokenizer.get_added_tokens_decoder() {
            let reproducible = token.special
                && !token.normalized
                && !token.single_word
                && !token.lstrip
                && !token.rstrip;
            if !reproducible {
                return None;
            }
            // The crate skips empty contents and cannot build its matcher with duplicates.
            if token.content.is_empty() {
                continue;
            }
            if added_tokens
                .iter()
                .any(|(content, _)| **content == *token.content.as_bytes())
            {
                return None;
            }
            added_tokens.push((token.content.into_bytes().into_boxed_slice(), id));
        }
        // With `encode_special_tokens` the crate leaves special tokens in the text to be encoded.
        if tokenizer.get_encode_special_tokens() {
            added_tokens.clear();
        }
        let mut added_token_first_bytes = [false; 256];
        for (content, _) in &added_tokens {
            added_token_first_bytes[usize::from(content[0])] = true;
        }

        let strip_accents = normalizer.strip_accents.unwrap_or(normalizer.lowercase);
        let mut encoder = Self {
            clean_text: normalizer.clean_text,
            handle_chinese_chars: normalizer.handle_chinese_chars,
            strip_accents,
            lowercase: normalizer.lowercase,
            ascii_classes: [AsciiClass::Space; 128],
            vocab: Vocabulary::new(vocab, &model.continuing_subword_prefix),
            unk_id,
            max_input_chars_per_word: model.max_input_chars_per_word,
            added_tokens,
            added_token_first_bytes,
        };
        encoder.ascii_classes = std::array::from_fn(|byte| encoder.classify_ascii(byte as u8));
        Some(encoder)
    }

    /// The ASCII table, derived from the general per-character rules so the two paths agree.
    fn classify_ascii(&self, byte: u8) -> AsciiClass {
        let mut c = char::from(byte);
        if self.clean_text {
            if removed_by_clean_text(c) {
                return AsciiClass::Removed;
            }
            if is_bert_whitespace(c) {
                c = ' ';
            }
        }
        // Chinese characters, accents and multi-character lowercase forms are never ASCII.
        if self.lowercase {
            c = c.to_ascii_lowercase();
        }
        if c.is_whitespace() {
            AsciiClass::Space
        } else if is_bert_punctuation(c) {
            AsciiClass::Punctuation(c as u8)
        } else {
            AsciiClass::Word(c as u8)
        }
    }

    /// Must equal, field by field, what `encode_fast(text, false)` of the tokenizer without its
    /// post-processor returns for ids, type_ids, special_tokens_mask and attention_mask; with
    /// `char_offsets`, offsets are those of `encode_char_offsets(text, false)` (characters of
    /// `text`), otherwise (0, 0). Token strings are left empty.
    pub fn encode(&self, text: &str, char_offsets: bool) -> Encoding {
        let mut sink = FullSink::default();
        self.encode_into(text, &mut sink);
        let FullSink {
            ids,
            mut offsets,
            words,
        } = sink;
        if char_offsets {
            if !text.is_ascii() {
                let converter = CharOffsets::new(text);
                for span in &mut offsets {
                    *span = converter.convert(*span);
                }
            }
        } else {
            offsets.iter_mut().for_each(|span| *span = (0, 0));
        }
        let len = ids.len();
        Encoding::new(
            ids,
            vec![0; len],
            vec![String::new(); len],
            words,
            offsets,
            vec![0; len],
            vec![1; len],
            Vec::new(),
            Default::default(),
        )
    }

    /// The ids only, appended to `out`: the hot path, no `Encoding` built.
    pub fn encode_ids_into(&self, text: &str, out: &mut Vec<u32>) {
        self.encode_into(text, &mut IdSink(out));
    }

    /// The ids appended to `ids` and the word of each (what `encode` reports as word ids) to
    /// `words`, with no `Encoding` built.
    pub fn encode_ids_words_into(&self, text: &str, ids: &mut Vec<u32>, words: &mut Vec<u32>) {
        self.encode_into(text, &mut WordSink { ids, words });
    }

    fn encode_into<S: TokenSink>(&self, text: &str, sink: &mut S) {
        let mut scratch = Scratch::default();
        let bytes = text.as_bytes();
        let mut piece_start = 0;
        let mut search_from = 0;
        while let Some((start, end, id)) = self.next_added_token(bytes, search_from) {
            self.encode_piece(text, piece_start, start, sink, &mut scratch);
            sink.push(id, (start, end), scratch.next_word);
            scratch.next_word += 1;
            piece_start = end;
            search_from = end;
        }
        self.encode_piece(text, piece_start, text.len(), sink, &mut scratch);
    }

    /// The leftmost added token at or after `from`, the longest if several start there.
    fn next_added_token(&self, bytes: &[u8], from: usize) -> Option<(usize, usize, u32)> {
        if self.added_tokens.is_empty() {
            return None;
        }
        let mut at = from;
        while at < bytes.len() {
            let offset = bytes[at..]
                .iter()
                .position(|&b| self.added_token_first_bytes[usize::from(b)])?;
            at += offset;
            let rest = &bytes[at..];
            let longest = self
                .added_tokens
                .iter()
                .filter(|(content, _)| rest.starts_with(content))
                .max_by_key(|(content, _)| content.len());
            if let Some((content, id)) = longest {
                return Some((at, at + content.len(), *id));
            }
            at += 1;
        }
        None
    }

    /// Encodes `text[start..end]`, a piece with no added token in it.
    ///
    /// ASCII needs no NFD, has no accents, no Chinese characters and one-byte lowercase forms:
    /// normalization and pre-tokenization reduce to one table lookup per byte. A stretch with
    /// other characters, from the start of its word to the next ASCII space or punctuation, goes
    /// to the general path. Cutting there is exact: every normalization step works on single
    /// characters except NFD's reordering of combining marks, which never crosses an ASCII
    /// character, and the pre-tokenizer ends a word there anyway.
    fn encode_piece<S: TokenSink>(
        &self,
        text: &str,
        start: usize,
        end: usize,
        sink: &mut S,
        scratch: &mut Scratch,
    ) {
        let Some(piece) = text.get(start..end) else {
            return;
        };
        let bytes = piece.as_bytes();
        scratch.word.clear();
        scratch.word_spans.clear();
        let mut word_start = 0;
        let mut i = 0;
        while i < bytes.len() {
            let byte = bytes[i];
            if !byte.is_ascii() {
                let stretch_end = bytes[i..]
                    .iter()
                    .position(|&b| b.is_ascii() && self.ends_word(b))
                    .map_or(bytes.len(), |offset| i + offset);
                scratch.word.clear();
                scratch.word_spans.clear();
                if let Some(stretch) = piece.get(word_start..stretch_end) {
                    self.encode_general_piece(stretch, start + word_start, sink, scratch);
                }
                i = stretch_end;
                word_start = stretch_end;
                continue;
            }
            match self.ascii_classes[usize::from(byte & 0x7f)] {
                AsciiClass::Word(normalized) => {
                    scratch.word.push(normalized);
                    if S::WANTS_OFFSETS {
                        scratch.word_spans.push((start + i, start + i + 1));
                    }
                }
                AsciiClass::Removed => {}
                AsciiClass::Space => {
                    self.flush_word(sink, scratch, true);
                    word_start = i + 1;
                }
                AsciiClass::Punctuation(normalized) => {
                    self.flush_word(sink, scratch, true);
                    scratch.word.push(normalized);
                    if S::WANTS_OFFSETS {
                        scratch.word_spans.push((start + i, start + i + 1));
                    }
                    self.flush_word(sink, scratch, true);
                    word_start = i + 1;
                }
            }
            i += 1;
        }
        self.flush_word(sink, scratch, true);
    }

    /// Whether this ASCII byte ends the word before it.
    #[inline]
    fn ends_word(&self, byte: u8) -> bool {
        matches!(
            self.ascii_classes[usize::from(byte & 0x7f)],
            AsciiClass::Space | AsciiClass::Punctuation(_)
        )
    }

    /// Any text: normalize character by character, keeping for each normalized character the
    /// original bytes the crate's `NormalizedString` would align it with.
    fn encode_general_piece<S: TokenSink>(
        &self,
        piece: &str,
        base: usize,
        sink: &mut S,
        scratch: &mut Scratch,
    ) {
        let mut chars = std::mem::take(&mut scratch.chars);
        let mut tmp = std::mem::take(&mut scratch.chars_tmp);
        self.normalize(piece, base, &mut chars, &mut tmp);

        scratch.word.clear();
        scratch.word_spans.clear();
        let mut utf8 = [0u8; 4];
        for &(c, span) in &chars {
            if c.is_whitespace() {
                self.flush_word(sink, scratch, false);
                continue;
            }
            let punctuation = is_bert_punctuation(c);
            if punctuation {
                self.flush_word(sink, scratch, false);
            }
            let encoded = c.encode_utf8(&mut utf8).as_bytes();
            scratch.word.extend_from_slice(encoded);
            scratch
                .word_spans
                .extend(std::iter::repeat_n(span, encoded.len()));
            if punctuation {
                self.flush_word(sink, scratch, false);
            }
        }
        self.flush_word(sink, scratch, false);

        scratch.chars = chars;
        scratch.chars_tmp = tmp;
    }

    /// `BertNormalizer` on `piece` (which starts at byte `base` of the text), into `out`.
    fn normalize(
        &self,
        piece: &str,
        base: usize,
        out: &mut Vec<(char, Span)>,
        tmp: &mut Vec<(char, Span)>,
    ) {
        out.clear();
        for (i, c) in piece.char_indices() {
            let span = (base + i, base + i + c.len_utf8());
            let mut c = c;
            if self.clean_text {
                if removed_by_clean_text(c) {
                    continue;
                }
                if is_bert_whitespace(c) {
                    c = ' ';
                }
            }
            if self.handle_chinese_chars && is_chinese_char(c) {
                out.extend([(' ', span), (c, span), (' ', span)]);
            } else {
                out.push((c, span));
            }
        }

        if self.strip_accents {
            // The crate's `transform` gives a character that replaces one (change <= 0) the
            // alignment of the next unconsumed character, and an inserted one (change > 0) that
            // of the last consumed character, or the empty span at the start when none was.
            // NFD reorders combining marks, so this follows positions, not characters.
            tmp.clear();
            let mut consumed = 0usize;
            let piece_start = (base, base);
            for (c, change) in out.iter().map(|&(c, _)| c).nfd() {
                let span = if change > 0 {
                    consumed
                        .checked_sub(1)
                        .and_then(|i| out.get(i))
                        .map_or(piece_start, |&(_, span)| span)
                } else {
                    out.get(consumed).map_or(piece_start, |&(_, span)| span)
                };
                if change <= 0 {
                    consumed += 1 + change.unsigned_abs();
                }
                if !c.is_mark_nonspacing() {
                    tmp.push((c, span));
                }
            }
            std::mem::swap(out, tmp);
        }

        if self.lowercase {
            tmp.clear();
            for &(c, span) in out.iter() {
                // Every character of an expansion (İ -> i + U+0307) keeps the source's span.
                tmp.extend(c.to_lowercase().map(|lower| (lower, span)));
            }
            std::mem::swap(out, tmp);
        }
    }

    /// Runs WordPiece on the word in `scratch` (if any) and clears it.
    #[inline]
    fn flush_word<S: TokenSink>(&self, sink: &mut S, scratch: &mut Scratch, ascii: bool) {
        if scratch.word.is_empty() {
            return;
        }
        let word = scratch.next_word;
        scratch.next_word += 1;
        let spans = &scratch.word_spans;
        let whole = |len: usize| {
            if S::WANTS_OFFSETS {
                (spans[0].0, spans[len - 1].1)
            } else {
                (0, 0)
            }
        };
        let bytes = &scratch.word[..];
        let char_count = if ascii {
            bytes.len()
        } else {
            bytes.iter().filter(|&&b| !is_utf8_continuation(b)).count()
        };
        // Too long, or some part matching no piece: the whole word is one unknown token.
        let known = char_count <= self.max_input_chars_per_word
            && self.word_pieces(bytes, ascii, sink, spans, word);
        if !known {
            sink.push(self.unk_id, whole(bytes.len()), word);
        }
        scratch.word.clear();
        scratch.word_spans.clear();
    }

    /// Greedy longest-match-first; pushes the pieces and returns true, or pushes nothing and
    /// returns false when some part of the word matches no piece (the word is then unknown).
    #[inline]
    fn word_pieces<S: TokenSink>(
        &self,
        bytes: &[u8],
        ascii: bool,
        sink: &mut S,
        spans: &[Span],
        word: u32,
    ) -> bool {
        let rollback = sink.len();
        let mut start = 0;
        while start < bytes.len() {
            let (map, longest) = if start == 0 {
                (&self.vocab.initial, self.vocab.longest_initial)
            } else {
                (&self.vocab.continuation, self.vocab.longest_continuation)
            };
            // No piece is longer than `longest`, so longer candidates need not be tried.
            let mut end = bytes.len().min(start.saturating_add(longest));
            if !ascii {
                while end > start && is_utf8_continuation_at(bytes, end) {
                    end -= 1;
                }
            }
            let mut found = None;
            while end > start {
                if let Some(&id) = map.get(&bytes[start..end]) {
                    found = Some(id);
                    break;
                }
                end -= 1;
                if !ascii {
                    while end > start && is_utf8_continuation_at(bytes, end) {
                        end -= 1;
                    }
                }
            }
            let Some(id) = found else {
                sink.truncate(rollback);
                return false;
            };
            let span = if S::WANTS_OFFSETS {
                (spans[start].0, spans[end - 1].1)
            } else {
                (0, 0)
            };
            sink.push(id, span, word);
            start = end;
        }
        true
    }
}

#[inline]
fn is_utf8_continuation(byte: u8) -> bool {
    byte & 0xC0 == 0x80
}

/// Whether `bytes[at]` is inside a character (not at a boundary); `at == len` is a boundary.
#[inline]
fn is_utf8_continuation_at(bytes: &[u8], at: usize) -> bool {
    bytes.get(at).is_some_and(|&b| is_utf8_continuation(b))
}

/// `BertNormalizer`'s whitespace: `\t`, `\n`, `\r` and Unicode White_Space.
fn is_bert_whitespace(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || c.is_whitespace()
}

/// What `clean_text` drops: NUL, U+FFFD and "other" characters except `\t`, `\n`, `\r`.
fn removed_by_clean_text(c: char) -> bool {
    c == '\0' || c == '\u{fffd}' || (!matches!(c, '\t' | '\n' | '\r') && c.is_other())
}

/// `BertPreTokenizer`'s punctuation: ASCII punctuation (symbols included) or Unicode P*.
fn is_bert_punctuation(c: char) -> bool {
    c.is_ascii_punctuation() || c.is_punctuation()
}

/// The CJK blocks `BertNormalizer` pads with spaces.
fn is_chinese_char(c: char) -> bool {
    matches!(
        c as u32,
        0x4E00..=0x9FFF
            | 0x3400..=0x4DBF
            | 0x20000..=0x2A6DF
            | 0x2A700..=0x2B73F
            | 0x2B740..=0x2B81F
            | 0x2B920..=0x2CEAF
            | 0xF900..=0xFAFF
            | 0x2F800..=0x2FA1F
    )
}

/// Byte offsets to character offsets, as the crate's `BytesToCharOffsetConverter` does it.
struct CharOffsets {
    /// For every byte of the text, the index of the character it belongs to.
    char_of_byte: Vec<usize>,
}

impl CharOffsets {
    fn new(text: &str) -> Self {
        let mut char_of_byte = Vec::with_capacity(text.len());
        for (index, c) in text.chars().enumerate() {
            char_of_byte.extend(std::iter::repeat_n(index, c.len_utf8()));
        }
        Self { char_of_byte }
    }

    fn convert(&self, (start, end): Span) -> Span {
        let Some(&first) = self.char_of_byte.get(start) else {
            // The crate keeps byte offsets it cannot convert.
            return (start, end);
        };
        match self.char_of_byte.get(end) {
            Some(&last) => (first, last),
            None => {
                let before_end = end
                    .checked_sub(1)
                    .and_then(|b| self.char_of_byte.get(b))
                    .copied()
                    .unwrap_or(first + 1);
                (first, before_end + 1)
            }
        }
    }
}
