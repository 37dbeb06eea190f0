"""``is_split_into_words``, batches of ``(text, pair)`` tuples and the ``BatchEncoding`` alignment methods
(``word_ids``, ``sequence_ids``, ``tokens``, ``token_to_word``, ``word_to_tokens``, ``char_to_token``, ...),
against transformers' fast tokenizers on real data: CoNLL-2003 sentences (pre-split words) and SQuAD dev
questions and contexts, windowed as the course's QA preprocessing does."""

from __future__ import annotations

import functools
import json
import pickle
import shutil

import ferrotune
import pytest
from conftest import (
    RETURN_TENSORS,
    _require_file,
    compare_call,
    load_pair,
    mrpc_pairs,
)
from ferrotune.errors import InputTypeError, InvalidArgumentError

# --------------------------------------------------------------------------------------------------
# Data


@functools.cache
def _conll_sentences(n: int) -> tuple[tuple[str, ...], ...]:
    """The first ``n`` sentences (lists of words) of CoNLL-2003's validation split."""
    path = _require_file("conll2003/valid.txt")
    sentences: list[tuple[str, ...]] = []
    words: list[str] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line or line.startswith("-DOCSTART-"):
                if words:
                    sentences.append(tuple(words))
                    words = []
                    if len(sentences) >= n:
                        break
                continue
            words.append(line.split(" ")[0])
    return tuple(sentences)


def conll_sentences(n: int) -> list[list[str]]:
    return [list(words) for words in _conll_sentences(n)]


@functools.cache
def _squad(n: int) -> tuple[tuple[str, str], ...]:
    path = _require_file("squad/dev-v1.1.json")
    with open(path, encoding="utf-8") as fh:
        articles = json.load(fh)["data"]
    out = []
    for article in articles:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                out.append((qa["question"], paragraph["context"]))
                if len(out) >= n:
                    return tuple(out)
    return tuple(out)


def squad(n: int) -> tuple[list[str], list[str]]:
    """``(questions, contexts)`` of the first ``n`` SQuAD dev questions (one per question, contexts repeat)."""
    pairs = _squad(n)
    return [q for q, _ in pairs], [c for _, c in pairs]


# --------------------------------------------------------------------------------------------------
# Tokenizers


@pytest.fixture(scope="session")
def gpt2_prefix_pair(gpt2_dir, tmp_path_factory):
    """GPT-2 loaded with ``add_prefix_space=True`` (what transformers needs for pre-split words), padding with
    its end-of-text token."""
    folder = tmp_path_factory.mktemp("gpt2-prefix")
    for name in ("tokenizer.json", "vocab.json", "merges.txt", "config.json"):
        shutil.copy(gpt2_dir / name, folder / name)
    config = {"tokenizer_class": "GPT2Tokenizer", "add_prefix_space": True, "model_max_length": 1024}
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    ft, hf = load_pair(folder, pad_with_eos=True)
    if not getattr(hf, "add_prefix_space", False):
        pytest.skip("transformers did not load GPT-2 with add_prefix_space=True from tokenizer_config.json")
    return ft, hf


@pytest.fixture(params=["minilm", "gpt2_prefix"])
def family(request):
    return request.getfixturevalue(f"{request.param}_pair")


# --------------------------------------------------------------------------------------------------
# Alignment comparison


def _rows(hf_out) -> int:
    return len(hf_out.encodings)


def assert_same_alignment(ft_out, hf_out, *, pairs: bool) -> None:
    """Every alignment method gives transformers' answer on every row, token, word and character."""
    rows = _rows(hf_out)
    sequences = (0, 1) if pairs else (0,)
    for row in range(rows):
        word_ids = hf_out.word_ids(row)
        assert ft_out.word_ids(row) == word_ids, f"word_ids({row})"
        assert ft_out.words(row) == word_ids, f"words({row})"
        assert ft_out.sequence_ids(row) == hf_out.sequence_ids(row), f"sequence_ids({row})"
        assert ft_out.tokens(row) == hf_out.tokens(row), f"tokens({row})"
        for token in range(len(word_ids) + 1):
            args = (row, token)
            assert ft_out.token_to_word(*args) == hf_out.token_to_word(*args), f"token_to_word{args}"
            assert ft_out.token_to_sequence(*args) == hf_out.token_to_sequence(*args), f"token_to_sequence{args}"
            assert ft_out.token_to_chars(*args) == hf_out.token_to_chars(*args), f"token_to_chars{args}"
        words = max((w for w in word_ids if w is not None), default=-1) + 2
        for sequence in sequences:
            for word in range(words):
                args = (row, word)
                assert ft_out.word_to_tokens(*args, sequence_index=sequence) == hf_out.word_to_tokens(
                    *args, sequence_index=sequence
                ), f"word_to_tokens{args}, sequence {sequence}"
                try:
                    hf_chars = hf_out.word_to_chars(*args, sequence_index=sequence)
                except TypeError:  # transformers 5 fails on a word with no tokens; ferrotune answers None
                    hf_chars = None
                assert ft_out.word_to_chars(*args, sequence_index=sequence) == hf_chars, (
                    f"word_to_chars{args}, sequence {sequence}"
                )
            chars = max((end for start, end in hf_out[row].offsets), default=0) + 2
            for char in range(chars):
                args = (row, char)
                assert ft_out.char_to_token(*args, sequence_index=sequence) == hf_out.char_to_token(
                    *args, sequence_index=sequence
                ), f"char_to_token{args}, sequence {sequence}"
                assert ft_out.char_to_word(*args, sequence_index=sequence) == hf_out.char_to_word(
                    *args, sequence_index=sequence
                ), f"char_to_word{args}, sequence {sequence}"
    if rows == 1:  # the one-argument forms address row 0
        assert ft_out.token_to_word(1) == hf_out.token_to_word(1)
        assert ft_out.word_to_tokens(0) == hf_out.word_to_tokens(0)
        assert ft_out.char_to_token(0) == hf_out.char_to_token(0)
        assert ft_out.token_to_chars(1) == hf_out.token_to_chars(1)


# --------------------------------------------------------------------------------------------------
# is_split_into_words


SPLIT_CASES = {
    "plain": {},
    "truncate": {"truncation": True, "max_length": 12},
    "pad-longest": {"padding": True},
    "pad-left-max": {"padding": "max_length", "max_length": 48, "truncation": True, "padding_side": "left"},
    "offsets": {"return_offsets_mapping": True, "return_special_tokens_mask": True, "return_length": True},
    "overflow": {
        "truncation": True,
        "max_length": 10,
        "stride": 3,
        "return_overflowing_tokens": True,
        "return_offsets_mapping": True,
    },
}


@pytest.mark.parametrize("case", sorted(SPLIT_CASES))
@pytest.mark.parametrize("return_tensors", RETURN_TENSORS)
def test_split_words_batch(family, case, return_tensors):
    ft, hf = family
    kwargs = dict(SPLIT_CASES[case], is_split_into_words=True, return_tensors=return_tensors)
    if return_tensors == "pt" and not kwargs.get("padding"):
        kwargs.update(padding=True)
    if kwargs.get("padding") and hf.pad_token is None:
        pytest.skip("GPT-2 has no pad token")
    sentences = conll_sentences(40)
    result = compare_call(ft, hf, sentences, **kwargs)
    assert result is not None
    if return_tensors != "arrow":
        ft_out, hf_out = result
        assert_same_alignment(ft_out, hf_out, pairs=False)


@pytest.mark.parametrize("case", sorted(SPLIT_CASES))
def test_split_words_pairs(family, case):
    ft, hf = family
    kwargs = dict(SPLIT_CASES[case], is_split_into_words=True)
    if kwargs.get("padding") and hf.pad_token is None:
        pytest.skip("GPT-2 has no pad token")
    if case == "overflow":  # a pair needs room for both sequences' windows
        kwargs.update(max_length=28, stride=4, truncation="longest_first")
    sentences = conll_sentences(41)
    firsts, seconds = sentences[:-1], sentences[1:]
    ft_out, hf_out = compare_call(ft, hf, firsts, seconds, **kwargs)
    assert_same_alignment(ft_out, hf_out, pairs=True)
    # the same pairs as a list of (words, words) tuples
    ft_tuples, hf_tuples = compare_call(ft, hf, list(zip(firsts, seconds)), **kwargs)
    assert dict(ft_tuples) == dict(ft_out)
    assert_same_alignment(ft_tuples, hf_tuples, pairs=True)


@pytest.mark.parametrize("case", sorted(SPLIT_CASES))
@pytest.mark.parametrize("return_tensors", [None, "np", "pt"])
def test_split_words_single(family, case, return_tensors):
    ft, hf = family
    kwargs = dict(SPLIT_CASES[case], is_split_into_words=True, return_tensors=return_tensors)
    if kwargs.get("padding") and hf.pad_token is None:
        pytest.skip("GPT-2 has no pad token")
    if return_tensors == "pt" and not kwargs.get("padding"):
        kwargs.update(padding=True)  # overflow windows of several lengths make no tensor
    words = max(conll_sentences(60), key=len)
    ft_out, hf_out = compare_call(ft, hf, words, **kwargs)
    assert_same_alignment(ft_out, hf_out, pairs=False)
    if case == "overflow":  # a pair needs room for both sequences' windows
        kwargs.update(max_length=28, stride=4, truncation="longest_first")
    ft_out, hf_out = compare_call(ft, hf, words, words[:5], **kwargs)
    assert_same_alignment(ft_out, hf_out, pairs=True)


def test_split_words_edge_cases(minilm_pair):
    ft, hf = minilm_pair
    for words in ([], [""], ["", "a", ""], ["New-York", "isn't", "ZÜRICH", "[SEP]", "  spaced  "]):
        ft_out, hf_out = compare_call(ft, hf, words, is_split_into_words=True, return_offsets_mapping=True)
        assert_same_alignment(ft_out, hf_out, pairs=False)
    compare_call(ft, hf, [[], ["a"], [""]], is_split_into_words=True)
    # an empty pair is no pair, as in transformers
    compare_call(ft, hf, ["a", "b"], [], is_split_into_words=True)


def test_split_words_general_engine_matches(minilm_dir):
    """The native encoder's ids for split words equal the tokenizers crate's (forced with engine="general")."""
    fast = ferrotune.Tokenizer.from_pretrained(minilm_dir)
    general = ferrotune.Tokenizer.from_pretrained(minilm_dir, engine="general")
    assert fast.encoder == "fast-wordpiece"
    sentences = conll_sentences(200)
    for kwargs in ({}, {"return_offsets_mapping": True}, {"truncation": True, "max_length": 16}):
        a = fast(sentences, is_split_into_words=True, **kwargs)
        b = general(sentences, is_split_into_words=True, **kwargs)
        assert dict(a) == dict(b)


def test_non_string_word_names_the_example(minilm_pair):
    ft, hf = minilm_pair
    sentences = conll_sentences(5)
    sentences[3] = [*sentences[3][:2], 7, *sentences[3][2:]]
    with pytest.raises(TypeError):
        hf(sentences, is_split_into_words=True)
    with pytest.raises(InputTypeError, match=r"example 3: word 2"):
        ft(sentences, is_split_into_words=True)
    with pytest.raises(InputTypeError, match=r"example 0"):
        ft(["a", None], is_split_into_words=True)
    with pytest.raises(InputTypeError):
        ft("not split", is_split_into_words=True)


# --------------------------------------------------------------------------------------------------
# Batches of (text, pair) tuples


@pytest.mark.parametrize("return_tensors", RETURN_TENSORS)
def test_tuple_pairs(minilm_pair, return_tensors):
    ft, hf = minilm_pair
    firsts, seconds = mrpc_pairs(32)
    batch = list(zip(firsts, seconds))
    kwargs = {"padding": True, "truncation": True, "max_length": 40, "return_tensors": return_tensors}
    if return_tensors == "arrow":
        # compare_call batches the text for transformers; a list of tuples already is a batch
        ft_out = ft(batch, **kwargs)
        hf_out = hf(batch, **dict(kwargs, return_tensors=None))
        assert ft_out.column("input_ids").to_pylist() == hf_out["input_ids"]
        return
    ft_out, hf_out = compare_call(ft, hf, batch, **kwargs)
    if return_tensors is None:
        assert dict(ft_out) == dict(ft(firsts, seconds, **kwargs))
        assert_same_alignment(ft_out, hf_out, pairs=True)


def test_tuple_pairs_bad_items(minilm_pair):
    ft, hf = minilm_pair
    with pytest.raises(TypeError):
        hf([("a", "b", "c")])
    with pytest.raises(InputTypeError, match="example 0"):
        ft([("a", "b", "c")])
    with pytest.raises(InputTypeError, match="example 1"):
        ft([("a", "b"), "c"])
    with pytest.raises(InputTypeError):
        ft([("a", 3)])


# --------------------------------------------------------------------------------------------------
# Plain texts and QA windows


def test_text_alignment(family):
    ft, hf = family
    firsts, seconds = mrpc_pairs(24)
    ft_out, hf_out = compare_call(ft, hf, firsts, return_offsets_mapping=True)
    assert_same_alignment(ft_out, hf_out, pairs=False)
    ft_out, hf_out = compare_call(ft, hf, firsts, seconds, truncation=True, max_length=32)
    assert_same_alignment(ft_out, hf_out, pairs=True)
    ft_out, hf_out = compare_call(ft, hf, firsts[0], seconds[0])
    assert_same_alignment(ft_out, hf_out, pairs=True)


@pytest.mark.parametrize("padding", [False, "max_length"])
def test_squad_windows(minilm_pair, padding):
    """The course's QA preprocessing call: identical windows, offsets, sample mapping and sequence ids."""
    ft, hf = minilm_pair
    questions, contexts = squad(48)
    questions = [q.strip() for q in questions]
    kwargs = {
        "max_length": 384,
        "truncation": "only_second",
        "stride": 128,
        "return_overflowing_tokens": True,
        "return_offsets_mapping": True,
        "padding": padding,
    }
    ft_out, hf_out = compare_call(ft, hf, questions, contexts, **kwargs)
    assert_same_alignment(ft_out, hf_out, pairs=True)
    # short windows, so that contexts overflow into many of them
    ft_out, hf_out = compare_call(ft, hf, questions[:12], contexts[:12], **dict(kwargs, max_length=64, stride=24))
    assert len(hf_out["input_ids"]) > 24
    assert_same_alignment(ft_out, hf_out, pairs=True)


def test_squad_course_preprocessing(minilm_pair):
    """The course's ``preprocess_training_examples`` gives the same start/end positions."""
    ft, hf = minilm_pair
    path = _require_file("squad/dev-v1.1.json")
    with open(path, encoding="utf-8") as fh:
        paragraphs = json.load(fh)["data"][0]["paragraphs"][:6]
    questions, contexts, answers = [], [], []
    for paragraph in paragraphs:
        for qa in paragraph["qas"]:
            questions.append(qa["question"].strip())
            contexts.append(paragraph["context"])
            answers.append(qa["answers"][0])

    def preprocess(tokenizer):
        inputs = tokenizer(
            questions,
            contexts,
            max_length=96,
            truncation="only_second",
            stride=32,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding="max_length",
        )
        offset_mapping = inputs.pop("offset_mapping")
        sample_map = inputs.pop("overflow_to_sample_mapping")
        starts, ends = [], []
        for i, offset in enumerate(offset_mapping):
            answer = answers[sample_map[i]]
            start_char = answer["answer_start"]
            end_char = start_char + len(answer["text"])
            sequence_ids = inputs.sequence_ids(i)
            idx = 0
            while sequence_ids[idx] != 1:
                idx += 1
            context_start = idx
            while sequence_ids[idx] == 1:
                idx += 1
            context_end = idx - 1
            if offset[context_start][0] > start_char or offset[context_end][1] < end_char:
                starts.append(0)
                ends.append(0)
            else:
                idx = context_start
                while idx <= context_end and offset[idx][0] <= start_char:
                    idx += 1
                starts.append(idx - 1)
                idx = context_end
                while idx >= context_start and offset[idx][1] >= end_char:
                    idx -= 1
                ends.append(idx + 1)
        return starts, ends, inputs["input_ids"]

    assert preprocess(ft) == preprocess(hf)


def test_course_label_alignment(minilm_pair):
    """The course's NER ``align_labels_with_tokens`` over ``word_ids(i)`` gives the same labels."""
    ft, hf = minilm_pair
    sentences = conll_sentences(64)
    tags = [[i % 9 for i in range(len(words))] for words in sentences]

    def align(tokenizer):
        inputs = tokenizer(sentences, truncation=True, is_split_into_words=True)
        labels = []
        for i, sentence_tags in enumerate(tags):
            previous = None
            row = []
            for word in inputs.word_ids(i):
                if word is None:
                    row.append(-100)
                elif word != previous:
                    row.append(sentence_tags[word])
                else:
                    label = sentence_tags[word]
                    row.append(label + 1 if label % 2 == 1 else label)
                previous = word
            labels.append(row)
        return labels, inputs["input_ids"]

    assert align(ft) == align(hf)


# --------------------------------------------------------------------------------------------------
# Laziness, pickling, outputs without a tokenizer call


def test_alignment_is_lazy_and_pickles(minilm_pair):
    ft, _ = minilm_pair
    out = ft(["Hello world", "a b c"], padding=True)
    assert out._alignment is None  # nothing computed until asked for
    first = out.word_ids(1)
    assert out._alignment is not None
    restored = pickle.loads(pickle.dumps(out))
    assert restored.word_ids(1) == first
    assert dict(restored) == dict(out)
    unasked = pickle.loads(pickle.dumps(ft(["Hello world"])))
    with pytest.raises(InvalidArgumentError, match="word_ids"):
        unasked.word_ids()
    padded = ft.pad({"input_ids": [[1, 2], [3]]})
    with pytest.raises(ValueError, match="sequence_ids"):
        padded.sequence_ids(0)
    with pytest.raises(IndexError):
        out.word_ids(2)


# --------------------------------------------------------------------------------------------------
# Word and sequence ids from the native encoders (the direct path: no offsets, no overflow windows)

NATIVE_CASES = {
    "plain": {},
    "no-specials": {"add_special_tokens": False},
    "truncate": {"truncation": True, "max_length": 9},
    "truncate-left": {"truncation": True, "max_length": 9, "truncation_side": "left"},
    "pad-left-max": {"padding": "max_length", "max_length": 40, "truncation": True, "padding_side": "left"},
    "no-specials-truncate": {"add_special_tokens": False, "truncation": True, "max_length": 5, "padding": True},
}


def _with_options(ft, hf, options, call):
    """Calls ``call(kwargs)`` with ``truncation_side`` (a tokenizer attribute) set on both tokenizers."""
    kwargs = dict(options)
    side = kwargs.pop("truncation_side", None)
    saved = ft.truncation_side, hf.truncation_side
    if side is not None:
        ft.truncation_side = hf.truncation_side = side
    try:
        return call(kwargs)
    finally:
        ft.truncation_side, hf.truncation_side = saved


@pytest.mark.parametrize("case", sorted(NATIVE_CASES))
def test_native_alignment_singles_and_pairs(family, case):
    """Every alignment method on texts (with an added special token and non-ASCII) and pairs, on the path
    that takes word ids from the native encoder."""
    ft, hf = family
    assert ft.encoder in ("fast-wordpiece", "fast-bpe")
    firsts, seconds = mrpc_pairs(12)
    special = hf.all_special_tokens[0]
    firsts = [*firsts, f"Zürich {special} naïve café", "", "a"]
    seconds = [*seconds, "straße déjà-vu", "b", ""]

    def check(kwargs):
        ft_out, hf_out = compare_call(ft, hf, firsts, **kwargs)
        assert_same_alignment(ft_out, hf_out, pairs=False)
        if kwargs.get("truncation") and not kwargs.get("add_special_tokens", True):
            kwargs = {**kwargs, "truncation": "only_second", "max_length": 64}
        ft_out, hf_out = compare_call(ft, hf, firsts, seconds, **kwargs)
        assert_same_alignment(ft_out, hf_out, pairs=True)
        ft_out, hf_out = compare_call(ft, hf, firsts[-3], seconds[-3], **kwargs)
        assert_same_alignment(ft_out, hf_out, pairs=True)

    _with_options(ft, hf, NATIVE_CASES[case], check)


@pytest.mark.parametrize("case", sorted(NATIVE_CASES))
def test_native_alignment_split_words(family, case):
    ft, hf = family
    sentences = conll_sentences(16)

    def check(kwargs):
        ft_out, hf_out = compare_call(ft, hf, sentences, is_split_into_words=True, **kwargs)
        assert_same_alignment(ft_out, hf_out, pairs=False)
        ft_out, hf_out = compare_call(ft, hf, sentences[:8], sentences[8:], is_split_into_words=True, **kwargs)
        assert_same_alignment(ft_out, hf_out, pairs=True)
        ft_out, hf_out = compare_call(ft, hf, sentences[0], is_split_into_words=True, **kwargs)
        assert_same_alignment(ft_out, hf_out, pairs=False)

    _with_options(ft, hf, NATIVE_CASES[case], check)


def test_native_word_ids_equal_the_general_engine(minilm_dir):
    """On 500 CoNLL sentences (split words and joined texts, singles and pairs): the word and sequence ids of
    the native path equal the tokenizers crate's (engine="general")."""
    fast = ferrotune.Tokenizer.from_pretrained(minilm_dir)
    general = ferrotune.Tokenizer.from_pretrained(minilm_dir, engine="general")
    sentences = conll_sentences(500)
    texts = [" ".join(words) for words in sentences]
    calls = [
        ((sentences,), {"is_split_into_words": True, "truncation": True, "max_length": 24}),
        ((sentences[:250], sentences[250:]), {"is_split_into_words": True, "padding": True}),
        ((texts,), {}),
        ((texts[:250], texts[250:]), {"truncation": True, "max_length": 40, "padding_side": "left", "padding": True}),
    ]
    for args, kwargs in calls:
        a, b = fast(*args, **kwargs), general(*args, **kwargs)
        for row in range(len(a["input_ids"])):
            assert a.word_ids(row) == b.word_ids(row), (kwargs, row)
            assert a.sequence_ids(row) == b.sequence_ids(row), (kwargs, row)
            assert a.tokens(row) == b.tokens(row), (kwargs, row)


# --------------------------------------------------------------------------------------------------
# Pre-split words read from Arrow by the core (what training's token classification passes)


def test_words_from_arrow_equal_words_from_lists(minilm_dir):
    import pyarrow as pa

    tokenizer = ferrotune.Tokenizer.from_pretrained(minilm_dir)
    sentences = [["EU", "rejects", "German", "call"], [], ["Peter", "Blackburn", "🙂", "São", "Paulo"], ["a"] * 40]
    expected = tokenizer._encode_flat(sentences, max_length=16, is_split_into_words=True)
    for array in (
        pa.array(sentences, pa.list_(pa.string())),
        pa.array(sentences, pa.large_list(pa.large_string())),
        pa.array([["x"], *sentences, ["y"]], pa.list_(pa.string())).slice(1, len(sentences)),  # offsets into a slice
    ):
        got = tokenizer._encode_flat(array, max_length=16, is_split_into_words=True)
        assert set(got) == set(expected)
        for key in expected:
            assert got[key].tolist() == expected[key].tolist(), key
    with pytest.raises(InputTypeError, match="example 1 is null"):
        tokenizer._encode_flat(pa.array([["a"], None]), max_length=8, is_split_into_words=True)
    with pytest.raises(InputTypeError, match="a word of example 1 is null"):
        tokenizer._encode_flat(pa.array([["a"], ["b", None]]), max_length=8, is_split_into_words=True)
    # A slice whose values child has a null before the slice, and one inside it.
    sliced = pa.array([["x", None], ["a", "b"], ["c", None]], pa.list_(pa.string())).slice(1, 2)
    with pytest.raises(InputTypeError, match="a word of example 1 is null"):
        tokenizer._encode_flat(sliced, max_length=8, is_split_into_words=True)
    clean = pa.array([["x", None], ["a", "b"], ["c"]], pa.list_(pa.string())).slice(1, 2)
    got = tokenizer._encode_flat(clean, max_length=8, is_split_into_words=True)
    assert (
        got["input_ids"].tolist()
        == tokenizer._encode_flat([["a", "b"], ["c"]], max_length=8, is_split_into_words=True)["input_ids"].tolist()
    )
    with pytest.raises(InputTypeError, match="must hold words"):
        tokenizer._encode_flat(pa.array([[1, 2]]), max_length=8, is_split_into_words=True)
    with pytest.raises(InputTypeError, match="list of words per example"):
        tokenizer._encode_flat(pa.array(["a b"]), max_length=8, is_split_into_words=True)
