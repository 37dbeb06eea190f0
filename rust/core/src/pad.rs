//! Padding: [`PadSpec`] (transformers' padding arguments, parsed in one place) and the one padding
//! kernel every output goes through — [`RowSource`] rows written into a matrix
//! ([`RowSource::pad_into`]) or into ragged rows ([`pad_rows`]). The tokenizer's outputs, the
//! collation plans of `tokenizer.pad` and the collators ([`crate::collate`]) and the streaming
//! loader's batches all use it.

use rayon::prelude::*;

use crate::buffers::{round_up, Ragged, Side};
use crate::error::{FerrotuneError, Result};
use crate::parallel::parallelism_enabled;

/// Below this many output values a batch is padded on the calling thread: spreading it over the
/// pool would cost more than the copy.
const PARALLEL_MIN_VALUES: usize = 1 << 16;

/// The length rows are padded to: transformers' padding strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PadTarget {
    /// No padding (`padding=False` / `"do_not_pad"`): every row keeps its length.
    DoNotPad,
    /// The longest row of the batch (`padding=True` / `"longest"`).
    Longest,
    /// A fixed length (`padding="max_length"`); longer rows are kept whole, never cut.
    Fixed(usize),
}

/// How a batch is padded: the target, `pad_to_multiple_of` and the side that receives padding.
/// Every padding of ferrotune (the tokenizer's outputs, `tokenizer.pad`, the collators, the
/// streaming loader) is described by one of these, parsed by [`PadSpec::parse`] only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PadSpec {
    pub target: PadTarget,
    /// Widths are rounded up to a multiple of this (not when nothing is padded).
    pub multiple_of: Option<usize>,
    pub side: Side,
}

impl PadSpec {
    /// No padding at all.
    pub const NONE: PadSpec = PadSpec {
        target: PadTarget::DoNotPad,
        multiple_of: None,
        side: Side::Right,
    };

    /// Pads to the longest row, rounded up to `multiple_of`.
    pub fn longest(multiple_of: Option<usize>, side: Side) -> Self {
        PadSpec {
            target: PadTarget::Longest,
            multiple_of,
            side,
        }
    }

    /// transformers' padding arguments, once resolved to a strategy name: `"longest"`,
    /// `"max_length"` (which needs `max_length`) or `"do_not_pad"`; `side` is `"left"` or `"right"`.
    pub fn parse(
        strategy: &str,
        max_length: Option<usize>,
        multiple_of: Option<usize>,
        side: &str,
    ) -> Result<Self> {
        let target = match (strategy, max_length) {
            ("longest", _) => PadTarget::Longest,
            ("max_length", Some(length)) => PadTarget::Fixed(length),
            ("max_length", None) => {
                return Err(FerrotuneError::InvalidArgument(
                    "padding='max_length' needs max_length".into(),
                ))
            }
            ("do_not_pad", _) => PadTarget::DoNotPad,
            (other, _) => {
                return Err(FerrotuneError::InvalidArgument(format!(
                    "padding must be 'longest', 'max_length' or 'do_not_pad', got {other:?}"
                )))
            }
        };
        Ok(PadSpec {
            target,
            multiple_of,
            side: Side::parse(side, "padding_side")?,
        })
    }

    /// The width rows of these lengths are padded to (0 when not padding: rows stay as they are).
    /// Rows longer than a fixed width keep their length.
    pub fn width(&self, lengths: impl Iterator<Item = usize>) -> usize {
        self.width_for(self.target, lengths)
    }

    /// The width under `target` with this spec's multiple (a column padded on its own terms).
    pub fn width_for(&self, target: PadTarget, lengths: impl Iterator<Item = usize>) -> usize {
        match target {
            PadTarget::DoNotPad => 0,
            PadTarget::Longest => round_up(lengths.max().unwrap_or(0), self.multiple_of),
            PadTarget::Fixed(n) => round_up(n, self.multiple_of),
        }
    }
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

/// The rows `picks` of another source, in that order (the rows of one planned batch of a window).
pub struct Picked<'a, R: RowSource + ?Sized> {
    pub rows: &'a R,
    pub picks: &'a [usize],
}

impl<R: RowSource + ?Sized> RowSource for Picked<'_, R> {
    fn rows(&self) -> usize {
        self.picks.len()
    }

    fn row_len(&self, row: usize) -> usize {
        self.rows.row_len(self.picks[row])
    }

    fn write_row(&self, row: usize, out: &mut [i64]) {
        self.rows.write_row(self.picks[row], out)
    }
}

/// A padded column: a `rows x width` matrix when every row reached the same length, otherwise
/// (fixed target, some rows longer than it; or no padding) ragged rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaddedColumn {
    pub name: String,
    pub values: Vec<i64>,
    pub starts: Vec<usize>,
    pub uniform_width: Option<usize>,
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

/// The one padding kernel: row `row` into `out` (`out.len() >= row_len(row)`), the rest filled
/// with `pad_value` on `side`.
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

/// Pads each row of `rows` to `width` (rows already longer stay as they are): a matrix when every
/// row fits, ragged rows otherwise.
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
        return PaddedColumn {
            name: name.to_string(),
            values,
            starts: (0..=n).map(|r| r * width).collect(),
            uniform_width: Some(width),
        };
    }
    let mut starts = Vec::with_capacity(n + 1);
    starts.push(0usize);
    for r in 0..n {
        starts.push(starts[r] + rows.row_len(r).max(width));
    }
    let mut values = vec![0i64; starts[n]];
    for r in 0..n {
        write_padded_row(
            rows,
            r,
            &mut values[starts[r]..starts[r + 1]],
            pad_value,
            side,
        );
    }
    PaddedColumn {
        name: name.to_string(),
        values,
        starts,
        uniform_width: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ragged(rows: &[&[i64]]) -> Ragged {
        Ragged::from_rows(rows)
    }

    #[test]
    fn spec_parse_and_widths() {
        let spec = PadSpec::parse("longest", None, Some(8), "left").unwrap();
        assert_eq!(spec, PadSpec::longest(Some(8), Side::Left));
        assert_eq!(spec.width([3, 13, 2].into_iter()), 16);
        assert_eq!(spec.width(std::iter::empty()), 0);
        let fixed = PadSpec::parse("max_length", Some(10), Some(4), "right").unwrap();
        assert_eq!(fixed.target, PadTarget::Fixed(10));
        assert_eq!(fixed.width([30].into_iter()), 12);
        let none = PadSpec::parse("do_not_pad", None, Some(8), "right").unwrap();
        assert_eq!(
            none.width([5, 7].into_iter()),
            0,
            "no padding ignores the multiple"
        );
        assert_eq!(none.width_for(PadTarget::Longest, [5, 7].into_iter()), 8);
        for (strategy, length, side, message) in [
            (
                "max_length",
                None,
                "right",
                "padding='max_length' needs max_length",
            ),
            (
                "shortest",
                None,
                "right",
                "padding must be 'longest', 'max_length' or 'do_not_pad', got \"shortest\"",
            ),
            (
                "longest",
                None,
                "up",
                "padding_side must be 'left' or 'right', got \"up\"",
            ),
        ] {
            let err = PadSpec::parse(strategy, length, None, side).unwrap_err();
            assert!(matches!(err, FerrotuneError::InvalidArgument(_)));
            assert_eq!(err.to_string(), message);
        }
    }

    #[test]
    fn pad_rows_matrix_both_sides_and_ragged_when_rows_are_longer() {
        let rows = ragged(&[&[1, 2, 3], &[4]]);
        let out = pad_rows("input_ids", &rows, 4, 0, Side::Left);
        assert_eq!(out.values, vec![0, 1, 2, 3, 0, 0, 0, 4]);
        assert_eq!(out.uniform_width, Some(4));
        assert_eq!(out.starts, vec![0, 4, 8]);
        let out = pad_rows("input_ids", &rows, 2, 9, Side::Right);
        assert_eq!(out.uniform_width, None);
        assert_eq!(out.values, vec![1, 2, 3, 4, 9]);
        assert_eq!(out.starts, vec![0, 3, 5]);
        let out = pad_rows("input_ids", &rows, 2, 9, Side::Left);
        assert_eq!(out.values, vec![1, 2, 3, 9, 4]);
        let unpadded = pad_rows("input_ids", &rows, 0, 9, Side::Left);
        assert_eq!(
            (unpadded.values, unpadded.starts),
            (rows.values.clone(), rows.starts.clone())
        );
        let empty = pad_rows("input_ids", &Ragged::new(), 8, 0, Side::Right);
        assert!(empty.values.is_empty());
        assert_eq!((empty.starts, empty.uniform_width), (vec![0], Some(8)));
    }

    #[test]
    fn large_batch_parallel_path_matches_sequential() {
        let rows: Vec<Vec<i64>> = (0..3000).map(|i| (0..(i % 50) as i64).collect()).collect();
        let refs: Vec<&[i64]> = rows.iter().map(|r| r.as_slice()).collect();
        let out = pad_rows("input_ids", &ragged(&refs), 49, -7, Side::Left);
        for (r, row) in rows.iter().enumerate() {
            let got = &out.values[r * 49..(r + 1) * 49];
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
        let err =
            check_same_lengths("input_ids", &lengths, "labels", &ragged(&[&[1]])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "'labels' has 1 examples but 'input_ids' has 2"
        );
    }

    #[test]
    fn picked_rows_follow_the_picks() {
        let rows = ragged(&[&[1, 2, 3], &[4], &[5, 6]]);
        let picked = Picked {
            rows: &rows,
            picks: &[2, 0, 2],
        };
        assert_eq!(picked.row_lengths(), vec![2, 3, 2]);
        let out = pad_rows("input_ids", &picked, 3, 0, Side::Right);
        assert_eq!(out.values, vec![5, 6, 0, 1, 2, 3, 5, 6, 0]);
    }
}
