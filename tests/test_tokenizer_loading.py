"""``Tokenizer.from_pretrained(folder)`` must build the tokenizer transformers 5 builds from the same folder.

transformers' ``AutoTokenizer`` picks a tokenizer class from ``tokenizer_config.json`` / ``config.json`` and many
classes (Llama, GPT-2, T5, BERT, RoBERTa, Gemma, Qwen2, GPT-NeoX, ...) rebuild the normalizer, pre-tokenizer,
decoder and post-processor from the config rather than using ``tokenizer.json`` as is. Every test here compares
ids, attention masks, token type ids and offsets of both libraries, on real texts and edge cases, for the shared
tokenizer folders and for folders written here with config variants next to a copied ``tokenizer.json``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import ferrotune
import pytest
from conftest import DATA_DIR, imdb_texts, load_hf, mrpc_pairs, require_data_dir, require_minilm_dir, sst2_sentences

TOKENIZERS_DIR = DATA_DIR / "tokenizers"
SHARED_FOLDERS = ["gpt2", "smollm2-135m-instruct", "cl100k", "t5-small", "open_llama_3b_zh_en"]

EDGE_CASES = [
    "",
    " ",
    " hello",
    "  hello  world ",
    "hello",
    "Hello world",
    "a</s>b",
    "<s>a</s> b </s>",
    "x <unk> y",
    "<|endoftext|>text<|endoftext|>",
    "<|im_start|>user\nHi<|im_end|>",
    "[CLS] a [SEP] b [MASK]",
    "<pad> <extra_id_0> fill <extra_id_1>",
    "中文测试，你好世界。",
    "日本語のテキスト",
    "emoji 😀👍🏽 and ZWJ 👨‍👩‍👧",
    "tabs\tand\nnewlines\r\n end",
    "Hello world! 12345 3.14159",
    "I'm can't won't y'all",
    "Ünïcödé ÀÉÎ façade naïve",
    "   ",
    "\u2581already\u2581metaspace",
    "a  b   c    d",
    "def f(<FILL_ME>):\u2581<PRE> x \u2581<SUF>y\u2581<MID> <pre> z",
]


def _texts() -> tuple[list[str], list[str], list[str]]:
    """(single texts, first sentences, second sentences): real data plus the edge cases."""
    first, second = mrpc_pairs(120)
    singles = sst2_sentences(150) + [text[:2000] for text in imdb_texts(8)] + EDGE_CASES
    pair_first = first + EDGE_CASES
    pair_second = second + list(reversed(EDGE_CASES))
    return singles, pair_first, pair_second


def _compare(folder: Path) -> None:
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(folder))
    ft = ferrotune.Tokenizer.from_pretrained(folder)
    singles, first, second = _texts()
    options = {"return_token_type_ids": True, "return_attention_mask": True, "return_offsets_mapping": True}
    for name, args in (("single", (singles,)), ("pair", (first, second))):
        hf_out = hf(*args, **options)
        ft_out = ft(*args, **options)
        for key in ("input_ids", "attention_mask", "token_type_ids", "offset_mapping"):
            hf_rows = [list(map(tuple, row)) if key == "offset_mapping" else row for row in hf_out[key]]
            ft_rows = [list(map(tuple, row)) if key == "offset_mapping" else row for row in ft_out[key]]
            bad = [i for i, (a, b) in enumerate(zip(ft_rows, hf_rows)) if a != b]
            texts = args[0] if name == "single" else list(zip(first, second))
            assert not bad, (
                f"{folder.name} ({type(hf).__name__}), {name}: {key} differs on {len(bad)} of {len(hf_rows)} inputs; "
                f"first {texts[bad[0]]!r}: ferrotune {ft_rows[bad[0]]} vs transformers {hf_rows[bad[0]]}"
            )
    # special-token settings and the added vocabulary must agree too
    assert len(ft) == len(hf)
    assert ft.get_vocab() == hf.get_vocab()
    for attribute in ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token"):
        assert getattr(ft, attribute) == getattr(hf, attribute), attribute
    assert ft.padding_side == hf.padding_side
    assert ft.model_max_length == hf.model_max_length
    assert list(ft.model_input_names) == list(hf.model_input_names)
    # a few decodes (special tokens kept and skipped)
    for ids in hf(singles[:20] + EDGE_CASES)["input_ids"]:
        assert ft.decode(ids) == hf.decode(ids), ids
        assert ft.decode(ids, skip_special_tokens=True) == hf.decode(ids, skip_special_tokens=True), ids


def _shared(name: str) -> Path:
    require_data_dir()
    folder = TOKENIZERS_DIR / name
    if not (folder / "tokenizer.json").is_file():
        pytest.skip(f"shared tokenizer folder {folder} is missing")
    return folder


@pytest.mark.parametrize("name", SHARED_FOLDERS)
def test_shared_folder_matches_autotokenizer(name):
    _compare(_shared(name))


def test_minilm_folder_matches_autotokenizer():
    _compare(require_minilm_dir())


def test_open_llama_regression_cases():
    """The two cases of the issue: transformers 5's LlamaTokenizer uses Metaspace(prepend_scheme="first")."""
    folder = _shared("open_llama_3b_zh_en")
    ft = ferrotune.Tokenizer.from_pretrained(folder)
    assert ft(" hello")["input_ids"] == [1, 27701]
    assert ft("a</s>b")["input_ids"] == [1, 260, 2, 31842]


def _variant(tmp_path: Path, source: str, config: dict | None, model_config: dict | None = None, name="v") -> Path:
    """A folder with the shared ``source`` tokenizer.json and the given tokenizer_config.json / config.json."""
    folder = tmp_path / name
    folder.mkdir()
    shutil.copy(_shared(source) / "tokenizer.json", folder / "tokenizer.json")
    if config is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    if model_config is not None:
        (folder / "config.json").write_text(json.dumps(model_config), encoding="utf-8")
    return folder


def _llama_config(**changes):
    config = json.loads((_shared("open_llama_3b_zh_en") / "tokenizer_config.json").read_text(encoding="utf-8"))
    config.update(changes)
    return {key: value for key, value in config.items() if value is not ...}


VARIANTS = {
    # Llama family (SentencePiece-style BPE): legacy, add_prefix_space, add_bos/add_eos, the Fast name
    "llama-legacy-true": ("open_llama_3b_zh_en", lambda: _llama_config(legacy=True), None),
    "llama-legacy-false": ("open_llama_3b_zh_en", lambda: _llama_config(legacy=False), None),
    "llama-no-prefix-space": ("open_llama_3b_zh_en", lambda: _llama_config(add_prefix_space=False), None),
    "llama-prefix-space-legacy": (
        "open_llama_3b_zh_en",
        lambda: _llama_config(add_prefix_space=True, legacy=True),
        None,
    ),
    "llama-add-eos": ("open_llama_3b_zh_en", lambda: _llama_config(add_bos_token=False, add_eos_token=True), None),
    "llama-fast-name": ("open_llama_3b_zh_en", lambda: _llama_config(tokenizer_class="LlamaTokenizerFast"), None),
    "llama-pad-unk": ("open_llama_3b_zh_en", lambda: _llama_config(pad_token="<unk>", padding_side="left"), None),
    "llama-clean-up": ("open_llama_3b_zh_en", lambda: _llama_config(clean_up_tokenization_spaces=True), None),
    # Mistral-style folder: LlamaTokenizer named, model_type mistral -> transformers keeps tokenizer.json as is
    "mistral-style": ("open_llama_3b_zh_en", lambda: _llama_config(), {"model_type": "mistral"}),
    "llama-no-config": ("open_llama_3b_zh_en", lambda: None, {"model_type": "llama"}),
    "code-llama": ("open_llama_3b_zh_en", lambda: _llama_config(tokenizer_class="CodeLlamaTokenizer"), None),
    "code-llama-options": (
        "open_llama_3b_zh_en",
        lambda: _llama_config(
            tokenizer_class="CodeLlamaTokenizer", add_prefix_space=False, prefix_token="<pre>", eot_token="</s>"
        ),
        None,
    ),
    "gemma-on-llama-vocab": ("open_llama_3b_zh_en", lambda: {"tokenizer_class": "GemmaTokenizer"}, None),
    # byte-level BPE families
    "gpt2-prefix-space": ("gpt2", lambda: {"tokenizer_class": "GPT2Tokenizer", "add_prefix_space": True}, None),
    "gpt2-config-only": ("gpt2", lambda: {"model_max_length": 1024}, {"model_type": "gpt2"}),
    "gpt2-as-fast": ("gpt2", lambda: {"tokenizer_class": "PreTrainedTokenizerFast"}, None),
    "gpt2-byte-level-llama": ("gpt2", lambda: {"tokenizer_class": "LlamaTokenizer"}, None),
    "roberta": ("gpt2", lambda: {"tokenizer_class": "RobertaTokenizer"}, None),
    "roberta-prefix-no-trim": (
        "gpt2",
        lambda: {"tokenizer_class": "RobertaTokenizer", "add_prefix_space": True, "trim_offsets": False},
        None,
    ),
    "bart": ("gpt2", lambda: {"tokenizer_class": "BartTokenizer", "add_prefix_space": True}, None),
    "gpt-neox": ("gpt2", lambda: {"tokenizer_class": "GPTNeoXTokenizer", "add_prefix_space": True}, None),
    "qwen2": ("gpt2", lambda: {"tokenizer_class": "Qwen2Tokenizer"}, None),
    "qwen2-model-type": ("gpt2", lambda: {"tokenizer_class": "GPT2Tokenizer"}, {"model_type": "qwen2"}),
    "smollm2-prefix-space": (
        "smollm2-135m-instruct",
        lambda: {"tokenizer_class": "GPT2Tokenizer", "add_prefix_space": True, "eos_token": "<|im_end|>"},
        None,
    ),
    # SentencePiece Unigram families, on T5's Unigram vocabulary
    "xlm-roberta": ("t5-small", lambda: {"tokenizer_class": "XLMRobertaTokenizer"}, None),
    "xlm-roberta-model-type": ("t5-small", lambda: None, {"model_type": "xlm-roberta"}),
    "xlm-roberta-no-prefix": (
        "t5-small",
        lambda: {"tokenizer_class": "XLMRobertaTokenizer", "add_prefix_space": False},
        None,
    ),
    "albert": (
        "t5-small",
        lambda: {"tokenizer_class": "AlbertTokenizer", "cls_token": "<pad>", "sep_token": "</s>"},
        None,
    ),
    "albert-cased-accents": (
        "t5-small",
        lambda: {
            "tokenizer_class": "AlbertTokenizer",
            "do_lower_case": False,
            "keep_accents": True,
            "cls_token": "<pad>",
            "sep_token": "</s>",
        },
        None,
    ),
    "deberta-v2": ("t5-small", lambda: {"tokenizer_class": "DebertaV2Tokenizer", "unk_token": "<unk>"}, None),
    "deberta-v2-punct-lower": (
        "t5-small",
        lambda: {
            "tokenizer_class": "DebertaV2Tokenizer",
            "split_by_punct": True,
            "do_lower_case": True,
            "add_prefix_space": False,
        },
        None,
    ),
    # T5 / Unigram
    "t5-bare": ("t5-small", lambda: {"tokenizer_class": "T5Tokenizer"}, None),
    "t5-model-type": ("t5-small", lambda: None, {"model_type": "t5"}),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_config_variant_matches_autotokenizer(tmp_path, variant):
    source, config, model_config = VARIANTS[variant]
    _compare(_variant(tmp_path, source, config(), model_config))


def _llama_added_tokens_decoder():
    config = _llama_config()
    token = {"lstrip": True, "rstrip": True, "normalized": False, "single_word": False, "special": True}
    config["added_tokens_decoder"] = {
        "0": {"content": "<unk>", "lstrip": False, "rstrip": False, "normalized": True, "single_word": False},
        "2": {"content": "</s>", **token},
        "32000": {"content": "[PAD]", **token, "special": False, "normalized": True},
        "32001": {"content": "<image>", **token},
    }
    return config


SPECIAL_TOKEN_VARIANTS = {
    # added_tokens_decoder with other AddedToken flags than tokenizer.json, and a new token
    "llama-added-tokens-decoder": ("open_llama_3b_zh_en", _llama_added_tokens_decoder, None),
    # extra special tokens (new and existing) and a model-specific named token
    "llama-extra-special": (
        "open_llama_3b_zh_en",
        lambda: _llama_config(additional_special_tokens=["<tool>", "<s>", "</tool>"], image_token="<img>"),
        None,
    ),
    "gpt2-new-special-tokens": (
        "gpt2",
        lambda: {
            "tokenizer_class": "GPT2Tokenizer",
            "pad_token": {"__type": "AddedToken", "content": "<|pad|>", "lstrip": True, "normalized": False},
            "extra_special_tokens": ["<|sep|>"],
        },
        None,
    ),
    "t5-extra-special": (
        "t5-small",
        lambda: {"tokenizer_class": "T5Tokenizer", "additional_special_tokens": ["<sep>"], "extra_ids": 0},
        None,
    ),
    "roberta-existing-specials": (
        "gpt2",
        lambda: {"tokenizer_class": "RobertaTokenizer", "bos_token": "<|endoftext|>", "cls_token": "<|endoftext|>"},
        None,
    ),
}


@pytest.mark.parametrize(
    "class_name", ["LlamaTokenizer", "PreTrainedTokenizerFast", "GPT2Tokenizer", "AlbertTokenizer", "T5Tokenizer"]
)
def test_no_post_processor_with_add_bos_eos(tmp_path, class_name):
    """tokenizer.json without a post-processor, config asking for bos/eos: transformers 5 sets its own template."""
    source = {"GPT2Tokenizer": "gpt2", "AlbertTokenizer": "t5-small", "T5Tokenizer": "t5-small"}.get(
        class_name, "open_llama_3b_zh_en"
    )
    config = {"tokenizer_class": class_name, "add_bos_token": True, "add_eos_token": True}
    if class_name == "AlbertTokenizer":
        config.update(cls_token="<pad>", sep_token="</s>")
    folder = _variant(tmp_path, source, config)
    data = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    data["post_processor"] = None
    (folder / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    _compare(folder)


@pytest.mark.parametrize("variant", sorted(SPECIAL_TOKEN_VARIANTS))
def test_special_token_variant_matches_autotokenizer(tmp_path, variant):
    source, config, model_config = SPECIAL_TOKEN_VARIANTS[variant]
    _compare(_variant(tmp_path, source, config(), model_config))


@pytest.mark.parametrize("with_config", [True, False], ids=["with-config", "map-only"])
def test_special_tokens_map_matches_autotokenizer(tmp_path, with_config):
    """special_tokens_map.json (read by transformers only without added_tokens_decoder) overrides the config."""
    config = {"tokenizer_class": "GPT2Tokenizer", "pad_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}
    folder = _variant(tmp_path, "gpt2", config if with_config else None)
    special_map = {
        "pad_token": {
            "content": "<|pad|>",
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "single_word": False,
        },
        "additional_special_tokens": ["<|x|>"],
        "eos_token": "<|endoftext|>",
    }
    (folder / "special_tokens_map.json").write_text(json.dumps(special_map), encoding="utf-8")
    _compare(folder)


@pytest.mark.parametrize(
    "config",
    [
        {"tokenizer_class": "BertTokenizer", "do_lower_case": False},
        {"tokenizer_class": "BertTokenizer", "strip_accents": True, "tokenize_chinese_chars": False},
        {"tokenizer_class": "BertTokenizer", "cls_token": "[SEP]", "sep_token": "[CLS]"},
        {"tokenizer_class": "DistilBertTokenizer"},
        {"tokenizer_class": "MPNetTokenizer"},
        {"tokenizer_class": "MPNetTokenizer", "do_lower_case": False, "mask_token": "[MASK]", "cls_token": "[CLS]"},
    ],
    ids=["cased", "strip-accents-no-chinese", "swapped-cls-sep", "distilbert", "mpnet", "mpnet-bert-tokens"],
)
def test_bert_variant_matches_autotokenizer(tmp_path, config):
    folder = tmp_path / "bert"
    folder.mkdir()
    shutil.copy(require_minilm_dir() / "tokenizer.json", folder / "tokenizer.json")
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    _compare(folder)


def test_from_transformers_agrees_with_from_pretrained():
    folder = _shared("open_llama_3b_zh_en")
    ft = ferrotune.Tokenizer.from_pretrained(folder)
    wrapped = ferrotune.Tokenizer.from_transformers(load_hf(folder))
    singles, _, _ = _texts()
    assert ft(singles)["input_ids"] == wrapped(singles)["input_ids"]


@pytest.mark.parametrize("class_name", ["CLIPTokenizer", "WhisperTokenizer", "LukeTokenizer"])
def test_classes_not_reproduced_warn(tmp_path, class_name):
    """A class whose rebuild ferrotune does not reproduce yet is loaded from tokenizer.json as is, with a warning
    that names the class and the exact alternative (from_transformers)."""
    folder = _variant(tmp_path, "gpt2", {"tokenizer_class": class_name})
    with pytest.warns(UserWarning, match=f"{class_name}.*from_transformers"):
        ferrotune.Tokenizer.from_pretrained(folder)


def test_supported_classes_do_not_warn(tmp_path, recwarn):
    for name in SHARED_FOLDERS:
        ferrotune.Tokenizer.from_pretrained(_shared(name))
    assert not [warning for warning in recwarn if "from_transformers" in str(warning.message)]


def test_split_special_tokens_warns(tmp_path):
    folder = _variant(tmp_path, "gpt2", {"tokenizer_class": "GPT2Tokenizer", "split_special_tokens": True})
    with pytest.warns(UserWarning, match="split_special_tokens"):
        ferrotune.Tokenizer.from_pretrained(folder)
