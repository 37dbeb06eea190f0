"""Training data: read the files, check columns and labels, and turn examples into batches.

Everything that can be wrong with the data is found in :func:`load_task_data`, before any model is loaded. The
files are read by :class:`ferrotune.sources.DataFiles` (the streaming loader's sources, read whole); the task
(:mod:`.tasks`) says which columns it reads and how rows and labels are built. Training batches come from the
task's ``train_loader``; evaluation batches are length-sorted (:func:`build_eval_batches`) so that almost nothing
is padded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
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
)
from ..sources import CsvOptions, DataFiles
from .config import TrainConfig
from .tasks import GLUE_TASKS, MODEL_INPUTS, Task, task_for

# --------------------------------------------------------------------------------------------------
# The task's data, checked


@dataclass
class TaskData:
    """Training and evaluation examples as Arrow tables with columns ``text`` (+ ``text_pair``) (+ ``labels``)."""

    task: Task
    train: Any
    eval: Any | None
    label_names: list[str] | None
    metrics: tuple[str, ...]
    main_metric: str
    dropped: dict[str, int] = field(default_factory=dict)  # examples left out ("train", "eval"; sft --drop-empty)

    @property
    def kind(self) -> str:
        return self.task.kind


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
    """A file or folder of data; CSV/TSV read with quoting off, as GLUE needs (its TSVs hold bare quotes); files
    without a header row take their column names from --column-names (or the GLUE preset's)."""
    column_names = tuple(config.column_names) if config.column_names else column_names
    csv = CsvOptions(quoting=False, has_header=column_names is None, column_names=column_names)
    with _reading():
        return DataFiles(path, config.format, csv)


def check_columns(files: DataFiles, wanted: dict[str, str]) -> None:
    """The task's columns must be in every data file: checked from the schemas and header lines (a JSONL file's
    first record) alone, so that a wrong column name fails at once, before any large file is parsed."""
    with _reading():
        columns_of_files = files.columns()
    for file, columns in columns_of_files:
        for role, name in wanted.items():
            if name not in columns:
                raise ColumnNotFoundError(f"{role} column {name!r} is not in {file}; its columns are {columns}")


def _examples(task: Task, files: DataFiles, columns: dict[str, str], label_names: list[str] | None,
              limit: int | None) -> tuple[Any, list[str] | None]:  # fmt: skip
    with _reading():
        table = files.read(list(dict.fromkeys(columns.values())))
    if limit is not None:
        table = table.slice(0, limit)
    if table.num_rows == 0:
        raise DataError(f"{files} holds no example")
    return task.rows(table, columns, files, label_names)


def load_task_data(config: TrainConfig) -> TaskData:
    """Reads and checks the training and evaluation data of ``config`` (raises a DataError subclass)."""
    task = task_for(config.kind)
    preset = GLUE_TASKS.get(config.task)
    train_path, eval_path, column_names = _resolve_sources(config)
    columns = task.columns(config, preset)
    train_files = _open(train_path, config, column_names)
    eval_files = _open(eval_path, config, column_names) if eval_path is not None else None
    for files in filter(None, (train_files, eval_files)):
        check_columns(files, columns)
    label_names = config.label_names or (list(preset.label_names) if preset and preset.label_names else None)
    train, label_names = _examples(task, train_files, columns, label_names, config.max_train_examples)
    dropped = {}
    train, dropped["train"] = task.prepare_examples(config, train, train_files)
    evaluation = None
    if eval_files is not None:
        # The evaluation labels must belong to the training label set: same names, same ids.
        evaluation, _ = _examples(task, eval_files, columns, label_names, config.max_eval_examples)
        evaluation, dropped["eval"] = task.prepare_examples(config, evaluation, eval_files)
    task.check_labels(label_names, train_path)
    metrics, main = (preset.metrics, preset.main_metric) if preset else task.run_metrics(config, label_names)
    return TaskData(task, train, evaluation, label_names, metrics, main, {k: n for k, n in dropped.items() if n})


# --------------------------------------------------------------------------------------------------
# Batches


def example_lengths(encoded: Any) -> np.ndarray:
    import pyarrow.compute as pc

    return pc.list_value_length(encoded.column("input_ids")).to_numpy(zero_copy_only=False).astype(np.int64)


def build_eval_batches(config: TrainConfig, task: Task, tokenizer: Any, table: Any, rank: int = 0,
                       world: int = 1) -> list:  # fmt: skip
    """Evaluation batches of length-sorted examples (this rank's share): ``[(example indices, batch), ...]``."""
    encoded = task.encode(tokenizer, table, config.max_length, config)
    order = np.argsort(example_lengths(encoded), kind="stable")
    collate = task.eval_collator(tokenizer)
    batches = []
    for start in range(0, len(order), config.eval_batch_size):
        indices = order[start : start + config.eval_batch_size]
        batches.append((indices, collate(encoded.take(indices))))
    return batches[rank::world]


def batch_tokens(batch: dict) -> tuple[int, int]:
    """(real tokens, tokens including padding) of a batch; packed batches (4-D mask) have no padding; packed batches
    without a mask (sft: the position ids tell the documents apart) count theirs in ``real_tokens``."""
    if "attention_mask" not in batch:
        total = int(batch["input_ids"].numel())
        return (int(batch["real_tokens"]) if "real_tokens" in batch else total), total
    if batch["attention_mask"].ndim == 2:
        return int(batch["attention_mask"].sum()), int(batch["attention_mask"].numel())
    return int(batch["input_ids"].numel()), int(batch["input_ids"].numel())


def model_inputs(batch: dict) -> dict:
    return {key: value for key, value in batch.items() if key in MODEL_INPUTS}
