//! ferrotune._core: thin PyO3 bindings over ferrotune-core.
//!
//! Every entry point follows one pattern: extract the Python inputs into owned Rust values while
//! attached, run the core with the GIL released and panics caught ([`run_detached`]), and hand the
//! resulting buffers to NumPy without copying. One exception: collation of small batches (under
//! 32K output values) runs attached, where releasing and retaking the GIL would cost more than the
//! padding itself.

use std::sync::Arc;

mod arrow_ffi;
mod chat;
mod collate;
mod stream;

use ferrotune_core::engine::{
    EncodeRequest, Engine, EngineChoice, OutputSelection, Truncation, TruncationStrategy,
};
use ferrotune_core::{catch_panics, FerrotuneError, PadSpec, Side};
use numpy::{
    IntoPyArray, PyArray1, PyArrayDescrMethods, PyArrayMethods, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyString, PyTuple, PyType};

/// The `ferrotune.errors` class of each core error (they derive from ValueError, TypeError,
/// FileNotFoundError... as users expect, which `create_exception!` cannot express). This is the one
/// place that names Python exception classes; each is looked up once.
fn to_py_err(py: Python<'_>, err: FerrotuneError) -> PyErr {
    const CLASSES: [&str; 13] = [
        "TokenizerFileNotFoundError",
        "TokenizerFileError",
        "TokenizerFormatError",
        "InvalidArgumentError",
        "InvalidInputError",
        "EmptyBatchError",
        "InputTypeError",
        "DataSourceError",
        "TokenizationError",
        "InternalError",
        "FerrotuneError",
        "ChatTemplateError",
        "ChatMaskError",
    ];
    static LOADED: PyOnceLock<Vec<Py<PyType>>> = PyOnceLock::new();
    let index = match &err {
        FerrotuneError::TokenizerFileIo { source, .. }
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            0
        }
        FerrotuneError::TokenizerFileIo { .. } => 1,
        FerrotuneError::TokenizerFormat { .. } => 2,
        FerrotuneError::InvalidArgument(_) => 3,
        FerrotuneError::InvalidInput(_) => 4,
        FerrotuneError::EmptyBatch(_) => 5,
        FerrotuneError::InputType(_) => 6,
        FerrotuneError::DataSource(_) => 7,
        FerrotuneError::Tokenization(_) => 8,
        FerrotuneError::Internal(_) => 9,
        FerrotuneError::ChatTemplate(_) => 11,
        FerrotuneError::ChatMask(_) => 12,
    };
    let classes = LOADED.get_or_try_init(py, || -> PyResult<Vec<Py<PyType>>> {
        let module = py.import("ferrotune.errors")?;
        CLASSES
            .iter()
            .map(|name| Ok(module.getattr(*name)?.cast_into::<PyType>()?.unbind()))
            .collect()
    });
    match classes {
        Ok(classes) => PyErr::from_type(classes[index].bind(py).clone(), err.to_string()),
        Err(import_error) => import_error,
    }
}

fn type_error(py: Python<'_>, message: String) -> PyErr {
    to_py_err(py, FerrotuneError::InputType(message))
}

/// Runs core work with the GIL released; a panic becomes `ferrotune.errors.InternalError`.
fn run_detached<T: Send>(
    py: Python<'_>,
    work: impl FnOnce() -> ferrotune_core::Result<T> + Send,
) -> PyResult<T> {
    py.detach(|| catch_panics(work))
        .map_err(|err| to_py_err(py, err))
}

/// Runs an entry point's body: a panic anywhere in it (argument conversion, Arrow reading, core
/// work) comes back as `ferrotune.errors.InternalError`, never as a crash or PyO3's PanicException.
fn guarded<T>(py: Python<'_>, body: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    let mut failed: Option<PyErr> = None;
    let outcome = catch_panics(|| match body() {
        Ok(value) => Ok(Some(value)),
        Err(err) => {
            failed = Some(err);
            Ok(None)
        }
    });
    match outcome {
        Ok(Some(value)) => Ok(value),
        Ok(None) => Err(failed.take().unwrap_or_else(|| {
            to_py_err(py, FerrotuneError::Internal("an error was lost".into()))
        })),
        Err(err) => Err(to_py_err(py, err)),
    }
}

/// Test hook (see `ferrotune_core::error::set_panic_in_next_catch`): the next guarded call panics.
#[pyfunction]
#[pyo3(signature = (on=true))]
fn _panic_in_next_call(on: bool) {
    ferrotune_core::error::set_panic_in_next_catch(on);
}

fn core_result<T>(py: Python<'_>, result: ferrotune_core::Result<T>) -> PyResult<T> {
    result.map_err(|err| to_py_err(py, err))
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Extracts a list/tuple of `str` into owned strings, naming the first offending item.
fn extract_texts(
    py: Python<'_>,
    texts: &Bound<'_, PyAny>,
    argument: &str,
) -> PyResult<Vec<String>> {
    let Some(items) = sequence_items(texts) else {
        return Err(type_error(
            py,
            format!(
                "`{argument}` must be a list of str, got {}",
                type_name(texts)
            ),
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item.cast::<PyString>() {
            Ok(s) => Ok(s.to_str()?.to_owned()),
            Err(_) => Err(type_error(
                py,
                format!("`{argument}[{i}]` must be a str, got {}", type_name(item)),
            )),
        })
        .collect()
}

/// Pre-split examples from Python lists of words, or read from an Arrow `list<string>` array
/// (anything with `__arrow_c_array__`) without a Python object per word.
fn words_of(
    py: Python<'_>,
    examples: &Bound<'_, PyAny>,
    argument: &str,
) -> PyResult<Vec<Vec<String>>> {
    if examples.hasattr(pyo3::intern!(py, "__arrow_c_array__"))? {
        let exported = arrow_ffi::ArrowExport::new(examples, None)?;
        return core_result(
            py,
            ferrotune_core::arrow::read_string_lists(exported.view(), argument),
        );
    }
    extract_words(py, examples, argument)
}

/// Extracts a list/tuple of examples, each a list/tuple of `str` words (`is_split_into_words`),
/// naming the first offending example and word.
fn extract_words(
    py: Python<'_>,
    examples: &Bound<'_, PyAny>,
    argument: &str,
) -> PyResult<Vec<Vec<String>>> {
    let Some(items) = sequence_items(examples) else {
        return Err(type_error(
            py,
            format!(
                "`{argument}` must be a list of examples (lists of words), got {}",
                type_name(examples)
            ),
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, example)| {
            let Some(words) = sequence_items(example) else {
                return Err(type_error(
                    py,
                    format!(
                        "example {i}: `{argument}[{i}]` must be a list of str (words, with \
                         is_split_into_words=True), got {}",
                        type_name(example)
                    ),
                ));
            };
            words
                .iter()
                .enumerate()
                .map(|(j, word)| match word.cast::<PyString>() {
                    Ok(s) => Ok(s.to_str()?.to_owned()),
                    Err(_) => Err(type_error(
                        py,
                        format!(
                            "example {i}: word {j} (`{argument}[{i}][{j}]`) must be a str, got {} {}",
                            type_name(word),
                            word.repr().map(|r| r.to_string()).unwrap_or_default()
                        ),
                    )),
                })
                .collect()
        })
        .collect()
}

static NUMPY_ASARRAY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Appends one example's token values (a list/tuple of ints, a NumPy integer array or anything
/// with `__array__`, such as a CPU torch tensor) to `out`.
fn extract_row(
    py: Python<'_>,
    row: &Bound<'_, PyAny>,
    out: &mut Vec<i64>,
    key: &str,
    index: usize,
) -> PyResult<()> {
    let bad_value = |value: &Bound<'_, PyAny>| {
        let depth_hint = if value.cast::<PyList>().is_ok() || value.cast::<PyTuple>().is_ok() {
            " (values nested one level too deep)"
        } else {
            ""
        };
        type_error(
            py,
            format!(
                "example {index}: '{key}' must hold integer token ids, found {} {}{depth_hint}",
                type_name(value),
                value.repr().map(|r| r.to_string()).unwrap_or_default()
            ),
        )
    };
    if let Ok(list) = row.cast::<PyList>() {
        // The hot loop of collation: borrowed items and a direct integer read, no reference counting.
        let length = list.len();
        out.reserve(length);
        for i in 0..length {
            // SAFETY: `i` is within the list (the GIL is held, nothing resizes it meanwhile);
            // PyList_GetItem returns a borrowed reference that the list keeps alive.
            let item =
                unsafe { pyo3::ffi::PyList_GetItem(list.as_ptr(), i as pyo3::ffi::Py_ssize_t) };
            if item.is_null() {
                return Err(PyErr::fetch(py));
            }
            // SAFETY: `item` is a valid object; PyLong_AsLongLong accepts any object (via __index__).
            let value = unsafe { pyo3::ffi::PyLong_AsLongLong(item) };
            if value == -1 {
                if let Some(_error) = PyErr::take(py) {
                    // SAFETY: borrowed from the list, which outlives this call.
                    let item = unsafe { Bound::from_borrowed_ptr(py, item) };
                    return Err(bad_value(&item));
                }
            }
            out.push(value);
        }
        return Ok(());
    }
    if let Ok(tuple) = row.cast::<PyTuple>() {
        for value in tuple.iter() {
            out.push(value.extract::<i64>().map_err(|_| bad_value(&value))?);
        }
        return Ok(());
    }
    if let Ok(array) = row.cast::<PyUntypedArray>() {
        if array.ndim() != 1 {
            return Err(type_error(
                py,
                format!(
                    "example {index}: '{key}' must be 1-dimensional, got an array of shape {:?}",
                    array.shape()
                ),
            ));
        }
        if let Ok(ints) = array.cast::<PyArray1<i64>>() {
            out.extend(ints.readonly().as_array().iter().copied());
            return Ok(());
        }
        let kind = array.dtype().kind();
        if !matches!(kind, b'i' | b'u' | b'b') {
            return Err(type_error(
                py,
                format!("example {index}: '{key}' must hold integer token ids, got an array of dtype {}", array.dtype()),
            ));
        }
        let converted = array.call_method1("astype", ("int64",))?;
        return extract_row(py, &converted, out, key, index);
    }
    if row.hasattr("__array__")? {
        let asarray = NUMPY_ASARRAY.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
            Ok(py.import("numpy")?.getattr("asarray")?.unbind())
        })?;
        let converted = asarray.bind(py).call1((row,))?;
        if converted.cast::<PyUntypedArray>().is_ok() {
            return extract_row(py, &converted, out, key, index);
        }
    }
    Err(type_error(
        py,
        format!(
            "example {index}: '{key}' must be a list of token ids, got {}",
            type_name(row)
        ),
    ))
}

fn parse_side(py: Python<'_>, name: &str, option: &str) -> PyResult<Side> {
    core_result(py, Side::parse(name, option))
}

/// A `tokenizer.json` loaded into ferrotune's engine.
#[pyclass(module = "ferrotune._core", name = "Tokenizer", frozen)]
struct PyTokenizer {
    engine: Arc<Engine>,
}

#[pymethods]
impl PyTokenizer {
    /// Loads a `tokenizer.json` file.
    #[staticmethod]
    #[pyo3(signature = (path, engine="auto"))]
    fn from_file(py: Python<'_>, path: std::path::PathBuf, engine: &str) -> PyResult<Self> {
        guarded(py, || {
            let choice = core_result(py, EngineChoice::parse(engine))?;
            let engine = run_detached(py, || Engine::from_file_with(&path, choice))?;
            Ok(PyTokenizer {
                engine: Arc::new(engine),
            })
        })
    }

    /// Parses the text of a `tokenizer.json`.
    #[staticmethod]
    #[pyo3(signature = (json, engine="auto"))]
    fn from_str(py: Python<'_>, json: String, engine: &str) -> PyResult<Self> {
        guarded(py, || {
            let choice = core_result(py, EngineChoice::parse(engine))?;
            let engine = run_detached(py, || Engine::from_json_with(&json, choice))?;
            Ok(PyTokenizer {
                engine: Arc::new(engine),
            })
        })
    }

    /// The encoder in use: "fast-wordpiece" (native) or "general" (the tokenizers crate).
    fn encoder_name(&self) -> &'static str {
        self.engine.encoder_name()
    }

    /// The tokenizer as `tokenizer.json` text.
    fn to_str(&self, py: Python<'_>) -> PyResult<String> {
        guarded(py, || {
            let engine = Arc::clone(&self.engine);
            run_detached(py, move || engine.to_json())
        })
    }

    /// Encodes a batch; returns a dict of flat int64 arrays plus `_starts` (row boundaries) and
    /// `_width` (the common row length, or None when rows differ). With `is_split_into_words`, each
    /// example is a list of words. With `return_alignment`, also `_word_ids` and `_sequence_ids`
    /// (int64, -1 for none), laid out as `input_ids`, and `_sequence_ranges` (per row: the number
    /// of sequence ranges of its `Encoding`); with `return_tokens`, `_tokens` (a list of str laid
    /// out as `input_ids`).
    #[pyo3(signature = (
        texts, pairs=None, *, add_special_tokens=true, truncation=None, padding="do_not_pad", padding_length=None,
        pad_to_multiple_of=None, padding_side="right", pad_id=0, pad_type_id=0, return_token_type_ids=true,
        return_attention_mask=true, return_special_tokens_mask=false, return_offsets_mapping=false,
        return_overflowing_tokens=false, return_length=false, is_split_into_words=false,
        return_alignment=false, return_tokens=false
    ))]
    #[allow(clippy::too_many_arguments)]
    fn encode_batch<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
        pairs: Option<&Bound<'py, PyAny>>,
        add_special_tokens: bool,
        truncation: Option<(usize, usize, String, String)>,
        padding: &str,
        padding_length: Option<usize>,
        pad_to_multiple_of: Option<usize>,
        padding_side: &str,
        pad_id: i64,
        pad_type_id: i64,
        return_token_type_ids: bool,
        return_attention_mask: bool,
        return_special_tokens_mask: bool,
        return_offsets_mapping: bool,
        return_overflowing_tokens: bool,
        return_length: bool,
        is_split_into_words: bool,
        return_alignment: bool,
        return_tokens: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        enum Inputs {
            Texts(Vec<String>, Option<Vec<String>>),
            Words(Vec<Vec<String>>, Option<Vec<Vec<String>>>),
        }
        guarded(py, || {
            let inputs = if is_split_into_words {
                Inputs::Words(
                    words_of(py, texts, "text")?,
                    pairs.map(|p| words_of(py, p, "text_pair")).transpose()?,
                )
            } else {
                Inputs::Texts(
                    extract_texts(py, texts, "text")?,
                    pairs
                        .map(|p| extract_texts(py, p, "text_pair"))
                        .transpose()?,
                )
            };
            let truncation = match truncation {
                None => None,
                Some((max_length, stride, strategy, side)) => Some(Truncation {
                    max_length,
                    stride,
                    strategy: core_result(py, TruncationStrategy::parse(&strategy))?,
                    side: parse_side(py, &side, "truncation_side")?,
                }),
            };
            let padding = core_result(
                py,
                PadSpec::parse(padding, padding_length, pad_to_multiple_of, padding_side),
            )?;
            let request = EncodeRequest {
                add_special_tokens,
                truncation,
                padding,
                pad_id,
                pad_type_id,
                outputs: OutputSelection {
                    token_type_ids: return_token_type_ids,
                    attention_mask: return_attention_mask,
                    special_tokens_mask: return_special_tokens_mask,
                    offsets: return_offsets_mapping,
                    overflowing: return_overflowing_tokens,
                    length: return_length,
                    alignment: return_alignment,
                    tokens: return_tokens,
                },
            };
            let engine = Arc::clone(&self.engine);
            let batch = run_detached(py, move || match &inputs {
                Inputs::Texts(texts, pairs) => {
                    engine.encode_batch(texts, pairs.as_deref(), &request)
                }
                Inputs::Words(words, pairs) => {
                    engine.encode_words_batch(words, pairs.as_deref(), &request)
                }
            })?;

            let out = PyDict::new(py);
            let starts: Vec<i64> = batch.starts.iter().map(|&s| s as i64).collect();
            out.set_item("input_ids", batch.input_ids.into_pyarray(py))?;
            let optional = [
                ("token_type_ids", batch.token_type_ids),
                ("attention_mask", batch.attention_mask),
                ("special_tokens_mask", batch.special_tokens_mask),
                ("offset_mapping", batch.offsets),
                ("length", batch.length),
                (
                    "overflow_to_sample_mapping",
                    batch.overflow_to_sample_mapping,
                ),
            ];
            for (key, values) in optional {
                if let Some(values) = values {
                    out.set_item(key, values.into_pyarray(py))?;
                }
            }
            if let Some(word_ids) = batch.word_ids {
                out.set_item("_word_ids", word_ids.into_pyarray(py))?;
            }
            if let Some(sequence_ids) = batch.sequence_ids {
                out.set_item("_sequence_ids", sequence_ids.into_pyarray(py))?;
            }
            if let Some(ranges) = batch.sequence_ranges {
                out.set_item("_sequence_ranges", ranges.into_pyarray(py))?;
            }
            if let Some(tokens) = batch.tokens {
                out.set_item("_tokens", tokens)?;
            }
            out.set_item("_starts", starts.into_pyarray(py))?;
            out.set_item("_width", batch.uniform_width)?;
            Ok(out)
        })
    }

    #[pyo3(signature = (ids, skip_special_tokens=false))]
    fn decode(&self, py: Python<'_>, ids: Vec<u32>, skip_special_tokens: bool) -> PyResult<String> {
        guarded(py, || {
            let engine = Arc::clone(&self.engine);
            run_detached(py, move || engine.decode(&ids, skip_special_tokens))
        })
    }

    fn decode_tokens(&self, py: Python<'_>, tokens: Vec<String>) -> PyResult<String> {
        guarded(py, || {
            let engine = Arc::clone(&self.engine);
            run_detached(py, move || engine.decode_tokens(tokens))
        })
    }

    #[pyo3(signature = (sequences, skip_special_tokens=false))]
    fn decode_batch(
        &self,
        py: Python<'_>,
        sequences: Vec<Vec<u32>>,
        skip_special_tokens: bool,
    ) -> PyResult<Vec<String>> {
        guarded(py, || {
            let engine = Arc::clone(&self.engine);
            run_detached(py, move || {
                engine.decode_batch(&sequences, skip_special_tokens)
            })
        })
    }

    fn token_to_id(&self, token: &str) -> Option<u32> {
        self.engine.tokenizer().token_to_id(token)
    }

    fn id_to_token(&self, id: u32) -> Option<String> {
        self.engine.tokenizer().id_to_token(id)
    }

    #[pyo3(signature = (with_added_tokens=true))]
    fn get_vocab_size(&self, with_added_tokens: bool) -> usize {
        self.engine.tokenizer().get_vocab_size(with_added_tokens)
    }

    #[pyo3(signature = (with_added_tokens=true))]
    fn get_vocab(&self, with_added_tokens: bool) -> std::collections::HashMap<String, u32> {
        self.engine.tokenizer().get_vocab(with_added_tokens)
    }

    #[pyo3(signature = (is_pair=false))]
    fn num_special_tokens_to_add(&self, is_pair: bool) -> usize {
        self.engine.num_special_tokens_to_add(is_pair)
    }

    /// The model type of the tokenizer ("WordPiece", "BPE", ...).
    fn model_type(&self) -> String {
        use tokenizers::models::ModelWrapper;
        match self.engine.tokenizer().get_model() {
            ModelWrapper::BPE(_) => "BPE",
            ModelWrapper::WordPiece(_) => "WordPiece",
            ModelWrapper::WordLevel(_) => "WordLevel",
            ModelWrapper::Unigram(_) => "Unigram",
        }
        .to_string()
    }
}

/// The items of a list or tuple (borrowed views), or None for anything else.
fn sequence_items<'py>(obj: &Bound<'py, PyAny>) -> Option<Vec<Bound<'py, PyAny>>> {
    if let Ok(list) = obj.cast::<PyList>() {
        Some(list.iter().collect())
    } else if let Ok(tuple) = obj.cast::<PyTuple>() {
        Some(tuple.iter().collect())
    } else {
        None
    }
}

extern "C" fn child_after_fork() {
    ferrotune_core::parallel::disable_after_fork();
}

#[pymodule(gil_used = false)]
mod _core {
    #[pymodule_export]
    use super::chat::PyChatTemplate;
    #[pymodule_export]
    use super::collate::{mask_tokens, CollatePlan};
    #[pymodule_export]
    use super::stream::{index_line_rows, PyTokenRows};
    #[pymodule_export]
    use super::{_panic_in_next_call, PyTokenizer};

    #[pymodule_init]
    fn init(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
        use pyo3::types::PyModuleMethods;
        // DataLoader workers fork: the child must not wait on rayon threads it did not inherit.
        // SAFETY: registering a handler that only stores atomics is async-signal-safe.
        unsafe {
            libc::pthread_atfork(None, None, Some(super::child_after_fork));
        }
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        Ok(())
    }
}
