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
)
from .tokenizer import Tokenizer

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
    "TokenizerFileError",
    "TokenizerFileNotFoundError",
    "TokenizerFormatError",
    "__version__",
    "errors",
]
