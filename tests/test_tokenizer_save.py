"""``Tokenizer.save_pretrained``: the folder it writes loads, in ferrotune and in transformers' ``AutoTokenizer``,
to a tokenizer that gives the same output as the one that was saved."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import ferrotune
import pytest
from conftest import DATA_DIR, require_data_dir, require_minilm_dir
from ferrotune.errors import InvalidArgumentError
from test_tokenizer_loading import EDGE_CASES, _compare, _llama_config, _texts

FOLDERS = ["gpt2", "smollm2-135m-instruct", "cl100k", "t5-small", "open_llama_3b_zh_en", "minilm"]


def _source(name: str) -> Path:
    if name == "minilm":
        return require_minilm_dir()
    require_data_dir()
    folder = DATA_DIR / "tokenizers" / name
    if not (folder / "tokenizer.json").is_file():
        pytest.skip(f"shared tokenizer folder {folder} is missing")
    return folder


def _same_output(a, b) -> None:
    singles, first, second = _texts()
    options = {"return_token_type_ids": True, "return_offsets_mapping": True}
    for args in ((singles,), (first, second)):
        out_a, out_b = a(*args, **options), b(*args, **options)
        for key in ("input_ids", "attention_mask", "token_type_ids", "offset_mapping"):
            assert [list(map(tuple, r)) if key == "offset_mapping" else r for r in out_a[key]] == [
                list(map(tuple, r)) if key == "offset_mapping" else r for r in out_b[key]
            ], key


@pytest.mark.parametrize("name", FOLDERS)
def test_round_trip(tmp_path, name):
    from transformers import AutoTokenizer

    source = _source(name)
    original = ferrotune.Tokenizer.from_pretrained(source)
    saved = original.save_pretrained(tmp_path / "saved")
    names = ["tokenizer_config.json", "special_tokens_map.json", "tokenizer.json"]
    if isinstance(original.chat_template, str):
        names.insert(2, "chat_template.jinja")  # as transformers 5 writes it
    assert saved == tuple(str(tmp_path / "saved" / file) for file in names)
    assert all(Path(path).is_file() for path in saved)
    # both libraries load the saved folder to the same tokenizer ...
    _compare(tmp_path / "saved")
    # ... which is the one that was saved, and the one transformers builds from the original folder
    reloaded = ferrotune.Tokenizer.from_pretrained(tmp_path / "saved")
    _same_output(reloaded, original)
    _same_output(AutoTokenizer.from_pretrained(str(tmp_path / "saved")), AutoTokenizer.from_pretrained(str(source)))
    for attribute in ("model_max_length", "padding_side", "truncation_side", "model_input_names", "special_tokens_map"):
        assert getattr(reloaded, attribute) == getattr(original, attribute), attribute


def test_round_trip_of_a_rebuilt_llama_variant(tmp_path):
    """A folder transformers rebuilds (legacy Llama, no prefix space) keeps its behaviour once saved."""
    from transformers import AutoTokenizer

    folder = tmp_path / "variant"
    folder.mkdir()
    shutil.copy(_source("open_llama_3b_zh_en") / "tokenizer.json", folder / "tokenizer.json")
    config = _llama_config(legacy=True, add_prefix_space=False, padding_side="left", pad_token="<unk>")
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    ferrotune.Tokenizer.from_pretrained(folder).save_pretrained(tmp_path / "saved")
    _compare(tmp_path / "saved")
    _same_output(AutoTokenizer.from_pretrained(str(tmp_path / "saved")), AutoTokenizer.from_pretrained(str(folder)))


def test_saved_next_to_a_model_config(tmp_path):
    """Trainer writes config.json (model_type) next to the tokenizer files: the class stays TokenizersBackend."""
    from transformers import AutoTokenizer

    ft = ferrotune.Tokenizer.from_pretrained(_source("minilm"))
    ft.save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}), encoding="utf-8")
    hf = AutoTokenizer.from_pretrained(str(tmp_path))
    assert type(hf).__name__ == "TokenizersBackend"
    _compare(tmp_path)
    assert hf.model_input_names == ["input_ids", "token_type_ids", "attention_mask"]


def test_settings_changed_after_loading_are_saved(tmp_path):
    from transformers import AutoTokenizer

    ft = ferrotune.Tokenizer.from_pretrained(_source("gpt2"))
    ft.pad_token = ft.eos_token
    ft.padding_side = "left"
    ft.model_max_length = 64
    ft.save_pretrained(tmp_path)
    hf = AutoTokenizer.from_pretrained(str(tmp_path))
    assert (hf.pad_token, hf.padding_side, hf.model_max_length) == ("<|endoftext|>", "left", 64)
    batch = EDGE_CASES[:8]
    assert ft(batch, padding=True)["input_ids"] == hf(batch, padding=True)["input_ids"]


def test_filename_prefix_and_existing_files(tmp_path):
    ft = ferrotune.Tokenizer.from_pretrained(_source("gpt2"))
    (tmp_path / "tokenizer.json").write_text("old", encoding="utf-8")
    paths = ft.save_pretrained(tmp_path, filename_prefix="mine")
    assert [Path(path).name for path in paths] == [
        "mine-tokenizer_config.json",
        "mine-special_tokens_map.json",
        "mine-tokenizer.json",
    ]
    assert (tmp_path / "tokenizer.json").read_text(encoding="utf-8") == "old"
    ft.save_pretrained(tmp_path)  # overwrites
    assert ferrotune.Tokenizer.from_pretrained(tmp_path)("Hello world")["input_ids"] == [15496, 995]
    assert not list(tmp_path.glob("*.tmp"))


def test_save_errors(tmp_path):
    ft = ferrotune.Tokenizer.from_pretrained(_source("gpt2"))
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.raises(InvalidArgumentError, match="is a file"):
        ft.save_pretrained(tmp_path / "file")
    with pytest.raises(InvalidArgumentError, match="push_to_hub"):
        ft.save_pretrained(tmp_path / "out", push_to_hub=True)
    assert ft.save_pretrained(tmp_path / "out", legacy_format=None, push_to_hub=False)


def test_chat_template_and_extra_special_tokens_survive(tmp_path):
    """SmolLM2's ChatML template and its additional special tokens: nothing lost through a save."""
    from transformers import AutoTokenizer

    source = _source("smollm2-135m-instruct")
    hf = AutoTokenizer.from_pretrained(str(source))
    ft = ferrotune.Tokenizer.from_pretrained(source)
    assert ft.chat_template == hf.chat_template and ft.chat_template
    assert ft.extra_special_tokens == [str(token) for token in hf.extra_special_tokens]
    ft.save_pretrained(tmp_path)
    saved = AutoTokenizer.from_pretrained(str(tmp_path))
    assert saved.chat_template == hf.chat_template
    assert [str(token) for token in saved.extra_special_tokens] == [str(token) for token in hf.extra_special_tokens]
    chat = [{"role": "user", "content": "Hi"}]
    expected = hf.apply_chat_template(chat, add_generation_prompt=True, tokenize=True)
    assert saved.apply_chat_template(chat, add_generation_prompt=True, tokenize=True) == expected
    reloaded = ferrotune.Tokenizer.from_pretrained(tmp_path)
    assert reloaded.chat_template == hf.chat_template
    assert reloaded.extra_special_tokens == ft.extra_special_tokens
    # a pickled copy (DataLoader workers) keeps them too
    import pickle

    assert pickle.loads(pickle.dumps(reloaded)).chat_template == hf.chat_template


def test_named_chat_templates_in_the_config(tmp_path):
    from transformers import AutoTokenizer

    folder = tmp_path / "named"
    folder.mkdir()
    shutil.copy(_source("gpt2") / "tokenizer.json", folder / "tokenizer.json")
    templates = [{"name": "default", "template": "{{ messages }}"}, {"name": "tool_use", "template": "{{ tools }}"}]
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": templates}), encoding="utf-8")
    hf = AutoTokenizer.from_pretrained(str(folder))
    ft = ferrotune.Tokenizer.from_pretrained(folder)
    assert ft.chat_template == hf.chat_template == {"default": "{{ messages }}", "tool_use": "{{ tools }}"}
    ft.save_pretrained(tmp_path / "saved")
    assert AutoTokenizer.from_pretrained(str(tmp_path / "saved")).chat_template == hf.chat_template
