"""Bad input and bad files: ferrotune must fail where transformers fails, with the exception types users
catch (ValueError / TypeError, which ferrotune's errors also subclass), and must otherwise agree."""

from __future__ import annotations

import shutil

import ferrotune
import pytest
from conftest import compare_call, compare_pad, load_hf, mrpc_pairs, sst2_sentences

FAMILIES = ["minilm", "gpt2_pad"]


def _texts():
    return sst2_sentences(6)


# --------------------------------------------------------------------------------------------------
# The exception hierarchy
# --------------------------------------------------------------------------------------------------


def test_ferrotune_error_is_an_exception():
    assert issubclass(ferrotune.FerrotuneError, Exception)


# --------------------------------------------------------------------------------------------------
# Malformed batches
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_text_and_pair_lengths_differ(tokenizer_pairs, family):
    ft, hf = tokenizer_pairs(family)
    first, second = mrpc_pairs(5)
    with pytest.raises(ValueError):
        hf(first, second[:3])
    with pytest.raises(ValueError):
        ft(first, second[:3])
    with pytest.raises(ValueError):
        ft(first[:2], second, padding=True, return_tensors="np")


@pytest.mark.parametrize(
    "bad_batch",
    [
        ["fine", None],
        [None],
        ["fine", 3],
        ["fine", 3.5],
        ["fine", b"bytes"],
        ["fine", {"a": 1}],
    ],
    ids=["none-item", "only-none", "int-item", "float-item", "bytes-item", "dict-item"],
)
@pytest.mark.parametrize("family", FAMILIES)
def test_non_string_items(tokenizer_pairs, family, bad_batch):
    ft, _ = tokenizer_pairs(family)
    with pytest.raises((TypeError, ValueError)):
        ft(bad_batch)


@pytest.mark.parametrize("family", FAMILIES)
def test_non_string_items_in_pair(tokenizer_pairs, family):
    ft, _ = tokenizer_pairs(family)
    with pytest.raises((TypeError, ValueError)):
        ft(["a", "b"], ["c", None])
    with pytest.raises((TypeError, ValueError)):
        ft(["a", "b"], ["c", 7])
    with pytest.raises((TypeError, ValueError)):
        ft("a", 7)


@pytest.mark.parametrize(
    "bad_text", [None, 3, 2.5, b"bytes", object()], ids=["None", "int", "float", "bytes", "object"]
)
@pytest.mark.parametrize("family", FAMILIES)
def test_non_string_text(tokenizer_pairs, family, bad_text):
    ft, _ = tokenizer_pairs(family)
    with pytest.raises((TypeError, ValueError)):
        ft(bad_text)


@pytest.mark.parametrize("family", FAMILIES)
def test_non_string_items_match_transformers_where_it_raises(tokenizer_pairs, family):
    ft, hf = tokenizer_pairs(family)
    for batch in (["fine", None], ["fine", 3]):
        compare_call(ft, hf, batch)


@pytest.mark.parametrize("return_tensors", [None, "np", "pt", "arrow"])
@pytest.mark.parametrize("paired", [False, True])
@pytest.mark.parametrize("family", FAMILIES)
def test_empty_batch(tokenizer_pairs, family, paired, return_tensors):
    """transformers fails on ``tok([])`` (IndexError): ferrotune must not silently succeed either,
    unless transformers one day returns an output, which must then be matched."""
    ft, hf = tokenizer_pairs(family)
    compare_call(ft, hf, [], [] if paired else None, padding=True, return_tensors=return_tensors)


# --------------------------------------------------------------------------------------------------
# Unknown option values
# --------------------------------------------------------------------------------------------------

BAD_OPTIONS = [
    dict(padding="bogus"),
    dict(truncation="bogus"),
    dict(return_tensors="tf-bogus"),
    dict(padding=True, padding_side="middle"),
    dict(padding="max_length", max_length=32, padding_side="middle"),
]


def _option_id(options):
    return ",".join(f"{k}={v}" for k, v in options.items())


@pytest.mark.parametrize("options", BAD_OPTIONS, ids=_option_id)
@pytest.mark.parametrize("family", FAMILIES)
def test_unknown_option_values_raise_value_error(tokenizer_pairs, family, options):
    ft, hf = tokenizer_pairs(family)
    with pytest.raises(ValueError):
        hf(_texts(), **options)
    with pytest.raises(ValueError):
        ft(_texts(), **options)


@pytest.mark.parametrize("options", BAD_OPTIONS, ids=_option_id)
def test_unknown_option_values_raise_ferrotune_error(minilm_pair, options):
    ft, _ = minilm_pair
    with pytest.raises(ferrotune.FerrotuneError):
        ft(_texts(), **options)


@pytest.mark.parametrize("family", FAMILIES)
def test_bad_padding_side_without_padding(tokenizer_pairs, family):
    """transformers only looks at ``padding_side`` when it pads: without padding it returns its normal output.
    Accept either that output or an early ValueError, nothing else."""
    ft, hf = tokenizer_pairs(family)
    hf_out = hf(_texts(), padding_side="middle")
    try:
        ft_out = ft(_texts(), padding_side="middle")
    except ValueError:
        return
    assert dict(ft_out) == dict(hf_out)


@pytest.mark.parametrize("options", BAD_OPTIONS[:2] + [dict(padding=True, padding_side="middle")], ids=_option_id)
def test_pad_unknown_option_values(minilm_pair, options):
    ft, hf = minilm_pair
    features = [dict(hf(text)) for text in _texts()]
    options = {k: v for k, v in options.items() if k != "truncation"} or dict(padding="bogus")
    with pytest.raises(ValueError):
        hf.pad([dict(f) for f in features], **options)
    with pytest.raises(ValueError):
        ft.pad([dict(f) for f in features], **options)


# --------------------------------------------------------------------------------------------------
# Lengths that cannot be honoured
# --------------------------------------------------------------------------------------------------


def _check_too_small(ft, hf, first, second, truncation, max_length):
    """A max_length below the special tokens is refused (a documented difference: transformers' backend then
    silently stops truncating and returns rows longer than max_length); any other length behaves as transformers."""
    if max_length < ft.num_special_tokens_to_add(pair=second is not None):
        with pytest.raises(ferrotune.InvalidArgumentError, match="too small"):
            ft(first, second, truncation=truncation, max_length=max_length)
        untruncated = hf(first, second, truncation=truncation, max_length=max_length)["input_ids"]
        assert any(len(row) > max_length for row in untruncated), "transformers now truncates: revisit this guard"
    else:
        compare_call(ft, hf, first, second, truncation=truncation, max_length=max_length)


@pytest.mark.parametrize("max_length", [0, 1, 2, 3])
@pytest.mark.parametrize("truncation", [True, "longest_first", "only_first", "only_second"])
@pytest.mark.parametrize("family", FAMILIES)
def test_max_length_too_small_for_special_tokens_pairs(tokenizer_pairs, family, truncation, max_length):
    ft, hf = tokenizer_pairs(family)
    first, second = mrpc_pairs(4)
    _check_too_small(ft, hf, first, second, truncation, max_length)


@pytest.mark.parametrize("max_length", [0, 1, 2])
@pytest.mark.parametrize("truncation", [True, "longest_first", "only_first"])
@pytest.mark.parametrize("family", FAMILIES)
def test_max_length_too_small_for_special_tokens_singles(tokenizer_pairs, family, truncation, max_length):
    ft, hf = tokenizer_pairs(family)
    _check_too_small(ft, hf, _texts(), None, truncation, max_length)


@pytest.mark.parametrize("family", FAMILIES)
def test_only_second_without_pair(tokenizer_pairs, family):
    """transformers' backend refuses ``only_second`` on single sequences that need truncating."""
    ft, hf = tokenizer_pairs(family)
    assert compare_call(ft, hf, _texts(), truncation="only_second", max_length=4) is None


@pytest.mark.parametrize("return_tensors", [None, "np", "pt"])
def test_padding_max_length_without_known_length(gpt2_pad_pair, return_tensors):
    """GPT-2's model_max_length is a huge sentinel: transformers then does not pad; ferrotune must agree."""
    ft, hf = gpt2_pad_pair
    compare_call(ft, hf, _texts(), padding="max_length", return_tensors=return_tensors)
    compare_call(ft, hf, _texts()[:1], padding="max_length", return_tensors=return_tensors)


@pytest.mark.parametrize("return_tensors", ["np", "pt"])
@pytest.mark.parametrize("family", FAMILIES)
def test_tensors_from_ragged_rows(tokenizer_pairs, family, return_tensors):
    """Tensors without padding: transformers raises for "pt" and returns object arrays for "np"."""
    ft, hf = tokenizer_pairs(family)
    compare_call(ft, hf, _texts(), return_tensors=return_tensors)
    first, second = mrpc_pairs(6)
    compare_call(ft, hf, first, second, return_tensors=return_tensors)


# --------------------------------------------------------------------------------------------------
# GPT-2 has no pad token
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [dict(padding=True), dict(padding="longest"), dict(padding="max_length", max_length=16, truncation=True)],
    ids=_option_id,
)
def test_gpt2_padding_without_pad_token(gpt2_pair, options):
    ft, hf = gpt2_pair
    with pytest.raises(ValueError):
        hf(_texts(), **options)
    with pytest.raises(ValueError):
        ft(_texts(), **options)


def test_gpt2_pad_without_pad_token(gpt2_pair):
    ft, hf = gpt2_pair
    features = [{"input_ids": ids} for ids in hf(_texts())["input_ids"]]
    with pytest.raises(ValueError):
        hf.pad([dict(f) for f in features])
    with pytest.raises(ValueError):
        ft.pad([dict(f) for f in features])


def test_gpt2_padding_after_setting_pad_token(gpt2_dir):
    ft, hf = ferrotune.Tokenizer.from_pretrained(str(gpt2_dir)), load_hf(gpt2_dir)
    with pytest.raises(ValueError):
        ft(_texts(), padding=True)
    ft.pad_token = ft.eos_token
    hf.pad_token = hf.eos_token
    for return_tensors in (None, "np", "pt", "arrow"):
        compare_call(ft, hf, _texts(), padding=True, return_tensors=return_tensors)
    features = [{"input_ids": ids} for ids in hf(_texts())["input_ids"]]
    compare_pad(ft, hf, [dict(f) for f in features], [dict(f) for f in features], return_tensors="np")


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------


def _assert_missing_file_error(exc: BaseException) -> None:
    assert isinstance(exc, ferrotune.FerrotuneError) or isinstance(exc, OSError), type(exc).__mro__


def test_from_file_missing(tmp_path):
    with pytest.raises(Exception) as info:
        ferrotune.Tokenizer.from_file(str(tmp_path / "no_such_tokenizer.json"))
    _assert_missing_file_error(info.value)


def test_from_pretrained_missing_folder(tmp_path):
    with pytest.raises(Exception) as info:
        ferrotune.Tokenizer.from_pretrained(str(tmp_path / "no_such_folder"))
    _assert_missing_file_error(info.value)


def test_from_pretrained_folder_without_tokenizer_json(tmp_path):
    with pytest.raises(Exception) as info:
        ferrotune.Tokenizer.from_pretrained(str(tmp_path))
    _assert_missing_file_error(info.value)


MALFORMED = {
    "not-json": "{this is not json",
    "empty": "",
    "json-array": "[1, 2, 3]",
    "wrong-schema": '{"version": "1.0", "model": {"type": "NoSuchModel"}}',
    "truncated": None,  # filled in from the real file
}


@pytest.mark.parametrize("kind", list(MALFORMED))
def test_from_file_malformed(tmp_path, minilm_dir, kind):
    content = MALFORMED[kind]
    if content is None:
        content = (minilm_dir / "tokenizer.json").read_text(encoding="utf-8")[:5000]
    path = tmp_path / "tokenizer.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ferrotune.FerrotuneError) as info:
        ferrotune.Tokenizer.from_file(str(path))
    assert isinstance(info.value, ValueError)


def test_from_pretrained_malformed(tmp_path, minilm_dir):
    for path in minilm_dir.iterdir():
        if path.is_file() and path.suffix in {".json", ".txt"}:
            shutil.copy(path, tmp_path / path.name)
    (tmp_path / "tokenizer.json").write_text("{this is not json", encoding="utf-8")
    with pytest.raises(ferrotune.FerrotuneError) as info:
        ferrotune.Tokenizer.from_pretrained(str(tmp_path))
    assert isinstance(info.value, ValueError)


def test_from_transformers_rejects_non_tokenizer():
    with pytest.raises((TypeError, ValueError)):
        ferrotune.Tokenizer.from_transformers(object())
