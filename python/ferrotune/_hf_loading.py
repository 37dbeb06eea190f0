"""What transformers 5.23's ``AutoTokenizer.from_pretrained(folder)`` does to a tokenizer folder, reproduced on the
``tokenizer.json`` text so that ``ferrotune.Tokenizer.from_pretrained`` builds the same tokenizer.

transformers picks a class (``tokenization_auto.py``), merges ``tokenizer_config.json`` / ``special_tokens_map.json``
into its ``__init__`` arguments (``tokenization_utils_base._from_pretrained``) and then either loads ``tokenizer.json``
as is (``TokenizersBackend`` and classes without their own ``__init__``) or, for classes such as ``LlamaTokenizer``,
keeps only the vocabulary, merges, post-processor, padding and truncation of the file and rebuilds the model options,
normalizer, pre-tokenizer and decoder from the class and its arguments (``legacy``, ``add_prefix_space``, ...).
Special and added tokens are then (re-)added as ``TokenizersBackend.__init__`` does. Every step below names the
transformers code it mirrors.
"""

from __future__ import annotations

import fnmatch
import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._hf_classes import (
    CLASS_ALIASES,
    MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS,
    REBUILDING_CLASSES,
    TOKENIZER_CLASS_BY_MODEL_TYPE,
)
from .errors import TokenizerFormatError

BACKEND = "TokenizersBackend"
SPIECE_UNDERLINE = "\u2581"
SPECIAL_TOKEN_ATTRIBUTES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
_GENERIC_CLASSES = ("TokenizersBackend", "PythonBackend", "PreTrainedTokenizerFast", "MistralCommonBackend")
# tokenization_auto.MODEL_IDS_TO_TOKENIZERS_BACKEND: checkpoints forced to TokenizersBackend by config._name_or_path
_MODEL_IDS_TO_TOKENIZERS_BACKEND = (
    "deepseek-ai/deepseek-r1-distill-llama-*",
    "deepseek-ai/deepseek-coder-*",
    "allenai/dolma2-tokenizer",
    "google/umt5-small",
    "naver-clova-ix/donut-*",
    "salesforce/blip2-opt-*",
    "salesforce/blip2-flan-t5-*",
    "salesforce/instructblip-flan-t5-*",
    "stepfun-ai/step-3.7-*",
)
_QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
_NO_TYPE_IDS = ["input_ids", "attention_mask"]
_WITH_TYPE_IDS = ["input_ids", "token_type_ids", "attention_mask"]

# The classes ferrotune rebuilds as transformers does: the keyword defaults of each class's __init__ for the named
# special tokens, its model_input_names and its class-level padding_side.

# Special-token defaults shared by several classes' __init__ signatures.
_ROBERTA_STYLE_TOKENS = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "sep_token": "</s>",
    "cls_token": "<s>",
    "unk_token": "<unk>",
    "pad_token": "<pad>",
    "mask_token": "<mask>",
}
_BERT_STYLE_TOKENS = {
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}

_CLASS_DEFAULTS: dict[str, dict[str, Any]] = {
    "LlamaTokenizer": {
        "tokens": {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"},
        "input_names": _NO_TYPE_IDS,
        "padding_side": "left",
    },
    "GemmaTokenizer": {
        "tokens": {
            "unk_token": "<unk>",
            "bos_token": "<bos>",
            "eos_token": "<eos>",
            "pad_token": "<pad>",
            "mask_token": "<mask>",
        },
        "input_names": _NO_TYPE_IDS,
        "padding_side": "left",
    },
    "GPT2Tokenizer": {
        "tokens": {"unk_token": "<|endoftext|>", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"},
        "input_names": _NO_TYPE_IDS,
    },
    "RobertaTokenizer": {
        "tokens": _ROBERTA_STYLE_TOKENS,
        "input_names": _NO_TYPE_IDS,
    },
    "GPTNeoXTokenizer": {
        "tokens": {
            "unk_token": "<|endoftext|>",
            "bos_token": "<|endoftext|>",
            "eos_token": "<|endoftext|>",
            "pad_token": "<|padding|>",
        },
        "input_names": _NO_TYPE_IDS,
    },
    "Qwen2Tokenizer": {
        "tokens": {"unk_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"},
        "input_names": _NO_TYPE_IDS,
    },
    "T5Tokenizer": {
        "tokens": {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"},
        "input_names": _NO_TYPE_IDS,
    },
    "BertTokenizer": {
        "tokens": _BERT_STYLE_TOKENS,
        "input_names": _WITH_TYPE_IDS,
    },
    "DistilBertTokenizer": {
        "tokens": _BERT_STYLE_TOKENS,
        "input_names": _NO_TYPE_IDS,
    },
    "XLMRobertaTokenizer": {
        "tokens": _ROBERTA_STYLE_TOKENS,
        "input_names": _NO_TYPE_IDS,
    },
    "MPNetTokenizer": {
        "tokens": {
            "bos_token": "<s>",
            "eos_token": "</s>",
            "sep_token": "</s>",
            "cls_token": "<s>",
            "unk_token": "[UNK]",
            "pad_token": "<pad>",
            "mask_token": "<mask>",
        },
        "input_names": _NO_TYPE_IDS,
    },
    "DebertaV2Tokenizer": {
        "tokens": {
            "bos_token": "[CLS]",
            "eos_token": "[SEP]",
            "unk_token": "[UNK]",
            "sep_token": "[SEP]",
            "pad_token": "[PAD]",
            "cls_token": "[CLS]",
            "mask_token": "[MASK]",
        },
        "input_names": ["input_ids", "attention_mask", "token_type_ids"],
    },
    "AlbertTokenizer": {
        "tokens": {
            "bos_token": "[CLS]",
            "eos_token": "[SEP]",
            "unk_token": "<unk>",
            "sep_token": "[SEP]",
            "pad_token": "<pad>",
            "cls_token": "[CLS]",
            "mask_token": "[MASK]",
        },
        "input_names": _NO_TYPE_IDS,
    },
    "CodeLlamaTokenizer": {
        "tokens": {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"},
        "input_names": _NO_TYPE_IDS,
        "padding_side": "left",
    },
    BACKEND: {"tokens": {}, "input_names": _NO_TYPE_IDS},
}
# CodeLlamaTokenizer's fill-in-the-middle tokens (keyword defaults of its __init__, in that order)
_CODE_LLAMA_FIM = (
    ("prefix_token", "\u2581<PRE>"),
    ("middle_token", "\u2581<MID>"),
    ("suffix_token", "\u2581<SUF>"),
    ("eot_token", "\u2581<EOT>"),
    ("fill_token", "<FILL_ME>"),
)
_CLASS_DEFAULTS["Qwen2TokenizerFast"] = _CLASS_DEFAULTS["Qwen2Tokenizer"]


# --------------------------------------------------------------------------------------------------
# Reading and checking the folder's JSON files


_MAX_DEPTH_SHOWN = 100


def _deepest_key(text: str) -> str | None:
    """The top-level key under which ``text`` nests more than a hundred levels deep (for the error message)."""
    depth, key, index, last_string = 0, None, 0, None
    length = len(text)
    while index < length:
        char = text[index]
        if char == '"':
            end = index + 1
            while end < length and text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            last_string = text[index + 1 : end]
            index = end + 1
            continue
        if char == ":" and depth == 1:
            key = last_string
        elif char in "[{":
            depth += 1
            if depth > _MAX_DEPTH_SHOWN:
                return key
        elif char in "]}":
            depth -= 1
        index += 1
    return None


def nested_too_deeply(path: Path, text: str | None = None) -> TokenizerFormatError:
    if text is None:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            text = ""
    key = _deepest_key(text)
    where = f"under the key {key!r}" if key is not None else "at its top level"
    return TokenizerFormatError(
        f"'{path}' nests JSON objects or lists hundreds of levels deep {where}, which no tokenizer file does: "
        f"remove {'that key' if key is not None else 'the nesting'} or replace the file with the one transformers' "
        "save_pretrained writes"
    )


def read_json_file(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise TokenizerFormatError(f"malformed JSON in '{path}': {error}") from error
    except RecursionError:
        raise nested_too_deeply(path) from None
    except UnicodeDecodeError as error:
        raise TokenizerFormatError(f"'{path}' is not UTF-8 text: {error}") from error


def read_json_object(path: Path) -> dict[str, Any]:
    value = read_json_file(path)
    if not isinstance(value, dict):
        raise TokenizerFormatError(
            f"'{path}' must hold a JSON object ({{...}}), not a {type(value).__name__}: "
            "replace it with the file transformers' save_pretrained writes"
        )
    return value


def _check_added_token(value: Any, path: Path, key: str) -> dict[str, Any]:
    """A token written as an AddedToken object: ``{"content": "...", "lstrip": ..., ...}``."""
    if not isinstance(value, Mapping) or not isinstance(value.get("content"), str):
        raise TokenizerFormatError(
            f"'{path}': {key} is {value!r}; a token must be a string or an object with a string \"content\" "
            '(for example "<pad>" or {"content": "<pad>", "special": true}): fix or remove this key'
        )
    for flag in ("single_word", "lstrip", "rstrip", "normalized", "special"):
        if flag in value and not isinstance(value[flag], bool):
            raise TokenizerFormatError(
                f"'{path}': {key}.{flag} is {value[flag]!r}; it must be true or false: fix or remove it"
            )
    return dict(value)


def check_token_value(value: Any, path: Path, key: str) -> None:
    """A named special token: a string, null, or an AddedToken object (transformers raises TypeError otherwise)."""
    if value is None or isinstance(value, str):
        return
    if isinstance(value, Mapping):
        _check_added_token(value, path, key)
        return
    raise TokenizerFormatError(
        f"'{path}': {key} is {value!r} ({type(value).__name__}); a special token must be a string such as \"<pad>\", "
        'an object with a string "content", or null: write the token\'s text (not its id) or remove the key'
    )


def check_config(config: dict[str, Any], path: Path) -> None:
    """The keys of tokenizer_config.json / special_tokens_map.json that ferrotune reads, checked for their types."""
    for key, value in config.items():
        if key in SPECIAL_TOKEN_ATTRIBUTES:
            check_token_value(value, path, key)
        elif key in ("additional_special_tokens", "extra_special_tokens"):
            if value is None:
                continue
            if isinstance(value, Mapping):
                for name, token in value.items():
                    check_token_value(token, path, f"{key}.{name}")
            elif isinstance(value, (list, tuple)):
                for index, token in enumerate(value):
                    if token is None:
                        raise TokenizerFormatError(
                            f"'{path}': {key}[{index}] is null; list each token as a string: remove the null entry"
                        )
                    check_token_value(token, path, f"{key}[{index}]")
            else:
                raise TokenizerFormatError(
                    f"'{path}': {key} is {value!r}; it must be a list of tokens (or null): fix or remove this key"
                )
        elif key == "added_tokens_decoder":
            if not isinstance(value, Mapping):
                raise TokenizerFormatError(
                    f"'{path}': added_tokens_decoder is {type(value).__name__}; it must be an object mapping token "
                    'ids to tokens ({"32000": {"content": "[PAD]", ...}}): fix or remove this key'
                )
            for index, token in value.items():
                try:
                    int(index)
                except (TypeError, ValueError):
                    raise TokenizerFormatError(
                        f"'{path}': added_tokens_decoder has the key {index!r}, which is not a token id; its keys "
                        "must be integers written as strings: fix or remove this entry"
                    ) from None
                _check_added_token(token, path, f"added_tokens_decoder[{index!r}]")
        elif key in ("model_max_length", "max_len"):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                raise TokenizerFormatError(
                    f"'{path}': {key} is {value!r}; it must be a non-negative number (or null): fix or remove it"
                )
        elif key in ("padding_side", "truncation_side"):
            if value not in ("left", "right"):
                raise TokenizerFormatError(f'\'{path}\': {key} is {value!r}; it must be "left" or "right"')
        elif key == "model_input_names":
            if not isinstance(value, (list, tuple)) or not all(isinstance(name, str) for name in value):
                raise TokenizerFormatError(
                    f"'{path}': model_input_names is {value!r}; it must be a list of strings such as "
                    '["input_ids", "attention_mask"]: fix or remove this key'
                )
        elif key in ("tokenizer_class",):
            if value is not None and not isinstance(value, str):
                raise TokenizerFormatError(f"'{path}': {key} is {value!r}; it must be a class name (a string)")
        elif key in ("add_prefix_space", "legacy", "trim_offsets", "do_lower_case", "clean_up_tokenization_spaces"):
            if value is not None and not isinstance(value, bool):
                raise TokenizerFormatError(f"'{path}': {key} is {value!r}; it must be true, false or null")


def check_model_config(config: dict[str, Any], path: Path) -> None:
    """config.json: only the keys that choose the tokenizer class are read."""
    for key in ("model_type", "tokenizer_class", "_name_or_path"):
        value = config.get(key)
        if value is not None and not isinstance(value, str):
            raise TokenizerFormatError(
                f"'{path}': {key} is {value!r} ({type(value).__name__}); it must be a string such as \"bert\" "
                "(or null): fix or remove this key"
            )


def _check_tokenizer_json(data: dict[str, Any], path: Path) -> None:
    """The parts of tokenizer.json ferrotune reads in Python (the Rust core checks the rest)."""
    added = data.get("added_tokens")
    if added is not None and not isinstance(added, list):
        raise TokenizerFormatError(
            f"'{path}': added_tokens must be a list of token objects, not {type(added).__name__}"
        )
    for index, token in enumerate(added or []):
        if (
            not isinstance(token, Mapping)
            or not isinstance(token.get("content"), str)
            or isinstance(token.get("id"), bool)
            or not isinstance(token.get("id"), int)
            or token["id"] < 0
        ):
            raise TokenizerFormatError(
                f"'{path}': added_tokens[{index}] is {token!r}; each added token needs an integer \"id\" and a "
                'string "content" (as tokenizers writes them): fix or remove this entry'
            )
        _check_added_token(token, path, f"added_tokens[{index}]")
    vocab = data["model"].get("vocab")
    if isinstance(vocab, list):
        for index, entry in enumerate(vocab):
            if not isinstance(entry, (list, tuple)) or not entry or not isinstance(entry[0], str):
                raise TokenizerFormatError(
                    f"'{path}': model.vocab[{index}] is {entry!r}; a Unigram vocabulary lists [piece, score] pairs"
                )
    elif vocab is not None and not isinstance(vocab, Mapping):
        raise TokenizerFormatError(f"'{path}': model.vocab must be an object or a list, not {type(vocab).__name__}")
    for key in ("normalizer", "pre_tokenizer", "post_processor", "decoder", "padding", "truncation"):
        if data.get(key) is not None and not isinstance(data[key], Mapping):
            raise TokenizerFormatError(f"'{path}': {key} must be an object or null, not {type(data[key]).__name__}")


# --------------------------------------------------------------------------------------------------
# Which class transformers instantiates (models/auto/tokenization_auto.py, AutoTokenizer.from_pretrained)


def _class_from_name(name: str) -> str:
    """tokenizer_class_from_name, reduced to what ferrotune needs: the class whose behaviour applies."""
    if name in CLASS_ALIASES:
        return CLASS_ALIASES[name]
    if name in REBUILDING_CLASSES:
        return name
    stripped = name.removesuffix("Fast")
    if stripped in CLASS_ALIASES:
        return CLASS_ALIASES[stripped]
    if stripped in REBUILDING_CLASSES:
        return stripped
    return BACKEND  # a class without its own __init__, an unknown class, or TokenizersBackend itself


def resolve_class(config: dict[str, Any], model_config: dict[str, Any], tokenizer_text: str) -> str:
    hub_class = config.get("tokenizer_class") or model_config.get("tokenizer_class")
    model_type = model_config.get("model_type") or None
    auto_map = config.get("auto_map")
    name_or_path = model_config.get("_name_or_path")
    name_or_path = name_or_path.lower() if isinstance(name_or_path, str) else ""
    if auto_map is None and any(fnmatch.fnmatch(name_or_path, pattern) for pattern in _MODEL_IDS_TO_TOKENIZERS_BACKEND):
        return BACKEND
    registered = TOKENIZER_CLASS_BY_MODEL_TYPE.get(model_type) if model_type else None
    # A Hub "LlamaTokenizer" whose tokenizer.json is byte-level (Llama 3 style) loads as TokenizersBackend.
    if (
        auto_map is None
        and isinstance(hub_class, str)
        and hub_class.removesuffix("Fast") == "LlamaTokenizer"
        and (registered or "").removesuffix("Fast") != "MistralCommonBackend"
        and model_type not in MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS
        and '"ByteLevel"' in tokenizer_text
    ):
        return BACKEND
    # The Hub class differs from the class registered for the model type.
    if (
        auto_map is None
        and isinstance(hub_class, str)
        and registered is not None
        and registered.removesuffix("Fast") != hub_class.removesuffix("Fast")
    ):
        registered_name = registered.removesuffix("Fast")
        if registered_name not in _GENERIC_CLASSES:
            name = registered_name if model_type in MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS else hub_class
            return _class_from_name(name)
        return BACKEND
    if isinstance(hub_class, str):
        return _class_from_name(hub_class)
    if registered is not None:
        return _class_from_name(registered)
    return BACKEND


# --------------------------------------------------------------------------------------------------
# The __init__ arguments (tokenization_utils_base._from_pretrained)


def _added_token(
    content: str,
    *,
    single_word: bool = False,
    lstrip: bool = False,
    rstrip: bool = False,
    normalized: bool | None = None,
    special: bool = False,
) -> dict[str, Any]:
    """tokenizers.AddedToken as a dict; ``normalized`` defaults to ``not special`` as in tokenizers."""
    return {
        "content": content,
        "single_word": bool(single_word),
        "lstrip": bool(lstrip),
        "rstrip": bool(rstrip),
        "normalized": (not special) if normalized is None else bool(normalized),
        "special": bool(special),
    }


def _token_from_dict(value: Mapping[str, Any], **overrides: Any) -> dict[str, Any]:
    fields = {key: value[key] for key in ("single_word", "lstrip", "rstrip", "normalized", "special") if key in value}
    fields.update(overrides)
    return _added_token(value["content"], **fields)


class _Token:
    """A named special token: a plain string, or an AddedToken (kept as a dict)."""

    __slots__ = ("content", "added")

    def __init__(self, content: str, added: dict[str, Any] | None = None) -> None:
        self.content = content
        self.added = added


def _as_token(value: Any) -> _Token | None:
    if value is None:
        return None
    if isinstance(value, _Token):
        return value
    if isinstance(value, Mapping):
        return _Token(value["content"], _token_from_dict(value))
    return _Token(str(value))


def init_arguments(
    config: dict[str, Any], special_map: dict[str, Any], tokenizer_json: dict[str, Any]
) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    """The keyword arguments transformers passes to the tokenizer class, and its ``added_tokens_decoder``."""
    kwargs = {key: value for key, value in config.items() if key not in ("tokenizer_class", "init_inputs")}
    # tokenizer.json exists, so the config's add_bos_token / add_eos_token are dropped (the file's template rules).
    kwargs.pop("add_bos_token", None)
    kwargs.pop("add_eos_token", None)
    if "additional_special_tokens" in kwargs and not kwargs.get("extra_special_tokens"):
        kwargs["extra_special_tokens"] = kwargs.pop("additional_special_tokens")
    model_specific = {
        key: kwargs.pop(key)
        for key in list(kwargs)
        if key not in SPECIAL_TOKEN_ATTRIBUTES and key.endswith("_token") and isinstance(kwargs[key], str)
    }
    if isinstance(kwargs.get("extra_special_tokens"), Mapping):
        model_specific.update(kwargs.pop("extra_special_tokens"))

    added_decoder: dict[int, dict[str, Any]] = {}
    added_by_content: dict[str, dict[str, Any]] = {}
    if "added_tokens_decoder" in kwargs:
        for index, token in kwargs.pop("added_tokens_decoder").items():
            token = _token_from_dict(token)
            added_decoder[int(index)] = token
            added_by_content[token["content"]] = token
    else:
        for key, value in special_map.items():
            if isinstance(value, Mapping) and key != "extra_special_tokens":
                value = _Token(value["content"], _token_from_dict(value, special=True))
            elif key == "extra_special_tokens" and isinstance(value, list):
                existing = list(kwargs.get("extra_special_tokens") or [])
                for token in value:
                    if isinstance(token, Mapping):
                        token = _Token(token["content"], _token_from_dict(token, special=True))
                    if all(_same_token(token, other) is False for other in existing):
                        existing.append(token)
                value = existing
            kwargs[key] = value
        if isinstance(kwargs.get("extra_special_tokens"), Mapping):
            model_specific.update(kwargs.pop("extra_special_tokens"))
        for token in tokenizer_json.get("added_tokens") or []:
            added = _token_from_dict(token)
            added_decoder[int(token["id"])] = added
            added_by_content[added["content"]] = added
    if model_specific:
        kwargs["model_specific_special_tokens"] = model_specific
    for key in SPECIAL_TOKEN_ATTRIBUTES:
        if kwargs.get(key) is not None:
            token = _as_token(kwargs[key])
            if added_by_content and token.content in added_by_content:
                token = _Token(token.content, added_by_content[token.content])
            kwargs[key] = token
    return kwargs, added_decoder


def _same_token(a: Any, b: Any) -> bool:
    a_token, b_token = _as_token(a), _as_token(b)
    return a_token.content == b_token.content and a_token.added == b_token.added


# --------------------------------------------------------------------------------------------------
# The backend pipeline


def _token_key(token: Mapping[str, Any]) -> tuple[Any, ...]:
    """AddedToken equality in tokenizers: every field."""
    return tuple(token[key] for key in ("content", "single_word", "lstrip", "rstrip", "normalized", "special"))


class _AddedVocabulary:
    """tokenizers' AddedVocabulary.add_tokens, on the JSON representation (id -> token dict)."""

    def __init__(self, model: dict[str, Any], added_tokens: list[dict[str, Any]]) -> None:
        vocab = model.get("vocab")
        if isinstance(vocab, Mapping):
            self.vocab = dict(vocab)
        elif isinstance(vocab, list):  # Unigram: [[piece, score], ...]
            self.vocab = {entry[0]: index for index, entry in enumerate(vocab)}
        else:
            self.vocab = {}
        self.by_id: dict[int, dict[str, Any]] = {}
        self.by_content: dict[str, int] = {}
        for token in added_tokens:
            self.by_id[int(token["id"])] = _token_from_dict(token)
            self.by_content[token["content"]] = int(token["id"])

    def token_to_id(self, content: str) -> int | None:
        if content in self.by_content:
            return self.by_content[content]
        return self.vocab.get(content)

    def add(self, tokens: list[dict[str, Any]]) -> None:
        existing = {_token_key(token) for token in self.by_id.values()}
        size = len(self.vocab)
        if self.by_id:
            highest = max(self.by_id)
            next_id = highest + 1 if highest >= size or size == 0 else size
        else:
            next_id = size
        for token in tokens:
            if not token["content"] or _token_key(token) in existing:
                continue
            new_id = self.token_to_id(token["content"])
            if new_id is None:
                new_id = next_id
                next_id += 1
            self.by_content[token["content"]] = new_id
            self.by_id[new_id] = dict(token)
            existing.add(_token_key(token))

    def to_json(self) -> list[dict[str, Any]]:
        return [{"id": index, **self.by_id[index]} for index in sorted(self.by_id)]


def _template(single: list[tuple[str, str, int]], pair: list[tuple[str, str, int]], ids: dict[str, int]):
    def piece(kind: str, name: str, type_id: int) -> dict[str, Any]:
        if kind == "seq":
            return {"Sequence": {"id": name, "type_id": type_id}}
        return {"SpecialToken": {"id": name, "type_id": type_id}}

    return {
        "type": "TemplateProcessing",
        "single": [piece(*item) for item in single],
        "pair": [piece(*item) for item in pair],
        "special_tokens": {token: {"id": token, "ids": [index], "tokens": [token]} for token, index in ids.items()},
    }


_EMPTY_TEMPLATE = _template([("seq", "A", 0)], [("seq", "A", 0), ("seq", "B", 1)], {})


def _byte_level(add_prefix_space: bool, trim_offsets: bool = True, use_regex: bool = True) -> dict[str, Any]:
    return {
        "type": "ByteLevel",
        "add_prefix_space": add_prefix_space,
        "trim_offsets": trim_offsets,
        "use_regex": use_regex,
    }


def _bpe(model: dict[str, Any], **options: Any) -> dict[str, Any]:
    rebuilt = {
        "type": "BPE",
        "dropout": None,
        "unk_token": None,
        "continuing_subword_prefix": None,
        "end_of_word_suffix": None,
        "fuse_unk": False,
        "byte_fallback": False,
        "ignore_merges": False,
    }
    rebuilt.update(options)
    vocab = model.get("vocab")
    if isinstance(vocab, list):
        vocab = {entry[0] if isinstance(entry, list) else entry: index for index, entry in enumerate(vocab)}
    rebuilt["vocab"] = vocab if vocab is not None else {}
    rebuilt["merges"] = model.get("merges") or []
    return rebuilt


def _precompiled(normalizer: Any) -> dict[str, Any] | None:
    """The Precompiled SentencePiece normalizer of tokenizer.json, if any (what T5Tokenizer keeps)."""
    if not isinstance(normalizer, Mapping):
        return None
    items = normalizer.get("normalizers", []) if normalizer.get("type") == "Sequence" else [normalizer]
    for item in items:
        if isinstance(item, Mapping) and item.get("type") == "Precompiled" and "precompiled_charsmap" in item:
            return {"type": "Precompiled", "precompiled_charsmap": item["precompiled_charsmap"]}
    return None


def _bert_wordpiece(data: dict[str, Any], model: dict[str, Any], kwargs: dict[str, Any], unk_token: str) -> None:
    """The WordPiece pipeline BertTokenizer and MPNetTokenizer rebuild (normalizer options from the config)."""
    data["model"] = {
        "type": "WordPiece",
        "unk_token": unk_token,
        "continuing_subword_prefix": "##",
        "max_input_chars_per_word": 100,
        "vocab": model.get("vocab") or {},
    }
    data["normalizer"] = {
        "type": "BertNormalizer",
        "clean_text": True,
        "handle_chinese_chars": kwargs.get("tokenize_chinese_chars", True),
        "strip_accents": kwargs.get("strip_accents"),
        "lowercase": kwargs.get("do_lower_case", True),
    }
    data["pre_tokenizer"] = {"type": "BertPreTokenizer"}
    data["decoder"] = {"type": "WordPiece", "prefix": "##", "cleanup": True}


def _byte_fallback_decoder(strip_first_space: bool) -> dict[str, Any]:
    """The SentencePiece-BPE decoder of Llama, CodeLlama and Gemma: ▁ back to spaces, byte pieces to bytes."""
    decoders: list[dict[str, Any]] = [
        {"type": "Replace", "pattern": {"String": SPIECE_UNDERLINE}, "content": " "},
        {"type": "ByteFallback"},
        {"type": "Fuse"},
    ]
    if strip_first_space:
        decoders.append({"type": "Strip", "content": " ", "start": 1, "stop": 0})
    return {"type": "Sequence", "decoders": decoders}


def _rebuild_pipeline(class_name: str, data: dict[str, Any], kwargs: dict[str, Any]) -> None:
    """The normalizer / pre-tokenizer / model / decoder a class's __init__ builds (models/*/tokenization_*.py)."""
    model = data.get("model") or {}
    if class_name == "LlamaTokenizer":
        add_prefix_space = kwargs.get("add_prefix_space")
        add_prefix_space = True if add_prefix_space is None else add_prefix_space
        legacy = kwargs.get("legacy", False)
        # convert_slow_tokenizer._get_prepend_scheme
        prepend = ("always" if legacy else "first") if add_prefix_space else "never"
        data["model"] = _bpe(model, fuse_unk=True, byte_fallback=True)
        data["normalizer"] = None
        data["pre_tokenizer"] = {
            "type": "Metaspace",
            "replacement": SPIECE_UNDERLINE,
            "prepend_scheme": prepend,
            "split": False,
        }
        data["decoder"] = _byte_fallback_decoder(strip_first_space=bool(add_prefix_space))
    elif class_name == "CodeLlamaTokenizer":
        add_prefix_space = kwargs.get("add_prefix_space")
        add_prefix_space = True if add_prefix_space is None else add_prefix_space
        unk = kwargs.get("unk_token")
        data["model"] = _bpe(
            model, fuse_unk=True, byte_fallback=True, unk_token=str(None if unk is None else unk.content)
        )
        data["normalizer"] = None
        data["pre_tokenizer"] = {
            "type": "Metaspace",
            "replacement": SPIECE_UNDERLINE,
            "prepend_scheme": "first" if add_prefix_space else "never",
            "split": False,
        }
        data["decoder"] = _byte_fallback_decoder(strip_first_space=True)
    elif class_name == "GemmaTokenizer":
        unk = kwargs.get("unk_token", "<unk>")
        data["model"] = _bpe(model, fuse_unk=True, byte_fallback=True, unk_token=None if unk is None else unk.content)
        data["normalizer"] = {"type": "Replace", "pattern": {"String": " "}, "content": SPIECE_UNDERLINE}
        data["pre_tokenizer"] = {
            "type": "Split",
            "pattern": {"String": " "},
            "behavior": "MergedWithPrevious",
            "invert": False,
        }
        data["decoder"] = _byte_fallback_decoder(strip_first_space=False)
    elif class_name in ("GPT2Tokenizer", "RobertaTokenizer"):
        data["model"] = _bpe(model, continuing_subword_prefix="", end_of_word_suffix="")
        data["normalizer"] = None
        data["pre_tokenizer"] = _byte_level(bool(kwargs.get("add_prefix_space", False)))
        data["decoder"] = _byte_level(True)
    elif class_name == "GPTNeoXTokenizer":
        data["model"] = _bpe(model, continuing_subword_prefix="", end_of_word_suffix="")
        data["normalizer"] = {"type": "NFC"}
        data["pre_tokenizer"] = _byte_level(
            bool(kwargs.get("add_prefix_space", False)), trim_offsets=bool(kwargs.get("trim_offsets", True))
        )
        data["decoder"] = _byte_level(True)
    elif class_name in ("Qwen2Tokenizer", "Qwen2TokenizerFast"):
        data["model"] = _bpe(model, continuing_subword_prefix="", end_of_word_suffix="")
        data["normalizer"] = {"type": "NFC"}
        data["pre_tokenizer"] = {
            "type": "Sequence",
            "pretokenizers": [
                {
                    "type": "Split",
                    "pattern": {"Regex": _QWEN2_PRETOKENIZE_REGEX},
                    "behavior": "Isolated",
                    "invert": False,
                },
                _byte_level(bool(kwargs.get("add_prefix_space") or False), use_regex=False),
            ],
        }
        data["decoder"] = _byte_level(True)
    elif class_name == "T5Tokenizer":
        data["model"] = {"type": "Unigram", "unk_id": 2, "vocab": model.get("vocab") or [], "byte_fallback": False}
        data["normalizer"] = _precompiled(data.get("normalizer"))
        metaspace = {"type": "Metaspace", "replacement": SPIECE_UNDERLINE, "prepend_scheme": "always", "split": True}
        data["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"}, metaspace]}
        data["decoder"] = dict(metaspace)
    elif class_name in ("BertTokenizer", "DistilBertTokenizer"):
        unk = kwargs.get("unk_token")
        _bert_wordpiece(data, model, kwargs, "[UNK]" if unk is None else unk.content)
    elif class_name == "XLMRobertaTokenizer":
        prepend = "always" if kwargs.get("add_prefix_space", True) else "never"
        metaspace = {"type": "Metaspace", "replacement": SPIECE_UNDERLINE, "prepend_scheme": prepend, "split": True}
        data["model"] = {"type": "Unigram", "unk_id": 3, "vocab": model.get("vocab") or [], "byte_fallback": False}
        data["normalizer"] = _precompiled(data.get("normalizer"))
        data["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"}, metaspace]}
        data["decoder"] = dict(metaspace)
    elif class_name == "AlbertTokenizer":
        prepend = "always" if kwargs.get("add_prefix_space", True) else "never"
        metaspace = {"type": "Metaspace", "replacement": SPIECE_UNDERLINE, "prepend_scheme": prepend, "split": True}
        normalizers: list[Any] = [
            {"type": "Replace", "pattern": {"String": "``"}, "content": '"'},
            {"type": "Replace", "pattern": {"String": "''"}, "content": '"'},
        ]
        if not kwargs.get("keep_accents", False):
            normalizers += [{"type": "NFKD"}, {"type": "StripAccents"}]
        if kwargs.get("do_lower_case", True):
            normalizers.append({"type": "Lowercase"})
        precompiled = _precompiled(data.get("normalizer"))
        if precompiled is not None:
            normalizers.append(precompiled)
        data["model"] = {"type": "Unigram", "unk_id": 1, "vocab": model.get("vocab") or [], "byte_fallback": False}
        if data.get("post_processor") is None:  # AlbertTokenizer sets its template before TokenizersBackend.__init__
            pieces = {entry[0]: index for index, entry in enumerate(data["model"]["vocab"])}
            cls_token, sep_token = kwargs.get("cls_token"), kwargs.get("sep_token")
            data["post_processor"] = _template(
                [("special", "[CLS]", 0), ("seq", "A", 0), ("special", "[SEP]", 0)],
                [("special", "[CLS]", 0), ("seq", "A", 0), ("special", "[SEP]", 0), ("seq", "B", 1)]
                + [("special", "[SEP]", 1)],
                {
                    "[CLS]": pieces.get(str(cls_token.content if cls_token else None)),
                    "[SEP]": pieces.get(str(sep_token.content if sep_token else None)),
                },
            )
        data["normalizer"] = {"type": "Sequence", "normalizers": normalizers}
        data["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"}, metaspace]}
        data["decoder"] = dict(metaspace)
    elif class_name == "DebertaV2Tokenizer":
        vocab = model.get("vocab") or []
        unk = kwargs.get("unk_token")
        unk_id = kwargs.get("unk_id", 1)
        unk_entry = [None if unk is None else unk.content, 0.0]
        for index, entry in enumerate(vocab):
            if list(entry) == unk_entry:
                unk_id = index
                break
        normalizers = [{"type": "Lowercase"}] if kwargs.get("do_lower_case", False) else []
        normalizers += [
            {"type": "Replace", "pattern": {"Regex": r"\s{2,}|[\n\r\t]"}, "content": " "},
            {"type": "NFC"},
            {"type": "Strip", "strip_left": False, "strip_right": True},
        ]
        prepend = "always" if kwargs.get("add_prefix_space", True) else "first"
        metaspace = {"type": "Metaspace", "replacement": SPIECE_UNDERLINE, "prepend_scheme": prepend, "split": True}
        pretokenizers = [{"type": "Punctuation", "behavior": "Isolated"}] if kwargs.get("split_by_punct") else []
        data["model"] = {"type": "Unigram", "unk_id": unk_id, "vocab": vocab, "byte_fallback": False}
        data["normalizer"] = {"type": "Sequence", "normalizers": normalizers}
        data["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [*pretokenizers, metaspace]}
        data["decoder"] = dict(metaspace)
    elif class_name == "MPNetTokenizer":
        unk = kwargs.get("unk_token")
        _bert_wordpiece(data, model, kwargs, str(None if unk is None else unk.content))
        # MPNetTokenizer.__init__ turns string tokens into AddedTokens (the mask token strips on its left)
        for name in SPECIAL_TOKEN_ATTRIBUTES:
            token = kwargs.get(name)
            if token is not None and token.added is None:
                kwargs[name] = _Token(token.content, _added_token(token.content, lstrip=name == "mask_token"))
    else:  # pragma: no cover - guarded by _CLASS_DEFAULTS
        raise AssertionError(class_name)
    data["added_tokens"] = []  # a rebuilt backend starts without added tokens; they are re-added below


def _post_super(class_name: str, data: dict[str, Any], kwargs: dict[str, Any], vocab: _AddedVocabulary) -> None:
    """What a class's __init__ does after TokenizersBackend.__init__: post-processors and extra added tokens."""

    def token_id(name: str) -> int | None:
        token = kwargs.get(name)
        return None if token is None else vocab.token_to_id(token.content)

    if class_name in ("BertTokenizer", "DistilBertTokenizer"):
        cls_token, sep_token = kwargs.get("cls_token"), kwargs.get("sep_token")
        cls_text, sep_text = (
            str(cls_token.content if cls_token else None),
            str(sep_token.content if sep_token else None),
        )
        cls_id, sep_id = token_id("cls_token"), token_id("sep_token")
        cls_id = 2 if cls_id is None else cls_id
        sep_id = 3 if sep_id is None else sep_id
        data["post_processor"] = _template(
            [("special", cls_text, 0), ("seq", "A", 0), ("special", sep_text, 0)],
            [
                ("special", cls_text, 0),
                ("seq", "A", 0),
                ("special", sep_text, 0),
                ("seq", "B", 1),
                ("special", sep_text, 1),
            ],
            {cls_text: cls_id, sep_text: sep_id},
        )
    elif class_name == "RobertaTokenizer":
        sep_token, cls_token = kwargs.get("sep_token"), kwargs.get("cls_token")
        data["post_processor"] = {
            "type": "RobertaProcessing",
            "sep": [str(sep_token.content if sep_token else None), token_id("sep_token")],
            "cls": [str(cls_token.content if cls_token else None), token_id("cls_token")],
            "trim_offsets": bool(kwargs.get("trim_offsets", True)),
            "add_prefix_space": bool(kwargs.get("add_prefix_space", False)),
        }
    elif class_name == "T5Tokenizer":
        data["post_processor"] = _template(
            [("seq", "A", 0), ("special", "</s>", 0)],
            [("seq", "A", 0), ("special", "</s>", 0), ("seq", "B", 0), ("special", "</s>", 0)],
            {"</s>": token_id("eos_token")},
        )
    elif class_name == "GPTNeoXTokenizer":
        data["post_processor"] = _EMPTY_TEMPLATE
    elif class_name == "CodeLlamaTokenizer":
        # it passes add_bos_token=True to TokenizersBackend, which then writes its own bos template
        bos = kwargs.get("bos_token")
        if bos is None:
            data["post_processor"] = _EMPTY_TEMPLATE
        else:
            data["post_processor"] = _template(
                [("special", bos.content, 0), ("seq", "A", 0)],
                [("special", bos.content, 0), ("seq", "A", 0), ("special", bos.content, 1), ("seq", "B", 1)],
                {bos.content: token_id("bos_token")},
            )
    elif class_name == "XLMRobertaTokenizer":
        bos = str(kwargs["bos_token"].content if kwargs.get("bos_token") else None)
        eos = str(kwargs["eos_token"].content if kwargs.get("eos_token") else None)
        data["post_processor"] = _template(
            [("special", bos, 0), ("seq", "A", 0), ("special", eos, 0)],
            [("special", bos, 0), ("seq", "A", 0), ("special", eos, 0), ("special", eos, 0), ("seq", "B", 0)]
            + [("special", eos, 0)],
            {bos: token_id("bos_token"), eos: token_id("eos_token")},
        )
    elif class_name == "DebertaV2Tokenizer":
        cls_token, sep_token = kwargs.get("cls_token"), kwargs.get("sep_token")
        cls_text, sep_text = (
            str(cls_token.content if cls_token else None),
            str(sep_token.content if sep_token else None),
        )
        cls_id, sep_id = token_id("cls_token"), token_id("sep_token")
        data["post_processor"] = _template(
            [("special", cls_text, 0), ("seq", "A", 0), ("special", sep_text, 0)],
            [
                ("special", cls_text, 0),
                ("seq", "A", 0),
                ("special", sep_text, 0),
                ("seq", "B", 1),
                ("special", sep_text, 1),
            ],
            {cls_text: 0 if cls_id is None else cls_id, sep_text: 0 if sep_id is None else sep_id},
        )
    elif class_name == "MPNetTokenizer":
        sep_token, cls_token = kwargs.get("sep_token"), kwargs.get("cls_token")
        sep_id, cls_id = token_id("sep_token"), token_id("cls_token")
        data["post_processor"] = {
            "type": "RobertaProcessing",
            "sep": [str(sep_token.content if sep_token else None), 2 if sep_id is None else sep_id],
            "cls": [str(cls_token.content if cls_token else None), 0 if cls_id is None else cls_id],
            "trim_offsets": True,
            "add_prefix_space": False,
        }
    elif class_name in ("Qwen2Tokenizer", "Qwen2TokenizerFast"):
        specials = []
        for name in SPECIAL_TOKEN_ATTRIBUTES:
            token = kwargs.get(name)
            if token is not None and token.content not in specials:
                specials.append(token.content)
        for token in _extra_special(kwargs):
            if token.content not in specials:
                specials.append(token.content)
        vocab.add([_added_token(content, special=True) for content in specials])


def _extra_special(kwargs: dict[str, Any]) -> list[_Token]:
    tokens = [_as_token(token) for token in kwargs.get("extra_special_tokens") or []]
    tokens += [_as_token(token) for token in (kwargs.get("model_specific_special_tokens") or {}).values()]
    return [token for token in tokens if token is not None]


def _named_special(kwargs: dict[str, Any]) -> list[_Token]:
    tokens = [kwargs.get(name) for name in SPECIAL_TOKEN_ATTRIBUTES]
    tokens += [_as_token(token) for token in (kwargs.get("model_specific_special_tokens") or {}).values()]
    return [token for token in tokens if token is not None]


def _add_special_tokens(vocab: _AddedVocabulary, kwargs: dict[str, Any], added_decoder: dict[int, dict[str, Any]]):
    """TokenizersBackend.__init__: re-add the added_tokens_decoder, then the special tokens not yet added."""
    tokens_to_add: list[Any] = [dict(added_decoder[index]) for index in sorted(added_decoder)]
    encoder = [vocab.by_id[index]["content"] for index in sorted(vocab.by_id)]
    encoder += [token["content"] for token in tokens_to_add]
    named = _named_special(kwargs)
    candidates = named + [token for token in _extra_special(kwargs)]
    named_contents = {token.content for token in named}
    for token in candidates:
        as_value = token.added if token.added is not None else token.content
        if token.content not in encoder and as_value not in tokens_to_add:
            tokens_to_add.append(as_value)
            encoder.append(token.content)
    final = []
    for token in tokens_to_add:
        if isinstance(token, str):
            final.append(_added_token(token, special=True))
        else:
            token = dict(token)
            if not token["special"] and token["content"] in named_contents:
                token["special"] = True
            final.append(token)
    vocab.add(final)


def build(
    folder: Path, tokenizer_text: str, config: dict[str, Any], special_map: dict[str, Any], model_config: dict[str, Any]
) -> tuple[str | None, str, dict[str, Any]]:
    """``(tokenizer.json text to build, or None to use the file as is; class name; Tokenizer settings)``."""
    class_name = resolve_class(config, model_config, tokenizer_text)
    if class_name not in _CLASS_DEFAULTS:
        warnings.warn(
            f"'{folder}' names the transformers tokenizer class {class_name}, which rebuilds its pipeline from "
            "tokenizer_config.json in a way ferrotune does not reproduce yet: ferrotune uses tokenizer.json as is, so "
            "its output can differ from AutoTokenizer. Load it with AutoTokenizer and wrap it with "
            "ferrotune.Tokenizer.from_transformers(tokenizer) to get transformers' pipeline exactly.",
            stacklevel=3,
        )
        class_name = BACKEND
    if config.get("split_special_tokens"):
        warnings.warn(
            f"'{folder / 'tokenizer_config.json'}' sets split_special_tokens, which makes transformers tokenize "
            "special tokens in the text as ordinary text; ferrotune matches them as special tokens, so outputs differ "
            "on texts that contain them. Remove the setting, or use transformers for this tokenizer.",
            stacklevel=3,
        )
    try:
        data = json.loads(tokenizer_text)
    except RecursionError:
        raise nested_too_deeply(folder / "tokenizer.json", tokenizer_text) from None
    except json.JSONDecodeError as error:
        raise TokenizerFormatError(f"malformed JSON in '{folder / 'tokenizer.json'}': {error}") from error
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise TokenizerFormatError(
            f"'{folder / 'tokenizer.json'}' is not a tokenizers file: it has no \"model\" object"
        )
    _check_tokenizer_json(data, folder / "tokenizer.json")
    try:
        kwargs, added_decoder = init_arguments(config, special_map, data)
    except (KeyError, TypeError, ValueError) as error:
        raise TokenizerFormatError(f"cannot read the tokens of '{folder}': {error}") from error

    defaults = _CLASS_DEFAULTS[class_name]
    for name, value in defaults["tokens"].items():
        if name not in kwargs:
            kwargs[name] = _Token(value)
    if class_name == "T5Tokenizer" and "extra_special_tokens" not in kwargs:
        # T5Tokenizer.__init__: <extra_id_0> ... <extra_id_{extra_ids-1}> unless additional_special_tokens has them
        sentinels = [f"<extra_id_{i}>" for i in range(int(kwargs.get("extra_ids", 100)))]
        additional = kwargs.pop("additional_special_tokens", None)
        if additional is None:
            kwargs["extra_special_tokens"] = sentinels
        elif not any("<extra_id_" in _as_token(token).content for token in additional):
            kwargs["extra_special_tokens"] = list(additional) + sentinels
        else:
            kwargs["extra_special_tokens"] = list(additional)
    if "additional_special_tokens" in kwargs and "extra_special_tokens" not in kwargs:
        # PreTrainedTokenizerBase.__init__ (special_tokens_map.json's additional_special_tokens arrive here)
        kwargs["extra_special_tokens"] = kwargs.pop("additional_special_tokens")
    if class_name == "CodeLlamaTokenizer":
        # CodeLlamaTokenizer.__init__ passes its FIM tokens as named tokens and as additional special tokens
        explicit = kwargs.get("model_specific_special_tokens") or {}
        named = {name: default for name, default in _CODE_LLAMA_FIM}
        kwargs["model_specific_special_tokens"] = {**named, **explicit}
        if "extra_special_tokens" not in kwargs:
            kwargs["extra_special_tokens"] = [default for _, default in _CODE_LLAMA_FIM]
    padding = data.get("padding") if isinstance(data.get("padding"), Mapping) else None
    if padding is not None and "pad_token" not in kwargs and padding.get("pad_token") is not None:
        kwargs["pad_token"] = _Token(str(padding["pad_token"]))

    original = json.dumps({key: data.get(key) for key in ("normalizer", "pre_tokenizer", "post_processor", "decoder")})
    original_added = data.get("added_tokens") or []
    original_model = data["model"]
    if class_name != BACKEND:
        _rebuild_pipeline(class_name, data, kwargs)
    vocab = _AddedVocabulary(data["model"], data.get("added_tokens") or [])
    _add_special_tokens(vocab, kwargs, added_decoder)
    if data.get("post_processor") is None:
        data["post_processor"] = _EMPTY_TEMPLATE  # TokenizersBackend.update_post_processor without bos/eos
    _post_super(class_name, data, kwargs, vocab)
    data["added_tokens"] = vocab.to_json()

    unchanged = (
        data["model"] is original_model
        and data["added_tokens"] == original_added
        and json.dumps({key: data.get(key) for key in ("normalizer", "pre_tokenizer", "post_processor", "decoder")})
        == original
    )
    settings = _settings(class_name, kwargs, padding, data.get("truncation"))
    return (None if unchanged else json.dumps(data, ensure_ascii=False)), class_name, settings


def chat_template(folder: Path, config: dict[str, Any]) -> dict[str, Any]:
    """tokenization_utils_base._from_pretrained: chat_template.jinja and additional_chat_templates/*.jinja take
    priority over the config's chat_template; a list of {"name", "template"} becomes a dict."""
    templates: dict[str, str] = {}
    default = folder / "chat_template.jinja"
    try:
        if default.is_file():
            templates["default"] = default.read_text(encoding="utf-8")
        extra = folder / "additional_chat_templates"
        if extra.is_dir():
            for path in sorted(extra.glob("*.jinja")):
                templates[path.name.removesuffix(".jinja")] = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise TokenizerFormatError(f"a chat template file in '{folder}' is not UTF-8 text: {error}") from error
    if len(templates) == 1 and "default" in templates:
        return {"chat_template": templates["default"]}
    if templates:
        return {"chat_template": templates}
    value = config.get("chat_template")
    if isinstance(value, (list, tuple)):
        try:
            return {"chat_template": {item["name"]: item["template"] for item in value}}
        except (KeyError, TypeError):
            raise TokenizerFormatError(
                f"'{folder / 'tokenizer_config.json'}': chat_template is a list, so each entry must be "
                '{"name": ..., "template": ...}: fix or remove this key'
            ) from None
    if value is not None and not isinstance(value, (str, Mapping)):
        raise TokenizerFormatError(
            f"'{folder / 'tokenizer_config.json'}': chat_template is {type(value).__name__}; it must be a string "
            "(a Jinja template): fix or remove this key"
        )
    return {"chat_template": value}


def _settings(
    class_name: str, kwargs: dict[str, Any], padding: Mapping[str, Any] | None, truncation: Any
) -> dict[str, Any]:
    from .padding import VERY_LARGE_INTEGER

    defaults = _CLASS_DEFAULTS[class_name]
    padding_side = defaults.get("padding_side", "right")
    pad_type_id = 0
    if padding is not None:
        padding_side = {"Left": "left", "Right": "right"}.get(padding.get("direction"), padding_side)
        pad_type_id = int(padding.get("pad_type_id") or 0)
    truncation_side = "right"
    if isinstance(truncation, Mapping):
        truncation_side = {"Left": "left", "Right": "right"}.get(truncation.get("direction"), truncation_side)
    max_length = kwargs.get("model_max_length", kwargs.get("max_len"))
    settings: dict[str, Any] = {
        "model_max_length": VERY_LARGE_INTEGER if max_length is None else int(max_length),
        "padding_side": kwargs.get("padding_side", padding_side),
        "truncation_side": kwargs.get("truncation_side", truncation_side),
        "model_input_names": list(kwargs.get("model_input_names", defaults["input_names"])),
        "pad_token_type_id": pad_type_id,
        "clean_up_tokenization_spaces": bool(kwargs.get("clean_up_tokenization_spaces", False)),
    }
    for name in SPECIAL_TOKEN_ATTRIBUTES:
        token = kwargs.get(name)
        settings[name] = None if token is None else token.content
    extra = [_as_token(token).content for token in kwargs.get("extra_special_tokens") or []]
    settings["extra_special_tokens"] = list(dict.fromkeys(extra))
    return settings
