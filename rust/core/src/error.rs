//! The one error type of ferrotune-core. The bindings map each variant onto a Python exception class.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum FerrotuneError {
    /// The tokenizer file could not be read (missing, permissions, ...).
    #[error("cannot read tokenizer file '{path}': {source}")]
    TokenizerFileIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The tokenizer file was read but is not a valid `tokenizer.json`.
    #[error("malformed tokenizer definition{}: {message}", path.as_ref().map(|p| format!(" in '{}'", p.display())).unwrap_or_default())]
    TokenizerFormat {
        path: Option<PathBuf>,
        message: String,
    },
    /// An argument has a value the operation cannot honour (bad option, too-small max_length, ...).
    #[error("{0}")]
    InvalidArgument(String),
    /// Inputs whose shape or content is wrong (ragged rows, mismatched lengths, missing keys, ...).
    #[error("{0}")]
    InvalidInput(String),
    /// An empty batch where examples are needed.
    #[error("{0}")]
    EmptyBatch(String),
    /// Input of the wrong type (a non-string text, a float token id, a string column of ids, ...).
    #[error("{0}")]
    InputType(String),
    /// A data file that cannot be read as data (unreadable, an unclosed quote, ...).
    #[error("{0}")]
    DataSource(String),
    /// The tokenizers library refused to encode or decode.
    #[error("tokenization failed: {0}")]
    Tokenization(String),
    /// A chat template that does not compile, or that failed rendering a conversation (its
    /// `raise_exception(...)` message, an unknown filter, ...).
    #[error("{0}")]
    ChatTemplate(String),
    /// A conversation whose loss mask cannot be computed exactly, or would be empty.
    #[error("{0}")]
    ChatMask(String),
    /// A panic caught at the boundary: always a bug in ferrotune.
    #[error("internal error (a bug in ferrotune, please report it): {0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, FerrotuneError>;

/// The text a panic was raised with (`panic!` gives a `&str` or a `String`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// Set by [`set_panic_in_next_catch`]: the next [`catch_panics`] panics inside its guard.
static PANIC_IN_NEXT_CATCH: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Test hook: makes the next call of [`catch_panics`] panic inside the guard (`false` disarms it),
/// so that a test can show that an entry point runs its work under the guard (a panic there must
/// come back as [`FerrotuneError::Internal`], never abort the process).
pub fn set_panic_in_next_catch(on: bool) {
    PANIC_IN_NEXT_CATCH.store(on, std::sync::atomic::Ordering::SeqCst);
}

/// Runs `f`, turning a panic into [`FerrotuneError::Internal`] so that none crosses into Python.
pub fn catch_panics<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    let guarded = || {
        // A plain load first: the common path only reads the flag.
        if PANIC_IN_NEXT_CATCH.load(std::sync::atomic::Ordering::Relaxed)
            && PANIC_IN_NEXT_CATCH.swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            panic!("panic forced by the test hook set_panic_in_next_catch");
        }
        f()
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(guarded)) {
        Ok(result) => result,
        Err(payload) => {
            let message = panic_message(payload.as_ref());
            if message.contains("retry-limit-in-match")
                || message.contains("Onig: Regex search error")
            {
                // Oniguruma gives up on a pathological input (the tokenizers crate panics on that):
                // a property of the text and the tokenizer's regex, not a bug here.
                return Err(FerrotuneError::Tokenization(format!(
                    "the tokenizer's pre-tokenizer regex gave up on an input ({message}): the text holds a \
                     pattern that makes the regex backtrack without end, typically a very long run without \
                     spaces; split or clean such texts before tokenizing"
                )));
            }
            Err(FerrotuneError::Internal(message))
        }
    }
}
