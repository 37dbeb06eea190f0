"""ferrotune picks its native encoders (BERT WordPiece for MiniLM, byte-level BPE for GPT-2) without being asked,
and they give the same output as the tokenizers crate's encoder (engine="general") on real data, for every output the
call offers.

(The differential grid against transformers in test_tokenizer_differential.py runs on the native encoders too,
since they are the default; the Rust tests in rust/core/tests/fast_wordpiece.rs and fast_bpe.rs compare them with
the crate on every line of ../shared/data, every vocabulary entry and generated Unicode.)
"""

from __future__ import annotations

import ferrotune
import numpy as np
import pytest
from conftest import load_dataset_slice


@pytest.fixture(scope="module")
def smollm2_dir():
    """SmolLM2 (byte-level BPE with a Digits pre-tokenizer in its file, some bytes without a token)."""
    from conftest import require_data_dir

    path = require_data_dir() / "tokenizers" / "smollm2-135m-instruct"
    if not (path / "tokenizer.json").is_file():
        pytest.skip(f"SmolLM2 tokenizer not found at {path}")
    return path


@pytest.fixture(scope="module")
def cl100k_dir():
    """cl100k (a Split with cl100k's regex before ByteLevel; Llama-3 uses the same regex)."""
    from conftest import require_data_dir

    path = require_data_dir() / "tokenizers" / "cl100k"
    if not (path / "tokenizer.json").is_file():
        pytest.skip(f"cl100k tokenizer not found at {path}")
    return path


@pytest.fixture(scope="module", params=["minilm", "gpt2", "smollm2", "cl100k"])
def engines(request):
    folder = request.getfixturevalue(f"{request.param}_dir")
    fast = ferrotune.Tokenizer.from_pretrained(folder)
    general = ferrotune.Tokenizer.from_pretrained(folder, engine="general")
    if fast.pad_token is None:  # GPT-2: pad with eos, the usual fine-tuning setup
        fast.pad_token = general.pad_token = fast.eos_token
    return fast, general


def test_fast_path_is_picked_automatically(minilm_dir, gpt2_dir, smollm2_dir, cl100k_dir):
    assert ferrotune.Tokenizer.from_pretrained(minilm_dir).encoder == "fast-wordpiece"
    assert ferrotune.Tokenizer.from_pretrained(gpt2_dir).encoder == "fast-bpe"
    assert ferrotune.Tokenizer.from_pretrained(smollm2_dir).encoder == "fast-bpe"
    assert ferrotune.Tokenizer.from_pretrained(cl100k_dir).encoder == "fast-bpe"
    assert ferrotune.Tokenizer.from_pretrained(gpt2_dir, engine="general").encoder == "general"


def test_unknown_engine_is_refused(minilm_dir):
    with pytest.raises(ferrotune.InvalidArgumentError, match="engine"):
        ferrotune.Tokenizer.from_pretrained(minilm_dir, engine="turbo")


OPTIONS = [
    {"padding": True, "truncation": True},
    {"return_offsets_mapping": True, "return_special_tokens_mask": True, "padding": True},
    {"truncation": True, "max_length": 64, "stride": 16, "return_overflowing_tokens": True, "padding": True},
    {"truncation": "only_second", "max_length": 48, "padding": "max_length", "return_offsets_mapping": True},
    {"truncation": "only_second", "max_length": 128, "padding": "max_length", "return_offsets_mapping": True},
    {"add_special_tokens": False, "padding": True, "return_length": True},
]


@pytest.mark.parametrize("dataset,n", [("mrpc", 3000), ("sst2", 20000), ("imdb", 1000)])
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(o))
def test_fast_equals_general_engine(engines, dataset, n, options):
    fast, general = engines
    texts, pairs = load_dataset_slice(dataset, n)
    if options.get("truncation") == "only_second" and pairs is None:
        pytest.skip("only_second needs pairs")
    try:
        b = general(texts, pairs, return_tensors="np", **options)
    except ferrotune.TokenizationError as error:  # e.g. a second sequence too short for only_second
        with pytest.raises(ferrotune.TokenizationError, match="too short"):
            fast(texts, pairs, return_tensors="np", **options)
        assert "too short" in str(error)
        return
    a = fast(texts, pairs, return_tensors="np", **options)
    assert list(a.keys()) == list(b.keys())
    for key in b:
        assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
        assert np.array_equal(a[key], b[key]), key


def test_special_tokens_written_in_text(engines):
    fast, general = engines
    texts = ["hello [SEP] world", "[CLS][MASK]x", "[sep] lower", "[UNK]", "a[PAD]b", "Ünïcödé [MASK] 東京 🙂"]
    texts += ["a<|endoftext|>b", "<|endoftext|><|endoftext|>", " <|endoftext|> x  ", "it's  He'LL   \t\n"]
    texts += ["<|im_start|>user\n2024-11-29: 3.14\x04\x13 x\x1d<|im_end|>\n", "\x06\x16", "a\x04b 12\x1345"]
    texts += ["I'M   'ſ\r\n\r\n (x) 123456 ١٢٣٤ ...\n\n", "<|endoftext|>hi<|fim_prefix|>", "\u3000 \u00a0x"]
    for options in ({}, {"return_offsets_mapping": True, "return_special_tokens_mask": True}):
        a, b = fast(texts, **options), general(texts, **options)
        assert dict(a) == dict(b)
