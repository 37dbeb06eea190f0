"""Training data: read the files, check columns and labels, and turn examples into batches.

Everything that can be wrong with the data is found in :func:`load_task_data`, before any model is loaded. The
files are read by :class:`ferrotune.sources.DataFiles` (the streaming loader's sources, read whole).
Training batches come from ONE function, :func:`build_train_loader`; evaluation batches are length-sorted
(:func:`build_eval_batches`) so that almost nothing is padded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import (
    ColumnNotFoundError,
    ConfigError,
    DataError,
    DataSourceError,
    DataSourceNotFoundError,
    InvalidArgumentError,
    LabelError,
)
from ..sources import CsvOptions, DataFiles
from .config import TrainConfig
from .tasks import CAUSAL_LM, CLASSIFICATION, GLUE_TASKS, REGRESSION, default_metrics

LABEL_SENTINEL = -100  # positions the causal-LM loss ignores (transformers' convention)
# Inputs a model's forward takes from a batch (StreamingLoader's packed batches also carry flash-attention-only keys).
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")


# --------------------------------------------------------------------------------------------------
# The task's data, checked


@dataclass
class TaskData:
    """Training and evaluation examples as Arrow tables with columns ``text`` (+ ``text_pair``) (+ ``labels``)."""

    kind: str
    train: Any
    eval: Any | None
    label_names: list[str] | None
    metrics: tuple[str, ...]
    main_metric: str

    @property
    def num_labels(self) -> int:
        return 1 if self.kind == REGRESSION else len(self.label_names or [])


def _resolve_sources(config: TrainConfig) -> tuple[Path, Path | None, tuple[str, ...] | None]:
    preset = GLUE_TASKS.get(config.task)
    train = Path(config.train) if config.train else None
    evaluation = Path(config.eval) if config.eval else None
    if preset and config.data_dir:
        data_dir = Path(config.data_dir)
        if not data_dir.is_dir():
            raise DataSourceNotFoundError(f"--data-dir {data_dir} is not a folder (the GLUE {preset.folder} folder)")
        train = train or data_dir / preset.train_file
        evaluation = evaluation or data_dir / preset.eval_file
        if not train.is_file():
            raise DataSourceNotFoundError(f"{train} not found: --data-dir should be GLUE's {preset.folder} folder")
        if not evaluation.is_file():
            evaluation = None
    assert train is not None  # TrainConfig.validate() requires it
    for path in filter(None, (train, evaluation)):
        if not path.exists():
            raise DataSourceNotFoundError(f"data path {path} does not exist")
    return train, evaluation, preset.column_names if preset else None


@contextlib.contextmanager
def _reading() -> Iterator[None]:
    """The sources' errors as training errors: unreadable data is a DataError, an unusable option a ConfigError."""
    try:
        yield
    except DataSourceNotFoundError:
        raise
    except DataSourceError as error:
        raise DataError(str(error)) from error
    except InvalidArgumentError as error:
        raise ConfigError(str(error)) from error


def _open(path: Path, config: TrainConfig, column_names: tuple[str, ...] | None) -> DataFiles:
    """A file or folder of data; CSV/TSV read with quoting off, as GLUE needs (its TSVs hold bare quotes)."""
    csv = CsvOptions(quoting=False, has_header=column_names is None, column_names=column_names)
    with _reading():
        return DataFiles(path, config.format, csv)


def _first(mask: Any) -> int:
    """The row of the first True of a boolean Arrow array."""
    import pyarrow.compute as pc

    return int(pc.index(mask, True).as_py())


def _column(table: Any, name: str, role: str, source: DataFiles) -> Any:
    if name not in table.column_names:
        raise ColumnNotFoundError(f"{role} column {name!r} is not in {source}; its columns are {table.column_names}")
    return table.column(name)


def _text_column(table: Any, name: str, role: str, source: DataFiles) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    column = _column(table, name, role, source)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise DataError(f"{role} column {name!r} of {source} holds {column.type}, not text")
    if column.null_count:
        raise DataError(
            f"{role} column {name!r} is empty or missing in {source.where(_first(pc.is_null(column)))} "
            f"({column.null_count} such example(s) in {source}): fill it in or remove the example"
        )
    return column


def _label_ids(column: Any, label_names: list[str] | None, source: DataFiles, name: str) -> tuple[Any, list[str]]:
    """Class ids (int64) from a column of ids or of label names; every label must be in the label set."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if column.null_count:
        raise LabelError(
            f"label column {name!r} is empty or missing in {source.where(_first(pc.is_null(column)))} "
            f"({column.null_count} such example(s) in {source}): every example needs a label; add it or remove "
            "the example"
        )
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        values = column.to_pylist()
        names = label_names if label_names is not None else sorted(set(values))
        index = {label: i for i, label in enumerate(names)}
        unknown = sorted(set(values) - set(index))
        if unknown:
            row = next(i for i, value in enumerate(values) if value not in index)
            raise LabelError(
                f"labels {unknown[:5]} in {source} are not in the label set {names} "
                f"(the first, {values[row]!r}, in {source.where(row)})"
            )
        return pa.array([index[v] for v in values], pa.int64()), list(names)
    if not pa.types.is_integer(column.type):
        raise LabelError(f"classification labels (column {name!r} of {source}) must be ids or names, not {column.type}")
    ids = column.cast(pa.int64())
    low, high = pc.min(ids).as_py(), pc.max(ids).as_py()
    names = label_names if label_names is not None else [str(i) for i in range(high + 1)]
    if low < 0 or high >= len(names):
        bad = low if low < 0 else high
        raise LabelError(
            f"label id {bad} in {source.where(_first(pc.equal(ids, bad)))} is outside the label set {names} "
            f"(ids 0..{len(names) - 1})"
        )
    return ids.combine_chunks(), list(names)


def _wanted_columns(config: TrainConfig) -> dict[str, str]:
    """The columns the task reads, by role: the options', else the preset's, else the defaults."""
    preset = GLUE_TASKS.get(config.task)
    wanted = {"text": config.text_column or (preset.text_column if preset else "text")}
    pair = config.text_pair_column or (preset.text_pair_column if preset else None)
    if pair:
        wanted["text pair"] = pair
    if config.kind != CAUSAL_LM:
        wanted["label"] = config.label_column or (preset.label_column if preset else "label")
    return wanted


def _examples(config: TrainConfig, source: DataFiles, label_names: list[str] | None, limit: int | None):
    import pyarrow as pa
    import pyarrow.compute as pc

    preset = GLUE_TASKS.get(config.task)
    kind = config.kind
    with _reading():
        table = source.read(list(dict.fromkeys(_wanted_columns(config).values())))
    if limit is not None:
        table = table.slice(0, limit)
    if table.num_rows == 0:
        raise DataError(f"{source} holds no example")
    text_name = config.text_column or (preset.text_column if preset else "text")
    pair_name = config.text_pair_column or (preset.text_pair_column if preset else None)
    columns = {"text": _text_column(table, text_name, "text", source)}
    if pair_name:
        columns["text_pair"] = _text_column(table, pair_name, "text pair", source)
    if kind != CAUSAL_LM:
        label_name = config.label_column or (preset.label_column if preset else "label")
        labels = _column(table, label_name, "label", source)
        if kind == CLASSIFICATION:
            labels, label_names = _label_ids(labels, label_names, source, label_name)
        else:
            if not (pa.types.is_floating(labels.type) or pa.types.is_integer(labels.type)):
                raise LabelError(f"regression labels in column {label_name!r} of {source} must be numbers")
            if labels.null_count:
                raise LabelError(
                    f"regression label {label_name!r} is empty or missing in "
                    f"{source.where(_first(pc.is_null(labels)))}: every example needs a number"
                )
            labels = labels.cast(pa.float32())
        columns["labels"] = labels
    return pa.table(columns), label_names


def check_columns(files: DataFiles, wanted: dict[str, str]) -> None:
    """The configured columns must be in every data file: checked from the schemas and header lines (a JSONL file's
    first record) alone, so that a wrong column name fails at once, before any large file is parsed."""
    with _reading():
        columns_of_files = files.columns()
    for file, columns in columns_of_files:
        for role, name in wanted.items():
            if name not in columns:
                raise ColumnNotFoundError(f"{role} column {name!r} is not in {file}; its columns are {columns}")


def load_task_data(config: TrainConfig) -> TaskData:
    """Reads and checks the training and evaluation data of ``config`` (raises a DataError subclass)."""
    preset = GLUE_TASKS.get(config.task)
    train_path, eval_path, column_names = _resolve_sources(config)
    train_files = _open(train_path, config, column_names)
    eval_files = _open(eval_path, config, column_names) if eval_path is not None else None
    for files in filter(None, (train_files, eval_files)):
        check_columns(files, _wanted_columns(config))
    label_names = config.label_names or (list(preset.label_names) if preset and preset.label_names else None)
    train, label_names = _examples(config, train_files, label_names, config.max_train_examples)
    evaluation = None
    if eval_files is not None:
        # The evaluation labels must belong to the training label set: same names, same ids.
        evaluation, _ = _examples(config, eval_files, label_names, config.max_eval_examples)
    if config.kind == CLASSIFICATION and len(label_names or []) < 2:
        raise LabelError(f"classification needs at least 2 labels; {train_path} has {label_names}")
    if preset:
        metrics, main = preset.metrics, preset.main_metric
    else:
        metrics, main = default_metrics(config.kind, len(label_names or []))
    return TaskData(config.kind, train, evaluation, label_names, metrics, main)


# --------------------------------------------------------------------------------------------------
# Tokenization (shared by training and evaluation)


def tokenize_examples(tokenizer: Any, table: Any, config: TrainConfig, *, truncate: bool = True) -> Any:
    """Token ids of every example as an Arrow batch (input_ids, attention_mask, ...; plus labels when present)."""
    import pyarrow as pa

    texts = table.column("text").to_pylist()
    pairs = table.column("text_pair").to_pylist() if "text_pair" in table.column_names else None
    encoded = tokenizer(texts, pairs, truncation=truncate, max_length=config.max_length if truncate else None,
                        return_tensors="arrow")  # fmt: skip
    columns = {name: encoded.column(name) for name in encoded.schema.names}
    if "labels" in table.column_names:
        columns["labels"] = table.column("labels").combine_chunks()
    return pa.table(columns)


def example_lengths(encoded: Any) -> np.ndarray:
    import pyarrow.compute as pc

    return pc.list_value_length(encoded.column("input_ids")).to_numpy(zero_copy_only=False).astype(np.int64)


def build_eval_batches(config: TrainConfig, tokenizer: Any, table: Any, rank: int = 0, world: int = 1) -> list:
    """Evaluation batches of length-sorted examples (this rank's share): ``[(example indices, batch), ...]``.

    Causal LM is evaluated per document (truncated to max_length, never packed), so the loss does not depend on
    how documents happen to be packed."""
    from ..collators import DataCollatorWithPadding

    encoded = tokenize_examples(tokenizer, table, config)
    order = np.argsort(example_lengths(encoded), kind="stable")
    collator = DataCollatorWithPadding(tokenizer)
    batches = []
    for start in range(0, len(order), config.eval_batch_size):
        indices = order[start : start + config.eval_batch_size]
        rows = encoded.take(indices)
        batch = causal_batch(rows, tokenizer) if config.kind == CAUSAL_LM else dict(collator(rows))
        batches.append((indices, batch))
    return batches[rank::world]


# --------------------------------------------------------------------------------------------------
# Causal LM: packing and labels


def causal_batch(rows: Any, tokenizer: Any) -> dict:
    """A causal-LM batch: padded input ids, attention mask, and labels = input ids with padding ignored."""
    from ..collators import DataCollatorWithPadding

    batch = dict(DataCollatorWithPadding(tokenizer)(rows.select(["input_ids", "attention_mask"])))
    batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, LABEL_SENTINEL)
    return batch


def batch_tokens(batch: dict) -> tuple[int, int]:
    """(real tokens, tokens including padding) of a batch; packed batches (4-D mask) have no padding."""
    if batch["attention_mask"].ndim == 2:
        return int(batch["attention_mask"].sum()), int(batch["attention_mask"].numel())
    return int(batch["input_ids"].numel()), int(batch["input_ids"].numel())


def loss_items(batch: dict, kind: str) -> int:
    """What the loss is normalised by: examples (classification, regression) or predicted tokens (causal LM)."""
    if kind == CAUSAL_LM:
        return int((batch["labels"][:, 1:] != LABEL_SENTINEL).sum())
    return int(batch["labels"].shape[0])


# --------------------------------------------------------------------------------------------------
# Training batches


def build_train_loader(config: TrainConfig, tokenizer: Any, table: Any, rank: int, world: int) -> Any:
    """This rank's training batches: a ``ferrotune.StreamingLoader`` over the checked examples (a disjoint share
    per rank), length-bucketed by default; causal LM packs documents into rows of batch_size x max_length tokens
    (position ids restart at each document, so attention stays within it)."""
    from ..streaming import StreamingLoader

    common = {
        "text_column": "text", "max_length": config.max_length, "truncation": True,
        "seed": config.seed, "shuffle": True, "rank": rank, "world_size": world,
    }  # fmt: skip
    if config.kind == CAUSAL_LM and config.use_packing:
        return StreamingLoader(table, tokenizer, packing=True, max_tokens=config.batch_size * config.max_length,
                               **common)  # fmt: skip
    return StreamingLoader(
        table, tokenizer, text_pair_column="text_pair" if "text_pair" in table.column_names else None,
        label_column=None if config.kind == CAUSAL_LM else "labels", batch_size=config.batch_size,
        bucketing=config.bucketing, **common,
    )  # fmt: skip


def packed_causal_mask(position_ids: Any) -> Any:
    """A (batch, 1, L, L) boolean mask for rows of packed documents: causal, and each token attends only to its
    own document (a document starts where the position ids restart at 0). Eager and SDPA attention ignore
    position ids when masking, so without it packed documents would see each other."""
    import torch

    document = torch.cumsum(position_ids == 0, dim=1)
    length = position_ids.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=position_ids.device).tril()
    return ((document[:, :, None] == document[:, None, :]) & causal)[:, None]


def prepare_batch(batch: dict, kind: str, device: Any) -> dict:
    """A loader batch ready for the model, on ``device``: model inputs and labels only (flash-attention metadata
    is left out); causal LM gets labels (unpacked) or the block-diagonal mask (packed)."""
    batch = {key: value.to(device) for key, value in batch.items() if key in (*MODEL_INPUTS, "labels")}
    if kind == CAUSAL_LM:
        if "attention_mask" not in batch:
            batch["attention_mask"] = packed_causal_mask(batch["position_ids"])
        elif "labels" not in batch:
            batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, LABEL_SENTINEL)
    return batch


def model_inputs(batch: dict) -> dict:
    return {key: value for key, value in batch.items() if key in MODEL_INPUTS}
