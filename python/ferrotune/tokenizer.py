"""``ferrotune.Tokenizer``: transformers' fast-tokenizer call, computed by ferrotune's Rust core."""

from __future__ import annotations

import inspect
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from . import _core, _hf_loading
from . import padding as _padding
from .batch_encoding import Alignment, BatchEncoding, Column, build_output, normalize_tensor_type, to_py_obj
from .errors import (
    EmptyBatchError,
    InputTypeError,
    InvalidArgumentError,
    InvalidInputError,
    TokenizerFileNotFoundError,
    TokenizerFormatError,
)
from .padding import VERY_LARGE_INTEGER

# transformers logs the over-length warning here; the same name lets its logging settings and tests see ours.
_transformers_logger = logging.getLogger("transformers.tokenization_utils_base")
_TOO_LONG_KEY = "sequence-length-is-longer-than-the-specified-maximum"

SPECIAL_TOKEN_ATTRIBUTES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


# transformers 5's base class (a bare tokenizer.json, no known family) returns no token_type_ids.
_BASE_INPUT_NAMES = ["input_ids", "attention_mask"]


def _token_content(value: Any) -> str | None:
    """Special tokens are stored as strings or as AddedToken dicts ({"content": ...})."""
    if isinstance(value, Mapping):
        return value.get("content")
    return value


class Tokenizer:
    """A tokenizer with the call signature and output of transformers' fast tokenizers, computed in Rust.

    >>> tok = Tokenizer.from_pretrained("path/to/model")
    >>> batch = tok(["a sentence", "another one"], padding=True, truncation=True, return_tensors="pt")
    """

    # Properties made below the class (settable; setting ``*_token_id`` sets the token of that id).
    bos_token: str | None
    eos_token: str | None
    unk_token: str | None
    sep_token: str | None
    pad_token: str | None
    cls_token: str | None
    mask_token: str | None
    bos_token_id: int | None
    eos_token_id: int | None
    unk_token_id: int | None
    sep_token_id: int | None
    pad_token_id: int | None
    cls_token_id: int | None
    mask_token_id: int | None

    def __init__(
        self,
        tokenizer_json: str,
        *,
        model_max_length: int = VERY_LARGE_INTEGER,
        padding_side: str = "right",
        truncation_side: str = "right",
        model_input_names: list[str] | None = None,
        pad_token_type_id: int = 0,
        clean_up_tokenization_spaces: bool = False,
        engine: str = "auto",
        chat_template: str | dict[str, str] | None = None,
        extra_special_tokens: list[str] | None = None,
        _built: Any = None,
        **special_tokens: str | None,
    ) -> None:
        unknown = set(special_tokens) - set(SPECIAL_TOKEN_ATTRIBUTES)
        if unknown:
            raise InvalidArgumentError(f"unknown tokenizer settings: {sorted(unknown)}")
        # `_built`: an engine from_file already built from this file (building one twice doubles start-up).
        self._core = _built if _built is not None else _core.Tokenizer.from_str(tokenizer_json, engine)
        self._engine = engine
        self.model_max_length = int(model_max_length)
        self.padding_side = padding_side
        self.truncation_side = truncation_side
        self.model_input_names = list(model_input_names or _BASE_INPUT_NAMES)
        self.pad_token_type_id = pad_token_type_id
        self.clean_up_tokenization_spaces = clean_up_tokenization_spaces
        # kept so that save_pretrained writes them back (ferrotune does not apply chat templates itself)
        self.chat_template = chat_template
        self.extra_special_tokens = list(extra_special_tokens or [])
        for name in SPECIAL_TOKEN_ATTRIBUTES:
            setattr(self, name, special_tokens.get(name))
        self._model_type = self._core.model_type()
        # transformers: the arguments the tokenizer was made with (from_pretrained adds tokenizer_config.json's)
        self.init_kwargs: dict[str, Any] = {
            "model_max_length": self.model_max_length,
            "padding_side": padding_side,
            "truncation_side": truncation_side,
            "model_input_names": list(self.model_input_names),
            "clean_up_tokenization_spaces": clean_up_tokenization_spaces,
            **{name: value for name, value in special_tokens.items() if value is not None},
        }
        self.name_or_path = ""
        # transformers: warnings given once per tokenizer (the over-length warning of __call__)
        self.deprecation_warnings: dict[str, bool] = {}

    # ----------------------------------------------------------------------------------------------
    # Constructors

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **settings: Any) -> Tokenizer:
        """Loads a ``tokenizer.json``; ``settings`` are the keyword arguments of ``Tokenizer(...)``."""
        core = _core.Tokenizer.from_file(Path(path), settings.get("engine", "auto"))
        return cls("", _built=core, **settings)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike[str], **overrides: Any) -> Tokenizer:
        """Loads a local model folder as transformers' ``AutoTokenizer.from_pretrained`` does: ``tokenizer.json``
        plus the settings of ``tokenizer_config.json``, ``special_tokens_map.json`` and ``config.json``."""
        folder = Path(directory)
        if not folder.is_dir():
            raise TokenizerFileNotFoundError(
                f"'{folder}' is not a folder (ferrotune cannot download from the Hugging Face Hub; pass a local path)"
            )
        tokenizer_file = folder / "tokenizer.json"
        if not tokenizer_file.is_file():
            raise TokenizerFileNotFoundError(f"no tokenizer.json in '{folder}': ferrotune needs a fast tokenizer file")
        files = {}
        for name in ("tokenizer_config.json", "special_tokens_map.json", "config.json"):
            path = folder / name
            files[name] = _hf_loading.read_json_object(path) if path.is_file() else {}
            if name == "config.json":
                _hf_loading.check_model_config(files[name], path)
            else:
                _hf_loading.check_config(files[name], path)
        try:
            tokenizer_text = tokenizer_file.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise TokenizerFormatError(f"'{tokenizer_file}' is not UTF-8 text: {error}") from error
        # transformers 5 picks a tokenizer class from the configs and many classes rebuild the pipeline of
        # tokenizer.json (Llama's Metaspace, GPT-2's add_prefix_space, ...): build what AutoTokenizer builds.
        edited, _, settings = _hf_loading.build(
            folder,
            tokenizer_text,
            files["tokenizer_config.json"],
            files["special_tokens_map.json"],
            files["config.json"],
        )
        settings.update(_hf_loading.chat_template(folder, files["tokenizer_config.json"]))
        settings.update(overrides)
        if edited is None:
            tokenizer = cls.from_file(tokenizer_file, **settings)
        else:
            try:
                tokenizer = cls(edited, **settings)
            except TokenizerFormatError as error:  # built from the edited text: name the file it came from
                raise TokenizerFormatError(f"'{tokenizer_file}': {error}") from error
        # as transformers' init_kwargs: the config's entries, then what the folder and the caller resolved
        init_kwargs = dict(files["tokenizer_config.json"])
        init_kwargs.update(tokenizer.init_kwargs)
        if tokenizer.extra_special_tokens:
            init_kwargs["extra_special_tokens"] = list(tokenizer.extra_special_tokens)
        init_kwargs["name_or_path"] = str(directory)
        tokenizer.init_kwargs = init_kwargs
        tokenizer.name_or_path = str(directory)
        return tokenizer

    @classmethod
    def from_transformers(cls, tokenizer: Any, *, engine: str = "auto") -> Tokenizer:
        """Wraps the Rust tokenizer and settings of a transformers fast tokenizer."""
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise InputTypeError(
                f"{type(tokenizer).__name__} has no backend_tokenizer: "
                "ferrotune needs a fast (tokenizers-backed) tokenizer"
            )
        settings = {name: _token_content(getattr(tokenizer, name, None)) for name in SPECIAL_TOKEN_ATTRIBUTES}
        settings = {name: (str(value) if value is not None else None) for name, value in settings.items()}
        return cls(
            backend.to_str(),
            model_max_length=tokenizer.model_max_length,
            padding_side=tokenizer.padding_side,
            truncation_side=tokenizer.truncation_side,
            model_input_names=list(tokenizer.model_input_names),
            pad_token_type_id=tokenizer.pad_token_type_id,
            clean_up_tokenization_spaces=bool(getattr(tokenizer, "clean_up_tokenization_spaces", False)),
            engine=engine,
            chat_template=getattr(tokenizer, "chat_template", None),
            extra_special_tokens=[str(token) for token in getattr(tokenizer, "extra_special_tokens", None) or []],
            **settings,
        )

    def save_pretrained(
        self, save_directory: str | os.PathLike[str], filename_prefix: str | None = None, **kwargs: Any
    ) -> tuple[str, ...]:
        """Writes ``tokenizer.json``, ``tokenizer_config.json`` and ``special_tokens_map.json`` into
        ``save_directory`` (created if missing) and returns their paths, as transformers' ``save_pretrained``.

        The folder loads back with ``Tokenizer.from_pretrained`` and with transformers' ``AutoTokenizer`` to
        the same tokenizer: ``tokenizer.json`` holds the pipeline this tokenizer runs (after any rebuild
        transformers' tokenizer class made when it was loaded), and the config names
        ``PreTrainedTokenizerFast`` (transformers 5's ``TokenizersBackend``), so neither library rebuilds it
        again. ``Trainer`` calls this method on its ``processing_class`` when it writes checkpoints and
        ``save_model``. Other keyword arguments that transformers accepts (``legacy_format``, ``push_to_hub``)
        are refused unless they are false/None.
        """
        for name, value in kwargs.items():
            if name in ("legacy_format", "save_format") and value in (None, False, "hf"):
                continue
            if name == "push_to_hub" and not value:
                continue
            raise InvalidArgumentError(f"save_pretrained does not support {name}={value!r} (ferrotune saves locally)")
        folder = Path(save_directory)
        if folder.exists() and not folder.is_dir():
            raise InvalidArgumentError(f"save_pretrained needs a folder, but '{folder}' is a file")
        folder.mkdir(parents=True, exist_ok=True)
        prefix = f"{filename_prefix}-" if filename_prefix else ""
        tokenizer_json = self._core.to_str()
        added = json.loads(tokenizer_json).get("added_tokens") or []
        special = self.special_tokens_map
        config: dict[str, Any] = {
            # the pipeline is already what transformers' class built: neither library may rebuild it again.
            # PreTrainedTokenizerFast is transformers 5's alias of TokenizersBackend, and a name transformers 4 knows.
            "tokenizer_class": "PreTrainedTokenizerFast",
            "backend": "tokenizers",
            "added_tokens_decoder": {
                str(token["id"]): {key: value for key, value in token.items() if key != "id"} for token in added
            },
            **special,
            "model_max_length": self.model_max_length,
            "padding_side": self.padding_side,
            "truncation_side": self.truncation_side,
            "model_input_names": list(self.model_input_names),
            "clean_up_tokenization_spaces": bool(self.clean_up_tokenization_spaces),
        }
        if self.extra_special_tokens:
            # the name transformers 4 reads; transformers 5 reads it as extra_special_tokens
            config["additional_special_tokens"] = list(self.extra_special_tokens)
        template = self.chat_template
        if isinstance(template, Mapping):
            config["chat_template"] = [{"name": name, "template": text} for name, text in template.items()]
        elif template is not None:
            config["chat_template"] = template
        special_map: dict[str, Any] = dict(special)
        if self.extra_special_tokens:
            special_map["additional_special_tokens"] = list(self.extra_special_tokens)
        paths = [folder / f"{prefix}tokenizer_config.json", folder / f"{prefix}special_tokens_map.json"]
        contents = [
            json.dumps(config, indent=2, ensure_ascii=False) + "\n",
            json.dumps(special_map, indent=2, ensure_ascii=False) + "\n",
        ]
        if isinstance(template, str):
            # transformers 5 reads the template from this file first, so a stale one must not stay behind
            paths.append(folder / f"{prefix}chat_template.jinja")
            contents.append(template)
        paths.append(folder / f"{prefix}tokenizer.json")
        contents.append(tokenizer_json)
        for path, text in zip(paths, contents):
            temporary = path.with_name(path.name + ".tmp")
            temporary.write_text(text, encoding="utf-8")
            os.replace(temporary, path)  # a reader never sees half a file
        return tuple(str(path) for path in paths)

    @property
    def encoder(self) -> str:
        """The encoder tokenizing each sequence: ``"fast-wordpiece"`` (ferrotune's native BERT WordPiece,
        picked automatically for pipelines it reproduces exactly) or ``"general"`` (the tokenizers crate).
        ``Tokenizer.from_pretrained(path, engine="general")`` forces the latter."""
        return self._core.encoder_name()

    @property
    def is_fast(self) -> bool:
        """True, as transformers' Rust-backed tokenizers: offsets, word ids and the alignment methods are there
        (code such as the course's ``if tokenizer.is_fast:`` takes its fast branch)."""
        return True

    # ----------------------------------------------------------------------------------------------
    # Pickling (DataLoader workers started with spawn receive a copy)

    def __getstate__(self) -> dict[str, Any]:
        state = {name: value for name, value in self.__dict__.items() if name != "_core"}
        state["_tokenizer_json"] = self._core.to_str()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        self._core = _core.Tokenizer.from_str(state.pop("_tokenizer_json"), state.get("_engine", "auto"))
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return (
            f"ferrotune.Tokenizer({self._model_type}, vocab_size={self.vocab_size}, "
            f"model_max_length={self.model_max_length}, padding_side={self.padding_side!r}, "
            f"truncation_side={self.truncation_side!r}, special_tokens={self.special_tokens_map})"
        )

    # ----------------------------------------------------------------------------------------------
    # Vocabulary and special tokens

    @property
    def padding_side(self) -> str:
        return self._padding_side

    @padding_side.setter
    def padding_side(self, value: str) -> None:
        if value not in ("left", "right"):
            raise InvalidArgumentError(f"padding_side must be 'left' or 'right', got {value!r}")
        self._padding_side = value

    @property
    def truncation_side(self) -> str:
        return self._truncation_side

    @truncation_side.setter
    def truncation_side(self, value: str) -> None:
        if value not in ("left", "right"):
            raise InvalidArgumentError(f"truncation_side must be 'left' or 'right', got {value!r}")
        self._truncation_side = value

    @property
    def vocab_size(self) -> int:
        """Size of the base vocabulary, without added tokens (as transformers)."""
        return self._core.get_vocab_size(with_added_tokens=False)

    def __len__(self) -> int:
        return self._core.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        return self._core.get_vocab(with_added_tokens=True)

    def _token_id(self, token: str | None) -> int | None:
        if token is None:
            return None
        return self.convert_tokens_to_ids(token)

    def _id_token(self, name: str, token_id: Any) -> str:
        """The token of ``token_id``, for ``tok.<name>_id = token_id`` (transformers' ``__setattr__``)."""
        token_id = to_py_obj(token_id)
        if isinstance(token_id, bool) or not isinstance(token_id, int):
            raise InvalidArgumentError(f"{name}_id must be an int token id or None, got {type(token_id).__name__}")
        token = self._core.id_to_token(token_id) if token_id >= 0 else None
        if token is None:
            raise InvalidArgumentError(f"{name}_id={token_id} is not in the vocabulary (size {len(self)})")
        return token

    @property
    def extra_special_tokens(self) -> list[str]:
        """Special tokens without a name of their own (transformers 5's name for ``additional_special_tokens``):
        they are in ``all_special_tokens`` and ``all_special_ids``."""
        return list(self._extra_special_tokens)

    @extra_special_tokens.setter
    def extra_special_tokens(self, value: Any) -> None:
        if value is None:
            self._extra_special_tokens: list[str] = []
            return
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise InvalidArgumentError(f"extra_special_tokens must be a list or tuple, got {type(value).__name__}")
        self._extra_special_tokens = [_as_token_text("extra_special_tokens", token) for token in value]

    @property
    def extra_special_tokens_ids(self) -> list[int]:
        return [self.convert_tokens_to_ids(token) for token in self._extra_special_tokens]

    @extra_special_tokens_ids.setter
    def extra_special_tokens_ids(self, value: Any) -> None:
        if value is None:
            self.extra_special_tokens = None
            return
        self.extra_special_tokens = [self._id_token("extra_special_tokens", token_id) for token_id in to_py_obj(value)]

    @property
    def special_tokens_map(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in SPECIAL_TOKEN_ATTRIBUTES if getattr(self, name) is not None}

    @property
    def all_special_tokens(self) -> list[str]:
        """The named special tokens, then the extra ones, each once (as transformers 5)."""
        return list(dict.fromkeys([*self.special_tokens_map.values(), *self._extra_special_tokens]))

    @property
    def all_special_ids(self) -> list[int]:
        return [self.convert_tokens_to_ids(token) for token in self.all_special_tokens]

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return self._core.num_special_tokens_to_add(pair)

    def convert_tokens_to_ids(self, tokens: str | list[str]) -> int | list[int]:
        if isinstance(tokens, str):
            found = self._core.token_to_id(tokens)
            return found if found is not None else self.unk_token_id
        return [self.convert_tokens_to_ids(token) for token in tokens]

    def convert_ids_to_tokens(self, ids: int | list[int], skip_special_tokens: bool = False) -> str | None | list[str]:
        if isinstance(ids, (int, np.integer)):
            return self._core.id_to_token(int(ids))
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        return [self._core.id_to_token(int(i)) for i in to_py_obj(ids) if int(i) not in skip]

    # ----------------------------------------------------------------------------------------------
    # Chat templates (rendered in Rust: ferrotune.chat)

    def get_chat_template(self, chat_template: str | None = None, tools: list | None = None) -> str:
        """The chat template to use, as transformers' ``get_chat_template``."""
        from . import chat

        return chat.get_chat_template(self, chat_template, tools)

    def apply_chat_template(self, conversation: Any, *args: Any, **kwargs: Any) -> Any:
        """transformers' ``apply_chat_template`` with the same arguments and results, the template rendered in Rust
        (minijinja set up as transformers sets up Jinja2) over the batch in parallel; ``return_assistant_tokens_mask``
        from ``{% generation %}`` blocks. See :func:`ferrotune.chat.apply_chat_template`."""
        from . import chat

        return chat.apply_chat_template(self, conversation, *args, **kwargs)

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        """Tokens joined back into text by the tokenizer's decoder (transformers' fast tokenizers do the same)."""
        return self._core.decode_tokens([str(token) for token in tokens])

    def tokenize(self, text: str, pair: str | None = None, add_special_tokens: bool = False) -> list[str]:
        # Tokens are the vocabulary entries of the ids (the crate's fast path leaves token strings empty).
        ids = self(text, pair, add_special_tokens=add_special_tokens)["input_ids"]
        return [self._core.id_to_token(i) for i in ids]

    # ----------------------------------------------------------------------------------------------
    # Added tokens (transformers' add_tokens / add_special_tokens, the tokenizers crate's AddedVocabulary)

    def get_added_vocab(self) -> dict[str, int]:
        """The added tokens (special or not) and their ids, as transformers' ``get_added_vocab``."""
        added = json.loads(self._core.to_str()).get("added_tokens") or []
        return {token["content"]: token["id"] for token in added}

    @property
    def added_tokens_encoder(self) -> dict[str, int]:
        return dict(sorted(self.get_added_vocab().items(), key=lambda item: item[1]))

    def add_tokens(self, new_tokens: Any, special_tokens: bool = False) -> int:
        """Adds tokens that are never split (as transformers' ``add_tokens``); returns how many were added.

        ``new_tokens`` is a str, an ``AddedToken`` (``tokenizers.AddedToken``, or a dict with ``"content"`` and
        its flags) or a list of them. A str becomes a normalized non-special token, or with
        ``special_tokens=True`` a special one matched as written. Tokens new to the vocabulary get the next ids
        (``len(tokenizer)`` grows); encoding, decoding, ``get_vocab`` and ``save_pretrained`` see them, as in
        transformers. The Rust engine is rebuilt with them: ferrotune's native encoders keep serving the
        tokenizer when they reproduce the added tokens (special, unnormalized ones for WordPiece), otherwise
        the tokenizers crate encodes it (``tokenizer.encoder`` says which)."""
        if not new_tokens:
            return 0
        if not isinstance(new_tokens, (list, tuple)):
            new_tokens = [new_tokens]
        tokens = [_added_token(token, special_tokens) for token in new_tokens]
        data = json.loads(self._core.to_str())
        count = _add_to_vocabulary(data, tokens, self._core.get_vocab(with_added_tokens=False))
        self._core = _core.Tokenizer.from_str(json.dumps(data, ensure_ascii=False), self._engine)
        return count

    def add_special_tokens(
        self, special_tokens_dict: Mapping[str, Any], replace_extra_special_tokens: bool = True
    ) -> int:
        """Adds special tokens and sets the named ones, as transformers 5's ``add_special_tokens``.

        Keys are the named special tokens (``"pad_token"``, ``"cls_token"``, ...) and ``"extra_special_tokens"``
        (or its transformers 4 name ``"additional_special_tokens"``): a list that replaces
        ``extra_special_tokens``, or extends it with ``replace_extra_special_tokens=False``. Tokens are added to the
        vocabulary with ``add_tokens(..., special_tokens=True)``; returns how many were added."""
        if not special_tokens_dict:
            return 0
        special_tokens_dict = dict(special_tokens_dict)
        if "additional_special_tokens" in special_tokens_dict and not special_tokens_dict.get("extra_special_tokens"):
            special_tokens_dict["extra_special_tokens"] = special_tokens_dict.pop("additional_special_tokens")
        allowed = (*SPECIAL_TOKEN_ATTRIBUTES, "extra_special_tokens")
        for key, value in special_tokens_dict.items():
            if key not in allowed:
                raise InvalidArgumentError(f"Key {key} is not a valid special token. Valid keys are: {list(allowed)}")
            if key == "extra_special_tokens":
                if not isinstance(value, (list, tuple)):
                    raise InvalidArgumentError(
                        f"Tokens {value!r} for key {key} should be a list of str or AddedToken instances"
                    )
            elif value is None or isinstance(value, (list, tuple)):
                raise InvalidArgumentError(f"Token {value!r} for key {key} should be a str or an AddedToken instance")
        tokens_to_add: list[Any] = []
        for key, value in special_tokens_dict.items():
            if key == "extra_special_tokens":
                texts = [_as_token_text(key, token) for token in value]
                new = [
                    token
                    for token, text in zip(value, texts)
                    if replace_extra_special_tokens or text not in self._extra_special_tokens
                ]
                if replace_extra_special_tokens and new:
                    self.extra_special_tokens = new
                else:
                    self.extra_special_tokens = [*self._extra_special_tokens, *new]
                tokens_to_add.extend(new)
            else:
                setattr(self, key, value)
                tokens_to_add.append(value)
        return self.add_tokens(tokens_to_add, special_tokens=True)

    # ----------------------------------------------------------------------------------------------
    # Decoding

    def decode(
        self,
        token_ids: Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
    ) -> str | list[str]:
        """Ids to text; a batch of sequences gives a list of texts (as transformers' ``decode``)."""
        token_ids = to_py_obj(token_ids)
        if isinstance(token_ids, dict):
            token_ids = token_ids["input_ids"]
        if isinstance(token_ids, int):
            token_ids = [token_ids]
        if token_ids and isinstance(token_ids[0], (list, tuple)):
            return self.batch_decode(token_ids, skip_special_tokens, clean_up_tokenization_spaces)
        text = self._core.decode(token_ids, skip_special_tokens)
        return self._clean_up(text, clean_up_tokenization_spaces)

    def batch_decode(
        self,
        sequences: Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
    ) -> list[str]:
        sequences = to_py_obj(sequences)
        if sequences and not isinstance(sequences[0], (list, tuple)):
            sequences = [sequences]
        texts = self._core.decode_batch([list(s) for s in sequences], skip_special_tokens)
        return [self._clean_up(text, clean_up_tokenization_spaces) for text in texts]

    def _clean_up(self, text: str, clean_up: bool | None) -> str:
        clean_up = self.clean_up_tokenization_spaces if clean_up is None else clean_up
        # transformers skips this clean-up for BPE models: it would delete real spaces before punctuation.
        if not clean_up or self._model_type == "BPE":
            return text
        for before, after in (
            (" .", "."),
            (" ?", "?"),
            (" !", "!"),
            (" ,", ","),
            (" ' ", "'"),
            (" n't", "n't"),
            (" 'm", "'m"),
            (" 's", "'s"),
            (" 've", "'ve"),
            (" 're", "'re"),
        ):
            text = text.replace(before, after)
        return text

    # ----------------------------------------------------------------------------------------------
    # Strategy resolution: transformers' _get_padding_truncation_strategies

    def _resolve_strategies(
        self, padding_arg: Any, truncation: Any, max_length: int | None, pad_to_multiple_of: int | None
    ) -> tuple[str, str, int | None]:
        if max_length is not None and padding_arg is False and truncation is None:
            truncation = "longest_first"  # transformers: max_length alone turns truncation on

        padding_strategy = _padding.padding_strategy(padding_arg)
        truncation_strategy = _padding.truncation_strategy(truncation)

        if max_length is None:
            known = _padding.known_max_length(self.model_max_length)
            if padding_strategy == "max_length":
                if known is None:
                    padding_strategy = "do_not_pad"  # transformers: no length known, so no padding
                else:
                    max_length = known
            if truncation_strategy != "do_not_truncate":
                if known is None:
                    truncation_strategy = "do_not_truncate"
                else:
                    max_length = known
        else:
            max_length = _padding.check_max_length(max_length)

        if padding_strategy != "do_not_pad" and (self.pad_token is None or (self.pad_token_id or 0) < 0):
            raise _padding.no_pad_token_error()
        _padding.check_multiple(pad_to_multiple_of)
        if (
            truncation_strategy != "do_not_truncate"
            and padding_strategy != "do_not_pad"
            and pad_to_multiple_of is not None
            and max_length is not None
            and max_length % pad_to_multiple_of != 0
        ):
            raise InvalidArgumentError(
                "Truncation and padding are both activated but "
                f"truncation length ({max_length}) is not a multiple of pad_to_multiple_of ({pad_to_multiple_of})."
            )
        return padding_strategy, truncation_strategy, max_length

    def _resolve_padding_side(self, padding_side: str | None) -> str:
        return _padding.check_padding_side(self.padding_side if padding_side is None else padding_side)

    # ----------------------------------------------------------------------------------------------
    # Encoding

    def __call__(
        self,
        text: str | list[str] | tuple[str, ...] | None = None,
        text_pair: str | list[str] | tuple[str, ...] | None = None,
        text_target: str | list[str] | tuple[str, ...] | None = None,
        text_pair_target: str | list[str] | tuple[str, ...] | None = None,
        *,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        stride: int = 0,
        is_split_into_words: bool = False,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        return_token_type_ids: bool | None = None,
        return_attention_mask: bool | None = None,
        return_overflowing_tokens: bool = False,
        return_special_tokens_mask: bool = False,
        return_offsets_mapping: bool = False,
        return_length: bool = False,
        verbose: bool = True,
        tokenizer_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Tokenizes one text, a batch of texts, or pairs: the semantics and defaults of transformers'
        fast tokenizer ``__call__``. ``return_tensors`` is None (lists), "np", "pt" or "arrow".

        As transformers 5, ``tokenizer_kwargs`` (a dict of these arguments) overrides the named ones, other
        keyword arguments are ignored, and without truncation a sequence longer than ``model_max_length`` logs
        transformers' "Token indices sequence length is longer than ..." warning once per tokenizer (the
        ``transformers.tokenization_utils_base`` logger; ``verbose=False`` silences it).

        Pairs come as ``text`` and ``text_pair`` or as a list of ``(text, text_pair)`` tuples. With
        ``is_split_into_words=True`` each example is a list of words (a batch is a list of such lists) that
        are encoded one by one, as transformers does. The returned ``BatchEncoding`` answers transformers'
        alignment methods (``word_ids(i)``, ``sequence_ids(i)``, ``tokens(i)``, ``token_to_word``,
        ``word_to_tokens``, ``char_to_token``, ``token_to_chars``, ...), computed when first asked for.

        ``text_target`` (and ``text_pair_target``) are encoded as transformers does it, with the same padding,
        truncation and other arguments (``max_target_length``, a keyword argument, replaces ``max_length`` for
        them): alone they return the targets' encoding; with ``text`` the targets' ``input_ids`` become the
        ``labels`` of the inputs' encoding."""
        if tokenizer_kwargs:
            arguments = {name: value for name, value in locals().items() if name in _CALL_ARGUMENTS}
            # transformers reads max_target_length from the keyword arguments only, not from tokenizer_kwargs
            arguments.update({name: value for name, value in tokenizer_kwargs.items() if name != "max_target_length"})
            arguments.update(kwargs)
            return self(**arguments)
        max_target_length = kwargs.pop("max_target_length", None)
        _check_other_keywords(kwargs)
        if text is None and text_target is None:
            raise InvalidArgumentError("You need to specify either `text` or `text_target`.")
        padding_strategy, truncation_strategy, max_length = self._resolve_strategies(
            padding, truncation, max_length, pad_to_multiple_of
        )
        return_tensors = normalize_tensor_type(return_tensors)
        side = self._resolve_padding_side(padding_side)
        if not isinstance(stride, (int, np.integer)) or stride < 0:
            raise InvalidArgumentError(f"stride must be a non-negative int, got {stride!r}")
        options = {
            "padding_strategy": padding_strategy,
            "truncation_strategy": truncation_strategy,
            "add_special_tokens": add_special_tokens,
            "stride": stride,
            "is_split_into_words": is_split_into_words,
            "pad_to_multiple_of": pad_to_multiple_of,
            "side": side,
            "return_tensors": return_tensors,
            "return_token_type_ids": return_token_type_ids,
            "return_attention_mask": return_attention_mask,
            "return_overflowing_tokens": return_overflowing_tokens,
            "return_special_tokens_mask": return_special_tokens_mask,
            "return_offsets_mapping": return_offsets_mapping,
            "return_length": return_length,
            "verbose": verbose,
        }
        # transformers' __call__: the inputs, then the targets with the same arguments (max_target_length, when
        # given, as their max_length); the targets' input_ids become the inputs' labels
        encodings = None if text is None else self._encode_resolved(text, text_pair, max_length=max_length, **options)
        if text_target is None:
            return encodings
        target_length = max_target_length if max_target_length is not None else max_length
        targets = self._encode_resolved(text_target, text_pair_target, max_length=target_length, **options)
        if encodings is None:
            return targets
        if return_tensors == "arrow":
            labels = targets.column("input_ids")
            if len(labels) != encodings.num_rows:
                raise InvalidInputError(
                    f"the targets give {len(labels)} rows but the inputs {encodings.num_rows}: an Arrow record "
                    "batch needs one labels row per input row"
                )
            return encodings.append_column("labels", labels)
        encodings["labels"] = targets["input_ids"]
        return encodings

    def _encode_resolved(
        self,
        text: Any,
        text_pair: Any,
        *,
        padding_strategy: str,
        truncation_strategy: str,
        max_length: int | None,
        add_special_tokens: bool,
        stride: int,
        is_split_into_words: bool,
        pad_to_multiple_of: int | None,
        side: str,
        return_tensors: str | None,
        return_token_type_ids: bool | None,
        return_attention_mask: bool | None,
        return_overflowing_tokens: bool,
        return_special_tokens_mask: bool,
        return_offsets_mapping: bool,
        return_length: bool,
        verbose: bool,
    ) -> Any:
        """One encoding of ``__call__`` (transformers' ``_encode_plus``) with the strategies already resolved."""
        is_batched, texts, pairs = _split_inputs(text, text_pair, is_split_into_words)

        with_type_ids = (
            "token_type_ids" in self.model_input_names if return_token_type_ids is None else return_token_type_ids
        )
        with_attention = (
            "attention_mask" in self.model_input_names if return_attention_mask is None else return_attention_mask
        )
        truncation_args = None
        if truncation_strategy != "do_not_truncate":
            truncation_args = (int(max_length), int(stride), truncation_strategy, self.truncation_side)
        call = {
            "texts": texts,
            "pairs": pairs,
            "add_special_tokens": add_special_tokens,
            "truncation": truncation_args,
            "padding": padding_strategy,
            "padding_length": int(max_length) if padding_strategy == "max_length" else None,
            "pad_to_multiple_of": pad_to_multiple_of,
            "padding_side": side,
            "pad_id": self.pad_token_id or 0,
            "pad_type_id": self.pad_token_type_id,
            "return_overflowing_tokens": return_overflowing_tokens,
            "is_split_into_words": is_split_into_words,
        }
        raw = self._core.encode_batch(
            **call,
            return_token_type_ids=bool(with_type_ids),
            return_attention_mask=bool(with_attention),
            return_special_tokens_mask=return_special_tokens_mask,
            return_offsets_mapping=return_offsets_mapping,
            return_length=return_length,
        )
        starts, width = raw.pop("_starts"), raw.pop("_width")
        if max_length is None and verbose:
            self._warn_if_too_long(starts)
        columns: dict[str, Any] = {}
        for key, values in raw.items():
            if key in ("length", "overflow_to_sample_mapping"):
                # one value per row: lists for None, the int64 array for "np" and "arrow", shared memory for "pt"
                if return_tensors is None:
                    columns[key] = values.tolist()
                elif return_tensors == "pt":
                    import torch

                    columns[key] = torch.from_numpy(values)
                else:
                    columns[key] = values
            else:
                columns[key] = Column(values, starts, width, pair=key == "offset_mapping")
        if return_tensors == "arrow":
            return _record_batch(columns)
        unbatch = not is_batched and not return_overflowing_tokens
        out = build_output(columns, return_tensors, unbatch=unbatch)
        # what the alignment methods need to encode the same rows again, asking for word and sequence ids
        out._alignment_source = (self, call)
        return out

    def encode(
        self,
        text: Any,
        text_pair: Any = None,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        stride: int = 0,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """The ``input_ids`` of ``tokenizer(text, text_pair, ...)``, as transformers' ``encode``: a list of ids for
        one text, a list of lists for a batch, a 2-D array/tensor with ``return_tensors``. Other keyword arguments
        (``is_split_into_words``, ``return_overflowing_tokens``, ...) are those of ``__call__``."""
        encoded = self(
            text,
            text_pair,
            add_special_tokens=add_special_tokens,
            padding=padding,
            truncation=truncation,
            max_length=max_length,
            stride=stride,
            padding_side=padding_side,
            return_tensors=return_tensors,
            **kwargs,
        )
        return encoded["input_ids"]

    def _warn_if_too_long(self, starts: np.ndarray) -> None:
        """transformers' ``_eventual_warn_about_too_long_sequence``: logged once per tokenizer, naming the first
        row longer than ``model_max_length``."""
        limit = self.model_max_length
        if limit == 0:
            return
        lengths = np.diff(starts)
        too_long = np.flatnonzero(lengths > limit)
        if too_long.size == 0:
            return
        if not self.deprecation_warnings.get(_TOO_LONG_KEY, False):
            _transformers_logger.warning(
                "Token indices sequence length is longer than the specified maximum sequence length "
                f"for this model ({int(lengths[too_long[0]])} > {limit}). Running this sequence through the model "
                "will result in indexing errors"
            )
        self.deprecation_warnings[_TOO_LONG_KEY] = True

    def _compute_alignment(self, call: dict[str, Any]) -> Alignment:
        """The alignment data of the rows a call with ``call``'s core arguments produced: word and sequence
        ids (from the native encoder where the pipeline has one, with no ``Encoding`` built unless the call
        has overflow windows), as arrays the ``Alignment`` converts to lists when first read. Offsets and token
        strings are left to :meth:`_compute_offsets` and :meth:`_compute_tokens`, asked for when needed."""
        raw = self._core.encode_batch(
            **call,
            return_token_type_ids=False,
            return_attention_mask=False,
            return_alignment=True,
        )
        return Alignment(
            word_ids=raw["_word_ids"],
            sequence_ids=raw["_sequence_ids"],
            bounds=raw["_starts"].tolist(),
            tokens=None,
            offsets=None,
            ranges=raw["_sequence_ranges"].tolist(),
        )

    def _encode_flat(
        self,
        texts: list[Any],
        pairs: list[Any] | None = None,
        *,
        max_length: int,
        stride: int = 0,
        truncation: str = "longest_first",
        is_split_into_words: bool = False,
        return_overflowing_tokens: bool = False,
        return_offsets_mapping: bool = False,
    ) -> dict[str, np.ndarray]:
        """One core call for code that works on whole batches in NumPy (training's token classification and
        question answering) rather than row by row through ``word_ids(i)`` / ``sequence_ids(i)``: the inputs
        encoded with special tokens and truncated, as flat arrays: ``input_ids`` (and ``token_type_ids`` /
        ``attention_mask`` as the model takes them, ``offset_mapping`` as start, end pairs), ``_word_ids`` and
        ``_sequence_ids`` (-1 on special tokens), ``overflow_to_sample_mapping`` with overflow windows, and the
        rows' boundaries ``_starts``."""
        call = {
            "texts": texts, "pairs": pairs, "add_special_tokens": True,
            "truncation": (int(max_length), int(stride), truncation, self.truncation_side), "padding": "do_not_pad",
            "padding_length": None, "pad_to_multiple_of": None, "padding_side": self.padding_side,
            "pad_id": self.pad_token_id or 0, "pad_type_id": self.pad_token_type_id,
            "return_overflowing_tokens": return_overflowing_tokens, "is_split_into_words": is_split_into_words,
        }  # fmt: skip
        raw = self._core.encode_batch(
            **call,
            return_token_type_ids="token_type_ids" in self.model_input_names,
            return_attention_mask="attention_mask" in self.model_input_names,
            return_offsets_mapping=return_offsets_mapping,
            return_alignment=True,
        )
        return {key: value for key, value in raw.items() if key not in ("_sequence_ranges", "_width")}

    def _compute_offsets(self, call: dict[str, Any]) -> list[list[tuple[int, int]]]:
        """The character offsets of the rows a call with ``call``'s core arguments produced, as tuples."""
        raw = self._core.encode_batch(
            **call,
            return_token_type_ids=False,
            return_attention_mask=False,
            return_offsets_mapping=True,
        )
        bounds = raw["_starts"].tolist()
        offsets = raw["offset_mapping"]
        flat = list(zip(offsets[0::2].tolist(), offsets[1::2].tolist()))
        return [flat[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    def _compute_tokens(self, call: dict[str, Any]) -> list[list[str]]:
        """The token strings of the rows a call with ``call``'s core arguments produced (the tokenizers
        crate's encoding: the native encoders do not keep them), asked for only by ``tokens()``."""
        raw = self._core.encode_batch(
            **call,
            return_token_type_ids=False,
            return_attention_mask=False,
            return_tokens=True,
        )
        bounds = raw["_starts"].tolist()
        tokens = raw["_tokens"]
        return [tokens[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    # ----------------------------------------------------------------------------------------------
    # Padding of already-tokenized inputs

    def pad(
        self,
        encoded_inputs: Any,
        padding: bool | str = True,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_attention_mask: bool | None = None,
        return_tensors: str | None = None,
        verbose: bool = True,
    ) -> Any:
        """Pads a batch of tokenized examples: the contract of transformers' ``tokenizer.pad`` (a list of
        dicts, a dict of lists, or one example), computed in Rust."""
        del verbose  # accepted for transformers compatibility; ferrotune does not warn here
        if isinstance(encoded_inputs, (list, tuple)) and encoded_inputs and isinstance(encoded_inputs[0], Mapping):
            encoded_inputs = _list_of_dicts_to_dict(encoded_inputs)
        if not isinstance(encoded_inputs, Mapping):
            raise InputTypeError(
                "pad() takes a dict of lists, a list of dicts or one dict of token ids, "
                f"got {type(encoded_inputs).__name__}"
            )
        # A 2-D array or tensor per key (as a tokenizer returned it) is a batch of rows, as in transformers.
        encoded_inputs = {
            key: list(value) if getattr(value, "ndim", 0) == 2 else value for key, value in encoded_inputs.items()
        }
        main = self.model_input_names[0]
        if main not in encoded_inputs:
            raise InvalidInputError(
                "You should supply an encoding or a list of encodings to this method "
                f"that includes {main}, but you provided {list(encoded_inputs.keys())}"
            )
        return_tensors = normalize_tensor_type(return_tensors)
        required = encoded_inputs[main]
        if required is None or len(required) == 0:
            if return_attention_mask:
                encoded_inputs["attention_mask"] = []
            return BatchEncoding(encoded_inputs)

        return_tensors = _default_tensor_type(required, return_tensors)
        padding_strategy, _, max_length = self._resolve_strategies(padding, None, max_length, pad_to_multiple_of)
        side = self._resolve_padding_side(padding_side)
        with_attention = (
            "attention_mask" in self.model_input_names if return_attention_mask is None else return_attention_mask
        )

        single = _is_single_example(required)
        if single:
            encoded_inputs = {key: [value] for key, value in encoded_inputs.items()}
        else:
            batch_size = len(required)
            for key, value in encoded_inputs.items():
                if len(value) != batch_size:
                    raise InvalidInputError(
                        f"'{key}' has {len(value)} examples but '{main}' has {batch_size}: every key needs one value "
                        "per example"
                    )

        pad_values = _padding.pad_values(self)
        if not with_attention:
            del pad_values["attention_mask"]
        plan = _padding.collation_plan(
            tuple(pad_values.items()),
            with_attention,
            padding_strategy,
            int(max_length) if padding_strategy == "max_length" else None,
            pad_to_multiple_of,
            side,
        )
        padded_columns = {
            name: _padded_column(kind, data, starts)
            for name, kind, data, starts in plan.columns(
                {key: value for key, value in encoded_inputs.items() if key == main or key in pad_values}
            )
        }
        columns: dict[str, Any] = {}
        for key, value in encoded_inputs.items():
            columns[key] = padded_columns.get(key, value)
        if "attention_mask" in padded_columns and "attention_mask" not in columns:
            columns["attention_mask"] = padded_columns["attention_mask"]
        if single:
            return _single_output(columns, return_tensors)
        if return_tensors == "arrow":
            return _record_batch(columns)
        return build_output(columns, return_tensors)


# Every __call__ argument that tokenizer_kwargs may override.
_CALL_ARGUMENTS = frozenset(list(inspect.signature(Tokenizer.__call__).parameters)[1:-2])


def _check_other_keywords(kwargs: dict[str, Any]) -> None:
    """transformers 5.23 ignores keyword arguments it does not know; those it knows but ferrotune lacks raise."""
    if kwargs.get("split_special_tokens"):
        raise InvalidArgumentError(
            "split_special_tokens=True is not supported: ferrotune always matches special tokens in the text"
        )


_ADDED_TOKEN_FLAGS = ("single_word", "lstrip", "rstrip", "normalized", "special")


def _added_token(value: Any, special: bool) -> dict[str, Any]:
    """The crate's AddedToken (as in tokenizer.json) for a token given to ``add_tokens``: a str is special and
    unnormalized with ``special``, otherwise normalized; an AddedToken keeps its flags (``special`` forced on
    with ``special``, as the crate's ``add_special_tokens``)."""
    content = _as_token_text("a token to add", value)
    token = {"content": content, "single_word": False, "lstrip": False, "rstrip": False}
    if isinstance(value, str):
        token.update(normalized=not special, special=special)
        return token
    for flag in _ADDED_TOKEN_FLAGS:
        found = value.get(flag) if isinstance(value, Mapping) else getattr(value, flag, None)
        if found is not None:
            token[flag] = bool(found)
    token["special"] = bool(token.get("special", False)) or special
    token.setdefault("normalized", not token["special"])
    return token


def _add_to_vocabulary(data: dict[str, Any], tokens: list[dict[str, Any]], model_vocab: dict[str, int]) -> int:
    """Adds ``tokens`` to tokenizer.json's ``added_tokens`` as the crate's ``AddedVocabulary::add_tokens`` does
    (ids, replacements, the count it returns); loading the result gives the crate's tokenizer after the call."""
    by_id = {
        int(token["id"]): {key: value for key, value in token.items() if key != "id"}
        for token in data.get("added_tokens") or []
    }
    by_content = {token["content"]: index for index, token in by_id.items()}
    vocab_size = len(model_vocab)
    top = max(by_id, default=None)
    next_id = vocab_size if top is None else (top + 1 if top >= vocab_size or vocab_size == 0 else vocab_size)
    count = 0
    for token in tokens:
        content = token["content"]
        if not content:
            continue
        index = by_content.get(content)
        if index is not None and by_id.get(index) == token:
            continue  # the same token, the same flags
        if index is None:
            index = model_vocab.get(content)
        if index is None:
            index = next_id
            next_id += 1
        by_content[content] = index
        by_id[index] = token
        count += 1
    data["added_tokens"] = [{"id": index, **by_id[index]} for index in sorted(by_id)]
    return count


def _as_token_text(name: str, value: Any) -> str:
    """A token given as a str, an ``AddedToken`` (``tokenizers``' or transformers') or an AddedToken dict."""
    if isinstance(value, str):
        return value
    content = value.get("content") if isinstance(value, Mapping) else getattr(value, "content", None)
    if not isinstance(content, str):
        raise InvalidArgumentError(f"{name} must be a str or an AddedToken, got {type(value).__name__} {value!r:.80}")
    return content


def _special_token_property(name: str) -> property:
    def get(self: Tokenizer) -> str | None:
        return self._special_tokens.get(name)

    def set_(self: Tokenizer, value: Any) -> None:
        self.__dict__.setdefault("_special_tokens", {})[name] = None if value is None else _as_token_text(name, value)

    return property(get, set_, doc=f"The {name.replace('_', ' ')} (a str), or None.")


def _special_token_id_property(name: str) -> property:
    def get(self: Tokenizer) -> int | None:
        return self._token_id(self._special_tokens.get(name))

    def set_(self: Tokenizer, value: Any) -> None:
        # transformers: tok.pad_token_id = 0 sets pad_token to the token of id 0
        setattr(self, name, None if value is None else self._id_token(name, value))

    return property(get, set_, doc=f"The id of the {name.replace('_', ' ')}, or None; settable (sets {name}).")


for _name in SPECIAL_TOKEN_ATTRIBUTES:
    setattr(Tokenizer, _name, _special_token_property(_name))
    setattr(Tokenizer, f"{_name}_id", _special_token_id_property(_name))
del _name


def _is_pair_item(item: Any, is_split_into_words: bool) -> bool:
    """Whether a batch item is a ``(first, second)`` pair: ``(str, str)`` for texts, ``(words, words)`` for
    words (the tokenizers crate reads a list of str as one pre-tokenized sequence first)."""
    if not isinstance(item, (list, tuple)):
        return False
    if is_split_into_words:
        return len(item) > 0 and isinstance(item[0], (list, tuple))
    return True


def _split_inputs(text: Any, text_pair: Any, is_split_into_words: bool) -> tuple[bool, list[Any], list[Any] | None]:
    """``(is_batched, firsts, seconds or None)`` from the text arguments of a call, transformers' rules:
    a str is one text, a list of str a batch (or, with ``is_split_into_words``, one example's words), a list
    of ``(text, text_pair)`` tuples a batch of pairs. The core checks that every text and word is a str."""
    if is_split_into_words:
        if not isinstance(text, (list, tuple)):
            raise InputTypeError(
                "with is_split_into_words=True, `text` must be a list of words (one example) or a list of "
                f"lists of words (a batch), got {type(text).__name__}"
            )
        is_batched = len(text) > 0 and isinstance(text[0], (list, tuple))
        if not is_batched:
            if text_pair is not None and not isinstance(text_pair, (list, tuple)):
                raise InputTypeError(
                    f"`text_pair` must be a list of words when `text` is one, got {type(text_pair).__name__}"
                )
            return False, [text], [text_pair] if text_pair else None  # an empty pair is no pair
    else:
        if isinstance(text, str):
            if text_pair is not None and not isinstance(text_pair, str):
                raise InputTypeError(f"`text_pair` must be a str when `text` is a str, got {type(text_pair).__name__}")
            return False, [text], [text_pair] if text_pair else None  # transformers treats an empty pair as no pair
        if not isinstance(text, (list, tuple)):
            raise InputTypeError(
                f"text input must be of type `str` (single example) or `list[str]` (batch), got {type(text).__name__}"
            )
    if isinstance(text_pair, str):
        raise InputTypeError(
            "when tokenizing batches of text, `text_pair` must be a list or tuple with the same length as `text`."
        )
    if text_pair is not None and not isinstance(text_pair, (list, tuple)):
        raise InputTypeError(f"`text_pair` must be a list, got {type(text_pair).__name__}")
    if text_pair is not None and len(text) != len(text_pair):
        raise InvalidInputError(
            f"batch length of `text`: {len(text)} does not match batch length of `text_pair`: {len(text_pair)}."
        )
    if len(text) == 0:
        raise EmptyBatchError("`text` is an empty batch: there is nothing to tokenize")
    if text_pair is None and _is_pair_item(text[0], is_split_into_words):
        # a batch of (text, text_pair) tuples
        firsts, seconds = [], []
        for index, item in enumerate(text):
            if not _is_pair_item(item, is_split_into_words) or len(item) != 2:
                what = "(words, words)" if is_split_into_words else "(text, text_pair)"
                raise InputTypeError(
                    f"example {index}: a batch of pairs needs a {what} tuple in every example (as example 0 is), "
                    f"got {type(item).__name__} {item!r:.80}"
                )
            firsts.append(item[0])
            seconds.append(item[1])
        return True, firsts, seconds
    return True, list(text), None if text_pair is None else list(text_pair)


def _padded_column(kind: str, data: np.ndarray, starts: np.ndarray | None) -> Column:
    """A column of the collation plan's output: a ``rows x width`` matrix ("padded") or ragged rows."""
    if kind == "padded":
        rows, width = data.shape
        return Column(data.reshape(-1), np.arange(rows + 1, dtype=np.int64) * width, width)
    return Column(data, starts, None)


def _list_of_dicts_to_dict(examples: Any) -> dict[str, list[Any]]:
    keys = list(examples[0].keys())
    key_set = set(keys)
    for index, example in enumerate(examples):
        if not isinstance(example, Mapping):
            raise InputTypeError(f"example {index} is a {type(example).__name__}, but example 0 is a dict")
        if set(example.keys()) != key_set:
            missing = sorted(key_set - set(example.keys()))
            extra = sorted(set(example.keys()) - key_set)
            raise InvalidInputError(
                f"example {index} has different keys from example 0 (missing {missing}, extra {extra})"
            )
    return {key: [example[key] for example in examples] for key in keys}


def _first_token(required: Any) -> Any:
    first = required[0]
    if isinstance(first, (list, tuple)):
        for item in required:
            if len(item) != 0:
                return item[0]
    return first


def _default_tensor_type(required: Any, return_tensors: str | None) -> str | None:
    """transformers: torch or NumPy inputs give torch or NumPy outputs unless told otherwise."""
    if return_tensors is not None:
        return return_tensors
    if hasattr(required, "detach") or hasattr(_first_token(required), "detach"):
        return "pt"
    if isinstance(required, np.ndarray) or isinstance(_first_token(required), np.ndarray):
        return "np"
    return None


def _is_single_example(required: Any) -> bool:
    if isinstance(required, np.ndarray) or hasattr(required, "detach"):
        return required.ndim == 1
    return not isinstance(required[0], (list, tuple, np.ndarray)) and not hasattr(required[0], "detach")


def _single_output(columns: dict[str, Any], return_tensors: str | None) -> BatchEncoding:
    out: dict[str, Any] = {}
    for key, value in columns.items():
        if isinstance(value, Column):
            row = value.to_lists()[0]
        else:
            row = to_py_obj(value[0])
        if return_tensors == "np":
            row = np.asarray(row, dtype=np.int64) if not row or isinstance(row, list) else np.asarray(row)
        elif return_tensors == "pt":
            import torch

            row = torch.tensor(row, dtype=torch.int64) if not row else torch.tensor(row)
        out[key] = row
    return BatchEncoding(out)


def _record_batch(columns: dict[str, Any]) -> Any:
    import pyarrow as pa

    arrays = []
    for value in columns.values():
        if isinstance(value, Column):
            arrays.append(value.to_arrow())
        elif isinstance(value, np.ndarray):
            arrays.append(pa.array(value))
        else:
            arrays.append(pa.array(to_py_obj(value)))
    return pa.RecordBatch.from_arrays(arrays, names=list(columns))
