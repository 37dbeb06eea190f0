"""ferrotune: the data side of Hugging Face fine-tuning, in Rust.

Same API and bit-identical output as transformers' tokenizers, computed by a Rust core with the GIL released.
"""

from . import errors
from ._core import __version__
from .batch_encoding import BatchEncoding
from .collators import (
    DataCollatorForCompletionOnlyLM,
    DataCollatorForLanguageModeling,
    DataCollatorForSeq2Seq,
    DataCollatorForTokenClassification,
    DataCollatorWithFlattening,
    DataCollatorWithPadding,
    DefaultDataCollator,
    default_data_collator,
)
from .errors import (
    ColumnNotFoundError,
    DataSourceError,
    DataSourceNotFoundError,
    EmptyBatchError,
    FerrotuneError,
    InputTypeError,
    InternalError,
    InvalidArgumentError,
    InvalidInputError,
    StateDictError,
    TokenizationError,
    TokenizerFileError,
    TokenizerFileNotFoundError,
    TokenizerFormatError,
    TrainingError,
)
from .tokenizer import Tokenizer

# Imported on first use: they pull in torch, pyarrow, accelerate and peft, which `import ferrotune` does not need.
_LAZY = {
    "StreamingLoader": "streaming",
    "tokenize_dataset": "datasets_map",
    "train": "training",
    "TrainConfig": "training",
    "TrainResult": "training",
    "predict": "prediction",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'ferrotune' has no attribute {name!r}")


__all__ = [
    "BatchEncoding",
    "ColumnNotFoundError",
    "DataSourceError",
    "DataSourceNotFoundError",
    "DataCollatorForCompletionOnlyLM",
    "DataCollatorForLanguageModeling",
    "DataCollatorForSeq2Seq",
    "DataCollatorForTokenClassification",
    "DataCollatorWithFlattening",
    "DataCollatorWithPadding",
    "DefaultDataCollator",
    "EmptyBatchError",
    "FerrotuneError",
    "InputTypeError",
    "InternalError",
    "InvalidArgumentError",
    "InvalidInputError",
    "StateDictError",
    "StreamingLoader",
    "TokenizationError",
    "Tokenizer",
    "TrainConfig",
    "TrainResult",
    "tokenize_dataset",
    "TokenizerFileError",
    "TokenizerFileNotFoundError",
    "TokenizerFormatError",
    "TrainingError",
    "__version__",
    "default_data_collator",
    "errors",
    "predict",
    "train",
]
