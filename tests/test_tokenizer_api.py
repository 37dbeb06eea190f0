"""The public API of ``ferrotune.Tokenizer`` beyond ``__call__``: constructors, configuration, the
BatchEncoding-like result, decoding, vocabulary look-ups, special tokens, ``pad`` and pickling.

Behaviour is checked against transformers' fast tokenizer loaded from the same folder.
"""

from __future__ import annotations

import copy
import json
import pickle
import shutil

import ferrotune
import numpy as np
import pytest
import torch
from conftest import (
    RETURN_TENSORS,
    assert_same_encoding,
    compare_call,
    compare_pad,
    imdb_texts,
    load_hf,
    mrpc_pairs,
    sst2_sentences,
)

FAMILIES = ["minilm", "gpt2_pad"]
CALL_CONFIGS = [
    dict(),
    dict(padding=True, truncation=True, max_length=64),
    dict(padding="max_length", truncation=True, max_length=48, return_offsets_mapping=True),
]


def _texts():
    return sst2_sentences(40) + imdb_texts(3)


def _assert_same_outputs(ft_a, ft_b, texts, text_pair=None, **kwargs):
    out_a, out_b = ft_a(texts, text_pair, **kwargs), ft_b(texts, text_pair, **kwargs)
    assert set(out_a.keys()) == set(out_b.keys())
    for key in out_a.keys():
        assert out_a[key] == out_b[key], key


# --------------------------------------------------------------------------------------------------
# Constructors
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("config", CALL_CONFIGS, ids=lambda c: ",".join(c) or "plain")
@pytest.mark.parametrize("family", FAMILIES)
def test_from_transformers_matches_transformers(tokenizer_pairs, family, config):
    _, hf = tokenizer_pairs(family)
    ft = ferrotune.Tokenizer.from_transformers(hf)
    compare_call(ft, hf, _texts(), **config)
    first, second = mrpc_pairs(30)
    compare_call(ft, hf, first, second, **config)


@pytest.mark.parametrize("config", CALL_CONFIGS, ids=lambda c: ",".join(c) or "plain")
@pytest.mark.parametrize("family", FAMILIES)
def test_from_pretrained_equals_from_transformers(tokenizer_pairs, family, config):
    ft, hf = tokenizer_pairs(family)
    ft_from_hf = ferrotune.Tokenizer.from_transformers(hf)
    _assert_same_outputs(ft, ft_from_hf, _texts(), **config)
    first, second = mrpc_pairs(30)
    _assert_same_outputs(ft, ft_from_hf, first, second, **config)


@pytest.mark.parametrize("dir_fixture", ["minilm_dir", "gpt2_dir"])
def test_from_file_encodes_like_from_pretrained(request, dir_fixture):
    folder = request.getfixturevalue(dir_fixture)
    from_file = ferrotune.Tokenizer.from_file(str(folder / "tokenizer.json"))
    from_dir = ferrotune.Tokenizer.from_pretrained(str(folder))
    first, second = mrpc_pairs(30)
    for args in [(_texts(), None), (first, second)]:
        out_file = from_file(*args, truncation=True, max_length=64)
        out_dir = from_dir(*args, truncation=True, max_length=64)
        assert set(out_file.keys()) <= set(out_dir.keys())
        assert out_file["input_ids"] == out_dir["input_ids"]
        assert out_file["attention_mask"] == out_dir["attention_mask"]


def test_from_file_accepts_pathlike(minilm_dir):
    tok = ferrotune.Tokenizer.from_file(minilm_dir / "tokenizer.json")
    assert tok("hello world")["input_ids"] == [101, 7592, 2088, 102]


def test_from_pretrained_accepts_pathlike(minilm_dir, minilm_pair):
    ft, _ = minilm_pair
    _assert_same_outputs(ferrotune.Tokenizer.from_pretrained(minilm_dir), ft, _texts())


@pytest.fixture(scope="module")
def custom_config_dir(minilm_dir, tmp_path_factory):
    """A copy of the MiniLM folder whose tokenizer_config.json asks for left padding and truncation
    and a model_max_length of 64."""
    folder = tmp_path_factory.mktemp("minilm_custom")
    for path in minilm_dir.iterdir():
        if path.is_file() and path.name != "model.safetensors":
            shutil.copy(path, folder / path.name)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.update(padding_side="left", truncation_side="left", model_max_length=64)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def test_from_pretrained_reads_tokenizer_config(custom_config_dir):
    ft = ferrotune.Tokenizer.from_pretrained(str(custom_config_dir))
    hf = load_hf(custom_config_dir)
    assert (hf.padding_side, hf.truncation_side, hf.model_max_length) == ("left", "left", 64)
    assert ft.padding_side == hf.padding_side
    assert ft.truncation_side == hf.truncation_side
    assert ft.model_max_length == hf.model_max_length


@pytest.mark.parametrize(
    "config",
    [
        dict(padding=True),
        dict(truncation=True),
        dict(padding="max_length", truncation=True),
        dict(padding=True, truncation=True, return_overflowing_tokens=True, stride=8),
        dict(padding=True, truncation=True, max_length=16, padding_side="right"),
    ],
    ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()),
)
def test_from_pretrained_config_drives_defaults(custom_config_dir, config):
    ft = ferrotune.Tokenizer.from_pretrained(str(custom_config_dir))
    hf = load_hf(custom_config_dir)
    compare_call(ft, hf, sst2_sentences(20) + imdb_texts(4), **config)
    first, second = mrpc_pairs(20)
    compare_call(ft, hf, first, second, **{k: v for k, v in config.items() if k != "return_overflowing_tokens"})


def test_from_transformers_copies_instance_settings(gpt2_dir):
    hf = load_hf(gpt2_dir)
    hf.pad_token = hf.eos_token
    hf.padding_side = "left"
    ft = ferrotune.Tokenizer.from_transformers(hf)
    assert ft.pad_token == hf.pad_token
    assert ft.pad_token_id == hf.pad_token_id
    assert ft.padding_side == "left"
    compare_call(ft, hf, sst2_sentences(20), padding=True)


# --------------------------------------------------------------------------------------------------
# Tokenizer attributes
# --------------------------------------------------------------------------------------------------

ATTRIBUTES = [
    "vocab_size",
    "pad_token",
    "pad_token_id",
    "cls_token_id",
    "sep_token_id",
    "mask_token_id",
    "unk_token_id",
    "bos_token_id",
    "eos_token_id",
    "model_max_length",
    "padding_side",
    "truncation_side",
]


@pytest.mark.parametrize("attribute", ATTRIBUTES)
@pytest.mark.parametrize("family", ["minilm", "gpt2", "gpt2_pad"])
def test_attributes_match(tokenizer_pairs, family, attribute):
    ft, hf = tokenizer_pairs(family)
    assert getattr(ft, attribute) == getattr(hf, attribute)


@pytest.mark.parametrize("family", ["minilm", "gpt2"])
def test_len_and_model_input_names(tokenizer_pairs, family):
    ft, hf = tokenizer_pairs(family)
    assert len(ft) == len(hf)
    assert list(ft.model_input_names) == list(hf.model_input_names)


def test_known_special_token_values(minilm_pair, gpt2_pair):
    minilm, _ = minilm_pair
    gpt2, _ = gpt2_pair
    assert (minilm.cls_token_id, minilm.sep_token_id, minilm.pad_token_id) == (101, 102, 0)
    assert (minilm.mask_token_id, minilm.unk_token_id, minilm.vocab_size) == (103, 100, 30522)
    assert gpt2.pad_token is None and gpt2.pad_token_id is None
    assert gpt2.eos_token_id == gpt2.bos_token_id == 50256
    assert len(gpt2) == 50257


def test_set_pad_token_and_padding_side(gpt2_dir):
    ft, hf = ferrotune.Tokenizer.from_pretrained(str(gpt2_dir)), load_hf(gpt2_dir)
    for tok in (ft, hf):
        tok.pad_token = tok.eos_token
        tok.padding_side = "left"
    assert ft.pad_token == "<|endoftext|>" and ft.pad_token_id == 50256
    assert ft.padding_side == "left"
    for rt in RETURN_TENSORS:
        compare_call(ft, hf, sst2_sentences(30), padding=True, return_tensors=rt)


def test_set_truncation_side(minilm_dir):
    ft, hf = ferrotune.Tokenizer.from_pretrained(str(minilm_dir)), load_hf(minilm_dir)
    for tok in (ft, hf):
        tok.truncation_side = "left"
    assert ft.truncation_side == "left"
    compare_call(ft, hf, imdb_texts(5), truncation=True, max_length=32)


# --------------------------------------------------------------------------------------------------
# The BatchEncoding-like result
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("return_tensors", [None, "np", "pt"])
def test_encoding_item_and_attribute_access(minilm_pair, return_tensors):
    ft, hf = minilm_pair
    enc = ft(sst2_sentences(8), padding=True, return_tensors=return_tensors)
    assert list(enc.keys()) == list(hf(sst2_sentences(8), padding=True).keys())
    for key in enc.keys():
        assert getattr(enc, key) is enc[key]
    assert "input_ids" in enc
    with pytest.raises(AttributeError):
        _ = enc.no_such_output
    with pytest.raises(KeyError):
        _ = enc["no_such_output"]


def test_encoding_to_cpu(minilm_pair):
    ft, hf = minilm_pair
    enc = ft(sst2_sentences(8), padding=True, return_tensors="pt")
    moved = enc.to("cpu")
    assert set(moved.keys()) == set(enc.keys())
    assert_same_encoding(moved, hf(sst2_sentences(8), padding=True, return_tensors="pt"), "pt")
    assert all(value.device.type == "cpu" for value in moved.values())


def test_encoding_to_device_object(minilm_pair):
    ft, _ = minilm_pair
    enc = ft(sst2_sentences(4), padding=True, return_tensors="pt")
    moved = enc.to(torch.device("cpu"))
    assert torch.equal(moved["input_ids"], enc["input_ids"])


def test_encoding_dict_conversion(minilm_pair):
    ft, hf = minilm_pair
    enc = ft(sst2_sentences(8), padding=True)
    assert dict(enc) == dict(hf(sst2_sentences(8), padding=True))
    assert dict(enc.items()) == dict(enc)


# --------------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------------


def _real_ids(hf, padded: bool):
    first, second = mrpc_pairs(20)
    singles = hf(sst2_sentences(20) + imdb_texts(2), truncation=True, max_length=128, padding=padded)["input_ids"]
    pairs = hf(first, second, padding=padded)["input_ids"]
    return singles + pairs


@pytest.mark.parametrize("skip_special_tokens", [False, True])
@pytest.mark.parametrize("family", FAMILIES)
def test_decode_matches(tokenizer_pairs, family, skip_special_tokens):
    ft, hf = tokenizer_pairs(family)
    for ids in _real_ids(hf, padded=True):
        assert ft.decode(ids, skip_special_tokens=skip_special_tokens) == hf.decode(
            ids, skip_special_tokens=skip_special_tokens
        )


@pytest.mark.parametrize("skip_special_tokens", [False, True])
@pytest.mark.parametrize("family", FAMILIES)
def test_batch_decode_matches(tokenizer_pairs, family, skip_special_tokens):
    ft, hf = tokenizer_pairs(family)
    for padded in (False, True):
        ids = _real_ids(hf, padded=padded)
        assert ft.batch_decode(ids, skip_special_tokens=skip_special_tokens) == hf.batch_decode(
            ids, skip_special_tokens=skip_special_tokens
        )


@pytest.mark.parametrize("family", FAMILIES)
def test_decode_accepts_arrays_and_tensors(tokenizer_pairs, family):
    ft, hf = tokenizer_pairs(family)
    batch = hf(sst2_sentences(6), padding=True, return_tensors="np")["input_ids"]
    expected = hf.batch_decode(batch.tolist(), skip_special_tokens=True)
    assert ft.batch_decode(batch, skip_special_tokens=True) == expected
    assert ft.batch_decode(torch.from_numpy(batch), skip_special_tokens=True) == expected
    assert ft.decode(batch[0], skip_special_tokens=True) == expected[0]
    assert ft.decode(torch.from_numpy(batch[0]), skip_special_tokens=True) == expected[0]


@pytest.mark.parametrize("family", FAMILIES)
def test_decode_single_id_and_empty(tokenizer_pairs, family):
    ft, hf = tokenizer_pairs(family)
    token_id = hf("hello")["input_ids"][-1]
    assert ft.decode(token_id) == hf.decode(token_id)
    assert ft.decode([]) == hf.decode([])


# --------------------------------------------------------------------------------------------------
# Vocabulary look-ups
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["minilm", "gpt2"])
def test_tokenize_matches(tokenizer_pairs, family):
    ft, hf = tokenizer_pairs(family)
    for text in sst2_sentences(50) + imdb_texts(3) + ["", "  ", "Hello world, café naïve 日本語 🤗"]:
        assert ft.tokenize(text) == hf.tokenize(text)


@pytest.mark.parametrize("family", ["minilm", "gpt2"])
def test_tokenize_with_special_tokens_matches(tokenizer_pairs, family):
    ft, hf = tokenizer_pairs(family)
    for text in sst2_sentences(10):
        assert ft.tokenize(text, add_special_tokens=True) == hf.tokenize(text, add_special_tokens=True)


@pytest.mark.parametrize("family", ["minilm", "gpt2"])
def test_convert_tokens_to_ids_matches(tokenizer_pairs, family):
    ft, hf = tokenizer_pairs(family)
    tokens = hf.tokenize(" ".join(sst2_sentences(20))) + list(hf.all_special_tokens) + ["zzqx_not_a_token"]
    assert ft.convert_tokens_to_ids(tokens) == hf.convert_tokens_to_ids(tokens)
    for token in tokens[:10] + tokens[-3:]:
        assert ft.convert_tokens_to_ids(token) == hf.convert_tokens_to_ids(token)


@pytest.mark.parametrize("family", ["minilm", "gpt2"])
def test_convert_ids_to_tokens_matches(tokenizer_pairs, family):
    ft, hf = tokenizer_pairs(family)
    ids = hf(sst2_sentences(20))["input_ids"]
    flat = [i for row in ids for i in row] + list(hf.all_special_ids)
    assert ft.convert_ids_to_tokens(flat) == hf.convert_ids_to_tokens(flat)
    assert ft.convert_ids_to_tokens(flat, skip_special_tokens=True) == hf.convert_ids_to_tokens(
        flat, skip_special_tokens=True
    )
    for token_id in flat[:10]:
        assert ft.convert_ids_to_tokens(token_id) == hf.convert_ids_to_tokens(token_id)


# --------------------------------------------------------------------------------------------------
# pad()
# --------------------------------------------------------------------------------------------------

PAD_CONFIGS = [
    dict(),
    dict(padding=True),
    dict(padding="longest"),
    dict(padding="max_length", max_length=96),
    dict(padding="max_length"),
    dict(padding=True, pad_to_multiple_of=8),
    dict(padding="max_length", max_length=50, pad_to_multiple_of=8),
    dict(padding=True, padding_side="left"),
    dict(padding="max_length", max_length=96, padding_side="left"),
    dict(padding=False),
    dict(padding=True, max_length=8),
]


def _features(hf, kind: str):
    """Unpadded real features as transformers produces them."""
    if kind == "pairs":
        first, second = mrpc_pairs(24)
        enc = hf(first, second, truncation=True, max_length=80)
    else:
        enc = hf(sst2_sentences(24), truncation=True, max_length=80)
    return {key: list(value) for key, value in enc.items()}


def _as_list_of_dicts(columns):
    n = len(columns["input_ids"])
    return [{key: list(values[i]) for key, values in columns.items()} for i in range(n)]


@pytest.mark.parametrize("return_tensors", RETURN_TENSORS, ids=lambda v: f"rt={v}")
@pytest.mark.parametrize("config", PAD_CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "plain")
@pytest.mark.parametrize("layout", ["list_of_dicts", "dict_of_lists"])
@pytest.mark.parametrize("kind", ["singles", "pairs"])
@pytest.mark.parametrize("family", FAMILIES)
def test_pad_matches(tokenizer_pairs, family, kind, layout, config, return_tensors):
    ft, hf = tokenizer_pairs(family)
    columns = _features(hf, kind)
    features = _as_list_of_dicts(columns) if layout == "list_of_dicts" else columns
    compare_pad(ft, hf, copy.deepcopy(features), copy.deepcopy(features), return_tensors=return_tensors, **config)


@pytest.mark.parametrize("return_tensors", RETURN_TENSORS, ids=lambda v: f"rt={v}")
@pytest.mark.parametrize("family", FAMILIES)
def test_pad_without_attention_mask(tokenizer_pairs, family, return_tensors):
    ft, hf = tokenizer_pairs(family)
    columns = _features(hf, "pairs")
    columns.pop("attention_mask")
    for return_attention_mask in (False, True, None):
        for layout in (columns, _as_list_of_dicts(columns)):
            compare_pad(
                ft,
                hf,
                copy.deepcopy(layout),
                copy.deepcopy(layout),
                padding=True,
                return_attention_mask=return_attention_mask,
                return_tensors=return_tensors,
            )


@pytest.mark.parametrize("return_tensors", [None, "np", "pt"])
def test_pad_keeps_scalar_label_column(minilm_pair, return_tensors):
    """The DataCollatorWithPadding use: features carry a scalar label next to the ragged ids."""
    ft, hf = minilm_pair
    features = _as_list_of_dicts(_features(hf, "singles"))
    for i, feature in enumerate(features):
        feature["label"] = i % 2
    compare_pad(ft, hf, copy.deepcopy(features), copy.deepcopy(features), padding=True, return_tensors=return_tensors)


@pytest.mark.parametrize("return_tensors", [None, "np", "pt"])
@pytest.mark.parametrize("family", FAMILIES)
def test_pad_own_output(tokenizer_pairs, family, return_tensors):
    """tok.pad(tok(texts)) equals padding at encode time, as with transformers."""
    ft, hf = tokenizer_pairs(family)
    texts = sst2_sentences(30)
    ft_out = ft.pad(ft(texts), padding=True, return_tensors=return_tensors)
    hf_out = hf.pad(hf(texts), padding=True, return_tensors=return_tensors)
    assert_same_encoding(ft_out, hf_out, return_tensors)
    assert_same_encoding(ft_out, hf(texts, padding=True, return_tensors=return_tensors), return_tensors)


@pytest.mark.parametrize("return_tensors", ["np", "pt"])
def test_pad_numpy_and_tensor_rows(minilm_pair, return_tensors):
    ft, hf = minilm_pair
    columns = _features(hf, "singles")
    for convert in (np.asarray, torch.tensor):
        features = [{key: convert(value) for key, value in row.items()} for row in _as_list_of_dicts(columns)]
        compare_pad(
            ft,
            hf,
            copy.deepcopy(features),
            copy.deepcopy(features),
            padding=True,
            return_tensors=return_tensors,
        )


# --------------------------------------------------------------------------------------------------
# Pickling
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["minilm", "gpt2", "gpt2_pad"])
def test_pickle_round_trip(tokenizer_pairs, family):
    ft, _ = tokenizer_pairs(family)
    clone = pickle.loads(pickle.dumps(ft))
    assert isinstance(clone, ferrotune.Tokenizer)
    first, second = mrpc_pairs(20)
    kwargs = dict(truncation=True, max_length=64, return_offsets_mapping=True)
    if ft.pad_token is not None:
        kwargs["padding"] = True
    _assert_same_outputs(clone, ft, _texts(), **kwargs)
    _assert_same_outputs(clone, ft, first, second, **kwargs)
    for attribute in ATTRIBUTES:
        assert getattr(clone, attribute) == getattr(ft, attribute), attribute


def test_pickle_keeps_instance_settings(gpt2_dir):
    ft = ferrotune.Tokenizer.from_pretrained(str(gpt2_dir))
    ft.pad_token = ft.eos_token
    ft.padding_side = "left"
    ft.truncation_side = "left"
    clone = pickle.loads(pickle.dumps(ft, protocol=pickle.HIGHEST_PROTOCOL))
    assert (clone.pad_token, clone.padding_side, clone.truncation_side) == (ft.pad_token, "left", "left")
    _assert_same_outputs(clone, ft, imdb_texts(4) + sst2_sentences(10), padding=True, truncation=True, max_length=40)


def test_pickle_of_custom_config(custom_config_dir):
    ft = ferrotune.Tokenizer.from_pretrained(str(custom_config_dir))
    clone = pickle.loads(pickle.dumps(ft))
    assert clone.model_max_length == 64
    _assert_same_outputs(clone, ft, imdb_texts(4), padding="max_length", truncation=True)
