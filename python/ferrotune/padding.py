"""transformers' padding and truncation-length rules, resolved in one place.

The tokenizer (``__call__``, ``pad``), the collators, ``StreamingLoader`` and ``tokenize_dataset`` all use
these: the strategy names and their one parser, the "no length known" sentinel of ``model_max_length``,
``pad_to_multiple_of`` and padding-side checks, the pad value of every key ``tokenizer.pad`` pads, and
``collation_plan``, the one way to the Rust core's collation plan (``tokenizer.pad`` and every collator go
through it). The widths and the padding itself are decided in the Rust core.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from . import _core
from .errors import InvalidArgumentError

__all__ = [
    "LARGE_INTEGER",
    "PADDING_STRATEGIES",
    "TRUNCATION_STRATEGIES",
    "VERY_LARGE_INTEGER",
    "check_max_length",
    "check_multiple",
    "check_padding_side",
    "collation_plan",
    "known_max_length",
    "label_padding",
    "no_pad_token_error",
    "pad_values",
    "padding_strategy",
    "truncation_strategy",
]

# transformers' sentinels: model_max_length is VERY_LARGE_INTEGER when the config gives none, and any value
# above LARGE_INTEGER means "no length known" (then padding="max_length" pads nothing and nothing truncates).
VERY_LARGE_INTEGER = int(1e30)
LARGE_INTEGER = int(1e20)

PADDING_STRATEGIES = ("longest", "max_length", "do_not_pad")
TRUNCATION_STRATEGIES = ("longest_first", "only_first", "only_second", "do_not_truncate")


def padding_strategy(padding: Any) -> str:
    """``padding`` (True/False/None, a strategy name or transformers' PaddingStrategy) as a strategy name."""
    padding = getattr(padding, "value", padding)  # PaddingStrategy enum
    if padding is False or padding is None:
        return "do_not_pad"
    if padding is True:
        return "longest"
    if isinstance(padding, str) and padding in PADDING_STRATEGIES:
        return padding
    raise InvalidArgumentError(f"padding must be True, False, 'longest', 'max_length' or 'do_not_pad', got {padding!r}")


def label_padding(padding: Any, max_length: int | None) -> str:
    """How ``DataCollatorForSeq2Seq`` pads labels on their own, transformers' rule: not at all for ``False`` /
    ``"do_not_pad"``, to ``max_length`` for ``"max_length"`` with a length, else to their longest (``None`` too)."""
    padding = getattr(padding, "value", padding)
    if padding is False or padding == "do_not_pad":
        return "do_not_pad"
    if padding == "max_length" and max_length is not None:
        return "max_length"
    return "longest"


def truncation_strategy(truncation: Any) -> str:
    """``truncation`` (True/False/None, a strategy name or TruncationStrategy) as a strategy name."""
    truncation = getattr(truncation, "value", truncation)
    if truncation is False or truncation is None:
        return "do_not_truncate"
    if truncation is True:
        return "longest_first"
    if isinstance(truncation, str) and truncation in TRUNCATION_STRATEGIES:
        return truncation
    raise InvalidArgumentError(
        "truncation must be True, False, None, 'longest_first', 'only_first', 'only_second' or "
        f"'do_not_truncate', got {truncation!r}"
    )


def known_max_length(model_max_length: Any) -> int | None:
    """``model_max_length`` when it is a real limit, None for transformers' "no length known" sentinel."""
    if model_max_length is None or model_max_length > LARGE_INTEGER:
        return None
    return int(model_max_length)


def check_max_length(max_length: Any) -> int | None:
    if max_length is None:
        return None
    if not isinstance(max_length, (int, np.integer)) or isinstance(max_length, bool) or max_length < 0:
        raise InvalidArgumentError(f"max_length must be a non-negative int or None, got {max_length!r}")
    return int(max_length)


def check_multiple(pad_to_multiple_of: Any) -> int | None:
    if pad_to_multiple_of is None:
        return None
    if (
        not isinstance(pad_to_multiple_of, (int, np.integer))
        or isinstance(pad_to_multiple_of, bool)
        or pad_to_multiple_of <= 0
    ):
        raise InvalidArgumentError(f"pad_to_multiple_of must be a positive int or None, got {pad_to_multiple_of!r}")
    return int(pad_to_multiple_of)


def check_padding_side(side: Any) -> str:
    if side not in ("left", "right"):
        raise InvalidArgumentError(f"padding_side must be 'left' or 'right', got {side!r}")
    return side


def no_pad_token_error(tokenizer: Any = None) -> InvalidArgumentError:
    """transformers' message; a collator names the tokenizer class it was given."""
    return InvalidArgumentError(
        "Asking to pad but the tokenizer does not have a padding token. "
        "Please select a token to use as `pad_token` `(tokenizer.pad_token = tokenizer.eos_token e.g.)` "
        "or add a new pad token via `tokenizer.add_special_tokens({'pad_token': '[PAD]'})`"
        + ("." if tokenizer is None else f" ({type(tokenizer).__name__}).")
    )


def pad_values(tokenizer: Any) -> dict[str, int]:
    """The keys ``tokenizer.pad`` pads and the value each is padded with (the model's main input first),
    read from any ferrotune or transformers tokenizer at each call, as transformers does."""
    names = list(getattr(tokenizer, "model_input_names", None) or ["input_ids", "attention_mask"])
    pad_token_id = getattr(tokenizer, "pad_token_id", None)
    return {
        names[0]: pad_token_id if pad_token_id is not None else 0,
        "token_type_ids": int(getattr(tokenizer, "pad_token_type_id", 0) or 0),
        "special_tokens_mask": 1,
        "attention_mask": 0,
    }


@functools.lru_cache(maxsize=64)
def collation_plan(
    pad_values: tuple[tuple[str, int], ...],
    create_attention_mask: bool,
    strategy: str,
    max_length: int | None,
    pad_to_multiple_of: int | None,
    padding_side: str,
    independent: tuple[tuple[str, int, str, int | None], ...] = (),
) -> Any:
    """The Rust core's collation plan for resolved settings (built once per distinct setting).

    ``pad_values``: the keys padded together with the model's main input (first) and their pad values;
    ``create_attention_mask``: make an all-ones ``attention_mask`` when the batch has none; ``independent``:
    ``(key, pad_value, mode, max_length)`` of keys padded on their own terms, ``mode`` being ``"main"`` (the main
    input's width) or a padding strategy (seq2seq labels)."""
    return _core.CollatePlan(
        list(pad_values),
        create_attention_mask,
        strategy,
        max_length,
        pad_to_multiple_of,
        padding_side,
        list(independent),
    )
