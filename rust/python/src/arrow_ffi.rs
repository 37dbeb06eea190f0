//! The Arrow C data interface, read by hand: one `__arrow_c_array__` call per array, then plain
//! pointer reads of its buffers — no pyarrow object per column, example or token.

use std::ffi::{c_char, c_void, CStr};

use ferrotune_core::Ragged;
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

#[repr(C)]
pub(crate) struct ArrowSchema {
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
pub(crate) struct ArrowArray {
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

/// An array exported through `__arrow_c_array__`; the capsules own the structs (and release them
/// when dropped), so views borrowed from it are valid while it lives.
pub(crate) struct Exported<'py> {
    _schema: Bound<'py, PyCapsule>,
    _array: Bound<'py, PyCapsule>,
    schema: *const ArrowSchema,
    array: *const ArrowArray,
}

impl<'py> Exported<'py> {
    pub(crate) fn new(obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        let (schema, array): (Bound<'py, PyCapsule>, Bound<'py, PyCapsule>) =
            obj.call_method0("__arrow_c_array__")?.extract()?;
        let schema_ptr = schema.pointer_checked(Some(c"arrow_schema"))?.as_ptr() as *const _;
        let array_ptr = array.pointer_checked(Some(c"arrow_array"))?.as_ptr() as *const _;
        Ok(Exported {
            _schema: schema,
            _array: array,
            schema: schema_ptr,
            array: array_ptr,
        })
    }

    pub(crate) fn view(&self) -> ColumnView<'_> {
        // SAFETY: the capsules (held by self) own both structs.
        unsafe {
            ColumnView {
                schema: &*self.schema,
                array: &*self.array,
            }
        }
    }
}

/// A borrowed view of one exported array.
#[derive(Clone, Copy)]
pub(crate) struct ColumnView<'a> {
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
    pub(crate) fn format(&self) -> String {
        c_str(self.schema.format)
    }

    pub(crate) fn len(&self) -> usize {
        self.array.length.max(0) as usize
    }

    pub(crate) fn offset(&self) -> usize {
        self.array.offset.max(0) as usize
    }

    pub(crate) fn child(&self, i: usize) -> Option<ColumnView<'a>> {
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

    pub(crate) fn buffer(&self, i: usize) -> *const c_void {
        if i as i64 >= self.array.n_buffers {
            return std::ptr::null();
        }
        // SAFETY: buffers has n_buffers entries.
        unsafe { *self.array.buffers.add(i) }
    }

    /// The first null row among `rows` (logical indices after `base`), if any.
    pub(crate) fn first_null(&self, base: usize, rows: usize) -> Option<usize> {
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

    /// `rows + 1` offsets of a list / string array starting at logical row `base`, as usize.
    fn offsets(&self, large: bool, base: usize, rows: usize) -> Vec<usize> {
        let buffer = self.buffer(1);
        // SAFETY: a list or string array's offsets buffer holds offset + length + 1 entries.
        unsafe {
            if large {
                std::slice::from_raw_parts((buffer as *const i64).add(base), rows + 1)
                    .iter()
                    .map(|&o| o as usize)
                    .collect()
            } else {
                std::slice::from_raw_parts((buffer as *const i32).add(base), rows + 1)
                    .iter()
                    .map(|&o| o as usize)
                    .collect()
            }
        }
    }
}

/// Appends integer values `[start, end)` (physical indices) of a primitive column.
pub(crate) fn read_ints(
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

/// Reads a `list<int>` / `large_list<int>` array into ragged rows; the error says what is wrong
/// (to be prefixed with the column's name by the caller).
pub(crate) fn read_int_lists(column: ColumnView<'_>) -> Result<Ragged, String> {
    let format = column.format();
    if format != "+l" && format != "+L" {
        return Err(format!(
            "must hold a list of token ids per example, found Arrow type {format:?}"
        ));
    }
    let (base, rows) = (column.offset(), column.len());
    if let Some(row) = column.first_null(base, rows) {
        return Err(format!("example {row} is null"));
    }
    let values = column
        .child(0)
        .ok_or_else(|| "malformed Arrow list export".to_string())?;
    let offsets = column.offsets(format == "+L", base, rows);
    let value_base = values.offset();
    if let Some(token) = values.first_null(value_base + offsets[0], offsets[rows] - offsets[0]) {
        let row = offsets.partition_point(|&o| o <= offsets[0] + token) - 1;
        return Err(format!("example {row} holds a null token id"));
    }
    let mut out = Ragged::with_capacity(rows, offsets[rows] - offsets[0]);
    let value_format = values.format();
    if !read_ints(
        &value_format,
        values.buffer(1),
        value_base + offsets[0],
        value_base + offsets[rows],
        &mut out.values,
    ) {
        return Err(if value_format.starts_with('+') {
            "must hold integer token ids, found nested lists (one level too deep)".into()
        } else {
            format!("must hold integer token ids, found Arrow type {value_format:?}")
        });
    }
    out.starts = offsets.iter().map(|&o| o - offsets[0]).collect();
    Ok(out)
}

/// Reads a `string` / `large_string` array into owned strings.
pub(crate) fn read_strings(column: ColumnView<'_>) -> Result<Vec<String>, String> {
    let format = column.format();
    if format != "u" && format != "U" {
        return Err(format!(
            "must hold text (Arrow string), found Arrow type {format:?}"
        ));
    }
    let (base, rows) = (column.offset(), column.len());
    if let Some(row) = column.first_null(base, rows) {
        return Err(format!("example {row} is null"));
    }
    let offsets = column.offsets(format == "U", base, rows);
    let data = column.buffer(2) as *const u8;
    if data.is_null() && offsets[rows] > offsets[0] {
        return Err("malformed Arrow string export".into());
    }
    (0..rows)
        .map(|row| {
            let (start, end) = (offsets[row], offsets[row + 1]);
            if start == end {
                return Ok(String::new());
            }
            // SAFETY: the data buffer covers every offset of the array.
            let bytes = unsafe { std::slice::from_raw_parts(data.add(start), end - start) };
            // Arrow strings are UTF-8 by specification; check anyway, a bad exporter must not
            // become undefined behaviour.
            std::str::from_utf8(bytes)
                .map(str::to_owned)
                .map_err(|_| format!("example {row} is not valid UTF-8"))
        })
        .collect()
}
