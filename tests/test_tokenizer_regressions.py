"""Regression tests of issue 11 for the tokenizer, pad() and the flattening collator, each compared with
transformers where it has an answer, plus the neighbours of each defect."""

from __future__ import annotations

import copy
import json
import time

import ferrotune
import numpy as np
import pytest
import torch
from conftest import compare_call, compare_pad, mrpc_pairs, sst2_sentences

FAMILIES = ["minilm", "gpt2_pad"]


# --------------------------------------------------------------------------------------------------
# pad(): unpadded equal rows make tensors; pad_to_multiple_of applies to one example too


@pytest.mark.parametrize("return_tensors", ["pt", "np", None])
@pytest.mark.parametrize("padding", [False, "do_not_pad"])
@pytest.mark.parametrize("family", FAMILIES)
def test_pad_without_padding_on_equal_rows_makes_tensors(tokenizer_pairs, family, padding, return_tensors):
    ft, hf = tokenizer_pairs(family)
    rows = [{"input_ids": [5, 6, 7]}, {"input_ids": [8, 9, 10]}]
    out = compare_pad(ft, hf, copy.deepcopy(rows), copy.deepcopy(rows), padding=padding, return_tensors=return_tensors)
    assert out is not None
    if return_tensors is not None:
        assert tuple(out[0]["input_ids"].shape) == (2, 3)


@pytest.mark.parametrize("return_tensors", ["pt", "np"])
@pytest.mark.parametrize("family", FAMILIES)
def test_call_without_padding_on_equal_rows_makes_tensors(tokenizer_pairs, family, return_tensors):
    ft, hf = tokenizer_pairs(family)
    compare_call(ft, hf, ["hello world", "hello there"], return_tensors=return_tensors)


@pytest.mark.parametrize("return_tensors", [None, "np", "pt"])
@pytest.mark.parametrize("multiple", [1, 4, 8])
@pytest.mark.parametrize("padding", [True, "longest", False])
@pytest.mark.parametrize("family", FAMILIES)
def test_pad_one_example_to_a_multiple(tokenizer_pairs, family, padding, multiple, return_tensors):
    ft, hf = tokenizer_pairs(family)
    for features in ({"input_ids": [5, 6, 7]}, [{"input_ids": [5, 6, 7]}], {"input_ids": [5, 6, 7, 8]}):
        compare_pad(
            ft,
            hf,
            copy.deepcopy(features),
            copy.deepcopy(features),
            padding=padding,
            pad_to_multiple_of=multiple,
            return_tensors=return_tensors,
        )


# --------------------------------------------------------------------------------------------------
# Truncation without special tokens: nothing is subtracted from max_length


@pytest.mark.parametrize("max_length", [1, 2, 3])
@pytest.mark.parametrize("truncation", [True, "longest_first", "only_first"])
@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_max_length_without_special_tokens(tokenizer_pairs, family, truncation, max_length):
    ft, hf = tokenizer_pairs(family)
    out = compare_call(
        ft, hf, "hello world foo", truncation=truncation, max_length=max_length, add_special_tokens=False
    )
    assert out is not None and len(out[0]["input_ids"]) == max_length
    compare_call(ft, hf, sst2_sentences(6), truncation=truncation, max_length=max_length, add_special_tokens=False)
    first, second = mrpc_pairs(4)
    if truncation != "only_first" or max_length > 1:
        length = max(max_length, 2)
        compare_call(ft, hf, first, second, truncation=truncation, max_length=length, add_special_tokens=False)


# --------------------------------------------------------------------------------------------------
# DataCollatorWithFlattening takes Arrow batches like the other collators


def test_flattening_collator_on_arrow_inputs():
    pa = pytest.importorskip("pyarrow")
    transformers = pytest.importorskip("transformers")
    rows = [
        {"input_ids": [1, 2, 3], "labels": [7, 8, 9]},
        {"input_ids": [4, 5], "labels": [1, 2]},
        {"input_ids": [6], "labels": [3]},
    ]
    table = pa.Table.from_pylist(rows)
    options = dict(return_flash_attn_kwargs=True, return_seq_idx=True)
    ours = ferrotune.DataCollatorWithFlattening(**options)
    theirs = transformers.DataCollatorWithFlattening(**options)
    chunked = pa.concat_tables([table.slice(0, 1), table.slice(1)])
    cases = [(table, rows), (table.to_batches()[0], rows), (chunked, rows), (table.slice(1), rows[1:])]
    cases.append((table.drop_columns(["labels"]), [{"input_ids": r["input_ids"]} for r in rows]))
    for arrow, plain in cases:
        got, want = ours(arrow), theirs(plain)
        assert got.keys() == want.keys()
        for key in want:
            if torch.is_tensor(want[key]):
                assert torch.equal(got[key], want[key]), key
            else:
                assert got[key] == want[key], key
    with pytest.raises(ferrotune.EmptyBatchError):
        ours(table.slice(0, 0))
    with pytest.raises(ferrotune.InvalidInputError, match=r"includes input_ids, but you provided \['ids'\]"):
        ours(pa.table({"ids": [[1]]}))


# --------------------------------------------------------------------------------------------------
# tokenizer.json files that are damaged or hostile


def _gpt2_json(gpt2_dir) -> dict:
    return json.loads((gpt2_dir / "tokenizer.json").read_text(encoding="utf-8"))


def test_absurd_vocabulary_id_is_refused_quickly(gpt2_dir, tmp_path):
    data = _gpt2_json(gpt2_dir)
    token = next(t for t, i in data["model"]["vocab"].items() if i == 50000)
    data["model"]["vocab"][token] = 2_000_000_000
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    started = time.perf_counter()
    with pytest.raises(ferrotune.TokenizerFormatError, match=r"tokenizer.json.*id 2000000000"):
        ferrotune.Tokenizer.from_file(path)
    assert time.perf_counter() - started < 5


def test_malformed_sections_are_format_errors_not_internal_errors(gpt2_dir, tmp_path):
    data = _gpt2_json(gpt2_dir)
    data["decoder"] = 5  # the tokenizers crate panics on this one
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ferrotune.TokenizerFormatError, match="tokenizer.json"):
        ferrotune.Tokenizer.from_file(path)


def test_split_regex_that_gives_up_is_a_tokenization_error(minilm_dir, tmp_path):
    data = json.loads((minilm_dir / "tokenizer.json").read_text(encoding="utf-8"))
    # Catastrophic backtracking: Oniguruma stops at its retry limit on a long run of "a".
    data["pre_tokenizer"] = {
        "type": "Split",
        "pattern": {"Regex": "((a+)+)+b"},
        "behavior": "Isolated",
        "invert": False,
    }
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    tok = ferrotune.Tokenizer.from_file(path)
    assert tok("a b")["input_ids"]
    with pytest.raises(ferrotune.TokenizationError, match="regex gave up") as err:
        tok(["fine", "a" * 60 + "c"])
    assert not isinstance(err.value, ferrotune.InternalError)


def test_equal_rows_from_numpy_inputs_stay_int64(minilm_pair):
    ft, _ = minilm_pair
    out = ft.pad({"input_ids": np.array([[5, 6, 7], [8, 9, 10]])}, padding=False, return_tensors="np")
    assert out["input_ids"].dtype == np.int64 and out["input_ids"].shape == (2, 3)
