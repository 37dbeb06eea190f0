//! The direct path: ids from a native encoder, truncation and special tokens applied on plain id
//! vectors, for the calls that need neither offsets nor overflow windows (most training batches).
//!
//! The general path builds a `tokenizers::Encoding` per sequence and lets the crate's
//! `post_process` clone and merge them (dozens of allocations per example, more than the
//! tokenization of a short sentence costs). Here the same rules are applied to `Vec<u32>`s:
//! `truncate_encodings` of tokenizers 0.23 and the template of the post-processor.

use serde_json::Value;
use tokenizers::utils::truncation::TruncationError;
use tokenizers::Tokenizer;

use crate::buffers::Side;
use crate::error::{FerrotuneError, Result};
use crate::truncation::{Truncation, TruncationStrategy};

/// One piece of a post-processing template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// The first (`second == false`) or second sequence, with the type id the template gives it.
    Sequence { second: bool, type_id: u32 },
    /// Special token ids, added only with `add_special_tokens`.
    Special { ids: Vec<u32>, type_id: u32 },
}

/// The post-processor as templates on ids (TemplateProcessing, or BertProcessing written as one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    single: Vec<Piece>,
    pair: Vec<Piece>,
}

fn parse_pieces(pieces: &Value, special_tokens: &Value) -> Option<Vec<Piece>> {
    pieces
        .as_array()?
        .iter()
        .map(|piece| {
            if let Some(sequence) = piece.get("Sequence") {
                let second = match sequence.get("id")?.as_str()? {
                    "A" => false,
                    "B" => true,
                    _ => return None,
                };
                let type_id = u32::try_from(sequence.get("type_id")?.as_u64()?).ok()?;
                Some(Piece::Sequence { second, type_id })
            } else {
                let special = piece.get("SpecialToken")?;
                let name = special.get("id")?.as_str()?;
                let ids = special_tokens
                    .get(name)?
                    .get("ids")?
                    .as_array()?
                    .iter()
                    .map(|id| id.as_u64().and_then(|id| u32::try_from(id).ok()))
                    .collect::<Option<Vec<u32>>>()?;
                let type_id = u32::try_from(special.get("type_id")?.as_u64()?).ok()?;
                Some(Piece::Special { ids, type_id })
            }
        })
        .collect()
}

impl Template {
    /// The template of the tokenizer's post-processor, when it is one this path reproduces.
    pub fn from_tokenizer(tokenizer: &Tokenizer) -> Option<Self> {
        let value = serde_json::to_value(tokenizer.get_post_processor()?).ok()?;
        match value.get("type")?.as_str()? {
            "TemplateProcessing" => {
                let specials = value.get("special_tokens")?;
                let template = Template {
                    single: parse_pieces(value.get("single")?, specials)?,
                    pair: parse_pieces(value.get("pair")?, specials)?,
                };
                // Each sequence exactly once: anything else is not what `encode` would do here.
                let count = |pieces: &[Piece], second: bool| {
                    pieces
                        .iter()
                        .filter(|p| matches!(p, Piece::Sequence { second: s, .. } if *s == second))
                        .count()
                };
                let valid = count(&template.single, false) == 1
                    && count(&template.single, true) == 0
                    && count(&template.pair, false) == 1
                    && count(&template.pair, true) == 1;
                valid.then_some(template)
            }
            "BertProcessing" => {
                let id = |key: &str| {
                    value
                        .get(key)?
                        .get(1)?
                        .as_u64()
                        .and_then(|id| u32::try_from(id).ok())
                };
                let (cls, sep) = (id("cls")?, id("sep")?);
                let special = |id: u32, type_id: u32| Piece::Special {
                    ids: vec![id],
                    type_id,
                };
                let sequence = |second: bool, type_id: u32| Piece::Sequence { second, type_id };
                Some(Template {
                    single: vec![special(cls, 0), sequence(false, 0), special(sep, 0)],
                    pair: vec![
                        special(cls, 0),
                        sequence(false, 0),
                        special(sep, 0),
                        sequence(true, 1),
                        special(sep, 1),
                    ],
                })
            }
            // ByteLevel adds nothing; like every post-processor it gives the second sequence type
            // id 1 (its offset trimming does not concern the direct path, which has no offsets).
            "ByteLevel" => Some(Template {
                single: vec![Piece::Sequence {
                    second: false,
                    type_id: 0,
                }],
                pair: vec![
                    Piece::Sequence {
                        second: false,
                        type_id: 0,
                    },
                    Piece::Sequence {
                        second: true,
                        type_id: 1,
                    },
                ],
            }),
            _ => None,
        }
    }

    fn pieces(&self, is_pair: bool) -> &[Piece] {
        if is_pair {
            &self.pair
        } else {
            &self.single
        }
    }

    /// Number of special token ids the template adds.
    pub fn added_tokens(&self, is_pair: bool) -> usize {
        self.pieces(is_pair)
            .iter()
            .map(|piece| match piece {
                Piece::Special { ids, .. } => ids.len(),
                Piece::Sequence { .. } => 0,
            })
            .sum()
    }
}

/// One encoded example, ready to be padded into the batch buffers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectRow {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    pub special_tokens_mask: Vec<u32>,
    pub attention_mask: Vec<u32>,
    /// With word ids given to [`build_row`]: the word of each token (None for special tokens).
    pub word_ids: Vec<Option<u32>>,
    /// With word ids given to [`build_row`]: the sequence of each token (None for special tokens).
    pub sequence_ids: Vec<Option<usize>>,
    /// The number of sequences (1, or 2 for a pair): each has a range in the `Encoding`, empty or not.
    pub sequences: usize,
}

/// The word ids of the sequences of an example, laid out as their ids (before truncation).
pub struct Words {
    pub first: Vec<u32>,
    pub second: Option<Vec<u32>>,
}

/// Cuts `words` as truncation cut the ids they belong to down to `kept` tokens.
fn cut_words(words: &mut Vec<u32>, kept: usize, side: Side) {
    let cut = words.len().saturating_sub(kept);
    match side {
        Side::Right => words.truncate(kept),
        Side::Left => {
            words.drain(..cut);
        }
    }
}

/// `Encoding::truncate` of tokenizers 0.23 on ids, without the overflow windows nobody asked for
/// (but with the crate's refusal of a stride that leaves no room).
fn cut(ids: &mut Vec<u32>, max_len: usize, stride: usize, side: Side) -> Result<()> {
    let len = ids.len();
    if max_len >= len {
        return Ok(());
    }
    if max_len > 0 && stride >= max_len {
        return Err(FerrotuneError::InvalidArgument(format!(
            "stride={stride} is too large: after truncation a sequence has fewer tokens left than the stride \
             (`stride` must be strictly less than `max_len={max_len}`; max_len subtracts the special tokens)"
        )));
    }
    match side {
        Side::Right => ids.truncate(max_len),
        Side::Left => {
            ids.drain(..len - max_len);
        }
    }
    Ok(())
}

fn truncation_error(err: TruncationError) -> FerrotuneError {
    // Worded as the crate words it, so both paths report the same message.
    FerrotuneError::Tokenization(format!("{err}"))
}

/// `truncate_encodings` of tokenizers 0.23: `max_length` already has the special tokens taken off.
fn truncate(
    first: &mut Vec<u32>,
    mut second: Option<&mut Vec<u32>>,
    max_length: usize,
    truncation: &Truncation,
) -> Result<()> {
    let (stride, side) = (truncation.stride, truncation.side);
    if max_length == 0 {
        first.clear();
        if let Some(second) = second {
            second.clear();
        }
        return Ok(());
    }
    let total = first.len() + second.as_ref().map_or(0, |s| s.len());
    if total <= max_length {
        return Ok(());
    }
    let to_remove = total - max_length;
    match truncation.strategy {
        TruncationStrategy::LongestFirst => match second {
            Some(second) => {
                let (mut n1, mut n2) = (first.len(), second.len());
                let swap = n1 > n2;
                if swap {
                    std::mem::swap(&mut n1, &mut n2);
                }
                n2 = if n1 > max_length {
                    n1
                } else {
                    n1.max(max_length - n1)
                };
                if n1 + n2 > max_length {
                    n1 = max_length / 2;
                    n2 = n1 + max_length % 2;
                }
                if swap {
                    std::mem::swap(&mut n1, &mut n2);
                }
                cut(first, n1, stride, side)?;
                cut(second, n2, stride, side)
            }
            None => cut(first, max_length, stride, side),
        },
        TruncationStrategy::OnlyFirst | TruncationStrategy::OnlySecond => {
            let target = if truncation.strategy == TruncationStrategy::OnlyFirst {
                first
            } else {
                second
                    .take()
                    .ok_or_else(|| truncation_error(TruncationError::SecondSequenceNotProvided))?
            };
            if target.len() > to_remove {
                let keep = target.len() - to_remove;
                cut(target, keep, stride, side)
            } else {
                Err(truncation_error(TruncationError::SequenceTooShort))
            }
        }
    }
}

/// Truncates the ids of one example and lays them out as the template says.
pub fn build_row(
    template: &Template,
    mut first: Vec<u32>,
    mut second: Option<Vec<u32>>,
    truncation: Option<&Truncation>,
    add_special_tokens: bool,
    mut words: Option<Words>,
) -> Result<DirectRow> {
    let is_pair = second.is_some();
    if let Some(truncation) = truncation {
        let added = if add_special_tokens {
            template.added_tokens(is_pair)
        } else {
            0
        };
        let max_length = truncation.max_length.saturating_sub(added);
        truncate(&mut first, second.as_mut(), max_length, truncation)?;
        if let Some(words) = &mut words {
            cut_words(&mut words.first, first.len(), truncation.side);
            if let (Some(kept), Some(second_words)) = (&second, &mut words.second) {
                cut_words(second_words, kept.len(), truncation.side);
            }
        }
    }
    let mut row = DirectRow {
        sequences: if is_pair { 2 } else { 1 },
        ..DirectRow::default()
    };
    let capacity = first.len() + second.as_ref().map_or(0, Vec::len) + 4;
    row.ids.reserve(capacity);
    row.type_ids.reserve(capacity);
    row.special_tokens_mask.reserve(capacity);
    for piece in template.pieces(is_pair) {
        match piece {
            Piece::Sequence {
                second: false,
                type_id,
            } => {
                row.ids.extend_from_slice(&first);
                row.type_ids.resize(row.ids.len(), *type_id);
                if let Some(words) = &words {
                    row.word_ids.extend(words.first.iter().map(|&w| Some(w)));
                    row.sequence_ids.resize(row.ids.len(), Some(0));
                }
            }
            Piece::Sequence {
                second: true,
                type_id,
            } => {
                if let Some(second) = &second {
                    row.ids.extend_from_slice(second);
                    row.type_ids.resize(row.ids.len(), *type_id);
                    if let Some(second_words) = words.as_ref().and_then(|w| w.second.as_ref()) {
                        row.word_ids.extend(second_words.iter().map(|&w| Some(w)));
                        row.sequence_ids.resize(row.ids.len(), Some(1));
                    }
                }
            }
            Piece::Special { ids, type_id } => {
                if add_special_tokens {
                    row.special_tokens_mask.resize(row.ids.len(), 0);
                    row.ids.extend_from_slice(ids);
                    row.type_ids.resize(row.ids.len(), *type_id);
                    row.special_tokens_mask.resize(row.ids.len(), 1);
                    if words.is_some() {
                        row.word_ids.resize(row.ids.len(), None);
                        row.sequence_ids.resize(row.ids.len(), None);
                    }
                }
            }
        }
    }
    row.special_tokens_mask.resize(row.ids.len(), 0);
    row.attention_mask = vec![1; row.ids.len()];
    Ok(row)
}
