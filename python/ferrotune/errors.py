"""ferrotune's exception hierarchy.

Every error ferrotune raises derives from :class:`FerrotuneError`. Each class also derives from the
built-in exception that transformers users already catch, so ``except ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "FerrotuneError",
    "InvalidArgumentError",
    "InvalidInputError",
    "EmptyBatchError",
    "InputTypeError",
    "TokenizerFileError",
    "TokenizerFileNotFoundError",
    "TokenizerFormatError",
    "TokenizationError",
    "ChatTemplateError",
    "ChatMaskError",
    "InternalError",
    "TrainingError",
    "ConfigError",
    "ModelFileNotFoundError",
    "DataError",
    "LabelError",
    "CheckpointError",
    "ResumeMismatchError",
    "DataSourceError",
    "DataSourceNotFoundError",
    "ColumnNotFoundError",
    "StateDictError",
]


class FerrotuneError(Exception):
    """Base class of every exception ferrotune raises."""


class InvalidArgumentError(FerrotuneError, ValueError):
    """An option has a value ferrotune cannot honour (unknown strategy, too-small max_length, ...)."""


class InvalidInputError(FerrotuneError, ValueError):
    """Input data of the wrong shape or content (mismatched lengths, missing keys, ragged rows, ...)."""


class EmptyBatchError(InvalidInputError, IndexError):
    """An empty batch where examples are needed (transformers fails here with an IndexError)."""


class InputTypeError(FerrotuneError, TypeError, ValueError):
    """Input of the wrong type (a non-string text, a float token id, ...)."""


class TokenizerFileError(FerrotuneError, OSError):
    """A tokenizer file could not be read."""


class TokenizerFileNotFoundError(TokenizerFileError, FileNotFoundError):
    """A tokenizer file (or folder) does not exist."""


class TokenizerFormatError(FerrotuneError, ValueError):
    """A tokenizer file was read but is not a valid ``tokenizer.json`` or config."""


class TokenizationError(FerrotuneError, ValueError):
    """The tokenizer refused an input (for example a truncation it cannot perform)."""


class ChatTemplateError(FerrotuneError, ValueError):
    """A chat template that does not compile, or that stopped rendering a conversation (its ``raise_exception``
    message, naming the conversation). transformers raises ``jinja2.TemplateError`` with the same message."""


class ChatMaskError(InvalidInputError):
    """A conversation whose loss mask cannot be computed exactly, or would be empty (naming the conversation)."""


class InternalError(FerrotuneError, RuntimeError):
    """A bug in ferrotune (a Rust panic caught at the boundary). Please report it."""


class DataSourceError(FerrotuneError, ValueError):
    """Data that cannot be read: a corrupt or truncated Parquet/Arrow file, an unparsable JSONL line, no rows."""


class DataSourceNotFoundError(DataSourceError, FileNotFoundError):
    """A data file or folder that does not exist."""


class ColumnNotFoundError(InvalidInputError, KeyError):
    """A column named in the options is not in the data; the message lists the columns there are."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0]) if self.args else ""


class StateDictError(InvalidArgumentError):
    """A loader state that does not belong to this loader (other data, seed, batching or sharding)."""


# --------------------------------------------------------------------------------------------------
# Fine-tuning (ferrotune.train / ferrotune.predict): every problem is reported before training starts.


class TrainingError(FerrotuneError):
    """Base class of the errors ``ferrotune.train`` and ``ferrotune.predict`` raise."""


class ConfigError(TrainingError, InvalidArgumentError):
    """A training option is invalid or inconsistent (unknown task, negative rank, unreadable config file)."""


class ModelFileNotFoundError(TrainingError, FileNotFoundError):
    """The model folder, or a file it needs (config.json, weights, tokenizer), does not exist."""


class DataError(TrainingError, InvalidInputError):
    """Training or evaluation data that cannot be used as configured."""


class LabelError(DataError):
    """A label outside the label set (an unknown name, an id out of range, a non-number for regression)."""


class CheckpointError(TrainingError, OSError):
    """A checkpoint or trained output folder is missing or unreadable."""


class ResumeMismatchError(CheckpointError, ValueError):
    """``--resume`` points at a checkpoint written by a run with a different configuration."""
