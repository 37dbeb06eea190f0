//! transformers' truncation settings, shared by the engine and the direct path.

use crate::buffers::Side;
use crate::error::{FerrotuneError, Result};

/// transformers' truncation strategies (`truncation=True` is `LongestFirst`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TruncationStrategy {
    LongestFirst,
    OnlyFirst,
    OnlySecond,
}

impl TruncationStrategy {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "longest_first" => Ok(Self::LongestFirst),
            "only_first" => Ok(Self::OnlyFirst),
            "only_second" => Ok(Self::OnlySecond),
            other => Err(FerrotuneError::InvalidArgument(format!(
                "truncation must be True, False, None, 'longest_first', 'only_first', 'only_second' or 'do_not_truncate', got {other:?}"
            ))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Truncation {
    pub max_length: usize,
    pub stride: usize,
    pub strategy: TruncationStrategy,
    pub side: Side,
}
