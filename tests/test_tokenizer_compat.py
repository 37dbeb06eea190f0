"""transformers 5.23 tokenizer API that its own test suites use, compared with ``AutoTokenizer`` on MiniLM (BERT
WordPiece, served by ferrotune's fast-wordpiece encoder) and GPT-2 (byte-level BPE, fast-bpe): ``encode``,
``add_tokens`` / ``add_special_tokens`` (and ``save_pretrained`` of the result), settable ``*_token_id``,
``extra_special_tokens`` / ``init_kwargs``, the over-length warning and unknown keyword arguments."""

from __future__ import annotations

import logging

import ferrotune
import numpy as np
import pytest
from ferrotune.errors import InvalidArgumentError

transformers = pytest.importorskip("transformers")

FAMILIES = ["minilm", "gpt2"]
TEXTS = [
    "Hello newtok and NEWTOK2 <ent> x<ent2>y <x> <y> hello",
    "The [MASK] sat on <ent>the mat.<ent2>",
    "no added token here, just words",
]
TOO_LONG = "Token indices sequence length is longer than the specified maximum sequence length"


@pytest.fixture
def folder(request, minilm_dir, gpt2_dir):
    return {"minilm": minilm_dir, "gpt2": gpt2_dir}[request.param]


def _pair(folder, pad: bool = False):
    ft, hf = ferrotune.Tokenizer.from_pretrained(folder), transformers.AutoTokenizer.from_pretrained(folder)
    if pad and hf.pad_token is None:  # GPT-2: pad with the end-of-text token, as the course does
        ft.pad_token = ft.eos_token
        hf.pad_token = hf.eos_token
    return ft, hf


def _add(tokenizer) -> list:
    """The additions of the course and of transformers' tests; what each call returns and the state after."""
    return [
        tokenizer.add_tokens(["newtok", "NEWTOK2", "hello", ""]),
        tokenizer.add_tokens("newtok"),
        tokenizer.add_special_tokens({"additional_special_tokens": ["<ent>", "<ent2>"], "pad_token": "<pad>"}),
        list(tokenizer.extra_special_tokens),
        tokenizer.add_special_tokens({"extra_special_tokens": ["<x>"]}, replace_extra_special_tokens=False),
        list(tokenizer.extra_special_tokens),
        tokenizer.add_special_tokens({"extra_special_tokens": ["<y>"]}),
        list(tokenizer.extra_special_tokens),
        len(tokenizer),
        tokenizer.vocab_size,
        tokenizer.pad_token,
        tokenizer.pad_token_id,
        list(tokenizer.all_special_tokens),
        list(tokenizer.all_special_ids),
    ]


def _encodings(tokenizer) -> list:
    out = [tokenizer(TEXTS, return_offsets_mapping=True)[key] for key in ("input_ids", "offset_mapping")]
    out[1] = [[tuple(span) for span in row] for row in out[1]]
    out.append(tokenizer(TEXTS[0], TEXTS[1])["input_ids"])
    out.append([tokenizer.tokenize(text) for text in TEXTS])
    out.append([tokenizer.decode(ids, skip_special_tokens=True) for ids in out[0]])
    return out


# ------------------------------------------------------------------------------------------------------------------
# 1. encode (encode_plus and batch_encode_plus are gone from transformers 5: ferrotune has none either)


@pytest.mark.parametrize("folder", FAMILIES, indirect=True)
def test_encode_matches_transformers(folder):
    ft, hf = _pair(folder, pad=True)
    cases = [
        (("Hello there",), {}),
        (("Hello there", "a pair"), {}),
        ((["one text", "and another, longer one"],), {}),
        ((["one text", "two"],), {"padding": True}),
        (("a long text " * 20,), {"truncation": True, "max_length": 8}),
        (("a long text " * 20,), {"max_length": 8, "stride": 2, "return_overflowing_tokens": True}),
        ((["pre", "split", "words"],), {"is_split_into_words": True}),
        (("no specials",), {"add_special_tokens": False}),
    ]
    for args, kwargs in cases:
        assert ft.encode(*args, **kwargs) == hf.encode(*args, **kwargs), (args, kwargs)
    assert ft.encode("Hello", return_tensors="np").tolist() == hf.encode("Hello", return_tensors="np").tolist()
    torch = pytest.importorskip("torch")
    assert torch.equal(
        ft.encode(["a", "b c"], padding=True, return_tensors="pt"),
        hf.encode(["a", "b c"], padding=True, return_tensors="pt"),
    )


def test_encode_plus_and_batch_encode_plus_exist_only_where_transformers_has_them(minilm_dir):
    ft, hf = _pair(minilm_dir)
    for name in ("encode", "encode_plus", "batch_encode_plus"):
        assert hasattr(ft, name) == hasattr(hf, name), name
    assert hasattr(ft, "encode")


# ------------------------------------------------------------------------------------------------------------------
# 2. add_tokens / add_special_tokens


@pytest.mark.parametrize("folder", FAMILIES, indirect=True)
def test_added_tokens_are_encoded_as_transformers(folder):
    ft, hf = _pair(folder)
    before = len(ft)
    assert _add(ft) == _add(hf)
    assert len(ft) == before + 7  # newtok, NEWTOK2, <pad>, <ent>, <ent2>, <x>, <y>; "hello" is in the vocabulary
    assert ft.get_vocab() == hf.get_vocab()
    assert ft.get_added_vocab() == hf.get_added_vocab()
    assert ft.convert_tokens_to_ids(["newtok", "<ent2>"]) == hf.convert_tokens_to_ids(["newtok", "<ent2>"])
    assert _encodings(ft) == _encodings(hf)
    # every return type and padding honour them too
    padded = ft(TEXTS, padding=True, return_tensors="np")
    assert padded["input_ids"].tolist() == hf(TEXTS, padding=True, return_tensors="np")["input_ids"].tolist()
    assert (padded["input_ids"] == ft.pad_token_id).any()


def test_added_tokens_keep_or_leave_the_native_encoders(minilm_dir, gpt2_dir):
    """Special unnormalized tokens keep fast-wordpiece; a normalized one needs the crate (the general path)."""
    ft, hf = _pair(minilm_dir)
    assert ft.encoder == "fast-wordpiece"
    ft.add_special_tokens({"additional_special_tokens": ["<ent>"]})
    hf.add_special_tokens({"additional_special_tokens": ["<ent>"]})
    assert ft.encoder == "fast-wordpiece"
    assert _encodings(ft) == _encodings(hf)
    ft.add_tokens(["NEWTOK2"])
    hf.add_tokens(["NEWTOK2"])
    assert ft.encoder == "general"
    assert _encodings(ft) == _encodings(hf)
    ft, hf = _pair(gpt2_dir)
    assert ft.encoder == "fast-bpe"
    _add(ft)
    _add(hf)
    assert ft.encoder == "fast-bpe"
    assert _encodings(ft) == _encodings(hf)


def test_added_token_objects_and_flags(minilm_dir, gpt2_dir):
    tokenizers = pytest.importorskip("tokenizers")
    for folder in (minilm_dir, gpt2_dir):
        ft, hf = _pair(folder)
        tokens = [
            tokenizers.AddedToken("<lstrip>", lstrip=True, special=False, normalized=False),
            tokenizers.AddedToken("Word", single_word=True),
        ]
        assert ft.add_tokens(tokens) == hf.add_tokens(tokens)
        assert ft.add_tokens(tokens) == hf.add_tokens(tokens) == 0  # the same tokens again: nothing added
        special = {"cls_token": tokenizers.AddedToken("<cls>", rstrip=True)}
        assert ft.add_special_tokens(special) == hf.add_special_tokens(special)
        assert ft.cls_token == hf.cls_token == "<cls>"
        texts = ["a  <lstrip>b Word Words <cls>  c", "Wordy <cls>"]
        assert ft(texts)["input_ids"] == hf(texts)["input_ids"]
        assert ft.get_vocab() == hf.get_vocab()


def test_add_special_tokens_refuses_what_transformers_refuses(minilm_dir):
    ft, _ = _pair(minilm_dir)
    with pytest.raises(ValueError, match="not a valid special token"):
        ft.add_special_tokens({"sentinel_token": "<s0>"})
    with pytest.raises(ValueError):
        ft.add_special_tokens({"extra_special_tokens": "<one>"})
    assert ft.add_special_tokens({}) == 0 and ft.add_tokens([]) == 0


@pytest.mark.parametrize("folder", FAMILIES, indirect=True)
def test_added_tokens_survive_save_pretrained(folder, tmp_path):
    ft, hf = _pair(folder)
    _add(ft)
    _add(hf)
    ft.save_pretrained(tmp_path / "ferrotune")
    hf.save_pretrained(tmp_path / "transformers")
    expected = _encodings(hf)
    for saved in ("ferrotune", "transformers"):
        reloaded_ft = ferrotune.Tokenizer.from_pretrained(tmp_path / saved)
        reloaded_hf = transformers.AutoTokenizer.from_pretrained(tmp_path / saved)
        assert _encodings(reloaded_ft) == expected, saved
        assert _encodings(reloaded_hf) == expected, saved
        assert reloaded_ft.extra_special_tokens == reloaded_hf.extra_special_tokens == ["<y>"], saved
        assert reloaded_ft.pad_token == reloaded_hf.pad_token == "<pad>", saved
        assert len(reloaded_ft) == len(reloaded_hf) == len(hf), saved


# ------------------------------------------------------------------------------------------------------------------
# 3. settable *_token_id, extra_special_tokens, init_kwargs


@pytest.mark.parametrize("folder", FAMILIES, indirect=True)
def test_token_ids_are_settable(folder):
    ft, hf = _pair(folder)
    for tokenizer in (ft, hf):
        tokenizer.pad_token_id = 0
        tokenizer.mask_token_id = 5
    assert (ft.pad_token, ft.pad_token_id, ft.mask_token, ft.mask_token_id) == (
        hf.pad_token,
        hf.pad_token_id,
        hf.mask_token,
        hf.mask_token_id,
    )
    assert ft.special_tokens_map == hf.special_tokens_map
    assert ft(["a", "b c d"], padding=True)["input_ids"] == hf(["a", "b c d"], padding=True)["input_ids"]
    ft.pad_token_id = np.int64(1)  # a NumPy id too
    assert ft.pad_token_id == 1
    for tokenizer in (ft, hf):
        tokenizer.pad_token_id = None
    assert ft.pad_token is None and hf.pad_token is None
    with pytest.raises(InvalidArgumentError, match="not in the vocabulary"):
        ft.pad_token_id = len(ft) + 10
    with pytest.raises(InvalidArgumentError):
        ft.pad_token_id = "0"


@pytest.mark.parametrize("folder", FAMILIES, indirect=True)
def test_extra_special_tokens_and_init_kwargs(folder):
    ft, hf = _pair(folder)
    assert ft.extra_special_tokens == hf.extra_special_tokens == []
    assert isinstance(ft.init_kwargs, dict)
    shared = {"model_max_length", "name_or_path"} & set(hf.init_kwargs)
    for key in shared:
        assert ft.init_kwargs[key] == hf.init_kwargs[key], key
    for key in ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"):
        if hf.init_kwargs.get(key) is not None:
            assert ft.init_kwargs[key] == str(hf.init_kwargs[key]), key
    for tokenizer in (ft, hf):
        tokenizer.add_special_tokens({"additional_special_tokens": ["<a>", "<b>"]})
        tokenizer.extra_special_tokens = ["<b>"]
    assert ft.extra_special_tokens == hf.extra_special_tokens
    assert ft.extra_special_tokens_ids == hf.extra_special_tokens_ids
    assert ft.all_special_tokens == hf.all_special_tokens
    assert ft.all_special_ids == hf.all_special_ids
    with pytest.raises(ValueError):
        ft.extra_special_tokens = "<b>"


# ------------------------------------------------------------------------------------------------------------------
# 4. the over-length warning


def _captured(tokenizer, *calls) -> list[str]:
    logger = logging.getLogger("transformers.tokenization_utils_base")
    records: list[str] = []

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Handler(logging.WARNING)
    logger.addHandler(handler)
    # Other tests call transformers.logging.set_verbosity_error(): warnings must reach the handler whatever ran before.
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        for args, kwargs in calls:
            tokenizer(*args, **kwargs)
    finally:
        logger.setLevel(level)
        logger.removeHandler(handler)
    return records


@pytest.mark.parametrize("folder", FAMILIES, indirect=True)
def test_over_length_warning_as_transformers(folder):
    long_text = "word " * 600
    scenarios = [
        [((["short", long_text],), {}), ((long_text,), {})],  # once per tokenizer
        [((long_text,), {"truncation": True})],  # truncation: a max_length, no warning
        [((long_text,), {"max_length": 1000})],
        [((long_text,), {"verbose": False}), ((long_text,), {})],
        [((["short", long_text],), {"padding": True, "return_tensors": "np"})],
        [((long_text, "a pair"), {"return_overflowing_tokens": True})],
    ]
    for model_max_length in (None, 512):
        for calls in scenarios:
            ft, hf = _pair(folder, pad=True)
            if model_max_length is not None:
                ft.model_max_length = hf.model_max_length = model_max_length
            got, expected = _captured(ft, *calls), _captured(hf, *calls)
            assert got == expected, (model_max_length, calls)
    ft, _ = _pair(folder)
    ft.model_max_length = 512
    length = len(ft(long_text, verbose=False)["input_ids"])
    assert _captured(ft, ((long_text,), {})) == [
        f"{TOO_LONG} for this model ({length} > 512). Running this sequence through the model will result in "
        "indexing errors"
    ]
    assert ft.deprecation_warnings == {"sequence-length-is-longer-than-the-specified-maximum": True}


# ------------------------------------------------------------------------------------------------------------------
# 5. unknown keyword arguments


@pytest.mark.parametrize("folder", FAMILIES, indirect=True)
def test_unknown_keyword_arguments_are_ignored_as_transformers(folder):
    ft, hf = _pair(folder)
    for kwargs in ({"foo": 1}, {"foo": None, "paddding": True}, {"split_special_tokens": False}):
        got, expected = ft("Hello [MASK] there", **kwargs), hf("Hello [MASK] there", **kwargs)
        assert dict(got) == dict(expected), kwargs
    assert ft.encode("hi", unknown=3) == hf.encode("hi", unknown=3)
    # tokenizer_kwargs override the named arguments, as in transformers 5.23
    options = {"tokenizer_kwargs": {"add_special_tokens": False, "return_length": True}, "return_length": False}
    assert dict(ft("Hello there", **options)) == dict(hf("Hello there", **options))


def test_keywords_ferrotune_cannot_honour_are_refused(minilm_dir):
    ft, _ = _pair(minilm_dir)
    with pytest.raises(InvalidArgumentError, match="split_special_tokens"):
        ft("a [SEP] b", split_special_tokens=True)


@pytest.mark.parametrize("folder", FAMILIES, indirect=True)
def test_convert_tokens_to_string_equals_transformers(folder):
    ft, hf = _pair(folder)
    for text in ("Hello world, don't stop!", "unaffable São Paulo 🙂 ##x", "  spaced   out  ", ""):
        tokens = hf.convert_ids_to_tokens(hf(text)["input_ids"])
        assert ft.convert_tokens_to_string(tokens) == hf.convert_tokens_to_string(tokens), text
        assert ft.convert_tokens_to_string(tokens[1:-1]) == hf.convert_tokens_to_string(tokens[1:-1]), text
