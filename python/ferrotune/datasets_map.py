"""``tokenize_dataset``: the fast equivalent of ``dataset.map(lambda e: tok(e["text"], ...), batched=True)``.

The texts are read from the dataset's Arrow table, tokenized in Rust straight from the Arrow
buffers, and written as Arrow list columns with the types ``datasets.map`` gives them
(``input_ids`` int32, ``token_type_ids`` / ``attention_mask`` int8): no Python object per example
or token. Datasets backed by cache files are written to a cache file beside them, in bounded
memory, as ``map`` does.

Conversations (``messages_column``, or ``prompt_column`` + ``completion_column``) are rendered with the chat
template, tokenized and labelled in the core as the ``StreamingLoader`` does it (:func:`ferrotune.chat.
encode_conversations`): the result has ``input_ids``, ``attention_mask`` and ``labels`` (int64, -100 outside the
loss), ready for ``DataCollatorForCompletionOnlyLM``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from . import _core
from .errors import ChatTemplateError, ColumnNotFoundError, InputTypeError, InvalidArgumentError, InvalidInputError
from .padding import known_max_length
from .sources import arrow_column
from .tokenizer import Tokenizer

__all__ = ["tokenize_dataset"]

_logger = logging.getLogger(__name__)

# The integer types `datasets` picks for tokenizer outputs (its OptimizedTypedSequence); labels, not among them, are
# int64 lists (what `map` writes for Python ints).
_OUTPUT_TYPES = {"input_ids": "int32", "token_type_ids": "int8", "attention_mask": "int8", "labels": "int64"}
_CONVERSATION_OUTPUTS = ["input_ids", "attention_mask", "labels"]


def _list_array(values: np.ndarray, starts: np.ndarray, value_type: str) -> Any:
    import pyarrow as pa

    offsets = pa.array(starts.astype(np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(values.astype(value_type)))


class _DatasetRows:
    """Names a row of a chunk by its index in the dataset (the ``_describe`` the conversation readers call)."""

    def __init__(self, start: int) -> None:
        self.start = start

    def _describe(self, segments: Any, row: int) -> str:
        return f"dataset row {self.start + row}"


def tokenize_dataset(
    dataset: Any,
    tokenizer: Any,
    text_column: str | None = None,
    text_pair_column: str | None = None,
    *,
    max_length: int | None = None,
    truncation: bool | str = True,
    add_special_tokens: bool = True,
    batch_size: int = 10_000,
    num_proc: int | None = None,
    keep_columns: list[str] | None = None,
    cache_file_name: str | os.PathLike[str] | None = None,
    progress: bool = True,
    messages_column: str | None = None,
    prompt_column: str | None = None,
    completion_column: str | None = None,
    chat_template: str | None = None,
    chat_template_kwargs: dict[str, Any] | None = None,
    loss_on: str | None = None,
    on_empty: str = "error",
    boundaries: str = "characters",
) -> Any:
    """Tokenizes a ``datasets.Dataset``; returns a ``datasets.Dataset`` equal to what
    ``dataset.map(lambda e: tokenizer(e[text_column], e[text_pair_column], truncation=truncation,
    max_length=max_length), batched=True)`` returns (same columns, types and values).

    ``keep_columns``: the original columns to keep (default: all, as ``map`` keeps them).
    ``num_proc`` is accepted for ``map``'s signature; ferrotune already uses every core in one
    process (set ``RAYON_NUM_THREADS`` to limit it). ``batch_size`` bounds the rows held at once.

    Conversations, instead of ``text_column`` (give exactly one of ``text_column``, ``messages_column``,
    ``prompt_column`` + ``completion_column``): ``messages_column`` holds OpenAI-style lists of ``{role, content}``;
    ``prompt_column`` / ``completion_column`` each hold a list of messages or a string (a user prompt / an assistant
    answer). Each is rendered with the chat template (``chat_template``: a source or a name of the tokenizer's;
    ``chat_template_kwargs``: the template's extra variables, ``tools``, ``documents``), tokenized without added
    special tokens (the template writes them) and labelled as :func:`ferrotune.chat.tokenize_conversations`
    labels it (``loss_on``: "assistant" by default, "completion" for prompt/completion data, "last_assistant",
    "all"; ``boundaries``: "characters" by default, the masks transformers' ``{% generation %}`` blocks give).
    ``truncation`` / ``max_length`` cut conversations on the right as for text (``max_length``, else the
    tokenizer's ``model_max_length``; ``truncation=False`` keeps them whole). The result holds the kept original
    columns, then ``input_ids`` (int32), ``attention_mask`` (int8) and ``labels`` (int64 lists, -100 outside the
    loss), the features ``map`` writes for the same lists. A conversation left with nothing to learn (no assistant
    turn, or its answer cut away) is an error naming its dataset row (``on_empty="error"``), or its row is left
    out of the result (``on_empty="drop"``): the number left out and their first rows are logged as a warning
    (logger ``ferrotune.datasets_map``) and shown on the progress bar. Errors name the dataset row.
    """
    import datasets
    import pyarrow as pa

    if not isinstance(dataset, datasets.Dataset):
        raise InvalidArgumentError(f"tokenize_dataset takes a datasets.Dataset, got {type(dataset).__name__}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be a positive integer, got {batch_size!r}")
    del num_proc  # one process, all cores (see the docstring)
    conversational = messages_column is not None or prompt_column is not None or completion_column is not None
    if sum(c is not None for c in (text_column, messages_column, prompt_column)) != 1 or (
        (prompt_column is None) != (completion_column is None)
    ):
        raise InvalidArgumentError(
            "give exactly one of text_column (raw text), messages_column (conversations) and prompt_column + "
            "completion_column (prompts and their completions)"
        )
    if not isinstance(tokenizer, Tokenizer):
        tokenizer = Tokenizer.from_transformers(tokenizer)
    template = None
    if conversational:
        from .chat import conversation_options, get_chat_template

        if text_pair_column is not None:
            raise InvalidArgumentError("text_pair_column cannot be used with conversations")
        loss_on, chat_template_kwargs = conversation_options(
            loss_on, prompt_column is not None, on_empty, boundaries, chat_template_kwargs
        )
        if truncation in ("only_first", "only_second"):
            raise InvalidArgumentError(f"truncation={truncation!r} is for text pairs, not conversations")
        template = get_chat_template(tokenizer, chat_template, chat_template_kwargs.get("tools"))
    elif (chat_template, chat_template_kwargs, loss_on, on_empty, boundaries) != (None, None, None, "error",
                                                                                   "characters"):  # fmt: skip
        raise InvalidArgumentError(
            "chat_template, chat_template_kwargs, loss_on, on_empty and boundaries are for conversations"
        )
    for option, column in (
        ("text_column", text_column),
        ("text_pair_column", text_pair_column),
        ("messages_column", messages_column),
        ("prompt_column", prompt_column),
        ("completion_column", completion_column),
    ):
        if column is not None and column not in dataset.column_names:
            raise ColumnNotFoundError(
                f"{option}={column!r} is not a column of the dataset; its columns are {dataset.column_names}"
            )
    kept = list(dataset.column_names) if keep_columns is None else list(keep_columns)
    unknown = [c for c in kept if c not in dataset.column_names]
    if unknown:
        raise ColumnNotFoundError(f"keep_columns {unknown} are not columns of the dataset: {dataset.column_names}")
    resolved_max_length = _truncation_length(tokenizer, truncation, max_length)
    strategy = truncation if isinstance(truncation, str) and truncation != "do_not_truncate" else "longest_first"
    return_type_ids = "token_type_ids" in tokenizer.model_input_names
    if conversational:
        outputs = list(_CONVERSATION_OUTPUTS)
    else:
        outputs = ["input_ids"] + (["token_type_ids"] if return_type_ids else []) + ["attention_mask"]
    kept = [name for name in kept if name not in outputs]  # replaced by the new columns, as in map
    if dataset._indices is not None:
        dataset = dataset.flatten_indices()
    table = dataset.data.table
    dropped_rows: list[int] = []

    def text_chunk(chunk: Any) -> Any:
        rows = _core.TokenRows.encode(
            tokenizer._core,
            arrow_column(chunk, text_column, "text"),
            arrow_column(chunk, text_pair_column, "text") if text_pair_column else None,
            text_column=text_column,
            pair_column=text_pair_column or "text_pair",
            max_length=resolved_max_length,
            truncation_strategy=strategy,
            truncation_side=tokenizer.truncation_side,
            add_special_tokens=add_special_tokens,
            return_token_type_ids=return_type_ids,
        )
        ids, starts, type_ids = rows.ragged()
        columns = {name: chunk.column(name) for name in kept}
        columns["input_ids"] = _list_array(ids, starts, _OUTPUT_TYPES["input_ids"])
        if type_ids is not None:
            columns["token_type_ids"] = _list_array(type_ids, starts, _OUTPUT_TYPES["token_type_ids"])
        columns["attention_mask"] = _list_array(np.ones_like(ids), starts, _OUTPUT_TYPES["attention_mask"])
        return pa.table(columns)

    def conversation_chunk(chunk: Any, start: int) -> Any:
        from .chat import _conversation_column, encode_conversations

        rows_of = _DatasetRows(start)
        if messages_column is not None:
            conversations = _conversation_column(chunk, messages_column, "user", rows_of, None)
            completions = None
        else:
            conversations = _conversation_column(chunk, prompt_column, "user", rows_of, None)
            completions = _conversation_column(chunk, completion_column, "assistant", rows_of, None)
        try:
            rows, kept_rows, dropped = encode_conversations(
                tokenizer, conversations, completions=completions, loss_on=loss_on, max_length=resolved_max_length,
                on_empty=on_empty, chat_template=template, boundaries=boundaries, **chat_template_kwargs,
            )  # fmt: skip
        except (ChatTemplateError, InvalidInputError, InputTypeError) as error:
            found = re.match(r"conversation (\d+)(.*)", str(error), flags=re.S)
            if not found:
                raise
            # "conversation 3 has no ..." -> "dataset row 10003: the conversation has no ..."
            where, rest = rows_of._describe(None, int(found.group(1))), found.group(2)
            raise type(error)(
                f"{where}: {rest.lstrip(': ')}" if rest.startswith(":") else f"{where}: the conversation{rest}"
            ) from error
        dropped_rows.extend(int(row) + start for row in dropped)
        ids, starts, _ = rows.ragged()
        originals = chunk.select(kept)
        if len(dropped):
            originals = originals.take(pa.array(kept_rows, type=pa.int64()))
        columns = {name: originals.column(name) for name in kept}
        columns["input_ids"] = _list_array(ids, starts, _OUTPUT_TYPES["input_ids"])
        columns["attention_mask"] = _list_array(np.ones_like(ids), starts, _OUTPUT_TYPES["attention_mask"])
        columns["labels"] = _list_array(rows.labels(), starts, _OUTPUT_TYPES["labels"])
        return pa.table(columns)

    def tokenized_chunks() -> Any:
        for start in range(0, table.num_rows, batch_size):
            chunk = table.slice(start, batch_size)
            yield conversation_chunk(chunk, start) if conversational else text_chunk(chunk)

    def with_progress(chunks: Any) -> Any:
        if not progress or table.num_rows <= batch_size:
            yield from chunks
            return
        from tqdm.auto import tqdm

        with tqdm(total=-(-table.num_rows // batch_size), desc="Tokenizing (ferrotune)", unit="batch") as bar:
            for chunk in chunks:
                if dropped_rows:
                    bar.set_postfix(dropped=len(dropped_rows), refresh=False)
                bar.update(1)
                yield chunk

    def report_dropped() -> None:
        if dropped_rows:
            shown = ", ".join(map(str, dropped_rows[:10])) + (", ..." if len(dropped_rows) > 10 else "")
            _logger.warning(
                "tokenize_dataset: %d of %d conversations had nothing to learn and were left out (on_empty='drop'): "
                "dataset rows %s",
                len(dropped_rows), table.num_rows, shown,
            )  # fmt: skip

    chunks = with_progress(tokenized_chunks())
    if not dataset.cache_files and cache_file_name is None:
        tables = list(chunks)
        report_dropped()
        result = pa.concat_tables(tables) if tables else _empty(kept, dataset, outputs)
        return datasets.Dataset(_with_features(result, dataset, kept, outputs))
    if cache_file_name is None:
        settings: tuple[Any, ...] = (
            dataset._fingerprint,
            tokenizer._core.to_str(),
            text_column,
            text_pair_column,
            resolved_max_length,
            strategy,
            add_special_tokens,
            kept,
        )
        if conversational:
            settings += (
                "conversations", messages_column, prompt_column, completion_column, template,
                repr(sorted(chat_template_kwargs.items())), sorted(tokenizer.special_tokens_map.items()), loss_on,
                on_empty, boundaries,
            )  # fmt: skip
        key = hashlib.sha256(repr(settings).encode()).hexdigest()[:16]
        cache_file_name = Path(dataset.cache_files[0]["filename"]).parent / f"cache-ferrotune-{key}.arrow"
    path = Path(cache_file_name)
    writer = None
    try:
        for chunk in chunks:
            chunk = _with_features(chunk, dataset, kept, outputs)
            if writer is None:
                writer = pa.ipc.new_stream(str(path), chunk.schema)
            writer.write_table(chunk)
    except BaseException:
        if writer is not None:
            writer.close()
            writer = None
            path.unlink(missing_ok=True)  # no half-written cache file left behind
        raise
    finally:
        if writer is not None:
            writer.close()
    report_dropped()
    if writer is None:
        return datasets.Dataset(_with_features(_empty(kept, dataset, outputs), dataset, kept, outputs))
    return datasets.Dataset.from_file(str(path))


def _truncation_length(tokenizer: Tokenizer, truncation: bool | str, max_length: int | None) -> int | None:
    """transformers' rule: truncate to max_length, else to model_max_length when the tokenizer has one."""
    if truncation in (False, None, "do_not_truncate"):
        return None
    if truncation is not True and truncation not in ("longest_first", "only_first", "only_second"):
        raise InvalidArgumentError(f"unknown truncation strategy {truncation!r}")
    if max_length is not None:
        return max_length
    return known_max_length(tokenizer.model_max_length)


def _empty(kept: list[str], dataset: Any, outputs: list[str]) -> Any:
    import pyarrow as pa

    columns = {name: dataset.data.table.column(name).slice(0, 0) for name in kept}
    for name in outputs:
        columns[name] = pa.array([], type=pa.list_(pa.from_numpy_dtype(np.dtype(_OUTPUT_TYPES[name]))))
    return pa.table(columns)


def _with_features(table: Any, dataset: Any, kept: list[str], outputs: list[str]) -> Any:
    """Attaches the `datasets` features metadata ``map`` would write (kept columns + the new ones)."""
    import datasets

    features = {name: dataset.features[name] for name in kept}
    for name in outputs:
        features[name] = datasets.List(datasets.Value(_OUTPUT_TYPES[name]))
    schema = datasets.Features(features).arrow_schema
    return table.select(list(features)).cast(schema)
