"""``Tokenizer.apply_chat_template``: transformers' chat templating, rendered in Rust.

The template is compiled once (cached per source) by the core's minijinja environment, set up as transformers sets
up Jinja2 (trim_blocks, lstrip_blocks, loop controls, Python's ``json.dumps`` as ``tojson``, ``raise_exception``,
``strftime_now``, Python's string and dict methods, ``{% generation %}`` blocks); conversations are rendered in
parallel with the GIL released, then tokenized by the tokenizer's own ``__call__`` (no special tokens added: the
template writes them), and ``assistant_masks`` are computed from the ``{% generation %}`` spans exactly as
transformers computes them (``char_to_token`` of each span's first and last character).
"""

from __future__ import annotations

import functools
import inspect
import logging
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from . import _core
from .errors import ChatMaskError, ChatTemplateError, InputTypeError, InvalidArgumentError, InvalidInputError

_logger = logging.getLogger("transformers.tokenization_utils_base")
_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")  # transformers' names of a message's reasoning
_REASONING_KEYS = frozenset(_REASONING_FIELDS)
_CONTINUE_TAG = "CONTINUE_FINAL_MESSAGE_TAG "
_GENERATION_TAG = re.compile(r"\{\%-?\s*generation\s*-?\%\}")
_warned_no_generation: set[str] = set()


@functools.lru_cache(maxsize=32)
def compiled(source: str) -> _core.ChatTemplate:
    return _core.ChatTemplate(source)


def get_chat_template(tokenizer: Any, chat_template: str | None = None, tools: list | None = None) -> str:
    """The template source to use: transformers' ``get_chat_template`` (a named template of a dict of templates,
    ``tool_use`` when tools are given, else ``default``; the argument, else the tokenizer's)."""
    templates = tokenizer.chat_template
    if isinstance(templates, dict):
        if chat_template is not None and chat_template in templates:
            return templates[chat_template]
        if chat_template is None:
            if tools is not None and "tool_use" in templates:
                return templates["tool_use"]
            if "default" in templates:
                return templates["default"]
            raise InvalidArgumentError(
                "This model has multiple chat templates with no default specified! Please either pass a chat "
                "template or the name of the template you wish to use to the `chat_template` argument. Available "
                f"template names are {sorted(templates.keys())}."
            )
        return chat_template
    if chat_template is None:
        if templates is None:
            raise InvalidArgumentError(
                "Cannot use chat template functions because tokenizer.chat_template is not set and no template "
                "argument was passed! For information about writing templates and setting the "
                "tokenizer.chat_template attribute, please see the documentation at "
                "https://huggingface.co/docs/transformers/main/en/chat_templating"
            )
        return templates
    return chat_template


def _tool_schemas(tools: list | None) -> list | None:
    if tools is None:
        return None
    schemas = []
    for tool in tools:
        if isinstance(tool, dict):
            schemas.append(tool)
        elif inspect.isfunction(tool) or inspect.ismethod(tool):
            from transformers.utils import get_json_schema  # the docstring parser users' tools are written for

            schemas.append(get_json_schema(tool))
        else:
            raise InvalidInputError(
                "Tools should either be a JSON schema, or a callable function with type hints "
                "and a docstring suitable for auto-conversion to a schema."
            )
    return schemas


def _alias_reasoning_fields(chat: list[dict]) -> list[dict]:
    aliased = []
    for message in chat:
        reasoning = next((message[key] for key in _REASONING_FIELDS if message.get(key) is not None), None)
        if reasoning is not None:
            message = {"thinking": reasoning, **message, "reasoning_content": reasoning}
        aliased.append(message)
    return aliased


def render(
    conversations: list[list[dict]],
    template: str,
    *,
    tools: list | None,
    documents: list | None,
    add_generation_prompt: bool,
    continue_final_message: bool | str,
    variables: dict[str, Any],
) -> tuple[list[str], list[list[tuple[int, int]]]]:
    """transformers' ``render_jinja_template``: the rendered conversations and the spans of their
    ``{% generation %}`` blocks."""
    tool_schemas = _tool_schemas(tools)
    if documents is not None:
        for document in documents:
            if not isinstance(document, dict):
                raise InputTypeError("Documents should be a list of dicts with 'title' and 'text' keys!")
    contexts, finals = [], []
    for chat in conversations:
        chat = [dict(message) for message in getattr(chat, "messages", chat)]
        chat = _alias_reasoning_fields(chat)
        final = None
        if continue_final_message:
            field = continue_final_message if isinstance(continue_final_message, str) else "content"
            if not chat:
                raise InvalidInputError("continue_final_message is set but the conversation is empty!")
            final = chat[-1].get(field)
            if final is None:
                raise InvalidInputError(
                    f'continue_final_message is set but the final message has no "{field}" to continue!'
                )
            fields = [field]
            if field in _REASONING_FIELDS:
                fields = [name for name in _REASONING_FIELDS if chat[-1].get(name) == final]
            if not any(name in template for name in fields):
                raise InvalidInputError(
                    f'continue_final_message is set to "{field}" but this is not an accepted field in the chat_template'
                )
            if isinstance(final, (list, tuple)):
                final = list(final)
                for index in reversed(range(len(final))):
                    block = final[index]
                    if isinstance(block, dict) and "text" in block:
                        final[index] = {**block, "text": block["text"] + _CONTINUE_TAG}
                        chat[-1] = {**chat[-1], field: final}
                        final = block["text"]
                        break
                else:
                    raise InvalidInputError(
                        "continue_final_message is set but we could not find any text to continue in the final message!"
                    )
            else:
                chat[-1] = {**chat[-1], **{name: chat[-1][name] + _CONTINUE_TAG for name in fields}}
        contexts.append({
            **variables, "messages": chat, "tools": tool_schemas, "documents": documents,
            "add_generation_prompt": add_generation_prompt,
        })  # fmt: skip
        finals.append(final)
    results = compiled(template).render_batch(contexts)
    texts, spans = [], []
    for (text, generation), final in zip(results, finals):
        if continue_final_message:
            if final.strip() not in text or _CONTINUE_TAG.strip() not in text:
                raise InvalidInputError(
                    "continue_final_message is set but the final message does not appear in the chat after "
                    "applying the chat template! This can happen if the chat template deletes portions of "
                    "the final message. Please verify the chat template and final message in your chat to "
                    "ensure they are compatible."
                    f"Final message to continue: {final.strip()}\nRendered chat:\n{text}"
                )
            at = text.rindex(_CONTINUE_TAG.strip())
            text = text[:at] if text[at : at + len(_CONTINUE_TAG)] == _CONTINUE_TAG else text[:at].rstrip()
        texts.append(text)
        spans.append([tuple(span) for span in generation])
    return texts, spans


def apply_chat_template(
    tokenizer: Any,
    conversation: Any,
    tools: list[dict | Callable] | None = None,
    documents: list[dict[str, str]] | None = None,
    chat_template: str | None = None,
    add_generation_prompt: bool = False,
    continue_final_message: bool | str = False,
    tokenize: bool = True,
    sanitize_control_tokens: bool = False,
    padding: bool | str = False,
    truncation: bool = False,
    max_length: int | None = None,
    return_tensors: str | None = None,
    return_dict: bool = True,
    return_assistant_tokens_mask: bool = False,
    tokenizer_kwargs: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Any:
    """transformers' ``apply_chat_template`` (same arguments, defaults, errors and results)."""
    if sanitize_control_tokens:
        raise InvalidArgumentError(
            "sanitize_control_tokens=True is not supported by ferrotune yet: control tokens written in messages are "
            "encoded as the tokens they spell (transformers' default)"
        )
    if not tokenize:
        return_dict = False
    if return_assistant_tokens_mask and not (return_dict and tokenize):
        raise InvalidArgumentError(
            "`return_assistant_tokens_mask=True` requires `return_dict=True` and `tokenize=True`"
        )
    tokenizer_kwargs = tokenizer_kwargs or {}
    template = get_chat_template(tokenizer, chat_template, tools)
    if isinstance(conversation, (list, tuple)) and len(conversation) == 0:
        raise InvalidInputError("Cannot apply chat template to an empty conversation. Provide at least one message.")
    batched = isinstance(conversation, (list, tuple)) and (
        isinstance(conversation[0], (list, tuple)) or hasattr(conversation[0], "messages")
    )
    conversations = list(conversation) if batched else [conversation]
    normalised = []
    for index, chat in enumerate(conversations):
        messages = getattr(chat, "messages", chat)
        for message in messages:
            if not isinstance(message, dict):
                raise InputTypeError(f"conversation {index}: chat messages should be dicts, but got {message!r}.")
        normalised.append([{k: v for k, v in message.items() if v is not None} for message in messages])
    if continue_final_message:
        if add_generation_prompt:
            raise InvalidArgumentError(
                "continue_final_message and add_generation_prompt are not compatible. Use continue_final_message when "
                "you want the model to continue the final message, and add_generation_prompt when you want to add a "
                "header that will prompt it to start a new assistant message instead."
            )
        if return_assistant_tokens_mask:
            raise InvalidArgumentError("continue_final_message is not compatible with return_assistant_tokens_mask.")
    if return_assistant_tokens_mask and not _GENERATION_TAG.search(template) and template not in _warned_no_generation:
        _warned_no_generation.add(template)
        _logger.warning(
            "return_assistant_tokens_mask==True but chat template does not contain `{% generation %}` keyword."
        )
    variables = {**tokenizer.special_tokens_map, **kwargs}  # kwargs win over special tokens, as in transformers
    texts, spans = render(
        normalised, template, tools=tools, documents=documents, add_generation_prompt=add_generation_prompt,
        continue_final_message=continue_final_message, variables=variables,
    )  # fmt: skip
    rendered: Any = texts if batched else texts[0]
    if not tokenize:
        return rendered
    out = tokenizer(
        rendered, padding=padding, truncation=truncation, max_length=max_length, add_special_tokens=False,
        return_tensors=return_tensors, **tokenizer_kwargs,
    )  # fmt: skip
    if not return_dict:
        return out["input_ids"]
    if return_assistant_tokens_mask:
        input_ids = out["input_ids"] if batched or return_tensors else [out["input_ids"]]
        masks = []
        for i in range(len(input_ids)):
            mask = [0] * len(input_ids[i])
            for start, end in spans[i]:
                start_token = out.char_to_token(i, start)
                end_token = out.char_to_token(i, end - 1)
                if start_token is None:
                    break
                for position in range(start_token, end_token + 1 if end_token else len(input_ids[i])):
                    mask[position] = 1
            masks.append(mask)
        out["assistant_masks"] = masks if batched or return_tensors else masks[0]
        if return_tensors:
            out.convert_to_tensors(tensor_type=return_tensors)
    return out


# --------------------------------------------------------------------------------------------------
# Loss masks for supervised fine-tuning

LOSS_ON = ("assistant", "last_assistant", "all", "completion")


def tokenize_conversations(
    tokenizer: Any,
    conversations: list[list[dict]],
    *,
    completions: list[list[dict]] | None = None,
    loss_on: str = "assistant",
    max_length: int | None = None,
    on_empty: str = "error",
    chat_template: str | None = None,
    boundaries: str = "tokens",
    **template_kwargs: Any,
) -> dict[str, Any]:
    """Token ids and labels of conversations for supervised fine-tuning: ``labels`` are the ids where the loss
    applies and -100 elsewhere.

    ``loss_on``: ``"assistant"`` (every assistant message: its content and the end-of-turn tokens the template
    writes after it), ``"last_assistant"`` (the last one only), ``"all"`` (every token), ``"completion"``
    (``conversations`` are prompts and ``completions`` their answers: the loss on the answers only).

    Where the template has ``{% generation %}`` blocks, the assistant spans are those blocks (transformers'
    ``assistant_masks``). Otherwise they come from the message structure: for an assistant message ``k``, the
    conversation up to ``k`` rendered with ``add_generation_prompt=True`` gives the prompt and the conversation
    through ``k`` the prompt plus the answer; both token sequences must be prefixes of the whole conversation's
    tokens (a template that renders earlier turns differently once later ones exist fails here, with an error
    naming the conversation, never with a wrong mask), and the answer's tokens are those between the two.
    ``boundaries="characters"`` relaxes this where a token spans the edge of the answer (SmolLM2's ``assistant\n``
    followed by an answer starting with ``\n\n`` is tokenized with a ``\n\n\n`` token): the rendered prompt and
    prompt plus answer must then only be prefixes of the conversation's TEXT, and the answer's tokens are those from
    the one holding its first character to the one holding its last, as transformers computes ``assistant_masks``
    from ``{% generation %}`` spans (used only where the token prefixes do not hold). It is also the
    fast way: each conversation is tokenized once, unless a character at the edge of an answer is split over several
    tokens (an emoji, a CJK character in byte-level BPE), where the prefixes are tokenized to decide as above.

    Everything runs in the core (rendering, tokenization, spans, labels), in parallel with the GIL released.
    Conversations longer than ``max_length`` tokens are cut (right). A conversation left with no token to learn
    (no assistant message, or all of it cut away) is an error (``on_empty="error"``) or is left out
    (``on_empty="drop"``), counted in ``dropped`` (its index in ``dropped_indices``) — never trained on silently.
    Returns ``{"input_ids": [...], "labels": [...], "dropped": n, "dropped_indices": [...], "kept": [...]}``."""
    rows, kept, dropped = encode_conversations(
        tokenizer, conversations, completions=completions, loss_on=loss_on, max_length=max_length,
        on_empty=on_empty, chat_template=chat_template, boundaries=boundaries, **template_kwargs,
    )  # fmt: skip
    ids, starts, _ = rows.ragged()
    bounds = starts[1:-1]
    return {
        "input_ids": [row.tolist() for row in np.split(ids, bounds)] if len(kept) else [],
        "labels": [row.tolist() for row in np.split(rows.labels(), bounds)] if len(kept) else [],
        "kept": kept.tolist(), "dropped": len(dropped), "dropped_indices": dropped.tolist(),
    }  # fmt: skip


# Arguments of encode_conversations that template variables cannot take.
_CONVERSATION_OPTIONS = frozenset({
    "completions", "loss_on", "max_length", "on_empty", "chat_template", "boundaries", "tokenizer", "conversations",
})  # fmt: skip


def conversation_options(loss_on: str | None, prompt_completion: bool, on_empty: str, boundaries: str,
                         chat_template_kwargs: Any) -> tuple[str, dict[str, Any]]:  # fmt: skip
    """The loss mode (by default "completion" for prompt/completion data, else "assistant") and the template
    variables of a source of conversations (the loader's, tokenize_dataset's), checked."""
    loss_on = loss_on or ("completion" if prompt_completion else "assistant")
    if loss_on not in LOSS_ON:
        raise InvalidArgumentError(f"loss_on must be one of {', '.join(LOSS_ON)}, not {loss_on!r}")
    if (loss_on == "completion") != prompt_completion:
        raise InvalidArgumentError("loss_on='completion' is for prompt_column + completion_column, and only")
    if on_empty not in ("error", "drop"):
        raise InvalidArgumentError(f"on_empty must be 'error' or 'drop', not {on_empty!r}")
    if boundaries not in ("tokens", "characters"):
        raise InvalidArgumentError(f"boundaries must be 'tokens' or 'characters', not {boundaries!r}")
    if chat_template_kwargs is not None and not isinstance(chat_template_kwargs, dict):
        raise InvalidArgumentError(f"chat_template_kwargs must be a dict, got {type(chat_template_kwargs).__name__}")
    clashing = sorted(set(chat_template_kwargs or {}) & _CONVERSATION_OPTIONS)
    if clashing:
        raise InvalidArgumentError(
            f"chat_template_kwargs {clashing} are options of their own here: pass them as arguments"
        )
    return loss_on, dict(chat_template_kwargs or {})


def encode_conversations(
    tokenizer: Any,
    conversations: list[list[dict]],
    *,
    completions: list[list[dict]] | None = None,
    loss_on: str = "assistant",
    max_length: int | None = None,
    on_empty: str = "error",
    chat_template: str | None = None,
    boundaries: str = "tokens",
    **template_kwargs: Any,
) -> tuple[Any, np.ndarray, np.ndarray]:
    """:func:`tokenize_conversations` as the core's rows: ``(TokenRows with labels, kept, dropped)``, no Python
    list per token (what the streaming loader uses)."""
    if loss_on not in LOSS_ON:
        raise InvalidArgumentError(f"loss_on must be one of {', '.join(LOSS_ON)}, not {loss_on!r}")
    if on_empty not in ("error", "drop"):
        raise InvalidArgumentError(f"on_empty must be 'error' or 'drop', not {on_empty!r}")
    if boundaries not in ("tokens", "characters"):
        raise InvalidArgumentError(f"boundaries must be 'tokens' or 'characters', not {boundaries!r}")
    if (completions is None) != (loss_on != "completion"):
        raise InvalidArgumentError("completions are given with loss_on='completion', and only then")
    if completions is not None and len(completions) != len(conversations):
        raise InvalidInputError(f"{len(conversations)} prompts but {len(completions)} completions")
    from .tokenizer import Tokenizer

    if not isinstance(tokenizer, Tokenizer):  # a transformers tokenizer: its Rust pipeline and settings
        tokenizer = Tokenizer.from_transformers(tokenizer)
    template = get_chat_template(tokenizer, chat_template, template_kwargs.get("tools"))
    variables = {**tokenizer.special_tokens_map, **template_kwargs}
    tools, documents = variables.pop("tools", None), variables.pop("documents", None)
    if documents is not None and not all(isinstance(document, dict) for document in documents):
        raise InputTypeError("Documents should be a list of dicts with 'title' and 'text' keys!")
    variables.update(tools=_tool_schemas(tools), documents=documents)
    whole = []
    for index, conversation in enumerate(conversations):
        messages = list(conversation) + (list(completions[index]) if completions is not None else [])
        if not messages or not all(isinstance(m, dict) for m in messages):
            raise InputTypeError(f"conversation {index}: a conversation is a non-empty list of message dicts")
        # transformers' render: the message dicts as given (None fields left out), reasoning fields aliased.
        if any(None in m.values() or not _REASONING_KEYS.isdisjoint(m) for m in messages):
            messages = _alias_reasoning_fields([{k: v for k, v in m.items() if v is not None} for m in messages])
        whole.append(messages)
    prompt_messages = [len(c) for c in conversations] if completions is not None else None
    return _core.TokenRows.encode_conversations(
        compiled(template), tokenizer._core, whole, prompt_messages=prompt_messages, variables=variables,
        loss_on=loss_on, boundaries=boundaries, max_length=max_length, drop_empty=on_empty == "drop",
    )  # fmt: skip


def _conversation_column(table: Any, name: str, role: str, loader: Any, segments: Any) -> list[list[dict]]:
    """Column ``name``'s conversations: lists of message dicts, or strings read as one message of ``role``.

    ``loader._describe(segments, row)`` names a row in errors (the streaming loader: its file and line;
    ``tokenize_dataset``: the dataset row)."""
    conversations = []
    for row, value in enumerate(table.column(name).to_pylist()):
        if isinstance(value, str):
            conversations.append([{"role": role, "content": value}])
        elif isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
            conversations.append(value)
        else:
            raise InputTypeError(
                f"{loader._describe(segments, row)}: column '{name}' must hold a non-empty list of messages "
                f"({{'role': ..., 'content': ...}}) or a string, found {type(value).__name__}: {str(value)[:80]!r}"
            )
    return conversations


__all__ = [
    "LOSS_ON", "ChatMaskError", "ChatTemplateError", "apply_chat_template", "conversation_options",
    "encode_conversations", "get_chat_template", "render", "tokenize_conversations",
]  # fmt: skip
