//! Streaming collation: what the `StreamingLoader` does with each window of examples once they are
//! tokenized — plan batches (fixed size or a token budget, optionally length-bucketed and
//! shuffled), pack padding-free batches, and collate the planned rows into padded or packed
//! buffers — plus the row index that lets line-based files (JSONL, CSV) be split into byte ranges.
//!
//! Everything here is a pure function of its inputs and a seed, which is what makes a stream's
//! position (epoch, window, batch) enough to resume it exactly.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use crate::buffers::{round_up, Ragged, Side};
use crate::collate::{flatten, CollationPlan, ColumnRule, Flattened, Width};
use crate::error::{FerrotuneError, Result};
use crate::mlm::SplitMix64;
use crate::pad::{PadSpec, Picked, RowSource};

/// Tokenized examples of one window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenRows {
    pub ids: Ragged,
    /// Segment ids (BERT's `token_type_ids`), aligned with `ids.values`, when the tokenizer makes
    /// them.
    pub type_ids: Option<Vec<i64>>,
    /// Per-token labels (conversations: the ids where the loss applies, -100 elsewhere), aligned
    /// with `ids.values`.
    pub labels: Option<Vec<i64>>,
}

impl TokenRows {
    pub fn new(ids: Ragged, type_ids: Option<Vec<i64>>) -> Result<Self> {
        if let Some(types) = &type_ids {
            if types.len() != ids.values.len() {
                return Err(FerrotuneError::InvalidInput(format!(
                    "'token_type_ids' has {} values but 'input_ids' has {}",
                    types.len(),
                    ids.values.len()
                )));
            }
        }
        Ok(TokenRows {
            ids,
            type_ids,
            labels: None,
        })
    }

    /// Rows with per-token labels (aligned with the ids).
    pub fn with_labels(ids: Ragged, labels: Vec<i64>) -> Result<Self> {
        if labels.len() != ids.values.len() {
            return Err(FerrotuneError::InvalidInput(format!(
                "'labels' has {} values but 'input_ids' has {}",
                labels.len(),
                ids.values.len()
            )));
        }
        Ok(TokenRows {
            ids,
            type_ids: None,
            labels: Some(labels),
        })
    }

    pub fn rows(&self) -> usize {
        self.ids.rows()
    }

    pub fn lengths(&self) -> Vec<usize> {
        self.ids.row_lengths()
    }
}

/// Values aligned with the ids (token type ids, labels) as rows, read in place (the ids' row
/// boundaries).
struct AlignedRows<'a> {
    types: &'a [i64],
    starts: &'a [usize],
}

impl RowSource for AlignedRows<'_> {
    fn rows(&self) -> usize {
        self.starts.len() - 1
    }

    fn row_len(&self, row: usize) -> usize {
        self.starts[row + 1] - self.starts[row]
    }

    fn write_row(&self, row: usize, out: &mut [i64]) {
        out.copy_from_slice(&self.types[self.starts[row]..self.starts[row + 1]]);
    }
}

/// How many examples go into one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchLimit {
    /// A fixed number of examples.
    Examples(usize),
    /// As many examples as fit in `max_tokens` once padded (`rows x padded width`), optionally
    /// capped at `max_examples`.
    Tokens {
        max_tokens: usize,
        max_examples: Option<usize>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanSpec {
    pub limit: BatchLimit,
    /// Sort the window by length before cutting batches (then shuffle the batches).
    pub bucket_by_length: bool,
    pub shuffle: bool,
    /// Drop an incomplete last batch (fixed-size batches only).
    pub drop_last: bool,
    /// Padded widths are rounded up to this multiple; budgets count the rounded width.
    pub pad_to_multiple_of: Option<usize>,
}

/// Deterministic Fisher-Yates shuffle.
pub fn shuffle<T>(items: &mut [T], rng: &mut SplitMix64) {
    for i in (1..items.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

/// Splits the rows of a window into batches (lists of row indices). `seed` fully determines the
/// result, so replaying a window reproduces its batches.
pub fn plan_batches(lengths: &[usize], spec: &PlanSpec, seed: u64) -> Result<Vec<Vec<usize>>> {
    plan_paired_batches(lengths, None, spec, seed)
}

/// [`plan_batches`] for examples of two sequences padded separately (seq2seq: a source and a
/// target, `target_lengths`): bucketing sorts by the longer of the two, and a token budget counts
/// both padded sides, `rows x (widest source + widest target)` (each rounded up to
/// `pad_to_multiple_of`). Without targets it is [`plan_batches`].
pub fn plan_paired_batches(
    lengths: &[usize],
    target_lengths: Option<&[usize]>,
    spec: &PlanSpec,
    seed: u64,
) -> Result<Vec<Vec<usize>>> {
    if let Some(targets) = target_lengths {
        if targets.len() != lengths.len() {
            return Err(FerrotuneError::InvalidArgument(format!(
                "{} target lengths for {} examples",
                targets.len(),
                lengths.len()
            )));
        }
    }
    let target = |row: usize| target_lengths.map_or(0, |t| t[row]);
    let mut rng = SplitMix64::new(seed);
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    if spec.shuffle {
        shuffle(&mut order, &mut rng);
    }
    if spec.bucket_by_length {
        // Stable: rows of equal length keep their shuffled order.
        order.sort_by_key(|&row| lengths[row].max(target(row)));
    }
    let mut batches: Vec<Vec<usize>> = Vec::new();
    match spec.limit {
        BatchLimit::Examples(0) => {
            return Err(FerrotuneError::InvalidArgument(
                "batch_size must be at least 1".into(),
            ))
        }
        BatchLimit::Examples(size) => {
            for chunk in order.chunks(size) {
                if chunk.len() < size && spec.drop_last {
                    break;
                }
                batches.push(chunk.to_vec());
            }
        }
        BatchLimit::Tokens {
            max_tokens,
            max_examples,
        } => {
            let cap = max_examples.unwrap_or(usize::MAX).max(1);
            let mut current: Vec<usize> = Vec::new();
            // The widest source and target of the current batch (targets: 0 without them).
            let mut widest = (0usize, 0usize);
            for &row in &order {
                let width = (
                    round_up(lengths[row], spec.pad_to_multiple_of),
                    round_up(target(row), spec.pad_to_multiple_of),
                );
                if width.0 + width.1 > max_tokens {
                    let (size, fix) = match target_lengths {
                        None => (format!("{} tokens", lengths[row]), "max_length"),
                        Some(_) => (
                            format!("{} source + {} target tokens", lengths[row], target(row)),
                            "max_length + max_target_length",
                        ),
                    };
                    return Err(FerrotuneError::InvalidInput(format!(
                        "an example of {size} does not fit in max_tokens={max_tokens}; \
                         set {fix} (with truncation) at most max_tokens, or raise max_tokens"
                    )));
                }
                let new_widest = (widest.0.max(width.0), widest.1.max(width.1));
                if !current.is_empty()
                    && (current.len() + 1 > cap
                        || (current.len() + 1) * (new_widest.0 + new_widest.1) > max_tokens)
                {
                    batches.push(std::mem::take(&mut current));
                    widest = width;
                } else {
                    widest = new_widest;
                }
                current.push(row);
            }
            if !current.is_empty() {
                batches.push(current);
            }
        }
    }
    if spec.bucket_by_length && spec.shuffle {
        shuffle(&mut batches, &mut rng);
    }
    Ok(batches)
}

/// A piece of one example inside a packed batch: tokens `start..end` of row `row`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    pub row: usize,
    pub start: usize,
    pub end: usize,
}

/// Packs the rows of a window into padding-free batches of at most `capacity` tokens. Without
/// `split`, whole examples only (best-fit decreasing, so packs are nearly full) and an example
/// longer than `capacity` is an error; with `split`, the shuffled rows are concatenated and cut
/// every `capacity` tokens, an example continuing in the next batch.
pub fn plan_packs(
    lengths: &[usize],
    capacity: usize,
    split: bool,
    shuffle_rows: bool,
    seed: u64,
) -> Result<Vec<Vec<Piece>>> {
    if capacity == 0 {
        return Err(FerrotuneError::InvalidArgument(
            "packing needs max_tokens of at least 1".into(),
        ));
    }
    let mut rng = SplitMix64::new(seed);
    let mut order: Vec<usize> = (0..lengths.len()).filter(|&r| lengths[r] > 0).collect();
    if shuffle_rows {
        shuffle(&mut order, &mut rng);
    }
    let mut packs: Vec<Vec<Piece>> = Vec::new();
    if split {
        let mut current: Vec<Piece> = Vec::new();
        let mut used = 0usize;
        for &row in &order {
            let mut start = 0;
            while start < lengths[row] {
                let take = (capacity - used).min(lengths[row] - start);
                current.push(Piece {
                    row,
                    start,
                    end: start + take,
                });
                used += take;
                start += take;
                if used == capacity {
                    packs.push(std::mem::take(&mut current));
                    used = 0;
                }
            }
        }
        if !current.is_empty() {
            packs.push(current);
        }
        return Ok(packs);
    }
    // Best-fit decreasing: longest first, each into the fullest pack it still fits in.
    order.sort_by_key(|&row| std::cmp::Reverse(lengths[row]));
    // room left -> indices of packs with that room
    let mut by_room: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for &row in &order {
        let length = lengths[row];
        if length > capacity {
            return Err(FerrotuneError::InvalidInput(format!(
                "an example of {length} tokens does not fit in a pack of max_tokens={capacity}; \
                 truncate (max_length <= max_tokens) or pass pack_split=True"
            )));
        }
        let fitting = by_room.range(length..).next().map(|(&room, _)| room);
        let pack = match fitting {
            Some(room) => {
                let packs_with_room = by_room.get_mut(&room).expect("key just found");
                let pack = packs_with_room.pop().expect("non-empty list");
                if packs_with_room.is_empty() {
                    by_room.remove(&room);
                }
                pack
            }
            None => {
                packs.push(Vec::new());
                packs.len() - 1
            }
        };
        packs[pack].push(Piece {
            row,
            start: 0,
            end: length,
        });
        let used: usize = packs[pack].iter().map(|p| p.end - p.start).sum();
        if used < capacity {
            by_room.entry(capacity - used).or_default().push(pack);
        }
    }
    if shuffle_rows {
        shuffle(&mut packs, &mut rng);
        for pack in &mut packs {
            shuffle(pack, &mut rng);
        }
    }
    Ok(packs)
}

/// A padded batch: `rows x width` matrices, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaddedBatch {
    pub rows: usize,
    pub width: usize,
    pub input_ids: Vec<i64>,
    pub attention_mask: Vec<i64>,
    pub token_type_ids: Option<Vec<i64>>,
    /// The rows' labels padded with -100, when the rows have labels.
    pub labels: Option<Vec<i64>>,
}

/// Pads the rows `batch` of a window to the longest (rounded up to `pad_to_multiple_of`), as
/// `DataCollatorWithPadding` does: the collation plan of the ids, their token type ids and a
/// fresh attention mask.
pub fn collate_padded(
    tokens: &TokenRows,
    batch: &[usize],
    pad_id: i64,
    pad_type_id: i64,
    side: Side,
    pad_to_multiple_of: Option<usize>,
) -> Result<PaddedBatch> {
    let rows = tokens.rows();
    if let Some(&bad) = batch.iter().find(|&&row| row >= rows) {
        return Err(FerrotuneError::InvalidArgument(format!(
            "row {bad} is out of range for a window of {rows} rows"
        )));
    }
    let plan = CollationPlan::new(
        PadSpec::longest(pad_to_multiple_of, side),
        vec![
            ColumnRule::new("input_ids", pad_id, Width::Aligned),
            ColumnRule::new("token_type_ids", pad_type_id, Width::Aligned),
            ColumnRule::new("attention_mask", 0, Width::Aligned),
            ColumnRule::new("labels", crate::conversations::IGNORED, Width::Aligned),
        ],
        Some("attention_mask".into()),
    )?;
    let ids = Picked {
        rows: &tokens.ids,
        picks: batch,
    };
    fn aligned<'a>(values: Option<&'a [i64]>, starts: &'a [usize]) -> Option<AlignedRows<'a>> {
        values.map(|types| AlignedRows { types, starts })
    }
    let starts = &tokens.ids.starts;
    let type_rows = aligned(tokens.type_ids.as_deref(), starts);
    let label_rows = aligned(tokens.labels.as_deref(), starts);
    let types = type_rows.as_ref().map(|rows| Picked { rows, picks: batch });
    let labels = label_rows
        .as_ref()
        .map(|rows| Picked { rows, picks: batch });
    let mut inputs: Vec<(&str, &dyn RowSource)> = vec![("input_ids", &ids)];
    if let Some(types) = &types {
        inputs.push(("token_type_ids", types));
    }
    if let Some(labels) = &labels {
        inputs.push(("labels", labels));
    }
    // The plan's column order: input_ids, token_type_ids, attention_mask, labels.
    let mut padded = plan.pad(&inputs)?.into_iter();
    let mut next = || padded.next().map(|column| column.values);
    let input_ids = next().unwrap_or_default();
    let token_type_ids = if types.is_some() { next() } else { None };
    let attention_mask = next().unwrap_or_default();
    let labels = if labels.is_some() { next() } else { None };
    Ok(PaddedBatch {
        rows: batch.len(),
        width: plan
            .spec
            .width(batch.iter().map(|&r| tokens.ids.row_len(r))),
        input_ids,
        attention_mask,
        token_type_ids,
        labels,
    })
}

/// The pieces of a pack as rows: piece `i` is tokens `start..end` of its row (empty pieces are
/// left out: they hold no sequence).
struct PieceRows<'a> {
    tokens: &'a TokenRows,
    pieces: Vec<Piece>,
}

impl RowSource for PieceRows<'_> {
    fn rows(&self) -> usize {
        self.pieces.len()
    }

    fn row_len(&self, row: usize) -> usize {
        self.pieces[row].end - self.pieces[row].start
    }

    fn write_row(&self, row: usize, out: &mut [i64]) {
        let piece = self.pieces[row];
        out.copy_from_slice(&self.tokens.ids.row(piece.row)[piece.start..piece.end]);
    }
}

/// The labels of the pieces of a pack, as [`PieceRows`] gives their ids.
struct PieceLabels<'a> {
    pieces: &'a PieceRows<'a>,
    labels: &'a [i64],
}

impl RowSource for PieceLabels<'_> {
    fn rows(&self) -> usize {
        self.pieces.rows()
    }

    fn row_len(&self, row: usize) -> usize {
        self.pieces.row_len(row)
    }

    fn write_row(&self, row: usize, out: &mut [i64]) {
        let piece = self.pieces.pieces[row];
        let start = self.pieces.tokens.ids.starts[piece.row];
        out.copy_from_slice(&self.labels[start + piece.start..start + piece.end]);
    }
}

/// Flattens the pieces of a pack into one sequence, `DataCollatorWithFlattening`'s format (see
/// [`flatten`]).
pub fn collate_packed(
    tokens: &TokenRows,
    pieces: &[Piece],
    separator_id: i64,
    position_ids_start: i64,
) -> Result<Flattened> {
    let rows = tokens.rows();
    if let Some(bad) = pieces
        .iter()
        .find(|p| p.row >= rows || p.start > p.end || p.end > tokens.ids.row_len(p.row))
    {
        return Err(FerrotuneError::InvalidArgument(format!(
            "piece {bad:?} is out of range for this window"
        )));
    }
    let rows = PieceRows {
        tokens,
        pieces: pieces.iter().copied().filter(|p| p.end > p.start).collect(),
    };
    let labels = tokens.labels.as_deref().map(|labels| PieceLabels {
        pieces: &rows,
        labels,
    });
    flatten(
        &rows,
        labels.as_ref().map(|l| l as &dyn RowSource),
        separator_id,
        position_ids_start,
    )
}

/// Where the rows of a line-based file (JSONL, CSV/TSV) start, every `rows_per_unit` rows, so
/// the file can be read and sharded in byte ranges without parsing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowIndex {
    /// Byte offset of each unit's first row, plus the end of the file last.
    pub unit_offsets: Vec<u64>,
    /// Rows in each unit.
    pub unit_rows: Vec<usize>,
    /// Byte length of the header line (0 when the file has none).
    pub header_end: u64,
}

impl RowIndex {
    pub fn total_rows(&self) -> usize {
        self.unit_rows.iter().sum()
    }
}

/// Indexes the rows of a line-based file. A row ends at a newline outside quotes (`quote` is the
/// CSV quote character, `None` for JSONL or CSV read with quoting off); blank lines are not rows.
pub fn index_rows(
    path: &Path,
    quote: Option<u8>,
    has_header: bool,
    rows_per_unit: usize,
) -> Result<RowIndex> {
    let rows_per_unit = rows_per_unit.max(1);
    let io_error = |err: std::io::Error| {
        FerrotuneError::DataSource(format!("cannot read '{}': {err}", path.display()))
    };
    let mut file = std::fs::File::open(path).map_err(io_error)?;
    let mut buffer = vec![0u8; 1 << 20];
    let mut index = RowIndex {
        unit_offsets: Vec::new(),
        unit_rows: Vec::new(),
        header_end: 0,
    };
    let mut position: u64 = 0;
    let mut in_quotes = false;
    let mut line_start: u64 = 0;
    let mut line_has_content = false;
    let mut header_pending = has_header;
    let mut rows_in_unit = 0usize;

    let mut end_line = |index: &mut RowIndex, start: u64, end: u64, has_content: bool| {
        if !has_content {
            return;
        }
        if header_pending {
            header_pending = false;
            index.header_end = end;
            return;
        }
        if rows_in_unit == 0 {
            index.unit_offsets.push(start);
            index.unit_rows.push(0);
        }
        *index.unit_rows.last_mut().expect("unit opened above") += 1;
        rows_in_unit += 1;
        if rows_in_unit == rows_per_unit {
            rows_in_unit = 0;
        }
    };
    loop {
        let read = file.read(&mut buffer).map_err(io_error)?;
        if read == 0 {
            break;
        }
        if quote.is_none() {
            // No quoting (JSONL, TSV read with quoting off): rows end at every newline, found by
            // memchr; a row has content when a byte of it is not whitespace.
            let chunk = &buffer[..read];
            let mut from = 0;
            for newline in memchr::memchr_iter(b'\n', chunk) {
                line_has_content = line_has_content
                    || chunk[from..newline]
                        .iter()
                        .any(|b| !b.is_ascii_whitespace());
                let at = position + newline as u64;
                end_line(&mut index, line_start, at + 1, line_has_content);
                line_start = at + 1;
                line_has_content = false;
                from = newline + 1;
            }
            line_has_content =
                line_has_content || chunk[from..].iter().any(|b| !b.is_ascii_whitespace());
            position += read as u64;
            continue;
        }
        for (i, &byte) in buffer[..read].iter().enumerate() {
            let at = position + i as u64;
            if Some(byte) == quote {
                in_quotes = !in_quotes;
                line_has_content = true;
            } else if byte == b'\n' && !in_quotes {
                end_line(&mut index, line_start, at + 1, line_has_content);
                line_start = at + 1;
                line_has_content = false;
            } else if !byte.is_ascii_whitespace() {
                line_has_content = true;
            }
        }
        position += read as u64;
    }
    if in_quotes {
        return Err(FerrotuneError::DataSource(format!(
            "'{}': a quoted field is never closed (read it with quoting off if quotes are literal)",
            path.display()
        )));
    }
    end_line(&mut index, line_start, position, line_has_content);
    index.unit_offsets.push(position);
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows_of(lengths: &[usize]) -> TokenRows {
        let mut ids = Ragged::new();
        for (r, &n) in lengths.iter().enumerate() {
            ids.push_row((0..n).map(|t| (r * 100 + t) as i64 + 1));
        }
        TokenRows::new(ids, None).unwrap()
    }

    fn spec(limit: BatchLimit, bucket: bool) -> PlanSpec {
        PlanSpec {
            limit,
            bucket_by_length: bucket,
            shuffle: true,
            drop_last: false,
            pad_to_multiple_of: None,
        }
    }

    fn sorted_rows(batches: &[Vec<usize>]) -> Vec<usize> {
        let mut all: Vec<usize> = batches.iter().flatten().copied().collect();
        all.sort();
        all
    }

    #[test]
    fn fixed_batches_cover_each_row_once_and_are_deterministic() {
        let lengths: Vec<usize> = (0..103).map(|i| 1 + (i * 37) % 50).collect();
        for bucket in [false, true] {
            let a = plan_batches(&lengths, &spec(BatchLimit::Examples(10), bucket), 7).unwrap();
            let b = plan_batches(&lengths, &spec(BatchLimit::Examples(10), bucket), 7).unwrap();
            let c = plan_batches(&lengths, &spec(BatchLimit::Examples(10), bucket), 8).unwrap();
            assert_eq!(a, b);
            assert_ne!(a, c);
            assert_eq!(sorted_rows(&a), (0..103).collect::<Vec<_>>());
            assert_eq!(a.len(), 11);
            assert_eq!(a.iter().filter(|b| b.len() == 3).count(), 1);
        }
        let mut dropping = spec(BatchLimit::Examples(10), false);
        dropping.drop_last = true;
        assert_eq!(plan_batches(&lengths, &dropping, 1).unwrap().len(), 10);
    }

    #[test]
    fn token_budget_is_never_exceeded_and_buckets_cut_padding() {
        let lengths: Vec<usize> = (0..2000).map(|i| 5 + (i * 7919) % 300).collect();
        let limit = BatchLimit::Tokens {
            max_tokens: 2048,
            max_examples: None,
        };
        let padding = |batches: &[Vec<usize>]| -> f64 {
            let (mut real, mut total) = (0usize, 0usize);
            for batch in batches {
                let width = batch.iter().map(|&r| lengths[r]).max().unwrap();
                assert!(batch.len() * width <= 2048, "budget exceeded");
                real += batch.iter().map(|&r| lengths[r]).sum::<usize>();
                total += batch.len() * width;
            }
            1.0 - real as f64 / total as f64
        };
        let random = plan_batches(&lengths, &spec(limit, false), 3).unwrap();
        let bucketed = plan_batches(&lengths, &spec(limit, true), 3).unwrap();
        assert_eq!(sorted_rows(&random), (0..2000).collect::<Vec<_>>());
        assert_eq!(sorted_rows(&bucketed), (0..2000).collect::<Vec<_>>());
        assert!(padding(&bucketed) < 0.05, "{}", padding(&bucketed));
        assert!(padding(&random) > 0.2);
        let capped = BatchLimit::Tokens {
            max_tokens: 1 << 20,
            max_examples: Some(16),
        };
        assert!(plan_batches(&lengths, &spec(capped, true), 3)
            .unwrap()
            .iter()
            .all(|b| b.len() <= 16));
    }

    #[test]
    fn too_long_examples_are_refused() {
        let limit = BatchLimit::Tokens {
            max_tokens: 10,
            max_examples: None,
        };
        let err = plan_batches(&[3, 11], &spec(limit, false), 0).unwrap_err();
        assert!(err.to_string().contains("11 tokens"), "{err}");
        assert!(plan_packs(&[3, 11], 10, false, true, 0).is_err());
        assert!(plan_packs(&[3, 11], 10, true, true, 0).is_ok());
        assert!(plan_batches(&[1], &spec(BatchLimit::Examples(0), false), 0).is_err());
    }

    #[test]
    fn paired_budgets_count_both_sides_and_buckets_take_the_longer() {
        let sources: Vec<usize> = (0..600).map(|i| 1 + (i * 7919) % 90).collect();
        let targets: Vec<usize> = (0..600).map(|i| 1 + (i * 104_729) % 70).collect();
        let limit = BatchLimit::Tokens {
            max_tokens: 640,
            max_examples: None,
        };
        let paired = spec(limit, true);
        let batches = plan_paired_batches(&sources, Some(&targets), &paired, 5).unwrap();
        assert_eq!(sorted_rows(&batches), (0..600).collect::<Vec<_>>());
        for batch in &batches {
            let s = batch.iter().map(|&r| sources[r]).max().unwrap();
            let t = batch.iter().map(|&r| targets[r]).max().unwrap();
            assert!(batch.len() * (s + t) <= 640, "budget exceeded");
        }
        let mut unshuffled = paired;
        unshuffled.shuffle = false;
        let sorted = plan_paired_batches(&sources, Some(&targets), &unshuffled, 5).unwrap();
        let keys: Vec<usize> = sorted
            .iter()
            .flatten()
            .map(|&r| sources[r].max(targets[r]))
            .collect();
        assert!(keys.windows(2).all(|w| w[0] <= w[1]));
        // Without targets: exactly plan_batches.
        assert_eq!(
            plan_paired_batches(&sources, None, &paired, 5).unwrap(),
            plan_batches(&sources, &paired, 5).unwrap()
        );
        let err = plan_paired_batches(
            &[3],
            Some(&[8]),
            &spec(
                BatchLimit::Tokens {
                    max_tokens: 10,
                    max_examples: None,
                },
                false,
            ),
            0,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("3 source + 8 target tokens"),
            "{err}"
        );
        assert!(plan_paired_batches(&[3, 4], Some(&[1]), &paired, 0).is_err());
    }

    #[test]
    fn packs_hold_every_token_once_within_capacity() {
        let lengths: Vec<usize> = (0..500).map(|i| 1 + (i * 131) % 120).collect();
        for split in [false, true] {
            let packs = plan_packs(&lengths, 256, split, true, 11).unwrap();
            let mut seen = vec![0usize; lengths.len()];
            for pack in &packs {
                let used: usize = pack.iter().map(|p| p.end - p.start).sum();
                assert!(used <= 256);
                for piece in pack {
                    seen[piece.row] += piece.end - piece.start;
                    if !split {
                        assert_eq!((piece.start, piece.end), (0, lengths[piece.row]));
                    }
                }
            }
            assert_eq!(seen, lengths);
            let total: usize = lengths.iter().sum();
            let fill = total as f64 / (packs.len() * 256) as f64;
            assert!(fill > 0.98, "fill {fill} split={split}");
        }
    }

    #[test]
    fn padded_collation_matches_rows() {
        let mut tokens = rows_of(&[3, 1, 4]);
        tokens.type_ids = Some(vec![0, 0, 1, 0, 1, 1, 1, 1]);
        let batch = collate_padded(&tokens, &[2, 1], 0, 0, Side::Right, Some(8)).unwrap();
        assert_eq!(batch.width, 8);
        assert_eq!(&batch.input_ids[..8], &[201, 202, 203, 204, 0, 0, 0, 0]);
        assert_eq!(&batch.input_ids[8..], &[101, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&batch.attention_mask[8..10], &[1, 0]);
        assert_eq!(
            &batch.token_type_ids.as_ref().unwrap()[..5],
            &[1, 1, 1, 1, 0]
        );
        let left = collate_padded(&tokens, &[0, 1], 9, 0, Side::Left, None).unwrap();
        assert_eq!(left.input_ids, vec![1, 2, 3, 9, 9, 101]);
        assert_eq!(left.attention_mask, vec![1, 1, 1, 0, 0, 1]);
        assert!(collate_padded(&tokens, &[3], 0, 0, Side::Right, None).is_err());
    }

    #[test]
    fn packed_collation_restarts_positions() {
        let tokens = rows_of(&[3, 2]);
        let pieces = [
            Piece {
                row: 1,
                start: 0,
                end: 2,
            },
            Piece {
                row: 0,
                start: 1,
                end: 3,
            },
        ];
        let packed = collate_packed(&tokens, &pieces, -100, 0).unwrap();
        assert_eq!(packed.input_ids, vec![101, 102, 2, 3]);
        assert_eq!(packed.labels, vec![-100, 102, -100, 3]);
        assert_eq!(packed.position_ids, vec![0, 1, 0, 1]);
        assert_eq!(packed.cu_seq_lens, vec![0, 2, 4]);
        assert_eq!(packed.max_length, 2);
    }

    #[test]
    fn row_index_splits_lines_outside_quotes() {
        let dir = std::env::temp_dir().join(format!("ferrotune-index-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rows.csv");
        std::fs::write(&path, "a,b\n1,\"x\ny\"\n\n2,z\n3,w").unwrap();
        let quoted = index_rows(&path, Some(b'"'), true, 2).unwrap();
        assert_eq!(quoted.header_end, 4);
        assert_eq!(quoted.unit_rows, vec![2, 1]);
        assert_eq!(quoted.unit_offsets, vec![4, 17, 20]);
        let unquoted = index_rows(&path, None, true, 100).unwrap();
        assert_eq!(unquoted.total_rows(), 4);
        std::fs::write(&path, "\"open\n").unwrap();
        assert!(index_rows(&path, Some(b'"'), false, 1).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    proptest::proptest! {
        #[test]
        fn plans_cover_every_row_once_within_limits(
            lengths in proptest::collection::vec(1usize..300, 0..400),
            budget in 304usize..5000, // the longest row, 299, pads to 304 (multiple of 8)
            size in 1usize..64,
            bucket: bool,
            shuffle_rows: bool,
            seed: u64,
        ) {
            let n = lengths.len();
            for limit in [BatchLimit::Examples(size), BatchLimit::Tokens { max_tokens: budget, max_examples: Some(size) }] {
                let spec = PlanSpec { limit, bucket_by_length: bucket, shuffle: shuffle_rows, drop_last: false, pad_to_multiple_of: Some(8) };
                let batches = plan_batches(&lengths, &spec, seed).unwrap();
                proptest::prop_assert_eq!(sorted_rows(&batches), (0..n).collect::<Vec<_>>());
                for batch in &batches {
                    proptest::prop_assert!(!batch.is_empty() && batch.len() <= size);
                    if let BatchLimit::Tokens { max_tokens, .. } = limit {
                        let width = batch.iter().map(|&r| round_up(lengths[r], Some(8))).max().unwrap();
                        proptest::prop_assert!(batch.len() * width <= max_tokens);
                    }
                }
            }
            for split in [false, true] {
                let packs = plan_packs(&lengths, budget, split, shuffle_rows, seed).unwrap();
                let mut seen = vec![0usize; n];
                for pack in &packs {
                    let used: usize = pack.iter().map(|p| p.end - p.start).sum();
                    proptest::prop_assert!(used >= 1 && used <= budget);
                    for piece in pack {
                        seen[piece.row] += piece.end - piece.start;
                    }
                }
                proptest::prop_assert_eq!(&seen, &lengths);
            }
        }
    }
}
