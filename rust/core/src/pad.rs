//! Padding of already-tokenized rows: the engine of `Tokenizer.pad` and of the data collators.

use rayon::prelude::*;

use crate::buffers::{round_up, Ragged, Side};
use crate::error::{FerrotuneError, Result};
use crate::parallel::parallelism_enabled;

/// Below this many output values a batch is padded on the calling thread: spreading it over the
/// pool would cost more than the copy.
const PARALLEL_MIN_VALUES: usize = 1 << 16;

/// The length rows are padded to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PadTarget {
    /// The longest row of the batch (transformers' `padding=True` / `"longest"`).
    Longest,
    /// A fixed length (`padding="max_length"`); longer rows are kept whole, never cut.
    Fixed(usize),
}

/// Rows of token ids that padding reads in place: a [`Ragged`], or another flat layout (the
/// bindings read Arrow list buffers this way, with no intermediate copy).
pub trait RowSource: Sync {
    fn rows(&self) -> usize;
    fn row_len(&self, row: usize) -> usize;
    /// Writes row `row` as i64 into `out`, which is exactly `row_len(row)` long.
    fn write_row(&self, row: usize, out: &mut [i64]);

    // The loops below are trait methods so that, called through `dyn RowSource`, each runs
    // monomorphized with `row_len` / `write_row` inlined rather than one virtual call per row.

    /// The length of every row.
    fn row_lengths(&self) -> Vec<usize> {
        (0..self.rows()).map(|r| self.row_len(r)).collect()
    }

    /// The first row whose length differs from `lengths` (which has one entry per row).
    fn first_length_mismatch(&self, lengths: &[usize]) -> Option<usize> {
        (0..self.rows()).find(|&r| self.row_len(r) != lengths[r])
    }

    /// Whether every row fits in `width`, so that padding gives a `rows x width` matrix.
    fn fits(&self, width: usize) -> bool {
        (0..self.rows()).all(|r| self.row_len(r) <= width)
    }

    /// Pads every row to `width` into `out`, a row-major `rows x width` matrix; every row must fit
    /// (see [`RowSource::fits`]).
    fn pad_into(&self, width: usize, pad_value: i64, side: Side, out: &mut [i64]) {
        if width == 0 {
            return;
        }
        let fill = |(r, row_out): (usize, &mut [i64])| {
            write_padded_row(self, r, row_out, pad_value, side);
        };
        if out.len() >= PARALLEL_MIN_VALUES && parallelism_enabled() {
            out.par_chunks_mut(width).enumerate().for_each(fill);
        } else {
            out.chunks_mut(width).enumerate().for_each(fill);
        }
    }
}

impl RowSource for Ragged {
    fn rows(&self) -> usize {
        Ragged::rows(self)
    }

    fn row_len(&self, row: usize) -> usize {
        Ragged::row_len(self, row)
    }

    fn write_row(&self, row: usize, out: &mut [i64]) {
        out.copy_from_slice(self.row(row));
    }
}

/// Rows of ones as long as another column's rows: an attention mask made without a buffer.
pub struct OnesLike<'a>(pub &'a dyn RowSource);

impl RowSource for OnesLike<'_> {
    fn rows(&self) -> usize {
        self.0.rows()
    }

    fn row_len(&self, row: usize) -> usize {
        self.0.row_len(row)
    }

    fn write_row(&self, _row: usize, out: &mut [i64]) {
        out.fill(1);
    }
}

/// One named column of ragged rows and the value its padding is filled with.
#[derive(Debug, Clone)]
pub struct PadColumn {
    pub name: String,
    pub rows: Ragged,
    pub pad_value: i64,
}

/// A padded column: a `rows x width` matrix when every row reached the same length, otherwise
/// (fixed target, some rows longer than it) ragged rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaddedColumn {
    pub name: String,
    pub values: Vec<i64>,
    pub starts: Vec<usize>,
    pub uniform_width: Option<usize>,
}

/// The length every row of a batch is padded to, before rows longer than it are considered.
pub fn target_length(
    lengths: impl Iterator<Item = usize>,
    target: PadTarget,
    pad_to_multiple_of: Option<usize>,
) -> usize {
    let base = match target {
        PadTarget::Longest => lengths.max().unwrap_or(0),
        PadTarget::Fixed(n) => n,
    };
    round_up(base, pad_to_multiple_of)
}

/// Pads every column to one common length computed from the first (reference) column, as
/// transformers' `tokenizer.pad` does with `input_ids`. Every other column must have, row for row,
/// as many values as the reference: anything else is reported, never silently fixed.
pub fn pad_columns(
    columns: &[PadColumn],
    target: PadTarget,
    pad_to_multiple_of: Option<usize>,
    side: Side,
) -> Result<Vec<PaddedColumn>> {
    let Some(reference) = columns.first() else {
        return Ok(Vec::new());
    };
    let rows = reference.rows.rows();
    let lengths = RowSource::row_lengths(&reference.rows);
    for column in &columns[1..] {
        check_same_lengths(&reference.name, &lengths, &column.name, &column.rows)?;
    }
    let width = target_length(
        (0..rows).map(|r| reference.rows.row_len(r)),
        target,
        pad_to_multiple_of,
    );
    Ok(columns
        .iter()
        .map(|column| pad_rows(&column.name, &column.rows, width, column.pad_value, side))
        .collect())
}

/// Checks that `column` has, row for row, as many values as the reference column, whose row
/// lengths are `lengths` (the columns padded together must line up: anything else is reported,
/// never silently fixed).
pub fn check_same_lengths(
    reference_name: &str,
    lengths: &[usize],
    name: &str,
    column: &dyn RowSource,
) -> Result<()> {
    let rows = lengths.len();
    if column.rows() != rows {
        return Err(FerrotuneError::InvalidInput(format!(
            "'{name}' has {} examples but '{reference_name}' has {rows}",
            column.rows()
        )));
    }
    if let Some(r) = column.first_length_mismatch(lengths) {
        return Err(FerrotuneError::InvalidInput(format!(
            "example {r}: '{name}' has {} values but '{reference_name}' has {}",
            column.row_len(r),
            lengths[r]
        )));
    }
    Ok(())
}

#[inline]
fn write_padded_row<R: RowSource + ?Sized>(
    rows: &R,
    row: usize,
    out: &mut [i64],
    pad_value: i64,
    side: Side,
) {
    let len = rows.row_len(row);
    let fill = out.len() - len;
    match side {
        Side::Right => {
            rows.write_row(row, &mut out[..len]);
            out[len..].fill(pad_value);
        }
        Side::Left => {
            out[..fill].fill(pad_value);
            rows.write_row(row, &mut out[fill..]);
        }
    }
}

/// Pads each row of `rows` to `width` (rows already longer stay as they are).
pub fn pad_rows(
    name: &str,
    rows: &dyn RowSource,
    width: usize,
    pad_value: i64,
    side: Side,
) -> PaddedColumn {
    let n = rows.rows();
    if rows.fits(width) {
        let mut values = vec![0i64; n * width];
        rows.pad_into(width, pad_value, side, &mut values);
        PaddedColumn {
            name: name.to_string(),
            values,
            starts: (0..=n).map(|r| r * width).collect(),
            uniform_width: Some(width),
        }
    } else {
        let mut out = Ragged::with_capacity(n, n * width);
        for r in 0..n {
            let len = rows.row_len(r).max(width);
            let begin = out.values.len();
            out.values.resize(begin + len, 0);
            write_padded_row(rows, r, &mut out.values[begin..], pad_value, side);
            out.starts.push(out.values.len());
        }
        PaddedColumn {
            name: name.to_string(),
            values: out.values,
            starts: out.starts,
            uniform_width: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ragged(rows: &[&[i64]]) -> Ragged {
        let mut r = Ragged::new();
        for row in rows {
            r.push_row(row.iter().copied());
        }
        r
    }

    fn column(name: &str, rows: &[&[i64]], pad_value: i64) -> PadColumn {
        PadColumn {
            name: name.into(),
            rows: ragged(rows),
            pad_value,
        }
    }

    #[test]
    fn longest_right_and_left() {
        let cols = [
            column("input_ids", &[&[1, 2, 3], &[4]], 0),
            column("attention_mask", &[&[1, 1, 1], &[1]], 0),
        ];
        let out = pad_columns(&cols, PadTarget::Longest, None, Side::Right).unwrap();
        assert_eq!(out[0].values, vec![1, 2, 3, 4, 0, 0]);
        assert_eq!(out[0].uniform_width, Some(3));
        assert_eq!(out[1].values, vec![1, 1, 1, 1, 0, 0]);
        let out = pad_columns(&cols, PadTarget::Longest, Some(4), Side::Left).unwrap();
        assert_eq!(out[0].values, vec![0, 1, 2, 3, 0, 0, 0, 4]);
    }

    #[test]
    fn fixed_target_keeps_longer_rows_whole() {
        let cols = [column("input_ids", &[&[1, 2, 3], &[4]], 9)];
        let out = pad_columns(&cols, PadTarget::Fixed(2), None, Side::Right).unwrap();
        assert_eq!(out[0].uniform_width, None);
        assert_eq!(out[0].values, vec![1, 2, 3, 4, 9]);
        assert_eq!(out[0].starts, vec![0, 3, 5]);
    }

    #[test]
    fn mismatched_row_lengths_are_reported() {
        let cols = [
            column("input_ids", &[&[1, 2], &[4]], 0),
            column("attention_mask", &[&[1, 1], &[1, 1]], 0),
        ];
        let err = pad_columns(&cols, PadTarget::Longest, None, Side::Right).unwrap_err();
        assert!(
            err.to_string()
                .contains("example 1: 'attention_mask' has 2 values but 'input_ids' has 1"),
            "{err}"
        );
    }

    #[test]
    fn empty_batch_pads_to_nothing() {
        let cols = [column("input_ids", &[], 0)];
        let out = pad_columns(&cols, PadTarget::Longest, Some(8), Side::Right).unwrap();
        assert!(out[0].values.is_empty());
        assert_eq!(out[0].starts, vec![0]);
    }

    #[test]
    fn large_batch_parallel_path_matches_sequential() {
        let rows: Vec<Vec<i64>> = (0..3000).map(|i| (0..(i % 50) as i64).collect()).collect();
        let refs: Vec<&[i64]> = rows.iter().map(|r| r.as_slice()).collect();
        let col = column("input_ids", &refs, -7);
        let out = pad_columns(
            std::slice::from_ref(&col),
            PadTarget::Longest,
            None,
            Side::Left,
        )
        .unwrap();
        for (r, row) in rows.iter().enumerate() {
            let got = &out[0].values[r * 49..(r + 1) * 49];
            assert_eq!(&got[49 - row.len()..], row.as_slice());
            assert!(got[..49 - row.len()].iter().all(|&v| v == -7));
        }
    }

    #[test]
    fn pad_into_writes_in_place_and_ones_like_follows_lengths() {
        let rows = ragged(&[&[1, 2, 3], &[4]]);
        let mut out = [9i64; 8];
        assert!(rows.fits(4) && !rows.fits(2));
        rows.pad_into(4, 0, Side::Left, &mut out);
        assert_eq!(out, [0, 1, 2, 3, 0, 0, 0, 4]);
        let ones = OnesLike(&rows);
        ones.pad_into(4, 0, Side::Right, &mut out);
        assert_eq!(out, [1, 1, 1, 0, 1, 0, 0, 0]);
        assert_eq!(ones.row_lengths(), vec![3, 1]);
        let lengths = rows.row_lengths();
        let other = ragged(&[&[1, 2, 3], &[4, 5]]);
        let err = check_same_lengths("input_ids", &lengths, "labels", &other).unwrap_err();
        assert!(err
            .to_string()
            .contains("example 1: 'labels' has 2 values but 'input_ids' has 1"));
    }
}
