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

from ..errors import ColumnNotFoundError, ConfigError, DataError, DataSourceNotFoundError, LabelError
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
# Inputs a model's forward takes from a batch (StreamingLoader's packed batches also carry flash-attention-only keys).
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")


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
            raise DataSourceNotFoundError(f"folder {path} holds no data file ({', '.join(EXTENSIONS)})")
        return files
    raise DataSourceNotFoundError(f"data path {path} does not exist")


def read_table(path: str | Path, format: str | None = None, column_names: tuple[str, ...] | None = None) -> Any:
    """A file, or every data file of a folder, as one ``pyarrow.Table`` (CSV/TSV read with quoting off, as GLUE
    needs; ``.gz`` files decompressed)."""
    return read_source(path, format, column_names)[0]


@dataclass
class Source:
    """Where a table's rows come from: the path given and, per file, its format and row count; ``where(row)``
    turns a row of the (concatenated) table into "file line N" for error messages."""

    path: Path
    files: list[tuple[Path, str, int]]
    header: bool

    def __str__(self) -> str:
        return str(self.path)

    def where(self, row: int) -> str:
        for file, kind, rows in self.files:
            if row < rows:
                if kind in ("jsonl", "csv", "tsv"):
                    skip = 1 if kind != "jsonl" and self.header else 0
                    return f"{file} line {_line_of_record(file, row, skip)}"
                return f"{file} row {row + 1}"
            row -= rows
        return f"{self.path} row {row + 1}"  # pragma: no cover - rows beyond the table


def _line_of_record(file: Path, row: int, skip: int) -> int:
    """The line number of the ``row``-th record of a text file (blank lines hold no record; ``skip`` header
    lines). Only called to report an error, so reading the file again is fine."""
    import gzip

    opener = gzip.open if file.suffix == ".gz" else open
    seen = -skip
    with opener(file, "rt", encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                if seen == row:
                    return number
                seen += 1
    return row + 1 + skip  # pragma: no cover - the table came from this file


def read_source(path: str | Path, format: str | None = None, column_names: tuple[str, ...] | None = None):
    """(table, Source): :func:`read_table` plus where each row comes from."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.feather as feather
    import pyarrow.json as pa_json
    import pyarrow.parquet as pq

    tables, files = [], []
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
        files.append((file, kind, table.num_rows))
    try:
        table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
    except pa.ArrowInvalid as error:
        raise DataError(f"the files of {path} do not share one schema: {error}") from error
    return table, Source(Path(path), files, header=column_names is None)


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
    return train, evaluation, preset.column_names if preset else None


def _first(mask: Any) -> int:
    """The row of the first True of a boolean Arrow array."""
    import pyarrow.compute as pc

    return int(pc.index(mask, True).as_py())


def _column(table: Any, name: str, role: str, source: Source) -> Any:
    if name not in table.column_names:
        raise ColumnNotFoundError(f"{role} column {name!r} is not in {source}; its columns are {table.column_names}")
    return table.column(name)


def _text_column(table: Any, name: str, role: str, source: Source) -> Any:
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


def _label_ids(column: Any, label_names: list[str] | None, source: Source, name: str) -> tuple[Any, list[str]]:
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


def _examples(table: Any, config: TrainConfig, source: Source, label_names: list[str] | None, limit: int | None):
    import pyarrow as pa
    import pyarrow.compute as pc

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


def _header_columns(file: Path, kind: str, column_names: tuple[str, ...] | None) -> list[str] | None:
    """A file's column names from its schema or header line, without reading its rows (None: not known cheaply,
    as for JSONL, whose later lines may add keys)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if kind == "parquet":
            return list(pq.read_schema(file).names)
        if kind == "arrow":
            with pa.memory_map(str(file)) as source:
                return list(pa.ipc.open_file(source).schema.names)
        if kind in ("csv", "tsv"):
            if column_names:
                return list(column_names)
            import gzip

            opener = gzip.open if file.suffix == ".gz" else open
            with opener(file, "rt", encoding="utf-8-sig", errors="replace") as handle:
                header = handle.readline().rstrip("\r\n")
            return header.split("\t" if kind == "tsv" else ",")
    except (pa.ArrowInvalid, OSError, ValueError):
        return None  # the full read reports it
    return None


def check_columns(config: TrainConfig) -> None:
    """The configured columns must be in every data file: checked from the schemas and header lines alone, so that a
    wrong column name fails at once, before any large file is read."""
    preset = GLUE_TASKS.get(config.task)
    train_path, eval_path, column_names = _resolve_sources(config)
    wanted = {"text": config.text_column or (preset.text_column if preset else "text")}
    pair = config.text_pair_column or (preset.text_pair_column if preset else None)
    if pair:
        wanted["text pair"] = pair
    if config.kind != CAUSAL_LM:
        wanted["label"] = config.label_column or (preset.label_column if preset else "label")
    for path in filter(None, (train_path, eval_path)):
        for file in _data_files(path):
            columns = _header_columns(file, _format_of(file, config.format), column_names)
            for role, name in wanted.items():
                if columns is not None and name not in columns:
                    raise ColumnNotFoundError(f"{role} column {name!r} is not in {file}; its columns are {columns}")


def load_task_data(config: TrainConfig) -> TaskData:
    """Reads and checks the training and evaluation data of ``config`` (raises a DataError subclass)."""
    check_columns(config)
    preset = GLUE_TASKS.get(config.task)
    train_path, eval_path, column_names = _resolve_sources(config)
    label_names = config.label_names or (list(preset.label_names) if preset and preset.label_names else None)
    table, source = read_source(train_path, config.format, column_names)
    train, label_names = _examples(table, config, source, label_names, config.max_train_examples)
    evaluation = None
    if eval_path is not None:
        # The evaluation labels must belong to the training label set: same names, same ids.
        table, source = read_source(eval_path, config.format, column_names)
        evaluation, _ = _examples(table, config, source, label_names, config.max_eval_examples)
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
