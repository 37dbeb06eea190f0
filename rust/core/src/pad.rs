//! Padding of already-tokenized rows: the engine of `Tokenizer.pad` and of the data collators.

use rayon::prelude::*;

use crate::buffers::{round_up, write_padded, Ragged, Side};
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
    for column in &columns[1..] {
        if column.rows.rows() != rows {
            return Err(FerrotuneError::InvalidInput(format!(
                "'{}' has {} examples but '{}' has {}",
                column.name,
                column.rows.rows(),
                reference.name,
                rows
            )));
        }
        if let Some(r) = (0..rows).find(|&r| column.rows.row_len(r) != reference.rows.row_len(r)) {
            return Err(FerrotuneError::InvalidInput(format!(
                "example {r}: '{}' has {} values but '{}' has {}",
                column.name,
                column.rows.row_len(r),
                reference.name,
                reference.rows.row_len(r)
            )));
        }
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

/// Pads each row of `rows` to `width` (rows already longer stay as they are).
pub fn pad_rows(
    name: &str,
    rows: &Ragged,
    width: usize,
    pad_value: i64,
    side: Side,
) -> PaddedColumn {
    let n = rows.rows();
    let uniform = (0..n).all(|r| rows.row_len(r) <= width);
    if uniform {
        let mut values = vec![0i64; n * width];
        let fill = |(r, out): (usize, &mut [i64])| {
            write_padded(out, rows.row(r).iter().copied(), pad_value, side);
        };
        if width > 0 {
            if values.len() >= PARALLEL_MIN_VALUES && parallelism_enabled() {
                values.par_chunks_mut(width).enumerate().for_each(fill);
            } else {
                values.chunks_mut(width).enumerate().for_each(fill);
            }
        }
        PaddedColumn {
            name: name.to_string(),
            values,
            starts: (0..=n).map(|r| r * width).collect(),
            uniform_width: Some(width),
        }
    } else {
        let mut out = Ragged::with_capacity(n, n * width);
        for r in 0..n {
            let row = rows.row(r);
            let len = row.len().max(width);
            let begin = out.values.len();
            out.values.resize(begin + len, 0);
            write_padded(
                &mut out.values[begin..],
                row.iter().copied(),
                pad_value,
                side,
            );
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
}
