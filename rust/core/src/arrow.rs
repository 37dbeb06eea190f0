//! Arrow arrays read in place through the C data interface: one list reader (token ids) and one
//! string reader, both checking offsets, nulls and value types before anything is read, and
//! reporting problems as core errors. The bindings only obtain the exported structs (from a
//! pyarrow object's `__arrow_c_array__`) and keep them alive while a view is used.

use std::borrow::Cow;
use std::ffi::{c_char, c_void, CStr};

use crate::buffers::Ragged;
use crate::error::{FerrotuneError, Result};
use crate::pad::RowSource;

/// `struct ArrowSchema` of the Arrow C data interface.
#[repr(C)]
pub struct ArrowSchema {
    pub format: *const c_char,
    pub name: *const c_char,
    pub metadata: *const c_char,
    pub flags: i64,
    pub n_children: i64,
    pub children: *mut *mut ArrowSchema,
    pub dictionary: *mut ArrowSchema,
    pub release: Option<unsafe extern "C" fn(*mut ArrowSchema)>,
    pub private_data: *mut c_void,
}

/// `struct ArrowArray` of the Arrow C data interface.
#[repr(C)]
pub struct ArrowArray {
    pub length: i64,
    pub null_count: i64,
    pub offset: i64,
    pub n_buffers: i64,
    pub n_children: i64,
    pub buffers: *mut *const c_void,
    pub children: *mut *mut ArrowArray,
    pub dictionary: *mut ArrowArray,
    pub release: Option<unsafe extern "C" fn(*mut ArrowArray)>,
    pub private_data: *mut c_void,
}

impl ArrowArray {
    /// A released (empty) struct for an exporter to fill.
    pub fn empty() -> Self {
        ArrowArray {
            length: 0,
            null_count: 0,
            offset: 0,
            n_buffers: 0,
            n_children: 0,
            buffers: std::ptr::null_mut(),
            children: std::ptr::null_mut(),
            dictionary: std::ptr::null_mut(),
            release: None,
            private_data: std::ptr::null_mut(),
        }
    }
}

/// A borrowed view of one exported array (a column, or a record batch as a struct array).
#[derive(Clone, Copy)]
pub struct ArrayView<'a> {
    schema: &'a ArrowSchema,
    array: &'a ArrowArray,
    /// The physical index of logical row 0 (the array's offset, plus its parent's for a field of a
    /// struct array) and the number of logical rows.
    offset: usize,
    length: usize,
}

/// A C string of the export (format or name); the C data interface makes them NUL-terminated.
fn c_str<'a>(ptr: *const c_char) -> Cow<'a, str> {
    if ptr.is_null() {
        return Cow::Borrowed("");
    }
    // SAFETY: non-null, NUL-terminated, and owned by the export, which outlives 'a.
    unsafe { CStr::from_ptr(ptr) }.to_string_lossy()
}

fn malformed(what: &str) -> FerrotuneError {
    FerrotuneError::InvalidInput(format!(
        "malformed Arrow export ({what}): the exporter broke the Arrow C data interface"
    ))
}

impl<'a> ArrayView<'a> {
    /// # Safety
    /// `schema` and `array` must be a valid export of the Arrow C data interface (buffers as long
    /// as the format says for `offset + length` values), alive for `'a`.
    pub unsafe fn new(schema: &'a ArrowSchema, array: &'a ArrowArray) -> Self {
        ArrayView {
            schema,
            array,
            offset: array.offset.max(0) as usize,
            length: array.length.max(0) as usize,
        }
    }

    pub fn format(&self) -> Cow<'a, str> {
        c_str(self.schema.format)
    }

    pub fn name(&self) -> Cow<'a, str> {
        c_str(self.schema.name)
    }

    pub fn length(&self) -> usize {
        self.length
    }

    pub fn offset(&self) -> usize {
        self.offset
    }

    pub fn null_count(&self) -> i64 {
        self.array.null_count
    }

    /// Whether the array is dictionary-encoded: its buffers then hold indices into the dictionary
    /// (the format is the index type's), not the column's values.
    pub fn is_dictionary(&self) -> bool {
        !self.schema.dictionary.is_null()
    }

    pub fn n_children(&self) -> usize {
        self.schema.n_children.min(self.array.n_children).max(0) as usize
    }

    /// Child `i` as an array of its own (the values of a list).
    pub fn child(&self, i: usize) -> Option<ArrayView<'a>> {
        if i >= self.n_children() || self.schema.children.is_null() || self.array.children.is_null()
        {
            return None;
        }
        // SAFETY: the children arrays have n_children valid pointers (checked above), each a valid
        // export as long as this one.
        unsafe {
            let schema = &**self.schema.children.add(i);
            let array = &**self.array.children.add(i);
            Some(ArrayView::new(schema, array))
        }
    }

    /// Field `i` of a struct array (a column of a record batch): the child seen through the
    /// struct's offset and length.
    pub fn field(&self, i: usize) -> Option<ArrayView<'a>> {
        let mut child = self.child(i)?;
        child.offset += self.offset;
        child.length = self.length;
        Some(child)
    }

    fn buffer(&self, i: usize) -> *const c_void {
        if i as i64 >= self.array.n_buffers || self.array.buffers.is_null() {
            return std::ptr::null();
        }
        // SAFETY: buffers has n_buffers entries.
        unsafe { *self.array.buffers.add(i) }
    }

    /// Whether physical slot `index` is valid (not null).
    fn is_valid(&self, index: usize) -> bool {
        let validity = self.buffer(0) as *const u8;
        // SAFETY: the validity bitmap covers offset + length bits.
        validity.is_null() || unsafe { (*validity.add(index / 8) >> (index % 8)) & 1 == 1 }
    }

    /// The first null among `count` slots from physical index `start`, counted from `start`.
    fn first_null_from(&self, start: usize, count: usize) -> Option<usize> {
        if self.array.null_count == 0 {
            return None;
        }
        (0..count).find(|&i| !self.is_valid(start + i))
    }

    /// The first null row of the array, if any.
    pub fn first_null(&self) -> Option<usize> {
        self.first_null_from(self.offset(), self.length())
    }

    /// Buffer `index` as `len` values of `T` from physical index 0; None when absent.
    fn values<T>(&self, index: usize, len: usize) -> Option<&'a [T]> {
        if len == 0 {
            return Some(&[]);
        }
        let data = self.buffer(index) as *const T;
        if data.is_null() {
            return None;
        }
        // SAFETY: the exporter guarantees the buffer holds offset + length values of the format's
        // type, and callers ask for no more.
        Some(unsafe { std::slice::from_raw_parts(data, len) })
    }

    /// The `length + 1` offsets of a list or string array (i32 or i64 by `large`), checked:
    /// non-negative, never decreasing, and within `values` values.
    fn offsets(&self, large: bool, values: usize) -> Result<Offsets<'a>> {
        let (base, rows) = (self.offset(), self.length());
        let offsets = if large {
            Offsets::Large(
                &self
                    .values::<i64>(1, base + rows + 1)
                    .ok_or_else(|| malformed("no offsets"))?[base..],
            )
        } else {
            Offsets::Small(
                &self
                    .values::<i32>(1, base + rows + 1)
                    .ok_or_else(|| malformed("no offsets"))?[base..],
            )
        };
        let valid = match offsets {
            Offsets::Small(o) => check_offsets(o, values),
            Offsets::Large(o) => check_offsets(o, values),
        };
        if !valid {
            return Err(malformed("list offsets out of range"));
        }
        Ok(offsets)
    }
}

/// The offsets of a list or string array, from its first logical row.
#[derive(Clone, Copy)]
enum Offsets<'a> {
    Small(&'a [i32]),
    Large(&'a [i64]),
}

impl Offsets<'_> {
    fn get(&self, i: usize) -> usize {
        match self {
            Offsets::Small(o) => o[i] as usize,
            Offsets::Large(o) => o[i] as usize,
        }
    }
}

fn check_offsets<O: Copy + PartialOrd + Default + TryInto<usize>>(
    offsets: &[O],
    values: usize,
) -> bool {
    offsets.first().is_some_and(|&first| first >= O::default())
        && offsets.windows(2).all(|w| w[0] <= w[1])
        && offsets
            .last()
            .and_then(|&last| last.try_into().ok())
            .is_some_and(|last| last <= values)
}

/// Integer values a token list may hold.
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

/// The offset types of `list` (i32) and `large_list` (i64), checked non-negative before use.
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

/// The rows of a list column, read in place: row `r` is `values[offsets[r]..offsets[r + 1]]`.
struct ListRows<'a, O, V> {
    offsets: &'a [O],
    values: &'a [V],
}

impl<O: ListOffset, V: TokenValue> RowSource for ListRows<'_, O, V> {
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

fn is_list(format: &str) -> bool {
    format == "+l" || format == "+L"
}

/// The rows of a `list<int>` / `large_list<int>` column, read in place. `name` names the column in
/// errors: not a list, a null row, a null token id, values that are not integers, malformed offsets.
pub fn list_rows<'a>(column: ArrayView<'a>, name: &str) -> Result<Box<dyn RowSource + 'a>> {
    let format = column.format();
    if !is_list(&format) {
        return Err(FerrotuneError::InputType(format!(
            "'{name}' must hold a list of token ids per example, found Arrow type {format:?}"
        )));
    }
    if let Some(row) = column.first_null() {
        return Err(FerrotuneError::InvalidInput(format!(
            "example {row}: '{name}' is null"
        )));
    }
    let values = column
        .child(0)
        .ok_or_else(|| malformed("a list without values"))?;
    let offsets = column.offsets(format == "+L", values.length())?;
    let rows = column.length();
    // List offsets count from the values child's own offset.
    let value_base = values.offset();
    let (first, last) = (offsets.get(0), offsets.get(rows));
    if let Some(token) = values.first_null_from(value_base + first, last - first) {
        let row = (0..rows)
            .find(|&r| offsets.get(r + 1) > first + token)
            .unwrap_or(0);
        return Err(FerrotuneError::InvalidInput(format!(
            "example {row}: '{name}' holds a null token id"
        )));
    }
    let value_format = values.format();
    let not_integers = || {
        FerrotuneError::InputType(if values.is_dictionary() {
            format!("'{name}' must hold integer token ids, found dictionary-encoded values")
        } else if value_format.starts_with('+') {
            format!("'{name}' must hold integer token ids, found nested lists (one level too deep)")
        } else {
            format!("'{name}' must hold integer token ids, found Arrow type {value_format:?}")
        })
    };
    fn build<'a, O: ListOffset, V: TokenValue + 'a>(
        offsets: &'a [O],
        values: Option<&'a [V]>,
    ) -> Result<Box<dyn RowSource + 'a>> {
        let values = values.ok_or_else(|| malformed("a list of integers without data"))?;
        Ok(Box::new(ListRows { offsets, values }))
    }
    if values.is_dictionary() {
        return Err(not_integers());
    }
    let end = value_base + values.length();
    macro_rules! rows {
        ($t:ty) => {{
            let data = values.values::<$t>(1, end).map(|all| &all[value_base..]);
            match offsets {
                Offsets::Small(o) => build(o, data),
                Offsets::Large(o) => build(o, data),
            }
        }};
    }
    match &*value_format {
        "c" => rows!(i8),
        "C" => rows!(u8),
        "s" => rows!(i16),
        "S" => rows!(u16),
        "i" => rows!(i32),
        "I" => rows!(u32),
        "l" => rows!(i64),
        "L" => rows!(u64),
        _ => Err(not_integers()),
    }
}

/// A list column copied into owned rows (see [`list_rows`]).
pub fn read_int_lists(column: ArrayView<'_>, name: &str) -> Result<Ragged> {
    let rows = list_rows(column, name)?;
    let n = rows.rows();
    let mut out = Ragged::with_capacity(n, 0);
    for r in 0..n {
        out.starts.push(out.starts[r] + rows.row_len(r));
    }
    out.values = vec![0; out.starts[n]];
    for r in 0..n {
        rows.write_row(r, &mut out.values[out.starts[r]..out.starts[r + 1]]);
    }
    Ok(out)
}

/// A primitive column's values: integers, floats, or neither.
pub enum Numbers {
    Ints(Vec<i64>),
    Floats(Vec<f64>),
}

/// The values of a primitive numeric column (`name` for errors): nulls are refused, and a column of
/// another type (strings, lists, booleans, dictionary-encoded...) is None.
pub fn read_numbers(column: ArrayView<'_>, name: &str) -> Result<Option<Numbers>> {
    if let Some(row) = column.first_null() {
        return Err(FerrotuneError::InvalidInput(format!(
            "example {row}: '{name}' is null"
        )));
    }
    if column.is_dictionary() {
        return Ok(None);
    }
    let (base, rows) = (column.offset(), column.length());
    macro_rules! read {
        ($t:ty, $kind:ident, $out:ty) => {{
            let values = column
                .values::<$t>(1, base + rows)
                .ok_or_else(|| malformed("a numeric column without data"))?;
            Some(Numbers::$kind(
                values[base..].iter().map(|&v| v as $out).collect(),
            ))
        }};
    }
    Ok(match &*column.format() {
        "c" => read!(i8, Ints, i64),
        "C" => read!(u8, Ints, i64),
        "s" => read!(i16, Ints, i64),
        "S" => read!(u16, Ints, i64),
        "i" => read!(i32, Ints, i64),
        "I" => read!(u32, Ints, i64),
        "l" => read!(i64, Ints, i64),
        "L" => read!(u64, Ints, i64),
        "f" => read!(f32, Floats, f64),
        "g" => read!(f64, Floats, f64),
        _ => None,
    })
}

/// A `string` / `large_string` column as owned strings (`name` for errors).
pub fn read_strings(column: ArrayView<'_>, name: &str) -> Result<Vec<String>> {
    let format = column.format();
    if format != "u" && format != "U" {
        return Err(FerrotuneError::InputType(format!(
            "'{name}' must hold text (Arrow string), found Arrow type {format:?}"
        )));
    }
    if let Some(row) = column.first_null() {
        return Err(FerrotuneError::InputType(format!(
            "'{name}': example {row} is null"
        )));
    }
    let rows = column.length();
    // The data buffer's length is not exported: the offsets are checked for order and sign.
    let offsets = column.offsets(format == "U", usize::MAX)?;
    let data = column
        .values::<u8>(2, offsets.get(rows))
        .ok_or_else(|| malformed("strings without data"))?;
    (0..rows)
        .map(|row| {
            let bytes = &data[offsets.get(row)..offsets.get(row + 1)];
            // Arrow strings are UTF-8 by specification; check anyway, a bad exporter must not
            // become undefined behaviour.
            std::str::from_utf8(bytes).map(str::to_owned).map_err(|_| {
                FerrotuneError::InputType(format!("'{name}': example {row} is not valid UTF-8"))
            })
        })
        .collect()
}

/// A `list<string>` column (`large_` either way) as owned rows of words: pre-split examples
/// (`is_split_into_words`). Errors name the example: a null example, a null word, words that are
/// not text.
pub fn read_string_lists(column: ArrayView<'_>, name: &str) -> Result<Vec<Vec<String>>> {
    let format = column.format();
    if !is_list(&format) {
        return Err(FerrotuneError::InputType(format!(
            "'{name}' must hold a list of words per example, found Arrow type {format:?}"
        )));
    }
    if let Some(row) = column.first_null() {
        return Err(FerrotuneError::InputType(format!(
            "'{name}': example {row} is null"
        )));
    }
    let values = column
        .child(0)
        .ok_or_else(|| malformed("a list without values"))?;
    let offsets = column.offsets(format == "+L", values.length())?;
    let rows = column.length();
    // Only the words the rows use: a sliced array's values child may hold nulls outside them.
    let (first, last) = (offsets.get(0), offsets.get(rows));
    if let Some(word) = values.first_null_from(values.offset() + first, last - first) {
        let row = (0..rows)
            .find(|&r| offsets.get(r + 1) > first + word)
            .unwrap_or(0);
        return Err(FerrotuneError::InputType(format!(
            "'{name}': a word of example {row} is null"
        )));
    }
    let value_format = values.format();
    if value_format != "u" && value_format != "U" {
        return Err(FerrotuneError::InputType(format!(
            "'{name}' must hold words (Arrow strings), found lists of Arrow type {value_format:?}"
        )));
    }
    let word_offsets = values.offsets(value_format == "U", usize::MAX)?;
    let data = values
        .values::<u8>(2, word_offsets.get(values.length()))
        .ok_or_else(|| malformed("strings without data"))?;
    (0..rows)
        .map(|row| {
            (offsets.get(row)..offsets.get(row + 1))
                .map(|word| {
                    let bytes = &data[word_offsets.get(word)..word_offsets.get(word + 1)];
                    std::str::from_utf8(bytes).map(str::to_owned).map_err(|_| {
                        FerrotuneError::InputType(format!(
                            "'{name}': a word of example {row} is not valid UTF-8"
                        ))
                    })
                })
                .collect()
        })
        .collect()
}
