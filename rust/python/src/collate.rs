//! Collation entry points: a batch of examples (a list of dicts, or an Arrow record batch) padded in
//! one call, and MLM masking. Python only wraps the returned arrays into tensors.

use std::collections::HashMap;
use std::ffi::{c_char, c_void, CStr};

use ferrotune_core::buffers::round_up;
use ferrotune_core::mlm::{mask_tokens as core_mask_tokens, MaskingConfig};
use ferrotune_core::pad::{
    pad_columns, pad_rows, target_length, PadColumn, PadTarget, PaddedColumn,
};
use ferrotune_core::Ragged;
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray2, PyReadonlyArray2, PyReadwriteArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyCapsule, PyCapsuleMethods, PyDict, PyFloat, PyInt, PyList, PyString};

use crate::{
    core_result, extract_row, parse_pad_target, parse_side, raise, run_detached, sequence_items,
    type_error, type_name,
};

/// One collated output column, in the order the batch's keys came.
enum Collated {
    Padded(PaddedColumn),
    Ints(Vec<i64>),
    Floats(Vec<f64>),
    /// Values ferrotune does not convert itself (strings, nested lists of keys that are not
    /// padded...): Python converts them as transformers would, or reports them.
    Objects(Py<PyList>),
}

/// What the Python side receives per column: `(name, kind, data, starts)`.
type CollatedTuple<'py> = (
    String,
    &'static str,
    Bound<'py, PyAny>,
    Option<Bound<'py, PyAny>>,
);

fn into_python<'py>(
    py: Python<'py>,
    name: String,
    column: Collated,
) -> PyResult<CollatedTuple<'py>> {
    Ok(match column {
        Collated::Padded(padded) => match padded.uniform_width {
            Some(width) => {
                let rows = padded.starts.len() - 1;
                let matrix = Array2::from_shape_vec((rows, width), padded.values)
                    .map_err(|err| raise(py, "InternalError", err.to_string()))?;
                (
                    name,
                    "padded",
                    PyArray2::from_owned_array(py, matrix).into_any(),
                    None,
                )
            }
            None => {
                let starts: Vec<i64> = padded.starts.iter().map(|&s| s as i64).collect();
                (
                    name,
                    "ragged",
                    padded.values.into_pyarray(py).into_any(),
                    Some(starts.into_pyarray(py).into_any()),
                )
            }
        },
        Collated::Ints(values) => (name, "int", values.into_pyarray(py).into_any(), None),
        Collated::Floats(values) => (name, "float", values.into_pyarray(py).into_any(), None),
        Collated::Objects(list) => (name, "object", list.into_bound(py).into_any(), None),
    })
}

/// The padding settings shared by both entry points.
struct PadSettings {
    /// Keys padded and their pad values; the first is the reference (`model_input_names[0]`).
    pad_values: Vec<(String, i64)>,
    /// Create an all-ones `attention_mask` when the batch has none.
    create_attention_mask: bool,
    /// Keys padded on their own (labels of seq2seq / token classification): name, pad value, and
    /// the length: "longest" (their own), "max_length", "main" (the padded width of the
    /// reference column) or "do_not_pad".
    independent: Vec<(String, i64, String, Option<usize>)>,
}

impl PadSettings {
    fn pad_value(&self, key: &str) -> Option<i64> {
        self.pad_values
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, v)| *v)
    }

    fn is_padded(&self, key: &str) -> bool {
        self.pad_value(key).is_some() || self.independent.iter().any(|(name, ..)| name == key)
    }

    fn main(&self) -> &str {
        &self.pad_values[0].0
    }
}

/// Pads the collected ragged columns (reference first) and puts every column back in batch order.
#[allow(clippy::too_many_arguments)]
fn finish<'py>(
    py: Python<'py>,
    settings: &PadSettings,
    order: Vec<String>,
    mut ragged: HashMap<String, Ragged>,
    mut other: HashMap<String, Collated>,
    padding: &str,
    max_length: Option<usize>,
    pad_to_multiple_of: Option<usize>,
    padding_side: &str,
) -> PyResult<Vec<CollatedTuple<'py>>> {
    let (target, multiple) = parse_pad_target(py, padding, max_length, pad_to_multiple_of)?;
    let side = parse_side(py, padding_side, "padding_side")?;
    let main = settings.main().to_string();
    let mut order = order;
    if settings.create_attention_mask && !ragged.contains_key("attention_mask") {
        let reference = &ragged[&main];
        let ones = Ragged {
            values: vec![1; reference.values.len()],
            starts: reference.starts.clone(),
        };
        ragged.insert("attention_mask".into(), ones);
        order.push("attention_mask".into());
    }
    // The reference column first: it sets the length everything is padded to.
    let mut columns: Vec<PadColumn> = Vec::with_capacity(ragged.len());
    for (name, pad_value) in &settings.pad_values {
        if let Some(rows) = ragged.remove(name) {
            columns.push(PadColumn {
                name: name.clone(),
                rows,
                pad_value: *pad_value,
            });
        }
    }
    let main_width = target_length(
        (0..columns[0].rows.rows()).map(|r| columns[0].rows.row_len(r)),
        target,
        multiple,
    );
    let mut separate: Vec<(String, Ragged, i64, usize)> = Vec::new();
    for (name, pad_value, mode, length) in &settings.independent {
        let Some(rows) = ragged.remove(name) else {
            continue;
        };
        let width = match (mode.as_str(), length) {
            ("main", _) => main_width,
            ("longest", _) => target_length(
                (0..rows.rows()).map(|r| rows.row_len(r)),
                PadTarget::Longest,
                pad_to_multiple_of,
            ),
            ("max_length", Some(n)) => round_up(*n, pad_to_multiple_of),
            ("do_not_pad", _) => 0,
            (other, _) => {
                return Err(raise(
                    py,
                    "InvalidArgumentError",
                    format!("unknown padding mode {other:?} for '{name}'"),
                ))
            }
        };
        separate.push((name.clone(), rows, *pad_value, width));
    }
    let padded = run_detached(py, move || {
        let mut padded = pad_columns(&columns, target, multiple, side)?;
        for (name, rows, pad_value, width) in &separate {
            padded.push(pad_rows(name, rows, *width, *pad_value, side));
        }
        Ok(padded)
    })?;
    for column in padded {
        other.insert(column.name.clone(), Collated::Padded(column));
    }
    order
        .into_iter()
        .filter_map(|name| other.remove(&name).map(|column| (name, column)))
        .map(|(name, column)| into_python(py, name, column))
        .collect()
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
        return Err(raise(
            py,
            "EmptyBatchError",
            "the batch is empty: a collator needs at least one example".into(),
        ));
    }
    let settings = PadSettings {
        pad_values,
        create_attention_mask,
        independent,
    };
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
    let main = settings.main().to_string();
    if !names.contains(&main) {
        return Err(raise(
            py,
            "InvalidInputError",
            format!(
                "You should supply an encoding or a list of encodings to this method that includes {main}, \
                 but you provided {}",
                py_list(&names)
            ),
        ));
    }
    for (i, dict) in dicts.iter().enumerate().skip(1) {
        let same =
            dict.len() == keys.len() && keys.iter().all(|k| dict.contains(k).unwrap_or(false));
        if !same {
            let theirs: Vec<String> = dict.keys().iter().map(|k| k.to_string()).collect();
            let missing: Vec<&String> = names.iter().filter(|n| !theirs.contains(n)).collect();
            let extra: Vec<&String> = theirs.iter().filter(|n| !names.contains(n)).collect();
            return Err(raise(
                py,
                "InvalidInputError",
                format!(
                    "example {i} has different keys from example 0 (missing {}, extra {})",
                    py_list(&missing),
                    py_list(&extra)
                ),
            ));
        }
    }

    let mut ragged: HashMap<String, Ragged> = HashMap::new();
    let mut other: HashMap<String, Collated> = HashMap::new();
    for (key, name) in keys.iter().zip(&names) {
        let values: Vec<Bound<'py, PyAny>> = dicts
            .iter()
            .map(|d| {
                d.get_item(key)
                    .map(|v| v.unwrap_or_else(|| py.None().into_bound(py)))
            })
            .collect::<PyResult<_>>()?;
        if settings.is_padded(name) {
            let mut rows = Ragged::with_capacity(values.len(), 0);
            for (i, value) in values.iter().enumerate() {
                extract_row(py, value, &mut rows.values, name, i)?;
                rows.starts.push(rows.values.len());
            }
            ragged.insert(name.clone(), rows);
            continue;
        }
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
        let column = match kind {
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
        };
        other.insert(name.clone(), column);
    }
    finish(
        py,
        &settings,
        names,
        ragged,
        other,
        padding,
        max_length,
        pad_to_multiple_of,
        padding_side,
    )
}

// ------------------------------------------------------------------------------------------------
// Arrow C data interface (read by hand: one capsule call per batch, no pyarrow object per column)

#[repr(C)]
struct ArrowSchema {
    format: *const c_char,
    name: *const c_char,
    metadata: *const c_char,
    flags: i64,
    n_children: i64,
    children: *mut *mut ArrowSchema,
    dictionary: *mut ArrowSchema,
    release: Option<unsafe extern "C" fn(*mut ArrowSchema)>,
    private_data: *mut c_void,
}

#[repr(C)]
struct ArrowArray {
    length: i64,
    null_count: i64,
    offset: i64,
    n_buffers: i64,
    n_children: i64,
    buffers: *mut *const c_void,
    children: *mut *mut ArrowArray,
    dictionary: *mut ArrowArray,
    release: Option<unsafe extern "C" fn(*mut ArrowArray)>,
    private_data: *mut c_void,
}

/// A borrowed view of one exported column; valid while the capsules are alive.
struct ColumnView<'a> {
    schema: &'a ArrowSchema,
    array: &'a ArrowArray,
}

fn c_str(ptr: *const c_char) -> String {
    if ptr.is_null() {
        return String::new();
    }
    // SAFETY: the C data interface guarantees NUL-terminated strings for format and name.
    unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned()
}

impl<'a> ColumnView<'a> {
    fn format(&self) -> String {
        c_str(self.schema.format)
    }

    fn name(&self) -> String {
        c_str(self.schema.name)
    }

    fn child(&self, i: usize) -> Option<ColumnView<'a>> {
        if i as i64 >= self.schema.n_children || i as i64 >= self.array.n_children {
            return None;
        }
        // SAFETY: children arrays have n_children valid pointers (checked above).
        unsafe {
            let schema = &**self.schema.children.add(i);
            let array = &**self.array.children.add(i);
            Some(ColumnView { schema, array })
        }
    }

    fn buffer(&self, i: usize) -> *const c_void {
        if i as i64 >= self.array.n_buffers {
            return std::ptr::null();
        }
        // SAFETY: buffers has n_buffers entries.
        unsafe { *self.array.buffers.add(i) }
    }

    /// The first null row among `rows` (logical indices after `base`), if any.
    fn first_null(&self, base: usize, rows: usize) -> Option<usize> {
        if self.array.null_count == 0 {
            return None;
        }
        let validity = self.buffer(0) as *const u8;
        if validity.is_null() {
            return None;
        }
        (0..rows).find(|&r| {
            let bit = base + r;
            // SAFETY: the validity bitmap covers offset + length bits.
            unsafe { (*validity.add(bit / 8) >> (bit % 8)) & 1 == 0 }
        })
    }
}

/// Appends integer values `[start, end)` (physical indices) of a primitive column.
fn read_ints(
    format: &str,
    data: *const c_void,
    start: usize,
    end: usize,
    out: &mut Vec<i64>,
) -> bool {
    macro_rules! copy {
        ($t:ty) => {{
            // SAFETY: the exporter guarantees the data buffer holds offset + length values.
            let slice =
                unsafe { std::slice::from_raw_parts((data as *const $t).add(start), end - start) };
            out.extend(slice.iter().map(|&v| v as i64));
            true
        }};
    }
    if data.is_null() && end > start {
        return false;
    }
    match format {
        "c" => copy!(i8),
        "C" => copy!(u8),
        "s" => copy!(i16),
        "S" => copy!(u16),
        "i" => copy!(i32),
        "I" => copy!(u32),
        "l" => copy!(i64),
        "L" => copy!(u64),
        _ => false,
    }
}

fn read_floats(format: &str, data: *const c_void, start: usize, end: usize) -> Option<Vec<f64>> {
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

/// Collates an Arrow record batch (anything exporting `__arrow_c_array__` as a struct: a
/// `pyarrow.RecordBatch`, a `StructArray`) whose token columns are `list<int>` / `large_list<int>`.
#[pyfunction]
#[pyo3(signature = (batch, pad_values, create_attention_mask, padding, max_length, pad_to_multiple_of, padding_side, independent=Vec::new()))]
#[allow(clippy::too_many_arguments)]
pub fn collate_arrow<'py>(
    py: Python<'py>,
    batch: &Bound<'py, PyAny>,
    pad_values: Vec<(String, i64)>,
    create_attention_mask: bool,
    padding: &str,
    max_length: Option<usize>,
    pad_to_multiple_of: Option<usize>,
    padding_side: &str,
    independent: Vec<(String, i64, String, Option<usize>)>,
) -> PyResult<Vec<CollatedTuple<'py>>> {
    let exported = batch.call_method0("__arrow_c_array__")?;
    let (schema_capsule, array_capsule): (Bound<'py, PyCapsule>, Bound<'py, PyCapsule>) =
        exported.extract()?;
    let schema_ptr = schema_capsule.pointer_checked(Some(c"arrow_schema"))?;
    let array_ptr = array_capsule.pointer_checked(Some(c"arrow_array"))?;
    // SAFETY: the capsules own both structs and stay alive (bound above) until we return.
    let root = unsafe {
        ColumnView {
            schema: &*(schema_ptr.as_ptr() as *const ArrowSchema),
            array: &*(array_ptr.as_ptr() as *const ArrowArray),
        }
    };
    if root.format() != "+s" {
        return Err(type_error(
            py,
            format!(
                "an Arrow batch to collate must be a record batch (struct), got Arrow format {:?}",
                root.format()
            ),
        ));
    }
    let rows = root.array.length.max(0) as usize;
    if rows == 0 {
        return Err(raise(
            py,
            "EmptyBatchError",
            "the batch is empty: a collator needs at least one example".into(),
        ));
    }
    let settings = PadSettings {
        pad_values,
        create_attention_mask,
        independent,
    };
    let root_offset = root.array.offset.max(0) as usize;
    let mut names = Vec::new();
    let mut ragged: HashMap<String, Ragged> = HashMap::new();
    let mut other: HashMap<String, Collated> = HashMap::new();
    for i in 0..root.schema.n_children.max(0) as usize {
        let column = root
            .child(i)
            .ok_or_else(|| raise(py, "InternalError", "malformed Arrow export".into()))?;
        let name = column.name();
        let format = column.format();
        let base = root_offset + column.array.offset.max(0) as usize;
        if let Some(row) = column.first_null(base, rows) {
            return Err(raise(
                py,
                "InvalidInputError",
                format!(
                    "example {row}: '{name}' is null; a collator needs a value in every example"
                ),
            ));
        }
        if format == "+l" || format == "+L" {
            let values = column
                .child(0)
                .ok_or_else(|| raise(py, "InternalError", "malformed Arrow list export".into()))?;
            let value_format = values.format();
            let value_base = values.array.offset.max(0) as usize;
            let offsets_buffer = column.buffer(1);
            // SAFETY: a list array's offsets buffer holds offset + length + 1 entries.
            let offsets: Vec<usize> = unsafe {
                if format == "+l" {
                    std::slice::from_raw_parts((offsets_buffer as *const i32).add(base), rows + 1)
                        .iter()
                        .map(|&o| o as usize)
                        .collect()
                } else {
                    std::slice::from_raw_parts((offsets_buffer as *const i64).add(base), rows + 1)
                        .iter()
                        .map(|&o| o as usize)
                        .collect()
                }
            };
            if !settings.is_padded(&name) {
                return Err(type_error(
                    py,
                    format!(
                        "'{name}' holds a list per example but is not a column the collator pads: \
                         remove it (e.g. dataset.remove_columns) or collate it yourself"
                    ),
                ));
            }
            if let Some(row) =
                values.first_null(value_base + offsets[0], offsets[rows] - offsets[0])
            {
                let index = offsets.partition_point(|&o| o <= offsets[0] + row) - 1;
                return Err(raise(
                    py,
                    "InvalidInputError",
                    format!("example {index}: '{name}' holds a null token id"),
                ));
            }
            let mut column_rows = Ragged::with_capacity(rows, offsets[rows] - offsets[0]);
            if !read_ints(
                &value_format,
                values.buffer(1),
                value_base + offsets[0],
                value_base + offsets[rows],
                &mut column_rows.values,
            ) {
                let what = if value_format.starts_with('+') {
                    "nested lists (one level too deep)".to_string()
                } else {
                    format!("Arrow type {value_format:?}")
                };
                return Err(type_error(
                    py,
                    format!("'{name}' must hold integer token ids, found {what}"),
                ));
            }
            column_rows.starts = offsets.iter().map(|&o| o - offsets[0]).collect();
            ragged.insert(name.clone(), column_rows);
        } else if settings.is_padded(&name) {
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
            other.insert(name.clone(), collated);
        }
        names.push(name);
    }
    if !ragged.contains_key(settings.main()) {
        return Err(raise(
            py,
            "InvalidInputError",
            format!(
                "You should supply an encoding or a list of encodings to this method that includes {}, \
                 but you provided {}",
                settings.main(),
                py_list(&names)
            ),
        ));
    }
    finish(
        py,
        &settings,
        names,
        ragged,
        other,
        padding,
        max_length,
        pad_to_multiple_of,
        padding_side,
    )
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
    let shape = [input_ids.shape()[0], input_ids.shape()[1]];
    let config = MaskingConfig {
        mlm_probability,
        mask_replace_prob,
        random_replace_prob,
        mask_token_id,
        vocab_size,
    };
    let special = match &special_tokens_mask {
        Some(mask) => {
            if mask.shape() != input_ids.shape() {
                return Err(raise(
                    py,
                    "InvalidInputError",
                    format!(
                        "special_tokens_mask has shape {:?} but input_ids has {:?}",
                        mask.shape(),
                        input_ids.shape()
                    ),
                ));
            }
            Some(
                mask.as_slice()
                    .map_err(|_| type_error(py, "special_tokens_mask must be contiguous".into()))?,
            )
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
        .map_err(|err| raise(py, "InternalError", err.to_string()))?;
    Ok(PyArray2::from_owned_array(py, matrix))
}
