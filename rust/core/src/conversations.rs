//! Conversations to training rows: rendered with the chat template, tokenized once, and labelled
//! with the loss mask (`-100` outside it) — what `tokenize_conversations` and the streaming
//! loader's `messages_column` produce.
//!
//! Where the template has `{% generation %}` blocks, the loss spans are transformers'
//! `assistant_masks` (the token of a block's first character to the token of its last). Otherwise
//! they come from the message structure: for assistant message `k`, the conversation up to `k`
//! rendered with the generation prompt is the prompt, and the conversation through `k` the prompt
//! plus the answer. With `Boundaries::Tokens` both must tokenize as prefixes of the whole
//! conversation's ids (a template that re-renders earlier turns differently fails, never gives a
//! wrong mask). With `Boundaries::Characters` they must be prefixes of the whole TEXT and the
//! answer's tokens are found from the whole conversation's character offsets — no second
//! tokenization — falling back to the token check where a character falls in no token.

use minijinja::Value;
use rayon::prelude::*;

use crate::buffers::Ragged;
use crate::chat::{ChatTemplate, TemplateValue};
use crate::engine::{EncodeRequest, Engine, OutputSelection};
use crate::error::{FerrotuneError, Result};
use crate::pad::PadSpec;
use crate::parallel::parallelism_enabled;

/// The ignored label (PyTorch's `ignore_index`).
pub const IGNORED: i64 = -100;

/// Which tokens carry the loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossOn {
    /// Every assistant message: its content and the end-of-turn tokens the template writes.
    Assistant,
    /// The last assistant message only.
    LastAssistant,
    /// Every token.
    All,
    /// Prompt/completion data: the completion's tokens.
    Completion,
}

impl LossOn {
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "assistant" => LossOn::Assistant,
            "last_assistant" => LossOn::LastAssistant,
            "all" => LossOn::All,
            "completion" => LossOn::Completion,
            other => {
                return Err(FerrotuneError::InvalidArgument(format!(
                "loss_on must be one of assistant, last_assistant, all, completion, not {other:?}"
            )))
            }
        })
    }
}

/// How the edges of a structural span are found (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boundaries {
    Tokens,
    Characters,
}

impl Boundaries {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "tokens" => Ok(Boundaries::Tokens),
            "characters" => Ok(Boundaries::Characters),
            other => Err(FerrotuneError::InvalidArgument(format!(
                "boundaries must be 'tokens' or 'characters', not {other:?}"
            ))),
        }
    }
}

/// One conversation: its messages (maps with `role`), and for prompt/completion data the number of
/// prompt messages (the rest is the completion).
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    pub messages: Vec<TemplateValue>,
    pub prompt_messages: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct ConversationOptions {
    pub loss_on: LossOn,
    pub boundaries: Boundaries,
    /// Longer conversations are cut (right) to this many tokens.
    pub max_length: Option<usize>,
    /// Leave out (counted) a conversation with no token to learn, instead of failing.
    pub drop_empty: bool,
    /// Template variables besides `messages` and `add_generation_prompt`: the special tokens,
    /// `tools`, `documents`, extra keyword arguments.
    pub variables: Vec<(String, TemplateValue)>,
}

/// The kept conversations' ids and labels (aligned with the ids), and which were left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncodedConversations {
    pub ids: Ragged,
    pub labels: Vec<i64>,
    /// Index of each kept row's conversation.
    pub kept: Vec<usize>,
    /// Conversations left out with nothing to learn.
    pub dropped: Vec<usize>,
}

/// The texts one conversation needs: the whole, and per structural request the prompt (with the
/// generation prompt) and, for assistant messages, the prompt plus the answer.
struct Renders {
    text: String,
    chars: usize,
    generation_spans: Vec<(usize, usize)>,
    requests: Vec<Request>,
}

/// The whole conversations' ids, row boundaries and offsets (two values per token), in bytes or in
/// characters.
#[derive(Default)]
struct Tokenized {
    ids: Vec<i64>,
    starts: Vec<usize>,
    offsets: Option<Vec<i64>>,
    in_bytes: bool,
}

/// Where character `c` of `text` is in the offsets' unit (None past the end).
fn position(text: &str, c: usize, in_bytes: bool) -> Option<usize> {
    if !in_bytes {
        return Some(c);
    }
    text.char_indices().nth(c).map(|(byte, _)| byte)
}

/// A request whose span needs its prefixes tokenized: where its span goes, and the span from
/// characters to use where the token prefixes fail.
struct Pending {
    conversation: usize,
    request: usize,
    slot: usize,
    fallback: Option<(usize, usize)>,
}

struct Request {
    /// The message the request is about (for errors).
    message: usize,
    prompt: String,
    /// None for a completion: the span runs to the end.
    answer: Option<String>,
}

fn is_assistant(message: &TemplateValue) -> bool {
    match message {
        TemplateValue::Map(pairs) => pairs
            .iter()
            .any(|(key, value)| key == "role" && *value == TemplateValue::Str("assistant".into())),
        _ => false,
    }
}

fn name_conversation(index: usize, err: FerrotuneError) -> FerrotuneError {
    match err {
        FerrotuneError::ChatTemplate(message) => {
            FerrotuneError::ChatTemplate(format!("conversation {index}: {message}"))
        }
        other => other,
    }
}

fn mask_error(message: String) -> FerrotuneError {
    FerrotuneError::ChatMask(message)
}

/// The token holding character `char` (`offsets`: a row's `[start, end)` pairs), as the crate's
/// `char_to_token`: the first token whose characters contain it.
fn char_to_token(offsets: &[i64], char: usize) -> Option<usize> {
    let char = char as i64;
    offsets
        .chunks_exact(2)
        .position(|pair| pair[0] <= char && char < pair[1])
}

/// Maps items in parallel (when enabled) and returns the first error in input order, so that the
/// conversation an error names does not depend on scheduling.
fn map_in_order<T: Sync, U: Send>(
    items: &[T],
    f: impl Fn(usize, &T) -> Result<U> + Sync + Send,
) -> Result<Vec<U>> {
    let results: Vec<Result<U>> = if parallelism_enabled() && items.len() > 1 {
        items.par_iter().enumerate().map(|(i, x)| f(i, x)).collect()
    } else {
        items.iter().enumerate().map(|(i, x)| f(i, x)).collect()
    };
    results.into_iter().collect()
}

fn ids_only() -> EncodeRequest {
    EncodeRequest {
        add_special_tokens: false,
        truncation: None,
        padding: PadSpec::NONE,
        pad_id: 0,
        pad_type_id: 0,
        outputs: OutputSelection::default(),
    }
}

/// Renders, tokenizes and labels `conversations` (see the module documentation).
pub fn encode_conversations(
    template: &ChatTemplate,
    engine: &Engine,
    conversations: &[Conversation],
    options: &ConversationOptions,
) -> Result<EncodedConversations> {
    let loss_on = options.loss_on;
    if (loss_on == LossOn::Completion) != conversations.iter().all(|c| c.prompt_messages.is_some())
        && !conversations.is_empty()
    {
        return Err(FerrotuneError::InvalidArgument(
            "completions are given with loss_on='completion', and only then".into(),
        ));
    }
    let from_blocks =
        matches!(loss_on, LossOn::Assistant | LossOn::LastAssistant) && template.has_generation();
    let structural = matches!(loss_on, LossOn::Assistant | LossOn::LastAssistant) && !from_blocks;
    if options
        .variables
        .iter()
        .any(|(key, value)| key.contains(['\u{FDD0}', '\u{FDD1}']) || value.holds_marker())
    {
        return Err(name_conversation(0, ChatTemplate::marker_error()));
    }
    let variables: Vec<(Value, Value)> = options
        .variables
        .iter()
        .map(|(key, value)| (Value::from(key.as_str()), value.to_value()))
        .collect();

    // Every text rendered, each conversation in parallel.
    let renders = map_in_order(conversations, |index, conversation| {
        let messages: Vec<Value> = conversation
            .messages
            .iter()
            .map(TemplateValue::to_value)
            .collect();
        if conversation
            .messages
            .iter()
            .any(TemplateValue::holds_marker)
        {
            return Err(name_conversation(index, ChatTemplate::marker_error()));
        }
        let render = |count: usize, prompt: bool| {
            template
                .render_values(&variables, &messages[..count], prompt)
                .map_err(|err| name_conversation(index, err))
        };
        let whole = render(messages.len(), false)?;
        let mut requests = Vec::new();
        if structural {
            let assistants: Vec<usize> = (0..messages.len())
                .filter(|&k| is_assistant(&conversation.messages[k]))
                .collect();
            let chosen = match loss_on {
                LossOn::LastAssistant => &assistants[assistants.len().saturating_sub(1)..],
                _ => &assistants[..],
            };
            for &k in chosen {
                requests.push(Request {
                    message: k,
                    prompt: render(k, true)?.text,
                    // Through the last message, the answer's render is the whole conversation's.
                    answer: Some(if k + 1 == messages.len() {
                        whole.text.clone()
                    } else {
                        render(k + 1, false)?.text
                    }),
                });
            }
        } else if let (LossOn::Completion, Some(prompt)) = (loss_on, conversation.prompt_messages) {
            requests.push(Request {
                message: prompt,
                prompt: render(prompt.min(messages.len()), true)?.text,
                answer: None,
            });
        }
        Ok(Renders {
            chars: whole.text.chars().count(),
            text: whole.text,
            generation_spans: whole.generation_spans,
            requests,
        })
    })?;

    // The whole conversations, tokenized once, with offsets where spans need them: byte spans
    // from the native encoder (no `Encoding` built), else the general path's character offsets.
    let texts: Vec<String> = renders.iter().map(|r| r.text.clone()).collect();
    let needs_offsets =
        from_blocks || (loss_on != LossOn::All && options.boundaries == Boundaries::Characters);
    let whole = match needs_offsets
        .then(|| engine.encode_byte_spans(&texts))
        .flatten()
    {
        Some(rows) => {
            let mut whole = Tokenized {
                starts: vec![0],
                offsets: Some(Vec::new()),
                in_bytes: true,
                ..Tokenized::default()
            };
            for (ids, spans) in rows {
                whole.ids.extend(ids);
                whole.starts.push(whole.ids.len());
                whole.offsets.as_mut().expect("set above").extend(spans);
            }
            whole
        }
        None => {
            let mut request = ids_only();
            request.outputs.offsets = needs_offsets;
            let batch = engine.encode_batch(&texts, None, &request)?;
            Tokenized {
                ids: batch.input_ids,
                starts: batch.starts,
                offsets: batch.offsets,
                in_bytes: false,
            }
        }
    };
    drop(texts);
    let row = |index: usize| &whole.ids[whole.starts[index]..whole.starts[index + 1]];
    let offsets_of = |index: usize| {
        whole
            .offsets
            .as_deref()
            .map(|o| &o[2 * whole.starts[index]..2 * whole.starts[index + 1]])
            .unwrap_or(&[])
    };
    let in_bytes = whole.in_bytes;

    // Spans from characters where they settle it; the rest need their prefixes tokenized.
    let mut spans: Vec<Vec<(usize, usize)>> = vec![Vec::new(); conversations.len()];
    let mut pending: Vec<Pending> = Vec::new();
    for (index, rendered) in renders.iter().enumerate() {
        let length = row(index).len();
        let offsets = offsets_of(index);
        if loss_on == LossOn::All {
            spans[index].push((0, length));
            continue;
        }
        if from_blocks {
            let chosen = match loss_on {
                LossOn::LastAssistant => {
                    &rendered.generation_spans[rendered.generation_spans.len().saturating_sub(1)..]
                }
                _ => &rendered.generation_spans[..],
            };
            let at = |c: usize| position(&rendered.text, c, in_bytes);
            for &(start, end) in chosen {
                // transformers' assistant_masks, quirks included: the token of the block's first
                // character to the token of its last (for an empty block, of the character before
                // it), or to the end when that is no token (or is token 0).
                let Some(start_token) = at(start).and_then(|p| char_to_token(offsets, p)) else {
                    break;
                };
                let end_token = end
                    .checked_sub(1)
                    .and_then(at)
                    .and_then(|p| char_to_token(offsets, p));
                let end = match end_token {
                    Some(token) if token > 0 => token + 1,
                    _ => length,
                };
                spans[index].push((start_token, end));
            }
            continue;
        }
        for (r, request) in rendered.requests.iter().enumerate() {
            let mut fallback = None;
            if options.boundaries == Boundaries::Characters {
                if let Some((span, settled)) =
                    span_from_characters(rendered, request, offsets, in_bytes, length)
                {
                    if settled {
                        spans[index].push(span);
                        continue;
                    }
                    fallback = Some(span);
                }
            }
            pending.push(Pending {
                conversation: index,
                request: r,
                slot: spans[index].len(),
                fallback,
            });
            spans[index].push((0, 0)); // filled in below
        }
    }

    if !pending.is_empty() {
        let mut prefix_texts = Vec::with_capacity(2 * pending.len());
        let mut firsts = Vec::with_capacity(pending.len()); // each request's first prefix text
        for entry in &pending {
            let request = &renders[entry.conversation].requests[entry.request];
            firsts.push(prefix_texts.len());
            prefix_texts.push(request.prompt.clone());
            if let Some(answer) = &request.answer {
                prefix_texts.push(answer.clone());
            }
        }
        let prefixes = engine.encode_batch(&prefix_texts, None, &ids_only())?;
        let prefix = |i: usize| &prefixes.input_ids[prefixes.starts[i]..prefixes.starts[i + 1]];
        let is_prefix = |prefix: &[i64], ids: &[i64]| ids.get(..prefix.len()) == Some(prefix);
        for (entry, &first) in pending.iter().zip(&firsts) {
            let (index, slot, fallback) = (entry.conversation, entry.slot, entry.fallback);
            let request = &renders[index].requests[entry.request];
            let ids = row(index);
            let prompt = prefix(first);
            let answer = request.answer.as_ref().map(|_| prefix(first + 1));
            // The token prefixes first; the characters' span where they fail (boundaries="characters").
            let aligned = is_prefix(prompt, ids) && answer.is_none_or(|a| is_prefix(a, ids));
            if let (false, Some(span)) = (aligned, fallback) {
                spans[index][slot] = span;
                continue;
            }
            let span = match answer {
                None => {
                    check_prefix(prompt, ids, index, "the prompt with its generation prompt")?;
                    (prompt.len(), ids.len())
                }
                Some(answer) => {
                    let k = request.message;
                    check_prefix(
                        prompt,
                        ids,
                        index,
                        &format!("the conversation up to message {k} (generation prompt added)"),
                    )?;
                    check_prefix(
                        answer,
                        ids,
                        index,
                        &format!("the conversation through message {k}"),
                    )?;
                    if answer.len() < prompt.len() {
                        return Err(mask_error(format!(
                            "conversation {index}: message {k} renders shorter than its prompt"
                        )));
                    }
                    (prompt.len(), answer.len())
                }
            };
            spans[index][slot] = span;
        }
    }

    // Labels: the ids inside the spans (after truncation), -100 elsewhere.
    let mut out = EncodedConversations {
        ids: Ragged::with_capacity(conversations.len(), whole.ids.len()),
        labels: Vec::with_capacity(whole.ids.len()),
        ..EncodedConversations::default()
    };
    for (index, chosen) in spans.iter().enumerate() {
        let ids = row(index);
        let length = options.max_length.map_or(ids.len(), |m| m.min(ids.len()));
        let mut labels = vec![IGNORED; length];
        for &(start, end) in chosen {
            let stop = end.min(length);
            if start < stop {
                labels[start..stop].copy_from_slice(&ids[start..stop]);
            }
        }
        if labels.iter().all(|&l| l == IGNORED) {
            if !options.drop_empty {
                let reason = if chosen.is_empty() {
                    "has no assistant message".to_string()
                } else {
                    format!(
                        "loses its answer to max_length={}",
                        options
                            .max_length
                            .map_or("None".to_string(), |m| m.to_string())
                    )
                };
                return Err(mask_error(format!(
                    "conversation {index} {reason}: it has no token to learn (pass on_empty='drop' to \
                     leave such conversations out, counted)"
                )));
            }
            out.dropped.push(index);
            continue;
        }
        out.kept.push(index);
        out.ids.push_row(ids[..length].iter().copied());
        out.labels.extend_from_slice(&labels);
    }
    Ok(out)
}

/// The answer's tokens from the whole conversation's character offsets, when the prompt and the
/// prompt plus answer are prefixes of its text and both edges fall in a token: `(span, settled)`.
/// `settled` when the span cannot differ from the token prefixes' (the first token starts at the
/// answer's first character, the last ends at its last and the next starts after it): otherwise
/// (a character split over several tokens at an edge) the prefixes are tokenized and the span is
/// only their fallback, as `boundaries="characters"` promises.
fn span_from_characters(
    rendered: &Renders,
    request: &Request,
    offsets: &[i64],
    in_bytes: bool,
    length: usize,
) -> Option<((usize, usize), bool)> {
    if !rendered.text.starts_with(&request.prompt) {
        return None;
    }
    // Positions in the offsets' unit: bytes (each token's span widened to whole characters, so
    // a character is in a token when its first byte is) or characters.
    let (prompt_chars, text_chars) = match in_bytes {
        true => (request.prompt.len(), rendered.text.len()),
        false => (request.prompt.chars().count(), rendered.chars),
    };
    let start_of = |token: usize| offsets[2 * token];
    let end_of = |token: usize| offsets[2 * token + 1];
    let clean_start = |start: usize| {
        start_of(start) == prompt_chars as i64
            && (start == 0 || end_of(start - 1) <= prompt_chars as i64)
    };
    match &request.answer {
        None => {
            if text_chars <= prompt_chars {
                return None;
            }
            let start = char_to_token(offsets, prompt_chars)?;
            Some(((start, length), clean_start(start)))
        }
        Some(answer) => {
            if !rendered.text.starts_with(answer.as_str()) {
                return None;
            }
            let (answer_chars, last_char) = match in_bytes {
                true => {
                    let last = answer.chars().next_back().map_or(1, char::len_utf8);
                    (answer.len(), answer.len().saturating_sub(last))
                }
                false => {
                    let count = answer.chars().count();
                    (count, count.saturating_sub(1))
                }
            };
            if answer_chars <= prompt_chars {
                return None;
            }
            let start = char_to_token(offsets, prompt_chars)?;
            let end = char_to_token(offsets, last_char)?;
            let clean_end = end_of(end) == answer_chars as i64
                && (end + 1 == length || start_of(end + 1) >= answer_chars as i64);
            Some(((start, end + 1), clean_start(start) && clean_end))
        }
    }
}

fn check_prefix(prefix: &[i64], ids: &[i64], index: usize, what: &str) -> Result<()> {
    if ids.len() >= prefix.len() && ids[..prefix.len()] == *prefix {
        return Ok(());
    }
    let position = prefix
        .iter()
        .zip(ids)
        .position(|(a, b)| a != b)
        .unwrap_or(prefix.len().min(ids.len()));
    Err(mask_error(format!(
        "conversation {index}: {what} does not tokenize as a prefix of the whole conversation (first \
         difference at token {position}): the template renders earlier turns differently once later ones \
         exist, or a token spans the edge of a turn, so the assistant spans cannot be found exactly; add \
         {{% generation %}} blocks to the template, pass boundaries='characters' (a token spanning the edge), \
         or use loss_on='all' / 'completion'"
    )))
}
