//! Whether this process may use the rayon pool.
//!
//! A child made by `fork` inherits the parent's memory but none of its threads: rayon's global pool
//! would wait forever for workers that do not exist. The bindings call [`disable_after_fork`] from a
//! `pthread_atfork` child handler; from then on every batch runs on the calling thread.

use std::sync::atomic::{AtomicBool, Ordering};

static FORKED_CHILD: AtomicBool = AtomicBool::new(false);

/// Called in a freshly forked child: turn parallelism off here and in the tokenizers crate.
pub fn disable_after_fork() {
    FORKED_CHILD.store(true, Ordering::SeqCst);
    tokenizers::utils::parallelism::set_parallelism(false);
}

/// True when batches may be spread over rayon's pool: not in a forked child, and not switched off
/// through `TOKENIZERS_PARALLELISM` (which the tokenizers crate and transformers users already know).
pub fn parallelism_enabled() -> bool {
    !FORKED_CHILD.load(Ordering::SeqCst) && tokenizers::utils::parallelism::get_parallelism()
}
