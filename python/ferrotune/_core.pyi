"""Type stubs for ferrotune._core, the PyO3 extension (hand-written; keep in step with rust/python/src/lib.rs)."""

from collections.abc import Sequence
from os import PathLike
from typing import Any, final

import numpy as np
import numpy.typing as npt

__all__ = [
    "ChatTemplate",
    "mask_tokens",
    "CollatePlan",
    "index_line_rows",
    "TokenRows",
    "_panic_in_next_call",
    "Tokenizer",
    "__version__",
]
__version__: str

_Int64Array = npt.NDArray[np.int64]

@final
class Tokenizer:
    @staticmethod
    def from_file(path: str | PathLike[str], engine: str = "auto") -> Tokenizer: ...
    @staticmethod
    def from_str(json: str, engine: str = "auto") -> Tokenizer: ...
    def encoder_name(self) -> str: ...
    def to_str(self) -> str: ...
    def encode_batch(
        self,
        texts: Sequence[str] | Sequence[Sequence[str]],
        pairs: Sequence[str] | Sequence[Sequence[str]] | None = None,
        *,
        add_special_tokens: bool = True,
        truncation: tuple[int, int, str, str] | None = None,
        padding: str = "do_not_pad",
        padding_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        padding_side: str = "right",
        pad_id: int = 0,
        pad_type_id: int = 0,
        return_token_type_ids: bool = True,
        return_attention_mask: bool = True,
        return_special_tokens_mask: bool = False,
        return_offsets_mapping: bool = False,
        return_overflowing_tokens: bool = False,
        return_length: bool = False,
        is_split_into_words: bool = False,
        return_alignment: bool = False,
        return_tokens: bool = False,
    ) -> dict[str, Any]: ...
    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str: ...
    def decode_batch(self, sequences: list[list[int]], skip_special_tokens: bool = False) -> list[str]: ...
    def decode_tokens(self, tokens: list[str]) -> str: ...
    def token_to_id(self, token: str) -> int | None: ...
    def id_to_token(self, id: int) -> str | None: ...
    def get_vocab_size(self, with_added_tokens: bool = True) -> int: ...
    def get_vocab(self, with_added_tokens: bool = True) -> dict[str, int]: ...
    def num_special_tokens_to_add(self, is_pair: bool = False) -> int: ...
    def model_type(self) -> str: ...

_Collated = list[tuple[str, str, Any, Any]]

@final
class CollatePlan:
    def __new__(
        cls,
        pad_values: list[tuple[str, int]],
        create_attention_mask: bool,
        padding: str,
        max_length: int | None,
        pad_to_multiple_of: int | None,
        padding_side: str,
        independent: list[tuple[str, int, str, int | None]] = ...,
    ) -> CollatePlan: ...
    def examples(self, features: Any) -> _Collated: ...
    def arrow(self, batch: Any) -> _Collated: ...
    def examples_dict(self, features: Any, convert: Any = None) -> tuple[dict[str, Any], list[str]]: ...
    def arrow_dict(self, batch: Any, convert: Any = None) -> tuple[dict[str, Any], list[str]]: ...
    def columns(self, columns: dict[str, Any]) -> _Collated: ...
    def flatten(
        self, features: Any, *, separator_id: int = ..., position_ids_start: int = 0
    ) -> tuple[_Int64Array, _Int64Array, _Int64Array, npt.NDArray[np.int32], int]:
        """``separator_id`` defaults to -100 (PyO3 cannot show a negative default)."""

def _panic_in_next_call(on: bool = True) -> None:
    """Test hook: the next guarded core call panics (it must come back as InternalError)."""

def mask_tokens(
    input_ids: npt.NDArray[np.int64],
    special_tokens_mask: npt.NDArray[np.int64] | None,
    special_ids: list[int],
    mlm_probability: float,
    mask_replace_prob: float,
    random_replace_prob: float,
    mask_token_id: int,
    vocab_size: int,
    seed: int,
) -> npt.NDArray[np.int64]: ...

@final
class TokenRows:
    """Tokenized examples of one window of a stream (ragged rows)."""

    @staticmethod
    def encode(
        tokenizer: Tokenizer,
        texts: Any,
        pairs: Any | None = None,
        *,
        text_column: str = "text",
        pair_column: str = "text_pair",
        max_length: int | None = None,
        truncation_strategy: str = "longest_first",
        truncation_side: str = "right",
        add_special_tokens: bool = True,
        return_token_type_ids: bool = True,
    ) -> TokenRows: ...
    @staticmethod
    def encode_conversations(
        template: ChatTemplate,
        tokenizer: Tokenizer,
        conversations: list[Any],
        *,
        prompt_messages: list[int] | None = None,
        variables: dict[str, Any] | None = None,
        loss_on: str = "assistant",
        boundaries: str = "tokens",
        max_length: int | None = None,
        drop_empty: bool = False,
    ) -> tuple[TokenRows, npt.NDArray[np.int64], npt.NDArray[np.int64]]: ...
    @staticmethod
    def from_arrow(
        ids: Any, type_ids: Any | None = None, *, labels: Any | None = None, column: str = "input_ids"
    ) -> TokenRows: ...
    def labels(self) -> npt.NDArray[np.int64] | None: ...
    def __len__(self) -> int: ...
    def lengths(self) -> npt.NDArray[np.int64]: ...
    def ragged(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64] | None]: ...
    def plan(
        self,
        *,
        batch_size: int | None = None,
        max_tokens: int | None = None,
        bucket_by_length: bool = False,
        shuffle: bool = False,
        drop_last: bool = False,
        pad_to_multiple_of: int | None = None,
        seed: int = 0,
        targets: TokenRows | None = None,
    ) -> list[npt.NDArray[np.int64]]: ...
    def plan_packs(
        self, capacity: int, *, split: bool = False, shuffle: bool = False, seed: int = 0
    ) -> list[npt.NDArray[np.int64]]: ...
    def collate(
        self,
        indices: npt.NDArray[np.int64],
        *,
        pad_id: int = 0,
        pad_type_id: int = 0,
        padding_side: str = "right",
        pad_to_multiple_of: int | None = None,
    ) -> tuple[
        npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64] | None, npt.NDArray[np.int64] | None
    ]: ...
    def pack(
        self, pieces: npt.NDArray[np.int64], *, separator_id: int = ..., position_ids_start: int = 0
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int32], int]: ...

def index_line_rows(
    path: str, *, quote: str | None = None, has_header: bool = False, rows_per_unit: int = 8192
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64], int]: ...

@final
class ChatTemplate:
    def __new__(cls, source: str) -> ChatTemplate: ...
    def has_generation(self) -> bool: ...
    def render_batch(self, contexts: list[dict[str, Any]]) -> list[tuple[str, list[tuple[int, int]]]]: ...
