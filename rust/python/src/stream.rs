//! Bindings of the streaming loader's Rust side: a window of tokenized examples (`TokenRows`)
//! built from Arrow text or token-id arrays, its batch plans and its collated batches.

use std::sync::Arc;

use ferrotune_core::arrow::{read_int_lists, read_strings};
use ferrotune_core::chat::TemplateValue;
use ferrotune_core::conversations::{
    encode_conversations, Boundaries, Conversation, ConversationOptions, LossOn,
};
use ferrotune_core::engine::{EncodeRequest, OutputSelection, Truncation, TruncationStrategy};
use ferrotune_core::stream::{
    collate_packed, collate_padded, index_rows, plan_packs, plan_paired_batches, BatchLimit, Piece,
    PlanSpec, TokenRows,
};
use ferrotune_core::{FerrotuneError, PadSpec, Ragged};
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;

use crate::arrow_ffi::ArrowExport;
use crate::chat::{template_value, PyChatTemplate};
use crate::collate::{flat_arrays, FlatArrays};
use crate::{core_result, guarded, parse_side, run_detached, to_py_err, PyTokenizer};

/// Tokenized examples of one window of the stream.
#[pyclass(module = "ferrotune._core", name = "TokenRows", frozen)]
pub struct PyTokenRows {
    rows: TokenRows,
}

type PaddedArrays<'py> = (
    Bound<'py, PyArray2<i64>>,
    Bound<'py, PyArray2<i64>>,
    Option<Bound<'py, PyArray2<i64>>>,
    Option<Bound<'py, PyArray2<i64>>>,
);

type RaggedArrays<'py> = (
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i64>>,
    Option<Bound<'py, PyArray1<i64>>>,
);

/// Rows with labels, the kept conversations' indices, the dropped ones'.
type EncodedConversationArrays<'py> = (
    PyTokenRows,
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i64>>,
);

type RowIndexArrays<'py> = (Bound<'py, PyArray1<u64>>, Bound<'py, PyArray1<i64>>, u64);

fn strings_of(py: Python<'_>, array: &Bound<'_, PyAny>, column: &str) -> PyResult<Vec<String>> {
    let exported = ArrowExport::new(array, None)?;
    core_result(py, read_strings(exported.view(), column))
}

fn int_lists_of(py: Python<'_>, array: &Bound<'_, PyAny>, column: &str) -> PyResult<Ragged> {
    let exported = ArrowExport::new(array, None)?;
    core_result(py, read_int_lists(exported.view(), column))
}

fn matrix(
    py: Python<'_>,
    rows: usize,
    width: usize,
    values: Vec<i64>,
) -> PyResult<Bound<'_, PyArray2<i64>>> {
    Array2::from_shape_vec((rows, width), values)
        .map(|array| array.into_pyarray(py))
        .map_err(|err| {
            to_py_err(
                py,
                FerrotuneError::Internal(format!("a {rows}x{width} batch: {err}")),
            )
        })
}

#[pymethods]
impl PyTokenRows {
    /// Tokenizes an Arrow string array (and the pair column's), without padding.
    #[staticmethod]
    #[pyo3(signature = (tokenizer, texts, pairs=None, *, text_column="text", pair_column="text_pair",
        max_length=None, truncation_strategy="longest_first", truncation_side="right",
        add_special_tokens=true, return_token_type_ids=true))]
    #[allow(clippy::too_many_arguments)]
    fn encode(
        py: Python<'_>,
        tokenizer: &PyTokenizer,
        texts: &Bound<'_, PyAny>,
        pairs: Option<&Bound<'_, PyAny>>,
        text_column: &str,
        pair_column: &str,
        max_length: Option<usize>,
        truncation_strategy: &str,
        truncation_side: &str,
        add_special_tokens: bool,
        return_token_type_ids: bool,
    ) -> PyResult<Self> {
        guarded(py, || {
            let texts = strings_of(py, texts, text_column)?;
            let pairs = pairs.map(|p| strings_of(py, p, pair_column)).transpose()?;
            let truncation = match max_length {
                None => None,
                Some(max_length) => Some(Truncation {
                    max_length,
                    stride: 0,
                    strategy: core_result(py, TruncationStrategy::parse(truncation_strategy))?,
                    side: parse_side(py, truncation_side, "truncation_side")?,
                }),
            };
            let request = EncodeRequest {
                add_special_tokens,
                truncation,
                padding: PadSpec::NONE,
                pad_id: 0,
                pad_type_id: 0,
                outputs: OutputSelection {
                    token_type_ids: return_token_type_ids,
                    ..OutputSelection::default()
                },
            };
            let engine = Arc::clone(&tokenizer.engine);
            let rows = run_detached(py, move || {
                let batch = engine.encode_batch(&texts, pairs.as_deref(), &request)?;
                TokenRows::new(
                    Ragged::from_parts(batch.input_ids, batch.starts)?,
                    batch.token_type_ids,
                )
            })?;
            Ok(PyTokenRows { rows })
        })
    }

    /// Renders, tokenizes and labels conversations (lists of message dicts; with `prompt_messages`,
    /// conversation `i`'s first `prompt_messages[i]` messages are its prompt and the rest its
    /// completion): `(rows with labels, kept, dropped)`, the indices of the conversations kept and
    /// of those left out with no token to learn (`drop_empty`; an error otherwise).
    #[staticmethod]
    #[pyo3(signature = (template, tokenizer, conversations, *, prompt_messages=None, variables=None,
        loss_on="assistant", boundaries="tokens", max_length=None, drop_empty=false))]
    #[allow(clippy::too_many_arguments)]
    fn encode_conversations<'py>(
        py: Python<'py>,
        template: PyRef<'py, PyChatTemplate>,
        tokenizer: &PyTokenizer,
        conversations: Vec<Bound<'py, PyAny>>,
        prompt_messages: Option<Vec<usize>>,
        variables: Option<Bound<'py, pyo3::types::PyDict>>,
        loss_on: &str,
        boundaries: &str,
        max_length: Option<usize>,
        drop_empty: bool,
    ) -> PyResult<EncodedConversationArrays<'py>> {
        guarded(py, || {
            if let Some(counts) = &prompt_messages {
                if counts.len() != conversations.len() {
                    return Err(to_py_err(
                        py,
                        FerrotuneError::InvalidInput(format!(
                            "{} conversations but {} prompt lengths",
                            conversations.len(),
                            counts.len()
                        )),
                    ));
                }
            }
            let mut owned = Vec::with_capacity(conversations.len());
            for (index, conversation) in conversations.iter().enumerate() {
                let messages = match template_value(conversation)? {
                    TemplateValue::List(messages) if !messages.is_empty() => messages,
                    _ => {
                        return Err(to_py_err(
                            py,
                            FerrotuneError::InputType(format!(
                                "conversation {index}: a conversation is a non-empty list of message dicts"
                            )),
                        ))
                    }
                };
                owned.push(Conversation {
                    messages,
                    prompt_messages: prompt_messages.as_ref().map(|counts| counts[index]),
                });
            }
            let mut pairs = Vec::new();
            if let Some(variables) = &variables {
                for (key, value) in variables.iter() {
                    pairs.push((key.extract::<String>()?, template_value(&value)?));
                }
            }
            let options = ConversationOptions {
                loss_on: core_result(py, LossOn::parse(loss_on))?,
                boundaries: core_result(py, Boundaries::parse(boundaries))?,
                max_length,
                drop_empty,
                variables: pairs,
            };
            let engine = Arc::clone(&tokenizer.engine);
            let chat = &template.template;
            let encoded = run_detached(py, move || {
                encode_conversations(chat, &engine, &owned, &options)
            })?;
            let rows = core_result(py, TokenRows::with_labels(encoded.ids, encoded.labels))?;
            let indices = |v: Vec<usize>| v.into_iter().map(|i| i as i64).collect::<Vec<i64>>();
            Ok((
                PyTokenRows { rows },
                indices(encoded.kept).into_pyarray(py),
                indices(encoded.dropped).into_pyarray(py),
            ))
        })
    }

    /// The rows' labels (aligned with the ids of `ragged()`), or None.
    fn labels<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyArray1<i64>>> {
        self.rows.labels.clone().map(|l| l.into_pyarray(py))
    }

    /// Wraps pre-tokenized `list<int>` Arrow arrays (ids, and optionally token type ids and
    /// per-token labels).
    #[staticmethod]
    #[pyo3(signature = (ids, type_ids=None, *, labels=None, column="input_ids"))]
    fn from_arrow(
        py: Python<'_>,
        ids: &Bound<'_, PyAny>,
        type_ids: Option<&Bound<'_, PyAny>>,
        labels: Option<&Bound<'_, PyAny>>,
        column: &str,
    ) -> PyResult<Self> {
        guarded(py, || {
            let ids = int_lists_of(py, ids, column)?;
            let aligned = |array: Option<&Bound<'_, PyAny>>, name: &str| match array {
                None => Ok(None),
                Some(array) => {
                    let values = int_lists_of(py, array, name)?;
                    if values.starts != ids.starts {
                        return Err(to_py_err(
                            py,
                            FerrotuneError::InvalidInput(format!(
                                "'{name}' and '{column}' differ in length in some example"
                            )),
                        ));
                    }
                    Ok(Some(values.values))
                }
            };
            let type_ids = aligned(type_ids, "token_type_ids")?;
            let labels = aligned(labels, "labels")?;
            let mut rows = core_result(py, TokenRows::new(ids, type_ids))?;
            rows.labels = labels;
            Ok(PyTokenRows { rows })
        })
    }

    fn __len__(&self) -> usize {
        self.rows.rows()
    }

    fn lengths<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        let lengths: Vec<i64> = self.rows.lengths().iter().map(|&l| l as i64).collect();
        lengths.into_pyarray(py)
    }

    /// All rows as `(ids, starts, token_type_ids or None)`: row `i` is `ids[starts[i]:starts[i + 1]]`.
    fn ragged<'py>(&self, py: Python<'py>) -> RaggedArrays<'py> {
        let starts: Vec<i64> = self.rows.ids.starts.iter().map(|&s| s as i64).collect();
        (
            self.rows.ids.values.clone().into_pyarray(py),
            starts.into_pyarray(py),
            self.rows.type_ids.clone().map(|t| t.into_pyarray(py)),
        )
    }

    /// Plans the window's batches: a list of row-index arrays. `targets` (seq2seq: the examples'
    /// target rows, padded on their own) count in token budgets and length buckets too.
    #[pyo3(signature = (*, batch_size=None, max_tokens=None, bucket_by_length=false, shuffle=false,
        drop_last=false, pad_to_multiple_of=None, seed=0, targets=None))]
    #[allow(clippy::too_many_arguments)]
    fn plan<'py>(
        &self,
        py: Python<'py>,
        batch_size: Option<usize>,
        max_tokens: Option<usize>,
        bucket_by_length: bool,
        shuffle: bool,
        drop_last: bool,
        pad_to_multiple_of: Option<usize>,
        seed: u64,
        targets: Option<PyRef<'py, PyTokenRows>>,
    ) -> PyResult<Vec<Bound<'py, PyArray1<i64>>>> {
        guarded(py, || {
            let limit = match (batch_size, max_tokens) {
                (_, Some(max_tokens)) => BatchLimit::Tokens {
                    max_tokens,
                    max_examples: batch_size,
                },
                (Some(size), None) => BatchLimit::Examples(size),
                (None, None) => {
                    return Err(to_py_err(
                        py,
                        FerrotuneError::InvalidArgument("give batch_size or max_tokens".into()),
                    ))
                }
            };
            let spec = PlanSpec {
                limit,
                bucket_by_length,
                shuffle,
                drop_last,
                pad_to_multiple_of,
            };
            let lengths = self.rows.lengths();
            let target_lengths = targets.map(|t| t.rows.lengths());
            let batches = run_detached(py, move || {
                plan_paired_batches(&lengths, target_lengths.as_deref(), &spec, seed)
            })?;
            Ok(batches
                .into_iter()
                .map(|rows| {
                    rows.into_iter()
                        .map(|r| r as i64)
                        .collect::<Vec<_>>()
                        .into_pyarray(py)
                })
                .collect())
        })
    }

    /// Plans padding-free packs of at most `capacity` tokens: a list of `[pieces, 3]` arrays of
    /// `(row, start, end)`.
    #[pyo3(signature = (capacity, *, split=false, shuffle=false, seed=0))]
    fn plan_packs<'py>(
        &self,
        py: Python<'py>,
        capacity: usize,
        split: bool,
        shuffle: bool,
        seed: u64,
    ) -> PyResult<Vec<Bound<'py, PyArray2<i64>>>> {
        guarded(py, || {
            let lengths = self.rows.lengths();
            let packs = run_detached(py, move || {
                plan_packs(&lengths, capacity, split, shuffle, seed)
            })?;
            packs
                .into_iter()
                .map(|pieces| {
                    let n = pieces.len();
                    let flat: Vec<i64> = pieces
                        .iter()
                        .flat_map(|p| [p.row as i64, p.start as i64, p.end as i64])
                        .collect();
                    matrix(py, n, 3, flat)
                })
                .collect()
        })
    }

    /// Pads rows `indices` into `(input_ids, attention_mask, token_type_ids or None, labels or
    /// None)`: labels (rows that have them) are padded with -100.
    #[pyo3(signature = (indices, *, pad_id=0, pad_type_id=0, padding_side="right", pad_to_multiple_of=None))]
    fn collate<'py>(
        &self,
        py: Python<'py>,
        indices: PyReadonlyArray1<'py, i64>,
        pad_id: i64,
        pad_type_id: i64,
        padding_side: &str,
        pad_to_multiple_of: Option<usize>,
    ) -> PyResult<PaddedArrays<'py>> {
        guarded(py, || {
            let side = parse_side(py, padding_side, "padding_side")?;
            let indices: Vec<usize> = indices
                .as_slice()?
                .iter()
                .map(|&i| usize::try_from(i).unwrap_or(usize::MAX))
                .collect();
            let batch = core_result(
                py,
                collate_padded(
                    &self.rows,
                    &indices,
                    pad_id,
                    pad_type_id,
                    side,
                    pad_to_multiple_of,
                ),
            )?;
            let (rows, width) = (batch.rows, batch.width);
            Ok((
                matrix(py, rows, width, batch.input_ids)?,
                matrix(py, rows, width, batch.attention_mask)?,
                batch
                    .token_type_ids
                    .map(|t| matrix(py, rows, width, t))
                    .transpose()?,
                batch
                    .labels
                    .map(|l| matrix(py, rows, width, l))
                    .transpose()?,
            ))
        })
    }

    /// Concatenates the pieces of a pack: `(input_ids, labels, position_ids, cu_seq_lens,
    /// max_length)`.
    #[pyo3(signature = (pieces, *, separator_id=-100, position_ids_start=0))]
    fn pack<'py>(
        &self,
        py: Python<'py>,
        pieces: PyReadonlyArray2<'py, i64>,
        separator_id: i64,
        position_ids_start: i64,
    ) -> PyResult<FlatArrays<'py>> {
        guarded(py, || {
            let pieces = pieces.as_array();
            if pieces.ncols() != 3 {
                return Err(to_py_err(
                    py,
                    FerrotuneError::InvalidArgument(
                        "pieces must be an array of (row, start, end) triples".into(),
                    ),
                ));
            }
            let to_index = |v: i64| usize::try_from(v).unwrap_or(usize::MAX);
            let pieces: Vec<Piece> = pieces
                .rows()
                .into_iter()
                .map(|p| Piece {
                    row: to_index(p[0]),
                    start: to_index(p[1]),
                    end: to_index(p[2]),
                })
                .collect();
            let packed = core_result(
                py,
                collate_packed(&self.rows, &pieces, separator_id, position_ids_start),
            )?;
            Ok(flat_arrays(py, packed))
        })
    }
}

/// Indexes the rows of a JSONL / CSV file: `(unit_offsets, unit_rows, header_end)`.
#[pyfunction]
#[pyo3(signature = (path, *, quote=None, has_header=false, rows_per_unit=8192))]
pub fn index_line_rows<'py>(
    py: Python<'py>,
    path: std::path::PathBuf,
    quote: Option<char>,
    has_header: bool,
    rows_per_unit: usize,
) -> PyResult<RowIndexArrays<'py>> {
    guarded(py, || {
        let quote = match quote {
            None => None,
            Some(c) if c.is_ascii() => Some(c as u8),
            Some(c) => {
                return Err(to_py_err(
                    py,
                    FerrotuneError::InvalidArgument(format!(
                        "the quote character must be ASCII, got {c:?}"
                    )),
                ))
            }
        };
        let index = run_detached(py, move || {
            index_rows(&path, quote, has_header, rows_per_unit)
        })?;
        let rows: Vec<i64> = index.unit_rows.iter().map(|&r| r as i64).collect();
        Ok((
            index.unit_offsets.into_pyarray(py),
            rows.into_pyarray(py),
            index.header_end,
        ))
    })
}
