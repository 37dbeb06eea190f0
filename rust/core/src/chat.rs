//! Chat templates rendered in Rust, as transformers renders them with Jinja2.
//!
//! transformers compiles a template in an `ImmutableSandboxedEnvironment(trim_blocks=True,
//! lstrip_blocks=True)` with the loop-controls extension, its own `tojson` filter (Python's
//! `json.dumps`, not Jinja's HTML-escaping one), the globals `raise_exception` and `strftime_now`,
//! and a `{% generation %}` block tag that records where the assistant's text was written. This
//! module sets up minijinja the same way: Python's string and dict methods come from
//! minijinja-contrib's `pycompat`; `{% generation %}` ... `{% endgeneration %}` are rewritten, before
//! compiling, into block tags of the same whitespace control that write private markers, which
//! rendering then removes while recording the block's character span.

use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, Error as TemplateError, ErrorKind, UndefinedBehavior};
use rayon::prelude::*;

use crate::error::{FerrotuneError, Result};

/// A value the template sees: JSON's types, with maps kept in insertion order (Python dicts).
#[derive(Debug, Clone, PartialEq)]
pub enum TemplateValue {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<TemplateValue>),
    Map(Vec<(String, TemplateValue)>),
}

impl TemplateValue {
    pub(crate) fn to_value(&self) -> Value {
        match self {
            TemplateValue::None => Value::from(()),
            TemplateValue::Bool(b) => Value::from(*b),
            TemplateValue::Int(i) => Value::from(*i),
            TemplateValue::Float(f) => Value::from(*f),
            TemplateValue::Str(s) => Value::from(s.as_str()),
            TemplateValue::List(items) => {
                Value::from(items.iter().map(Self::to_value).collect::<Vec<_>>())
            }
            TemplateValue::Map(pairs) => Value::from_pairs(
                pairs
                    .iter()
                    .map(|(key, value)| (Value::from(key.as_str()), value.to_value())),
            ),
        }
    }

    /// True when a string anywhere inside holds one of the generation markers.
    pub(crate) fn holds_marker(&self) -> bool {
        match self {
            TemplateValue::Str(s) => s.contains([GENERATION_START, GENERATION_END]),
            TemplateValue::List(items) => items.iter().any(Self::holds_marker),
            TemplateValue::Map(pairs) => pairs.iter().any(|(key, value)| {
                key.contains([GENERATION_START, GENERATION_END]) || value.holds_marker()
            }),
            _ => false,
        }
    }
}

/// One rendered conversation and the character spans (start, end) of its `{% generation %}` blocks,
/// counted in Unicode code points as Python indexes strings.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub text: String,
    pub generation_spans: Vec<(usize, usize)>,
}

// Unicode noncharacters: never in text people write, and refused in the inputs (see `render`).
const GENERATION_START: char = '\u{FDD0}';
const GENERATION_END: char = '\u{FDD1}';

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    has_generation: bool,
}

impl ChatTemplate {
    pub fn new(source: &str) -> Result<Self> {
        let (rewritten, has_generation) = rewrite_generation_tags(source);
        let mut env = Environment::new();
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .map_err(template_error)?,
        );
        env.set_undefined_behavior(UndefinedBehavior::Lenient);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", tojson);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned("chat", rewritten)
            .map_err(template_error)?;
        Ok(Self {
            env,
            has_generation,
        })
    }

    /// Whether the template marks the assistant's text with `{% generation %}` blocks.
    pub fn has_generation(&self) -> bool {
        self.has_generation
    }

    /// Renders one conversation: `context` holds `messages`, `add_generation_prompt`, the special
    /// tokens and any other template variable.
    pub fn render(&self, context: &[(String, TemplateValue)]) -> Result<Rendered> {
        if context.iter().any(|(_, value)| value.holds_marker()) {
            return Err(Self::marker_error());
        }
        let template = self.env.get_template("chat").map_err(template_error)?;
        let context = Value::from_pairs(
            context
                .iter()
                .map(|(key, value)| (Value::from(key.as_str()), value.to_value())),
        );
        let text = template.render(context).map_err(template_error)?;
        Ok(strip_generation_markers(&text))
    }

    pub(crate) fn marker_error() -> FerrotuneError {
        FerrotuneError::ChatTemplate(
            "the conversation holds the characters U+FDD0 or U+FDD1, which ferrotune reserves to mark \
             {% generation %} blocks"
                .into(),
        )
    }

    /// Renders `messages` (already template values, so that the prefixes of one conversation share
    /// them) with `variables` (the caller checked them for markers); `messages` and
    /// `add_generation_prompt` in `variables` are overridden.
    pub(crate) fn render_values(
        &self,
        variables: &[(Value, Value)],
        messages: &[Value],
        add_generation_prompt: bool,
    ) -> Result<Rendered> {
        let template = self.env.get_template("chat").map_err(template_error)?;
        let fixed = [
            (Value::from("messages"), Value::from(messages.to_vec())),
            (
                Value::from("add_generation_prompt"),
                Value::from(add_generation_prompt),
            ),
        ];
        let context = Value::from_pairs(
            variables
                .iter()
                .filter(|(key, _)| {
                    key.as_str() != Some("messages")
                        && key.as_str() != Some("add_generation_prompt")
                })
                .cloned()
                .chain(fixed),
        );
        let text = template.render(context).map_err(template_error)?;
        Ok(strip_generation_markers(&text))
    }

    /// Renders every conversation (in parallel); the error names the first conversation that failed.
    pub fn render_batch(&self, contexts: &[Vec<(String, TemplateValue)>]) -> Result<Vec<Rendered>> {
        let render_one = |(index, context): (usize, &Vec<(String, TemplateValue)>)| {
            self.render(context).map_err(|err| match err {
                FerrotuneError::ChatTemplate(message) => {
                    FerrotuneError::ChatTemplate(format!("conversation {index}: {message}"))
                }
                other => other,
            })
        };
        if crate::parallel::parallelism_enabled() && contexts.len() > 1 {
            contexts.par_iter().enumerate().map(render_one).collect()
        } else {
            contexts.iter().enumerate().map(render_one).collect()
        }
    }
}

fn template_error(err: TemplateError) -> FerrotuneError {
    // raise_exception's message is the error's detail; other errors keep minijinja's description.
    if err.kind() == ErrorKind::InvalidOperation {
        if let Some(detail) = err.detail() {
            if let Some(message) = detail.strip_prefix(RAISED) {
                return FerrotuneError::ChatTemplate(message.to_string());
            }
        }
    }
    let mut message = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(inner) = source {
        message.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    FerrotuneError::ChatTemplate(message)
}

const RAISED: &str = "raise_exception: ";

fn raise_exception(message: String) -> std::result::Result<Value, TemplateError> {
    Err(TemplateError::new(
        ErrorKind::InvalidOperation,
        format!("{RAISED}{message}"),
    ))
}

fn strftime_now(format: String) -> std::result::Result<Value, TemplateError> {
    use std::fmt::Write;
    let mut out = String::new();
    write!(out, "{}", chrono::Local::now().format(&format)).map_err(|_| {
        TemplateError::new(
            ErrorKind::InvalidOperation,
            format!("strftime_now: invalid format {format:?}"),
        )
    })?;
    Ok(Value::from(out))
}

/// Python's `json.dumps(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`
/// with the same keyword arguments (transformers' `tojson` filter).
fn tojson(value: Value, kwargs: Kwargs) -> std::result::Result<Value, TemplateError> {
    let ensure_ascii: bool = kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false);
    let indent: Option<Value> = kwargs.get("indent")?;
    let sort_keys: bool = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => Some(match v.as_str() {
            Some(s) => s.to_string(),
            None => " ".repeat(i64::try_from(v.clone()).unwrap_or(0).max(0) as usize),
        }),
    };
    let (item, key) = match &separators {
        Some(pair) if pair.len() == 2 => (pair[0].clone(), pair[1].clone()),
        Some(_) => {
            return Err(TemplateError::new(
                ErrorKind::InvalidOperation,
                "tojson: separators must be a pair (item separator, key separator)",
            ))
        }
        None if indent.is_some() => (",".to_string(), ": ".to_string()),
        None => (", ".to_string(), ": ".to_string()),
    };
    let mut out = String::new();
    let options = JsonOptions {
        ensure_ascii,
        indent,
        item,
        key,
        sort_keys,
    };
    write_json(&mut out, &value, &options, 0)?;
    Ok(Value::from_safe_string(out))
}

struct JsonOptions {
    ensure_ascii: bool,
    indent: Option<String>,
    item: String,
    key: String,
    sort_keys: bool,
}

fn write_json(
    out: &mut String,
    value: &Value,
    options: &JsonOptions,
    depth: usize,
) -> std::result::Result<(), TemplateError> {
    use minijinja::value::ValueKind;
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            if !value.is_integer() {
                let f = f64::try_from(value.clone()).unwrap_or(f64::NAN);
                out.push_str(&python_float(f));
            } else {
                out.push_str(&value.to_string());
            }
        }
        ValueKind::String => write_json_string(
            out,
            value.as_str().unwrap_or_default(),
            options.ensure_ascii,
        ),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            write_container(out, items.len(), '[', ']', options, depth, |out, i| {
                write_json(out, &items[i], options, depth + 1)
            })?;
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = value.try_iter()?.collect();
            if options.sort_keys {
                keys.sort_by_key(|key| key.to_string());
            }
            write_container(out, keys.len(), '{', '}', options, depth, |out, i| {
                let key = &keys[i];
                let name = match key.as_str() {
                    Some(s) => s.to_string(),
                    None if key.is_none() => "null".to_string(),
                    None => {
                        let mut text = String::new();
                        write_json(&mut text, key, options, depth + 1)?;
                        text
                    }
                };
                write_json_string(out, &name, options.ensure_ascii);
                out.push_str(&options.key);
                write_json(out, &value.get_item(key)?, options, depth + 1)
            })?;
        }
        _ => {
            return Err(TemplateError::new(
                ErrorKind::InvalidOperation,
                format!(
                    "tojson: object of type {} is not JSON serializable",
                    value.kind()
                ),
            ))
        }
    }
    Ok(())
}

fn write_container(
    out: &mut String,
    count: usize,
    open: char,
    close: char,
    options: &JsonOptions,
    depth: usize,
    mut item: impl FnMut(&mut String, usize) -> std::result::Result<(), TemplateError>,
) -> std::result::Result<(), TemplateError> {
    out.push(open);
    if count == 0 {
        out.push(close);
        return Ok(());
    }
    for i in 0..count {
        if i > 0 {
            out.push_str(&options.item);
        }
        if let Some(indent) = &options.indent {
            out.push('\n');
            out.push_str(&indent.repeat(depth + 1));
        }
        item(out, i)?;
    }
    if let Some(indent) = &options.indent {
        out.push('\n');
        out.push_str(&indent.repeat(depth));
    }
    out.push(close);
    Ok(())
}

fn write_json_string(out: &mut String, text: &str, ensure_ascii: bool) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ensure_ascii && (c as u32) > 0x7e) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A float as Python's `repr` writes it (what `json.dumps` uses): shortest round trip, fixed notation
/// for exponents -4..16, else `1e+16` / `1.5e-05`.
fn python_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    let scientific = format!("{f:e}"); // shortest round-trip digits: "1.5e-5", "-1e20"
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if (-4..16).contains(&exponent) {
        let fixed = format!("{f}");
        if fixed.contains('.') {
            fixed
        } else {
            format!("{fixed}.0")
        }
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.abs())
    }
}

/// `{% generation %}` / `{% endgeneration %}` become block tags with the same whitespace control
/// around an expression writing a marker: `{%- if true %}{{ "\u{FDD0}" }}{% endif -%}` (the first
/// tag takes the left `-` and lstrip_blocks, the last the right `-` and trim_blocks, as the one
/// original tag did).
fn rewrite_generation_tags(source: &str) -> (String, bool) {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    let mut found = false;
    while let Some(open) = rest.find("{%") {
        out.push_str(&rest[..open]);
        let tag = &rest[open..];
        let Some(close) = tag.find("%}") else {
            out.push_str(tag);
            return (out, found);
        };
        let inner = &tag[2..close];
        let left = inner.starts_with('-') || inner.starts_with('+');
        let right = inner.ends_with('-') || inner.ends_with('+');
        let body = inner
            .trim_start_matches(['-', '+'])
            .trim_end_matches(['-', '+'])
            .trim();
        let marker = match body {
            "generation" => Some(GENERATION_START),
            "endgeneration" => Some(GENERATION_END),
            _ => None,
        };
        match marker {
            Some(marker) => {
                found = true;
                let left_mark = if left { &inner[..1] } else { "" };
                let right_mark = if right { &inner[inner.len() - 1..] } else { "" };
                out.push_str(&format!(
                    "{{%{left_mark} if true %}}{{{{ \"{marker}\" }}}}{{% endif {right_mark}%}}"
                ));
            }
            None => out.push_str(&tag[..close + 2]),
        }
        rest = &tag[close + 2..];
    }
    out.push_str(rest);
    (out, found)
}

fn strip_generation_markers(text: &str) -> Rendered {
    if !text.contains([GENERATION_START, GENERATION_END]) {
        return Rendered {
            text: text.to_string(),
            generation_spans: Vec::new(),
        };
    }
    let mut clean = String::with_capacity(text.len());
    let mut spans = Vec::new();
    let mut open: Vec<usize> = Vec::new();
    let mut chars = 0usize;
    for c in text.chars() {
        match c {
            GENERATION_START => open.push(chars),
            GENERATION_END => {
                if let Some(start) = open.pop() {
                    spans.push((start, chars));
                }
            }
            c => {
                clean.push(c);
                chars += 1;
            }
        }
    }
    spans.sort_unstable();
    Rendered {
        text: clean,
        generation_spans: spans,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(turns: &[(&str, &str)]) -> Vec<(String, TemplateValue)> {
        let list = turns
            .iter()
            .map(|(role, content)| {
                TemplateValue::Map(vec![
                    ("role".into(), TemplateValue::Str(role.to_string())),
                    ("content".into(), TemplateValue::Str(content.to_string())),
                ])
            })
            .collect();
        vec![
            ("messages".into(), TemplateValue::List(list)),
            ("add_generation_prompt".into(), TemplateValue::Bool(false)),
        ]
    }

    #[test]
    fn chatml_with_trim_and_lstrip_blocks() {
        let template = ChatTemplate::new(
            "{% for message in messages %}\n    {{- '<|im_start|>' + message['role'] + '\\n' + message['content'].strip() + '<|im_end|>\\n' }}\n{% endfor %}",
        )
        .unwrap();
        let out = template
            .render(&messages(&[("user", " hi "), ("assistant", "hello")]))
            .unwrap();
        // What Jinja2 renders with trim_blocks and lstrip_blocks (checked against transformers).
        assert_eq!(
            out.text,
            "<|im_start|>user\nhi<|im_end|>\n\n<|im_start|>assistant\nhello<|im_end|>\n\n"
        );
    }

    #[test]
    fn generation_blocks_give_character_spans() {
        let template = ChatTemplate::new(
            "{% for m in messages %}{% if m.role == 'assistant' %}A: {% generation %}{{ m.content }}{% endgeneration %}\n{% else %}U: {{ m.content }}\n{% endif %}{% endfor %}",
        )
        .unwrap();
        assert!(template.has_generation());
        let out = template
            .render(&messages(&[("user", "héllo"), ("assistant", "wörld")]))
            .unwrap();
        assert_eq!(out.text, "U: héllo\nA: wörld"); // trim_blocks eats the newline after the tag
        assert_eq!(out.generation_spans, vec![(12, 17)]);
    }

    #[test]
    fn raise_exception_gives_its_message_and_the_conversation() {
        let template =
            ChatTemplate::new("{{ raise_exception('Conversation roles must alternate') }}")
                .unwrap();
        let err = template
            .render_batch(&[messages(&[("user", "a")])])
            .unwrap_err()
            .to_string();
        assert_eq!(err, "conversation 0: Conversation roles must alternate");
    }

    #[test]
    fn tojson_is_pythons_json_dumps() {
        let template = ChatTemplate::new(
            "{{ tools | tojson }}|{{ tools | tojson(indent=2) }}|{{ 1.0 | tojson }}|{{ 1e20 | tojson }}|{{ 'é<>&' | tojson(ensure_ascii=true) }}",
        )
        .unwrap();
        let tools = TemplateValue::List(vec![TemplateValue::Map(vec![
            ("name".into(), TemplateValue::Str("f<x>".into())),
            ("n".into(), TemplateValue::Int(3)),
        ])]);
        let out = template.render(&[("tools".into(), tools)]).unwrap();
        assert_eq!(
            out.text,
            "[{\"name\": \"f<x>\", \"n\": 3}]|[\n  {\n    \"name\": \"f<x>\",\n    \"n\": 3\n  }\n]|1.0|1e+20|\"\\u00e9<>&\""
        );
    }

    #[test]
    fn python_floats() {
        assert_eq!(python_float(0.1), "0.1");
        assert_eq!(python_float(2.0), "2.0");
        assert_eq!(python_float(1e16), "1e+16");
        assert_eq!(python_float(1.5e-5), "1.5e-05");
        assert_eq!(python_float(-123.25), "-123.25");
        assert_eq!(python_float(0.0001), "0.0001");
    }
}
