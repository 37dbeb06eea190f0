//! Bindings of chat templates: Python conversations converted to template values, rendered in the
//! core with the GIL released.

use ferrotune_core::chat::{ChatTemplate, TemplateValue};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::{guarded, run_detached, to_py_err};
use ferrotune_core::FerrotuneError;

/// A compiled chat template (`_core.ChatTemplate(source)`).
#[pyclass(module = "ferrotune._core", name = "ChatTemplate", frozen)]
pub struct PyChatTemplate {
    pub(crate) template: ChatTemplate,
}

/// Deeper than this is a cycle (a message that contains itself) or not a conversation: refused
/// before the recursion could exhaust the stack.
const MAX_DEPTH: usize = 64;

/// A Python value as the template sees it. As transformers' `_plain_template_data`: JSON's types
/// pass (dicts keep their order, tuples become lists), NumPy scalars give their value, anything else
/// becomes a placeholder naming its type ("<ndarray>").
pub(crate) fn template_value(value: &Bound<'_, PyAny>) -> PyResult<TemplateValue> {
    nested_value(value, 0)
}

fn nested_value(value: &Bound<'_, PyAny>, depth: usize) -> PyResult<TemplateValue> {
    if depth > MAX_DEPTH {
        return Err(to_py_err(
            value.py(),
            FerrotuneError::InputType(format!(
                "a template value nested more than {MAX_DEPTH} levels deep (a list or dict that contains \
                 itself?)"
            )),
        ));
    }
    if value.is_none() {
        return Ok(TemplateValue::None);
    }
    if let Ok(b) = value.cast::<PyBool>() {
        return Ok(TemplateValue::Bool(b.is_true()));
    }
    if let Ok(s) = value.cast::<PyString>() {
        return Ok(TemplateValue::Str(s.to_str()?.to_owned()));
    }
    if value.is_instance_of::<PyInt>() {
        return Ok(match value.extract::<i64>() {
            Ok(i) => TemplateValue::Int(i),
            Err(_) => TemplateValue::Float(value.extract::<f64>()?),
        });
    }
    if value.is_instance_of::<PyFloat>() {
        return Ok(TemplateValue::Float(value.extract::<f64>()?));
    }
    if let Ok(dict) = value.cast::<PyDict>() {
        let mut pairs = Vec::with_capacity(dict.len());
        for (key, item) in dict.iter() {
            let key = match key.cast::<PyString>() {
                Ok(s) => s.to_str()?.to_owned(),
                Err(_) => key.str()?.to_str()?.to_owned(),
            };
            pairs.push((key, nested_value(&item, depth + 1)?));
        }
        return Ok(TemplateValue::Map(pairs));
    }
    if let Ok(list) = value.cast::<PyList>() {
        return list
            .iter()
            .map(|item| nested_value(&item, depth + 1))
            .collect::<PyResult<_>>()
            .map(TemplateValue::List);
    }
    if let Ok(tuple) = value.cast::<PyTuple>() {
        return tuple
            .iter()
            .map(|item| nested_value(&item, depth + 1))
            .collect::<PyResult<_>>()
            .map(TemplateValue::List);
    }
    if value.hasattr("item")?
        && value.hasattr("dtype")?
        && value.getattr("ndim")?.extract::<usize>().ok() == Some(0)
    {
        return nested_value(&value.call_method0("item")?, depth + 1);
    }
    let name = value.get_type().name()?.to_string();
    Ok(TemplateValue::Str(format!("<{name}>")))
}

#[pymethods]
impl PyChatTemplate {
    #[new]
    fn new(py: Python<'_>, source: &str) -> PyResult<Self> {
        guarded(py, || {
            let source = source.to_owned();
            let template = run_detached(py, move || ChatTemplate::new(&source))?;
            Ok(Self { template })
        })
    }

    /// Whether the template has `{% generation %}` blocks (what assistant masks are read from).
    fn has_generation(&self) -> bool {
        self.template.has_generation()
    }

    /// Renders each context (a dict of template variables: messages, add_generation_prompt, special
    /// tokens, ...): a list of `(text, [(start, end), ...])`, the spans of `{% generation %}` blocks in
    /// characters.
    #[allow(clippy::type_complexity)]
    fn render_batch(
        &self,
        py: Python<'_>,
        contexts: Vec<Bound<'_, PyDict>>,
    ) -> PyResult<Vec<(String, Vec<(usize, usize)>)>> {
        guarded(py, || {
            let mut owned = Vec::with_capacity(contexts.len());
            for context in &contexts {
                let mut pairs = Vec::with_capacity(context.len());
                for (key, value) in context.iter() {
                    let key: String = key.extract().map_err(|_| {
                        to_py_err(
                            py,
                            FerrotuneError::InputType(
                                "template variable names must be strings".into(),
                            ),
                        )
                    })?;
                    pairs.push((key, template_value(&value)?));
                }
                owned.push(pairs);
            }
            let template = &self.template;
            let rendered = run_detached(py, move || template.render_batch(&owned))?;
            Ok(rendered
                .into_iter()
                .map(|r| (r.text, r.generation_spans))
                .collect())
        })
    }
}
