"""``StreamingLoader``: ready batches from Arrow / Parquet / JSONL / CSV data in bounded memory.

How a stream is made, and why it can be resumed exactly:

1. The sources are split into *units* (a Parquet row group, an Arrow record batch, a byte range of
   a JSONL/CSV file; see :mod:`ferrotune.sources`). Each epoch orders the units (shuffled with
   ``(seed, epoch)`` when ``shuffle``), which orders every example of the data.
2. The examples are split evenly, by count, among the *readers*: ``world_size x num_workers``
   (DataLoader workers). Reader ``r`` takes the ``r``-th contiguous share, so every example is read
   by exactly one (rank, worker), and all readers have the same number of examples (see
   ``drop_last`` / ``even_batches``).
3. A reader walks its share in *windows* of ``window`` examples: it reads them (only the columns it
   needs), tokenizes them in Rust straight from the Arrow buffers, plans the window's batches in
   Rust (shuffled, length-bucketed, cut by count or by a token budget, or packed), and collates
   each batch in Rust.
4. A window's plan is a pure function of ``(seed, epoch, reader, window)``, so the position
   ``(epoch, window, batches done)`` is the whole state: ``load_state_dict`` rereads one window
   and continues with exactly the batches an uninterrupted run would have produced next.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from . import _core
from .chat import _conversation_column
from .errors import (
    ChatTemplateError,
    DataSourceError,
    InputTypeError,
    InvalidArgumentError,
    InvalidInputError,
    StateDictError,
)  # fmt: skip
from .padding import check_padding_side, known_max_length, pad_values
from .sources import CsvOptions, Unit, _Source, arrow_column, check_columns, open_sources
from .tokenizer import Tokenizer

__all__ = ["StreamingLoader"]

_STATE_FORMAT = 1
# transformers' DataCollatorWithFlattening default: the first token of each packed sequence is not a target.
_PACK_SEPARATOR_ID = -100
# DataCollatorForSeq2Seq's label_pad_token_id: the padding of seq2seq labels, which the loss ignores.
_LABEL_PAD_ID = -100


def _mix(*values: int) -> int:
    """A 64-bit seed from several integers (stable across processes and platforms)."""
    return int(np.random.SeedSequence([v & 0xFFFFFFFF for v in values]).generate_state(2, dtype=np.uint64)[0])


def _rank_and_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is not None or world_size is not None:
        if rank is None or world_size is None:
            raise InvalidArgumentError("pass both rank and world_size, or neither")
        resolved = (rank, world_size)
    elif torch.distributed.is_available() and torch.distributed.is_initialized():
        resolved = (torch.distributed.get_rank(), torch.distributed.get_world_size())
    else:
        # `accelerate launch` and `torchrun` export these before the script starts.
        resolved = (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)))
    if resolved[1] < 1 or not 0 <= resolved[0] < resolved[1]:
        raise InvalidArgumentError(f"rank must be in [0, world_size), got rank={resolved[0]} world_size={resolved[1]}")
    return resolved


class StreamingLoader(IterableDataset):
    """Streams ready batches (dicts of tensors, the collators' keys) from files or tables.

    Parameters mirror what a training script already decides: the columns, the tokenizer and its
    truncation, and the batching (``batch_size``, or ``max_tokens`` counting padding; length
    ``bucketing``; ``packing`` into padding-free rows). Use it directly (``for batch in loader``)
    or in ``torch.utils.data.DataLoader(loader, batch_size=None, num_workers=...)`` /
    ``torchdata``'s ``StatefulDataLoader`` (whose ``state_dict`` then includes this loader's).

    Seq2seq (``target_column``): the targets are tokenized as ``tokenizer(text_target=...)`` does it, truncated to
    ``max_target_length`` (default: ``max_length``), and batches are ``DataCollatorForSeq2Seq``'s: ``labels`` padded
    with -100 to the batch's longest target (rounded up to ``pad_to_multiple_of``), and ``decoder_input_ids`` from
    ``model.prepare_decoder_input_ids_from_labels`` when ``model`` has it, or the labels shifted right behind
    ``decoder_start_token_id`` (-100 read as ``pad_token_id``) when that is given. Length buckets sort by the longer
    of source and target; ``max_tokens`` counts both padded sides, ``rows x (widest source + widest target)``, as
    do ``stats['tokens']`` / ``stats['padded_tokens']``. Packing is refused (a seq2seq example owns its row).

    Conversations (chat SFT): ``messages_column`` (OpenAI-style lists of ``{role, content}``), or ``prompt_column``
    + ``completion_column`` (each a list of messages, or a string: a user prompt / an assistant answer). Each window
    is rendered with the chat template (``chat_template``: a template source or a name of the tokenizer's; default
    the tokenizer's), tokenized and labelled in the core (:func:`ferrotune.chat.tokenize_conversations`): ``labels``
    are the ids where the loss applies (``loss_on``: "assistant" by default, "completion" for prompt/completion
    data, "last_assistant", "all") and -100 elsewhere; ``boundaries`` defaults to "characters" (each conversation
    tokenized once; the masks transformers' ``{% generation %}`` blocks give). Truncation cuts conversations to
    ``max_length``; a conversation left with nothing to learn is an error naming its file and line
    (``on_empty="error"``) or is left out and counted in ``stats['dropped']`` (``on_empty="drop"``). Padded batches
    carry ``labels`` padded with -100; packed batches (``packing=True``) are ``DataCollatorWithFlattening``'s, the
    labels those of the conversations (and -100 at each one's first token).

    Labels come out as one dtype for the whole stream: ``label_dtype`` ('int64' class ids or 'float32'
    regression targets), or by default the type of the first unit's labels in file order (JSONL/CSV
    types are inferred per unit; a non-whole label in an int64 stream is an error naming its line).
    A folder source reads its data files but not hidden entries (``.ipynb_checkpoints``) or ``datasets``
    cache files (``cache-*.arrow``); a ``save_to_disk`` folder reads the files its ``state.json`` lists.
    Arrow files are memory-mapped: truncating one while a loader reads it can kill the process (SIGBUS);
    copy files that another process is still writing.
    """

    def __init__(
        self,
        source: Any,
        tokenizer: Any = None,
        *,
        text_column: str | None = None,
        text_pair_column: str | None = None,
        input_ids_column: str | None = None,
        label_column: str | None = None,
        format: str | None = None,
        csv_quoting: bool = True,
        csv_delimiter: str | None = None,
        csv_has_header: bool = True,
        csv_column_names: list[str] | None = None,
        max_length: int | None = None,
        truncation: bool | str = False,
        add_special_tokens: bool = True,
        batch_size: int | None = None,
        max_tokens: int | None = None,
        bucketing: str = "none",
        bucket_window: int | None = None,
        packing: bool = False,
        pack_split: bool = False,
        pad_to_multiple_of: int | None = None,
        pad_token_id: int | None = None,
        shuffle: bool = True,
        shuffle_buffer: int = 10_000,
        seed: int = 0,
        num_epochs: int = 1,
        drop_last: bool = False,
        even_batches: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
        return_tensors: str = "pt",
        rows_per_unit: int = 8192,
        label_dtype: str | None = None,
        target_column: str | None = None,
        max_target_length: int | None = None,
        model: Any = None,
        decoder_start_token_id: int | None = None,
        messages_column: str | None = None,
        prompt_column: str | None = None,
        completion_column: str | None = None,
        chat_template: str | None = None,
        chat_template_kwargs: dict[str, Any] | None = None,
        loss_on: str | None = None,
        on_empty: str = "error",
        boundaries: str = "characters",
    ) -> None:
        super().__init__()
        conversational = messages_column is not None or prompt_column is not None or completion_column is not None
        if sum(c is not None for c in (text_column, input_ids_column, messages_column, prompt_column)) != 1 or (
            (prompt_column is None) != (completion_column is None)
        ):
            raise InvalidArgumentError(
                "give exactly one of text_column (raw text), input_ids_column (token ids), messages_column "
                "(conversations) and prompt_column + completion_column (prompts and their completions)"
            )
        if conversational:
            if tokenizer is None:
                raise InvalidArgumentError("a tokenizer (with a chat template) is needed to tokenize conversations")
            for name, value in (("text_pair_column", text_pair_column), ("label_column", label_column),
                                ("target_column", target_column)):  # fmt: skip
                if value is not None:
                    raise InvalidArgumentError(f"{name} cannot be used with conversations (their labels are their own)")
            from .chat import conversation_options

            loss_on, chat_template_kwargs = conversation_options(
                loss_on, prompt_column is not None, on_empty, boundaries, chat_template_kwargs
            )
        elif chat_template is not None or chat_template_kwargs is not None or loss_on is not None:
            raise InvalidArgumentError("chat_template, chat_template_kwargs and loss_on are for conversations")
        if text_pair_column is not None and text_column is None:
            raise InvalidArgumentError("text_pair_column needs text_column")
        if text_column is not None and tokenizer is None:
            raise InvalidArgumentError("a tokenizer is needed to tokenize text_column")
        if target_column is not None and tokenizer is None:
            raise InvalidArgumentError("a tokenizer is needed to tokenize target_column")
        if target_column is None:
            for name, value in (
                ("max_target_length", max_target_length),
                ("model", model),
                ("decoder_start_token_id", decoder_start_token_id),
            ):
                if value is not None:
                    raise InvalidArgumentError(f"{name} is for seq2seq targets: it needs target_column")
        else:
            if label_column is not None:
                raise InvalidArgumentError(
                    "the labels of a seq2seq stream are the target_column's tokens: do not pass label_column too"
                )
            if packing:
                raise InvalidArgumentError(
                    "packing cannot be used with target_column: a seq2seq example (its source and its target) "
                    "cannot share a row with other examples; use max_tokens with bucketing='length' instead"
                )
            if model is not None and decoder_start_token_id is not None:
                raise InvalidArgumentError(
                    "give model (its prepare_decoder_input_ids_from_labels makes the decoder inputs) or "
                    "decoder_start_token_id, not both"
                )
            if decoder_start_token_id is not None and (
                not isinstance(decoder_start_token_id, int) or isinstance(decoder_start_token_id, bool)
            ):
                raise InvalidArgumentError(f"decoder_start_token_id must be an int, got {decoder_start_token_id!r}")
        if tokenizer is not None and not isinstance(tokenizer, Tokenizer):
            tokenizer = Tokenizer.from_transformers(tokenizer)
        if bucketing not in ("none", "length"):
            raise InvalidArgumentError(f"bucketing must be 'none' or 'length', got {bucketing!r}")
        if return_tensors not in ("pt", "np"):
            raise InvalidArgumentError(f"return_tensors must be 'pt' or 'np', got {return_tensors!r}")
        for name, value in (
            ("batch_size", batch_size),
            ("max_tokens", max_tokens),
            ("shuffle_buffer", shuffle_buffer),
            ("bucket_window", bucket_window),
            ("num_epochs", num_epochs),
            ("max_length", max_length),
            ("pad_to_multiple_of", pad_to_multiple_of),
            ("rows_per_unit", rows_per_unit),
            ("max_target_length", max_target_length),
        ):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise InvalidArgumentError(f"{name} must be a positive integer, got {value!r}")
        if label_dtype not in (None, "int64", "float32"):
            raise InvalidArgumentError(
                f"label_dtype must be None (decided from the data), 'int64' or 'float32', got {label_dtype!r}"
            )
        if packing:
            if max_tokens is None:
                raise InvalidArgumentError("packing=True needs max_tokens (the number of tokens in each packed batch)")
            if label_column is not None:
                raise InvalidArgumentError(
                    "packing builds causal-LM labels from the ids; it cannot be used with label_column"
                )
        elif pack_split:
            raise InvalidArgumentError("pack_split=True needs packing=True")
        if max_tokens is None and batch_size is None:
            batch_size = 32

        self.tokenizer = tokenizer
        self.messages_column, self.prompt_column, self.completion_column = (
            messages_column, prompt_column, completion_column,
        )  # fmt: skip
        self.conversational = conversational
        self.chat_template, self.chat_template_kwargs = chat_template, dict(chat_template_kwargs or {})
        self.loss_on, self.on_empty, self.boundaries = loss_on, on_empty, boundaries
        self.text_column, self.text_pair_column = text_column, text_pair_column
        self.input_ids_column, self.label_column = input_ids_column, label_column
        self.label_dtype = label_dtype  # None: decided once from the data when first needed
        self.max_length = self._resolve_max_length(tokenizer, truncation, max_length, max_tokens)
        self.target_column = target_column
        # transformers' tokenizer(text_target=...) truncates the targets as the inputs, max_target_length replacing
        # max_length; a max_target_length given alone truncates the targets only.
        self.max_target_length = max_target_length if max_target_length is not None else self.max_length
        self.model, self.decoder_start_token_id = model, decoder_start_token_id
        self.truncation_strategy = (
            truncation if isinstance(truncation, str) and truncation != "do_not_truncate" else "longest_first"
        )
        self.add_special_tokens = add_special_tokens
        self.batch_size, self.max_tokens = batch_size, max_tokens
        self.bucketing, self.packing, self.pack_split = bucketing, packing, pack_split
        self.pad_to_multiple_of = pad_to_multiple_of
        self.shuffle, self.seed, self.num_epochs = shuffle, seed, num_epochs
        self.drop_last, self.even_batches = drop_last, even_batches
        self.return_tensors = return_tensors
        self.rank, self.world_size = _rank_and_world(rank, world_size)

        window = shuffle_buffer if shuffle else rows_per_unit
        if bucketing == "length":
            window = max(window, bucket_window or shuffle_buffer)
        if batch_size is not None and max_tokens is None:
            # Whole batches per window: only the stream's last batch can be short.
            window = -(-max(window, batch_size) // batch_size) * batch_size
        self.window = window

        self._sources: list[_Source] = open_sources(
            source,
            format,
            CsvOptions(csv_quoting, csv_delimiter, csv_has_header, tuple(csv_column_names or ()) or None),
            rows_per_unit,
        )
        type_column = None
        if input_ids_column is not None and tokenizer is not None and "token_type_ids" in tokenizer.model_input_names:
            if "token_type_ids" in self._sources[0].columns():
                type_column = "token_type_ids"
        self._type_column = type_column
        check_columns(
            self._sources,
            {
                "text_column": text_column,
                "text_pair_column": text_pair_column,
                "input_ids_column": input_ids_column,
                "label_column": label_column,
                "target_column": target_column,
                "messages_column": messages_column,
                "prompt_column": prompt_column,
                "completion_column": completion_column,
            },
        )
        self._columns = [
            c
            for c in (
                text_column,
                text_pair_column,
                input_ids_column,
                type_column,
                label_column,
                target_column,
                messages_column,
                prompt_column,
                completion_column,
            )  # fmt: skip
            if c is not None
        ]
        self._units = [
            Unit(index, part, rows)
            for index, source in enumerate(self._sources)
            for part, rows in enumerate(source.parts())
            if rows > 0
        ]
        self.num_examples = sum(unit.rows for unit in self._units)
        if self.num_examples == 0:
            raise DataSourceError(f"the data source holds no examples ({', '.join(s.name for s in self._sources)})")

        self.pad_token_id = pad_token_id if pad_token_id is not None else getattr(tokenizer, "pad_token_id", None)
        if self.pad_token_id is None and not packing:
            raise InvalidArgumentError(
                "Asking to pad but the tokenizer does not have a padding token: set tokenizer.pad_token "
                "(e.g. tokenizer.pad_token = tokenizer.eos_token) or pass pad_token_id"
            )
        self.padding_side = check_padding_side(getattr(tokenizer, "padding_side", "right"))
        self.pad_token_type_id = pad_values(tokenizer)["token_type_ids"]
        self._return_type_ids = text_column is not None and "token_type_ids" in tokenizer.model_input_names

        self._epoch = 0
        self._epoch_was_set = False  # set_epoch() wins over a loaded state's epoch, whatever the call order
        self._start_epoch = 0  # the epoch the current iteration began at (num_epochs > 1 spans several)
        # (epoch, window, batches yielded in that window) of the next batch; the end of an epoch is always
        # written (epoch + 1, 0, 0) so that every reader states the same boundary the same way.
        self._position = (0, 0, 0)
        self._resume: tuple[int, int, int] | None = None
        self._reader: tuple[int, int] | None = None
        self.stats = {"batches": 0, "examples": 0, "tokens": 0, "padded_tokens": 0}
        if conversational:
            self.stats["dropped"] = 0  # conversations left out with nothing to learn (on_empty="drop")

    # ----------------------------------------------------------------------------------------------
    # Settings

    @staticmethod
    def _resolve_max_length(
        tokenizer: Tokenizer | None, truncation: bool | str, max_length: int | None, max_tokens: int | None
    ) -> int | None:
        if truncation in (False, None, "do_not_truncate"):
            return None
        if truncation is not True and truncation not in ("longest_first", "only_first", "only_second"):
            raise InvalidArgumentError(
                "truncation must be True, False, 'longest_first', 'only_first', 'only_second' or "
                f"'do_not_truncate', got {truncation!r}"
            )
        if max_length is not None:
            return max_length
        model_max = known_max_length(getattr(tokenizer, "model_max_length", None))
        if model_max is not None:
            return model_max if max_tokens is None else min(model_max, max_tokens)
        if max_tokens is not None:
            return max_tokens
        raise InvalidArgumentError("truncation=True needs max_length (the tokenizer sets no model_max_length)")

    def _fingerprint(self) -> str:
        settings = {
            "units": [(u.source, u.part, u.rows) for u in self._units],
            "sources": [s.name for s in self._sources],
            "columns": self._columns,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "window": self.window,
            "batch_size": self.batch_size,
            "max_tokens": self.max_tokens,
            "bucketing": self.bucketing,
            "packing": [self.packing, self.pack_split],
            "max_length": self.max_length,
            "drop_last": [self.drop_last, self.even_batches],
        }
        if self.target_column is not None:  # only then: text streams keep their fingerprints
            settings["targets"] = [self.target_column, self.max_target_length]
        if self.conversational:
            settings["conversations"] = [self.chat_template, self.chat_template_kwargs, self.loss_on,
                                         self.on_empty, self.boundaries]  # fmt: skip
        return hashlib.sha256(json.dumps(settings, sort_keys=True, default=_stable_name).encode()).hexdigest()[:16]

    # ----------------------------------------------------------------------------------------------
    # Epochs and state

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch the next iteration starts at (a new deterministic order per epoch).

        After ``load_state_dict`` the iteration of ``epoch`` continues from the saved position when that
        position lies in ``epoch``, yields nothing when the saved position is already past ``epoch`` (its
        batches were all yielded), and starts ``epoch`` afresh when the saved position is in an earlier one.
        """
        self._epoch = int(epoch)
        self._epoch_was_set = True
        if self._resume is None or self._resume[0] < self._epoch:
            self._position = (self._epoch, 0, 0)

    def state_dict(self) -> dict[str, Any]:
        """The position after the last batch yielded (``StatefulDataLoader`` protocol)."""
        epoch, window, batch = self._resume if self._resume is not None else self._position
        reader, readers = self._reader if self._reader is not None else (None, None)
        return {
            "format": _STATE_FORMAT,
            "fingerprint": self._fingerprint(),
            "start_epoch": self._start_epoch if self._resume is None else self._resume_start,
            "epoch": epoch,
            "window": window,
            "batch": batch,
            "reader": reader,
            "readers": readers,
            "stats": dict(self.stats),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resumes at a saved position: the next iteration continues exactly where that one stopped."""
        if not isinstance(state, dict) or state.get("format") != _STATE_FORMAT:
            raise StateDictError("not a StreamingLoader state (wrong or missing 'format')")
        if state["fingerprint"] != self._fingerprint():
            raise StateDictError(
                "this state belongs to a loader over other data or with other shuffling/batching settings "
                "(fingerprints differ); build the loader with the same source and options to resume"
            )
        self._resume = (int(state["epoch"]), int(state["window"]), int(state["batch"]))
        self._resume_start = int(state.get("start_epoch", self._resume[0]))
        self._expected_reader = (state.get("reader"), state.get("readers"))
        if not self._epoch_was_set:
            # A StatefulDataLoader worker loads the state into a copy of the loader: without an explicit
            # set_epoch, the iteration restarts where the saved one started and skips what it already yielded.
            self._epoch = self._resume_start
        self._position = self._resume
        self.stats = dict(state.get("stats") or self.stats)

    # ----------------------------------------------------------------------------------------------
    # Sharding

    def _current_reader(self) -> tuple[int, int]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        return self.rank * workers + worker, self.world_size * workers

    def _epoch_order(self, epoch: int) -> list[Unit]:
        if not self.shuffle:
            return list(self._units)
        order = np.random.default_rng([self.seed & 0xFFFFFFFF, epoch]).permutation(len(self._units))
        return [self._units[i] for i in order]

    def _share(self, epoch: int, reader: int, readers: int) -> list[tuple[Unit, int, int]]:
        """The reader's examples as ``(unit, lo, hi)`` segments, in stream order."""
        total = self.num_examples
        if total < readers and not self.drop_last:
            raise InvalidInputError(
                f"{total} examples cannot be shared among {readers} readers (ranks x DataLoader workers): "
                "use fewer workers or pass drop_last=True"
            )
        begin, end = reader * total // readers, (reader + 1) * total // readers
        if self.drop_last:
            end = begin + total // readers
        segments: list[tuple[Unit, int, int]] = []
        position = 0
        for unit in self._epoch_order(epoch):
            lo, hi = max(begin - position, 0), min(end - position, unit.rows)
            if lo < hi:
                segments.append((unit, lo, hi))
            position += unit.rows
            if position >= end:
                break
        size = end - begin
        if self.even_batches and not self.drop_last and size < -(-total // readers):
            # Every reader yields the same number of examples: the short ones repeat their first (as
            # Accelerate's even_batches repeats samples from the start).
            unit, lo, _ = segments[0]
            segments.append((unit, lo, lo + 1))
        return segments

    # ----------------------------------------------------------------------------------------------
    # Reading and batching

    def _read_window(self, segments: list[tuple[Unit, int, int]]) -> Any:
        import pyarrow as pa

        tables = []
        for unit, lo, hi in segments:
            source = self._sources[unit.source]
            table = source.read(unit.part, lo, hi, self._columns)
            try:
                # Damaged metadata (a buffer length, an offset) reads without error and fails on first use.
                table.validate()
            except pa.ArrowException as err:
                raise DataSourceError(
                    f"'{source.name}' holds damaged data ({err}): the file is corrupt; re-create or re-copy it"
                ) from err
            tables.append(table)
        try:
            table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
        except (pa.ArrowTypeError, pa.ArrowInvalid) as err:
            raise self._type_clash(segments, tables, err) from err
        for name in self._columns:
            column = table.column(name)
            if column.null_count:
                row = next(i for i, valid in enumerate(column.is_valid().to_pylist()) if not valid)
                raise InvalidInputError(f"{self._describe(segments, row)}: no value for column '{name}'")
        return table

    def _type_clash(self, segments: list[tuple[Unit, int, int]], tables: list[Any], err: Exception) -> DataSourceError:
        for name in self._columns:
            types: dict[str, str] = {}
            for (unit, _, _), table in zip(segments, tables):
                types.setdefault(str(table.schema.field(name).type), self._sources[unit.source].name)
            if len(types) > 1:
                found = "; ".join(f"{kind} in {where}" for kind, where in types.items())
                return DataSourceError(
                    f"column '{name}' has different types in different files ({found}): make them agree "
                    "(e.g. cast the column when writing the files) or stream the files separately"
                )
        names = [self._sources[unit.source].name for unit, _, _ in segments]
        return DataSourceError(f"cannot combine rows of {names}: {err}")

    def _describe(self, segments: list[tuple[Unit, int, int]], row: int) -> str:
        for unit, lo, hi in segments:
            if row < hi - lo:
                return self._sources[unit.source].describe_row(unit.part, lo + row)
            row -= hi - lo
        return "?"

    def _tokenize(self, table: Any, segments: list[tuple[Unit, int, int]]) -> Any:
        if self.conversational:
            return self._tokenize_conversations(table, segments)
        if self.text_column is not None:
            pairs = arrow_column(table, self.text_pair_column, "text") if self.text_pair_column else None
            return _core.TokenRows.encode(
                self.tokenizer._core,
                arrow_column(table, self.text_column, "text"),
                pairs,
                text_column=self.text_column,
                pair_column=self.text_pair_column or "text_pair",
                max_length=self.max_length,
                truncation_strategy=self.truncation_strategy,
                truncation_side=getattr(self.tokenizer, "truncation_side", "right"),
                add_special_tokens=self.add_special_tokens,
                return_token_type_ids=self._return_type_ids,
            )
        types = arrow_column(table, self._type_column, "ids") if self._type_column else None
        rows = _core.TokenRows.from_arrow(
            arrow_column(table, self.input_ids_column, "ids"), types, column=self.input_ids_column
        )
        if self.max_length is not None and len(rows) and int(rows.lengths().max()) > self.max_length:
            raise InvalidInputError(
                f"'{self.input_ids_column}' holds examples longer than max_length={self.max_length}; "
                "pre-tokenized ids are not truncated: truncate them when tokenizing"
            )
        return rows

    def _tokenize_conversations(self, table: Any, segments: list[tuple[Unit, int, int]]) -> Any:
        """The window's conversations rendered, tokenized and labelled in the core; errors name file and line."""
        from .chat import encode_conversations

        if self.messages_column is not None:
            conversations = _conversation_column(table, self.messages_column, "user", self, segments)
            completions = None
        else:
            conversations = _conversation_column(table, self.prompt_column, "user", self, segments)
            completions = _conversation_column(table, self.completion_column, "assistant", self, segments)
        try:
            rows, _, dropped = encode_conversations(
                self.tokenizer, conversations, completions=completions, loss_on=self.loss_on,
                max_length=self.max_length, on_empty=self.on_empty, chat_template=self.chat_template,
                boundaries=self.boundaries, **self.chat_template_kwargs,
            )  # fmt: skip
        except (ChatTemplateError, InvalidInputError) as error:
            found = re.match(r"conversation (\d+)(.*)", str(error), flags=re.S)
            if not found:
                raise
            # "conversation 3 has no ..." -> "'data.jsonl', line 12: the conversation has no ..."
            where, rest = self._describe(segments, int(found.group(1))), found.group(2).lstrip(": ")
            raise type(error)(f"{where}: {rest}" if found.group(2).startswith(":") else
                              f"{where}: the conversation{found.group(2)}") from error  # fmt: skip
        self._dropped_now = len(dropped)
        return rows

    def _tokenize_targets(self, table: Any) -> Any:
        """The targets as ``tokenizer(text_target=...)`` encodes them (no token type ids), or None."""
        if self.target_column is None:
            return None
        return _core.TokenRows.encode(
            self.tokenizer._core,
            arrow_column(table, self.target_column, "text"),
            None,
            text_column=self.target_column,
            max_length=self.max_target_length,
            truncation_strategy="longest_first",
            truncation_side=getattr(self.tokenizer, "truncation_side", "right"),
            add_special_tokens=self.add_special_tokens,
            return_token_type_ids=False,
        )

    def _label_kind_of(self, column: Any) -> str:
        import pyarrow as pa

        if pa.types.is_integer(column.type) or pa.types.is_boolean(column.type):
            return "int64"
        if pa.types.is_floating(column.type):
            return "float32"
        if pa.types.is_null(column.type):
            return "null"
        raise InputTypeError(
            f"label column '{self.label_column}' has Arrow type {column.type}; labels must be integer class ids "
            "(map label names to ids first, e.g. with datasets' ClassLabel) or floats for regression"
        )

    def _decide_label_dtype(self) -> str:
        """One label dtype for the whole stream, from the first unit in file order (every reader decides
        alike): JSONL/CSV types are inferred per unit, and a unit of whole numbers must not turn a
        regression stream's labels into int64 for one batch."""
        unit = self._units[0]
        source = self._sources[unit.source]
        column = source.read(unit.part, 0, unit.rows, [self.label_column]).column(self.label_column)
        kind = self._label_kind_of(column)
        return "int64" if kind == "null" else kind

    def _labels(self, table: Any, segments: list[tuple[Unit, int, int]]) -> np.ndarray | None:
        import pyarrow.compute as pc

        if self.label_column is None:
            return None
        if self.label_dtype is None:
            self.label_dtype = self._decide_label_dtype()
        column = table.column(self.label_column).combine_chunks()
        kind = self._label_kind_of(column)
        values = column.to_numpy(zero_copy_only=False)
        if kind == "float32" and self.label_dtype == "int64":
            fractional = pc.not_equal(column, pc.floor(column))
            if pc.any(fractional).as_py():
                row = pc.index(fractional, True).as_py()
                raise InputTypeError(
                    f"{self._describe(segments, row)}: label {values[row]} is not a whole number, but the labels "
                    f"of the first examples ({self._sources[self._units[0].source].name}) are integers, read as "
                    "class ids; for regression pass label_dtype='float32' (or write every label with a decimal "
                    "point), for classification fix this label"
                )
        return values.astype(self.label_dtype)

    def _plan(self, rows: Any, seed: int, last_window: bool, targets: Any = None) -> list[np.ndarray]:
        if self.packing:
            return rows.plan_packs(self.max_tokens, split=self.pack_split, shuffle=self.shuffle, seed=seed)
        return rows.plan(
            batch_size=self.batch_size,
            max_tokens=self.max_tokens,
            bucket_by_length=self.bucketing == "length",
            shuffle=self.shuffle,
            drop_last=self.drop_last and last_window,
            pad_to_multiple_of=self.pad_to_multiple_of,
            seed=seed,
            targets=targets,
        )

    def _collate(self, rows: Any, plan: np.ndarray, labels: np.ndarray | None, targets: Any = None) -> dict[str, Any]:
        if self.packing:
            ids, targets, positions, cu_seq_lens, longest = rows.pack(plan, separator_id=_PACK_SEPARATOR_ID)
            batch: dict[str, Any] = {
                "input_ids": ids[None, :],
                "labels": targets[None, :],
                "position_ids": positions[None, :],
                "cu_seq_lens_q": cu_seq_lens,
                "cu_seq_lens_k": cu_seq_lens,
                "max_length_q": longest,
                "max_length_k": longest,
            }
            real = padded = ids.shape[0]
            examples = plan.shape[0]
        else:
            ids, mask, types, row_labels = rows.collate(
                plan,
                pad_id=self.pad_token_id,
                pad_type_id=self.pad_token_type_id,
                padding_side=self.padding_side,
                pad_to_multiple_of=self.pad_to_multiple_of,
            )
            batch = {"input_ids": ids}
            if types is not None:
                batch["token_type_ids"] = types
            batch["attention_mask"] = mask
            if labels is not None:
                batch["labels"] = labels[plan]
            if row_labels is not None:  # conversations: their own labels, padded with -100
                batch["labels"] = row_labels
            real, padded, examples = int(mask.sum()), mask.size, plan.shape[0]
            if targets is not None:
                # DataCollatorForSeq2Seq: the labels padded on their own, with -100, on the tokenizer's side.
                label_ids, label_mask, _, _ = targets.collate(
                    plan,
                    pad_id=_LABEL_PAD_ID,
                    padding_side=self.padding_side,
                    pad_to_multiple_of=self.pad_to_multiple_of,
                )
                batch["labels"] = label_ids
                real, padded = real + int(label_mask.sum()), padded + label_mask.size
        self.stats["batches"] += 1
        self.stats["examples"] += examples
        self.stats["tokens"] += real
        self.stats["padded_tokens"] += padded
        if self.return_tensors == "pt":
            batch = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in batch.items()}
        if targets is not None:
            decoder_inputs = self._decoder_input_ids(batch["labels"])
            if decoder_inputs is not None:
                batch["decoder_input_ids"] = decoder_inputs
        return batch

    def _decoder_input_ids(self, labels: Any) -> Any:
        """``DataCollatorForSeq2Seq``'s ``decoder_input_ids``: the model's ``prepare_decoder_input_ids_from_labels``,
        or the labels shifted right behind ``decoder_start_token_id`` (T5's / BART's shift); None without either."""
        if self.model is not None:
            prepare = getattr(self.model, "prepare_decoder_input_ids_from_labels", None)
            if prepare is None:  # transformers' collator then makes none either
                return None
            if isinstance(labels, np.ndarray):
                return np.asarray(prepare(labels=torch.from_numpy(labels)))
            return prepare(labels=labels)
        if self.decoder_start_token_id is None:
            return None
        shifted = np.empty(tuple(labels.shape), dtype=np.int64)
        source = labels.numpy() if isinstance(labels, torch.Tensor) else labels
        if shifted.shape[1]:
            shifted[:, 1:] = source[:, :-1]
            shifted[:, 0] = self.decoder_start_token_id
            shifted[shifted == _LABEL_PAD_ID] = self.pad_token_id
        return torch.from_numpy(shifted) if isinstance(labels, torch.Tensor) else shifted

    def count_batches(self, epoch: int | None = None, num_workers: int = 0) -> int:
        """How many batches this rank yields in ``epoch`` (default: the current one), summed over its
        ``num_workers`` DataLoader workers. Reads and tokenizes this rank's share once (nothing of other
        ranks), without collating. With ``max_tokens`` or ``packing`` the count depends on the lengths, so
        ranks can differ: take the minimum over ranks (``accelerator.gather`` / ``all_reduce(MIN)``) and stop
        there, or use ``accelerator.join_uneven_inputs``.
        """
        epoch = self._epoch if epoch is None else epoch
        workers = max(num_workers, 1)
        readers = self.world_size * workers
        total = 0
        for worker in range(workers):
            reader = self.rank * workers + worker
            segments = self._share(epoch, reader, readers)
            size = sum(hi - lo for _, lo, hi in segments)
            windows = -(-size // self.window)
            for window in range(windows):
                table = self._read_window(_slice_segments(segments, window * self.window, (window + 1) * self.window))
                seed = _mix(self.seed, epoch, reader, readers, window)
                window_segments = _slice_segments(segments, window * self.window, (window + 1) * self.window)
                rows = self._tokenize(table, window_segments)
                plans = self._plan(rows, seed, window == windows - 1, self._tokenize_targets(table))
                total += len(plans)
        return total

    def __iter__(self) -> Any:
        reader, readers = self._current_reader()
        expected = getattr(self, "_expected_reader", (None, None))
        if self._resume is not None and expected[1] is not None and expected[1] != readers:
            raise StateDictError(
                f"this state was saved with {expected[1]} readers (ranks x workers), now there are {readers}: "
                "resume with the same world size and num_workers"
            )
        self._reader = (reader, readers)
        first_epoch = self._start_epoch = self._epoch
        for epoch in range(first_epoch, first_epoch + self.num_epochs):
            start_window, start_batch = 0, 0
            if self._resume is not None:
                if self._resume[0] > epoch:
                    continue
                if self._resume[0] == epoch:
                    start_window, start_batch = self._resume[1], self._resume[2]
                self._resume = None
            yield from self._epoch_batches(epoch, reader, readers, start_window, start_batch)
            self._position = (epoch + 1, 0, 0)
        self._epoch = first_epoch + self.num_epochs

    def _epoch_batches(self, epoch: int, reader: int, readers: int, start_window: int, start_batch: int) -> Any:
        segments = self._share(epoch, reader, readers)
        size = sum(hi - lo for _, lo, hi in segments)
        windows = -(-size // self.window)
        for window in range(start_window, windows):
            rows_from, rows_to = window * self.window, min((window + 1) * self.window, size)
            window_segments = _slice_segments(segments, rows_from, rows_to)
            table = self._read_window(window_segments)
            rows = self._tokenize(table, window_segments)
            if self.conversational and not (window == start_window and start_batch > 0):
                # (a resumed window's drops were counted before its state was saved)
                self.stats["dropped"] += self._dropped_now
            labels = self._labels(table, window_segments)
            targets = self._tokenize_targets(table)
            seed = _mix(self.seed, epoch, reader, readers, window)
            plans = self._plan(rows, seed, window == windows - 1, targets)
            first = start_batch if window == start_window else 0
            for index in range(first, len(plans)):
                batch = self._collate(rows, plans[index], labels, targets)
                if index + 1 < len(plans):
                    self._position = (epoch, window, index + 1)
                else:
                    self._position = (epoch, window + 1, 0) if window + 1 < windows else (epoch + 1, 0, 0)
                yield batch

    def __getstate__(self) -> dict[str, Any]:
        for source in self._sources:
            source.close()  # open files and memory maps are reopened in the worker
        return self.__dict__.copy()


def _slice_segments(segments: list[tuple[Unit, int, int]], start: int, stop: int) -> list[tuple[Unit, int, int]]:
    """The part of a reader's segments covering its examples ``start..stop``."""
    out = []
    position = 0
    for unit, lo, hi in segments:
        length = hi - lo
        a, b = max(start - position, 0), min(stop - position, length)
        if a < b:
            out.append((unit, lo + a, lo + b))
        position += length
        if position >= stop:
            break
    return out


def _stable_name(value: Any) -> str:
    """A template variable that is not JSON (a tool function, a date) in the fingerprint: its qualified name or its
    text, the same in every process (never an address)."""
    if callable(value):
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', type(value).__qualname__)}"
    return f"{type(value).__qualname__}:{value}"
