"""``text_target`` / ``text_pair_target`` in ``Tokenizer.__call__`` against transformers 5.23 on Tatoeba English-French
pairs: MiniLM (BERT WordPiece), the T5-small Unigram tokenizer (a seq2seq tokenizer on the general engine path) and
GPT-2 (byte-level BPE, padded with its end-of-text token). Targets alone return the targets' encoding; with inputs,
the targets' ``input_ids`` become ``labels``; padding, truncation and ``max_length`` (or ``max_target_length``)
apply to both."""

from __future__ import annotations

import functools

import pytest
from conftest import RETURN_TENSORS, _require_file, compare_call, load_pair
from ferrotune.errors import InvalidArgumentError, InvalidInputError

T5_DIR = "tokenizers/t5-small"


@functools.cache
def _tatoeba(n: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``n`` English-French pairs spread over Tatoeba's file (short ones first, long ones last)."""
    path = _require_file("translation/fra-eng/fra.txt")
    with open(path, encoding="utf-8") as fh:
        lines = [line.rstrip("\n").split("\t") for line in fh]
    step = max(1, len(lines) // n)
    picked = [lines[i] for i in range(0, len(lines), step)][:n]
    return tuple(row[0] for row in picked), tuple(row[1] for row in picked)


@functools.cache
def _pair(family: str):
    if family == "minilm":
        from conftest import require_minilm_dir

        return load_pair(require_minilm_dir())
    if family == "gpt2":  # a causal LM's tokenizer, padded with its end-of-text token as fine-tuning sets it up
        from conftest import require_gpt2_dir

        return load_pair(require_gpt2_dir(), pad_with_eos=True)
    t5 = _require_file(T5_DIR + "/tokenizer.json").parent
    return load_pair(t5)


FAMILIES = ["minilm", "t5", "gpt2"]
OPTIONS = [
    {},
    {"padding": True},
    {"padding": "max_length", "max_length": 24},
    {"truncation": True, "max_length": 8},
    {"truncation": True, "max_length": 8, "padding": True},
    {"max_length": 6},
    {"truncation": True, "max_length": 16, "max_target_length": 5, "padding": "max_length"},
    {"padding": True, "max_target_length": 5},
    {"padding": True, "pad_to_multiple_of": 8, "return_length": True, "return_special_tokens_mask": True},
    {"add_special_tokens": False, "padding": "longest", "padding_side": "left"},
]


def _compare(ft, hf, text, text_target, text_pair_target=None, **options):
    kwargs = dict(options, text_target=text_target)
    if text_pair_target is not None:
        kwargs["text_pair_target"] = text_pair_target
    if options.get("return_tensors") == "arrow":
        # compare_call batches ``text`` for transformers' lists; the targets are batches here already
        assert text is None or not isinstance(text, str)
    return compare_call(ft, hf, text, **kwargs)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("options", OPTIONS, ids=repr)
def test_batches_with_targets_become_labels(family, options):
    ft, hf = _pair(family)
    english, french = _tatoeba(24)
    result = _compare(ft, hf, list(english), list(french), **options)
    assert result is not None
    got, expected = result
    assert "labels" in got and got["labels"] == expected["labels"]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("options", OPTIONS, ids=repr)
def test_targets_alone_return_their_encoding(family, options):
    ft, hf = _pair(family)
    _, french = _tatoeba(24)
    result = compare_call(ft, hf, None, text_target=list(french), **options)
    assert result is not None and "labels" not in result[0]
    result = compare_call(ft, hf, None, text_target=french[-1], **options)
    assert result is not None and "labels" not in result[0]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("return_tensors", RETURN_TENSORS)
@pytest.mark.parametrize(
    "options",
    [{"padding": True}, {"padding": True, "truncation": True, "max_length": 7}, {"padding": "max_length"}],
    ids=repr,
)
def test_return_types(family, return_tensors, options):
    ft, hf = _pair(family)
    english, french = _tatoeba(16)
    _compare(ft, hf, list(english), list(french), return_tensors=return_tensors, **options)
    compare_call(ft, hf, None, text_target=list(french), return_tensors=return_tensors, **options)
    if return_tensors != "arrow":
        _compare(ft, hf, english[-1], french[-1], return_tensors=return_tensors, **options)
        compare_call(ft, hf, None, text_target=french[-1], return_tensors=return_tensors, **options)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("return_tensors", [None, "np", "pt"])
def test_unpadded_tensors_of_ragged_rows_fail_as_in_transformers(family, return_tensors):
    ft, hf = _pair(family)
    english, french = _tatoeba(8)
    _compare(ft, hf, list(english), list(french), return_tensors=return_tensors)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(
    "options",
    [{}, {"padding": True}, {"truncation": "only_second", "max_length": 12, "padding": True}, {"max_length": 10}],
    ids=repr,
)
def test_pairs_of_targets(family, options):
    ft, hf = _pair(family)
    english, french = _tatoeba(12)
    _compare(ft, hf, list(english), list(french), text_pair_target=list(english), **options)
    compare_call(ft, hf, list(english), list(french), text_target=list(french), text_pair_target=list(english))
    _compare(ft, hf, english[-1], french[-1], text_pair_target=english[-2], **options)


@pytest.mark.parametrize("family", FAMILIES)
def test_single_text_and_target(family):
    ft, hf = _pair(family)
    english, french = _tatoeba(40)
    for source, target in zip(english, french):
        got, expected = _compare(ft, hf, source, target)
        assert got["labels"] == expected["labels"]
    # positional, as transformers' signature allows
    assert dict(ft(english[0], None, french[0])) == dict(hf(english[0], None, french[0]))


@pytest.mark.parametrize("family", FAMILIES)
def test_split_words_targets(family):
    ft, hf = _pair(family)
    english, french = _tatoeba(12)
    words, target_words = [s.split() for s in english], [s.split() for s in french]
    _compare(ft, hf, words, target_words, is_split_into_words=True, padding=True)
    _compare(ft, hf, words[-1], target_words[-1], is_split_into_words=True)


@pytest.mark.parametrize("family", FAMILIES)
def test_overflowing_targets(family):
    ft, hf = _pair(family)
    english, french = _tatoeba(6)
    options = {"truncation": True, "max_length": 6, "stride": 2, "return_overflowing_tokens": True}
    _compare(ft, hf, list(english), list(french), **options)
    compare_call(ft, hf, None, text_target=list(french), **options)


def test_targets_through_tokenizer_kwargs():
    """As transformers 5.23: ``max_target_length`` counts as a keyword argument, not inside ``tokenizer_kwargs``."""
    ft, hf = _pair("t5")
    english, french = _tatoeba(6)
    _compare(ft, hf, list(english), list(french), tokenizer_kwargs={"padding": True}, max_target_length=3)
    options = {"tokenizer_kwargs": {"padding": True, "max_target_length": 4, "truncation": True}}
    _compare(ft, hf, list(english), list(french), **options)


def test_alignment_methods_describe_the_inputs():
    ft, hf = _pair("minilm")
    english, french = _tatoeba(6)
    got, expected = _compare(ft, hf, list(english), list(french), padding=True)
    for row in range(len(english)):
        assert got.word_ids(row) == expected.word_ids(row)
        assert got.tokens(row) == expected.tokens(row)


def test_neither_text_nor_target_is_refused():
    ft, hf = _pair("minilm")
    with pytest.raises(ValueError, match="text_target"):
        hf()
    with pytest.raises(InvalidArgumentError, match="text_target"):
        ft()
    with pytest.raises(InvalidArgumentError, match="text_target"):
        ft(text_pair="a")


def test_arrow_labels_need_one_row_per_input_row():
    ft, _ = _pair("minilm")
    english, french = _tatoeba(4)
    batch = ft(list(english), text_target=list(french), return_tensors="arrow", padding=True)
    assert batch.column_names[-1] == "labels"
    assert batch.column("labels").to_pylist() == ft(list(french), padding=True)["input_ids"]
    with pytest.raises(InvalidInputError, match="labels"):
        ft(
            list(english),
            text_target=list(french),
            return_tensors="arrow",
            truncation=True,
            max_length=6,
            max_target_length=3,
            return_overflowing_tokens=True,
        )
