"""The result of tokenization and padding, and the conversion of flat buffers to the formats users ask for."""

from __future__ import annotations

from collections import UserDict
from typing import Any, NamedTuple

import numpy as np

from .errors import InvalidArgumentError, InvalidInputError

TENSOR_TYPES = (None, "np", "pt", "arrow")

_RAGGED_TENSOR_MESSAGE = (
    "Unable to create tensor, you should probably activate truncation and/or padding with"
    " 'padding=True' 'truncation=True' to have batched tensors with the same length. Perhaps your"
    " features (`{key}` in this case) have excessive nesting (inputs type `list` where type `int` is"
    " expected)."
)


def normalize_tensor_type(return_tensors: Any) -> str | None:
    """Accepts None, 'np', 'pt', 'arrow' or an enum whose value is one of those (transformers' TensorType)."""
    value = getattr(return_tensors, "value", return_tensors)
    if value not in TENSOR_TYPES:
        raise InvalidArgumentError(f"return_tensors must be None, 'np', 'pt' or 'arrow', got {return_tensors!r}")
    return value


class CharSpan(NamedTuple):
    """A character span in an original string: ``start`` and ``end`` (exclusive), as transformers'."""

    start: int
    end: int


class TokenSpan(NamedTuple):
    """A span of tokens in an encoded row: ``start`` and ``end`` (exclusive), as transformers'."""

    start: int
    end: int


class Alignment:
    """Per row (overflow windows are rows) of an encoded batch: the word index, sequence index, token
    string and character offsets of every token, ``None`` for special tokens and padding, as transformers'
    fast ``Encoding`` holds them (``tokens`` and ``offsets`` are None until a method first needs them).
    ``ranges``: per row, how many sequence ranges its ``Encoding`` records (0 when none, where the crate
    counts every token as sequence 0 although ``sequence_ids`` are all None).

    Word and sequence ids arrive as flat int64 arrays (-1 for None) with the row boundaries; each is turned
    into Python lists (one conversion for the whole batch, each row a slice) when first read."""

    __slots__ = ("_arrays", "_lists", "bounds", "tokens", "offsets", "ranges")

    def __init__(
        self,
        word_ids: np.ndarray,
        sequence_ids: np.ndarray,
        bounds: list[int],
        tokens: list[list[str]] | None,
        offsets: list[list[tuple[int, int]]] | None,
        ranges: list[int],
    ) -> None:
        self._arrays = {"word_ids": word_ids, "sequence_ids": sequence_ids}
        self._lists: dict[str, list[list[int | None]]] = {}
        self.bounds = bounds
        self.tokens = tokens
        self.offsets = offsets
        self.ranges = ranges

    def __getstate__(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value)

    def _rows(self, name: str) -> list[list[int | None]]:
        rows = self._lists.get(name)
        if rows is None:
            values = self._arrays[name]
            # -1 (no word / sequence) becomes None in one vectorised pass, then one tolist for the batch
            objects = values.astype(object)
            objects[values < 0] = None
            flat = objects.tolist()
            bounds = self.bounds
            rows = self._lists[name] = [flat[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        return rows

    @property
    def word_ids(self) -> list[list[int | None]]:
        return self._rows("word_ids")

    @property
    def sequence_ids(self) -> list[list[int | None]]:
        return self._rows("sequence_ids")

    @property
    def rows(self) -> int:
        return len(self.bounds) - 1

    def sequence_range(self, row: int, sequence: int) -> range:
        """The tokens of sequence ``sequence`` in ``row``: the tokenizers crate's ``sequence_range``
        (the whole row when the row has no such sequence)."""
        ids = self.sequence_ids[row]
        if sequence >= self.ranges[row]:
            return range(len(ids))
        first = last = None
        for position, value in enumerate(ids):
            if value == sequence:
                if first is None:
                    first = position
                last = position
        if first is None or last is None:
            return range(0, 0)  # an empty sequence: nothing of the row is in it
        return range(first, last + 1)

    def token_sequence(self, row: int, token: int) -> int | None:
        """The crate's ``token_to_sequence``."""
        ids = self.sequence_ids[row]
        if token < 0 or token > len(ids):
            return None
        if self.ranges[row] == 0:
            return 0
        return ids[token] if token < len(ids) else None


_NOT_AVAILABLE = (
    "{method}() is not available: this BatchEncoding was not made by a ferrotune Tokenizer call "
    "(alignment needs the tokenizer's inputs; tokenizer.pad and the collators do not keep them)"
)


class BatchEncoding(UserDict):
    """A dict of model inputs, like transformers' ``BatchEncoding``: ``enc["input_ids"]``, ``enc.input_ids``,
    ``enc.keys()``, and ``enc.to(device)`` when it holds torch tensors.

    Made by a tokenizer call, it also answers transformers' alignment methods (``word_ids``,
    ``sequence_ids``, ``tokens``, ``token_to_word``, ``word_to_tokens``, ``char_to_token``, ...). Their data is
    computed by the Rust core on the first call of one of them (the tokenizer encodes the same inputs again,
    asking for it), so that calls which never ask pay nothing."""

    # The alignment data (an Alignment) once computed, and what computes it until then: a tokenizer and
    # the arguments of its core call.
    _alignment: Alignment | None = None
    _alignment_source: tuple[Any, dict[str, Any]] | None = None

    def __init__(self, data: Any = None, /, **kwargs: Any) -> None:
        # One C-level dict copy: UserDict's own __init__ sets keys one by one through Python, which is most of
        # the cost of a small collated batch.
        self.data = dict(data) if data is not None else {}
        if kwargs:
            self.data.update(kwargs)

    def convert_to_tensors(self, tensor_type: Any = None) -> BatchEncoding:
        """Converts every value to ``tensor_type`` ("pt", "np", "arrow") in place, as transformers' method does;
        values already of that type stay."""
        tensor_type = normalize_tensor_type(tensor_type)
        if tensor_type is not None:
            for key, value in self.data.items():
                self.data[key] = convert_value(value, key, tensor_type)
        return self

    def __getattr__(self, item: str) -> Any:
        if item == "data":  # only reached before __init__ has set it (e.g. while unpickling)
            raise AttributeError(item)
        try:
            return self.data[item]
        except KeyError:
            raise AttributeError(item) from None

    def __getstate__(self) -> dict[str, Any]:
        # Computed alignment data travels (with its token strings); the means to compute it (the tokenizer)
        # does not.
        state: dict[str, Any] = {"data": self.data}
        if self._alignment is not None:
            self._aligned("pickle", tokens=True, offsets=True)
            state["alignment"] = self._alignment
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.data = state["data"]
        if state.get("alignment") is not None:
            self._alignment = state["alignment"]

    # ----------------------------------------------------------------------------------------------
    # Alignment (transformers' fast BatchEncoding methods)

    def _aligned(self, method: str, *, tokens: bool = False, offsets: bool = False) -> Alignment:
        """The alignment data (word and sequence ids), with token strings and character offsets when asked
        for: each part computed by the tokenizer on the first call that needs it."""
        alignment = self._alignment
        if alignment is not None and (alignment.tokens is not None or not tokens):
            if alignment.offsets is not None or not offsets:
                return alignment
        source = self._alignment_source
        if source is None:
            if alignment is not None:  # unpickled: everything computed travelled with it
                return alignment
            raise InvalidArgumentError(_NOT_AVAILABLE.format(method=method))
        tokenizer, call = source
        if alignment is None:
            alignment = self._alignment = tokenizer._compute_alignment(call)
        if tokens and alignment.tokens is None:
            alignment.tokens = tokenizer._compute_tokens(call)
        if offsets and alignment.offsets is None:
            alignment.offsets = tokenizer._compute_offsets(call)
        return alignment

    def _row(self, alignment: Alignment, batch_index: int) -> int:
        rows = alignment.rows
        if batch_index < 0:
            batch_index += rows
        if not 0 <= batch_index < rows:
            raise IndexError(f"batch_index {batch_index} is out of range: the batch has {rows} rows")
        return batch_index

    def _resolve(
        self, method: str, first: int, second: int | None, *, offsets: bool = False
    ) -> tuple[Alignment, int, int]:
        """``(batch_index, index)`` from transformers' ``(batch_or_index, index=None)`` calling convention."""
        alignment = self._aligned(method, offsets=offsets)
        batch_index, index = (0, first) if second is None else (first, second)
        row = self._row(alignment, batch_index)
        return alignment, row, index

    def tokens(self, batch_index: int = 0) -> list[str]:
        """The token strings of row ``batch_index`` (padding gives the pad token)."""
        alignment = self._aligned("tokens", tokens=True)
        return list(alignment.tokens[self._row(alignment, batch_index)])  # type: ignore[index]

    def sequence_ids(self, batch_index: int = 0) -> list[int | None]:
        """The sequence (0 or 1 for a pair) of each token of row ``batch_index``; None for special tokens
        and padding."""
        alignment = self._aligned("sequence_ids")
        return list(alignment.sequence_ids[self._row(alignment, batch_index)])

    def word_ids(self, batch_index: int = 0) -> list[int | None]:
        """The word of each token of row ``batch_index`` (the index in the words given with
        ``is_split_into_words=True``, else in the pre-tokenizer's words); None for special tokens and padding."""
        alignment = self._aligned("word_ids")
        return list(alignment.word_ids[self._row(alignment, batch_index)])

    def words(self, batch_index: int = 0) -> list[int | None]:
        """Same as :meth:`word_ids` (transformers 4's older name)."""
        alignment = self._aligned("words")
        return list(alignment.word_ids[self._row(alignment, batch_index)])

    def token_to_sequence(self, batch_or_token_index: int, token_index: int | None = None) -> int | None:
        """The sequence of a token: ``token_to_sequence(token)`` or ``token_to_sequence(batch, token)``."""
        alignment, row, token = self._resolve("token_to_sequence", batch_or_token_index, token_index)
        if token < 0:
            token += len(alignment.sequence_ids[row])
        return alignment.token_sequence(row, token)

    def token_to_word(self, batch_or_token_index: int, token_index: int | None = None) -> int | None:
        """The word of a token, None for special tokens and padding: ``token_to_word(token)`` or
        ``token_to_word(batch, token)``."""
        alignment, row, token = self._resolve("token_to_word", batch_or_token_index, token_index)
        if token < 0:
            token += len(alignment.word_ids[row])
        if alignment.token_sequence(row, token) is None:
            return None
        words = alignment.word_ids[row]
        return words[token] if 0 <= token < len(words) else None

    def word_to_tokens(
        self, batch_or_word_index: int, word_index: int | None = None, sequence_index: int = 0
    ) -> TokenSpan | None:
        """The tokens ``[start, end)`` of a word of sequence ``sequence_index``, or None."""
        alignment, row, word = self._resolve("word_to_tokens", batch_or_word_index, word_index)
        return self._word_tokens(alignment, row, word, sequence_index)

    @staticmethod
    def _word_tokens(alignment: Alignment, row: int, word: int, sequence_index: int) -> TokenSpan | None:
        span = alignment.sequence_range(row, sequence_index)
        start = end = None
        # the tokenizers crate's scan: stop at the first word past the one asked for
        for position in span:
            value = alignment.word_ids[row][position]
            if value is not None and value > word:
                break
            if value == word:
                if start is None:
                    start = position
                end = position + 1
        if start is None or end is None:
            return None
        return TokenSpan(start, end)

    def token_to_chars(self, batch_or_token_index: int, token_index: int | None = None) -> CharSpan | None:
        """The characters ``[start, end)`` of a token in its original string (its word, with
        ``is_split_into_words=True``), or None for special tokens and padding."""
        alignment, row, token = self._resolve("token_to_chars", batch_or_token_index, token_index, offsets=True)
        if token < 0:
            token += len(alignment.offsets[row])
        if alignment.token_sequence(row, token) is None:
            return None
        offsets = alignment.offsets[row]
        return CharSpan(*offsets[token]) if 0 <= token < len(offsets) else None

    def char_to_token(
        self, batch_or_char_index: int, char_index: int | None = None, sequence_index: int = 0
    ) -> int | None:
        """The token holding character ``char_index`` of sequence ``sequence_index``, or None."""
        alignment, row, char = self._resolve("char_to_token", batch_or_char_index, char_index, offsets=True)
        return self._char_token(alignment, row, char, sequence_index)

    @staticmethod
    def _char_token(alignment: Alignment, row: int, char: int, sequence_index: int) -> int | None:
        offsets = alignment.offsets[row]
        for position in alignment.sequence_range(row, sequence_index):
            start, end = offsets[position]
            if start <= char < end:
                return position
        return None

    def word_to_chars(
        self, batch_or_word_index: int, word_index: int | None = None, sequence_index: int = 0
    ) -> CharSpan | None:
        """The characters ``[start, end)`` of a word of sequence ``sequence_index``, or None."""
        alignment, row, word = self._resolve("word_to_chars", batch_or_word_index, word_index, offsets=True)
        span = self._word_tokens(alignment, row, word, sequence_index)
        if span is None or span.end == 0:
            return None
        offsets = alignment.offsets[row]
        return CharSpan(offsets[span.start][0], offsets[span.end - 1][1])

    def char_to_word(
        self, batch_or_char_index: int, char_index: int | None = None, sequence_index: int = 0
    ) -> int | None:
        """The word holding character ``char_index`` of sequence ``sequence_index``, or None."""
        alignment, row, char = self._resolve("char_to_word", batch_or_char_index, char_index, offsets=True)
        token = self._char_token(alignment, row, char, sequence_index)
        if token is None or alignment.token_sequence(row, token) is None:
            return None
        return alignment.word_ids[row][token]

    def to(self, device: Any, *, non_blocking: bool = False) -> BatchEncoding:
        """Moves every torch tensor to ``device`` (in place, like transformers) and returns ``self``."""
        import torch

        self.data = {
            key: value.to(device=device, non_blocking=non_blocking) if isinstance(value, torch.Tensor) else value
            for key, value in self.data.items()
        }
        return self


class Column:
    """One output key as flat values and row boundaries, as the Rust core returns it."""

    __slots__ = ("values", "starts", "width", "pair")

    def __init__(self, values: np.ndarray, starts: np.ndarray, width: int | None, pair: bool = False) -> None:
        self.values = values  # int64, flat; with pair=True two values per token (offsets)
        self.starts = starts  # int64 row boundaries, counted in tokens
        if width is None and len(starts) > 1:
            lengths = np.diff(starts)
            if (lengths == lengths[0]).all():
                width = int(lengths[0])  # unpadded rows of one length make a matrix, as in transformers
        self.width = width  # common row length, or None when rows differ
        self.pair = pair

    @property
    def rows(self) -> int:
        return len(self.starts) - 1

    def matrix(self) -> np.ndarray:
        """A (rows, width) view (or (rows, width, 2) for offsets); only valid when width is not None."""
        shape = (self.rows, self.width, 2) if self.pair else (self.rows, self.width)
        return self.values.reshape(shape)

    def row_arrays(self) -> list[np.ndarray]:
        step = 2 if self.pair else 1
        starts = (self.starts * step).tolist()
        rows = [self.values[a:b] for a, b in zip(starts[:-1], starts[1:])]
        return [row.reshape(-1, 2) for row in rows] if self.pair else rows

    def to_lists(self) -> list:
        if self.width is not None:
            lists = self.matrix().tolist()
        else:
            flat = self.values.reshape(-1, 2).tolist() if self.pair else self.values.tolist()
            bounds = self.starts.tolist()
            lists = [flat[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        if self.pair:  # transformers gives offsets as tuples
            return [[tuple(offset) for offset in row] for row in lists]
        return lists

    def to_numpy(self) -> np.ndarray:
        if self.width is not None:
            return self.matrix()
        # transformers turns ragged rows into an object array of per-row arrays
        rows = self.row_arrays()
        out = np.empty(len(rows), dtype=object)
        out[:] = rows
        return out

    def to_torch(self, key: str) -> Any:
        import torch

        if self.width is None and self.rows > 1:
            raise InvalidInputError(_RAGGED_TENSOR_MESSAGE.format(key=key))
        if self.width is None:  # a single row is never ragged
            return torch.from_numpy(self.values.reshape((1, -1, 2) if self.pair else (1, -1)))
        return torch.from_numpy(self.matrix())

    def to_arrow(self) -> Any:
        import pyarrow as pa

        offsets = pa.array(self.starts.astype(np.int32), type=pa.int32())
        values = self.values.astype(np.int32)
        if self.pair:
            inner = pa.FixedSizeListArray.from_arrays(pa.array(values, type=pa.int32()), 2)
            return pa.ListArray.from_arrays(offsets, inner)
        return pa.ListArray.from_arrays(offsets, pa.array(values, type=pa.int32()))


def convert_value(value: Any, key: str, return_tensors: str | None) -> Any:
    """Converts a value that is not a padded column (labels, lengths, ...) the way transformers does."""
    if return_tensors is None:
        return value
    if isinstance(value, Column):
        if return_tensors == "np":
            return value.to_numpy()
        if return_tensors == "pt":
            return value.to_torch(key)
        return value.to_arrow()
    if return_tensors == "arrow":
        import pyarrow as pa

        return pa.array(to_py_obj(value))
    if return_tensors == "np":
        return _as_numpy(to_py_obj(value), key)
    import torch

    if isinstance(value, torch.Tensor):
        return value
    value = to_py_obj(value)
    try:
        if _is_empty(value):
            return torch.tensor(value, dtype=torch.int64)
        return torch.tensor(value)
    except Exception as error:
        raise InvalidInputError(_RAGGED_TENSOR_MESSAGE.format(key=key)) from error


def _as_numpy(value: Any, key: str) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], (list, tuple, np.ndarray)):
        if len({len(v) for v in value}) > 1:
            out = np.empty(len(value), dtype=object)
            out[:] = [np.asarray(v) for v in value]
            return out
    if _is_empty(value):
        return np.asarray(value, dtype=np.int64)
    try:
        return np.asarray(value)
    except Exception as error:
        raise InvalidInputError(_RAGGED_TENSOR_MESSAGE.format(key=key)) from error


def _is_empty(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_is_empty(v) for v in value)
    return False


def to_py_obj(value: Any) -> Any:
    """Torch tensors and NumPy arrays (also nested in lists) to Python lists and numbers."""
    if isinstance(value, np.ndarray) or isinstance(value, np.generic):
        return value.tolist()
    if hasattr(value, "detach") and hasattr(value, "tolist"):  # torch.Tensor without importing torch
        return value.detach().cpu().tolist()
    if isinstance(value, (list, tuple)):
        return [to_py_obj(v) for v in value]
    if isinstance(value, dict):
        return {k: to_py_obj(v) for k, v in value.items()}
    return value


def build_output(columns: dict[str, Any], return_tensors: str | None, *, unbatch: bool = False) -> BatchEncoding:
    """Turns a dict of :class:`Column` (and plain values) into a BatchEncoding in the requested format."""
    if return_tensors == "arrow":
        import pyarrow as pa

        names = list(columns)
        arrays = [convert_value(columns[name], name, "arrow") for name in names]
        return pa.RecordBatch.from_arrays(arrays, names=names)
    out: dict[str, Any] = {}
    for key, value in columns.items():
        if return_tensors is None and isinstance(value, Column):
            value = value.to_lists()
            if unbatch and value and isinstance(value[0], list):
                value = value[0]
        elif return_tensors is None and unbatch and isinstance(value, list) and value and isinstance(value[0], list):
            value = value[0]
        else:
            value = convert_value(value, key, return_tensors)
        out[key] = value
    return BatchEncoding(out)
