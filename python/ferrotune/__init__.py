"""ferrotune: the data side of Hugging Face fine-tuning, in Rust.

Same API and bit-identical output as transformers' tokenizers, computed by a Rust core with the GIL released.
"""

from . import errors
from ._core import __version__
from .batch_encoding import BatchEncoding
from .collators import (
    DataCollatorForLanguageModeling,
    DataCollatorForSeq2Seq,
    DataCollatorForTokenClassification,
    DataCollatorWithFlattening,
    DataCollatorWithPadding,
)
from .errors import (
    EmptyBatchError,
    FerrotuneError,
    InputTypeError,
    InternalError,
    InvalidArgumentError,
    InvalidInputError,
    TokenizationError,
    TokenizerFileError,
    TokenizerFileNotFoundError,
    TokenizerFormatError,
    TrainingError,
)
from .tokenizer import Tokenizer

# Fine-tuning pulls in torch, accelerate and peft: loaded on first use so `import ferrotune` stays light.
_LAZY = {"train": "training", "TrainConfig": "training", "TrainResult": "training", "predict": "predict"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'ferrotune' has no attribute {name!r}")


__all__ = [
    "BatchEncoding",
    "DataCollatorForLanguageModeling",
    "DataCollatorForSeq2Seq",
    "DataCollatorForTokenClassification",
    "DataCollatorWithFlattening",
    "DataCollatorWithPadding",
    "EmptyBatchError",
    "FerrotuneError",
    "InputTypeError",
    "InternalError",
    "InvalidArgumentError",
    "InvalidInputError",
    "TokenizationError",
    "Tokenizer",
    "TrainConfig",
    "TrainResult",
    "TokenizerFileError",
    "TokenizerFileNotFoundError",
    "TokenizerFormatError",
    "TrainingError",
    "__version__",
    "errors",
    "predict",
    "train",
]
