//! Flat buffers for rows of token ids: one values vector plus row boundaries, never a `Vec` per row.

use crate::error::{FerrotuneError, Result};

/// Which end of a row receives padding or loses tokens to truncation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Left,
    Right,
}

impl Side {
    pub fn parse(name: &str, option: &str) -> Result<Self> {
        match name {
            "left" => Ok(Side::Left),
            "right" => Ok(Side::Right),
            other => Err(FerrotuneError::InvalidArgument(format!(
                "{option} must be 'left' or 'right', got {other:?}"
            ))),
        }
    }
}

/// Rows of varying length stored contiguously: row `i` is `values[starts[i]..starts[i + 1]]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ragged {
    pub values: Vec<i64>,
    pub starts: Vec<usize>,
}

impl Ragged {
    pub fn new() -> Self {
        Ragged {
            values: Vec::new(),
            starts: vec![0],
        }
    }

    pub fn with_capacity(rows: usize, values: usize) -> Self {
        let mut starts = Vec::with_capacity(rows + 1);
        starts.push(0);
        Ragged {
            values: Vec::with_capacity(values),
            starts,
        }
    }

    /// Builds from flat values and row boundaries, checking that the boundaries describe the values.
    pub fn from_parts(values: Vec<i64>, starts: Vec<usize>) -> Result<Self> {
        let valid = !starts.is_empty()
            && starts[0] == 0
            && *starts.last().unwrap() == values.len()
            && starts.windows(2).all(|w| w[0] <= w[1]);
        if !valid {
            return Err(FerrotuneError::InvalidInput(format!(
                "row boundaries do not describe {} values (they must start at 0, never decrease and end at the number of values)",
                values.len()
            )));
        }
        Ok(Ragged { values, starts })
    }

    /// Builds from rows given one by one (tests, small inputs).
    pub fn from_rows<R: AsRef<[i64]>>(rows: &[R]) -> Self {
        let mut out = Ragged::new();
        for row in rows {
            out.push_row(row.as_ref().iter().copied());
        }
        out
    }

    pub fn push_row<I: IntoIterator<Item = i64>>(&mut self, row: I) {
        self.values.extend(row);
        self.starts.push(self.values.len());
    }

    pub fn rows(&self) -> usize {
        self.starts.len() - 1
    }

    pub fn row(&self, i: usize) -> &[i64] {
        &self.values[self.starts[i]..self.starts[i + 1]]
    }

    pub fn row_len(&self, i: usize) -> usize {
        self.starts[i + 1] - self.starts[i]
    }
}

/// Rounds `length` up to a multiple of `multiple` (no-op for `None` or 0), as transformers does.
pub fn round_up(length: usize, multiple: Option<usize>) -> usize {
    match multiple {
        Some(m) if m > 0 && length % m != 0 => length + m - length % m,
        _ => length,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_up_matches_transformers() {
        assert_eq!(round_up(13, Some(8)), 16);
        assert_eq!(round_up(16, Some(8)), 16);
        assert_eq!(round_up(13, None), 13);
        assert_eq!(round_up(13, Some(0)), 13);
    }

    #[test]
    fn from_parts_rejects_bad_boundaries() {
        assert!(Ragged::from_parts(vec![1, 2, 3], vec![0, 2, 3]).is_ok());
        assert!(Ragged::from_parts(vec![1, 2, 3], vec![0, 2]).is_err());
        assert!(Ragged::from_parts(vec![1, 2, 3], vec![0, 3, 2, 3]).is_err());
        assert!(Ragged::from_parts(vec![], vec![]).is_err());
    }
}
