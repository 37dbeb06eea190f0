//! A native encoder for the GPT-2 byte-level BPE pipeline (no normalizer, `ByteLevel`
//! pre-tokenizer with its regex, `BPE` model), bit-identical to the `tokenizers` crate but several
//! times faster.
//!
//! The crate builds a `NormalizedString` with an alignment per byte, runs Oniguruma for the split,
//! maps every byte to a printable character and allocates a `String` per token. Here the regex is
//! a hand-written scanner, BPE runs on the raw bytes (the byte-to-character map is a bijection, so
//! merging byte ids is merging their characters), and words already seen are looked up in a
//! per-thread cache keyed by their bytes.
//!
//! What is reproduced, stage by stage, as `Tokenizer::encode` runs it for a single sequence:
//! 1. added tokens with `normalized: false` are cut out of the raw text, then those with
//!    `normalized: true` out of the pieces left (two leftmost-longest passes, as the crate does:
//!    the order matters when tokens of the two kinds overlap);
//! 2. each remaining piece gets a leading space if `add_prefix_space` and it does not start with
//!    one, and is split by the GPT-2 regex;
//! 3. every word is cut into its bytes, which are merged pairwise, lowest merge rank first
//!    (leftmost first among equal ranks).

mod unicode_tables;

use std::cell::RefCell;
use std::cmp::Reverse;
use std::sync::atomic::{AtomicU64, Ordering};

use dary_heap::QuaternaryHeap;
use rustc_hash::FxHashMap;
use tokenizers::models::ModelWrapper;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{Encoding, Tokenizer};

/// A range of bytes of the original text.
type Span = (usize, usize);

/// A token of a word: its id and its length in bytes of the word.
type Piece = (u32, u32);

/// Words this long or longer are not cached (the crate's own limit).
const MAX_CACHED_WORD: usize = 256;
/// Cached words per encoder and thread (some 10 MB); half are dropped when it is full, so that
/// it follows the text without losing every frequent word at once.
const CACHE_CAPACITY: usize = 1 << 17;
/// Words up to this many bytes are merged without a queue.
const SHORT_WORD: usize = 48;
/// No merge for this pair (every real rank is below it).
const NO_MERGE: u32 = u32::MAX;
/// Encoders whose caches a thread keeps at once.
const CACHES_PER_THREAD: usize = 4;

/// Distinguishes encoders in the per-thread caches; clones share theirs (same data, same words).
static NEXT_ENCODER_ID: AtomicU64 = AtomicU64::new(0);

/// The classes the GPT-2 regex tells apart: `\p{L}`, `\p{N}`, `\s`, and everything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Letter,
    Number,
    Space,
    Other,
}

const ASCII_CLASSES: [Class; 128] = {
    let mut classes = [Class::Other; 128];
    let mut byte = 0;
    while byte < 128 {
        let b = byte as u8;
        classes[byte] = if b.is_ascii_alphabetic() {
            Class::Letter
        } else if b.is_ascii_digit() {
            Class::Number
        } else if matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ') {
            Class::Space
        } else {
            Class::Other
        };
        byte += 1;
    }
    classes
};

fn in_ranges(ranges: &[(u32, u32)], c: u32) -> bool {
    ranges
        .binary_search_by(|&(low, high)| {
            if high < c {
                std::cmp::Ordering::Less
            } else if low > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

#[inline]
fn classify(c: char) -> Class {
    if c.is_ascii() {
        return ASCII_CLASSES[c as usize];
    }
    let c = c as u32;
    if in_ranges(unicode_tables::LETTER, c) {
        Class::Letter
    } else if in_ranges(unicode_tables::NUMBER, c) {
        Class::Number
    } else if in_ranges(unicode_tables::SPACE, c) {
        Class::Space
    } else {
        Class::Other
    }
}

/// The character at byte `at` of `s` and its length in bytes.
#[inline]
fn char_at(s: &str, at: usize) -> Option<(char, usize)> {
    let byte = *s.as_bytes().get(at)?;
    if byte.is_ascii() {
        return Some((char::from(byte), 1));
    }
    let c = s.get(at..)?.chars().next()?;
    Some((c, c.len_utf8()))
}

/// The words of `s` as the crate's GPT-2 regex cuts them:
/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`, Oniguruma's
/// leftmost-first alternation. Every character matches some alternative, so the words tile `s`.
struct Words<'a> {
    s: &'a str,
    at: usize,
    pattern: Pattern,
}

/// The pre-tokenizer regexes reproduced by hand-written scanners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pattern {
    /// GPT-2's, inside `ByteLevel` (`use_regex`).
    Gpt2,
    /// cl100k's / Llama-3's (`max_digits` 3) and Qwen2's (1), in a `Split` before `ByteLevel`:
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`.
    Split { max_digits: usize },
}

/// The `Split` patterns known, with their digit runs.
const SPLIT_PATTERNS: [(&str, usize); 2] = [
    (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        3,
    ),
    (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        1,
    ),
];

impl Iterator for Words<'_> {
    type Item = Span;

    fn next(&mut self) -> Option<Span> {
        let s = self.s;
        let start = self.at;
        let (c, len) = char_at(s, start)?;
        let end = match self.pattern {
            Pattern::Gpt2 => Self::word_end(s, start, c, len),
            Pattern::Split { max_digits } => Self::split_word_end(s, start, c, len, max_digits),
        };
        self.at = end;
        Some((start, end))
    }
}

/// The end of the run of characters of `class` from byte `at`.
#[inline]
fn run_end(s: &str, mut at: usize, class: Class) -> usize {
    while let Some((next, next_len)) = char_at(s, at) {
        if classify(next) != class {
            break;
        }
        at += next_len;
    }
    at
}

impl Words<'_> {
    /// One word of the `Split` pattern, its alternatives tried in order (Oniguruma's leftmost
    /// first); every character starts some match, so the words tile `s`.
    fn split_word_end(s: &str, start: usize, c: char, len: usize, max_digits: usize) -> usize {
        let bytes = s.as_bytes();
        // `(?i:'s|'t|'re|'ve|'m|'ll|'d)`
        if c == '\'' {
            if let Some(contraction) = contraction_len_folded(&s[start + 1..]) {
                return start + 1 + contraction;
            }
        }
        let class = classify(c);
        // `[^\r\n\p{L}\p{N}]?\p{L}+`
        if class == Class::Letter {
            return run_end(s, start + len, Class::Letter);
        }
        if class != Class::Number && c != '\r' && c != '\n' {
            if let Some((next, _)) = char_at(s, start + len) {
                if classify(next) == Class::Letter {
                    return run_end(s, start + len, Class::Letter);
                }
            }
        }
        // `\p{N}{1,3}`
        if class == Class::Number {
            let mut end = start + len;
            for _ in 1..max_digits {
                match char_at(s, end) {
                    Some((next, next_len)) if classify(next) == Class::Number => end += next_len,
                    _ => break,
                }
            }
            return end;
        }
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
        let symbols = if c == ' ' { start + 1 } else { start };
        if let Some((first, _)) = char_at(s, symbols) {
            if classify(first) == Class::Other {
                let mut end = run_end(s, symbols, Class::Other);
                while matches!(bytes.get(end), Some(b'\r' | b'\n')) {
                    end += 1;
                }
                return end;
            }
        }
        // `c` is whitespace. `\s*[\r\n]+`: the run up to its last line break, if it has one.
        let mut end = start;
        let mut last = start;
        let mut after_break = None;
        while let Some((next, next_len)) = char_at(s, end) {
            if classify(next) != Class::Space {
                break;
            }
            if next == '\r' || next == '\n' {
                after_break = Some(end + next_len);
            }
            last = end;
            end += next_len;
        }
        if let Some(after_break) = after_break {
            return after_break;
        }
        // `\s+(?!\S)|\s+`, as in GPT-2's pattern.
        if end == s.len() || last == start {
            end
        } else {
            last
        }
    }

    fn word_end(s: &str, start: usize, c: char, len: usize) -> usize {
        if c == '\'' {
            if let Some(contraction) = contraction_len(&s.as_bytes()[start + 1..]) {
                return start + 1 + contraction;
            }
        }
        // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: an optional U+0020, then a run of one class.
        let first = if c == ' ' {
            char_at(s, start + 1).map(|(next, next_len)| (start + 1, next, next_len))
        } else {
            Some((start, c, len))
        };
        if let Some((at, first, first_len)) = first {
            let class = classify(first);
            if class != Class::Space {
                let mut end = at + first_len;
                while let Some((next, next_len)) = char_at(s, end) {
                    if classify(next) != class {
                        break;
                    }
                    end += next_len;
                }
                return end;
            }
        }
        // `c` is whitespace. `\s+(?!\S)` takes the run up to the end of the text, or all of it but
        // its last character when a non-space follows; a one-character run falls to `\s+`.
        let mut end = start + len;
        let mut last = start;
        while let Some((next, next_len)) = char_at(s, end) {
            if classify(next) != Class::Space {
                break;
            }
            last = end;
            end += next_len;
        }
        if end == s.len() || last == start {
            end
        } else {
            last
        }
    }
}

/// The length after the apostrophe of `(?i:'s|'t|'re|'ve|'m|'ll|'d)` at the start of `rest`: ASCII
/// letters of either case, and U+017F (long s), which Unicode case folding makes an `s`.
#[inline]
fn contraction_len_folded(rest: &str) -> Option<usize> {
    let mut chars = rest.chars();
    let first = chars.next()?.to_ascii_lowercase();
    let second = chars.next().map(|c| c.to_ascii_lowercase());
    match (first, second) {
        ('s' | 't' | 'm' | 'd', _) => Some(1),
        ('\u{17F}', _) => Some(2),
        ('r', Some('e')) | ('v', Some('e')) | ('l', Some('l')) => Some(2),
        _ => None,
    }
}

/// The length after the apostrophe of `'s|'t|'re|'ve|'m|'ll|'d` at the start of `rest`.
#[inline]
fn contraction_len(rest: &[u8]) -> Option<usize> {
    match rest {
        [b's' | b't' | b'm' | b'd', ..] => Some(1),
        [b'r', b'e', ..] | [b'v', b'e', ..] | [b'l', b'l', ..] => Some(2),
        _ => None,
    }
}

/// The span in the original text of bytes `first..=last` of a piece that starts at `piece.0`
/// (`shift` bytes of added prefix space before it), widened to whole characters as the crate's
/// alignments (one per byte, that of its character) make it.
#[inline]
fn original_span(
    text: &[u8],
    piece: (usize, usize),
    shift: usize,
    first: usize,
    last: usize,
) -> Span {
    let (start, end) = piece;
    let mut from = start + first.saturating_sub(shift);
    while from > start && is_utf8_continuation(text[from]) {
        from -= 1;
    }
    let mut to = start + last.saturating_sub(shift) + 1;
    while to < end && is_utf8_continuation(text[to]) {
        to += 1;
    }
    (from, to)
}

/// GPT-2's printable stand-in for every byte (`bytes_to_unicode`), as the crate builds it.
fn byte_level_chars() -> [char; 256] {
    let mut chars = ['\0'; 256];
    let mut next = 256u32;
    for byte in 0..=255u8 {
        let printable = matches!(byte, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let code = if printable {
            u32::from(byte)
        } else {
            next += 1;
            next - 1
        };
        chars[usize::from(byte)] = char::from_u32(code).unwrap_or('\0');
    }
    chars
}

/// Added tokens of one of the crate's two passes.
#[derive(Debug, Clone)]
struct AddedTokens {
    /// Content, and id, or None when `encode_special_tokens` leaves this special token to the
    /// model: the crate still matches it (so it hides overlapping tokens) but keeps it as text.
    tokens: Vec<(Box<[u8]>, Option<u32>)>,
    /// Which bytes start a token, to skip quickly to the next candidate.
    first_bytes: [bool; 256],
}

impl Default for AddedTokens {
    fn default() -> Self {
        Self {
            tokens: Vec::new(),
            first_bytes: [false; 256],
        }
    }
}

impl AddedTokens {
    fn push(&mut self, content: &str, id: Option<u32>) -> Option<()> {
        let content = content.as_bytes();
        // The crate cannot build its matcher with duplicates.
        if self.tokens.iter().any(|(known, _)| **known == *content) {
            return None;
        }
        let first = *content.first()?;
        self.first_bytes[usize::from(first)] = true;
        self.tokens.push((content.into(), id));
        Some(())
    }

    /// The leftmost token in `bytes[from..end]`, the longest if several start there.
    fn next_match(
        &self,
        bytes: &[u8],
        from: usize,
        end: usize,
    ) -> Option<(usize, usize, Option<u32>)> {
        if self.tokens.is_empty() {
            return None;
        }
        let window = bytes.get(..end)?;
        let mut at = from;
        while at < window.len() {
            let offset = window[at..]
                .iter()
                .position(|&b| self.first_bytes[usize::from(b)])?;
            at += offset;
            let rest = &window[at..];
            let longest = self
                .tokens
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
}

/// Where tokens go: ids only (the hot path) or a full `Encoding`.
trait TokenSink {
    /// Whether offsets are wanted; when not, the encoder skips computing them.
    const WANTS_OFFSETS: bool;
    /// `span` is in bytes of the original text; `word` the index of the pre-tokenized split.
    fn push(&mut self, id: u32, span: Span, word: u32);
}

struct IdSink<'a>(&'a mut Vec<u32>);

impl TokenSink for IdSink<'_> {
    const WANTS_OFFSETS: bool = false;
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
    fn push(&mut self, id: u32, _span: Span, word: u32) {
        self.ids.push(id);
        self.words.push(word);
    }
}

/// Ids and byte spans, flat.
struct SpanSink<'a> {
    ids: &'a mut Vec<u32>,
    spans: &'a mut Vec<i64>,
}

impl TokenSink for SpanSink<'_> {
    const WANTS_OFFSETS: bool = true;
    #[inline]
    fn push(&mut self, id: u32, span: Span, _word: u32) {
        self.ids.push(id);
        self.spans.extend([span.0 as i64, span.1 as i64]);
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
    fn push(&mut self, id: u32, span: Span, word: u32) {
        self.ids.push(id);
        self.offsets.push(span);
        self.words.push(Some(word));
    }
}

/// A symbol of a word being merged: a doubly linked list over the word's bytes.
#[derive(Debug, Clone, Copy)]
struct Symbol<P> {
    id: u32,
    /// Bytes covered; 0 once merged into the symbol on its left.
    len: P,
    prev: P,
    next: P,
}

/// Words already encoded by one encoder on this thread.
#[derive(Default)]
struct WordCache {
    encoder: u64,
    words: FxHashMap<Box<[u8]>, Box<[Piece]>>,
}

/// Per-thread state: word caches and working buffers reused across calls.
#[derive(Default)]
struct ThreadState {
    caches: Vec<WordCache>,
    /// A piece with the space `add_prefix_space` puts in front of it.
    prefixed: String,
    symbols: Vec<Symbol<u32>>,
    queue: QuaternaryHeap<Reverse<(u32, u32)>>,
    pieces: Vec<Piece>,
}

impl ThreadState {
    /// This encoder's cache, made (evicting the oldest) if the thread has none for it yet.
    fn cache_index(&mut self, encoder: u64) -> usize {
        if let Some(index) = self.caches.iter().position(|c| c.encoder == encoder) {
            return index;
        }
        if self.caches.len() >= CACHES_PER_THREAD {
            self.caches.remove(0);
        }
        self.caches.push(WordCache {
            encoder,
            words: FxHashMap::default(),
        });
        self.caches.len() - 1
    }
}

thread_local! {
    static THREAD_STATE: RefCell<ThreadState> = RefCell::new(ThreadState::default());
}

/// A native encoder for GPT-2 style byte-level BPE pipelines; see the module docs.
#[derive(Clone)]
pub struct FastByteLevelBpe {
    add_prefix_space: bool,
    /// A `Digits` pre-tokenizer before `ByteLevel` (SmolLM2, StarCoder): numbers are cut out of
    /// every piece first, each digit alone (`Some(true)`, `individual_digits`) or in runs.
    digits: Option<bool>,
    /// The regex that cuts words: GPT-2's (ByteLevel's own) or a known `Split` before it.
    pattern: Pattern,
    ignore_merges: bool,
    /// The vocabulary id of every byte's character.
    byte_ids: [u32; 256],
    /// Bytes whose character is not in the vocabulary (SmolLM2 lacks some control characters and
    /// bytes that never occur in UTF-8), and the crate's model for the words that hold one: it
    /// skips such a character (or gives the unknown token / byte fallback where the model has
    /// them), merges across the gap and shifts the offsets after it, all reproduced by letting it
    /// encode those rare words.
    missing_bytes: [bool; 256],
    fallback: Option<Box<tokenizers::models::bpe::BPE>>,
    /// `(left << 32) | right` -> (rank, id of the merged token).
    merges: FxHashMap<u64, (u32, u32)>,
    /// The vocabulary keyed by the bytes its byte-level strings stand for (for `ignore_merges`).
    vocab: FxHashMap<Box<[u8]>, u32>,
    /// Added tokens matched in the raw text, then in what is left (`normalized: true`).
    added_raw: AddedTokens,
    added_normalized: AddedTokens,
    cache_id: u64,
}

impl std::fmt::Debug for FastByteLevelBpe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastByteLevelBpe")
            .field("add_prefix_space", &self.add_prefix_space)
            .field("digits", &self.digits)
            .field("ignore_merges", &self.ignore_merges)
            .field("vocab_size", &self.vocab.len())
            .field("merges", &self.merges.len())
            .field("added_raw", &self.added_raw.tokens.len())
            .field("added_normalized", &self.added_normalized.tokens.len())
            .finish_non_exhaustive()
    }
}

#[inline]
fn pair_key(left: u32, right: u32) -> u64 {
    (u64::from(left) << 32) | u64::from(right)
}

#[inline]
fn is_utf8_continuation(byte: u8) -> bool {
    byte & 0xC0 == 0x80
}

impl FastByteLevelBpe {
    /// Some(..) only when the tokenizer's pipeline is one this encoder reproduces exactly:
    /// no normalizer; pre_tokenizer = `ByteLevel` with `use_regex` (any `add_prefix_space` and
    /// `trim_offsets`: the latter only matters to the post-processor); model = `BPE` without
    /// dropout, with empty (or no) continuing-subword prefix and end-of-word suffix, and every
    /// byte's character in its vocabulary (so the unknown token and byte fallback never apply);
    /// added tokens neither single-word nor stripping — otherwise None.
    ///
    /// The post-processor, truncation and padding configured on `tokenizer` are not applied:
    /// they are the caller's concern, as for `Engine`, which removes them before encoding.
    pub fn from_tokenizer(tokenizer: &Tokenizer) -> Option<Self> {
        if tokenizer.get_normalizer().is_some() {
            return None;
        }
        // `ByteLevel`, or `Sequence[Digits, ByteLevel]` (read through its serialization: the
        // crate keeps a sequence's parts private).
        let (pre_tokenizer, digits, pattern) = match tokenizer.get_pre_tokenizer()? {
            PreTokenizerWrapper::ByteLevel(pre_tokenizer) => (*pre_tokenizer, None, Pattern::Gpt2),
            PreTokenizerWrapper::Sequence(sequence) => {
                let value = serde_json::to_value(sequence).ok()?;
                let parts = value.get("pretokenizers")?.as_array()?;
                let [first, second] = parts.as_slice() else {
                    return None;
                };
                let PreTokenizerWrapper::ByteLevel(pre_tokenizer) =
                    serde_json::from_value::<PreTokenizerWrapper>(second.clone()).ok()?
                else {
                    return None;
                };
                match first.get("type")?.as_str()? {
                    "Digits" => {
                        let individual = first.get("individual_digits")?.as_bool()?;
                        (pre_tokenizer, Some(individual), Pattern::Gpt2)
                    }
                    // A known regex, each match a word (`Isolated`), then bytes only: ByteLevel
                    // without its own regex. A prefix space would go before every word: refused.
                    "Split" => {
                        let regex = first.get("pattern")?.get("Regex")?.as_str()?;
                        let (_, max_digits) = SPLIT_PATTERNS.iter().find(|(p, _)| *p == regex)?;
                        let isolated = first.get("behavior")?.as_str()? == "Isolated";
                        let inverted = first.get("invert")?.as_bool()?;
                        if !isolated || inverted || pre_tokenizer.use_regex {
                            return None;
                        }
                        if pre_tokenizer.add_prefix_space {
                            return None;
                        }
                        let pattern = Pattern::Split {
                            max_digits: *max_digits,
                        };
                        (pre_tokenizer, None, pattern)
                    }
                    _ => return None,
                }
            }
            _ => return None,
        };
        if pattern == Pattern::Gpt2 && !pre_tokenizer.use_regex {
            return None;
        }
        let ModelWrapper::BPE(model) = tokenizer.get_model() else {
            return None;
        };
        let no_dropout = model.dropout.is_none_or(|p| p == 0.0);
        let no_affix = |affix: &Option<String>| affix.as_deref().is_none_or(str::is_empty);
        if !no_dropout
            || !no_affix(&model.continuing_subword_prefix)
            || !no_affix(&model.end_of_word_suffix)
        {
            return None;
        }

        let string_vocab = model.get_vocab();
        // Merges are checked by id: two strings sharing an id would make that ambiguous.
        let mut ids: Vec<u32> = string_vocab.values().copied().collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != string_vocab.len() {
            return None;
        }

        let chars = byte_level_chars();
        let mut byte_of_char: FxHashMap<char, u8> = FxHashMap::default();
        let mut byte_ids = [0u32; 256];
        let mut missing_bytes = [false; 256];
        for (byte, &c) in chars.iter().enumerate() {
            byte_of_char.insert(c, byte as u8);
            match string_vocab.get(c.to_string().as_str()) {
                Some(&id) => byte_ids[byte] = id,
                None => missing_bytes[byte] = true,
            }
        }
        let fallback = missing_bytes
            .contains(&true)
            .then(|| Box::new(model.clone()));
        let mut vocab = FxHashMap::default();
        for (token, &id) in &string_vocab {
            // Entries with other characters can never equal a byte-level word.
            let bytes: Option<Vec<u8>> = token
                .chars()
                .map(|c| byte_of_char.get(&c).copied())
                .collect();
            if let Some(bytes) = bytes {
                vocab.insert(bytes.into_boxed_slice(), id);
            }
        }

        // The crate keeps its merges private; its serialization lists them by rank.
        let serialized = serde_json::to_value(model).ok()?;
        let mut merges = FxHashMap::default();
        for (rank, merge) in serialized.get("merges")?.as_array()?.iter().enumerate() {
            let (left, right) = match merge {
                serde_json::Value::Array(pair) => match pair.as_slice() {
                    [left, right] => (left.as_str()?.to_owned(), right.as_str()?.to_owned()),
                    _ => return None,
                },
                serde_json::Value::String(pair) => {
                    let (left, right) = pair.split_once(' ')?;
                    (left.to_owned(), right.to_owned())
                }
                _ => return None,
            };
            let merged = *string_vocab.get(&format!("{left}{right}"))?;
            let key = pair_key(*string_vocab.get(&left)?, *string_vocab.get(&right)?);
            let rank = u32::try_from(rank).ok().filter(|&rank| rank != NO_MERGE)?;
            merges.insert(key, (rank, merged));
        }

        let encode_special_tokens = tokenizer.get_encode_special_tokens();
        let mut added: Vec<(u32, tokenizers::AddedToken)> =
            tokenizer.get_added_tokens_decoder().into_iter().collect();
        added.sort_unstable_by_key(|(id, _)| *id);
        let mut added_raw = AddedTokens::default();
        let mut added_normalized = AddedTokens::default();
        for (id, token) in added {
            if token.single_word || token.lstrip || token.rstrip {
                return None;
            }
            // The crate skips empty contents.
            if token.content.is_empty() {
                continue;
            }
            let id = (!(encode_special_tokens && token.special)).then_some(id);
            // With no normalizer, a normalized token is matched as written, but in a second pass.
            let set = if token.normalized {
                &mut added_normalized
            } else {
                &mut added_raw
            };
            set.push(&token.content, id)?;
        }

        Some(Self {
            add_prefix_space: pre_tokenizer.add_prefix_space,
            digits,
            pattern,
            ignore_merges: model.ignore_merges,
            byte_ids,
            missing_bytes,
            fallback,
            merges,
            vocab,
            added_raw,
            added_normalized,
            cache_id: NEXT_ENCODER_ID.fetch_add(1, Ordering::Relaxed),
        })
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
                // Every span starts and ends on a character boundary.
                let mut char_index = vec![0usize; text.len() + 1];
                let mut chars = 0;
                for (byte, slot) in char_index.iter_mut().enumerate() {
                    *slot = chars;
                    if text.is_char_boundary(byte + 1) {
                        chars += 1;
                    }
                }
                let char_count = text.chars().count();
                let convert = |byte: usize| {
                    if byte >= text.len() {
                        char_count
                    } else {
                        char_index[byte]
                    }
                };
                for span in &mut offsets {
                    *span = (convert(span.0), convert(span.1));
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

    /// The ids and their byte spans in `text`, appended to `ids` / `spans` (two values per
    /// token): what `encode` gives as offsets, in bytes, without building an `Encoding`.
    pub fn encode_spans_into(&self, text: &str, ids: &mut Vec<u32>, spans: &mut Vec<i64>) {
        self.encode_into(text, &mut SpanSink { ids, spans });
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
        let done = THREAD_STATE
            .try_with(|state| match state.try_borrow_mut() {
                Ok(mut state) => {
                    self.encode_with_state(text, sink, &mut state);
                    true
                }
                Err(_) => false,
            })
            .unwrap_or(false);
        if !done {
            // The thread is shutting down: no cache, same result.
            self.encode_with_state(text, sink, &mut ThreadState::default());
        }
    }

    fn encode_with_state<S: TokenSink>(&self, text: &str, sink: &mut S, state: &mut ThreadState) {
        let bytes = text.as_bytes();
        // The index of the next split, wrapping as the crate's `idx as u32` does.
        let mut word = 0u32;
        let mut piece_start = 0;
        let mut from = 0;
        while let Some((start, end, id)) = self.added_raw.next_match(bytes, from, bytes.len()) {
            // A skipped special token stays in the piece, but no match may overlap it.
            if let Some(id) = id {
                self.encode_second_pass(text, piece_start, start, sink, state, &mut word);
                sink.push(id, (start, end), word);
                word = word.wrapping_add(1);
                piece_start = end;
            }
            from = end;
        }
        self.encode_second_pass(text, piece_start, bytes.len(), sink, state, &mut word);
    }

    /// Cuts the normalized added tokens out of `text[start..end]` and encodes the pieces left.
    fn encode_second_pass<S: TokenSink>(
        &self,
        text: &str,
        start: usize,
        end: usize,
        sink: &mut S,
        state: &mut ThreadState,
        word: &mut u32,
    ) {
        let bytes = text.as_bytes();
        let mut piece_start = start;
        let mut from = start;
        while let Some((match_start, match_end, id)) =
            self.added_normalized.next_match(bytes, from, end)
        {
            if let Some(id) = id {
                self.encode_split(text, piece_start, match_start, sink, state, word);
                sink.push(id, (match_start, match_end), *word);
                *word = word.wrapping_add(1);
                piece_start = match_end;
            }
            from = match_end;
        }
        self.encode_split(text, piece_start, end, sink, state, word);
    }

    /// `text[start..end]` through the `Digits` pre-tokenizer, when there is one (numbers cut out
    /// of it as the crate's `split(char::is_numeric, Isolated / Contiguous)` cuts them), then
    /// each part through [`Self::encode_piece`].
    fn encode_split<S: TokenSink>(
        &self,
        text: &str,
        start: usize,
        end: usize,
        sink: &mut S,
        state: &mut ThreadState,
        word: &mut u32,
    ) {
        let Some(individual) = self.digits else {
            self.encode_piece(text, start, end, sink, state, word);
            return;
        };
        let Some(piece) = text.get(start..end) else {
            return;
        };
        let mut part_start = start;
        let mut in_number = false;
        for (offset, c) in piece.char_indices() {
            let at = start + offset;
            let numeric = c.is_numeric();
            // A part ends before a number starts, after a number ends, and between two digits
            // when each is its own part.
            if at > part_start && (numeric != in_number || (numeric && individual)) {
                self.encode_piece(text, part_start, at, sink, state, word);
                part_start = at;
            }
            in_number = numeric;
        }
        self.encode_piece(text, part_start, end, sink, state, word);
    }

    /// Pre-tokenizes and encodes `text[start..end]`, a piece with no added token in it.
    fn encode_piece<S: TokenSink>(
        &self,
        text: &str,
        start: usize,
        end: usize,
        sink: &mut S,
        state: &mut ThreadState,
        word: &mut u32,
    ) {
        let Some(piece) = text.get(start..end) else {
            return;
        };
        if piece.is_empty() {
            return;
        }
        let mut prefixed = std::mem::take(&mut state.prefixed);
        // `shift` bytes precede the piece in `s`: the prefix space, aligned with the first char.
        let (s, shift) = if self.add_prefix_space && !piece.starts_with(' ') {
            prefixed.clear();
            prefixed.push(' ');
            prefixed.push_str(piece);
            (prefixed.as_str(), 1)
        } else {
            (piece, 0)
        };
        let cache_index = state.cache_index(self.cache_id);
        let text_bytes = text.as_bytes();
        let words = Words {
            s,
            at: 0,
            pattern: self.pattern,
        };
        for (word_start, word_end) in words {
            let word_bytes = &s.as_bytes()[word_start..word_end];
            if let Some(model) = &self.fallback {
                if word_bytes
                    .iter()
                    .any(|&b| self.missing_bytes[usize::from(b)])
                {
                    self.encode_with_crate(model, word_bytes, |id, (q0, q1)| {
                        let span = if S::WANTS_OFFSETS {
                            original_span(
                                text_bytes,
                                (start, end),
                                shift,
                                word_start + q0,
                                word_start + q1,
                            )
                        } else {
                            (0, 0)
                        };
                        sink.push(id, span, *word);
                    });
                    *word = word.wrapping_add(1);
                    continue;
                }
            }
            let mut push = |pieces: &[Piece]| {
                let mut at = word_start;
                for &(id, len) in pieces {
                    let span = if S::WANTS_OFFSETS {
                        let piece_end = at + len as usize;
                        let span =
                            original_span(text_bytes, (start, end), shift, at, piece_end - 1);
                        at = piece_end;
                        span
                    } else {
                        (0, 0)
                    };
                    sink.push(id, span, *word);
                }
            };
            if self.ignore_merges {
                if let Some(&id) = self.vocab.get(word_bytes) {
                    push(&[(id, word_bytes.len() as u32)]);
                    *word = word.wrapping_add(1);
                    continue;
                }
            }
            let cache = &mut state.caches[cache_index];
            if let Some(pieces) = cache.words.get(word_bytes) {
                push(pieces);
            } else {
                let mut pieces = std::mem::take(&mut state.pieces);
                self.merge_word(word_bytes, &mut pieces, state);
                push(&pieces);
                let cache = &mut state.caches[cache_index];
                if word_bytes.len() < MAX_CACHED_WORD {
                    if cache.words.len() >= CACHE_CAPACITY {
                        let mut keep = false;
                        cache.words.retain(|_, _| {
                            keep = !keep;
                            keep
                        });
                    }
                    cache
                        .words
                        .insert(word_bytes.into(), pieces.as_slice().into());
                }
                state.pieces = pieces;
            }
            *word = word.wrapping_add(1);
        }
        state.prefixed = prefixed;
    }

    /// A word holding a byte with no token, encoded by the crate's model as the crate does it:
    /// `emit(id, (first, last))` per token, `first..=last` the word's bytes its offsets point at
    /// (the crate counts offsets over the characters it kept, so they shift after a skipped one).
    fn encode_with_crate(
        &self,
        model: &tokenizers::models::bpe::BPE,
        word: &[u8],
        mut emit: impl FnMut(u32, (usize, usize)),
    ) {
        use tokenizers::Model;
        let chars = byte_level_chars();
        let level: String = word.iter().map(|&b| chars[usize::from(b)]).collect();
        // Which byte of the word each byte of the byte-level string stands for.
        let owner: Vec<usize> = word
            .iter()
            .enumerate()
            .flat_map(|(q, &b)| std::iter::repeat_n(q, chars[usize::from(b)].len_utf8()))
            .collect();
        let Ok(tokens) = model.tokenize(&level) else {
            return;
        };
        for token in tokens {
            let (x0, x1) = token.offsets;
            let q0 = owner
                .get(x0)
                .copied()
                .unwrap_or(word.len().saturating_sub(1));
            let q1 = owner
                .get(x1.saturating_sub(1).max(x0))
                .copied()
                .unwrap_or(q0);
            emit(token.id, (q0, q1));
        }
    }

    /// BPE on the bytes of one word, into `out`: the crate's `Word::merge_all` (a queue of
    /// adjacent pairs by rank then position over a linked list, so long words stay n log n).
    fn merge_word(&self, word: &[u8], out: &mut Vec<Piece>, state: &mut ThreadState) {
        if word.len() <= SHORT_WORD {
            self.merge_short_word(word, out);
            return;
        }
        // Compact positions keep the queue and the list in cache; a word of 4 GiB or more (never
        // seen, but a &str may hold one) takes the same algorithm with full-width positions.
        if u32::try_from(word.len()).is_ok_and(|n| n < u32::MAX) {
            self.merge_word_with(word, out, &mut state.symbols, &mut state.queue);
        } else {
            self.merge_word_with::<usize>(word, out, &mut Vec::new(), &mut QuaternaryHeap::new());
        }
    }

    /// The same merges for a short word, without the queue: the pairs' ranks in an array,
    /// scanned for the lowest (the leftmost of equal ones, as the queue orders them), and only
    /// the two pairs around a merge looked up again.
    fn merge_short_word(&self, word: &[u8], out: &mut Vec<Piece>) {
        out.clear();
        out.extend(
            word.iter()
                .map(|&byte| (self.byte_ids[usize::from(byte)], 1)),
        );
        let pair = |left: u32, right: u32| {
            self.merges
                .get(&pair_key(left, right))
                .copied()
                .unwrap_or((NO_MERGE, 0))
        };
        // (rank, merged id) of out[i] and out[i + 1].
        let mut pairs = [(NO_MERGE, 0u32); SHORT_WORD];
        for (slot, window) in pairs.iter_mut().zip(out.windows(2)) {
            *slot = pair(window[0].0, window[1].0);
        }
        loop {
            let live = out.len().saturating_sub(1);
            let mut best = 0;
            let mut best_rank = NO_MERGE;
            for (i, &(rank, _)) in pairs[..live].iter().enumerate() {
                if rank < best_rank {
                    best = i;
                    best_rank = rank;
                }
            }
            if best_rank == NO_MERGE {
                break;
            }
            let merged = pairs[best].1;
            out[best] = (merged, out[best].1 + out[best + 1].1);
            out.remove(best + 1);
            pairs.copy_within(best + 1..live, best);
            if best + 1 < out.len() {
                pairs[best] = pair(merged, out[best + 1].0);
            }
            if best > 0 {
                pairs[best - 1] = pair(out[best - 1].0, merged);
            }
        }
    }

    fn merge_word_with<P: Position>(
        &self,
        word: &[u8],
        out: &mut Vec<Piece>,
        symbols: &mut Vec<Symbol<P>>,
        queue: &mut QuaternaryHeap<Reverse<(u32, P)>>,
    ) {
        out.clear();
        symbols.clear();
        let n = word.len();
        symbols.extend(word.iter().enumerate().map(|(i, &byte)| Symbol {
            id: self.byte_ids[usize::from(byte)],
            len: P::from_usize(1),
            prev: if i == 0 {
                P::NONE
            } else {
                P::from_usize(i - 1)
            },
            next: if i + 1 < n {
                P::from_usize(i + 1)
            } else {
                P::NONE
            },
        }));
        // Heapify the initial pairs at once, reusing the queue's buffer.
        let mut initial = std::mem::take(queue).into_vec();
        initial.clear();
        initial.extend(symbols.windows(2).enumerate().filter_map(|(pos, pair)| {
            let &(rank, _) = self.merges.get(&pair_key(pair[0].id, pair[1].id))?;
            Some(Reverse((rank, P::from_usize(pos))))
        }));
        *queue = QuaternaryHeap::from(initial);

        while let Some(Reverse((rank, pos))) = queue.pop() {
            let left = symbols[pos.index()];
            if left.len == P::ZERO || left.next == P::NONE {
                continue;
            }
            let right = symbols[left.next.index()];
            // Stale entry: one of the two symbols has grown since it was queued.
            let Some(&(current_rank, merged)) = self.merges.get(&pair_key(left.id, right.id))
            else {
                continue;
            };
            if current_rank != rank {
                continue;
            }
            let merged_symbol = &mut symbols[pos.index()];
            merged_symbol.id = merged;
            merged_symbol.len = P::from_usize(left.len.index() + right.len.index());
            merged_symbol.next = right.next;
            symbols[left.next.index()].len = P::ZERO;
            if right.next != P::NONE {
                let after = &mut symbols[right.next.index()];
                after.prev = pos;
                if let Some(&(rank, _)) = self.merges.get(&pair_key(merged, after.id)) {
                    queue.push(Reverse((rank, pos)));
                }
            }
            if left.prev != P::NONE {
                let before = symbols[left.prev.index()];
                if let Some(&(rank, _)) = self.merges.get(&pair_key(before.id, merged)) {
                    queue.push(Reverse((rank, left.prev)));
                }
            }
        }
        out.extend(
            symbols
                .iter()
                .filter(|symbol| symbol.len != P::ZERO)
                .map(|symbol| (symbol.id, symbol.len.index() as u32)),
        );
    }
}

/// A symbol's position in its word: `u32` for any word under 4 GiB, `usize` beyond.
trait Position: Copy + Eq + Ord {
    const NONE: Self;
    const ZERO: Self;
    /// Only called with values that fit (the caller picks the type by the word's length).
    fn from_usize(value: usize) -> Self;
    fn index(self) -> usize;
}

impl Position for u32 {
    const NONE: Self = u32::MAX;
    const ZERO: Self = 0;
    #[inline]
    fn from_usize(value: usize) -> Self {
        value as u32
    }
    #[inline]
    fn index(self) -> usize {
        self as usize
    }
}

impl Position for usize {
    const NONE: Self = usize::MAX;
    const ZERO: Self = 0;
    #[inline]
    fn from_usize(value: usize) -> Self {
        value
    }
    #[inline]
    fn index(self) -> usize {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::{classify, Class, Pattern, Words, SPLIT_PATTERNS};
    use proptest::prelude::*;
    use proptest::test_runner::FileFailurePersistence;
    use tokenizers::utils::SysRegex;

    /// The crate's GPT-2 pattern (`pre_tokenizers/byte_level.rs`).
    const GPT2_PATTERN: &str =
        r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    fn matches(regex: &SysRegex, c: char) -> bool {
        let s = c.to_string();
        regex.find_iter(&s).next() == Some((0, s.len()))
    }

    fn all_chars() -> impl Iterator<Item = char> {
        (0..=0x10FFFFu32).filter_map(char::from_u32)
    }

    #[test]
    fn classes_match_the_regex() {
        let letter = SysRegex::new(r"\p{L}").unwrap();
        let number = SysRegex::new(r"\p{N}").unwrap();
        let space = SysRegex::new(r"\s").unwrap();
        for c in all_chars() {
            let expected = match (matches(&letter, c), matches(&number, c), matches(&space, c)) {
                (true, false, false) => Class::Letter,
                (false, true, false) => Class::Number,
                (false, false, true) => Class::Space,
                (false, false, false) => Class::Other,
                classes => panic!("{c:?} is in several classes: {classes:?}"),
            };
            assert_eq!(classify(c), expected, "{c:?} (U+{:04X})", c as u32);
        }
    }

    fn check_words(text: &str) -> Result<(), String> {
        thread_local! {
            static REGEX: SysRegex = SysRegex::new(GPT2_PATTERN).unwrap();
        }
        let expected: Vec<(usize, usize)> = REGEX.with(|re| re.find_iter(text).collect());
        let got: Vec<(usize, usize)> = Words {
            s: text,
            at: 0,
            pattern: Pattern::Gpt2,
        }
        .collect();
        if got == expected {
            Ok(())
        } else {
            Err(format!("{text:?}\n fast:  {got:?}\n regex: {expected:?}"))
        }
    }

    #[test]
    fn words_match_the_regex_on_hand_picked_texts() {
        for text in [
            "",
            " ",
            "a",
            " a",
            "  a",
            "a  ",
            "a \n b",
            " \n\n x",
            "\t x",
            "'s 'S ''s 'll'd 're",
            "x'sy ' ",
            "   ",
            "a1 1a ½² ١٢",
            "!! ?? \u{a0}\u{a0}x \u{3000}y",
        ] {
            check_words(text).unwrap();
        }
    }

    const PALETTE: &[&str] = &[
        "a", "Z", "é", "中", "1", "١", "½", " ", "  ", "\t", "\n", "\r", "\u{a0}", "\u{85}",
        "\u{2000}", "\u{2028}", "\u{3000}", "\u{200B}", "'", "s", "t", "re", "ve", "m", "ll", "d",
        "S", "!", "?", "😀", "\u{301}", "\0", "\u{7f}", "\r\n", "RE", "ſ", "(", "123", "1234",
    ];

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 5000,
            failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
            ..ProptestConfig::default()
        })]

        #[test]
        fn words_match_the_regex_on_palette_strings(
            parts in prop::collection::vec(prop::sample::select(PALETTE), 0..30)
        ) {
            if let Err(message) = check_words(&parts.concat()) {
                prop_assert!(false, "{}", message);
            }
        }

        #[test]
        fn words_match_the_regex_on_arbitrary_strings(text in any::<String>()) {
            if let Err(message) = check_words(&text) {
                prop_assert!(false, "{}", message);
            }
        }

        #[test]
        fn split_words_match_the_regex_on_palette_strings(
            parts in prop::collection::vec(prop::sample::select(PALETTE), 0..30)
        ) {
            if let Err(message) = check_split_words(&parts.concat()) {
                prop_assert!(false, "{}", message);
            }
        }

        #[test]
        fn split_words_match_the_regex_on_arbitrary_strings(text in any::<String>()) {
            if let Err(message) = check_split_words(&text) {
                prop_assert!(false, "{}", message);
            }
        }
    }
    fn check_split_words(text: &str) -> Result<(), String> {
        thread_local! {
            static REGEXES: Vec<(SysRegex, usize)> = SPLIT_PATTERNS
                .iter()
                .map(|(pattern, digits)| (SysRegex::new(pattern).unwrap(), *digits))
                .collect();
        }
        REGEXES.with(|regexes| {
            for (regex, max_digits) in regexes {
                let expected: Vec<(usize, usize)> = regex.find_iter(text).collect();
                let got: Vec<(usize, usize)> = Words {
                    s: text,
                    at: 0,
                    pattern: Pattern::Split {
                        max_digits: *max_digits,
                    },
                }
                .collect();
                if got != expected {
                    return Err(format!(
                        "{text:?} (digits {max_digits})\n fast:  {got:?}\n regex: {expected:?}"
                    ));
                }
            }
            Ok(())
        })
    }

    #[test]
    fn split_words_match_the_regex_on_hand_picked_texts() {
        for text in [
            "",
            " ",
            "a",
            " a",
            "  a",
            "a  ",
            "a \n b",
            " \n\n x",
            "\t x",
            "\r\n\r\nx",
            " \n \n  ",
            "'s 'S ''s 'll'd 're 'RE 'Ll 'ſ 'ſt x'Ve",
            "x'sy ' ",
            "   ",
            "a1 1a 12345 ½² ١٢٣٤",
            "!! ?? \u{a0}\u{a0}x \u{3000}y",
            "(hello) [x]\n\n...\r\n",
            " .\n\nword",
            "\u{85}x \u{2028}\n",
        ] {
            check_split_words(text).unwrap();
        }
    }

    #[test]
    fn split_contractions_fold_as_the_regex_does() {
        // Every character after an apostrophe, alone and before 'e' / 'l'.
        for c in (0..=0x2FFFFu32).filter_map(char::from_u32) {
            check_split_words(&format!("'{c}")).unwrap();
            check_split_words(&format!("'{c}e'{c}l")).unwrap();
        }
    }

    /// Prints the class tables from the crate's own regex engine.
    #[test]
    #[ignore]
    fn print_tables() {
        for (name, pattern) in [("LETTER", r"\p{L}"), ("NUMBER", r"\p{N}"), ("SPACE", r"\s")] {
            let regex = SysRegex::new(pattern).unwrap();
            let mut ranges: Vec<(u32, u32)> = Vec::new();
            for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
                if matches(&regex, c) {
                    let c = c as u32;
                    match ranges.last_mut() {
                        Some(last) if last.1 + 1 == c => last.1 = c,
                        _ => ranges.push((c, c)),
                    }
                }
            }
            println!("pub(super) const {name}: &[(u32, u32)] = &[");
            for chunk in ranges.chunks(4) {
                let parts: Vec<String> = chunk
                    .iter()
                    .map(|(a, b)| format!("(0x{a:X}, 0x{b:X})"))
                    .collect();
                println!("    {},", parts.join(", "));
            }
            println!("];");
        }
    }
}
