"""Property tests: on arbitrary Unicode text ferrotune's output equals transformers' output."""

from __future__ import annotations

import ferrotune  # noqa: F401 - the package under test must import
import pytest
from conftest import compare_call
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FAMILIES = ["minilm", "gpt2_pad"]

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

WHITESPACE = " \t\n\r\x0b\x0c\x85\xa0\u1680\u2000\u2009\u200b\u2028\u2029\u202f\u3000\ufeff"

texts = st.one_of(
    st.text(),
    st.text(max_size=0),
    st.text(alphabet=WHITESPACE),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=400),
    st.text(alphabet="abcdefghij ,.!'\"-éüß日本🤗\u0301", min_size=1, max_size=200),
)
batches = st.lists(texts, min_size=1, max_size=8)
pair_batches = st.integers(min_value=1, max_value=6).flatmap(
    lambda n: st.tuples(st.lists(texts, min_size=n, max_size=n), st.lists(texts, min_size=n, max_size=n))
)

PADDED = dict(padding=True, truncation=True, max_length=64, return_offsets_mapping=True)


@pytest.mark.parametrize("family", FAMILIES)
@SETTINGS
@given(text=texts)
def test_single_text(tokenizer_pairs, family, text):
    ft, hf = tokenizer_pairs(family)
    compare_call(ft, hf, text)
    compare_call(ft, hf, text, **PADDED)


@pytest.mark.parametrize("family", FAMILIES)
@SETTINGS
@given(batch=batches)
def test_batch_of_texts(tokenizer_pairs, family, batch):
    ft, hf = tokenizer_pairs(family)
    compare_call(ft, hf, batch)
    compare_call(ft, hf, batch, **PADDED)


@pytest.mark.parametrize("family", FAMILIES)
@SETTINGS
@given(text=texts, pair=texts)
def test_single_pair(tokenizer_pairs, family, text, pair):
    ft, hf = tokenizer_pairs(family)
    compare_call(ft, hf, text, pair)
    compare_call(ft, hf, text, pair, **PADDED)


@pytest.mark.parametrize("family", FAMILIES)
@SETTINGS
@given(pairs=pair_batches)
def test_batch_of_pairs(tokenizer_pairs, family, pairs):
    ft, hf = tokenizer_pairs(family)
    first, second = pairs
    compare_call(ft, hf, first, second)
    compare_call(ft, hf, first, second, **PADDED)


@pytest.mark.parametrize("family", FAMILIES)
@SETTINGS
@given(batch=batches)
def test_decode_round_trip_matches(tokenizer_pairs, family, batch):
    ft, hf = tokenizer_pairs(family)
    ids = hf(batch)["input_ids"]
    assert ft.batch_decode(ids, skip_special_tokens=True) == hf.batch_decode(ids, skip_special_tokens=True)
    assert ft.batch_decode(ids) == hf.batch_decode(ids)


@pytest.mark.parametrize("family", FAMILIES)
@SETTINGS
@given(text=texts)
def test_tokenize_matches(tokenizer_pairs, family, text):
    ft, hf = tokenizer_pairs(family)
    assert ft.tokenize(text) == hf.tokenize(text)
