//! Arrow objects exported through the C data interface (`__arrow_c_array__`), kept alive while the
//! core reads them in place (`ferrotune_core::arrow`): one capsule call per batch, no pyarrow
//! object per column, example or token.

use std::sync::Mutex;

use ferrotune_core::arrow::{ArrayView, ArrowArray, ArrowSchema};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyCapsule, PyCapsuleMethods, PyType};

/// A `pyarrow.Schema` exported once, for the batches that share it.
pub(crate) struct CachedSchema {
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
pub(crate) struct ArrowExport<'py> {
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
    /// Exports `batch` (any object with `__arrow_c_array__`); a pyarrow RecordBatch reuses the
    /// schema cached in `cache`.
    pub(crate) fn new(
        batch: &Bound<'py, PyAny>,
        cache: Option<&Mutex<Option<CachedSchema>>>,
    ) -> PyResult<Self> {
        let py = batch.py();
        if let (Some(cache), Some(record_batch)) = (cache, pyarrow_record_batch(py)) {
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

    pub(crate) fn view(&self) -> ArrayView<'_> {
        // SAFETY: the capsules or the owned array (held by self) own both structs, a valid export.
        unsafe { ArrayView::new(&*self.schema, &*self.array) }
    }
}
