"""Training data: read the files, check columns and labels, and turn examples into batches.

Everything that can be wrong with the data is found in :func:`load_task_data`, before any model is loaded.
Training batches come from ONE function, :func:`build_train_loader`; evaluation batches are length-sorted
(:func:`build_eval_batches`) so that almost nothing is padded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ColumnNotFoundError, ConfigError, DataError, DataFileNotFoundError, LabelError
from .config import TrainConfig
from .tasks import CAUSAL_LM, CLASSIFICATION, GLUE_TASKS, REGRESSION, default_metrics

EXTENSIONS = {
    ".parquet": "parquet",
    ".arrow": "arrow",
    ".feather": "arrow",
    ".ipc": "arrow",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
}
LABEL_SENTINEL = -100  # positions the causal-LM loss ignores (transformers' convention)
BUCKET_WINDOW_BATCHES = 50  # length bucketing sorts windows of this many batches: similar lengths, still shuffled


# --------------------------------------------------------------------------------------------------
# Reading files


def _format_of(path: Path, format: str | None) -> str:
    if format:
        return format
    suffixes = [s for s in path.suffixes if s != ".gz"]
    if suffixes and suffixes[-1] in EXTENSIONS:
        return EXTENSIONS[suffixes[-1]]
    raise ConfigError(f"cannot tell the format of {path} from its extension; pass --format ({', '.join(EXTENSIONS)})")


def _data_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and any(s in EXTENSIONS for s in p.suffixes))
        if not files:
            raise DataFileNotFoundError(f"folder {path} holds no data file ({', '.join(EXTENSIONS)})")
        return files
    raise DataFileNotFoundError(f"data path {path} does not exist")


def read_table(path: str | Path, format: str | None = None, column_names: tuple[str, ...] | None = None) -> Any:
    """A file, or every data file of a folder, as one ``pyarrow.Table`` (CSV/TSV read with quoting off, as GLUE
    needs; ``.gz`` files decompressed)."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.feather as feather
    import pyarrow.json as pa_json
    import pyarrow.parquet as pq

    tables = []
    for file in _data_files(Path(path)):
        kind = _format_of(file, format)
        try:
            if kind == "parquet":
                table = pq.read_table(file)
            elif kind == "arrow":
                table = feather.read_table(file)
            elif kind == "jsonl":
                table = pa_json.read_json(pa.input_stream(str(file), compression="detect"))
            else:
                table = pa_csv.read_csv(
                    pa.input_stream(str(file), compression="detect"),
                    read_options=pa_csv.ReadOptions(column_names=list(column_names) if column_names else None),
                    parse_options=pa_csv.ParseOptions(delimiter="\t" if kind == "tsv" else ",", quote_char=False),
                )
        except (pa.ArrowInvalid, OSError) as error:
            raise DataError(f"cannot read {file} as {kind}: {error}") from error
        tables.append(table)
    try:
        return pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
    except pa.ArrowInvalid as error:
        raise DataError(f"the files of {path} do not share one schema: {error}") from error


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
            raise DataFileNotFoundError(f"--data-dir {data_dir} is not a folder (the GLUE {preset.folder} folder)")
        train = train or data_dir / preset.train_file
        evaluation = evaluation or data_dir / preset.eval_file
        if not train.is_file():
            raise DataFileNotFoundError(f"{train} not found: --data-dir should be GLUE's {preset.folder} folder")
        if not evaluation.is_file():
            evaluation = None
    assert train is not None  # TrainConfig.validate() requires it
    return train, evaluation, preset.column_names if preset else None


def _column(table: Any, name: str, role: str, source: Path) -> Any:
    if name not in table.column_names:
        raise ColumnNotFoundError(f"{role} column {name!r} is not in {source}; its columns are {table.column_names}")
    return table.column(name)


def _text_column(table: Any, name: str, role: str, source: Path) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    column = _column(table, name, role, source)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise DataError(f"{role} column {name!r} of {source} holds {column.type}, not text")
    if column.null_count:
        row = int(pc.index(pc.is_null(column), True).as_py())
        raise DataError(f"{role} column {name!r} of {source} is empty in row {row}")
    return column


def _label_ids(column: Any, label_names: list[str] | None, source: Path, name: str) -> tuple[Any, list[str]]:
    """Class ids (int64) from a column of ids or of label names; every label must be in the label set."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if column.null_count:
        raise LabelError(f"label column {name!r} of {source} has {column.null_count} empty value(s)")
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        values = column.to_pylist()
        names = label_names if label_names is not None else sorted(set(values))
        index = {label: i for i, label in enumerate(names)}
        unknown = sorted(set(values) - set(index))
        if unknown:
            raise LabelError(f"labels {unknown[:5]} in {source} are not in the label set {names}")
        return pa.array([index[v] for v in values], pa.int64()), list(names)
    if not pa.types.is_integer(column.type):
        raise LabelError(f"classification labels (column {name!r} of {source}) must be ids or names, not {column.type}")
    ids = column.cast(pa.int64())
    low, high = pc.min(ids).as_py(), pc.max(ids).as_py()
    names = label_names if label_names is not None else [str(i) for i in range(high + 1)]
    if low < 0 or high >= len(names):
        bad = low if low < 0 else high
        raise LabelError(f"label id {bad} in {source} is outside the label set {names} (ids 0..{len(names) - 1})")
    return ids.combine_chunks(), list(names)


def _examples(table: Any, config: TrainConfig, source: Path, label_names: list[str] | None, limit: int | None):
    import pyarrow as pa

    preset = GLUE_TASKS.get(config.task)
    kind = config.kind
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
            if not (pa.types.is_floating(labels.type) or pa.types.is_integer(labels.type)) or labels.null_count:
                raise LabelError(f"regression labels in column {label_name!r} of {source} must be numbers")
            labels = labels.cast(pa.float32())
        columns["labels"] = labels
    return pa.table(columns), label_names


def load_task_data(config: TrainConfig) -> TaskData:
    """Reads and checks the training and evaluation data of ``config`` (raises a DataError subclass)."""
    preset = GLUE_TASKS.get(config.task)
    train_path, eval_path, column_names = _resolve_sources(config)
    label_names = config.label_names or (list(preset.label_names) if preset and preset.label_names else None)
    train, label_names = _examples(
        read_table(train_path, config.format, column_names), config, train_path, label_names, config.max_train_examples
    )
    evaluation = None
    if eval_path is not None:
        # The evaluation labels must belong to the training label set: same names, same ids.
        evaluation, _ = _examples(
            read_table(eval_path, config.format, column_names), config, eval_path, label_names, config.max_eval_examples
        )
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
    """Evaluation batches of length-sorted examples (this rank's share): ``[(example indices, batch), ...]``."""
    from ..collators import DataCollatorWithPadding

    if config.kind == CAUSAL_LM and config.use_packing:  # packed blocks all have the same length
        encoded = pack_blocks(tokenizer, table, config, seed=None)
        order = np.arange(encoded.num_rows)
    else:
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


def pack_blocks(tokenizer: Any, table: Any, config: TrainConfig, seed: int | None) -> Any:
    """Documents (each followed by EOS), concatenated and cut into full blocks of ``max_length`` tokens;
    the last partial block is dropped. ``seed`` shuffles the documents first (None keeps their order)."""
    import pyarrow as pa

    eos = tokenizer.eos_token_id
    if eos is None:
        raise ConfigError("packing needs an end-of-sequence token to separate documents; this tokenizer has none")
    texts = table.column("text").to_pylist()
    if seed is not None:
        texts = [texts[i] for i in np.random.default_rng(seed).permutation(len(texts))]
    encoded = tokenizer(texts, add_special_tokens=False, return_attention_mask=False, return_tensors="arrow")
    ids_column = encoded.column("input_ids")
    lengths = example_lengths(pa.table({"input_ids": ids_column}))
    flat = ids_column.values.to_numpy(zero_copy_only=False).astype(np.int64)
    # Insert one EOS after each document: positions are shifted by the number of documents before.
    ends = np.cumsum(lengths)
    stream = np.insert(flat, ends, eos)
    block = config.max_length
    usable = len(stream) // block * block
    if usable == 0:
        raise DataError(f"the data holds {len(stream)} tokens, fewer than one block of max_length={block}")
    blocks = stream[:usable].reshape(-1, block)
    return pa.table({"input_ids": pa.FixedSizeListArray.from_arrays(pa.array(blocks.reshape(-1)), block)})


def causal_batch(rows: Any, tokenizer: Any) -> dict:
    """A causal-LM batch: padded input ids, attention mask, and labels = input ids with padding ignored."""
    import torch

    from ..collators import DataCollatorWithPadding

    if "attention_mask" not in rows.column_names:  # packed blocks: all real tokens, no padding
        ids = torch.from_numpy(np.stack(rows.column("input_ids").to_numpy(zero_copy_only=False)).astype(np.int64))
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}
    batch = dict(DataCollatorWithPadding(tokenizer)(rows.select(["input_ids", "attention_mask"])))
    batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, LABEL_SENTINEL)
    return batch


def loss_items(batch: dict, kind: str) -> int:
    """What the loss is normalised by: examples (classification, regression) or predicted tokens (causal LM)."""
    if kind == CAUSAL_LM:
        return int((batch["labels"][:, 1:] != LABEL_SENTINEL).sum())
    return int(batch["labels"].shape[0])


# --------------------------------------------------------------------------------------------------
# Training batches (TEMPORARY stand-in for ferrotune.StreamingLoader, issue 4; same methods and state)


class _BucketedBatches:
    """Batches of pre-tokenized examples in an order fixed by (seed, epoch): shuffled, optionally length-bucketed,
    split across ranks (each rank gets a disjoint share, all ranks the same number of batches). Its state
    (epoch, next batch) makes a mid-epoch resume exact."""

    def __init__(self, encoded: Any, make_batch, *, batch_size: int, bucketing: str, seed: int, rank: int, world: int):
        self.encoded, self.make_batch = encoded, make_batch
        self.lengths = example_lengths(encoded)
        self.batch_size, self.bucketing, self.seed = batch_size, bucketing, seed
        self.rank, self.world = rank, world
        self.epoch, self.next_batch = 0, 0
        self.stats = {"examples": 0, "real_tokens": 0, "padded_tokens": 0}

    def _epoch_batches(self, epoch: int) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.lengths))
        if self.bucketing == "length":
            window = self.batch_size * BUCKET_WINDOW_BATCHES
            order = np.concatenate([
                chunk[np.argsort(self.lengths[chunk], kind="stable")]
                for chunk in np.array_split(order, range(window, len(order), window))
            ])  # fmt: skip
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.bucketing == "length":  # sorted windows would otherwise run short-to-long
            batches = [batches[i] for i in rng.permutation(len(batches))]
        per_rank = len(batches) // self.world
        return batches[self.rank :: self.world][:per_rank]

    def __len__(self) -> int:
        return len(self._epoch_batches(self.epoch))

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.next_batch = epoch, 0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "next_batch": self.next_batch, "stats": dict(self.stats)}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.next_batch, self.stats = state["epoch"], state["next_batch"], dict(state["stats"])

    def __iter__(self):
        batches = self._epoch_batches(self.epoch)
        while self.next_batch < len(batches):
            indices = batches[self.next_batch]
            batch = self.make_batch(self.encoded.take(indices))
            self.next_batch += 1
            self.stats["examples"] += len(indices)
            self.stats["real_tokens"] += int(batch["attention_mask"].sum())
            self.stats["padded_tokens"] += int(batch["attention_mask"].numel())
            yield batch


def build_train_loader(config: TrainConfig, tokenizer: Any, table: Any, rank: int, world: int):
    """This rank's training batches: an iterable with ``set_epoch``, ``state_dict``/``load_state_dict``, ``stats``
    and ``len()`` (batches per epoch)."""
    from ..collators import DataCollatorWithPadding

    if config.kind == CAUSAL_LM:
        if config.use_packing:
            encoded = pack_blocks(tokenizer, table, config, seed=config.seed)
        else:
            encoded = tokenize_examples(tokenizer, table, config).select(["input_ids", "attention_mask"])
        return _BucketedBatches(
            encoded, lambda rows: causal_batch(rows, tokenizer), batch_size=config.batch_size,
            bucketing="none" if config.use_packing else config.bucketing, seed=config.seed, rank=rank, world=world,
        )  # fmt: skip
    collator = DataCollatorWithPadding(tokenizer)
    return _BucketedBatches(
        tokenize_examples(tokenizer, table, config), lambda rows: dict(collator(rows)), batch_size=config.batch_size,
        bucketing=config.bucketing, seed=config.seed, rank=rank, world=world,
    )  # fmt: skip
