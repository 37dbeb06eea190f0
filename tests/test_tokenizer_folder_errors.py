"""Broken tokenizer folders: ``Tokenizer.from_pretrained`` raises ``TokenizerFormatError`` naming the file and
the key and saying what to do, never a RecursionError, a TypeError from deep inside, or a silent wrong load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import ferrotune
import pytest
from conftest import require_gpt2_dir
from ferrotune.errors import TokenizerFormatError


def _folder(tmp_path: Path, files: dict[str, str]) -> Path:
    folder = tmp_path / "tok"
    folder.mkdir()
    shutil.copy(require_gpt2_dir() / "tokenizer.json", folder / "tokenizer.json")
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def _nested(key: str, depth: int, opening: str = '{"a": ', closing: str = "}") -> str:
    return '{"model_max_length": 1024, "' + key + '": ' + opening * depth + "1" + closing * depth + "}"


def _load_error(folder: Path) -> str:
    with pytest.raises(TokenizerFormatError) as info:
        ferrotune.Tokenizer.from_pretrained(folder)
    assert isinstance(info.value, ValueError)  # what transformers users catch
    return str(info.value)


@pytest.mark.parametrize("depth", [5_000, 100_000])
@pytest.mark.parametrize("shape", ["objects", "lists"])
def test_deeply_nested_tokenizer_config(tmp_path, depth, shape):
    opening, closing = ('{"a": ', "}") if shape == "objects" else ("[", "]")
    folder = _folder(tmp_path, {"tokenizer_config.json": _nested("auto_map", depth, opening, closing)})
    message = _load_error(folder)
    assert "tokenizer_config.json" in message and "'auto_map'" in message
    assert "deep" in message and "remove that key" in message


@pytest.mark.parametrize("name", ["special_tokens_map.json", "config.json"])
def test_deeply_nested_other_files(tmp_path, name):
    folder = _folder(tmp_path, {name: _nested("extra", 50_000)})
    message = _load_error(folder)
    assert name in message and "'extra'" in message


def test_deeply_nested_tokenizer_json(tmp_path):
    folder = tmp_path / "tok"
    folder.mkdir()
    (folder / "tokenizer.json").write_text('{"model": ' + "[" * 50_000 + "]" * 50_000 + "}", encoding="utf-8")
    message = _load_error(folder)
    assert "tokenizer.json" in message and "'model'" in message


BAD_CONFIGS = {
    "pad-token-int": ({"pad_token": 5}, "pad_token"),
    "bos-token-list": ({"bos_token": ["<s>"]}, "bos_token"),
    "eos-token-bool": ({"eos_token": True}, "eos_token"),
    "content-int": ({"unk_token": {"content": 5, "special": True}}, "unk_token"),
    "content-missing": ({"mask_token": {"special": True}}, "mask_token"),
    "flag-not-bool": ({"pad_token": {"content": "<pad>", "lstrip": "yes"}}, "pad_token.lstrip"),
    "added-tokens-decoder-list": ({"added_tokens_decoder": [{"content": "<x>"}]}, "added_tokens_decoder"),
    "added-tokens-decoder-string": ({"added_tokens_decoder": {"50257": "<x>"}}, "added_tokens_decoder"),
    "added-tokens-decoder-bad-id": ({"added_tokens_decoder": {"x": {"content": "<x>"}}}, "added_tokens_decoder"),
    "additional-special-string": ({"additional_special_tokens": "<x>"}, "additional_special_tokens"),
    "additional-special-int": ({"additional_special_tokens": ["<x>", 7]}, "additional_special_tokens[1]"),
    "extra-special-null-item": ({"extra_special_tokens": [None]}, "extra_special_tokens[0]"),
    "model-max-length-string": ({"model_max_length": "512"}, "model_max_length"),
    "model-max-length-negative": ({"model_max_length": -1}, "model_max_length"),
    "padding-side": ({"padding_side": "middle"}, "padding_side"),
    "truncation-side": ({"truncation_side": 1}, "truncation_side"),
    "model-input-names-string": ({"model_input_names": "input_ids"}, "model_input_names"),
    "tokenizer-class-int": ({"tokenizer_class": 5}, "tokenizer_class"),
    "add-prefix-space-string": ({"add_prefix_space": "true"}, "add_prefix_space"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_tokenizer_config_value(tmp_path, case):
    config, key = BAD_CONFIGS[case]
    folder = _folder(tmp_path, {"tokenizer_config.json": json.dumps(config)})
    message = _load_error(folder)
    assert "tokenizer_config.json" in message and key in message
    assert any(word in message for word in ("must", "write", "fix", "remove")), message


def test_pad_token_id_in_special_tokens_map(tmp_path):
    folder = _folder(tmp_path, {"special_tokens_map.json": json.dumps({"pad_token": 50256})})
    message = _load_error(folder)
    assert "special_tokens_map.json" in message and "pad_token" in message and "not its id" in message


@pytest.mark.parametrize("text", ["[1, 2]", '"text"', "null"])
def test_config_that_is_not_an_object(tmp_path, text):
    folder = _folder(tmp_path, {"tokenizer_config.json": text})
    message = _load_error(folder)
    assert "tokenizer_config.json" in message and "object" in message


@pytest.mark.parametrize("value", [5, ["gpt2"], {"a": 1}])
def test_model_type_not_a_string(tmp_path, value):
    folder = _folder(tmp_path, {"config.json": json.dumps({"model_type": value})})
    message = _load_error(folder)
    assert "config.json" in message and "model_type" in message


def test_config_not_utf8(tmp_path):
    folder = _folder(tmp_path, {})
    (folder / "tokenizer_config.json").write_bytes(b'{"pad_token": "\xff\xfe"}')
    message = _load_error(folder)
    assert "tokenizer_config.json" in message


def test_transformers_also_refuses_an_int_pad_token(tmp_path):
    """The same folder fails in transformers too (a TypeError there): ferrotune's error is the clearer one."""
    from conftest import load_hf

    folder = _folder(tmp_path, {"tokenizer_config.json": json.dumps({"pad_token": 5})})
    with pytest.raises((TypeError, ValueError)):
        load_hf(folder)


def test_good_values_still_load(tmp_path):
    config = {
        "pad_token": None,
        "bos_token": {"__type": "AddedToken", "content": "<|endoftext|>", "lstrip": False, "normalized": True},
        "additional_special_tokens": [],
        "model_max_length": 1e30,
        "added_tokens_decoder": {},
        "add_prefix_space": None,
    }
    folder = _folder(tmp_path, {"tokenizer_config.json": json.dumps(config)})
    tok = ferrotune.Tokenizer.from_pretrained(folder)
    assert tok.bos_token == "<|endoftext|>" and tok.pad_token is None


@pytest.mark.parametrize(
    "change, key",
    [
        (lambda data: data.update(added_tokens={"a": 1}), "added_tokens"),
        (lambda data: data["added_tokens"].append({"content": "<x>"}), "added_tokens[1]"),
        (lambda data: data["added_tokens"].append({"id": "7", "content": "<x>"}), "added_tokens[1]"),
        (lambda data: data["added_tokens"].append({"id": 50300, "content": 5}), "added_tokens[1]"),
        (lambda data: data["added_tokens"].append({"id": 50300, "content": "<x>", "special": "no"}), "added_tokens[1]"),
        (lambda data: data.update(normalizer=[1]), "normalizer"),
        (lambda data: data["model"].update(vocab=5), "model.vocab"),
    ],
    ids=["not-a-list", "no-id", "string-id", "int-content", "flag-string", "normalizer-list", "vocab-int"],
)
def test_bad_tokenizer_json(tmp_path, change, key):
    folder = _folder(tmp_path, {"tokenizer_config.json": json.dumps({"tokenizer_class": "GPT2Tokenizer"})})
    data = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    change(data)
    (folder / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    message = _load_error(folder)
    assert "tokenizer.json" in message and key in message


def test_core_error_on_a_rebuilt_tokenizer_names_the_file(tmp_path):
    folder = _folder(tmp_path, {"tokenizer_config.json": json.dumps({"tokenizer_class": "PreTrainedTokenizerFast"})})
    data = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    data["post_processor"] = None  # makes ferrotune build from edited text
    data["decoder"] = {"type": "NoSuchDecoder"}
    (folder / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    message = _load_error(folder)
    assert "tokenizer.json" in message
