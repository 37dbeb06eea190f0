"""``tokenize_dataset``: the fast equivalent of ``dataset.map(lambda e: tok(e["text"], ...), batched=True)``.

The texts are read from the dataset's Arrow table, tokenized in Rust straight from the Arrow
buffers, and written as Arrow list columns with the types ``datasets.map`` gives them
(``input_ids`` int32, ``token_type_ids`` / ``attention_mask`` int8): no Python object per example
or token. Datasets backed by cache files are written to a cache file beside them, in bounded
memory, as ``map`` does.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from . import _core
from .errors import ColumnNotFoundError, InvalidArgumentError
from .padding import known_max_length
from .sources import arrow_column
from .tokenizer import Tokenizer

__all__ = ["tokenize_dataset"]

# The integer types `datasets` picks for tokenizer outputs (its OptimizedTypedSequence).
_OUTPUT_TYPES = {"input_ids": "int32", "token_type_ids": "int8", "attention_mask": "int8"}


def _list_array(values: np.ndarray, starts: np.ndarray, value_type: str) -> Any:
    import pyarrow as pa

    offsets = pa.array(starts.astype(np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(values.astype(value_type)))


def tokenize_dataset(
    dataset: Any,
    tokenizer: Any,
    text_column: str,
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
) -> Any:
    """Tokenizes a ``datasets.Dataset``; returns a ``datasets.Dataset`` equal to what
    ``dataset.map(lambda e: tokenizer(e[text_column], e[text_pair_column], truncation=truncation,
    max_length=max_length), batched=True)`` returns (same columns, types and values).

    ``keep_columns``: the original columns to keep (default: all, as ``map`` keeps them).
    ``num_proc`` is accepted for ``map``'s signature; ferrotune already uses every core in one
    process (set ``RAYON_NUM_THREADS`` to limit it). ``batch_size`` bounds the rows held at once.
    """
    import datasets
    import pyarrow as pa

    if not isinstance(dataset, datasets.Dataset):
        raise InvalidArgumentError(f"tokenize_dataset takes a datasets.Dataset, got {type(dataset).__name__}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be a positive integer, got {batch_size!r}")
    del num_proc  # one process, all cores (see the docstring)
    if not isinstance(tokenizer, Tokenizer):
        tokenizer = Tokenizer.from_transformers(tokenizer)
    for option, column in (("text_column", text_column), ("text_pair_column", text_pair_column)):
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
    if dataset._indices is not None:
        dataset = dataset.flatten_indices()
    table = dataset.data.table

    def tokenized_chunks() -> Any:
        for start in range(0, table.num_rows, batch_size):
            chunk = table.slice(start, batch_size)
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
            columns = {name: chunk.column(name) for name in kept if name not in _OUTPUT_TYPES}
            columns["input_ids"] = _list_array(ids, starts, _OUTPUT_TYPES["input_ids"])
            if type_ids is not None:
                columns["token_type_ids"] = _list_array(type_ids, starts, _OUTPUT_TYPES["token_type_ids"])
            columns["attention_mask"] = _list_array(np.ones_like(ids), starts, _OUTPUT_TYPES["attention_mask"])
            yield pa.table(columns)

    chunks = tokenized_chunks()
    if progress and table.num_rows > batch_size:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, total=-(-table.num_rows // batch_size), desc="Tokenizing (ferrotune)", unit="batch")

    if not dataset.cache_files and cache_file_name is None:
        tables = list(chunks)
        result = pa.concat_tables(tables) if tables else _empty(kept, dataset, return_type_ids)
        return datasets.Dataset(_with_features(result, dataset, kept, return_type_ids))
    if cache_file_name is None:
        key = hashlib.sha256(
            repr(
                (
                    dataset._fingerprint,
                    tokenizer._core.to_str(),
                    text_column,
                    text_pair_column,
                    resolved_max_length,
                    strategy,
                    add_special_tokens,
                    kept,
                )
            ).encode()
        ).hexdigest()[:16]
        cache_file_name = Path(dataset.cache_files[0]["filename"]).parent / f"cache-ferrotune-{key}.arrow"
    path = Path(cache_file_name)
    writer = None
    try:
        for chunk in chunks:
            chunk = _with_features(chunk, dataset, kept, return_type_ids)
            if writer is None:
                writer = pa.ipc.new_stream(str(path), chunk.schema)
            writer.write_table(chunk)
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        return datasets.Dataset(_with_features(_empty(kept, dataset, return_type_ids), dataset, kept, return_type_ids))
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


def _empty(kept: list[str], dataset: Any, return_type_ids: bool) -> Any:
    import pyarrow as pa

    columns = {name: dataset.data.table.column(name).slice(0, 0) for name in kept if name not in _OUTPUT_TYPES}
    names = ["input_ids"] + (["token_type_ids"] if return_type_ids else []) + ["attention_mask"]
    for name in names:
        columns[name] = pa.array([], type=pa.list_(pa.from_numpy_dtype(np.dtype(_OUTPUT_TYPES[name]))))
    return pa.table(columns)


def _with_features(table: Any, dataset: Any, kept: list[str], return_type_ids: bool) -> Any:
    """Attaches the `datasets` features metadata ``map`` would write (kept columns + the new ones)."""
    import datasets

    features = {name: dataset.features[name] for name in kept if name not in _OUTPUT_TYPES}
    for name in ["input_ids"] + (["token_type_ids"] if return_type_ids else []) + ["attention_mask"]:
        features[name] = datasets.List(datasets.Value(_OUTPUT_TYPES[name]))
    schema = datasets.Features(features).arrow_schema
    return table.select(list(features)).cast(schema)
