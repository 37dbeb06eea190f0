//! Collation entry points: a batch of examples (a list of dicts, a dict of columns, or an Arrow
//! record batch) padded in one call by the core's collation plan, flattening, and MLM masking.
//! This module only converts: it reads the Python values into rows, allocates the NumPy outputs
//! the core's plan lays out, and hands the results back; every rule lives in
//! `ferrotune_core::collate`.

use std::borrow::Cow;
use std::sync::Mutex;

use ferrotune_core::arrow::Numbers;
use ferrotune_core::collate::{
    empty_batch, flatten, BatchColumn, CollationPlan, ColumnRule, PadJob, Width,
};
use ferrotune_core::mlm::{mask_tokens as core_mask_tokens, MaskingConfig};
use ferrotune_core::{FerrotuneError, PadSpec, PaddedColumn, Ragged, RowSource};
use numpy::ndarray::Array2;
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray2, PyReadwriteArray2,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::arrow_ffi::{ArrowExport, CachedSchema};
use crate::{
    core_result, extract_row, guarded, run_detached, sequence_items, to_py_err, type_error,
    type_name,
};

/// Below this many output values padding stays on the calling thread with the GIL held: releasing
/// and retaking it would cost more than the copy.
const DETACH_MIN_VALUES: usize = 1 << 15;

/// One collated output column, in the order the batch's keys came.
enum Collated {
    /// A `rows x width` int64 matrix, already written by padding.
    Padded(Py<PyArray2<i64>>),
    /// Rows that do not share one length (a fixed target shorter than some rows, or no padding).
    Ragged(PaddedColumn),
    Ints(Vec<i64>),
    Floats(Vec<f64>),
    /// Values ferrotune does not convert itself (strings, nested lists of keys that are not
    /// padded...): Python converts them as transformers would, or reports them.
    Objects(Py<PyList>),
}

/// What the Python side receives per column: `(name, kind, data, starts)`.
type CollatedTuple<'py> = (
    Bound<'py, PyString>,
    &'static str,
    Bound<'py, PyAny>,
    Option<Bound<'py, PyAny>>,
);

/// `(kind, data, starts)` of one column.
type KindData<'py> = (&'static str, Bound<'py, PyAny>, Option<Bound<'py, PyAny>>);

/// A flattened batch: `(input_ids, labels, position_ids, cu_seq_lens, max_length)`.
pub(crate) type FlatArrays<'py> = (
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i32>>,
    usize,
);

impl Collated {
    /// `(kind, data, starts)`; a matrix or an int vector goes through `convert` when given.
    fn into_python<'py>(
        self,
        py: Python<'py>,
        convert: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<KindData<'py>> {
        let converted = |array: Bound<'py, PyAny>| match convert {
            Some(convert) => convert.call1((array,)),
            None => Ok(array),
        };
        Ok(match self {
            Collated::Padded(matrix) => {
                ("padded", converted(matrix.into_bound(py).into_any())?, None)
            }
            Collated::Ragged(column) => {
                let starts: Vec<i64> = column.starts.iter().map(|&s| s as i64).collect();
                (
                    "ragged",
                    column.values.into_pyarray(py).into_any(),
                    Some(starts.into_pyarray(py).into_any()),
                )
            }
            Collated::Ints(values) => ("int", converted(values.into_pyarray(py).into_any())?, None),
            Collated::Floats(values) => ("float", values.into_pyarray(py).into_any(), None),
            Collated::Objects(list) => ("object", list.into_bound(py).into_any(), None),
        })
    }

    /// Whether the column is finished here (a tensor or array); the others go back to Python as
    /// a `(kind, data, starts)` tuple to convert (see `CollatePlan.arrow_dict`).
    fn is_final(&self) -> bool {
        matches!(self, Collated::Padded(_) | Collated::Ints(_))
    }
}

/// The columns of one batch, read but not yet padded.
struct Gathered<'a> {
    /// Every column name in batch order.
    order: Vec<Cow<'a, str>>,
    /// Columns of token rows, padded by the plan.
    rows: Vec<(Cow<'a, str>, Box<dyn RowSource + 'a>)>,
    /// Columns passed through (numbers, objects).
    other: Vec<(Cow<'a, str>, Collated)>,
}

impl<'a> Gathered<'a> {
    fn with_capacity(columns: usize) -> Self {
        Gathered {
            order: Vec::with_capacity(columns),
            rows: Vec::with_capacity(columns),
            other: Vec::new(),
        }
    }

    fn find(&self, key: &str) -> Option<&dyn RowSource> {
        self.rows
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, rows)| &**rows as &dyn RowSource)
    }
}

/// The resolved padding settings of a collator or of `tokenizer.pad`: the core's collation plan,
/// built once per distinct setting (callers cache it), then applied to every batch.
#[pyclass(module = "ferrotune._core", frozen)]
pub struct CollatePlan {
    plan: CollationPlan,
    schema_cache: Mutex<Option<CachedSchema>>,
}

impl CollatePlan {
    /// Pads the gathered rows as the plan lays them out and returns every column in batch order
    /// (a made column, such as a fresh attention mask, last).
    fn finish<'a>(
        &self,
        py: Python<'_>,
        gathered: Gathered<'a>,
    ) -> PyResult<Vec<(Cow<'a, str>, Collated)>> {
        let Gathered {
            mut order,
            rows,
            mut other,
        } = gathered;
        let inputs: Vec<(&str, &dyn RowSource)> = rows
            .iter()
            .map(|(name, rows)| (&**name, &**rows as &dyn RowSource))
            .collect();
        let jobs = core_result(py, self.plan.jobs(&inputs))?;
        let spec = self.plan.spec;
        // Matrices are allocated in NumPy and written in place; rows longer than the target keep
        // their length and come back ragged.
        let mut padded: Vec<(&str, Collated)> = Vec::with_capacity(jobs.len());
        let mut matrices = Vec::new();
        let mut fills: Vec<&PadJob<'_>> = Vec::new();
        for job in &jobs {
            if job.is_matrix() {
                // SAFETY: every element is written by `fill` below before Python sees it.
                let matrix =
                    unsafe { PyArray2::<i64>::new(py, [job.source().rows(), job.width], false) };
                matrices.push((job.name, matrix));
                fills.push(job);
            } else {
                padded.push((job.name, Collated::Ragged(job.padded(&spec))));
            }
        }
        {
            let mut outputs: Vec<&mut [i64]> = Vec::with_capacity(matrices.len());
            for (_, matrix) in &matrices {
                // SAFETY: the arrays were just created here; nothing else holds a view of them.
                outputs.push(unsafe { matrix.as_slice_mut() }.map_err(PyErr::from)?);
            }
            let total: usize = outputs.iter().map(|out| out.len()).sum();
            let work = move || {
                for (job, out) in fills.into_iter().zip(outputs) {
                    job.fill(&spec, out);
                }
                Ok(())
            };
            if total >= DETACH_MIN_VALUES {
                run_detached(py, work)?;
            } else {
                core_result(py, work())?; // under the entry point's guard
            }
        }
        padded.extend(
            matrices
                .into_iter()
                .map(|(name, matrix)| (name, Collated::Padded(matrix.unbind()))),
        );
        let names: Vec<&str> = inputs.iter().map(|(name, _)| *name).collect();
        if let Some(made) = self.plan.made_column(&names) {
            order.push(Cow::Owned(made.to_string()));
        }
        let mut out = Vec::with_capacity(order.len());
        for name in order {
            let column = if let Some(i) = padded.iter().position(|(n, _)| *n == name) {
                padded.swap_remove(i).1
            } else if let Some(i) = other.iter().position(|(n, _)| *n == name) {
                other.swap_remove(i).1
            } else {
                continue;
            };
            out.push((name, column));
        }
        Ok(out)
    }

    fn tuples<'py>(
        py: Python<'py>,
        columns: Vec<(Cow<'_, str>, Collated)>,
    ) -> PyResult<Vec<CollatedTuple<'py>>> {
        columns
            .into_iter()
            .map(|(name, column)| {
                let (kind, data, starts) = column.into_python(py, None)?;
                Ok((PyString::new(py, &name), kind, data, starts))
            })
            .collect()
    }

    /// `({name: value}, pending)`: matrices and int vectors are final (through `convert`); the
    /// names in `pending` hold a `(kind, data, starts)` tuple for Python to convert.
    fn dict<'py>(
        py: Python<'py>,
        columns: Vec<(Cow<'_, str>, Collated)>,
        convert: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyDict>, Bound<'py, PyList>)> {
        let out = PyDict::new(py);
        let pending = PyList::empty(py);
        for (name, column) in columns {
            let key = PyString::new(py, &name);
            let is_final = column.is_final();
            let (kind, data, starts) = column.into_python(py, convert)?;
            if is_final {
                out.set_item(key, data)?;
            } else {
                out.set_item(
                    &key,
                    PyTuple::new(
                        py,
                        [
                            kind.into_pyobject(py)?.into_any(),
                            data,
                            starts.unwrap_or_else(|| py.None().into_bound(py)),
                        ],
                    )?,
                )?;
                pending.append(key)?;
            }
        }
        Ok((out, pending))
    }

    /// The batch's padded columns, from a list of examples or an Arrow record batch.
    fn gather_any<'a, 'py: 'a>(
        &self,
        py: Python<'py>,
        features: &Bound<'py, PyAny>,
        export: &'a mut Option<ArrowExport<'py>>,
        only_padded: bool,
    ) -> PyResult<Gathered<'a>> {
        if features.cast::<PyList>().is_ok() || features.cast::<PyTuple>().is_ok() {
            return self.gather_examples(py, features, only_padded);
        }
        let export = export.insert(ArrowExport::new(features, Some(&self.schema_cache))?);
        self.gather_arrow(py, export, only_padded)
    }
}

#[pymethods]
impl CollatePlan {
    /// `pad_values`: the keys padded together with the model's main input (first), and their pad
    /// values; `independent`: `(key, pad_value, mode, max_length)` of keys padded on their own
    /// terms (`mode` is "main" for the main input's width, or a padding strategy).
    #[new]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (pad_values, create_attention_mask, padding, max_length, pad_to_multiple_of, padding_side, independent=Vec::new()))]
    fn new(
        py: Python<'_>,
        pad_values: Vec<(String, i64)>,
        create_attention_mask: bool,
        padding: &str,
        max_length: Option<usize>,
        pad_to_multiple_of: Option<usize>,
        padding_side: &str,
        independent: Vec<(String, i64, String, Option<usize>)>,
    ) -> PyResult<Self> {
        guarded(py, || {
            let spec = core_result(
                py,
                PadSpec::parse(padding, max_length, pad_to_multiple_of, padding_side),
            )?;
            let ones = (create_attention_mask
                && pad_values.iter().any(|(name, _)| name == "attention_mask"))
            .then(|| "attention_mask".to_string());
            let mut columns: Vec<ColumnRule> = pad_values
                .into_iter()
                .map(|(name, pad_value)| ColumnRule::new(name, pad_value, Width::Aligned))
                .collect();
            for (name, pad_value, mode, length) in independent {
                let width = core_result(py, Width::parse(&mode, length))?;
                columns.push(ColumnRule::new(name, pad_value, width));
            }
            Ok(CollatePlan {
                plan: core_result(py, CollationPlan::new(spec, columns, ones))?,
                schema_cache: Mutex::new(None),
            })
        })
    }

    /// Collates a list of examples (dicts of lists / NumPy arrays / torch tensors / numbers) into
    /// `(name, kind, data, starts)` per column.
    fn examples<'py>(
        &self,
        py: Python<'py>,
        features: &Bound<'py, PyAny>,
    ) -> PyResult<Vec<CollatedTuple<'py>>> {
        guarded(py, || {
            Self::tuples(
                py,
                self.finish(py, self.gather_examples(py, features, false)?)?,
            )
        })
    }

    /// Collates an Arrow record batch into `(name, kind, data, starts)` per column.
    fn arrow<'py>(
        &self,
        py: Python<'py>,
        batch: &Bound<'py, PyAny>,
    ) -> PyResult<Vec<CollatedTuple<'py>>> {
        guarded(py, || {
            let export = ArrowExport::new(batch, Some(&self.schema_cache))?;
            let gathered = self.gather_arrow(py, &export, false)?;
            Self::tuples(py, self.finish(py, gathered)?)
        })
    }

    /// Like `examples`, as `({name: value}, pending)` (see `dict`).
    #[pyo3(signature = (features, convert=None))]
    fn examples_dict<'py>(
        &self,
        py: Python<'py>,
        features: &Bound<'py, PyAny>,
        convert: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyDict>, Bound<'py, PyList>)> {
        guarded(py, || {
            Self::dict(
                py,
                self.finish(py, self.gather_examples(py, features, false)?)?,
                convert,
            )
        })
    }

    /// Like `arrow`, as `({name: value}, pending)` (see `dict`).
    #[pyo3(signature = (batch, convert=None))]
    fn arrow_dict<'py>(
        &self,
        py: Python<'py>,
        batch: &Bound<'py, PyAny>,
        convert: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyDict>, Bound<'py, PyList>)> {
        guarded(py, || {
            let export = ArrowExport::new(batch, Some(&self.schema_cache))?;
            let gathered = self.gather_arrow(py, &export, false)?;
            Self::dict(py, self.finish(py, gathered)?, convert)
        })
    }

    /// Pads columns given as `{key: rows}` (one list of token ids per example, keys the plan pads;
    /// `tokenizer.pad`): `(name, kind, data, starts)` per padded column.
    fn columns<'py>(
        &self,
        py: Python<'py>,
        columns: &Bound<'py, PyDict>,
    ) -> PyResult<Vec<CollatedTuple<'py>>> {
        guarded(py, || {
            let mut gathered = Gathered::with_capacity(columns.len());
            for (key, rows) in columns.iter() {
                let name: String = key.extract()?;
                let Some(items) = sequence_items(&rows) else {
                    return Err(type_error(
                        py,
                        format!(
                            "'{name}' must be a list of examples, got {}",
                            type_name(&rows)
                        ),
                    ));
                };
                let mut ragged = Ragged::with_capacity(items.len(), 0);
                for (index, item) in items.iter().enumerate() {
                    extract_row(py, item, &mut ragged.values, &name, index)?;
                    ragged.starts.push(ragged.values.len());
                }
                gathered.order.push(Cow::Owned(name.clone()));
                gathered.rows.push((Cow::Owned(name), Box::new(ragged)));
            }
            Self::tuples(py, self.finish(py, gathered)?)
        })
    }

    /// Flattens the batch's main input (and `labels` when the plan pads them and the batch has
    /// them) into one sequence: `DataCollatorWithFlattening`. Returns `(input_ids, labels,
    /// position_ids, cu_seq_lens, max_length)`.
    #[pyo3(signature = (features, *, separator_id=-100, position_ids_start=0))]
    fn flatten<'py>(
        &self,
        py: Python<'py>,
        features: &Bound<'py, PyAny>,
        separator_id: i64,
        position_ids_start: i64,
    ) -> PyResult<FlatArrays<'py>> {
        guarded(py, || {
            let mut export = None;
            let gathered = self.gather_any(py, features, &mut export, true)?;
            let main = self.plan.reference();
            let rows = gathered
                .find(main)
                .ok_or_else(|| to_py_err(py, self.plan.missing_reference(&gathered.order)))?;
            let labels = gathered.find("labels");
            let flat = core_result(py, flatten(rows, labels, separator_id, position_ids_start))?;
            Ok(flat_arrays(py, flat))
        })
    }
}

/// A flattened batch as NumPy arrays.
pub(crate) fn flat_arrays(
    py: Python<'_>,
    flat: ferrotune_core::collate::Flattened,
) -> FlatArrays<'_> {
    (
        flat.input_ids.into_pyarray(py),
        flat.labels.into_pyarray(py),
        flat.position_ids.into_pyarray(py),
        flat.cu_seq_lens.into_pyarray(py),
        flat.max_length,
    )
}

impl CollatePlan {
    /// Reads an exported record batch through the core: padded columns as rows in place, the
    /// others as numbers.
    fn gather_arrow<'a>(
        &self,
        py: Python<'_>,
        export: &'a ArrowExport<'_>,
        only_padded: bool,
    ) -> PyResult<Gathered<'a>> {
        let columns = core_result(py, self.plan.read_record_batch(export.view(), only_padded))?;
        let mut gathered = Gathered::with_capacity(columns.len());
        for (name, column) in columns {
            let name: Cow<'a, str> = Cow::Owned(name);
            gathered.order.push(name.clone());
            match column {
                BatchColumn::Rows(rows) => gathered.rows.push((name, rows)),
                BatchColumn::Numbers(Numbers::Ints(ints)) => {
                    gathered.other.push((name, Collated::Ints(ints)))
                }
                BatchColumn::Numbers(Numbers::Floats(floats)) => {
                    gathered.other.push((name, Collated::Floats(floats)))
                }
            }
        }
        Ok(gathered)
    }
}

/// A list of names as Python prints it: `['input_ids', 'label']`.
fn py_list<S: AsRef<str>>(names: &[S]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("'{}'", n.as_ref())).collect();
    format!("[{}]", quoted.join(", "))
}

fn as_dict<'py>(
    py: Python<'py>,
    example: &Bound<'py, PyAny>,
    index: usize,
) -> PyResult<Bound<'py, PyDict>> {
    if let Ok(dict) = example.cast::<PyDict>() {
        return Ok(dict.clone());
    }
    if example.hasattr("keys")? {
        // A Mapping that is not a dict (BatchEncoding, UserDict): read it through dict().
        return Ok(py
            .get_type::<PyDict>()
            .call1((example,))?
            .cast_into::<PyDict>()?);
    }
    Err(type_error(
        py,
        format!(
            "example {index} is a {}, but a collator takes a list of dicts (one per example)",
            type_name(example)
        ),
    ))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ScalarKind {
    Int,
    Float,
    Object,
}

fn scalar_kind(value: &Bound<'_, PyAny>) -> ScalarKind {
    if value.is_instance_of::<PyBool>() {
        ScalarKind::Object // torch/NumPy give booleans their own dtype: leave it to Python
    } else if value.is_instance_of::<PyInt>() {
        ScalarKind::Int
    } else if value.is_instance_of::<PyFloat>() {
        ScalarKind::Float
    } else {
        ScalarKind::Object
    }
}

fn kind_name(kind: ScalarKind) -> &'static str {
    match kind {
        ScalarKind::Int => "an int",
        ScalarKind::Float => "a float",
        ScalarKind::Object => "not a number",
    }
}

impl CollatePlan {
    /// Reads a list of examples: token columns into flat rows, the other keys as numbers or objects.
    fn gather_examples<'py>(
        &self,
        py: Python<'py>,
        features: &Bound<'py, PyAny>,
        only_padded: bool,
    ) -> PyResult<Gathered<'static>> {
        let Some(examples) = sequence_items(features) else {
            return Err(type_error(
                py,
                format!(
                    "a collator takes a list of examples, got {}",
                    type_name(features)
                ),
            ));
        };
        if examples.is_empty() {
            return Err(to_py_err(py, empty_batch()));
        }
        let dicts: Vec<Bound<'py, PyDict>> = examples
            .iter()
            .enumerate()
            .map(|(i, example)| as_dict(py, example, i))
            .collect::<PyResult<_>>()?;
        let first = &dicts[0];
        let keys: Vec<Bound<'py, PyString>> = first
            .keys()
            .iter()
            .map(|k| {
                k.cast_into::<PyString>().map_err(|k| {
                    type_error(
                        py,
                        format!("example 0 has a key that is not a str: {}", k.into_inner()),
                    )
                })
            })
            .collect::<PyResult<_>>()?;
        let names: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        if !names.iter().any(|name| name == self.plan.reference()) {
            return Err(to_py_err(py, self.plan.missing_reference(&names)));
        }
        // Flattening reads only its keys, as transformers does: other keys may differ.
        for (i, dict) in dicts.iter().enumerate().skip(1).filter(|_| !only_padded) {
            let same =
                dict.len() == keys.len() && keys.iter().all(|k| dict.contains(k).unwrap_or(false));
            if !same {
                let theirs: Vec<String> = dict.keys().iter().map(|k| k.to_string()).collect();
                let missing: Vec<&String> = names.iter().filter(|n| !theirs.contains(n)).collect();
                let extra: Vec<&String> = theirs.iter().filter(|n| !names.contains(n)).collect();
                return Err(to_py_err(
                    py,
                    FerrotuneError::InvalidInput(format!(
                        "example {i} has different keys from example 0 (missing {}, extra {})",
                        py_list(&missing),
                        py_list(&extra)
                    )),
                ));
            }
        }

        let mut gathered = Gathered::with_capacity(names.len());
        for (key, name) in keys.iter().zip(names) {
            let values: Vec<Bound<'py, PyAny>> = dicts
                .iter()
                .map(|d| {
                    d.get_item(key)
                        .map(|v| v.unwrap_or_else(|| py.None().into_bound(py)))
                })
                .collect::<PyResult<_>>()?;
            let name: Cow<'static, str> = Cow::Owned(name);
            if self.plan.pads(&name) {
                let mut rows = Ragged::with_capacity(values.len(), 0);
                for (i, value) in values.iter().enumerate() {
                    extract_row(py, value, &mut rows.values, &name, i)?;
                    rows.starts.push(rows.values.len());
                }
                gathered.rows.push((name.clone(), Box::new(rows)));
            } else if only_padded {
                continue;
            } else {
                gathered
                    .other
                    .push((name.clone(), scalar_column(py, &name, &values)?));
            }
            gathered.order.push(name);
        }
        Ok(gathered)
    }
}

/// The non-token values of one key, one per example: ints, floats, or objects for Python.
fn scalar_column(py: Python<'_>, name: &str, values: &[Bound<'_, PyAny>]) -> PyResult<Collated> {
    let kind = scalar_kind(&values[0]);
    if let Some((i, value)) = values
        .iter()
        .enumerate()
        .find(|(_, v)| kind != ScalarKind::Object && scalar_kind(v) != kind)
    {
        return Err(type_error(
            py,
            format!(
                "example {i}: '{name}' is {} ({}) but example 0's is {}: values of mixed types",
                kind_name(scalar_kind(value)),
                type_name(value),
                kind_name(kind)
            ),
        ));
    }
    Ok(match kind {
        ScalarKind::Int => Collated::Ints(
            values
                .iter()
                .map(|v| v.extract::<i64>())
                .collect::<PyResult<_>>()?,
        ),
        ScalarKind::Float => Collated::Floats(
            values
                .iter()
                .map(|v| v.extract::<f64>())
                .collect::<PyResult<_>>()?,
        ),
        ScalarKind::Object => Collated::Objects(PyList::new(py, values)?.unbind()),
    })
}

/// Masks a padded batch for MLM in place; returns the labels.
#[pyfunction]
#[pyo3(signature = (input_ids, special_tokens_mask, special_ids, mlm_probability, mask_replace_prob, random_replace_prob, mask_token_id, vocab_size, seed))]
#[allow(clippy::too_many_arguments)]
pub fn mask_tokens<'py>(
    py: Python<'py>,
    mut input_ids: PyReadwriteArray2<'py, i64>,
    special_tokens_mask: Option<PyReadonlyArray2<'py, i64>>,
    special_ids: Vec<i64>,
    mlm_probability: f64,
    mask_replace_prob: f64,
    random_replace_prob: f64,
    mask_token_id: i64,
    vocab_size: u64,
    seed: u64,
) -> PyResult<Bound<'py, PyArray2<i64>>> {
    guarded(py, || {
        let shape = [input_ids.shape()[0], input_ids.shape()[1]];
        let config = MaskingConfig {
            mlm_probability,
            mask_replace_prob,
            random_replace_prob,
            mask_token_id,
            vocab_size,
        };
        let special =
            match &special_tokens_mask {
                Some(mask) => {
                    if mask.shape() != input_ids.shape() {
                        return Err(to_py_err(
                            py,
                            FerrotuneError::InvalidInput(format!(
                                "special_tokens_mask has shape {:?} but input_ids has {:?}",
                                mask.shape(),
                                input_ids.shape()
                            )),
                        ));
                    }
                    Some(mask.as_slice().map_err(|_| {
                        type_error(py, "special_tokens_mask must be contiguous".into())
                    })?)
                }
                None => None,
            };
        let ids = input_ids
            .as_slice_mut()
            .map_err(|_| type_error(py, "input_ids must be a contiguous array".into()))?;
        let labels = {
            let originals: Vec<i64> = if special.is_none() {
                ids.to_vec()
            } else {
                Vec::new()
            };
            let maskable = |i: usize| match special {
                Some(mask) => mask[i] == 0,
                None => !special_ids.contains(&originals[i]),
            };
            core_result(py, core_mask_tokens(ids, maskable, &config, seed))?
        };
        let matrix = Array2::from_shape_vec((shape[0], shape[1]), labels)
            .map_err(|err| to_py_err(py, FerrotuneError::Internal(err.to_string())))?;
        Ok(PyArray2::from_owned_array(py, matrix))
    })
}
