"""Drop-ins for transformers' data collators, padded and masked in ferrotune's Rust core.

Each collator takes the arguments of its transformers namesake and returns the same keys, dtypes, shapes and
values. The tokenizer may be a ferrotune ``Tokenizer`` or any transformers tokenizer: collation only reads its
padding settings (pad token id, padding side, model input names), at every call, as transformers does.

Inputs: a list of dicts whose values are Python lists, NumPy arrays or torch tensors (what ``datasets`` rows give in
each format), a dict of lists (a ``datasets`` slice), or an Arrow batch (``pyarrow.RecordBatch`` / ``Table``, a
``datasets.Dataset`` or an Arrow-formatted slice of one). Arrow batches are read through the Arrow C data interface
in Rust: no Python object per example or per token.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np

from . import _core
from . import padding as _padding
from .batch_encoding import BatchEncoding, Column, convert_value
from .errors import EmptyBatchError, InputTypeError, InvalidArgumentError, InvalidInputError

__all__ = [
    "DefaultDataCollator",
    "DataCollatorForCompletionOnlyLM",
    "DataCollatorForLanguageModeling",
    "DataCollatorForSeq2Seq",
    "DataCollatorForTokenClassification",
    "DataCollatorWithFlattening",
    "DataCollatorWithPadding",
    "default_data_collator",
]

_RETURN_TENSORS = ("pt", "np")


# --------------------------------------------------------------------------------------------------
# Shared machinery


def _padding_strategy(padding: Any, max_length: int | None, tokenizer: Any) -> tuple[str, int | None]:
    """transformers' resolution of ``padding`` / ``max_length`` for ``tokenizer.pad``."""
    strategy = _padding.padding_strategy(padding)
    if strategy != "max_length":
        return strategy, None
    if max_length is None:
        max_length = _padding.known_max_length(getattr(tokenizer, "model_max_length", None))
        if max_length is None:
            return "do_not_pad", None  # transformers: no length known, so no padding
    return "max_length", _padding.check_max_length(max_length)


def _check_return_tensors(return_tensors: Any) -> str:
    value = getattr(return_tensors, "value", return_tensors)
    if value not in _RETURN_TENSORS:
        raise InvalidArgumentError(f"Framework '{return_tensors}' not recognized! Use 'pt' or 'np'.")
    return value


def _padding_side(tokenizer: Any) -> str:
    return _padding.check_padding_side(getattr(tokenizer, "padding_side", "right"))


def _pad_values(tokenizer: Any, strategy: str) -> tuple[list[tuple[str, int]], bool]:
    """The keys ``tokenizer.pad`` pads, with their pad values (the model's main input first), and whether it
    creates an attention mask."""
    names = list(getattr(tokenizer, "model_input_names", None) or ["input_ids", "attention_mask"])
    pad_token_id = tokenizer.pad_token_id
    if strategy != "do_not_pad" and (tokenizer.pad_token is None or pad_token_id is None or pad_token_id < 0):
        raise _padding.no_pad_token_error(tokenizer)
    return list(_padding.pad_values(tokenizer).items()), "attention_mask" in names


# Types seen exporting a record batch themselves (pyarrow.RecordBatch...): a set lookup skips the checks below.
_ARROW_BATCH_TYPES: set[type] = set()


def _as_arrow_batch(features: Any) -> Any | None:
    """An Arrow record batch for the Arrow inputs (RecordBatch, Table, datasets.Dataset); None for the others."""
    if type(features) in _ARROW_BATCH_TYPES:
        return features
    if hasattr(features, "__arrow_c_array__") and not isinstance(features, (list, tuple, Mapping, np.ndarray)):
        _ARROW_BATCH_TYPES.add(type(features))
        return features
    module = type(features).__module__
    if module.startswith("pyarrow") and hasattr(features, "to_batches"):  # pyarrow.Table
        batches = features.to_batches()
        if len(batches) == 1:
            return batches[0]
        if not batches:
            raise EmptyBatchError("the batch is empty: a collator needs at least one example")
        return features.combine_chunks().to_batches()[0]
    if module.startswith("datasets") and hasattr(features, "with_format"):  # datasets.Dataset
        return _as_arrow_batch(features.with_format("arrow")[:])
    return None


def _examples(features: Any) -> Any:
    """A list of per-example mappings from a list/tuple of examples or a dict of lists (a datasets slice)."""
    if isinstance(features, Mapping):
        keys = list(features)
        if not keys:
            raise EmptyBatchError("the batch is empty: a collator needs at least one example")
        columns = [features[key] for key in keys]
        lengths = {len(column) for column in columns}
        if len(lengths) != 1:
            raise InvalidInputError(
                "a dict of lists must have one value per example in every key, got lengths "
                + ", ".join(f"'{k}': {len(c)}" for k, c in zip(keys, columns))
            )
        return [dict(zip(keys, values)) for values in zip(*columns)]
    return features


def _settings_key(tokenizer: Any, *settings: Any) -> tuple:
    """Everything a padding plan is made from: the tokenizer's padding settings, read at every call as
    transformers does, and the collator's own."""
    names = getattr(tokenizer, "model_input_names", None)
    return (
        tokenizer.pad_token_id,
        tokenizer.pad_token,
        getattr(tokenizer, "padding_side", "right"),
        tuple(names) if names else None,
        getattr(tokenizer, "pad_token_type_id", 0),
        getattr(tokenizer, "model_max_length", None),
        *settings,
    )


def _make_plan(
    tokenizer: Any,
    padding: Any,
    max_length: int | None,
    pad_to_multiple_of: int | None,
    independent: tuple[tuple[str, int, str, int | None], ...],
) -> Any:
    strategy, length = _padding_strategy(padding, max_length, tokenizer)
    multiple = _padding.check_multiple(pad_to_multiple_of)
    pad_values, create_mask = _pad_values(tokenizer, strategy)
    return _padding.collation_plan(
        tuple(pad_values), create_mask, strategy, length, multiple, _padding_side(tokenizer), tuple(independent)
    )


class _PlanCache:
    """Keeps the Rust padding plan of the last settings seen: the settings are read and compared at every call,
    but resolved and parsed only when they change."""

    _plan_key: Any = None
    _plan_value: Any = None

    def _plan(
        self,
        tokenizer: Any,
        return_tensors: Any,
        padding: Any,
        max_length: int | None,
        pad_to_multiple_of: int | None,
        independent: tuple[tuple[str, int, str, int | None], ...] = (),
    ) -> tuple[Any, str, Any]:
        """``(plan, return_tensors, convert)``: convert is ``torch.from_numpy`` for "pt", else None."""
        key = _settings_key(tokenizer, return_tensors, padding, max_length, pad_to_multiple_of, independent)
        if key != self._plan_key:
            checked = _check_return_tensors(return_tensors)
            plan = _make_plan(tokenizer, padding, max_length, pad_to_multiple_of, independent)
            self._plan_value = (plan, checked, _torch().from_numpy if checked == "pt" else None)
            self._plan_key = key
        return self._plan_value

    def __getstate__(self) -> dict[str, Any]:
        # The plan is a Rust object (not picklable) and cheap to rebuild.
        return {k: v for k, v in self.__dict__.items() if k not in ("_plan_key", "_plan_value")}


def _collate(plan: Any, features: Any) -> list[tuple[str, str, Any, Any]]:
    """Pads a batch in one Rust call; returns ``(name, kind, data, starts)`` per output column."""
    batch = _as_arrow_batch(features)
    if batch is not None:
        return plan.arrow(batch)
    return plan.examples(_examples(features))


def _collate_dict(plan: Any, features: Any, return_tensors: str, convert: Any) -> dict[str, Any]:
    """Pads a batch in one Rust call into ``{name: tensor or array}``."""
    if type(features) is list:
        out, pending = plan.examples_dict(features, convert)
    else:
        batch = _as_arrow_batch(features)
        if batch is not None:
            out, pending = plan.arrow_dict(batch, convert)
        else:
            out, pending = plan.examples_dict(_examples(features), convert)
    for name in pending:  # columns Rust left to Python: ragged rows, floats, objects
        out[name] = _to_tensor(name, *out[name], return_tensors)
    return out


def _to_tensor(name: str, kind: str, data: Any, starts: Any, return_tensors: str) -> Any:
    if kind == "padded" or kind == "int":
        return _torch().from_numpy(data) if return_tensors == "pt" else data
    if kind == "ragged":
        column = Column(data, starts, None)
        lengths = np.diff(starts)
        if len(lengths) and (lengths == lengths[0]).all():  # unpadded but equal lengths: still a matrix
            matrix = data.reshape(len(lengths), int(lengths[0]))
            return _torch().from_numpy(matrix) if return_tensors == "pt" else matrix
        return column.to_torch(name) if return_tensors == "pt" else column.to_numpy()
    if kind == "float":
        if return_tensors == "pt":
            torch = _torch()
            return torch.from_numpy(data).to(torch.get_default_dtype())
        return data
    return convert_value(data, name, return_tensors)


_TORCH: Any = None


def _torch() -> Any:
    """torch, imported on first use (ferrotune works without it for NumPy output)."""
    global _TORCH
    if _TORCH is None:
        import torch

        _TORCH = torch
    return _TORCH


def _first_example(features: Any) -> Mapping[str, Any] | None:
    if isinstance(features, (list, tuple)):
        if not features:
            raise EmptyBatchError("the batch is empty: a collator needs at least one example")
        return features[0] if isinstance(features[0], Mapping) else None
    return None


def _label_column(features: Any) -> tuple[str, bool]:
    """transformers' label key: "label" when the batch has it, else "labels"; and whether the batch has it."""
    names = _column_names(features)
    label_name = "label" if "label" in names else "labels"
    return label_name, label_name in names


def _column_names(features: Any) -> list[str]:
    first = _first_example(features)
    if first is not None:
        return list(first)
    if isinstance(features, Mapping):
        return list(features)
    batch = _as_arrow_batch(features)
    return list(batch.schema.names) if batch is not None else []


# --------------------------------------------------------------------------------------------------
# default_data_collator


def default_data_collator(features: Any, return_tensors: str = "pt") -> dict[str, Any]:
    """transformers' ``default_data_collator``: stacks a batch of dict-like examples (or objects, through their
    ``vars``) that need no padding. ``label`` (one int or float per example) and ``label_ids`` (a list per example)
    become ``labels`` (int64 for integers, float32 for floats; torch tensors / NumPy arrays are stacked as they
    are); every other key whose first value is not None or a string is stacked: torch tensors with
    ``torch.stack``, NumPy arrays with ``np.stack``, numbers and lists with ``torch.tensor`` / ``np.array``. The
    first example decides which keys exist.

    Also takes a dict of lists (a ``datasets`` slice) or an Arrow batch. ``return_tensors``: "pt" or "np".
    Examples that cannot be stacked (a missing key, another length or shape) raise ``InvalidInputError`` naming
    the key and the example.
    """
    return_tensors = _check_return_tensors(return_tensors)
    features = _default_examples(features)
    if return_tensors == "pt":
        return _torch_default_collate(features)
    return _numpy_default_collate(features)


@dataclass
class DefaultDataCollator:
    """transformers' ``DefaultDataCollator``: :func:`default_data_collator` with ``return_tensors`` set once."""

    return_tensors: str = "pt"

    def __call__(self, features: Any, return_tensors: str | None = None) -> dict[str, Any]:
        return default_data_collator(features, self.return_tensors if return_tensors is None else return_tensors)


def _default_examples(features: Any) -> list[Any]:
    batch = _as_arrow_batch(features)
    if batch is not None:
        features = batch.to_pylist()
    features = _examples(features)
    if not isinstance(features, (list, tuple)):
        features = list(features)
    if not features:
        raise EmptyBatchError("the batch is empty: a collator needs at least one example")
    if not isinstance(features[0], Mapping):
        try:
            features = [vars(f) for f in features]
        except TypeError as err:
            raise InputTypeError(
                f"default_data_collator takes dict-like examples (or objects with attributes), got "
                f"{type(features[0]).__name__}"
            ) from err
    return features


def _stack_error(features: list[Any], key: str, err: Exception) -> InvalidInputError:
    """A clear error for a key whose values cannot be stacked: names the first example that differs."""
    first = features[0][key]
    for i, feature in enumerate(features):
        if not isinstance(feature, Mapping) or key not in feature:
            return InvalidInputError(f"default_data_collator: example {i} has no '{key}' (example 0 has)")
        value = feature[key]
        if value is None and first is not None:
            return InvalidInputError(f"default_data_collator: '{key}' is None in example {i} but not in example 0")
        shape, first_shape = _shape(value), _shape(first)
        if shape is not None and first_shape is not None and shape != first_shape:
            return InvalidInputError(
                f"default_data_collator: '{key}' has shape {tuple(shape)} in example {i} but {tuple(first_shape)} "
                "in example 0; it stacks examples without padding (use DataCollatorWithPadding to pad them)"
            )
    return InvalidInputError(f"default_data_collator: cannot stack '{key}': {err}")


def _shape(value: Any) -> tuple[int, ...] | None:
    """The shape a value stacks with; None for ragged nested lists and objects."""
    if hasattr(value, "shape"):
        return tuple(value.shape)
    try:
        return tuple(np.shape(value))
    except ValueError:  # ragged nested lists
        return None


def _torch_default_collate(features: list[Any]) -> dict[str, Any]:
    torch = _torch()
    first = features[0]
    batch: dict[str, Any] = {}
    key = ""
    try:
        if "label" in first and first["label"] is not None:
            key = "label"
            label = first["label"].item() if isinstance(first["label"], torch.Tensor) else first["label"]
            dtype = torch.long if isinstance(label, (int, np.integer)) else torch.float
            batch["labels"] = torch.tensor([f["label"] for f in features], dtype=dtype)
        elif "label_ids" in first and first["label_ids"] is not None:
            key = "label_ids"
            if isinstance(first["label_ids"], torch.Tensor):
                batch["labels"] = torch.stack([f["label_ids"] for f in features])
            else:
                dtype = torch.long if isinstance(first["label_ids"][0], (int, np.integer)) else torch.float
                values = [f["label_ids"] for f in features]
                if all(isinstance(v, np.ndarray) for v in values):  # same values as torch.tensor, without its slow path
                    batch["labels"] = torch.from_numpy(np.stack(values)).to(dtype)
                else:
                    batch["labels"] = torch.tensor(values, dtype=dtype)
        for key, value in first.items():
            if key not in ("label", "label_ids") and value is not None and not isinstance(value, str):
                if isinstance(value, torch.Tensor):
                    batch[key] = torch.stack([f[key] for f in features])
                elif isinstance(value, np.ndarray):
                    batch[key] = torch.from_numpy(np.stack([f[key] for f in features]))
                else:
                    batch[key] = torch.tensor([f[key] for f in features])
    except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as err:
        raise _stack_error(features, key, err) from err
    return batch


def _numpy_default_collate(features: list[Any]) -> dict[str, Any]:
    first = features[0]
    batch: dict[str, Any] = {}
    key = ""
    try:
        if "label" in first and first["label"] is not None:
            key = "label"
            label = first["label"].item() if isinstance(first["label"], np.ndarray) else first["label"]
            dtype = np.int64 if isinstance(label, (int, np.integer)) else np.float32
            batch["labels"] = np.array([f["label"] for f in features], dtype=dtype)
        elif "label_ids" in first and first["label_ids"] is not None:
            key = "label_ids"
            if isinstance(first["label_ids"], np.ndarray):
                batch["labels"] = np.stack([f["label_ids"] for f in features])
            else:
                dtype = np.int64 if isinstance(first["label_ids"][0], (int, np.integer)) else np.float32
                batch["labels"] = np.array([f["label_ids"] for f in features], dtype=dtype)
        for key, value in first.items():
            if key not in ("label", "label_ids") and value is not None and not isinstance(value, str):
                if isinstance(value, np.ndarray):
                    batch[key] = np.stack([f[key] for f in features])
                else:
                    batch[key] = np.array([f[key] for f in features])
    except (KeyError, ValueError, TypeError, IndexError) as err:
        raise _stack_error(features, key, err) from err
    return batch


# --------------------------------------------------------------------------------------------------
# The collators


@dataclass
class DataCollatorWithPadding(_PlanCache):
    """transformers' ``DataCollatorWithPadding``: pads ``input_ids`` (and ``token_type_ids``, ``attention_mask``,
    ``special_tokens_mask``) to the longest example, ``max_length`` or a multiple; renames ``label`` /
    ``label_ids`` to ``labels``; other numeric keys pass through as tensors."""

    tokenizer: Any
    padding: bool | str = True
    max_length: int | None = None
    pad_to_multiple_of: int | None = None
    return_tensors: str = "pt"

    def __call__(self, features: Any) -> BatchEncoding:
        plan, return_tensors, convert = self._plan(
            self.tokenizer, self.return_tensors, self.padding, self.max_length, self.pad_to_multiple_of
        )
        batch = _collate_dict(plan, features, return_tensors, convert)
        for old in ("label", "label_ids"):
            if old in batch:
                batch["labels"] = batch.pop(old)
        return BatchEncoding(batch)


@dataclass
class DataCollatorForTokenClassification(_PlanCache):
    """transformers' ``DataCollatorForTokenClassification``: inputs padded as ``DataCollatorWithPadding`` does,
    labels padded to the same length with ``label_pad_token_id`` on the tokenizer's padding side."""

    tokenizer: Any
    padding: bool | str = True
    max_length: int | None = None
    pad_to_multiple_of: int | None = None
    label_pad_token_id: int = -100
    return_tensors: str = "pt"

    def __call__(self, features: Any, return_tensors: str | None = None) -> BatchEncoding:
        label_name, has_labels = _label_column(features)
        independent = ((label_name, int(self.label_pad_token_id), "main", None),) if has_labels else ()
        plan, return_tensors, convert = self._plan(
            self.tokenizer,
            self.return_tensors if return_tensors is None else return_tensors,
            self.padding,
            self.max_length,
            self.pad_to_multiple_of,
            independent,
        )
        batch = _collate_dict(plan, features, return_tensors, convert)
        if label_name in batch:  # transformers puts the labels last
            batch[label_name] = batch.pop(label_name)
        return BatchEncoding(batch)


@dataclass
class DataCollatorForSeq2Seq(_PlanCache):
    """transformers' ``DataCollatorForSeq2Seq``: inputs padded by the tokenizer's rules, ``labels`` padded on their
    own (to their longest, or ``max_length``) with ``label_pad_token_id``; ``decoder_input_ids`` from
    ``model.prepare_decoder_input_ids_from_labels`` when the model has it."""

    tokenizer: Any
    model: Any | None = None
    padding: bool | str = True
    max_length: int | None = None
    pad_to_multiple_of: int | None = None
    label_pad_token_id: int = -100
    return_tensors: str = "pt"

    def __call__(self, features: Any, return_tensors: str | None = None) -> BatchEncoding:
        label_name, has_labels = _label_column(features)
        first = _first_example(features)
        if has_labels and first is not None and all(f[label_name] is None for f in features):
            # transformers: {..., "labels": None} means no labels
            features = [{k: v for k, v in f.items() if k != label_name} for f in features]
            has_labels = False
        independent: tuple[tuple[str, int, str, int | None], ...] = ()
        if has_labels:
            mode = _padding.label_padding(self.padding, self.max_length)
            independent = ((label_name, int(self.label_pad_token_id), mode, self.max_length),)
        plan, return_tensors, convert = self._plan(
            self.tokenizer,
            self.return_tensors if return_tensors is None else return_tensors,
            self.padding,
            self.max_length,
            self.pad_to_multiple_of,
            independent,
        )
        batch = _collate_dict(plan, features, return_tensors, convert)
        if label_name not in batch:
            batch["labels"] = None
            return BatchEncoding(batch)
        batch["labels"] = batch.pop(label_name)
        if self.model is not None and hasattr(self.model, "prepare_decoder_input_ids_from_labels"):
            batch["decoder_input_ids"] = self.model.prepare_decoder_input_ids_from_labels(labels=batch["labels"])
        return BatchEncoding(batch)


@dataclass
class DataCollatorForLanguageModeling(_PlanCache):
    """transformers' ``DataCollatorForLanguageModeling``. ``mlm=True``: 15% (``mlm_probability``) of the tokens that
    are not special or padding are selected; of those, ``mask_replace_prob`` become the mask token,
    ``random_replace_prob`` a random vocabulary id, the rest stay; labels are the original ids there and -100
    elsewhere. ``mlm=False``: causal LM labels (input ids, padding -> -100).

    ``whole_word_mask=True`` (as transformers 5): words are found from the examples' ``offset_mapping`` (tokenize
    with ``return_offsets_mapping=True``): a token that is not special and starts where the previous token ended
    continues the previous token's word. Each word's first token is selected with ``mlm_probability`` and a
    selected word is masked whole; every masked token becomes the mask token (transformers warns and sets
    ``mask_replace_prob=1``, ``random_replace_prob=0``). Without ``offset_mapping`` (where transformers fails),
    ferrotune takes words from a ``word_ids`` column (the course's ``tokenized.word_ids(i)``: one word index per
    token, None for special tokens; consumed, not returned), else from the tokenizer's continuation prefix
    (WordPiece's ``##``). Unlike transformers, ``offset_mapping`` rows of different lengths are padded too.

    Randomness (``rng``):

    - ``"rust"`` (default, fastest): masks drawn in Rust. With ``seed`` set, batch *k* of a process is masked from
      ``(seed, worker id, k)``, reproducibly (in DataLoader workers the worker id is added, as transformers does).
      Without a seed each batch draws its seed from torch's global generator (NumPy's when torch is absent), so
      ``torch.manual_seed`` / ``transformers.set_seed`` make runs repeatable, but the masks differ from
      transformers' (same distribution).
    - ``"torch"``: the masks are drawn exactly as transformers' ``torch_mask_tokens`` draws them (the same
      ``torch.bernoulli`` / ``torch.randint`` calls on the same shapes, in the same order) from torch's global
      generator, or from ``torch.Generator().manual_seed(seed + worker id)`` with ``seed``: under
      ``transformers.set_seed(s)`` the inputs and labels equal transformers' (``return_tensors="pt"``) bit for bit.
    - ``"numpy"``: likewise for transformers' ``numpy_mask_tokens`` (``return_tensors="np"``): NumPy's global
      generator, or ``np.random.default_rng(seed + worker id)``.
    """

    tokenizer: Any
    mlm: bool = True
    whole_word_mask: bool = False
    mlm_probability: float | None = 0.15
    mask_replace_prob: float = 0.8
    random_replace_prob: float = 0.1
    pad_to_multiple_of: int | None = None
    return_tensors: str = "pt"
    seed: int | None = None
    rng: str = "rust"
    _calls: int = field(default=0, init=False, repr=False)
    _stream: int | None = field(default=None, init=False, repr=False)
    _generator: Any = field(default=None, init=False, repr=False)
    _prefix: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.rng not in _RNGS:
            raise InvalidArgumentError(f"rng must be one of {', '.join(map(repr, _RNGS))}, got {self.rng!r}")
        if self.mlm:
            if getattr(self.tokenizer, "mask_token", None) is None:
                raise InvalidArgumentError(
                    "This tokenizer does not have a mask token which is necessary for masked language modeling. "
                    "You should pass `mlm=False` to train on causal language modeling instead."
                )
            if (
                self.mlm_probability is None
                or isinstance(self.mlm_probability, bool)
                or not isinstance(self.mlm_probability, (int, float, np.integer, np.floating))
                or not 0 <= self.mlm_probability <= 1
            ):
                raise InvalidArgumentError(f"mlm_probability should be between 0 and 1, got {self.mlm_probability!r}.")
            self.mlm_probability = float(self.mlm_probability)
        elif self.whole_word_mask:
            raise InvalidArgumentError(
                "Whole word masking can only be used with mlm=True. "
                "If you want to use whole word masking, please set mlm=True."
            )
        if self.mask_replace_prob + self.random_replace_prob > 1:
            raise InvalidArgumentError("The sum of mask_replace_prob and random_replace_prob should not exceed 1")
        if not 0 <= self.mask_replace_prob <= 1:
            raise InvalidArgumentError("mask_replace_prob should be between 0 and 1.")
        if not 0 <= self.random_replace_prob <= 1:
            raise InvalidArgumentError("random_replace_prob should be between 0 and 1.")
        if self.seed is not None and (not isinstance(self.seed, (int, np.integer)) or isinstance(self.seed, bool)):
            raise InvalidArgumentError(f"seed must be an int or None, got {self.seed!r}")
        if self.whole_word_mask:
            if not getattr(self.tokenizer, "is_fast", True):
                warnings.warn(
                    "Whole word masking depends on offset mapping which is only natively available with fast "
                    "tokenizers.",
                    UserWarning,
                    stacklevel=3,
                )
            if self.mask_replace_prob < 1:
                warnings.warn(
                    "Random token replacement is not supported with whole word masking. "
                    "Setting mask_replace_prob to 1.",
                    stacklevel=3,
                )
                self.mask_replace_prob = 1
                self.random_replace_prob = 0
        self.mask_replace_prob = float(self.mask_replace_prob)
        self.random_replace_prob = float(self.random_replace_prob)

    def __getstate__(self) -> dict[str, Any]:
        # The plan and a torch generator are not picklable; both are rebuilt on first use.
        state = super().__getstate__()
        state.pop("_generator", None)
        return state

    def _worker_id(self) -> int:
        if mp.current_process().name == "MainProcess":
            return 0
        import torch

        info = torch.utils.data.get_worker_info()
        if info is None:
            raise InvalidArgumentError(
                "Worker process information is not available for seeding the generator: the `seed` parameter "
                "can only be used with multiprocessing through a PyTorch DataLoader."
            )
        return info.id

    def _next_seed(self) -> int:
        if self.seed is None:
            try:
                import torch

                return int(torch.randint(0, 2**62, (1,)).item())
            except ImportError:
                return int(np.random.randint(0, 2**62, dtype=np.int64))
        if self._stream is None:
            self._stream = int(self.seed) + self._worker_id()
        self._calls += 1
        # Mix (stream, call) into one 64-bit seed; SplitMix64 in Rust decorrelates neighbouring seeds.
        return ((self._stream & 0xFFFFFFFF) << 32 | (self._calls & 0xFFFFFFFF)) & 0xFFFFFFFFFFFFFFFF

    def _transformers_generator(self) -> Any:
        """transformers' ``self.generator``: None (the global RNG) without a seed, else made once per process."""
        if self.seed is None:
            return None
        if self._generator is None:
            seed = int(self.seed) + self._worker_id()
            if self.rng == "torch":
                self._generator = _torch().Generator().manual_seed(seed)
            else:
                self._generator = np.random.default_rng(seed)
        return self._generator

    def __call__(self, examples: Any, return_tensors: str | None = None) -> dict[str, Any]:
        return_tensors = _check_return_tensors(self.return_tensors if return_tensors is None else return_tensors)
        first = _first_example(examples)
        word_columns: dict[str, Any] = {}
        if first is not None or isinstance(examples, Mapping) or _as_arrow_batch(examples) is not None:
            arrow = _as_arrow_batch(examples)
            if arrow is not None:
                # Arrow offsets and word ids are lists of pairs / of ids with nulls: read them here, pad the rest
                # in Rust.
                wanted = ("offset_mapping", "word_ids") if self.whole_word_mask else ("offset_mapping",)
                names = [n for n in wanted if n in arrow.schema.names]
                if names:
                    word_columns = {n: ("object", arrow.column(n).to_pylist(), None) for n in names}
                    examples = arrow.drop_columns(names)
            plan = self._plan(self.tokenizer, "np", True, None, self.pad_to_multiple_of)[0]
            columns = _collate(plan, examples)
            batch: dict[str, Any] = {name: (kind, data, starts) for name, kind, data, starts in columns}
        else:
            batch = {"input_ids": self._collate_sequences(examples)}
        input_ids = batch["input_ids"]
        if input_ids[0] != "padded":
            raise InvalidInputError("input_ids could not be padded into one matrix")
        ids = input_ids[1]
        special = batch.pop("special_tokens_mask", None)
        offsets = batch.pop("offset_mapping", word_columns.get("offset_mapping"))
        word_ids = batch.pop("word_ids", word_columns.get("word_ids")) if self.whole_word_mask else None
        if special is not None:
            if special[0] != "padded":
                raise InvalidInputError("special_tokens_mask could not be padded into one matrix like input_ids")
            special = special[1]
            if special.shape != ids.shape:
                raise InvalidInputError(f"special_tokens_mask has shape {special.shape} but input_ids has {ids.shape}")
        if self.mlm:
            words = self._words(ids, special, offsets, word_ids) if self.whole_word_mask else None
            if self.rng == "rust":
                labels = self._rust_mask(ids, special, words)
            elif self.rng == "torch":
                labels = self._torch_mask(ids, special, words)
            else:
                labels = self._numpy_mask(ids, special, words)
        else:
            labels = ids.copy()
            if self.tokenizer.pad_token_id is not None:
                labels[labels == self.tokenizer.pad_token_id] = -100
        batch["labels"] = ("padded", labels, None)
        out = {name: _to_tensor(name, *column, return_tensors) for name, column in batch.items()}
        return BatchEncoding(out) if first is not None else out

    # ----------------------------------------------------------------------------------------------
    # Masking

    def _special_ids(self) -> list[int]:
        ids = getattr(self.tokenizer, "all_special_ids", None)
        return list(ids) if ids is not None else []

    def _special_mask(self, ids: np.ndarray, special: np.ndarray | None) -> np.ndarray:
        """transformers' ``special_tokens_mask``: the batch's, else ``get_special_tokens_mask`` of each row
        (1 where the id is one of the tokenizer's special ids)."""
        if special is not None:
            return special
        return np.isin(ids, np.asarray(self._special_ids(), dtype=np.int64)).astype(np.int64)

    def _rust_mask(self, ids: np.ndarray, special: np.ndarray | None, words: Any) -> np.ndarray:
        mask_id = int(self.tokenizer.mask_token_id)
        if words is None:
            return _core.mask_tokens(
                ids,
                special,
                [int(i) for i in self._special_ids()],
                self.mlm_probability,
                self.mask_replace_prob,
                self.random_replace_prob,
                mask_id,
                len(self.tokenizer),
                self._next_seed(),
            )
        word_ids, no_mask = words
        originals = ids.copy()
        starts = _core.mask_tokens(
            ids, no_mask.astype(np.int64), [], self.mlm_probability, 1.0, 0.0, mask_id, 1, self._next_seed()
        )
        masked = _expand_words(word_ids, starts != -100)
        ids[...] = originals
        ids[masked] = mask_id  # whole-word masking replaces every masked token by the mask token
        return np.where(masked, originals, np.int64(-100))

    def _torch_mask(self, ids: np.ndarray, special: np.ndarray | None, words: Any) -> np.ndarray:
        """transformers' ``torch_mask_tokens``, call for call."""
        torch = _torch()
        generator = self._transformers_generator()
        inputs = torch.from_numpy(ids)  # shares ids' memory: ids are masked in place
        labels = inputs.clone()
        probability_matrix = torch.full(labels.shape, self.mlm_probability)
        if words is not None:
            word_ids, no_mask = words
            no_mask_mask = torch.tensor(no_mask, dtype=torch.bool)
        else:
            no_mask_mask = torch.from_numpy(self._special_mask(ids, special).astype(bool))
        probability_matrix.masked_fill_(no_mask_mask, value=0.0)
        masked_indices = torch.bernoulli(probability_matrix, generator=generator).bool()
        if words is not None:
            masked_indices = torch.from_numpy(_expand_words(word_ids, masked_indices.numpy()))
        labels[~masked_indices] = -100
        indices_replaced = (
            torch.bernoulli(torch.full(labels.shape, self.mask_replace_prob), generator=generator).bool()
            & masked_indices
        )
        inputs[indices_replaced] = int(self.tokenizer.mask_token_id)
        if self.mask_replace_prob == 1 or self.random_replace_prob == 0:
            return labels.numpy()
        random_replace_prob_scaled = self.random_replace_prob / (1 - self.mask_replace_prob)
        indices_random = (
            torch.bernoulli(torch.full(labels.shape, random_replace_prob_scaled), generator=generator).bool()
            & masked_indices
            & ~indices_replaced
        )
        random_words = torch.randint(len(self.tokenizer), labels.shape, dtype=torch.long, generator=generator)
        inputs[indices_random] = random_words[indices_random]
        return labels.numpy()

    def _numpy_mask(self, ids: np.ndarray, special: np.ndarray | None, words: Any) -> np.ndarray:
        """transformers' ``numpy_mask_tokens``, call for call."""
        generator = self._transformers_generator()
        source = generator if generator is not None else np.random
        labels = np.copy(ids)
        probability_matrix = np.full(labels.shape, self.mlm_probability)
        if words is not None:
            word_ids, no_mask_mask = words
        else:
            no_mask_mask = self._special_mask(ids, special).astype(bool)
        probability_matrix[no_mask_mask] = 0
        masked_indices = source.binomial(1, probability_matrix, size=probability_matrix.shape).astype(bool)
        if words is not None:
            masked_indices = _expand_words(word_ids, masked_indices)
        labels[~masked_indices] = -100
        indices_replaced = source.binomial(1, self.mask_replace_prob, size=labels.shape).astype(bool) & masked_indices
        ids[indices_replaced] = int(self.tokenizer.mask_token_id)
        if self.mask_replace_prob == 1 or self.random_replace_prob == 0:
            return labels
        random_replace_prob_scaled = self.random_replace_prob / (1 - self.mask_replace_prob)
        indices_random = (
            source.binomial(1, random_replace_prob_scaled, size=labels.shape).astype(bool)
            & masked_indices
            & ~indices_replaced
        )
        count = np.count_nonzero(indices_random)
        if generator is not None:
            random_words = generator.integers(low=0, high=len(self.tokenizer), size=count, dtype=np.int64)
        else:
            random_words = np.random.randint(low=0, high=len(self.tokenizer), size=count, dtype=np.int64)
        ids[indices_random] = random_words
        return labels

    # ----------------------------------------------------------------------------------------------
    # Whole words

    def _words(
        self, ids: np.ndarray, special: np.ndarray | None, offsets: Any, word_ids: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(word_ids, no_mask)`` as transformers' ``_calc_word_ids_and_prob_mask``: word ids per token (-1 for
        special tokens), and True where a token may not be selected (special tokens and tokens continuing a word).
        Words come from ``offset_mapping`` (transformers' rule), else a ``word_ids`` column (the course's
        ``result.word_ids(i)``; None for special tokens), else the tokenizer's continuation prefix."""
        special_mask = self._special_mask(ids, special)
        if offsets is not None:
            return _words_from_offsets(self._offsets_matrix(offsets, ids.shape), special_mask)
        if word_ids is not None:
            return _words_from_word_ids(self._word_ids_matrix(word_ids, ids.shape), special_mask)
        prefix = self._continuation_prefix()
        tokens = self.tokenizer.convert_ids_to_tokens(ids.reshape(-1).tolist())
        continues = np.fromiter(
            (isinstance(t, str) and t.startswith(prefix) for t in tokens), dtype=bool, count=ids.size
        ).reshape(ids.shape)
        special_bool = special_mask.astype(bool)
        is_new_word = ~special_bool & ~continues
        # A continuation after a special token (or first in its row) still starts a word.
        previous_special = np.roll(special_bool, 1, axis=1)
        previous_special[:, 0] = True
        is_new_word |= ~special_bool & continues & previous_special
        word_ids = np.cumsum(is_new_word, axis=1)
        word_ids[special_bool] = -1
        return word_ids, ~is_new_word

    def _offsets_matrix(self, offsets: tuple[str, Any, Any], shape: tuple[int, ...]) -> np.ndarray:
        """The batch's ``offset_mapping`` as a ``(batch, length, 2)`` int64 array, rows padded with (0, 0) on the
        tokenizer's padding side to the padded ``input_ids``."""
        kind, data, _ = offsets
        rows = data if kind == "object" else list(data)
        if len(rows) != shape[0]:
            raise InvalidInputError(f"offset_mapping has {len(rows)} rows but the batch has {shape[0]} examples")
        matrix = np.zeros((shape[0], shape[1], 2), dtype=np.int64)
        left = _padding_side(self.tokenizer) == "left"
        if _fill_pairs(matrix, rows, left):
            return matrix
        for i, row in enumerate(rows):
            if hasattr(row, "detach"):
                row = row.detach().cpu().numpy()
            try:
                pairs = np.asarray(row, dtype=np.int64) if len(row) else np.zeros((0, 2), np.int64)
            except (ValueError, TypeError) as err:
                raise InvalidInputError(
                    f"offset_mapping of example {i} is not a list of (start, end) pairs: {err}"
                ) from err
            if pairs.ndim != 2 or pairs.shape[1] != 2:
                raise InvalidInputError(
                    f"offset_mapping of example {i} is not a list of (start, end) pairs: shape {pairs.shape}"
                )
            n = len(pairs)
            if n > shape[1]:
                raise InvalidInputError(
                    f"offset_mapping of example {i} has {n} pairs but its input_ids are padded to {shape[1]} tokens"
                )
            if left:
                matrix[i, shape[1] - n :] = pairs
            else:
                matrix[i, :n] = pairs
        return matrix

    def _word_ids_matrix(self, word_ids: tuple[str, Any, Any], shape: tuple[int, ...]) -> np.ndarray:
        """The batch's ``word_ids`` as a ``(batch, length)`` int64 array, None -> -1, rows padded with -1 on the
        tokenizer's padding side to the padded ``input_ids``."""
        kind, data, _ = word_ids
        rows = data if kind == "object" else list(data)
        if len(rows) != shape[0]:
            raise InvalidInputError(f"word_ids has {len(rows)} rows but the batch has {shape[0]} examples")
        matrix = np.full(shape, -1, dtype=np.int64)
        left = _padding_side(self.tokenizer) == "left"
        for i, row in enumerate(rows):
            if hasattr(row, "tolist"):
                row = row.tolist()
            if not isinstance(row, (list, tuple)) or not all(
                w is None or (isinstance(w, (int, np.integer)) and not isinstance(w, bool) and w >= 0) for w in row
            ):
                raise InvalidInputError(
                    f"word_ids of example {i} must be a list of word indices (ints >= 0) or None, got {row!r:.80}"
                )
            n = len(row)
            if n > shape[1]:
                raise InvalidInputError(
                    f"word_ids of example {i} has {n} entries but its input_ids are padded to {shape[1]} tokens"
                )
            values = [-1 if w is None else int(w) for w in row]
            if left:
                matrix[i, shape[1] - n :] = values
            else:
                matrix[i, :n] = values
        return matrix

    def _continuation_prefix(self) -> str:
        """The tokenizer's continuation prefix (WordPiece's ``##``), read from its tokenizer.json model."""
        key = id(self.tokenizer)
        if self._prefix is not None and self._prefix[0] == key:
            return self._prefix[1]
        prefix = None
        backend = getattr(self.tokenizer, "_core", None) or getattr(self.tokenizer, "backend_tokenizer", None)
        try:
            model = json.loads(backend.to_str())["model"]
            if model.get("type") == "WordPiece":
                prefix = model.get("continuing_subword_prefix") or "##"
        except Exception:
            prefix = None
        if not prefix:
            raise InvalidInputError(
                "whole_word_mask=True needs the examples' offset_mapping (tokenize with return_offsets_mapping=True) "
                "for this tokenizer: it has no WordPiece continuation prefix to find words by"
            )
        self._prefix = (key, prefix)
        return prefix

    def _collate_sequences(self, examples: Any) -> tuple[str, Any, Any]:
        """transformers' ``_torch_collate_batch``: plain sequences of ids, padded only when they differ in length."""
        if not isinstance(examples, (list, tuple)) or not examples:
            raise EmptyBatchError("the batch is empty: a collator needs at least one example")
        lengths = [len(e) for e in examples]
        multiple = _padding.check_multiple(self.pad_to_multiple_of)
        same = all(n == lengths[0] for n in lengths) and (multiple is None or lengths[0] % multiple == 0)
        if not same and self.tokenizer.pad_token is None:
            raise InvalidArgumentError(
                "You are attempting to pad samples but the tokenizer you are using"
                f" ({type(self.tokenizer).__name__}) does not have a pad token."
            )
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        plan = _padding.collation_plan(
            (("input_ids", int(pad_id)),), False, "longest", None, multiple, _padding_side(self.tokenizer)
        )
        _, kind, data, starts = plan.examples([{"input_ids": e} for e in examples])[0]
        return kind, data, starts


_RNGS = ("rust", "torch", "numpy")


def _words_from_offsets(offsets: np.ndarray, special_tokens_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """transformers' ``_calc_word_ids_and_prob_mask``: a token that is not special starts a word when it does not
    start where the previous token ended, or follows a special token."""
    token_starts = offsets[:, :, 0]
    prev_token_ends = np.roll(offsets[:, :, 1], 1, axis=1)
    prev_token_ends[:, 0] = -1
    prev_token_special = np.roll(special_tokens_mask, 1, axis=1)
    prev_token_special[:, 0] = 0
    special = special_tokens_mask.astype(bool)
    is_new_word = ~special & ((token_starts != prev_token_ends) | (prev_token_special == 1))
    word_ids = np.cumsum(is_new_word, axis=1)
    word_ids[special] = -1
    return word_ids, ~is_new_word


def _fill_pairs(matrix: np.ndarray, rows: list[Any], left: bool) -> bool:
    """Fast path of ``_offsets_matrix`` for Python lists of (start, end) pairs (what tokenizers return): one
    ``np.fromiter`` for the whole batch. False (nothing written) for any other input; the slow path then converts
    row by row and names a bad example."""
    if not all(type(row) in (list, tuple) for row in rows):
        return False
    pairs = list(chain.from_iterable(rows))
    try:
        if pairs and set(map(len, pairs)) != {2}:
            return False
        flat = np.fromiter(chain.from_iterable(pairs), dtype=np.int64, count=2 * len(pairs))
    except (TypeError, ValueError, OverflowError):
        return False
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    width = matrix.shape[1]
    if (lengths > width).any():
        return False
    columns = np.arange(width)
    where = columns >= (width - lengths)[:, None] if left else columns < lengths[:, None]
    matrix[where] = flat.reshape(-1, 2)
    return True


def _words_from_word_ids(word_ids: np.ndarray, special_tokens_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Words from per-token word indices (-1 for none): a token with a word index starts a word when the previous
    token has another index or none."""
    valid = (word_ids >= 0) & ~special_tokens_mask.astype(bool)
    previous = np.roll(word_ids, 1, axis=1)
    previous_valid = np.roll(valid, 1, axis=1)
    previous_valid[:, 0] = False
    is_new_word = valid & (~previous_valid | (word_ids != previous))
    words = np.cumsum(is_new_word, axis=1)
    words[~valid] = -1
    return words, ~is_new_word


def _expand_words(word_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """transformers' ``_whole_word_mask``: a token is masked when any token of its word is. Word ids grow along
    each row, so one flat lookup per batch replaces transformers' (batch, length, length) comparison."""
    rows, length = word_ids.shape
    valid = word_ids != -1
    flat = (word_ids + np.arange(rows, dtype=np.int64)[:, None] * (length + 2)).reshape(-1)
    chosen = np.zeros(rows * (length + 2), dtype=bool)
    hit = (mask.astype(bool) & valid).reshape(-1)
    chosen[flat[hit]] = True
    return chosen[flat].reshape(rows, length) & valid


# Flattening reads the ids and, when the batch has them, the labels, as they are (nothing is padded).
_FLATTENING_PLAN = _padding.collation_plan(
    (("input_ids", 0),), False, "do_not_pad", None, None, "right", (("labels", -100, "do_not_pad", None),)
)


class DataCollatorWithFlattening:
    """transformers' ``DataCollatorWithFlattening``: padding-free packing of the batch into one row of shape
    ``[1, total_tokens]``, with ``labels`` separated by ``separator_id`` and ``position_ids`` restarting per example;
    optionally FlashAttention's ``cu_seq_lens_q/k`` and ``max_length_q/k``, and ``seq_idx``."""

    def __init__(
        self,
        *args: Any,
        return_position_ids: bool = True,
        separator_id: int = -100,
        return_flash_attn_kwargs: bool = False,
        return_seq_idx: bool = False,
        position_ids_start: int = 0,
        **kwargs: Any,
    ) -> None:
        self.return_tensors = args[0] if args else kwargs.pop("return_tensors", "pt")
        if kwargs:
            raise InvalidArgumentError(f"unknown arguments: {sorted(kwargs)}")
        self.return_position_ids = return_position_ids
        self.separator_id = separator_id
        self.return_flash_attn_kwargs = return_flash_attn_kwargs
        self.return_seq_idx = return_seq_idx
        self.position_ids_start = position_ids_start

    def __repr__(self) -> str:
        return (
            f"DataCollatorWithFlattening(return_tensors={self.return_tensors!r}, "
            f"return_position_ids={self.return_position_ids}, separator_id={self.separator_id}, "
            f"return_flash_attn_kwargs={self.return_flash_attn_kwargs}, return_seq_idx={self.return_seq_idx}, "
            f"position_ids_start={self.position_ids_start})"
        )

    def __call__(self, features: Any, return_tensors: str | None = None, separator_id: int | None = None) -> dict:
        return_tensors = self.return_tensors if return_tensors is None else return_tensors
        if return_tensors not in _RETURN_TENSORS:
            raise InvalidArgumentError(
                f'return_tensors must be one of ("pt", "np"), return_tensors={return_tensors!r} not supported'
            )
        separator_id = self.separator_id if separator_id is None else separator_id
        batch_or_examples = _as_arrow_batch(features)
        if batch_or_examples is None:
            batch_or_examples = _examples(features)
            if not isinstance(batch_or_examples, (list, tuple)) or not batch_or_examples:
                raise EmptyBatchError("the batch is empty: a collator needs at least one example")
        ids, labels, position_ids, cu_seq_lens, longest = _FLATTENING_PLAN.flatten(
            batch_or_examples, separator_id=separator_id, position_ids_start=self.position_ids_start
        )
        lengths = np.diff(cu_seq_lens)
        batch: dict[str, Any] = {"input_ids": ids, "labels": labels}
        if self.return_position_ids:
            batch["position_ids"] = position_ids
        if self.return_seq_idx:
            batch["seq_idx"] = np.repeat(np.arange(len(lengths)), lengths).astype(np.int32)
        if self.return_flash_attn_kwargs:
            batch["cu_seq_lens_q"] = cu_seq_lens
            batch["cu_seq_lens_k"] = cu_seq_lens.copy()
            batch["max_length_q"] = batch["max_length_k"] = longest
        for key in ("input_ids", "labels", "position_ids", "seq_idx"):
            if key in batch:
                batch[key] = batch[key].reshape(1, -1)
        if return_tensors == "pt":
            torch = _torch()
            for key, value in batch.items():
                if isinstance(value, np.ndarray):
                    batch[key] = torch.from_numpy(np.ascontiguousarray(value))
        return batch


# --------------------------------------------------------------------------------------------------
# Supervised fine-tuning (TRL's SFT collator)

# The per-token masks TRL's SFTTrainer turns into labels: "completion_mask" (prompt-completion data; only with
# completion_only_loss) and "assistant_masks" (apply_chat_template's return_assistant_tokens_mask; always).
_SFT_MASKS = ("completion_mask", "assistant_masks")


@dataclass
class DataCollatorForCompletionOnlyLM:
    """TRL 1.16's SFT collator (``trl.trainer.sft_trainer.DataCollatorForLanguageModeling``), padded in the Rust
    core: the same arguments, defaults, output keys, dtypes, shapes and values, plus the completion / assistant
    masking TRL's ``SFTTrainer`` does while preparing the dataset, so a plain transformers ``Trainer`` gets
    completion-only labels from the collator alone.

    Each example has ``input_ids`` and optionally ``labels``, ``completion_mask``, ``assistant_masks`` and
    ``seq_lengths`` (the documents of a packed row); other keys (``attention_mask`` included) are ignored, as TRL
    ignores them. Labels: an example's ``labels`` as given (TRL: "used as is"); without them, ``input_ids`` where
    every applicable mask is 1 (``assistant_masks`` always, ``completion_mask`` when ``completion_only_loss``, as
    TRL 1.16's dataset preparation builds them), -100 elsewhere and on padding.

    Returns (a plain dict, like TRL):

    - ``padding_free=False``: ``input_ids`` (padded with ``pad_token_id``), ``labels`` (-100), ``position_ids``
      (only with ``return_position_ids``; restarting at each document of ``seq_lengths``), ``attention_mask``,
      padded on the right to the longest example, rounded up to ``pad_to_multiple_of``.
    - ``padding_free=True``: the batch as one ``[1, total]`` row: ``input_ids``, ``labels`` (-100 on the first
      token of each example or document), ``position_ids``, ``cu_seq_lens_q``/``_k`` (int32), ``max_length_q``/``_k``
      (ints) and ``seq_idx`` (int32); the row is padded to ``pad_to_multiple_of`` and, as in TRL, each padding
      position then counts as a sequence of its own in ``cu_seq_lens``.

    Differences from TRL's class, on purpose: ``completion_only_loss`` (default True, what ``SFTTrainer`` decides
    for prompt-completion data) and the mask columns are honoured here (TRL's collator ignores them and expects
    ``labels`` built beforehand); ``return_tensors="np"`` works (NumPy arrays); ids are always int64; errors are
    ferrotune's and name the example and the key. The name is not TRL < 0.20's ``DataCollatorForCompletionOnlyLM``
    (``response_template``): mark the completion with ``completion_mask`` / ``assistant_masks`` instead.

    With transformers' ``Trainer``, pass ``remove_unused_columns=False`` in ``TrainingArguments`` when examples carry
    ``completion_mask``, ``assistant_masks`` or ``seq_lengths``: the Trainer otherwise drops the keys the model's
    ``forward`` does not take before the collator sees them.
    """

    pad_token_id: int
    padding_free: bool = False
    return_position_ids: bool = False
    pad_to_multiple_of: int | None = None
    return_tensors: str = "pt"
    completion_only_loss: bool = True

    def __post_init__(self) -> None:
        _check_pad_token_id(self.pad_token_id)

    def __call__(self, examples: Any, return_tensors: str | None = None) -> dict[str, Any]:
        return_tensors = _check_return_tensors(self.return_tensors if return_tensors is None else return_tensors)
        pad_id = _check_pad_token_id(self.pad_token_id)
        multiple = _padding.check_multiple(self.pad_to_multiple_of)
        masks = _SFT_MASKS if self.completion_only_loss else _SFT_MASKS[1:]
        rows, has_labels, mask_names, seq_lengths = _sft_inputs(examples, masks)
        # One Rust call pads every column (to the multiple, unless the batch is flattened afterwards); the masks are
        # folded into the labels and the positions computed on the padded matrices, vectorised.
        pad_values = (
            ("input_ids", pad_id),
            *((("labels", -100),) if has_labels else ()),
            *((name, 0) for name in mask_names),
            ("attention_mask", 0),
        )
        plan = _padding.collation_plan(
            pad_values, True, "longest", None, None if self.padding_free else multiple, "right"
        )
        out = _sft_collate(plan, rows)
        ids, attention_mask = out["input_ids"], out["attention_mask"]
        valid = attention_mask != 0
        if has_labels:
            labels = out["labels"]
        else:
            learned = valid
            for name in mask_names:
                learned = learned & (out[name] != 0)
            labels = np.where(learned, ids, -100)
        if self.padding_free:
            position_ids = _sft_positions(valid, seq_lengths)
            batch = _sft_flatten(ids[valid], labels[valid], position_ids[valid], pad_id, multiple)
        else:
            batch = {"input_ids": ids, "labels": labels}
            if self.return_position_ids:
                batch["position_ids"] = _sft_positions(valid, seq_lengths)
            batch["attention_mask"] = attention_mask
        if return_tensors == "pt":
            torch = _torch()
            for key, value in batch.items():
                if isinstance(value, np.ndarray):
                    batch[key] = torch.from_numpy(np.ascontiguousarray(value))
            if self.padding_free:
                batch["cu_seq_lens_k"] = batch["cu_seq_lens_q"]  # one tensor for both, as TRL
        return batch


def _check_pad_token_id(pad_token_id: Any) -> int:
    if not isinstance(pad_token_id, (int, np.integer)) or isinstance(pad_token_id, bool):
        raise InvalidArgumentError(
            f"pad_token_id must be an int (the pad token's id, e.g. tokenizer.pad_token_id), got {pad_token_id!r}. "
            "DataCollatorForCompletionOnlyLM takes the arguments of TRL 1.16's DataCollatorForLanguageModeling, "
            "not the response_template of TRL < 0.20's DataCollatorForCompletionOnlyLM: mark the completion with "
            "a completion_mask or assistant_masks column"
        )
    return int(pad_token_id)


def _sft_inputs(features: Any, masks: tuple[str, ...]) -> tuple[Any, bool, list[str], list[Any] | None]:
    """``(rows for the plan, has labels, mask columns used, seq_lengths per example or None)``: the batch reduced
    to the columns TRL reads. Labels on only some examples: the others' labels are their ``input_ids`` (TRL)."""
    batch = _as_arrow_batch(features)
    if batch is not None:
        if not hasattr(batch, "select"):
            import pyarrow as pa

            batch = pa.record_batch(batch)
        names = list(batch.schema.names)
        if batch.num_rows == 0:
            raise EmptyBatchError("the batch is empty: a collator needs at least one example")
        has_labels = "labels" in names
        mask_names = [] if has_labels else [m for m in masks if m in names]
        keep = ["input_ids", *(["labels"] if has_labels else mask_names)]
        if "input_ids" not in names:
            raise InvalidInputError(f"the batch has no 'input_ids' column (it has {names})")
        seq_lengths = batch.column("seq_lengths").to_pylist() if "seq_lengths" in names else None
        return batch.select(keep), has_labels, mask_names, seq_lengths
    examples = _examples(features)
    if not isinstance(examples, (list, tuple)):
        examples = list(examples)
    if not examples:
        raise EmptyBatchError("the batch is empty: a collator needs at least one example")
    first = examples[0]
    if not isinstance(first, Mapping):
        raise InputTypeError(f"the collator takes dict-like examples, got {type(first).__name__} (example 0)")
    with_labels = sum(1 for e in examples if "labels" in e)
    has_labels = with_labels > 0
    mask_names = [] if has_labels else [m for m in masks if m in first]
    keep = ["input_ids", *mask_names]
    rows = []
    for i, example in enumerate(examples):
        row = {}
        for key in keep:
            if key not in example:
                raise InvalidInputError(
                    f"example {i} has no '{key}' (example 0 has)" if i else f"example 0 has no '{key}'"
                )
            row[key] = example[key]
        if has_labels:
            row["labels"] = example["labels"] if "labels" in example else example["input_ids"]
        rows.append(row)
    seq_lengths = None
    if "seq_lengths" in first:  # TRL reads it when the first example has it
        seq_lengths = []
        for i, example in enumerate(examples):
            if "seq_lengths" not in example:
                raise InvalidInputError(f"example {i} has no 'seq_lengths' (example 0 has)")
            seq_lengths.append(example["seq_lengths"])
    return rows, has_labels, mask_names, seq_lengths


def _sft_collate(plan: Any, rows: Any) -> dict[str, Any]:
    out, pending = plan.examples_dict(rows, None) if isinstance(rows, list) else plan.arrow_dict(rows, None)
    if pending:  # the plan pads whole-number rows; anything else is not SFT data
        raise InvalidInputError(f"{', '.join(map(repr, pending))}: expected one integer per token in every example")
    return out


def _sft_positions(valid: np.ndarray, seq_lengths: list[Any] | None) -> np.ndarray:
    """``position_ids`` of the padded batch: 0, 1, ... along each example, restarting at each document of a packed
    example's ``seq_lengths``; 0 on padding (TRL's padding value)."""
    width = valid.shape[1]
    if seq_lengths is None:
        return np.where(valid, np.arange(width, dtype=np.int64), 0)
    row_lengths = valid.sum(axis=1)
    try:
        documents = [np.asarray(lengths, dtype=np.int64).reshape(-1) for lengths in seq_lengths]
    except (TypeError, ValueError) as err:
        raise InvalidInputError(f"'seq_lengths' must be a list of document lengths per example: {err}") from err
    for i, (lengths, total) in enumerate(zip(documents, row_lengths)):
        if (lengths <= 0).any() or int(lengths.sum()) != int(total):
            raise InvalidInputError(
                f"example {i}: 'seq_lengths' {lengths.tolist()} must be positive lengths summing to the example's "
                f"{int(total)} input_ids"
            )
    flat = np.concatenate(documents) if documents else np.zeros(0, np.int64)
    starts = np.cumsum(flat) - flat
    position_ids = np.zeros(valid.shape, dtype=np.int64)
    position_ids[valid] = np.arange(int(flat.sum()), dtype=np.int64) - np.repeat(starts, flat)
    return position_ids


def _sft_flatten(
    ids: np.ndarray, labels: np.ndarray, position_ids: np.ndarray, pad_id: int, multiple: int | None
) -> dict[str, Any]:
    """TRL's padding-free batch from the examples' tokens laid end to end: the row padded to the multiple (by the
    core), the first token of each sequence out of the loss, and the varlen-attention boundaries."""
    labels = np.where(position_ids == 0, -100, labels)
    columns = {"input_ids": ids, "labels": labels, "position_ids": position_ids}
    if multiple is not None and len(ids) % multiple:
        plan = _padding.collation_plan(
            (("input_ids", pad_id), ("labels", -100), ("position_ids", 0)), False, "longest", None, multiple, "right"
        )
        columns = _sft_collate(plan, [columns])
    batch: dict[str, Any] = {key: np.asarray(value).reshape(1, -1) for key, value in columns.items()}
    row = batch["position_ids"][0]
    cu_seq_lens = np.append(np.flatnonzero(row == 0), len(row)).astype(np.int32)
    lengths = np.diff(cu_seq_lens)
    batch["cu_seq_lens_q"] = batch["cu_seq_lens_k"] = cu_seq_lens
    batch["max_length_q"] = batch["max_length_k"] = int(lengths.max()) if len(lengths) else 0
    batch["seq_idx"] = np.repeat(np.arange(len(lengths), dtype=np.int32), lengths).reshape(1, -1)
    return batch
