"""The result of tokenization and padding, and the conversion of flat buffers to the formats users ask for."""

from __future__ import annotations

from collections import UserDict
from typing import Any

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


class BatchEncoding(UserDict):
    """A dict of model inputs, like transformers' ``BatchEncoding``: ``enc["input_ids"]``, ``enc.input_ids``,
    ``enc.keys()``, and ``enc.to(device)`` when it holds torch tensors."""

    def __init__(self, data: Any = None, /, **kwargs: Any) -> None:
        # One C-level dict copy: UserDict's own __init__ sets keys one by one through Python, which is most of
        # the cost of a small collated batch.
        self.data = dict(data) if data is not None else {}
        if kwargs:
            self.data.update(kwargs)

    def __getattr__(self, item: str) -> Any:
        if item == "data":  # only reached before __init__ has set it (e.g. while unpickling)
            raise AttributeError(item)
        try:
            return self.data[item]
        except KeyError:
            raise AttributeError(item) from None

    def __getstate__(self) -> dict[str, Any]:
        return {"data": self.data}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.data = state["data"]

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
