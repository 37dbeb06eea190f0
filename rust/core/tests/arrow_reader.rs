//! The Arrow reader (`ferrotune_core::arrow`) on exports built by hand: the C data interface's
//! structs filled from owned Rust buffers, so that every shape an exporter may hand over (slices on
//! the array, on the values child and on a record batch, nulls, malformed offsets, wrong types)
//! can be produced without an Arrow library. Whatever the export, the reader must answer with the
//! right rows or a `FerrotuneError`, never a panic or a read outside the buffers.

use std::ffi::{c_void, CString};
use std::ptr;

use ferrotune_core::arrow::{
    list_rows, read_int_lists, read_numbers, read_strings, ArrayView, ArrowArray, ArrowSchema,
    Numbers,
};
use ferrotune_core::{FerrotuneError, Ragged, RowSource, Side};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Building exports by hand
// ---------------------------------------------------------------------------------------------

/// Primitive types a buffer is built from.
trait Native: Copy {}
impl Native for i8 {}
impl Native for u8 {}
impl Native for i16 {}
impl Native for u16 {}
impl Native for i32 {}
impl Native for u32 {}
impl Native for i64 {}
impl Native for u64 {}
impl Native for f32 {}
impl Native for f64 {}

/// An owned buffer, 8-byte aligned so that any primitive can be read from it in place.
#[derive(Clone, Debug)]
struct Buf(Vec<u64>);

impl Buf {
    fn of<T: Native>(values: &[T]) -> Buf {
        let bytes = std::mem::size_of_val(values);
        let mut words = vec![0u64; bytes.div_ceil(8).max(1)];
        // SAFETY: `words` holds at least `bytes` bytes, and T is a primitive without padding.
        unsafe {
            ptr::copy_nonoverlapping(
                values.as_ptr() as *const u8,
                words.as_mut_ptr() as *mut u8,
                bytes,
            )
        };
        Buf(words)
    }

    /// A validity bitmap (bit `i` set when slot `i` is valid, least significant bit first).
    fn bitmap(valid: &[bool]) -> Buf {
        let mut bytes = vec![0u8; valid.len().div_ceil(8)];
        for (i, &v) in valid.iter().enumerate() {
            if v {
                bytes[i / 8] |= 1 << (i % 8);
            }
        }
        Buf::of(&bytes)
    }
}

/// The description of an array (schema and data together), turned into C structs by `export`.
#[derive(Clone, Debug)]
struct Arr {
    format: String,
    name: String,
    length: i64,
    offset: i64,
    null_count: i64,
    buffers: Vec<Option<Buf>>,
    children: Vec<Arr>,
    /// The dictionary of a dictionary-encoded array (whose own buffers hold the indices).
    dictionary: Option<Box<Arr>>,
}

impl Arr {
    /// A primitive array: no validity bitmap, one data buffer.
    fn prim<T: Native>(format: &str, values: &[T]) -> Arr {
        Arr {
            format: format.into(),
            name: String::new(),
            length: values.len() as i64,
            offset: 0,
            null_count: 0,
            buffers: vec![None, Some(Buf::of(values))],
            children: Vec::new(),
            dictionary: None,
        }
    }

    /// A `list` (`+l`, i32 offsets) or `large_list` (`+L`, i64 offsets) array over `values`.
    fn list<O: Native>(format: &str, offsets: &[O], values: Arr) -> Arr {
        Arr {
            format: format.into(),
            name: String::new(),
            length: offsets.len() as i64 - 1,
            offset: 0,
            null_count: 0,
            buffers: vec![None, Some(Buf::of(offsets))],
            children: vec![values.named("item")],
            dictionary: None,
        }
    }

    /// A `string` (`u`, i32 offsets) or `large_string` (`U`, i64 offsets) array.
    fn strings<O: Native>(format: &str, offsets: &[O], data: &[u8]) -> Arr {
        Arr {
            format: format.into(),
            name: String::new(),
            length: offsets.len() as i64 - 1,
            offset: 0,
            null_count: 0,
            buffers: vec![None, Some(Buf::of(offsets)), Some(Buf::of(data))],
            children: Vec::new(),
            dictionary: None,
        }
    }

    /// A record batch: a struct array (`+s`) of `length` rows whose children are the columns.
    fn record_batch(length: i64, columns: Vec<(&str, Arr)>) -> Arr {
        Arr {
            format: "+s".into(),
            name: String::new(),
            length,
            offset: 0,
            null_count: 0,
            buffers: vec![None],
            children: columns.into_iter().map(|(n, c)| c.named(n)).collect(),
            dictionary: None,
        }
    }

    fn named(mut self, name: &str) -> Arr {
        self.name = name.into();
        self
    }

    /// `length` rows from physical row `offset`, as a zero-copy slice is exported.
    fn slice(mut self, offset: i64, length: i64) -> Arr {
        self.offset = offset;
        self.length = length;
        self
    }

    /// A validity bitmap over the physical slots; `null_count` counts its nulls.
    fn validity(mut self, valid: &[bool]) -> Arr {
        self.buffers[0] = Some(Buf::bitmap(valid));
        self.null_count = valid.iter().filter(|v| !**v).count() as i64;
        self
    }

    fn null_count(mut self, null_count: i64) -> Arr {
        self.null_count = null_count;
        self
    }

    /// Replaces (or, with None, removes) buffer `i`.
    fn buffer(mut self, i: usize, buffer: Option<Buf>) -> Arr {
        self.buffers[i] = buffer;
        self
    }

    /// Dictionary-encoded: this array's values become indices into `dictionary`.
    fn with_dictionary(mut self, dictionary: Arr) -> Arr {
        self.dictionary = Some(Box::new(dictionary));
        self
    }

    fn without_children(mut self) -> Arr {
        self.children.clear();
        self
    }

    fn export(&self) -> Export {
        let format = CString::new(self.format.clone()).unwrap();
        let name = CString::new(self.name.clone()).unwrap();
        let buffers = self.buffers.clone();
        let mut buffer_ptrs: Vec<*const c_void> = buffers
            .iter()
            .map(|b| match b {
                Some(b) => b.0.as_ptr() as *const c_void,
                None => ptr::null(),
            })
            .collect();
        let children: Vec<Export> = self.children.iter().map(Arr::export).collect();
        let mut child_schemas: Vec<*mut ArrowSchema> = children
            .iter()
            .map(|c| &*c.schema as *const ArrowSchema as *mut ArrowSchema)
            .collect();
        let mut child_arrays: Vec<*mut ArrowArray> = children
            .iter()
            .map(|c| &*c.array as *const ArrowArray as *mut ArrowArray)
            .collect();
        let dictionary = self.dictionary.as_ref().map(|d| Box::new(d.export()));
        let (schema_dictionary, array_dictionary) = match &dictionary {
            Some(d) => (
                &*d.schema as *const ArrowSchema as *mut ArrowSchema,
                &*d.array as *const ArrowArray as *mut ArrowArray,
            ),
            None => (ptr::null_mut(), ptr::null_mut()),
        };
        let (schema_children, array_children) = if children.is_empty() {
            (ptr::null_mut(), ptr::null_mut())
        } else {
            (child_schemas.as_mut_ptr(), child_arrays.as_mut_ptr())
        };
        let schema = Box::new(ArrowSchema {
            format: format.as_ptr(),
            name: name.as_ptr(),
            metadata: ptr::null(),
            flags: 2, // ARROW_FLAG_NULLABLE
            n_children: children.len() as i64,
            children: schema_children,
            dictionary: schema_dictionary,
            release: None,
            private_data: ptr::null_mut(),
        });
        let array = Box::new(ArrowArray {
            length: self.length,
            null_count: self.null_count,
            offset: self.offset,
            n_buffers: buffer_ptrs.len() as i64,
            n_children: children.len() as i64,
            buffers: buffer_ptrs.as_mut_ptr(),
            children: array_children,
            dictionary: array_dictionary,
            release: None,
            private_data: ptr::null_mut(),
        });
        Export {
            schema,
            array,
            _format: format,
            _name: name,
            _buffers: buffers,
            _buffer_ptrs: buffer_ptrs,
            _children: children,
            _child_schemas: child_schemas,
            _child_arrays: child_arrays,
            _dictionary: dictionary,
        }
    }
}

/// An export and everything its pointers point into (heap allocations: moving it keeps them valid).
struct Export {
    schema: Box<ArrowSchema>,
    array: Box<ArrowArray>,
    _format: CString,
    _name: CString,
    _buffers: Vec<Option<Buf>>,
    _buffer_ptrs: Vec<*const c_void>,
    _children: Vec<Export>,
    _child_schemas: Vec<*mut ArrowSchema>,
    _child_arrays: Vec<*mut ArrowArray>,
    _dictionary: Option<Box<Export>>,
}

impl Export {
    fn view(&self) -> ArrayView<'_> {
        // SAFETY: the structs and every buffer they point to are owned by `self`. The tests that
        // describe malformed offsets rely on the reader checking them before any value is read.
        unsafe { ArrayView::new(&self.schema, &self.array) }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading helpers
// ---------------------------------------------------------------------------------------------

const NAME: &str = "input_ids";

fn ragged_rows(ragged: &Ragged) -> Vec<Vec<i64>> {
    (0..ragged.rows()).map(|r| ragged.row(r).to_vec()).collect()
}

fn source_rows(source: &dyn RowSource) -> Vec<Vec<i64>> {
    (0..source.rows())
        .map(|r| {
            let mut row = vec![i64::MIN; source.row_len(r)];
            source.write_row(r, &mut row);
            row
        })
        .collect()
}

/// Reads a list column both ways (`read_int_lists` and the in-place `list_rows`) and checks that
/// they agree, on the rows or on the error.
fn lists_of(view: ArrayView<'_>) -> Result<Vec<Vec<i64>>, FerrotuneError> {
    let owned = read_int_lists(view, NAME);
    let in_place = list_rows(view, NAME);
    match (owned, in_place) {
        (Ok(owned), Ok(in_place)) => {
            let rows = ragged_rows(&owned);
            assert_eq!(in_place.rows(), rows.len());
            assert_eq!(
                source_rows(&*in_place),
                rows,
                "list_rows and read_int_lists differ"
            );
            Ok(rows)
        }
        (Err(a), Err(b)) => {
            assert_eq!(a.to_string(), b.to_string());
            Err(a)
        }
        (a, b) => panic!(
            "read_int_lists and list_rows disagree: {:?} vs {:?}",
            a.map(|r| ragged_rows(&r)),
            b.map(|s| source_rows(&*s))
        ),
    }
}

fn lists(arr: &Arr) -> Result<Vec<Vec<i64>>, FerrotuneError> {
    let export = arr.export();
    lists_of(export.view())
}

fn invalid_input<T>(result: Result<T, FerrotuneError>) -> String {
    match result {
        Err(FerrotuneError::InvalidInput(message)) => message,
        Err(other) => panic!("expected an InvalidInput error, got {other:?}"),
        Ok(_) => panic!("expected an InvalidInput error, got Ok"),
    }
}

fn input_type<T>(result: Result<T, FerrotuneError>) -> String {
    match result {
        Err(FerrotuneError::InputType(message)) => message,
        Err(other) => panic!("expected an InputType error, got {other:?}"),
        Ok(_) => panic!("expected an InputType error, got Ok"),
    }
}

fn assert_malformed<T>(result: Result<T, FerrotuneError>) {
    let message = invalid_input(result);
    assert!(
        message.contains("malformed Arrow export"),
        "unexpected message: {message}"
    );
}

fn numbers(arr: &Arr) -> Result<Option<Numbers>, FerrotuneError> {
    read_numbers(arr.export().view(), "labels")
}

fn ints(arr: &Arr) -> Vec<i64> {
    match numbers(arr) {
        Ok(Some(Numbers::Ints(values))) => values,
        Ok(Some(Numbers::Floats(values))) => panic!("expected integers, got floats {values:?}"),
        Ok(None) => panic!("expected integers, got None"),
        Err(err) => panic!("expected integers, got {err}"),
    }
}

fn floats(arr: &Arr) -> Vec<f64> {
    match numbers(arr) {
        Ok(Some(Numbers::Floats(values))) => values,
        Ok(Some(Numbers::Ints(values))) => panic!("expected floats, got integers {values:?}"),
        Ok(None) => panic!("expected floats, got None"),
        Err(err) => panic!("expected floats, got {err}"),
    }
}

fn strings(arr: &Arr) -> Result<Vec<String>, FerrotuneError> {
    read_strings(arr.export().view(), "text")
}

fn rows(rows: &[&[i64]]) -> Vec<Vec<i64>> {
    rows.iter().map(|r| r.to_vec()).collect()
}

// ---------------------------------------------------------------------------------------------
// Lists read correctly
// ---------------------------------------------------------------------------------------------

#[test]
fn list_of_int64_reads_every_row() {
    let arr = Arr::list("+l", &[0i32, 2, 2, 5], Arr::prim("l", &[1i64, 2, 3, 4, 5]));
    let export = arr.export();
    let source = list_rows(export.view(), NAME).unwrap();
    assert_eq!(source.rows(), 3);
    assert_eq!(
        (0..3).map(|r| source.row_len(r)).collect::<Vec<_>>(),
        [2, 0, 3]
    );
    let mut row = [0i64; 3];
    source.write_row(2, &mut row);
    assert_eq!(row, [3, 4, 5]);
    assert_eq!(source.row_lengths(), [2, 0, 3]);
    assert_eq!(lists(&arr).unwrap(), rows(&[&[1, 2], &[], &[3, 4, 5]]));
    let owned = read_int_lists(export.view(), NAME).unwrap();
    assert_eq!(owned.starts, [0, 2, 2, 5]);
    assert_eq!(owned.values, [1, 2, 3, 4, 5]);
}

#[test]
fn large_list_of_int32_reads_every_row() {
    let arr = Arr::list(
        "+L",
        &[0i64, 1, 4, 4, 6],
        Arr::prim("i", &[-7i32, i32::MAX, 0, i32::MIN, 8, 9]),
    );
    assert_eq!(
        lists(&arr).unwrap(),
        rows(&[&[-7], &[i32::MAX as i64, 0, i32::MIN as i64], &[], &[8, 9]])
    );
}

#[test]
fn every_integer_value_type_is_widened_to_i64() {
    fn check<T: Native>(format: &str, values: &[T], expected: &[i64]) {
        for list_format in ["+l", "+L"] {
            let arr = if list_format == "+l" {
                Arr::list(list_format, &[0i32, 1, 3], Arr::prim(format, values))
            } else {
                Arr::list(list_format, &[0i64, 1, 3], Arr::prim(format, values))
            };
            let got = lists(&arr).unwrap_or_else(|e| panic!("{list_format}<{format}>: {e}"));
            assert_eq!(
                got,
                vec![expected[..1].to_vec(), expected[1..].to_vec()],
                "{list_format}<{format}>"
            );
        }
    }
    check("c", &[-128i8, 0, 127], &[-128, 0, 127]);
    check("C", &[0u8, 200, 255], &[0, 200, 255]);
    check("s", &[i16::MIN, -1, i16::MAX], &[-32768, -1, 32767]);
    check("S", &[0u16, 1, u16::MAX], &[0, 1, 65535]);
    check(
        "i",
        &[i32::MIN, 5, i32::MAX],
        &[i32::MIN as i64, 5, i32::MAX as i64],
    );
    check("I", &[0u32, 7, u32::MAX], &[0, 7, u32::MAX as i64]);
    check("l", &[i64::MIN, 0, i64::MAX], &[i64::MIN, 0, i64::MAX]);
    check("L", &[0u64, 50_257, 1 << 40], &[0, 50_257, 1 << 40]);
}

#[test]
fn list_rows_feed_the_padding_kernel() {
    let arr = Arr::list("+l", &[0i32, 2, 3], Arr::prim("C", &[5u8, 6, 7]));
    let export = arr.export();
    let source = list_rows(export.view(), NAME).unwrap();
    assert!(source.fits(3) && !source.fits(1));
    let mut out = vec![0i64; 6];
    source.pad_into(3, -1, Side::Right, &mut out);
    assert_eq!(out, [5, 6, -1, 7, -1, -1]);
    source.pad_into(3, 0, Side::Left, &mut out);
    assert_eq!(out, [0, 5, 6, 0, 0, 7]);
}

#[test]
fn view_accessors_describe_the_export() {
    let arr = Arr::list("+L", &[0i64, 1, 2, 3], Arr::prim("l", &[1i64, 2, 3]))
        .named("ids")
        .validity(&[true, false, true])
        .slice(1, 2);
    let export = arr.export();
    let view = export.view();
    assert_eq!(view.format(), "+L");
    assert_eq!(view.name(), "ids");
    assert_eq!(view.length(), 2);
    assert_eq!(view.offset(), 1);
    assert_eq!(view.null_count(), 1);
    assert_eq!(view.n_children(), 1);
    assert_eq!(view.first_null(), Some(0));
    let child = view.child(0).unwrap();
    assert_eq!(child.format(), "l");
    assert_eq!(child.name(), "item");
    assert_eq!((child.length(), child.offset()), (3, 0));
    assert!(view.child(1).is_none());
    assert!(child.child(0).is_none());
}

// ---------------------------------------------------------------------------------------------
// Slices: on the list, on its values, on a record batch
// ---------------------------------------------------------------------------------------------

#[test]
fn sliced_list_reads_offsets_from_its_first_row() {
    // Physical rows [1], [2, 3], [], [4, 5, 6]; the slice keeps rows 1..3.
    let full = Arr::list(
        "+l",
        &[0i32, 1, 3, 3, 6],
        Arr::prim("l", &[1i64, 2, 3, 4, 5, 6]),
    );
    assert_eq!(
        lists(&full.clone().slice(1, 2)).unwrap(),
        rows(&[&[2, 3], &[]])
    );
    assert_eq!(
        lists(&full.clone().slice(1, 3)).unwrap(),
        rows(&[&[2, 3], &[], &[4, 5, 6]])
    );
    assert_eq!(
        lists(&full.clone().slice(3, 1)).unwrap(),
        rows(&[&[4, 5, 6]])
    );
    assert_eq!(lists(&full.slice(4, 0)).unwrap(), Vec::<Vec<i64>>::new());
}

#[test]
fn values_child_with_its_own_offset() {
    // The child's logical values are [10, 11, 12, 13] (two junk values before them): list offsets
    // count from the child's offset.
    let values = Arr::prim("l", &[-1i64, -2, 10, 11, 12, 13]).slice(2, 4);
    let arr = Arr::list("+l", &[0i32, 3, 4], values.clone());
    assert_eq!(lists(&arr).unwrap(), rows(&[&[10, 11, 12], &[13]]));
    // Both offsets at once, with large offsets and narrow values.
    let values = Arr::prim("S", &[9u16, 9, 9, 1, 2, 3, 4, 5]).slice(3, 5);
    let arr = Arr::list("+L", &[0i64, 2, 2, 5], values).slice(1, 2);
    assert_eq!(lists(&arr).unwrap(), rows(&[&[], &[3, 4, 5]]));
}

/// A record batch of three columns over four physical rows.
fn batch() -> Arr {
    Arr::record_batch(
        4,
        vec![
            (
                "input_ids",
                Arr::list(
                    "+l",
                    &[0i32, 1, 3, 3, 6],
                    Arr::prim("l", &[1i64, 2, 3, 4, 5, 6]),
                ),
            ),
            ("labels", Arr::prim("l", &[10i64, 20, 30, 40])),
            (
                "text",
                Arr::strings("u", &[0i32, 1, 3, 6, 10], b"abbcccdddd"),
            ),
        ],
    )
}

#[test]
fn record_batch_fields_are_read_through_the_batch_offset() {
    let export = batch().slice(1, 2).export();
    let view = export.view();
    assert_eq!(view.n_children(), 3);
    let ids = view.field(0).unwrap();
    assert_eq!(ids.name(), "input_ids");
    assert_eq!((ids.offset(), ids.length()), (1, 2));
    assert_eq!(lists_of(ids).unwrap(), rows(&[&[2, 3], &[]]));
    match read_numbers(view.field(1).unwrap(), "labels").unwrap() {
        Some(Numbers::Ints(v)) => assert_eq!(v, [20, 30]),
        _ => panic!("labels are integers"),
    }
    assert_eq!(
        read_strings(view.field(2).unwrap(), "text").unwrap(),
        ["bb", "ccc"]
    );
    assert!(view.field(3).is_none());
    // `child` is the raw child: the batch's offset and length do not apply to it.
    let raw = view.child(0).unwrap();
    assert_eq!((raw.offset(), raw.length()), (0, 4));
    assert_eq!(lists_of(raw).unwrap().len(), 4);
}

#[test]
fn record_batch_offset_adds_to_the_field_offsets() {
    // The list field is itself a slice starting at physical row 1; the batch skips one more row.
    let ids = Arr::list(
        "+l",
        &[0i32, 1, 3, 3, 6, 7],
        Arr::prim("i", &[0i32, 1, 2, 3, 4, 5, 6, 7]).slice(1, 7),
    )
    .slice(1, 4);
    let labels = Arr::prim("C", &[0u8, 1, 2, 3, 4]).slice(1, 4);
    let arr = Arr::record_batch(4, vec![("input_ids", ids), ("labels", labels)]).slice(1, 3);
    let export = arr.export();
    let view = export.view();
    // The list's physical rows are [1], [2, 3], [], [4, 5, 6], [7] (its child skips one value);
    // list offset 1 plus batch offset 1: rows 2..5.
    assert_eq!(
        lists_of(view.field(0).unwrap()).unwrap(),
        rows(&[&[], &[4, 5, 6], &[7]])
    );
    match read_numbers(view.field(1).unwrap(), "labels").unwrap() {
        Some(Numbers::Ints(v)) => assert_eq!(v, [2, 3, 4]),
        _ => panic!("labels are integers"),
    }
}

#[test]
fn record_batch_offset_applies_to_the_field_nulls() {
    let ids = Arr::list("+l", &[0i32, 1, 2, 3, 4], Arr::prim("l", &[1i64, 2, 3, 4]))
        .validity(&[false, true, false, true]);
    let labels = Arr::prim("l", &[1i64, 2, 3, 4]).validity(&[true, true, true, false]);
    let batch = Arr::record_batch(4, vec![("input_ids", ids), ("labels", labels)]);
    // Rows 1..2 hold no null: both columns read.
    let export = batch.clone().slice(1, 1).export();
    assert_eq!(
        lists_of(export.view().field(0).unwrap()).unwrap(),
        rows(&[&[2]])
    );
    assert!(read_numbers(export.view().field(1).unwrap(), "labels").is_ok());
    // Rows 1..4: physical row 2 (logical 1) of the list is null, and physical 3 of the labels.
    let export = batch.slice(1, 3).export();
    assert_eq!(
        invalid_input(lists_of(export.view().field(0).unwrap())),
        "example 1: 'input_ids' is null"
    );
    assert_eq!(
        invalid_input(read_numbers(export.view().field(1).unwrap(), "labels")),
        "example 2: 'labels' is null"
    );
}

#[test]
fn chunked_table_chunks_are_read_independently() {
    // One table of five rows stored as two record batches (chunks); the second chunk is a slice
    // of a larger batch, as `table.slice` or a filtered read can produce.
    let first = Arr::record_batch(
        2,
        vec![
            (
                "input_ids",
                Arr::list("+l", &[0i32, 2, 3], Arr::prim("l", &[101i64, 7, 102])),
            ),
            ("labels", Arr::prim("l", &[0i64, 1])),
        ],
    );
    let second = Arr::record_batch(
        5,
        vec![
            (
                "input_ids",
                Arr::list(
                    "+l",
                    &[0i32, 1, 2, 4, 4, 5],
                    Arr::prim("l", &[9i64, 101, 8, 9, 102]),
                ),
            ),
            ("labels", Arr::prim("l", &[5i64, 1, 0, 1, 5])),
        ],
    )
    .slice(1, 3);
    let expected_ids = [rows(&[&[101, 7], &[102]]), rows(&[&[101], &[8, 9], &[]])];
    let expected_labels = [vec![0i64, 1], vec![1, 0, 1]];
    let mut all_ids = Vec::new();
    let mut all_labels = Vec::new();
    for (i, chunk) in [first, second].iter().enumerate() {
        let export = chunk.export();
        let view = export.view();
        let ids = lists_of(view.field(0).unwrap()).unwrap();
        assert_eq!(ids, expected_ids[i], "chunk {i}");
        let labels = match read_numbers(view.field(1).unwrap(), "labels").unwrap() {
            Some(Numbers::Ints(v)) => v,
            _ => panic!("labels are integers"),
        };
        assert_eq!(labels, expected_labels[i], "chunk {i}");
        all_ids.extend(ids);
        all_labels.extend(labels);
    }
    assert_eq!(all_ids, rows(&[&[101, 7], &[102], &[101], &[8, 9], &[]]));
    assert_eq!(all_labels, [0, 1, 1, 0, 1]);
}

// ---------------------------------------------------------------------------------------------
// Empty arrays
// ---------------------------------------------------------------------------------------------

#[test]
fn empty_list_array_needs_no_data_buffer() {
    for format in ["+l", "+L"] {
        let values = Arr::prim("l", &[0i64; 0]).buffer(1, None);
        let arr = if format == "+l" {
            Arr::list(format, &[0i32], values)
        } else {
            Arr::list(format, &[0i64], values)
        };
        assert_eq!(arr.length, 0);
        assert_eq!(lists(&arr).unwrap(), Vec::<Vec<i64>>::new(), "{format}");
        let export = arr.export();
        let owned = read_int_lists(export.view(), NAME).unwrap();
        assert_eq!(
            (owned.starts.as_slice(), owned.values.len()),
            (&[0usize][..], 0)
        );
    }
}

#[test]
fn empty_rows_over_empty_values_need_no_data_buffer() {
    let values = Arr::prim("i", &[0i32; 0]).buffer(1, None);
    let arr = Arr::list("+l", &[0i32, 0, 0], values);
    assert_eq!(lists(&arr).unwrap(), rows(&[&[], &[]]));
}

#[test]
fn empty_numbers_and_strings_need_no_data_buffer() {
    let arr = Arr::prim("l", &[0i64; 0]).buffer(1, None);
    assert_eq!(ints(&arr), Vec::<i64>::new());
    let arr = Arr::strings("u", &[0i32], b"").buffer(2, None);
    assert_eq!(strings(&arr).unwrap(), Vec::<String>::new());
    let arr = Arr::strings("U", &[0i64, 0, 0], b"").buffer(2, None);
    assert_eq!(strings(&arr).unwrap(), ["", ""]);
}

// ---------------------------------------------------------------------------------------------
// Malformed exports: an error, never a panic or a read outside the buffers
// ---------------------------------------------------------------------------------------------

#[test]
fn last_offset_beyond_the_values_is_malformed() {
    let arr = Arr::list("+l", &[0i32, 2, 6], Arr::prim("l", &[1i64, 2, 3, 4, 5]));
    assert_malformed(lists(&arr));
    let arr = Arr::list("+L", &[0i64, 2, 6], Arr::prim("l", &[1i64, 2, 3, 4, 5]));
    assert_malformed(lists(&arr));
    let arr = Arr::list("+L", &[0i64, i64::MAX], Arr::prim("l", &[1i64]));
    assert_malformed(lists(&arr));
    let arr = Arr::list("+l", &[0i32, i32::MAX], Arr::prim("C", &[1u8]));
    assert_malformed(lists(&arr));
}

#[test]
fn last_offset_beyond_a_sliced_child_is_malformed() {
    // The buffer holds six values but the child is values 2..5: offset 4 is beyond it even though
    // the buffer is long enough.
    let values = Arr::prim("l", &[0i64, 1, 2, 3, 4, 5]).slice(2, 3);
    assert_malformed(lists(&Arr::list("+l", &[0i32, 2, 4], values.clone())));
    assert_eq!(
        lists(&Arr::list("+l", &[0i32, 2, 3], values)).unwrap(),
        rows(&[&[2, 3], &[4]])
    );
}

#[test]
fn decreasing_offsets_are_malformed() {
    let values = Arr::prim("l", &[1i64, 2, 3, 4, 5]);
    assert_malformed(lists(&Arr::list("+l", &[0i32, 3, 2, 4], values.clone())));
    assert_malformed(lists(&Arr::list("+L", &[0i64, 3, 2, 4], values.clone())));
    // Inside a slice's window...
    let arr = Arr::list("+l", &[0i32, 1, 4, 2, 5], values.clone()).slice(1, 2);
    assert_malformed(lists(&arr));
    // ...but a bad offset outside the window is never read.
    let arr = Arr::list("+l", &[4i32, 0, 1, 3], values).slice(1, 2);
    assert_eq!(lists(&arr).unwrap(), rows(&[&[1], &[2, 3]]));
}

#[test]
fn negative_first_offset_is_malformed() {
    let values = Arr::prim("l", &[1i64, 2, 3]);
    assert_malformed(lists(&Arr::list("+l", &[-1i32, 1, 2], values.clone())));
    assert_malformed(lists(&Arr::list("+L", &[-5i64, 1, 2], values.clone())));
    assert_malformed(lists(&Arr::list("+L", &[i64::MIN, 0], values.clone())));
    assert_malformed(lists(&Arr::list("+l", &[i32::MIN, -1, 0], values.clone())));
    assert_malformed(lists(
        &Arr::list("+l", &[0i32, -1, 2], values.clone()).slice(1, 1),
    ));
    // A negative offset in every slot (never decreasing, last within range).
    assert_malformed(lists(&Arr::list("+l", &[-3i32, -2, -1], values)));
}

#[test]
fn missing_buffers_and_children_are_malformed() {
    let arr = Arr::list("+l", &[0i32, 1], Arr::prim("l", &[1i64]));
    let message = invalid_input(lists(&arr.clone().buffer(1, None)));
    assert!(
        message.contains("malformed Arrow export (no offsets)"),
        "{message}"
    );
    let message = invalid_input(lists(&arr.clone().without_children()));
    assert!(
        message.contains("malformed Arrow export (a list without values)"),
        "{message}"
    );
    let values = Arr::prim("l", &[1i64]).buffer(1, None);
    let message = invalid_input(lists(&Arr::list("+l", &[0i32, 1], values)));
    assert!(
        message.contains("malformed Arrow export (a list of integers without data)"),
        "{message}"
    );
    let message = invalid_input(numbers(&Arr::prim("i", &[1i32]).buffer(1, None)));
    assert!(message.contains("malformed Arrow export"), "{message}");
    let message = invalid_input(strings(
        &Arr::strings("u", &[0i32, 1], b"a").buffer(2, None),
    ));
    assert!(message.contains("malformed Arrow export"), "{message}");
    let message = invalid_input(strings(
        &Arr::strings("u", &[0i32, 1], b"a").buffer(1, None),
    ));
    assert!(message.contains("malformed Arrow export"), "{message}");
}

#[test]
fn malformed_string_offsets() {
    assert_malformed(strings(&Arr::strings("u", &[-1i32, 1], b"ab")));
    assert_malformed(strings(&Arr::strings("u", &[0i32, 2, 1], b"ab")));
    assert_malformed(strings(&Arr::strings("U", &[0i64, 2, 1], b"ab")));
    assert_malformed(strings(&Arr::strings("U", &[i64::MIN, 1], b"ab")));
}

// ---------------------------------------------------------------------------------------------
// Nulls
// ---------------------------------------------------------------------------------------------

#[test]
fn null_row_is_reported_with_its_example() {
    let list = Arr::list("+l", &[0i32, 1, 2, 3, 4], Arr::prim("l", &[1i64, 2, 3, 4]));
    let arr = list.clone().validity(&[true, true, false, true]);
    assert_eq!(invalid_input(lists(&arr)), "example 2: 'input_ids' is null");
    // Counted from the slice's first row.
    assert_eq!(
        invalid_input(lists(&arr.clone().slice(1, 3))),
        "example 1: 'input_ids' is null"
    );
    // A null outside the slice is not read.
    assert_eq!(lists(&arr.slice(0, 2)).unwrap(), rows(&[&[1], &[2]]));
    let arr = list
        .clone()
        .validity(&[false, true, true, true])
        .slice(1, 3);
    assert_eq!(lists(&arr).unwrap(), rows(&[&[2], &[3], &[4]]));
    // An unknown null count (-1) still has its bitmap read.
    let arr = list.validity(&[true, false, true, true]).null_count(-1);
    assert_eq!(invalid_input(lists(&arr)), "example 1: 'input_ids' is null");
}

#[test]
fn null_row_across_bitmap_bytes() {
    let n = 20usize;
    let offsets: Vec<i32> = (0..=n as i32).collect();
    let values: Vec<i64> = (0..n as i64).collect();
    let mut valid = vec![true; n];
    valid[13] = false;
    let arr = Arr::list("+l", &offsets, Arr::prim("l", &values)).validity(&valid);
    assert_eq!(
        invalid_input(lists(&arr.clone())),
        "example 13: 'input_ids' is null"
    );
    assert_eq!(
        invalid_input(lists(&arr.clone().slice(9, 10))),
        "example 4: 'input_ids' is null"
    );
    assert_eq!(lists(&arr.slice(14, 6)).unwrap().len(), 6);
}

#[test]
fn null_token_id_is_reported_with_its_row() {
    // Rows [1, 2], [3, null], [5].
    let values = Arr::prim("l", &[1i64, 2, 3, 4, 5]).validity(&[true, true, true, false, true]);
    let arr = Arr::list("+l", &[0i32, 2, 4, 5], values.clone());
    assert_eq!(
        invalid_input(lists(&arr.clone())),
        "example 1: 'input_ids' holds a null token id"
    );
    // Large offsets: the same.
    let large = Arr::list("+L", &[0i64, 2, 4, 5], values.clone());
    assert_eq!(
        invalid_input(lists(&large)),
        "example 1: 'input_ids' holds a null token id"
    );
    // Sliced: counted from the slice's first row; outside the slice, not read.
    assert_eq!(
        invalid_input(lists(&arr.clone().slice(1, 2))),
        "example 0: 'input_ids' holds a null token id"
    );
    assert_eq!(lists(&arr.clone().slice(2, 1)).unwrap(), rows(&[&[5]]));
    assert_eq!(lists(&arr.slice(0, 1)).unwrap(), rows(&[&[1, 2]]));
}

#[test]
fn null_token_id_after_empty_rows() {
    // Rows [], [], [null, 2], [3]: the null is the first value, in row 2.
    let values = Arr::prim("i", &[1i32, 2, 3]).validity(&[false, true, true]);
    let arr = Arr::list("+l", &[0i32, 0, 0, 2, 3], values);
    assert_eq!(
        invalid_input(lists(&arr)),
        "example 2: 'input_ids' holds a null token id"
    );
    // Rows [], [], [1, 2], [], [null]: the last value, in row 4.
    let values = Arr::prim("i", &[1i32, 2, 3]).validity(&[true, true, false]);
    let arr = Arr::list("+l", &[0i32, 0, 0, 2, 2, 3], values);
    assert_eq!(
        invalid_input(lists(&arr)),
        "example 4: 'input_ids' holds a null token id"
    );
    // Rows [], [], [1, null]: the null is the second value of row 2.
    let values = Arr::prim("i", &[1i32, 2]).validity(&[true, false]);
    let arr = Arr::list("+L", &[0i64, 0, 0, 2], values);
    assert_eq!(
        invalid_input(lists(&arr)),
        "example 2: 'input_ids' holds a null token id"
    );
}

#[test]
fn null_token_id_with_sliced_list_and_values() {
    // The child buffer is [x, x, 1, 2, null, 4]; the child is values 2..6 ([1, 2, null, 4]).
    // Physical rows [1], [2], [null, 4]; the list slice keeps rows 1..3.
    let values = Arr::prim("l", &[0i64, 0, 1, 2, 3, 4])
        .validity(&[false, false, true, true, false, true])
        .slice(2, 4);
    let arr = Arr::list("+l", &[0i32, 1, 2, 4], values.clone()).slice(1, 2);
    assert_eq!(
        invalid_input(lists(&arr)),
        "example 1: 'input_ids' holds a null token id"
    );
    // Nulls before the child's offset are not part of it.
    let arr = Arr::list("+l", &[0i32, 1, 2], values).slice(0, 2);
    assert_eq!(lists(&arr).unwrap(), rows(&[&[1], &[2]]));
}

#[test]
fn null_token_ids_not_referenced_by_any_row_are_ignored() {
    // The first and last values are null, but the offsets only cover values 1..3.
    let values = Arr::prim("l", &[0i64, 1, 2, 0]).validity(&[false, true, true, false]);
    let arr = Arr::list("+l", &[1i32, 2, 3], values);
    assert_eq!(lists(&arr).unwrap(), rows(&[&[1], &[2]]));
}

#[test]
fn null_rows_are_reported_before_null_token_ids() {
    let values = Arr::prim("l", &[1i64, 2]).validity(&[false, true]);
    let arr = Arr::list("+l", &[0i32, 1, 2], values).validity(&[true, false]);
    assert_eq!(invalid_input(lists(&arr)), "example 1: 'input_ids' is null");
}

// ---------------------------------------------------------------------------------------------
// Wrong types
// ---------------------------------------------------------------------------------------------

#[test]
fn float_values_are_refused() {
    let arr = Arr::list("+l", &[0i32, 2], Arr::prim("g", &[1.0f64, 2.0]));
    assert_eq!(
        input_type(lists(&arr)),
        "'input_ids' must hold integer token ids, found Arrow type \"g\""
    );
    let arr = Arr::list("+L", &[0i64, 2], Arr::prim("f", &[1.0f32, 2.0]));
    assert_eq!(
        input_type(lists(&arr)),
        "'input_ids' must hold integer token ids, found Arrow type \"f\""
    );
    let arr = Arr::list("+l", &[0i32, 1], Arr::strings("u", &[0i32, 1], b"a"));
    assert_eq!(
        input_type(lists(&arr)),
        "'input_ids' must hold integer token ids, found Arrow type \"u\""
    );
}

#[test]
fn dictionary_encoded_token_ids_are_refused() {
    // list<dictionary<int16, int64>>: the values buffer holds indices into the dictionary, not
    // token ids.
    let values = Arr::prim("s", &[1i16, 0, 1]).with_dictionary(Arr::prim("l", &[101i64, 2023]));
    let arr = Arr::list("+l", &[0i32, 2, 3], values);
    let message = input_type(lists(&arr));
    assert!(
        message.starts_with("'input_ids' must hold integer token ids, found dictionary-encoded"),
        "{message}"
    );
}

#[test]
fn nested_lists_are_refused() {
    let inner = Arr::list("+l", &[0i32, 1, 2], Arr::prim("l", &[1i64, 2]));
    let arr = Arr::list("+l", &[0i32, 2], inner);
    assert_eq!(
        input_type(lists(&arr)),
        "'input_ids' must hold integer token ids, found nested lists (one level too deep)"
    );
    let inner = Arr::list("+L", &[0i64, 1], Arr::prim("i", &[1i32]));
    let arr = Arr::list("+L", &[0i64, 1], inner);
    let message = input_type(lists(&arr));
    assert!(
        message.contains("found nested lists (one level too deep)"),
        "{message}"
    );
}

#[test]
fn a_column_that_is_not_a_list_is_refused() {
    for arr in [
        Arr::prim("l", &[1i64, 2]),
        Arr::prim("g", &[1.0f64]),
        Arr::strings("u", &[0i32, 1], b"a"),
        batch(),
        Arr::prim("i", &[0i32]).with_dictionary(Arr::list(
            "+l",
            &[0i32, 1],
            Arr::prim("l", &[5i64]),
        )),
    ] {
        let message = input_type(lists(&arr));
        assert_eq!(
            message,
            format!(
                "'input_ids' must hold a list of token ids per example, found Arrow type {:?}",
                arr.format
            )
        );
    }
}

// ---------------------------------------------------------------------------------------------
// read_numbers
// ---------------------------------------------------------------------------------------------

#[test]
fn numbers_of_every_integer_type() {
    assert_eq!(ints(&Arr::prim("c", &[-128i8, 127])), [-128, 127]);
    assert_eq!(ints(&Arr::prim("C", &[0u8, 255])), [0, 255]);
    assert_eq!(ints(&Arr::prim("s", &[i16::MIN, 3])), [-32768, 3]);
    assert_eq!(ints(&Arr::prim("S", &[u16::MAX])), [65535]);
    assert_eq!(
        ints(&Arr::prim("i", &[-1i32, i32::MAX])),
        [-1, i32::MAX as i64]
    );
    assert_eq!(ints(&Arr::prim("I", &[u32::MAX])), [u32::MAX as i64]);
    assert_eq!(
        ints(&Arr::prim("l", &[i64::MIN, i64::MAX])),
        [i64::MIN, i64::MAX]
    );
    assert_eq!(ints(&Arr::prim("L", &[0u64, 1 << 40])), [0, 1 << 40]);
}

#[test]
fn numbers_with_offsets() {
    assert_eq!(
        ints(&Arr::prim("i", &[1i32, 2, 3, 4, 5]).slice(2, 2)),
        [3, 4]
    );
    assert_eq!(
        ints(&Arr::prim("C", &[1u8, 2, 3]).slice(3, 0)),
        Vec::<i64>::new()
    );
    assert_eq!(
        floats(&Arr::prim("g", &[0.5f64, -1.25, 3.0]).slice(1, 2)),
        [-1.25, 3.0]
    );
    assert_eq!(
        floats(&Arr::prim("f", &[0.5f32, -1.25, 2.0])),
        [0.5, -1.25, 2.0]
    );
}

#[test]
fn numbers_refuse_nulls() {
    let arr = Arr::prim("l", &[1i64, 2, 3, 4]).validity(&[true, true, false, true]);
    assert_eq!(invalid_input(numbers(&arr)), "example 2: 'labels' is null");
    assert_eq!(
        invalid_input(numbers(&arr.clone().slice(1, 3))),
        "example 1: 'labels' is null"
    );
    assert_eq!(ints(&arr.slice(0, 2)), [1, 2]);
    let arr = Arr::prim("g", &[1.0f64, 2.0]).validity(&[false, true]);
    assert_eq!(invalid_input(numbers(&arr)), "example 0: 'labels' is null");
}

#[test]
fn numbers_of_other_types_are_none() {
    let not_numbers = [
        Arr::strings("u", &[0i32, 1], b"a"),
        Arr::strings("U", &[0i64, 1], b"a"),
        Arr::list("+l", &[0i32, 1], Arr::prim("l", &[1i64])),
        Arr::prim("b", &[1u8]).slice(0, 1),
        batch(),
    ];
    for arr in not_numbers {
        assert!(
            numbers(&arr).unwrap().is_none(),
            "format {:?} read as numbers",
            arr.format
        );
    }
}

#[test]
fn dictionary_encoded_numbers_are_not_read_as_their_indices() {
    // A categorical column (pandas `category` → Arrow dictionary<int8, string>): its buffers hold
    // indices, which are not the column's values.
    let categories = Arr::strings("u", &[0i32, 3, 6], b"negpos");
    let arr = Arr::prim("c", &[1i8, 0, 1]).with_dictionary(categories);
    assert!(numbers(&arr).unwrap().is_none());
    // dictionary<int32, int64>: the values are in the dictionary, not in the indices.
    let arr = Arr::prim("i", &[1i32, 0]).with_dictionary(Arr::prim("l", &[7i64, 9]));
    assert!(numbers(&arr).unwrap().is_none());
}

// ---------------------------------------------------------------------------------------------
// read_strings
// ---------------------------------------------------------------------------------------------

#[test]
fn strings_small_and_large() {
    let text = "hello wörld 🦀".as_bytes();
    let arr = Arr::strings("u", &[0i32, 5, 5, text.len() as i32], text);
    assert_eq!(strings(&arr).unwrap(), ["hello", "", " wörld 🦀"]);
    let arr = Arr::strings("U", &[0i64, 5, 5, text.len() as i64], text);
    assert_eq!(strings(&arr).unwrap(), ["hello", "", " wörld 🦀"]);
}

#[test]
fn strings_with_offsets() {
    // Offsets index the data buffer directly: a slice starts at a non-zero offset.
    let arr = Arr::strings("u", &[0i32, 1, 3, 6], b"abbccc");
    assert_eq!(strings(&arr.clone().slice(1, 2)).unwrap(), ["bb", "ccc"]);
    assert_eq!(strings(&arr.clone().slice(2, 1)).unwrap(), ["ccc"]);
    assert_eq!(strings(&arr.slice(3, 0)).unwrap(), Vec::<String>::new());
    // Offsets that do not start at zero even unsliced (a slice re-exported without rebasing).
    let arr = Arr::strings("U", &[2i64, 3, 6], b"xxabbb");
    assert_eq!(strings(&arr).unwrap(), ["a", "bbb"]);
}

#[test]
fn strings_refuse_invalid_utf8() {
    let arr = Arr::strings("u", &[0i32, 1, 3], &[b'a', 0xC3, 0x28]);
    let message = input_type(strings(&arr));
    assert_eq!(message, "'text': example 1 is not valid UTF-8");
    // Counted from the slice's first row; the bad bytes outside the slice are not read.
    let arr = Arr::strings("U", &[0i64, 1, 2, 3], &[0xFF, b'b', 0xFE]);
    assert_eq!(
        input_type(strings(&arr.clone().slice(1, 2))),
        "'text': example 1 is not valid UTF-8"
    );
    assert_eq!(strings(&arr.slice(1, 1)).unwrap(), ["b"]);
}

#[test]
fn strings_refuse_nulls_and_other_types() {
    let arr = Arr::strings("u", &[0i32, 1, 1, 2], b"ab").validity(&[true, false, true]);
    assert_eq!(
        input_type(strings(&arr.clone())),
        "'text': example 1 is null"
    );
    assert_eq!(
        input_type(strings(&arr.clone().slice(1, 2))),
        "'text': example 0 is null"
    );
    assert_eq!(strings(&arr.slice(2, 1)).unwrap(), ["b"]);
    for arr in [
        Arr::prim("l", &[1i64]),
        Arr::list("+l", &[0i32, 1], Arr::prim("l", &[1i64])),
    ] {
        let message = input_type(strings(&arr));
        assert!(
            message.starts_with("'text' must hold text (Arrow string)"),
            "{message}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Random list arrays
// ---------------------------------------------------------------------------------------------

/// The value types a random list is stored as (all hold 0..=127).
const VALUE_FORMATS: [&str; 6] = ["l", "i", "C", "s", "I", "c"];

fn typed_values(format: &str, values: &[i64]) -> Arr {
    match format {
        "l" => Arr::prim(format, values),
        "i" => Arr::prim(
            format,
            &values.iter().map(|&v| v as i32).collect::<Vec<_>>(),
        ),
        "C" => Arr::prim(format, &values.iter().map(|&v| v as u8).collect::<Vec<_>>()),
        "s" => Arr::prim(
            format,
            &values.iter().map(|&v| v as i16).collect::<Vec<_>>(),
        ),
        "I" => Arr::prim(
            format,
            &values.iter().map(|&v| v as u32).collect::<Vec<_>>(),
        ),
        "c" => Arr::prim(format, &values.iter().map(|&v| v as i8).collect::<Vec<_>>()),
        _ => unreachable!(),
    }
}

#[derive(Debug, Clone)]
struct ListCase {
    /// Every row of the list's buffers; the array shows `len` of them from `lead`.
    physical_rows: Vec<Vec<i64>>,
    lead: usize,
    len: usize,
    /// The part of `lead` carried by a record batch wrapping the list (None: a bare list).
    batch_offset: Option<usize>,
    /// Junk values before and after the values child's logical values.
    child_pad: usize,
    child_tail: usize,
    large: bool,
    value_format: &'static str,
    /// Validity of each physical row / each slot of the values buffer.
    row_valid: Option<Vec<bool>>,
    value_valid: Option<Vec<bool>>,
    unknown_null_count: bool,
    /// (physical offset index, kind): one offset overwritten with a bad value.
    corruption: Option<(usize, u8)>,
}

fn list_case() -> impl Strategy<Value = ListCase> {
    (
        (
            prop::collection::vec(prop::collection::vec(0i64..100, 0..5), 0..10),
            0usize..4,
            0usize..3,
            prop::option::of(any::<prop::sample::Index>()),
            0usize..4,
            0usize..3,
        ),
        (
            any::<bool>(),
            prop::sample::select(VALUE_FORMATS.to_vec()),
            prop::option::weighted(0.3, prop::collection::vec(prop::bool::weighted(0.85), 10)),
            prop::option::weighted(0.3, prop::collection::vec(prop::bool::weighted(0.9), 48)),
            any::<bool>(),
            prop::option::weighted(0.3, (any::<prop::sample::Index>(), 0u8..4)),
        ),
    )
        .prop_map(
            |(
                (physical_rows, lead, trail, batch, child_pad, child_tail),
                (large, value_format, row_valid, value_valid, unknown, corruption),
            )| {
                // A few rows skipped at each end: most of the rows are read.
                let n = physical_rows.len();
                let lead = lead.min(n);
                let len = (n - lead).saturating_sub(trail);
                ListCase {
                    batch_offset: batch.map(|b| b.index(lead + 1)),
                    corruption: corruption.map(|(at, kind)| (at.index(n + 1), kind)),
                    row_valid: row_valid.map(|v| v[..n].to_vec()),
                    physical_rows,
                    lead,
                    len,
                    child_pad,
                    child_tail,
                    large,
                    value_format,
                    value_valid,
                    unknown_null_count: unknown,
                }
            },
        )
}

/// What the reader must answer, computed in plain Rust from the physical buffers.
enum Expected {
    Rows(Vec<Vec<i64>>),
    NullRow(usize),
    Malformed,
    NullToken(usize),
}

impl ListCase {
    fn child_len(&self) -> usize {
        self.physical_rows.iter().map(Vec::len).sum::<usize>() + self.child_tail
    }

    fn offsets(&self) -> Vec<i64> {
        let mut offsets = vec![0i64];
        for row in &self.physical_rows {
            offsets.push(offsets.last().unwrap() + row.len() as i64);
        }
        if let Some((at, kind)) = self.corruption {
            let child_len = self.child_len() as i64;
            offsets[at] = match (kind, self.large) {
                (0, _) => child_len + 1 + at as i64,
                (1, _) => -1 - at as i64,
                (2, false) => i32::MAX as i64,
                (2, true) => i64::MAX,
                (_, false) => i32::MIN as i64,
                (_, true) => i64::MIN,
            };
        }
        offsets
    }

    /// The values buffer: junk (100..) around the rows' values.
    fn buffer_values(&self) -> Vec<i64> {
        let mut values: Vec<i64> = (0..self.child_pad as i64).map(|i| 100 + i).collect();
        values.extend(self.physical_rows.iter().flatten());
        values.extend((0..self.child_tail as i64).map(|i| 110 + i));
        values
    }

    fn arr(&self) -> Arr {
        let buffer_values = self.buffer_values();
        let mut values = typed_values(self.value_format, &buffer_values)
            .slice(self.child_pad as i64, self.child_len() as i64);
        if let Some(valid) = &self.value_valid {
            let valid = &valid[..buffer_values.len()];
            values = values.validity(valid);
        }
        let offsets = self.offsets();
        let mut list = if self.large {
            Arr::list("+L", &offsets, values)
        } else {
            let small: Vec<i32> = offsets.iter().map(|&o| o as i32).collect();
            Arr::list("+l", &small, values)
        };
        if let Some(valid) = &self.row_valid {
            list = list.validity(valid);
            if self.unknown_null_count {
                list = list.null_count(-1);
            }
        }
        let n = self.physical_rows.len() as i64;
        match self.batch_offset {
            None => list.slice(self.lead as i64, self.len as i64),
            Some(batch_offset) => {
                // The list is a slice from `lead - batch_offset` to the end; the batch skips
                // `batch_offset` more rows and keeps `len`.
                let own = (self.lead - batch_offset) as i64;
                let list = list.slice(own, n - own);
                Arr::record_batch(n - own, vec![(NAME, list)])
                    .slice(batch_offset as i64, self.len as i64)
            }
        }
    }

    fn expected(&self) -> Expected {
        let (lead, len) = (self.lead, self.len);
        if let Some(valid) = &self.row_valid {
            if let Some(r) = (0..len).find(|&r| !valid[lead + r]) {
                return Expected::NullRow(r);
            }
        }
        let window = &self.offsets()[lead..=lead + len];
        if window[0] < 0
            || window.windows(2).any(|w| w[0] > w[1])
            || window[len] > self.child_len() as i64
        {
            return Expected::Malformed;
        }
        let buffer_values = self.buffer_values();
        let mut rows = Vec::new();
        for r in 0..len {
            let slots =
                self.child_pad + window[r] as usize..self.child_pad + window[r + 1] as usize;
            if let Some(valid) = &self.value_valid {
                if slots.clone().any(|slot| !valid[slot]) {
                    return Expected::NullToken(r);
                }
            }
            rows.push(buffer_values[slots].to_vec());
        }
        Expected::Rows(rows)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random list arrays (row lengths, list and child offsets, an enclosing record batch, nulls,
    /// one corrupted offset): the reader gives the rows computed here, or the expected error.
    #[test]
    fn random_list_arrays_read_like_plain_rust(case in list_case()) {
        let arr = case.arr();
        let export = arr.export();
        let view = if case.batch_offset.is_some() {
            export.view().field(0).unwrap()
        } else {
            export.view()
        };
        let got = lists_of(view);
        match (case.expected(), got) {
            (Expected::Rows(expected), Ok(rows)) => {
                prop_assert_eq!(rows, expected);
            }
            (Expected::NullRow(r), Err(FerrotuneError::InvalidInput(message))) => {
                prop_assert_eq!(message, format!("example {r}: '{NAME}' is null"));
            }
            (Expected::NullToken(r), Err(FerrotuneError::InvalidInput(message))) => {
                prop_assert_eq!(message, format!("example {r}: '{NAME}' holds a null token id"));
            }
            (Expected::Malformed, Err(FerrotuneError::InvalidInput(message))) => {
                prop_assert!(message.contains("malformed Arrow export"), "{}", message);
            }
            (Expected::Rows(expected), Err(err)) => {
                prop_assert!(false, "expected rows {:?}, got error {}", expected, err);
            }
            (_, got) => prop_assert!(false, "expected an error, got {:?}", got.map(|_| ())),
        }
    }
}
