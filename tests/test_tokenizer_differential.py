"""Differential tests: ferrotune's ``Tokenizer.__call__`` against transformers' fast tokenizer on real data.

Every test calls both tokenizers with the same arguments and requires identical outputs (same keys,
values, dtypes and shapes), or, where transformers raises, that ferrotune raises too.
"""

from __future__ import annotations

import itertools

import ferrotune  # noqa: F401 - the package under test must import
import pytest
from conftest import RETURN_TENSORS, compare_call, load_dataset_slice

FAMILIES = ["minilm", "gpt2_pad"]
DATASETS = ["mrpc", "sst2", "imdb"]

PADDINGS = [False, True, "longest", "max_length"]
TRUNCATIONS = [None, True, "longest_first", "only_first", "only_second", False]
MAX_LENGTHS = [None, 8, 128, 512]
PAD_TO_MULTIPLE_OF = [None, 8]
PADDING_SIDES = ["right", "left"]

GRID_EXAMPLES = {"mrpc": 12, "sst2": 16, "imdb": 6}
OPTION_EXAMPLES = 16
LARGE_SLICES = {"mrpc": 200, "sst2": 300, "imdb": 40}


def _call(family, dataset, n, tokenizer_pairs, **kwargs):
    ft, hf = tokenizer_pairs(family)
    text, text_pair = load_dataset_slice(dataset, n)
    return compare_call(ft, hf, text, text_pair, **kwargs)


# --------------------------------------------------------------------------------------------------
# The full option grid on a small slice of every data set
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("return_tensors", RETURN_TENSORS, ids=lambda v: f"rt={v}")
@pytest.mark.parametrize("padding_side", PADDING_SIDES, ids=lambda v: f"side={v}")
@pytest.mark.parametrize("pad_to_multiple_of", PAD_TO_MULTIPLE_OF, ids=lambda v: f"mult={v}")
@pytest.mark.parametrize("max_length", MAX_LENGTHS, ids=lambda v: f"max={v}")
@pytest.mark.parametrize("truncation", TRUNCATIONS, ids=lambda v: f"trunc={v}")
@pytest.mark.parametrize("padding", PADDINGS, ids=lambda v: f"pad={v}")
@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("family", FAMILIES)
def test_option_grid(
    tokenizer_pairs,
    family,
    dataset,
    padding,
    truncation,
    max_length,
    pad_to_multiple_of,
    padding_side,
    return_tensors,
):
    _call(
        family,
        dataset,
        GRID_EXAMPLES[dataset],
        tokenizer_pairs,
        padding=padding,
        truncation=truncation,
        max_length=max_length,
        pad_to_multiple_of=pad_to_multiple_of,
        padding_side=padding_side,
        return_tensors=return_tensors,
    )


# --------------------------------------------------------------------------------------------------
# A reduced set of representative configurations on larger slices
# --------------------------------------------------------------------------------------------------

LARGE_CONFIGS = [
    dict(),
    dict(padding=True),
    dict(padding=True, truncation=True),
    dict(padding="longest", truncation="longest_first", max_length=128),
    dict(padding="max_length", truncation=True, max_length=128),
    dict(padding="max_length", truncation=True, max_length=512, padding_side="left"),
    dict(padding=True, truncation="only_second", max_length=64, pad_to_multiple_of=8),
    dict(padding=True, truncation="only_first", max_length=64),
    dict(padding=True, truncation=True, max_length=32, padding_side="left", pad_to_multiple_of=8),
    dict(truncation=True, max_length=8),
    dict(max_length=128),
    dict(padding=True, max_length=128),
]


@pytest.mark.parametrize("return_tensors", RETURN_TENSORS, ids=lambda v: f"rt={v}")
@pytest.mark.parametrize("config", LARGE_CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "plain")
@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("family", FAMILIES)
def test_large_slices(tokenizer_pairs, family, dataset, config, return_tensors):
    _call(family, dataset, LARGE_SLICES[dataset], tokenizer_pairs, return_tensors=return_tensors, **config)


# --------------------------------------------------------------------------------------------------
# Overflowing tokens with a stride
# --------------------------------------------------------------------------------------------------

OVERFLOW_CASES = [
    # (dataset, truncation, max_length, stride)
    ("imdb", True, 128, 32),
    ("imdb", "longest_first", 128, 32),
    ("imdb", "only_first", 128, 32),
    ("mrpc", "only_second", 128, 32),
    ("mrpc", "longest_first", 128, 32),
    ("mrpc", "only_second", 64, 4),
    ("mrpc", "only_first", 64, 4),
    ("mrpc", "longest_first", 48, 8),
    ("mrpc", "longest_first", 32, 4),
]


@pytest.mark.parametrize("return_tensors", RETURN_TENSORS, ids=lambda v: f"rt={v}")
@pytest.mark.parametrize("padding", [False, True, "max_length"], ids=lambda v: f"pad={v}")
@pytest.mark.parametrize(("dataset", "truncation", "max_length", "stride"), OVERFLOW_CASES)
@pytest.mark.parametrize("family", FAMILIES)
def test_overflow_with_stride(
    tokenizer_pairs, family, dataset, truncation, max_length, stride, padding, return_tensors
):
    result = _call(
        family,
        dataset,
        LARGE_SLICES[dataset],
        tokenizer_pairs,
        truncation=truncation,
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        padding=padding,
        return_tensors=return_tensors,
    )
    if result is not None:
        _, hf_out = result
        assert "overflow_to_sample_mapping" in hf_out


@pytest.mark.parametrize("truncation", ["only_second", "only_first"])
@pytest.mark.parametrize("family", FAMILIES)
def test_overflow_stride_too_large_for_the_truncated_sequence(tokenizer_pairs, family, truncation):
    """Some MRPC pairs leave the truncated sequence fewer than ``stride`` tokens: the tokenizers backend
    of transformers panics there; ferrotune must raise an ordinary exception (compare_call checks it)."""
    result = _call(
        family,
        "mrpc",
        200,
        tokenizer_pairs,
        truncation=truncation,
        max_length=48,
        stride=8,
        return_overflowing_tokens=True,
    )
    assert result is None, "transformers accepted this input: the case no longer exercises the error path"


@pytest.mark.parametrize("family", FAMILIES)
def test_overflow_produces_several_windows_per_review(tokenizer_pairs, family):
    result = _call(
        family,
        "imdb",
        40,
        tokenizer_pairs,
        truncation=True,
        max_length=128,
        stride=32,
        return_overflowing_tokens=True,
    )
    ft_out, _ = result
    mapping = ft_out["overflow_to_sample_mapping"]
    assert len(mapping) > 40, "IMDB reviews longer than 128 tokens must be split into several windows"
    assert mapping == sorted(mapping) and set(mapping) == set(range(40))


@pytest.mark.parametrize("return_tensors", RETURN_TENSORS, ids=lambda v: f"rt={v}")
@pytest.mark.parametrize("family", FAMILIES)
def test_overflow_single_string(tokenizer_pairs, family, return_tensors):
    ft, hf = tokenizer_pairs(family)
    text, _ = load_dataset_slice("imdb", 1)
    compare_call(
        ft,
        hf,
        text[0],
        truncation=True,
        max_length=64,
        stride=16,
        return_overflowing_tokens=True,
        padding=True,
        return_tensors=return_tensors,
    )


# --------------------------------------------------------------------------------------------------
# Optional outputs
# --------------------------------------------------------------------------------------------------

OUTPUT_OPTIONS = [
    dict(return_offsets_mapping=True),
    dict(return_special_tokens_mask=True),
    dict(return_length=True),
    dict(return_token_type_ids=True),
    dict(return_token_type_ids=False),
    dict(return_attention_mask=False),
    dict(return_attention_mask=True),
    dict(add_special_tokens=False),
    dict(
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
        return_length=True,
        return_token_type_ids=True,
        return_attention_mask=True,
    ),
    dict(return_offsets_mapping=True, return_special_tokens_mask=True, add_special_tokens=False),
    dict(return_token_type_ids=False, return_attention_mask=False, return_length=True),
]

OUTPUT_SHAPES = [
    dict(),
    dict(padding=True, truncation=True, max_length=64),
    dict(padding="max_length", truncation=True, max_length=32, padding_side="left"),
    dict(truncation=True, max_length=64, stride=8, return_overflowing_tokens=True, padding=True),
]


@pytest.mark.parametrize("return_tensors", RETURN_TENSORS, ids=lambda v: f"rt={v}")
@pytest.mark.parametrize("shape", OUTPUT_SHAPES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "plain")
@pytest.mark.parametrize("options", OUTPUT_OPTIONS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("family", FAMILIES)
def test_output_options(tokenizer_pairs, family, dataset, options, shape, return_tensors):
    _call(family, dataset, OPTION_EXAMPLES, tokenizer_pairs, return_tensors=return_tensors, **options, **shape)


# --------------------------------------------------------------------------------------------------
# Unbatched input: one string, or one pair of strings
# --------------------------------------------------------------------------------------------------

SINGLE_CONFIGS = [
    dict(),
    dict(padding=True),
    dict(padding="max_length", max_length=64),
    dict(truncation=True, max_length=8),
    dict(return_offsets_mapping=True, return_special_tokens_mask=True, return_length=True),
    dict(add_special_tokens=False, return_token_type_ids=True),
]


@pytest.mark.parametrize("return_tensors", RETURN_TENSORS, ids=lambda v: f"rt={v}")
@pytest.mark.parametrize("config", SINGLE_CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "plain")
@pytest.mark.parametrize("family", FAMILIES)
def test_single_string(tokenizer_pairs, family, config, return_tensors):
    ft, hf = tokenizer_pairs(family)
    for text in load_dataset_slice("sst2", 3)[0] + load_dataset_slice("imdb", 1)[0]:
        compare_call(ft, hf, text, return_tensors=return_tensors, **config)


@pytest.mark.parametrize("return_tensors", RETURN_TENSORS, ids=lambda v: f"rt={v}")
@pytest.mark.parametrize(
    "config",
    SINGLE_CONFIGS + [dict(truncation="only_second", max_length=24), dict(truncation="only_first", max_length=24)],
    ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "plain",
)
@pytest.mark.parametrize("family", FAMILIES)
def test_single_pair_of_strings(tokenizer_pairs, family, config, return_tensors):
    ft, hf = tokenizer_pairs(family)
    firsts, seconds = load_dataset_slice("mrpc", 3)
    for first, second in zip(firsts, seconds):
        compare_call(ft, hf, first, second, return_tensors=return_tensors, **config)


# --------------------------------------------------------------------------------------------------
# GPT-2 without a pad token
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("return_tensors", RETURN_TENSORS, ids=lambda v: f"rt={v}")
@pytest.mark.parametrize(
    "config",
    [dict(), dict(truncation=True, max_length=16), dict(return_offsets_mapping=True, return_length=True)],
    ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "plain",
)
@pytest.mark.parametrize("dataset", DATASETS)
def test_gpt2_without_pad_token_unpadded(tokenizer_pairs, dataset, config, return_tensors):
    _call("gpt2", dataset, OPTION_EXAMPLES, tokenizer_pairs, return_tensors=return_tensors, **config)


@pytest.mark.parametrize(
    ("padding", "max_length"),
    [(True, None), ("longest", None), ("max_length", 32), (True, 32)],
)
@pytest.mark.parametrize("return_tensors", RETURN_TENSORS, ids=lambda v: f"rt={v}")
def test_gpt2_without_pad_token_padding_raises(tokenizer_pairs, padding, max_length, return_tensors):
    ft, hf = tokenizer_pairs("gpt2")
    texts = load_dataset_slice("sst2", 8)[0]
    assert ft.pad_token is None and hf.pad_token is None
    hf_kwargs = dict(padding=padding, max_length=max_length, truncation=max_length is not None)
    with pytest.raises(ValueError):
        hf(texts, return_tensors=None if return_tensors == "arrow" else return_tensors, **hf_kwargs)
    with pytest.raises(ValueError):
        ft(texts, return_tensors=return_tensors, **hf_kwargs)


# --------------------------------------------------------------------------------------------------
# Determinism across calls and batch composition
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_batch_equals_row_by_row(tokenizer_pairs, family):
    """Each row of a batched call equals the unbatched call on that text (no cross-row leakage)."""
    ft, _ = tokenizer_pairs(family)
    texts = load_dataset_slice("sst2", 300)[0]
    batch = ft(texts, truncation=True, max_length=64)
    for i, text in enumerate(itertools.islice(texts, 0, 300, 7)):
        single = ft(text, truncation=True, max_length=64)
        assert single["input_ids"] == batch["input_ids"][i * 7]
