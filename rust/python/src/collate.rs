//! Collation entry points: a batch of examples (a list of dicts, or an Arrow record batch) padded in
//! one call, and MLM masking. Python only wraps the returned arrays into tensors.
//!
//! A [`CollatePlan`] holds the resolved padding settings, so a collator parses them once rather
//! than at every batch. Padded columns are written straight into NumPy arrays, from the Python
//! rows or from the Arrow buffers in place.

use std::borrow::Cow;
use std::ffi::c_void;
use std::sync::Mutex;

use ferrotune_core::buffers::round_up;
use ferrotune_core::mlm::{mask_tokens as core_mask_tokens, MaskingConfig};
use ferrotune_core::pad::{
    check_same_lengths, pad_rows, target_length, OnesLike, PadTarget, PaddedColumn, RowSource,
};
use ferrotune_core::{FerrotuneError, Ragged, Side};
use numpy::ndarray::Array2;
use numpy::{
    IntoPyArray, PyArray2, PyArrayMethods, PyReadonlyArray2, PyReadwriteArray2,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyCapsule, PyCapsuleMethods, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple, PyType,
};

use crate::arrow_ffi::{read_ints, ArrowArray, ArrowSchema, ColumnView};
use crate::{
    core_result, extract_row, guarded, parse_pad_target, parse_side, run_detached, sequence_items,
    to_py_err, type_error, type_name,
};

/// Below this many output values padding stays on the calling thread with the GIL held: releasing
/// and retaking it would cost more than the copy.
const DETACH_MIN_VALUES: usize = 1 << 15;

/// One collated output column, in the order the batch's keys came.
enum Collated {
    /// A `rows x width` int64 matrix, already written by padding.
    Matrix(Py<PyArray2<i64>>),
    /// Padded rows that do not share one length (a fixed target shorter than some rows).
    Padded(PaddedColumn),
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
            Collated::Matrix(matrix) => {
                ("padded", converted(matrix.into_bound(py).into_any())?, None)
            }
            Collated::Padded(padded) => {
                let starts: Vec<i64> = padded.starts.iter().map(|&s| s as i64).collect();
                (
                    "ragged",
                    padded.values.into_pyarray(py).into_any(),
                    Some(starts.into_pyarray(py).into_any()),
                )
            }
            Collated::Ints(values) => ("int", converted(values.into_pyarray(py).into_any())?, None),
            Collated::Floats(values) => ("float", values.into_pyarray(py).into_any(), None),
            Collated::Objects(list) => ("object", list.into_bound(py).into_any(), None),
        })
    }

    /// Whether Python needs the tuple form to finish this column (see `CollatePlan.arrow_dict`).
    fn is_final(&self) -> bool {
        matches!(self, Collated::Matrix(_) | Collated::Ints(_))
    }
}

/// The length a column padded on its own (labels) is padded to.
#[derive(Clone, Copy)]
enum LabelLength {
    /// The padded width of the reference column (token classification).
    Main,
    /// Its own longest row (seq2seq), rounded up to `pad_to_multiple_of`.
    Longest,
    /// `max_length`, rounded up to `pad_to_multiple_of`.
    Fixed(usize),
    /// Not padded.
    Unpadded,
}

struct Independent {
    name: String,
    pad_value: i64,
    length: LabelLength,
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

/// One padding job: a column of rows and the matrix (or ragged rows) it becomes.
struct PadJob<'j> {
    name: &'j str,
    rows: &'j dyn RowSource,
    pad_value: i64,
    width: usize,
}

/// The resolved padding settings of a collator: which keys are padded, with what, to what length.
/// Built once per distinct setting (collators cache it), then applied to every batch.
#[pyclass(module = "ferrotune._core", frozen)]
pub struct CollatePlan {
    /// Keys padded together and their pad values; the first is the reference
    /// (`model_input_names[0]`), whose rows set the padded width.
    pad_values: Vec<(String, i64)>,
    /// Create an all-ones `attention_mask` when the batch has none.
    create_attention_mask: bool,
    target: PadTarget,
    /// `pad_to_multiple_of` for the reference width (None when not padding).
    multiple: Option<usize>,
    /// `pad_to_multiple_of` as given, for the labels padded on their own.
    pad_to_multiple_of: Option<usize>,
    side: Side,
    /// Keys padded on their own (labels of seq2seq / token classification).
    independent: Vec<Independent>,
    schema_cache: Mutex<Option<CachedSchema>>,
}

impl CollatePlan {
    fn main(&self) -> &str {
        &self.pad_values[0].0
    }

    fn is_padded(&self, key: &str) -> bool {
        self.pad_values.iter().any(|(name, _)| name == key)
            || self.independent.iter().any(|label| label.name == key)
    }

    fn missing_main(&self, py: Python<'_>, names: &[Cow<'_, str>]) -> PyErr {
        to_py_err(py, FerrotuneError::InvalidInput(format!(
                "You should supply an encoding or a list of encodings to this method that includes {}, \
                 but you provided {}",
                self.main(),
                py_list(names)
            ),
        ))
    }

    /// Pads the gathered rows (reference first) and returns every column in batch order.
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
        let find = |key: &str| rows.iter().find(|(name, _)| name == key).map(|(_, r)| &**r);
        let main = self.main();
        let Some(reference) = find(main) else {
            return Err(self.missing_main(py, &order));
        };
        let ones = OnesLike(reference);
        let create_mask = self.create_attention_mask && find("attention_mask").is_none();
        if create_mask {
            order.push(Cow::Borrowed("attention_mask"));
        }
        let lengths = reference.row_lengths();
        let main_width = target_length(lengths.iter().copied(), self.target, self.multiple);
        let mut jobs: Vec<PadJob<'_>> = Vec::with_capacity(rows.len() + 1);
        for (name, pad_value) in &self.pad_values {
            let column: &dyn RowSource = match find(name) {
                Some(column) => column,
                None if create_mask && name == "attention_mask" => &ones,
                None => continue,
            };
            core_result(py, check_same_lengths(main, &lengths, name, column))?;
            jobs.push(PadJob {
                name,
                rows: column,
                pad_value: *pad_value,
                width: main_width,
            });
        }
        for label in &self.independent {
            let Some(column) = find(&label.name) else {
                continue;
            };
            let width = match label.length {
                LabelLength::Main => main_width,
                LabelLength::Longest => target_length(
                    column.row_lengths().into_iter(),
                    PadTarget::Longest,
                    self.pad_to_multiple_of,
                ),
                LabelLength::Fixed(n) => round_up(n, self.pad_to_multiple_of),
                LabelLength::Unpadded => 0,
            };
            jobs.push(PadJob {
                name: &label.name,
                rows: column,
                pad_value: label.pad_value,
                width,
            });
        }
        // Matrices are allocated in NumPy and written in place; rows longer than the target keep
        // their length and come back ragged.
        let mut padded: Vec<(&str, Collated)> = Vec::with_capacity(jobs.len());
        let mut matrices = Vec::new();
        let mut fills = Vec::new();
        for job in &jobs {
            if job.rows.fits(job.width) {
                // SAFETY: every element is written by `pad_into` below before Python sees it.
                let matrix =
                    unsafe { PyArray2::<i64>::new(py, [job.rows.rows(), job.width], false) };
                matrices.push((job.name, matrix));
                fills.push(job);
            } else {
                let column = pad_rows(job.name, job.rows, job.width, job.pad_value, self.side);
                padded.push((job.name, Collated::Padded(column)));
            }
        }
        {
            let mut outputs: Vec<&mut [i64]> = Vec::with_capacity(matrices.len());
            for (_, matrix) in &matrices {
                // SAFETY: the arrays were just created here; nothing else holds a view of them.
                outputs.push(unsafe { matrix.as_slice_mut() }.map_err(PyErr::from)?);
            }
            let total: usize = outputs.iter().map(|out| out.len()).sum();
            let side = self.side;
            let work = move || {
                for (job, out) in fills.into_iter().zip(outputs) {
                    job.rows.pad_into(job.width, job.pad_value, side, out);
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
                .map(|(name, matrix)| (name, Collated::Matrix(matrix.unbind()))),
        );
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
}

#[pymethods]
impl CollatePlan {
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
            if pad_values.is_empty() {
                return Err(to_py_err(
                    py,
                    FerrotuneError::InvalidArgument(
                        "pad_values must name at least the model's main input".into(),
                    ),
                ));
            }
            let (target, multiple) = parse_pad_target(py, padding, max_length, pad_to_multiple_of)?;
            let side = parse_side(py, padding_side, "padding_side")?;
            let independent = independent
                .into_iter()
                .map(|(name, pad_value, mode, length)| {
                    let length = match (mode.as_str(), length) {
                        ("main", _) => LabelLength::Main,
                        ("longest", _) => LabelLength::Longest,
                        ("max_length", Some(n)) => LabelLength::Fixed(n),
                        ("do_not_pad", _) => LabelLength::Unpadded,
                        (other, _) => {
                            return Err(to_py_err(
                                py,
                                FerrotuneError::InvalidArgument(format!(
                                    "unknown padding mode {other:?} for '{name}'"
                                )),
                            ))
                        }
                    };
                    Ok(Independent {
                        name,
                        pad_value,
                        length,
                    })
                })
                .collect::<PyResult<_>>()?;
            Ok(CollatePlan {
                pad_values,
                create_attention_mask,
                target,
                multiple,
                pad_to_multiple_of,
                side,
                independent,
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
            Self::tuples(py, self.finish(py, self.gather_examples(py, features)?)?)
        })
    }

    /// Collates an Arrow record batch into `(name, kind, data, starts)` per column.
    fn arrow<'py>(
        &self,
        py: Python<'py>,
        batch: &Bound<'py, PyAny>,
    ) -> PyResult<Vec<CollatedTuple<'py>>> {
        guarded(py, || {
            let export = ArrowExport::new(batch, &self.schema_cache)?;
            let gathered = self.gather_arrow(py, &export)?;
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
                self.finish(py, self.gather_examples(py, features)?)?,
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
            let export = ArrowExport::new(batch, &self.schema_cache)?;
            let gathered = self.gather_arrow(py, &export)?;
            Self::dict(py, self.finish(py, gathered)?, convert)
        })
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
            return Err(empty_batch(py));
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
        if !names.iter().any(|name| name == self.main()) {
            let names: Vec<Cow<'_, str>> =
                names.iter().map(|n| Cow::Borrowed(n.as_str())).collect();
            return Err(self.missing_main(py, &names));
        }
        for (i, dict) in dicts.iter().enumerate().skip(1) {
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

        let mut gathered = Gathered {
            order: Vec::with_capacity(names.len()),
            rows: Vec::new(),
            other: Vec::new(),
        };
        for (key, name) in keys.iter().zip(names) {
            let values: Vec<Bound<'py, PyAny>> = dicts
                .iter()
                .map(|d| {
                    d.get_item(key)
                        .map(|v| v.unwrap_or_else(|| py.None().into_bound(py)))
                })
                .collect::<PyResult<_>>()?;
            let name: Cow<'static, str> = Cow::Owned(name);
            if self.is_padded(&name) {
                let mut rows = Ragged::with_capacity(values.len(), 0);
                for (i, value) in values.iter().enumerate() {
                    extract_row(py, value, &mut rows.values, &name, i)?;
                    rows.starts.push(rows.values.len());
                }
                gathered.rows.push((name.clone(), Box::new(rows)));
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

fn empty_batch(py: Python<'_>) -> PyErr {
    to_py_err(
        py,
        FerrotuneError::EmptyBatch(
            "the batch is empty: a collator needs at least one example".into(),
        ),
    )
}

/// Collates a list of examples (dicts of lists / NumPy arrays / torch tensors / numbers).
#[pyfunction]
#[pyo3(signature = (features, pad_values, create_attention_mask, padding, max_length, pad_to_multiple_of, padding_side, independent=Vec::new()))]
#[allow(clippy::too_many_arguments)]
pub fn collate_examples<'py>(
    py: Python<'py>,
    features: &Bound<'py, PyAny>,
    pad_values: Vec<(String, i64)>,
    create_attention_mask: bool,
    padding: &str,
    max_length: Option<usize>,
    pad_to_multiple_of: Option<usize>,
    padding_side: &str,
    independent: Vec<(String, i64, String, Option<usize>)>,
) -> PyResult<Vec<CollatedTuple<'py>>> {
    guarded(py, || {
        CollatePlan::new(
            py,
            pad_values,
            create_attention_mask,
            padding,
            max_length,
            pad_to_multiple_of,
            padding_side,
            independent,
        )?
        .examples(py, features)
    })
}

// ------------------------------------------------------------------------------------------------
// Arrow C data interface (read by hand: one capsule call per batch, no pyarrow object per column)

/// A `pyarrow.Schema` exported once, for the batches that share it.
struct CachedSchema {
    schema: Py<PyAny>,
    capsule: Py<PyCapsule>,
}

/// `pyarrow.RecordBatch`, when pyarrow is loaded (never imported from here).
static PYARROW_RECORD_BATCH: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn pyarrow_record_batch(py: Python<'_>) -> Option<&Bound<'_, PyType>> {
    if let Some(class) = PYARROW_RECORD_BATCH.get(py) {
        return Some(class.bind(py));
    }
    let modules = py.import("sys").ok()?.getattr("modules").ok()?;
    let pyarrow = modules.get_item("pyarrow").ok()?;
    let class = pyarrow
        .getattr("RecordBatch")
        .ok()?
        .cast_into::<PyType>()
        .ok()?;
    Some(
        PYARROW_RECORD_BATCH
            .get_or_init(py, || class.unbind())
            .bind(py),
    )
}

/// An exported record batch, alive as long as this: either the two capsules of
/// `__arrow_c_array__`, or (a pyarrow RecordBatch) a cached schema and an array exported alone,
/// released on drop.
struct ArrowExport<'py> {
    _schema: Bound<'py, PyCapsule>,
    _array: Option<Bound<'py, PyCapsule>>,
    owned_array: Option<Box<ArrowArray>>,
    schema: *const ArrowSchema,
    array: *const ArrowArray,
}

impl Drop for ArrowExport<'_> {
    fn drop(&mut self) {
        if let Some(array) = self.owned_array.as_mut() {
            if let Some(release) = array.release {
                // SAFETY: the array was exported into this box and is released once, here.
                unsafe { release(&mut **array) };
            }
        }
    }
}

impl<'py> ArrowExport<'py> {
    fn new(batch: &Bound<'py, PyAny>, cache: &Mutex<Option<CachedSchema>>) -> PyResult<Self> {
        let py = batch.py();
        if let Some(record_batch) = pyarrow_record_batch(py) {
            if batch.get_type().is(record_batch) {
                return Self::pyarrow(batch, cache);
            }
        }
        let exported = batch.call_method0(pyo3::intern!(py, "__arrow_c_array__"))?;
        let (schema, array): (Bound<'py, PyCapsule>, Bound<'py, PyCapsule>) = exported.extract()?;
        let schema_ptr =
            schema.pointer_checked(Some(c"arrow_schema"))?.as_ptr() as *const ArrowSchema;
        let array_ptr = array.pointer_checked(Some(c"arrow_array"))?.as_ptr() as *const ArrowArray;
        Ok(ArrowExport {
            _schema: schema,
            _array: Some(array),
            owned_array: None,
            schema: schema_ptr,
            array: array_ptr,
        })
    }

    /// A pyarrow RecordBatch: the schema, exported once per distinct schema, is a third of the
    /// cost of exporting a small batch.
    fn pyarrow(batch: &Bound<'py, PyAny>, cache: &Mutex<Option<CachedSchema>>) -> PyResult<Self> {
        let py = batch.py();
        let schema = batch.getattr(pyo3::intern!(py, "schema"))?;
        // Python is never called with the lock held.
        let cached = cache.lock().ok().and_then(|guard| {
            guard
                .as_ref()
                .map(|c| (c.schema.clone_ref(py), c.capsule.clone_ref(py)))
        });
        let hit = match &cached {
            Some((cached_schema, _)) => {
                cached_schema.bind(py).is(&schema)
                    || cached_schema
                        .bind(py)
                        .call_method1(pyo3::intern!(py, "equals"), (&schema,))?
                        .is_truthy()?
            }
            None => false,
        };
        let capsule = match cached {
            Some((_, capsule)) if hit => capsule.into_bound(py),
            _ => {
                let capsule = schema
                    .call_method0(pyo3::intern!(py, "__arrow_c_schema__"))?
                    .cast_into::<PyCapsule>()?;
                if let Ok(mut guard) = cache.lock() {
                    *guard = Some(CachedSchema {
                        schema: schema.clone().unbind(),
                        capsule: capsule.clone().unbind(),
                    });
                }
                capsule
            }
        };
        let schema_ptr =
            capsule.pointer_checked(Some(c"arrow_schema"))?.as_ptr() as *const ArrowSchema;
        let mut owned = Box::new(ArrowArray::empty());
        let array_ptr: *mut ArrowArray = &mut *owned;
        batch.call_method1(pyo3::intern!(py, "_export_to_c"), (array_ptr as usize,))?;
        Ok(ArrowExport {
            _schema: capsule,
            _array: None,
            owned_array: Some(owned),
            schema: schema_ptr,
            array: array_ptr,
        })
    }

    fn root(&self) -> ColumnView<'_> {
        // SAFETY: the capsules or the owned array (held by self) own both structs.
        unsafe {
            ColumnView {
                schema: &*self.schema,
                array: &*self.array,
            }
        }
    }
}

/// Token values an Arrow list may hold.
trait TokenValue: Copy + Sync {
    fn to_i64(self) -> i64;
}

macro_rules! token_values {
    ($($t:ty),*) => {$(
        impl TokenValue for $t {
            #[inline]
            fn to_i64(self) -> i64 {
                self as i64
            }
        }
    )*};
}
token_values!(i8, u8, i16, u16, i32, u32, i64, u64);

/// List offsets (`list` has i32, `large_list` i64), checked non-negative before use.
trait ListOffset: Copy + Sync {
    fn to_usize(self) -> usize;
}

impl ListOffset for i32 {
    #[inline]
    fn to_usize(self) -> usize {
        self as usize
    }
}

impl ListOffset for i64 {
    #[inline]
    fn to_usize(self) -> usize {
        self as usize
    }
}

/// The rows of an Arrow list column, read in place: row `r` is
/// `values[offsets[r]..offsets[r + 1]]`. The offsets are checked before one is built.
struct ArrowRows<'a, O, V> {
    offsets: &'a [O],
    values: &'a [V],
}

impl<O: ListOffset, V: TokenValue> RowSource for ArrowRows<'_, O, V> {
    fn rows(&self) -> usize {
        self.offsets.len() - 1
    }

    fn row_len(&self, row: usize) -> usize {
        self.offsets[row + 1].to_usize() - self.offsets[row].to_usize()
    }

    fn write_row(&self, row: usize, out: &mut [i64]) {
        let start = self.offsets[row].to_usize();
        let values = &self.values[start..start + out.len()];
        for (slot, value) in out.iter_mut().zip(values) {
            *slot = value.to_i64();
        }
    }
}

/// Whether list offsets are usable: non-negative, never decreasing, within `values` values.
fn valid_offsets<O: ListOffset + PartialOrd + Default>(offsets: &[O], values: usize) -> bool {
    offsets.first().is_some_and(|&first| first >= O::default())
        && offsets.windows(2).all(|w| w[0] <= w[1])
        && offsets
            .last()
            .is_some_and(|&last| last.to_usize() <= values)
}

/// A list column read in place, and the index in its values child of its first value.
type ListRows<'a> = (Box<dyn RowSource + 'a>, usize);

/// The rows of list column `column` (`rows` rows from logical row `base`) over integer values, or
/// None when its values are not integers. Errors for malformed offsets.
fn arrow_rows<'a>(
    py: Python<'_>,
    name: &str,
    column: ColumnView<'a>,
    base: usize,
    rows: usize,
) -> PyResult<Option<ListRows<'a>>> {
    let malformed = || {
        to_py_err(
            py,
            FerrotuneError::Internal(format!("malformed Arrow list export for '{name}'")),
        )
    };
    let values = column.child(0).ok_or_else(malformed)?;
    // Physical values from the child's own offset: list offsets count from there.
    let value_base = values.offset();
    let value_len = values.length();
    fn build<'a, O: ListOffset + PartialOrd + Default + 'a>(
        offsets: &'a [O],
        values: ColumnView<'a>,
        base: usize,
        len: usize,
    ) -> Option<Option<ListRows<'a>>> {
        if !valid_offsets(offsets, len) {
            return None;
        }
        let first = offsets[0].to_usize();
        macro_rules! rows {
            ($t:ty) => {{
                let values = &values.values::<$t>(1, base + len)?[base..];
                let rows: Box<dyn RowSource + 'a> = Box::new(ArrowRows { offsets, values });
                Some(Some((rows, first)))
            }};
        }
        match &*values.format() {
            "c" => rows!(i8),
            "C" => rows!(u8),
            "s" => rows!(i16),
            "S" => rows!(u16),
            "i" => rows!(i32),
            "I" => rows!(u32),
            "l" => rows!(i64),
            "L" => rows!(u64),
            _ => Some(None),
        }
    }
    let built = if column.format() == "+l" {
        let offsets = column
            .values::<i32>(1, base + rows + 1)
            .ok_or_else(malformed)?;
        build(&offsets[base..], values, value_base, value_len)
    } else {
        let offsets = column
            .values::<i64>(1, base + rows + 1)
            .ok_or_else(malformed)?;
        build(&offsets[base..], values, value_base, value_len)
    };
    built.ok_or_else(malformed)
}

fn read_floats(format: &str, data: *const c_void, start: usize, end: usize) -> Option<Vec<f64>> {
    if data.is_null() && end > start {
        return None;
    }
    match format {
        "f" => Some(
            // SAFETY: as in read_ints.
            unsafe { std::slice::from_raw_parts((data as *const f32).add(start), end - start) }
                .iter()
                .map(|&v| v as f64)
                .collect(),
        ),
        "g" => Some(
            unsafe { std::slice::from_raw_parts((data as *const f64).add(start), end - start) }
                .to_vec(),
        ),
        _ => None,
    }
}

impl CollatePlan {
    /// Reads an exported record batch: list columns as rows in place, the others as numbers.
    fn gather_arrow<'a>(
        &self,
        py: Python<'_>,
        export: &'a ArrowExport<'_>,
    ) -> PyResult<Gathered<'a>> {
        let root = export.root();
        if root.format() != "+s" {
            return Err(type_error(
                py,
                format!(
                    "an Arrow batch to collate must be a record batch (struct), got Arrow format {:?}",
                    root.format()
                ),
            ));
        }
        let rows = root.length();
        if rows == 0 {
            return Err(empty_batch(py));
        }
        let columns = root.schema.n_children.max(0) as usize;
        let mut gathered = Gathered {
            order: Vec::with_capacity(columns),
            rows: Vec::with_capacity(columns),
            other: Vec::new(),
        };
        for i in 0..columns {
            let column = root.child(i).ok_or_else(|| {
                to_py_err(
                    py,
                    FerrotuneError::Internal("malformed Arrow export".into()),
                )
            })?;
            let name = column.name();
            let format = column.format();
            let base = root.offset() + column.offset();
            if let Some(row) = column.first_null(base, rows) {
                return Err(to_py_err(
                    py,
                    FerrotuneError::InvalidInput(format!(
                        "example {row}: '{name}' is null; a collator needs a value in every example"
                    )),
                ));
            }
            if format == "+l" || format == "+L" {
                if !self.is_padded(&name) {
                    return Err(type_error(
                        py,
                        format!(
                            "'{name}' holds a list per example but is not a column the collator pads: \
                             remove it (e.g. dataset.remove_columns) or collate it yourself"
                        ),
                    ));
                }
                let Some((token_rows, first)) = arrow_rows(py, &name, column, base, rows)? else {
                    let value_format = column.child(0).map(|v| v.format()).unwrap_or_default();
                    let what = if value_format.starts_with('+') {
                        "nested lists (one level too deep)".to_string()
                    } else {
                        format!("Arrow type {value_format:?}")
                    };
                    return Err(type_error(
                        py,
                        format!("'{name}' must hold integer token ids, found {what}"),
                    ));
                };
                if let Some(values) = column.child(0).filter(|v| v.array.null_count != 0) {
                    let lengths = token_rows.row_lengths();
                    let count = lengths.iter().sum();
                    if let Some(position) = values.first_null(values.offset() + first, count) {
                        let row = lengths
                            .iter()
                            .scan(0, |end, len| {
                                *end += len;
                                Some(*end)
                            })
                            .position(|end| end > position)
                            .unwrap_or(0);
                        return Err(to_py_err(
                            py,
                            FerrotuneError::InvalidInput(format!(
                                "example {row}: '{name}' holds a null token id"
                            )),
                        ));
                    }
                }
                gathered.rows.push((name.clone(), token_rows));
            } else if self.is_padded(&name) {
                return Err(type_error(
                    py,
                    format!("'{name}' must hold a list of token ids per example, found Arrow type {format:?}"),
                ));
            } else {
                let data = column.buffer(1);
                let mut ints = Vec::with_capacity(rows);
                let collated = if read_ints(&format, data, base, base + rows, &mut ints) {
                    Collated::Ints(ints)
                } else if let Some(floats) = read_floats(&format, data, base, base + rows) {
                    Collated::Floats(floats)
                } else {
                    return Err(type_error(
                        py,
                        format!(
                            "'{name}' has Arrow type {format:?}, which a collator cannot turn into a tensor: \
                             remove the column (e.g. dataset.remove_columns) before collating"
                        ),
                    ));
                };
                gathered.other.push((name.clone(), collated));
            }
            gathered.order.push(name);
        }
        if !gathered.rows.iter().any(|(name, _)| name == self.main()) {
            return Err(self.missing_main(py, &gathered.order));
        }
        Ok(gathered)
    }
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
